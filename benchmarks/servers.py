"""
The target servers of the benchmarks, started pinned to the server CPU.

- ``node``: ``node_echo_server.js`` (Node.js and the ``ws`` package, which is
  installed with npm into ``benchmarks/.node/`` the first time, saying so on
  stderr): fast enough not to be the bottleneck, and it can hold each echo
  (``hold_ms``) and record the server-side truth of echo and handshake times
  (``GET /latency``), and of every message (``GET /latency/messages``: its
  client port, its number on its connection, when it arrived, how long it was
  held), for joining the client's times with the server's per message.
- ``reference``: ``python -m wslocust serve`` (one process; several share the
  port with ``--reuse-port`` when asked), the server the issue's hold workload
  names; exact counters at ``GET /stats``.

:func:`start_server` falls back to the reference server when Node.js or npm is
missing, and warns that the server may then be the bottleneck.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .processes import HOST, Child, Pinning, ProcessTree, log

__all__ = ["Server", "start_node_server", "start_reference_server", "start_server"]

BENCHMARKS = Path(__file__).resolve().parent
NODE_DIR = BENCHMARKS / ".node"
NODE_SERVER = BENCHMARKS / "node_echo_server.js"
WS_PACKAGE = "ws@^8"
SERVER_START_TIMEOUT = 20.0
NPM_TIMEOUT = 300.0


@dataclass
class Server:
    """One target: one or more processes on one port."""

    children: list[Child]
    kind: str
    """``node-ws <version>`` or ``wslocust reference``."""
    url: str
    http_base: str
    """``http://127.0.0.1:PORT``: where ``/stats`` (and on node ``/latency``) answer."""
    trees: list[ProcessTree] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.trees = [ProcessTree(child.pid) for child in self.children]

    @property
    def is_node(self) -> bool:
        return self.kind.startswith("node")

    @property
    def alive(self) -> bool:
        return all(child.alive for child in self.children)

    def _get(self, path: str, data: bytes | None = None) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.http_base + path, data=data, timeout=5) as response:
                return json.load(response)  # type: ignore[no-any-return]
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def stats(self) -> dict[str, Any] | None:
        """
        The counters, with ``messages_sent`` and ``connections_open`` on every kind.

        With several ``--reuse-port`` processes, ``GET /stats`` reaches one of them: the
        counters are then those of one process only, and None is returned instead.
        """
        if len(self.children) > 1:
            return None
        return self._get("/stats")

    def latency(self) -> dict[str, Any] | None:
        """The node server's recorded echo and handshake times (``GET /latency``), or None."""
        return self._get("/latency") if self.is_node else None

    def messages(self) -> list[tuple[int, int, float, float]] | None:
        """
        The node server's record of every echoed message since the last reset (``record_messages``):
        ``(client port, number on its connection from 1, received at ms, held ms)``; None if not recorded.
        """
        body = self._get("/latency/messages") if self.is_node else None
        if not body or not body.get("recording"):
            return None
        if body.get("dropped"):
            log(f"WARNING: the server dropped {body['dropped']} message records (its cap)")
        return [(int(port), int(number), float(at), float(held)) for port, number, at, held in body["messages"]]

    def reset_latency(self) -> None:
        if self.is_node and self._get("/latency/reset", data=b"") is None:
            log("WARNING: POST /latency/reset failed: the server-side figures include earlier runs")

    def cpu_seconds(self) -> float:
        return sum(tree.cpu_seconds() for tree in self.trees)

    def wakeups(self) -> int:
        """
        How often the server's processes went to sleep waiting for events and were woken (their main
        threads' voluntary context switches): per echo, whether the messages reached it one by one or
        in batches that one wake-up serves.
        """
        return int(sum(tree.total(lambda member: member.num_ctx_switches().voluntary) for tree in self.trees))

    def stop(self) -> None:
        for child in self.children:
            child.stop()


def start_server(kind: str, pinning: Pinning, **node_options: Any) -> Server:
    """``kind`` is ``node`` (falls back to the reference server without Node.js) or ``reference``."""
    if kind == "node":
        server = start_node_server(pinning, **node_options)
        if server is not None:
            return server
        log(
            "WARNING: Node.js, npm or the ws package is unavailable; falling back to the reference "
            "server (python -m wslocust serve), which may be the bottleneck: compare the server's CPU"
        )
    return start_reference_server(pinning)


def start_node_server(
    pinning: Pinning,
    hold_ms: float = 0.0,
    record_latency: bool = False,
    record_messages: bool = False,
    deflate: bool = False,
) -> Server | None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return None
    version = ensure_ws_package(npm)
    if version is None:
        return None
    env = {**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")}
    command = [*pinning.server, node, str(NODE_SERVER), "--host", HOST, "--port", "0", "--hold-ms", f"{hold_ms:g}"]
    if record_latency:
        command.append("--record-latency")
    if record_messages:
        command.append("--record-messages")
    if deflate:
        command.append("--deflate")
    child = Child("node-server", command, env=env)
    url = _wait_listening(child)
    if url is None:
        return None
    port = _port(url)
    return _checked(Server([child], f"node-ws {version}", f"ws://{HOST}:{port}/", f"http://{HOST}:{port}"))


def start_reference_server(pinning: Pinning, processes: int = 1) -> Server:
    """``processes`` reference servers on one port (``--reuse-port`` when more than one)."""
    first = _reference_child(pinning, 0, reuse_port=processes > 1)
    url = _wait_listening(first)
    if url is None:
        raise RuntimeError("the reference server did not start")
    children = [first]
    port = _port(url)
    for number in range(1, processes):
        child = _reference_child(pinning, port, reuse_port=True, name=f"reference-server-{number}")
        if _wait_listening(child) is None:
            raise RuntimeError(f"reference server {number} did not start")
        children.append(child)
    kind = "wslocust reference" + (f" x{processes} (--reuse-port)" if processes > 1 else "")
    return _checked(Server(children, kind, url, f"http://{HOST}:{port}"))


def _reference_child(pinning: Pinning, port: int, reuse_port: bool, name: str = "reference-server") -> Child:
    command = [*pinning.server, sys.executable, "-m", "wslocust", "serve", "--host", HOST, "--port", str(port)]
    if reuse_port:
        command.append("--reuse-port")
    return Child(name, command, cwd=BENCHMARKS.parent)


def _wait_listening(child: Child) -> str | None:
    url = child.wait_for("LISTENING", SERVER_START_TIMEOUT)
    if url is None:
        log(f"{child.name} did not announce its port within {SERVER_START_TIMEOUT:g} s:\n{child.output()}")
        child.stop()
    return url


def _port(url: str) -> int:
    match = re.search(r":(\d+)", url.split("//", 1)[1])
    assert match is not None, url
    return int(match.group(1))


def _checked(server: Server) -> Server:
    if len(server.children) == 1 and server.stats() is None:
        log(f"WARNING: {server.http_base}/stats does not answer: only the generators count messages")
    return server


def ensure_ws_package(npm: str) -> str | None:
    """The installed ``ws`` version, installing it into benchmarks/.node/ on first use."""
    manifest = NODE_DIR / "node_modules" / "ws" / "package.json"
    if not manifest.exists():
        log(f"first run: installing the Node.js package {WS_PACKAGE} with npm into {NODE_DIR} (gitignored)")
        NODE_DIR.mkdir(exist_ok=True)
        try:
            subprocess.run(
                [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--loglevel=error", WS_PACKAGE],
                check=True,
                timeout=NPM_TIMEOUT,
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            log(f"npm install {WS_PACKAGE} failed: {exc}")
            return None
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None
