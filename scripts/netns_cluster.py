"""
Several hosts on one machine: run the Kubernetes manifests' commands in network namespaces.

Each simulated host is a Linux network namespace with one interface (a veth
pair to a bridge in a hub namespace) and one address in 198.18.0.0/24
(198.18.0.0/15 is set aside for network benchmarks, RFC 2544). There is no
default route and no NAT: a host reaches the other simulated hosts and
nothing else, and nothing is added to the machine's own network. The
manifests' Service names (``wslocust-master``, ``wslocust-reference-server``)
resolve to those hosts through ``/etc/netns/NAMESPACE/hosts``, which
``ip netns exec`` mounts over ``/etc/hosts``.

Each pod is started the way Kubernetes starts its container from the image
of the repository's Dockerfile: the container's ``command`` (else the
image's ENTRYPOINT) followed by its ``args`` (else the image's CMD), with
the image's ENV, then the ``envFrom`` ConfigMaps, then ``env``, in the
image's WORKDIR. ConfigMap volumes are written to a folder that stands for
the pod's file system; emptyDir and PVC volumes are empty folders there.
Probes are run against the pod's address.

Run as root, from the repository with its virtual environment:

    .venv/bin/python scripts/netns_cluster.py                 # 2 workers, kill one, one joins
    .venv/bin/python scripts/netns_cluster.py --workers 3 --users 300 --run-time 60

It shows discovery, the distribution of connections across workers (as the
server's kernel sees them), the master's totals against the server's
counters, and a worker killed with SIGKILL while the run goes on. Everything
it creates is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
K8S = REPO_ROOT / "k8s"
DOCKERFILE = REPO_ROOT / "Dockerfile"

SUBNET = "198.18.0"
"""The simulated hosts' /24, inside 198.18.0.0/15 (benchmark addresses, never routed)."""

__all__ = [
    "Cluster",
    "DemoResult",
    "Image",
    "Manifests",
    "PodSpec",
    "namespaces_available",
    "pod_spec",
    "read_dockerfile",
    "remove_stale",
    "run_demo",
]


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


# Namespaces -------------------------------------------------------------------------------


def namespaces_available() -> str | None:
    """None if this process can build the simulated hosts, else why not."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    for tool in ("ip", "ss"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) is not installed: apt-get install -y iproute2"
    probe = f"wsl-{os.getpid()}-probe"
    result = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return f"`ip netns add` failed: {result.stderr.strip()}"
    try:
        for command in (
            ["ip", "-n", probe, "link", "add", "probe0", "type", "veth", "peer", "name", "probe1"],
            ["ip", "-n", probe, "link", "add", "probebr", "type", "bridge"],
        ):
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                return f"`{' '.join(command[3:])}` failed in a namespace: {result.stderr.strip()}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


class Process:
    """A process in a namespace, with its output collected line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.name = name
        self.argv = argv
        self.popen = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._collect, args=(self.popen.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._collect, args=(self.popen.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(pipe: IO[str], lines: list[str]) -> None:
        for line in pipe:
            lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaps the process."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for reader in self._readers:
            reader.join(timeout=5)

    def find(self, pattern: str, stream: str = "stderr") -> re.Match[str] | None:
        regex = re.compile(pattern)
        for line in list(getattr(self, stream)):
            match = regex.search(line)
            if match:
                return match
        return None

    def output(self, tail: int = 60) -> str:
        return "\n".join(
            [f"--- {self.name} (pid {self.pid}) stdout:", *self.stdout[-tail:], "--- stderr:", *self.stderr[-tail:]]
        )


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    root: Path
    """The folder standing for the file system of the pod on this host."""
    port: str = ""
    """Its veth on the hub's bridge: the switch port its cable plugs into."""


class Cluster:
    """
    Simulated hosts on a bridge; a context manager that removes all it made.

    Args:
        prefix: unique start of every namespace's name; default ``wsl-PID``.
        aliases: host names (the manifests' Service names) -> simulated host
            name, written into every host's ``/etc/hosts``.
    """

    def __init__(self, prefix: str | None = None, log: Callable[[str], None] = lambda _: None) -> None:
        self.prefix = prefix or f"wsl-{os.getpid()}"
        self.hub = f"{self.prefix}-hub"
        self.hosts: dict[str, Host] = {}
        self.aliases: dict[str, str] = {}
        self.processes: list[Process] = []
        self.log = log
        self._namespaces: list[str] = []
        self._folder = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))

    # Building -----------------------------------------------------------------

    def __enter__(self) -> Cluster:  # noqa: PYI034  (Python 3.10: no typing.Self)
        try:
            self._ip("netns", "add", self.hub)
            self._namespaces.append(self.hub)
            self._ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            self._ip("-n", self.hub, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @staticmethod
    def _ip(*args: str) -> str:
        result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def add_host(self, name: str, number: int, aliases: Iterable[str] = ()) -> Host:
        """Create host ``name`` with address 198.18.0.``number``; ``aliases`` resolve to it on every host."""
        namespace = f"{self.prefix}-{name}"
        address = f"{SUBNET}.{number}"
        self._ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        veth = f"v-{name}"[:15]
        self._ip("-n", self.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        self._ip("-n", self.hub, "link", "set", veth, "master", "br0", "up")
        self._ip("-n", namespace, "link", "set", "lo", "up")
        self._ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        self._ip("-n", namespace, "link", "set", "eth0", "up")
        root = self._folder / name
        root.mkdir()
        host = Host(name, namespace, address, root, port=veth)
        self.hosts[name] = host
        for alias in aliases:
            self.aliases[alias] = name
        self._write_hosts_files()
        self.log(f"host {name}: namespace {namespace}, address {address}")
        return host

    def _write_hosts_files(self) -> None:
        lines = ["127.0.0.1 localhost", "::1 localhost"]
        for host in self.hosts.values():
            names = [host.name] + [alias for alias, target in self.aliases.items() if target == host.name]
            lines.append(f"{host.address} {' '.join(names)}")
        for host in self.hosts.values():
            folder = Path("/etc/netns") / host.namespace
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("\n".join(lines) + "\n")

    def routes(self, host: Host) -> str:
        return self._ip("-n", host.namespace, "route", "show")

    # Running --------------------------------------------------------------------

    def run_pod(self, host: Host, spec: PodSpec, overrides: dict[str, str] | None = None) -> Process:
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
        bin_folder = str(Path(sys.executable).parent)
        env = {
            "PATH": f"{bin_folder}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(root),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO_ROOT),  # this checkout's wslocust, as installed in the image
            **spec.env,
            **(overrides or {}),
        }
        executable = shutil.which(spec.argv[0], path=env["PATH"])
        if executable is None:
            raise FileNotFoundError(f"{spec.workload}: {spec.argv[0]!r} is not installed (is the package installed?)")
        argv = ["ip", "netns", "exec", host.namespace, executable, *spec.argv[1:]]
        process = Process(f"{spec.workload}@{host.name}", argv, env, str(workdir))
        self.processes.append(process)
        self.log(f"{process.name}: {shlex.join(spec.argv)}" + (f"  (env {overrides})" if overrides else ""))
        return process

    def run(self, host: Host, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        """Start ``argv`` on ``host`` (not a pod: any command), with output collected; stopped by :meth:`close`."""
        bin_folder = str(Path(sys.executable).parent)
        environment = {
            "PATH": f"{bin_folder}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(host.root),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO_ROOT),
            **(env or {}),
        }
        process = Process(
            f"{name}@{host.name}", ["ip", "netns", "exec", host.namespace, *argv], environment, str(REPO_ROOT)
        )
        self.processes.append(process)
        self.log(f"{process.name}: {shlex.join(argv)}")
        return process

    def partition(self, first: Host, second: Host) -> None:
        """
        Cut ``first`` off from ``second``, both ways, in the switch: their frames
        to each other are silently dropped, as by a broken network between them,
        while both still reach every other host and see their own link up.

        It isolates both bridge ports (Linux bridge ``isolated``: isolated ports
        forward only to non-isolated ones), so hosts cut this way are all cut
        from each other: cut one pair at a time. :meth:`heal` undoes it.
        """
        for host in (first, second):
            self._bridge("link", "set", "dev", host.port, "isolated", "on")
        self.log(f"partition: {first.name} <-/-> {second.name}")

    def heal(self, *hosts: Host) -> None:
        """Undo :meth:`partition` for ``hosts``: every host when none is given."""
        for host in hosts or tuple(self.hosts.values()):
            self._bridge("link", "set", "dev", host.port, "isolated", "off")
        self.log(f"healed: {', '.join(host.name for host in hosts) or 'every host'}")

    def _bridge(self, *args: str) -> None:
        result = subprocess.run(
            ["bridge", "-n", self.hub, *args], capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"bridge {' '.join(args)}: {result.stderr.strip()}")

    def execute(self, host: Host, argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run a short command on ``host`` and return its result."""
        return subprocess.run(
            ["ip", "netns", "exec", host.namespace, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )

    def http_get(self, host: Host, url: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET ``url`` from ``host``: (status, body); status 0 if it could not connect."""
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            f"    r = urllib.request.urlopen(sys.argv[1], timeout={timeout})\n"
            "    print(r.status); sys.stdout.write(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
            "except OSError:\n"
            "    print(0)\n"
        )
        result = self.execute(host, [sys.executable, "-c", code, url], timeout=timeout + 10)
        status, _, body = result.stdout.partition("\n")
        return int(status or 0), body

    def probe(self, host: Host, spec: PodSpec, probe: dict[str, Any]) -> bool:
        """Run a readiness or liveness probe (httpGet or tcpSocket) against the pod's address."""
        if "httpGet" in probe:
            check = probe["httpGet"]
            port = spec.ports.get(check["port"], check["port"])
            status, _ = self.http_get(host, f"http://{host.address}:{port}{check.get('path', '/')}", timeout=2)
            return 200 <= status < 400
        if "tcpSocket" in probe:
            port = spec.ports.get(probe["tcpSocket"]["port"], probe["tcpSocket"]["port"])
            code = f"import socket; socket.create_connection(({host.address!r}, {int(port)}), 2).close()"
            return self.execute(host, [sys.executable, "-c", code]).returncode == 0
        raise ValueError(f"{spec.workload}: probe {probe} is of a kind this harness does not run")

    def wait_ready(self, host: Host, spec: PodSpec, process: Process, timeout: float = 30.0) -> None:
        """Wait until the pod's readiness probe passes (as the kubelet would before adding it to a Service)."""
        if spec.readiness is None:
            return
        deadline = time.monotonic() + timeout
        while not self.probe(host, spec, spec.readiness):
            if not process.running():
                raise RuntimeError(f"{process.name} exited with {process.popen.returncode}\n{process.output()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{process.name} not ready within {timeout} s\n{process.output()}")
            time.sleep(0.2)

    def established_peers(self, host: Host, port: int) -> collections.Counter[str]:
        """Established TCP connections to ``port`` on ``host``, counted by peer address (the kernel's view)."""
        result = self.execute(host, ["ss", "-Htn", "state", "established", f"( sport = :{port} )"])
        peers: collections.Counter[str] = collections.Counter()
        for line in result.stdout.splitlines():
            columns = line.split()
            if len(columns) >= 2:
                peers[columns[-1].rsplit(":", 1)[0].strip("[]")] += 1
        return peers

    # Teardown ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process, delete every namespace and /etc/netns entry, remove the folders."""
        for process in self.processes:
            try:
                process.stop(timeout=5)
            except (OSError, subprocess.SubprocessError) as exc:  # keep cleaning up
                self.log(f"could not stop {process.name}: {exc}")
        for namespace in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
            shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)
        self._namespaces.clear()
        try:
            Path("/etc/netns").rmdir()  # only if no one else uses it
        except OSError:
            pass
        shutil.rmtree(self._folder, ignore_errors=True)


def remove_stale(log: Callable[[str], None] = print) -> int:
    """
    Delete the namespaces (and /etc/netns entries) of runs that died without
    cleaning up: those named ``wsl-PID-...`` whose process PID is gone.
    Returns how many were deleted.
    """
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    removed = 0
    for line in listed.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(r"wsl-(\d+)-[\w.-]+", name)
        if not match or Path(f"/proc/{match[1]}").exists():
            continue
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        shutil.rmtree(Path("/etc/netns") / name, ignore_errors=True)
        log(f"deleted the stale namespace {name}")
        removed += 1
    try:
        Path("/etc/netns").rmdir()
    except OSError:
        pass
    return removed


# The demonstration ----------------------------------------------------------------------


@dataclass
class DemoResult:
    """What the demonstration observed; :func:`run_demo` checks nothing itself."""

    users: int
    workers: dict[str, str] = field(default_factory=dict)
    """Simulated host name -> address, for every worker that ran."""
    spread_before_kill: dict[str, int] = field(default_factory=dict)
    """Established connections on the server by worker host, once all users were spawned."""
    spread_after_kill: dict[str, int] = field(default_factory=dict)
    spread_after_join: dict[str, int] = field(default_factory=dict)
    killed: str | None = None
    killed_users: int = 0
    master_exit_code: int | None = None
    master_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Locust's --json output by request name."""
    websocket: dict[str, dict[str, str]] = field(default_factory=dict)
    """results/wslocust_websocket.csv by node: ``All (N workers)`` (the totals) and each worker."""
    csv_stats: dict[str, dict[str, str]] = field(default_factory=dict)
    """results/wslocust_stats.csv, by name, as written to the Job's results volume."""
    server: dict[str, float] = field(default_factory=dict)
    """The reference server's /stats after the run."""
    routes: dict[str, str] = field(default_factory=dict)
    master_log: list[str] = field(default_factory=list)
    message_interval_ms: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        """The master's WebSocket totals (the ``All`` row of the results volume's CSV), as numbers."""
        row = next((row for node, row in self.websocket.items() if node.startswith("All")), {})
        return {key: int(float(value)) for key, value in row.items() if value.replace(".", "", 1).isdigit()}


_TABLE_CONNECTS = re.compile(r"^\s*WS\s+connect\s+(\d+)\s")


def _wait(condition: Callable[[], Any], timeout: float, what: str, processes: Iterable[Process] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for process in processes:
            if not process.running():
                raise RuntimeError(f"{process.name} exited while waiting for {what}\n{process.output()}")
        if time.monotonic() > deadline:
            details = "\n".join(process.output() for process in processes)
            raise TimeoutError(f"not within {timeout} s: {what}\n{details}")
        time.sleep(0.2)


def run_demo(
    *,
    workers: int | None = None,
    users: int = 40,
    run_time: float = 40.0,
    message_interval_ms: float = 200.0,
    kill: bool = True,
    join: bool = True,
    prefix: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """
    Start the reference server, the headless master (Job) and the workers
    (Deployment) of ``k8s/`` on simulated hosts; once every user is connected
    and reported, SIGKILL the first worker, then start one more worker; wait
    for the master to end the run, and return what was seen.

    Only the run's size is changed from the manifests (users, spawn rate, run
    time, workers expected, stop timeout and message interval), through the
    environment variables the manifests themselves set.
    """
    manifests = Manifests()
    image = read_dockerfile()
    server_spec = pod_spec(manifests, image, "Deployment", "wslocust-reference-server")
    master_spec = pod_spec(manifests, image, "Job", "wslocust-headless")
    worker_spec = pod_spec(manifests, image, "Deployment", "wslocust-worker")
    workers = workers or worker_spec.replicas
    result = DemoResult(users=users, message_interval_ms=message_interval_ms)
    with Cluster(prefix, log=log) as cluster:
        server_host = cluster.add_host("srv", 10, aliases=["wslocust-reference-server"])
        master_host = cluster.add_host("master", 11, aliases=["wslocust-master"])
        worker_hosts = [cluster.add_host(f"w{n}", 21 + n) for n in range(workers + (1 if join else 0))]
        for host in cluster.hosts.values():
            result.routes[host.name] = cluster.routes(host)

        server = cluster.run_pod(server_host, server_spec)
        cluster.wait_ready(server_host, server_spec, server)
        overrides = {
            "LOCUST_USERS": str(users),
            "LOCUST_SPAWN_RATE": str(users),
            "LOCUST_RUN_TIME": f"{run_time:g}s",
            "LOCUST_EXPECT_WORKERS": str(workers),
            "LOCUST_EXPECT_WORKERS_MAX_WAIT": "60",
            "LOCUST_STOP_TIMEOUT": "5",
            "MESSAGE_INTERVAL": f"{message_interval_ms:g}",
        }
        master = cluster.run_pod(master_host, master_spec, overrides)
        cluster.wait_ready(master_host, master_spec, master)
        running = [cluster.run_pod(host, worker_spec) for host in worker_hosts[:workers]]
        for host in worker_hosts[:workers]:
            result.workers[host.name] = host.address
        address_to_host = {host.address: host.name for host in worker_hosts}
        server_port = int(server_spec.ports["ws"])

        def spread() -> dict[str, int]:
            peers = cluster.established_peers(server_host, server_port)
            return {address_to_host.get(address, address): count for address, count in sorted(peers.items())}

        everyone = [server, master, *running]
        _wait(lambda: master.find(r"All users spawned"), 30, "every user spawned", everyone)
        _wait(lambda: sum(spread().values()) == users, 30, f"{users} connections on the server", everyone)
        result.spread_before_kill = spread()
        log(f"connections on the server by worker: {result.spread_before_kill}")

        if kill:
            # Each worker reports every 3 s: wait until the master's table counts every connect,
            # so that the killed worker's last report holds all its connections.
            def reported_connects() -> int:
                counts = [int(m[1]) for m in map(_TABLE_CONNECTS.match, list(master.stderr)) if m]
                return counts[-1] if counts else 0

            _wait(lambda: reported_connects() >= users, 20, "the master's table counting every connect", everyone)
            victim, victim_host = running[0], worker_hosts[0]
            result.killed = victim_host.name
            result.killed_users = result.spread_before_kill.get(victim_host.name, 0)
            victim.popen.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            log(f"killed the worker on {victim_host.name} (pid {victim.pid}) with SIGKILL")
            survivors = [process for process in everyone if process is not victim]
            _wait(lambda: master.find(r"wslocust: worker .* is missing"), 20, "the master noticing", survivors)
            # --enable-rebalancing: the survivors take over the killed worker's users.
            _wait(
                lambda: (s := spread()).get(victim_host.name, 0) == 0 and sum(s.values()) == users,
                30,
                f"{users} connections again, none from {victim_host.name}",
                survivors,
            )
            result.spread_after_kill = spread()
            log(f"after the kill: {result.spread_after_kill}")
            everyone = survivors

        if join:
            newcomer_host = worker_hosts[workers]
            newcomer = cluster.run_pod(newcomer_host, worker_spec)
            result.workers[newcomer_host.name] = newcomer_host.address
            everyone = [*everyone, newcomer]
            _wait(
                lambda: (s := spread()).get(newcomer_host.name, 0) > 0 and sum(s.values()) == users,
                30,
                f"connections from the worker that joined ({newcomer_host.name})",
                everyone,
            )
            result.spread_after_join = spread()
            log(f"after a worker joined: {result.spread_after_join}")

        result.master_exit_code = master.wait(timeout=run_time + 60)
        result.master_log = list(master.stderr)
        if master.stdout:
            start = next((i for i, line in enumerate(master.stdout) if line.startswith("[")), None)
            if start is not None:
                result.master_stats = {entry["name"]: entry for entry in json.loads("\n".join(master.stdout[start:]))}
        results = master_host.root / master_spec.workdir.lstrip("/") / "results"
        for path, key, target in (
            (results / "wslocust_stats.csv", "Name", result.csv_stats),
            (results / "wslocust_websocket.csv", "node", result.websocket),
        ):
            if path.exists():
                with path.open() as file:
                    target.update({row[key]: row for row in csv.DictReader(file)})
        # Workers get "quit" from the master and exit; the server's counters are final once they have.
        for process in everyone:
            if process is not server and process is not master:
                process.wait(timeout=30)
        status, body = cluster.http_get(server_host, f"http://{server_host.address}:{server_port}/stats")
        if status == 200:
            result.server = json.loads(body)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="workers at start (default: the manifest's replicas)")
    parser.add_argument("--users", type=int, default=40, help="connections (default: %(default)s)")
    parser.add_argument("--run-time", type=float, default=40.0, help="seconds (default: %(default)s)")
    parser.add_argument("--message-interval", type=float, default=200.0, help="ms (default: %(default)s)")
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker")
    parser.add_argument("--no-join", action="store_true", help="do not add a worker during the run")
    parser.add_argument(
        "--remove-stale", action="store_true", help="only delete the namespaces of earlier runs that died, and exit"
    )
    args = parser.parse_args(argv)
    if args.remove_stale:
        remove_stale()
        return 0
    reason = namespaces_available()
    if reason:
        print(f"netns_cluster: cannot build simulated hosts here: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    result = run_demo(
        workers=args.workers,
        users=args.users,
        run_time=args.run_time,
        message_interval_ms=args.message_interval,
        kill=not args.no_kill,
        join=not args.no_join,
        log=lambda line: print(f"[{time.monotonic() - started:6.1f} s] {line}", flush=True),
    )
    connect = result.master_stats.get("connect", {})
    echo = result.master_stats.get("echo", {})
    server = result.server
    print()
    print(f"workers:                 {result.workers}")
    print(f"spread at start:         {result.spread_before_kill}")
    if result.killed:
        print(f"after killing {result.killed}:     {result.spread_after_kill}")
    if result.spread_after_join:
        print(f"after a worker joined:   {result.spread_after_join}")
    print(f"master exit code:        {result.master_exit_code}")
    print(
        f"connects (master):       {connect.get('num_requests')}   server accepted: {server.get('connections_accepted')}"
    )
    print(
        f"messages sent (master):  {result.totals.get('messages_sent')}   server received: {server.get('messages_received')}"
    )
    print(f"echoes (master):         {echo.get('num_requests')}   server sent:     {server.get('messages_sent')}")
    print("\n".join(line for line in result.master_log if "wslocust:" in line))
    return 0 if result.master_exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
