"""
The Kubernetes manifests and the Dockerfile: valid offline against the
Kubernetes schemas, consistent with each other, and their commands run
together on simulated hosts (network namespaces) as a cluster would run them.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys

import pytest
import yaml
from helpers import REPO_ROOT
from k8s_demo import run_demo
from k8s_pods import Manifests, pod_spec, read_dockerfile
from netns import namespaces_or_skip

K8S = REPO_ROOT / "k8s"


def _kubernetes_versions() -> list[str]:
    """1.27 (the oldest still common in managed clusters) and the newest whose schemas kubernetes-validate ships."""
    try:
        from kubernetes_validate.utils import all_versions
    except ImportError:
        return ["1.27"]
    shipped = [".".join(version.split(".")[:2]) for version in all_versions()]
    return sorted({"1.27" if "1.27" in shipped else shipped[0], shipped[-1]}, key=lambda v: tuple(map(int, v.split("."))))


KUBERNETES_VERSIONS = _kubernetes_versions()

ENTRY_POINTS = ["k8s", "k8s/headless", "k8s/reference-server"]
"""What the README applies with `kubectl apply -k`."""

MANIFESTS = Manifests(K8S)
IMAGE = read_dockerfile()


def labels(document):
    return document["spec"]["template"]["metadata"]["labels"]


# Schemas and kustomizations -----------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    assert len(MANIFESTS.documents) >= 10
    for path, document in MANIFESTS.documents:
        where = f"{path.relative_to(REPO_ROOT)}: {document['kind']} {document['metadata']['name']}"
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{where} is not valid Kubernetes {version}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_each_kustomization_lists_existing_files_and_every_manifest_is_in_one():
    listed = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        content = yaml.safe_load(kustomization.read_text())
        assert content["kind"] == "Kustomization"
        for resource in content["resources"]:
            target = (kustomization.parent / resource).resolve()
            assert target.exists(), f"{kustomization.relative_to(REPO_ROOT)} lists {resource}, which does not exist"
            listed.add(target / "kustomization.yaml" if target.is_dir() else target)
    for path, _ in MANIFESTS.documents:
        assert path.resolve() in listed, f"{path.relative_to(REPO_ROOT)} is in no kustomization"
    for entry in ENTRY_POINTS:
        assert (REPO_ROOT / entry / "kustomization.yaml").exists()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (it builds kustomizations)")
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_kubectl_builds_each_kustomization_into_valid_objects(entry):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    built = subprocess.run(
        ["kubectl", "kustomize", entry], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    documents = [document for document in yaml.safe_load_all(built.stdout) if document]
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSIONS[-1], strict=True)
    images = {
        container["image"]
        for document in documents
        if document["kind"] in ("Deployment", "Job")
        for container in document["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"wslocust:latest"}  # every workload takes the image the kustomization names


# What the manifests say --------------------------------------------------------------------------


def test_the_locustfiles_configmap_carries_the_locustfiles_as_they_are():
    # The script's own check: the ConfigMap is what it would write from locustfiles/.
    check = subprocess.run(
        [sys.executable, "scripts/k8s_configmap.py", "--check"], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    run = MANIFESTS.config_map("wslocust-run")
    assert run["LOCUST_LOCUSTFILE"].removeprefix("locustfiles/") in MANIFESTS.config_map("wslocust-locustfiles")


def test_the_master_service_is_cluster_internal_with_the_worker_and_ui_ports():
    service = MANIFESTS.get("Service", "wslocust-master")
    assert service["spec"]["type"] == "ClusterIP"
    assert {port["port"] for port in service["spec"]["ports"]} == {5557, 8089}
    for kind, name in (("Deployment", "wslocust-master"), ("Job", "wslocust-headless")):
        assert labels(MANIFESTS.get(kind, name)).items() >= service["spec"]["selector"].items(), name
    worker = labels(MANIFESTS.get("Deployment", "wslocust-worker"))
    assert not worker.items() >= service["spec"]["selector"].items()


def test_only_workers_may_reach_the_masters_port_5557():
    policy = MANIFESTS.get("NetworkPolicy", "wslocust-master")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert labels(MANIFESTS.get("Job", "wslocust-headless")).items() >= policy["podSelector"]["matchLabels"].items()
    worker = labels(MANIFESTS.get("Deployment", "wslocust-worker"))
    for rule in policy["ingress"]:
        ports = {port["port"] for port in rule["ports"]}
        if 5557 in ports:
            assert ports == {5557}
            assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [
                {key: worker[key] for key in rule["from"][0]["podSelector"]["matchLabels"]}
            ]
            assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
        else:
            assert ports == {8089}


def test_the_workloads_have_probes_and_the_workers_their_network_settings():
    for kind, name in (
        ("Deployment", "wslocust-master"),
        ("Job", "wslocust-headless"),
        ("Deployment", "wslocust-reference-server"),
    ):
        spec = pod_spec(MANIFESTS, IMAGE, kind, name)
        assert spec.readiness and spec.liveness, name
    worker = MANIFESTS.get("Deployment", "wslocust-worker")["spec"]
    sysctls = {item["name"]: item["value"] for item in worker["template"]["spec"]["securityContext"]["sysctls"]}
    assert sysctls == {"net.ipv4.ip_local_port_range": "1024 65535"}
    assert worker["template"]["spec"]["containers"][0]["resources"]["requests"]


def test_the_headless_job_waits_for_as_many_workers_as_the_deployment_runs():
    job = pod_spec(MANIFESTS, IMAGE, "Job", "wslocust-headless")
    workers = pod_spec(MANIFESTS, IMAGE, "Deployment", "wslocust-worker")
    assert job.argv[:3] == ["locust", "--master", "--headless"]
    assert int(job.env["LOCUST_EXPECT_WORKERS"]) == workers.replicas
    assert job.env["LOCUST_RUN_TIME"] and "/app/results" in job.folders
    spec = MANIFESTS.get("Job", "wslocust-headless")["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] > 0


def test_the_containers_run_the_images_commands_in_its_workdir():
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    scripts = {line.split("=")[0].strip() for line in setup["options.entry_points"]["console_scripts"].split("\n") if line}
    # The image installs the package (its console scripts, and locust as a dependency) and the locustfiles.
    assert IMAGE.entrypoint == ["locust"] and IMAGE.workdir == "/app"
    for source in IMAGE.copied:
        assert (REPO_ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
    assert {"setup.py", "setup.cfg", "wslocust", "locustfiles"} <= set(IMAGE.copied)
    assert (REPO_ROOT / IMAGE.workdir.lstrip("/").replace("app", "", 1) / IMAGE.cmd[1]).exists()
    for workload in MANIFESTS.workloads():
        spec = pod_spec(MANIFESTS, IMAGE, workload["kind"], workload["metadata"]["name"])
        assert spec.argv[0] in scripts | {"locust"}, spec.workload
        for path in [*spec.folders, *spec.files]:
            assert path.startswith((IMAGE.workdir + "/", "/tmp/")) or path == "/tmp", path
        container = workload["spec"]["template"]["spec"]["containers"][0]
        assert "workingDir" not in container  # the image's WORKDIR: relative paths mean the same everywhere


# The commands, together, on simulated hosts ---------------------------------------------------------


@pytest.mark.slow
def test_the_manifests_commands_run_together_on_simulated_hosts():
    """
    Reference server, headless master and two workers, each on its own
    simulated host, started from the manifests: the workers find the master
    by its Service name, share the connections, and the master's totals match
    the server's counters even after one worker is killed with SIGKILL and
    another joins.
    """
    namespaces_or_skip("the multi-host test")
    result = run_demo(users=40, run_time=25, message_interval_ms=200, prefix=f"wsl-{os.getpid()}")
    users = result.users

    # Every simulated host is isolated: a link route on the bridge, no default route.
    for host, routes in result.routes.items():
        assert "default" not in routes and routes.strip().startswith("198.18.0.0/24 dev eth0"), (host, routes)
    # Discovery and distribution: the server's kernel sees each worker's address.
    assert result.spread_before_kill == {"w0": users // 2, "w1": users // 2}
    # The killed worker's users were started again on the survivor, then shared with the newcomer.
    assert result.spread_after_kill == {"w1": users}
    assert result.spread_after_join == {"w1": users // 2, "w2": users // 2}
    log = "\n".join(result.master_log)
    assert "is missing (no heartbeat): its last report" in log
    assert "the WebSocket totals include the last report of 1 missing worker" in log
    assert result.master_exit_code == 0, log[-3000:]

    server = result.server
    connect, echo = result.master_stats["connect"], result.master_stats["echo"]
    # Connections: every one the server accepted is counted once, the killed worker's included.
    assert connect["num_failures"] == 0
    assert connect["num_requests"] == server["connections_accepted"] == users + users // 2 + users // 2
    # The results volume: Locust's CSV and the WebSocket totals, with the killed worker marked.
    totals = result.totals
    assert totals["connects_succeeded"] == connect["num_requests"] and totals["connects_failed"] == 0
    assert result.csv_stats["connect"]["Request Count"] == str(connect["num_requests"])
    workers = [row for node, row in result.websocket.items() if not node.startswith("All")]
    assert len(workers) == 3 and [row["status"] for row in workers].count("missing") == 1, workers
    # Messages: the survivors' are exact; of the killed worker's, what it sent after its last
    # report (reports come every 3 s) is missing from the totals and from nothing else.
    rate = result.killed_users * 1000 / result.message_interval_ms
    unreported = server["messages_received"] - totals["messages_sent"]
    assert 0 <= unreported <= rate * 4, (unreported, rate)
    assert totals["messages_received"] == echo["num_requests"]
    # The killed worker's last report can hold echoes still in flight (at most one per user here).
    assert 0 <= totals["messages_sent"] - totals["messages_received"] <= result.killed_users
    assert echo["num_failures"] == 0
    assert server["messages_sent"] - echo["num_requests"] <= rate * 4
