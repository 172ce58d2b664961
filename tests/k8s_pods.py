"""
The Kubernetes manifests of ``k8s/`` as processes: what each container runs,
and running it on a simulated host of :class:`~netns.Cluster`.

Each pod is started the way Kubernetes starts its container from the image
of the repository's Dockerfile: the container's ``command`` (else the
image's ENTRYPOINT) followed by its ``args`` (else the image's CMD), with
the image's ENV, then the ``envFrom`` ConfigMaps, then ``env``, in the
image's WORKDIR. ConfigMap volumes are written to a folder that stands for
the pod's file system; emptyDir and PVC volumes are empty folders there.
Probes are run against the pod's address.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from helpers import REPO_ROOT, wait_for
from netns import Cluster, Host

from benchmarks.processes import CapturedProcess

__all__ = ["Image", "Manifests", "PodSpec", "pod_spec", "probe", "read_dockerfile", "run_pod", "wait_ready"]

K8S = REPO_ROOT / "k8s"
DOCKERFILE = REPO_ROOT / "Dockerfile"


# The image: the Dockerfile's WORKDIR, ENV, ENTRYPOINT and CMD ----------------------------


@dataclass
class Image:
    """What of the Dockerfile matters to a container's process."""

    workdir: str = "/"
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    """Sources of the COPY instructions, relative to the build context."""


def _instructions(text: str) -> Iterable[tuple[str, str]]:
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, rest = logical.partition(" ")
        yield keyword.upper(), rest.strip()
        logical = ""


def read_dockerfile(path: Path = DOCKERFILE) -> Image:
    """Read WORKDIR, ENV, ENTRYPOINT, CMD and the COPY sources; exec-form (JSON) ENTRYPOINT and CMD only."""
    image = Image()
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "WORKDIR":
            image.workdir = os.path.join(image.workdir, rest)
        elif keyword == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                image.env[name] = value
        elif keyword in ("ENTRYPOINT", "CMD"):
            value = json.loads(rest)  # the shell form would need /bin/sh -c: not used here
            if keyword == "ENTRYPOINT":
                image.entrypoint, image.cmd = value, []  # a new ENTRYPOINT resets CMD
            else:
                image.cmd = value
        elif keyword == "COPY":
            parts = [part for part in shlex.split(rest) if not part.startswith("--")]
            image.copied.extend(parts[:-1])
    return image


# The manifests ----------------------------------------------------------------------------


class Manifests:
    """Every Kubernetes object under ``k8s/`` (kustomization files aside), by kind and name."""

    def __init__(self, folder: Path = K8S) -> None:
        self.folder = folder
        self.documents: list[tuple[Path, dict[str, Any]]] = []
        for path in sorted(folder.rglob("*.yaml")):
            if path.name == "kustomization.yaml":
                continue
            for document in yaml.safe_load_all(path.read_text()):
                if document:
                    self.documents.append((path, document))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        for _, document in self.documents:
            if document["kind"] == kind and document["metadata"]["name"] == name:
                return document
        raise KeyError(f"no {kind} {name} in {self.folder}")

    def has(self, kind: str, name: str) -> bool:
        return any(document["kind"] == kind and document["metadata"]["name"] == name for _, document in self.documents)

    def config_map(self, name: str) -> dict[str, str]:
        return dict(self.get("ConfigMap", name).get("data") or {})

    def workloads(self) -> list[dict[str, Any]]:
        """The Deployments and Jobs: the objects that run containers."""
        return [document for _, document in self.documents if document["kind"] in ("Deployment", "Job")]


@dataclass
class PodSpec:
    """One container of a workload, as the process that stands for it is started."""

    workload: str
    argv: list[str]
    env: dict[str, str]
    workdir: str
    files: dict[str, str]
    """Path in the pod's file system -> content (ConfigMap volumes)."""
    folders: list[str]
    """Paths of empty volumes (emptyDir, PVC)."""
    ports: dict[str, int]
    readiness: dict[str, Any] | None
    liveness: dict[str, Any] | None
    replicas: int


_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def _expand(text: str, env: dict[str, str]) -> str:
    # Kubernetes' $(VAR) references; an unknown one stays as written, $$ escapes.
    def replace(match: re.Match[str]) -> str:
        return env.get(match[1], match[0])

    return _REFERENCE.sub(replace, text.replace("$$", "\0")).replace("\0", "$")


def pod_spec(manifests: Manifests, image: Image, kind: str, name: str) -> PodSpec:
    """The process of the first container of the ``kind`` (Deployment or Job) called ``name``."""
    workload = manifests.get(kind, name)
    template = workload["spec"]["template"]["spec"]
    container = template["containers"][0]
    env: dict[str, str] = dict(image.env)
    for source in container.get("envFrom", []):
        env.update(manifests.config_map(source["configMapRef"]["name"]))
    for variable in container.get("env", []):
        secret = variable.get("valueFrom", {}).get("secretKeyRef")
        if secret is not None and secret.get("optional") and not manifests.has("Secret", secret["name"]):
            continue  # an optional Secret the user creates (not in k8s/): absent here, as in a fresh cluster
        if "value" not in variable:
            raise ValueError(f"{kind} {name}: env {variable['name']} uses valueFrom, which this harness does not run")
        env[variable["name"]] = _expand(str(variable["value"]), env)
    # Kubernetes: command replaces ENTRYPOINT and then CMD is dropped; args replaces CMD.
    if "command" in container:
        argv = list(container["command"]) + list(container.get("args", []))
    else:
        argv = list(image.entrypoint) + list(container.get("args", image.cmd))
    argv = [_expand(str(arg), env) for arg in argv]
    volumes = {volume["name"]: volume for volume in template.get("volumes", [])}
    files: dict[str, str] = {}
    folders: list[str] = []
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        path = mount["mountPath"]
        if "configMap" in volume:
            for key, content in manifests.config_map(volume["configMap"]["name"]).items():
                files[f"{path}/{key}"] = content
        elif "emptyDir" in volume or "persistentVolumeClaim" in volume:
            folders.append(path)
        else:
            raise ValueError(f"{kind} {name}: volume {mount['name']} is of a kind this harness does not run")
    return PodSpec(
        workload=name,
        argv=argv,
        env=env,
        workdir=container.get("workingDir", image.workdir),
        files=files,
        folders=folders,
        ports={port["name"]: port["containerPort"] for port in container.get("ports", []) if "name" in port},
        readiness=container.get("readinessProbe"),
        liveness=container.get("livenessProbe"),
        replicas=int(workload["spec"].get("replicas", 1)),
    )


# Pods on simulated hosts ------------------------------------------------------------------


def run_pod(cluster: Cluster, host: Host, spec: PodSpec, overrides: dict[str, str] | None = None) -> CapturedProcess:
    """Start ``spec``'s process on ``host``; ``overrides`` replace some of its environment."""
    root = host.root
    for path, content in spec.files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    for path in spec.folders:
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
    workdir = root / spec.workdir.lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    if overrides:
        cluster.log(f"{spec.workload}@{host.name}: environment overrides {overrides}")
    return cluster.run(host, spec.workload, spec.argv, env={**spec.env, **(overrides or {})}, cwd=workdir)


def probe(cluster: Cluster, host: Host, spec: PodSpec, check: dict[str, Any]) -> bool:
    """Run a readiness or liveness probe (httpGet or tcpSocket) against the pod's address."""
    if "httpGet" in check:
        http = check["httpGet"]
        port = spec.ports.get(http["port"], http["port"])
        status, _ = cluster.http_get(host, f"http://{host.address}:{port}{http.get('path', '/')}", timeout=2)
        return 200 <= status < 400
    if "tcpSocket" in check:
        port = spec.ports.get(check["tcpSocket"]["port"], check["tcpSocket"]["port"])
        code = f"import socket; socket.create_connection(({host.address!r}, {int(port)}), 2).close()"
        return cluster.execute(host, [sys.executable, "-c", code]).returncode == 0
    raise ValueError(f"{spec.workload}: probe {check} is of a kind this harness does not run")


def wait_ready(cluster: Cluster, host: Host, spec: PodSpec, process: CapturedProcess, timeout: float = 30.0) -> None:
    """Wait until the pod's readiness probe passes (as the kubelet would before adding it to a Service)."""
    if spec.readiness is not None:
        readiness = spec.readiness
        wait_for(
            lambda: probe(cluster, host, spec, readiness), timeout, interval=0.2,
            message=f"{process.name} ready", processes=[process],
        )  # fmt: skip
