"""
Several hosts on one machine: Linux network namespaces.

Each simulated host of a :class:`Cluster` is a network namespace with one
interface (a veth pair to a bridge in a hub namespace) and one address in
198.18.0.0/24 (198.18.0.0/15 is set aside for network benchmarks, RFC 2544).
There is no default route and no NAT: a host reaches the other simulated
hosts and nothing else, and nothing is added to the machine's own network.
Host names (and aliases, e.g. a Kubernetes Service's name) resolve through
``/etc/netns/NAMESPACE/hosts``, which ``ip netns exec`` mounts over
``/etc/hosts``.

:func:`private_loopback` is the smallest such host: a namespace with only its
loopback, where every port of 127.0.0.1 is free whatever runs on the machine.

Everything is removed at the end, also on failure; :func:`remove_stale`
deletes what a run killed half-way left behind. Needs root and iproute2.
"""

from __future__ import annotations

import collections
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers import REPO_ROOT
from locust_process import LocustProcess

from benchmarks.processes import CapturedProcess

__all__ = [
    "SUBNET",
    "Cluster",
    "Host",
    "namespaces_available",
    "namespaces_or_skip",
    "private_loopback",
    "remove_stale",
]

SUBNET = "198.18.0"
"""The simulated hosts' /24, inside 198.18.0.0/15 (benchmark addresses, never routed)."""


def namespaces_available() -> str | None:
    """None if this process can build simulated hosts, else why not."""
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


def namespaces_or_skip(what: str) -> None:
    """Skip the calling test, saying why, where namespaces cannot be built; in CI (``CI`` set), fail instead."""
    import pytest

    reason = namespaces_available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run {what}, but: {reason}")
    pytest.skip(f"{what} needs network namespaces: {reason}")


def _ip(*args: str) -> str:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


@contextmanager
def private_loopback(prefix: str | None = None) -> Iterator[list[str]]:
    """
    A network namespace with only its loopback, up: its 127.0.0.1 ports are its own, so a
    process there can take a fixed port (a default) that something on the machine holds.

    Yields:
        The command prefix that runs a command there: ``ip netns exec NAME``.
    """
    name = f"{prefix or f'wsl-{os.getpid()}'}-lo"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield ["ip", "netns", "exec", name]
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    root: Path
    """The folder standing for this host's own files (a pod's file system)."""
    port: str = ""
    """Its veth on the hub's bridge: the switch port its cable plugs into."""


class Cluster:
    """
    Simulated hosts on a bridge; a context manager that removes all it made.

    Args:
        prefix: unique start of every namespace's name; default ``wsl-PID``.
        log: called with a line for each thing done.

    Attributes:
        hosts: the hosts by name.
        aliases: host names (e.g. Kubernetes Service names) -> simulated host
            name, written into every host's ``/etc/hosts``.
        processes: every process started on a host; :meth:`close` stops them.
    """

    def __init__(self, prefix: str | None = None, log: Callable[[str], None] = lambda _: None) -> None:
        self.prefix = prefix or f"wsl-{os.getpid()}"
        self.hub = f"{self.prefix}-hub"
        self.hosts: dict[str, Host] = {}
        self.aliases: dict[str, str] = {}
        self.processes: list[CapturedProcess] = []
        self.log = log
        self._namespaces: list[str] = []
        self._folder = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))

    # Building -----------------------------------------------------------------

    def __enter__(self) -> Cluster:  # noqa: PYI034  (Python 3.10: no typing.Self)
        try:
            _ip("netns", "add", self.hub)
            self._namespaces.append(self.hub)
            _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.hub, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def add_host(self, name: str, number: int, aliases: Iterable[str] = ()) -> Host:
        """Create host ``name`` with address 198.18.0.``number``; ``aliases`` resolve to it on every host."""
        namespace = f"{self.prefix}-{name}"
        address = f"{SUBNET}.{number}"
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        veth = f"v-{name}"[:15]
        _ip("-n", self.hub, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("-n", self.hub, "link", "set", veth, "master", "br0", "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
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
        return _ip("-n", host.namespace, "route", "show")

    # Running ------------------------------------------------------------------

    @staticmethod
    def exec_prefix(host: Host) -> list[str]:
        """The command prefix that runs a command on ``host``."""
        return ["ip", "netns", "exec", host.namespace]

    def host_environment(self, host: Host, env: dict[str, str] | None = None) -> dict[str, str]:
        """A clean environment for a process on ``host``: this virtual environment first on PATH, this checkout."""
        return {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(host.root),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(REPO_ROOT),  # this checkout's wslocust, as installed in the image
            **(env or {}),
        }

    def run(
        self, host: Host, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> CapturedProcess:
        """Start ``argv`` on ``host`` in the clean :meth:`host_environment`; stopped by :meth:`close`."""
        environment = self.host_environment(host, env)
        executable = shutil.which(argv[0], path=environment["PATH"])
        if executable is None:
            raise FileNotFoundError(f"{name}: {argv[0]!r} is not installed (is the package installed?)")
        process = CapturedProcess(
            f"{name}@{host.name}", [*self.exec_prefix(host), executable, *argv[1:]], env=environment,
            cwd=cwd or REPO_ROOT,
        )  # fmt: skip
        self.processes.append(process)
        self.log(f"{process.name}: {shlex.join(argv)}")
        return process

    def locust(self, host: Host, name: str, *args: str, folder: Path | None = None) -> LocustProcess:
        """
        Start ``locust ARGS`` on ``host`` (a :class:`~locust_process.LocustProcess` on Locust's default
        ports: the host's network is its own); stopped by :meth:`close`.
        """
        process = LocustProcess(
            *args, name=f"{name}@{host.name}", folder=folder, free_ports=False, prefix=self.exec_prefix(host)
        )
        self.processes.append(process)
        self.log(f"{process.name}: locust {shlex.join(args)}")
        return process

    def execute(self, host: Host, argv: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
        """Run a short command on ``host`` and return its result."""
        return subprocess.run(
            [*self.exec_prefix(host), *argv], capture_output=True, text=True, timeout=timeout, check=False
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

    def established_peers(self, host: Host, port: int) -> collections.Counter[str]:
        """Established TCP connections to ``port`` on ``host``, counted by peer address (the kernel's view)."""
        result = self.execute(host, ["ss", "-Htn", "state", "established", f"( sport = :{port} )"])
        peers: collections.Counter[str] = collections.Counter()
        for line in result.stdout.splitlines():
            columns = line.split()
            if len(columns) >= 2:
                peers[columns[-1].rsplit(":", 1)[0].strip("[]")] += 1
        return peers

    # Faults -------------------------------------------------------------------

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

    # Teardown -----------------------------------------------------------------

    def close(self) -> None:
        """Stop every process (and its group), delete every namespace and /etc/netns entry, remove the folders."""
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
