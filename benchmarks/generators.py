"""
The load generators the workloads compare, and one running generator.

Variants (the names every workload uses):

====================== ======================================================================
websocket-client       ``echo_clients.py``: greenlets on ``websocket.WebSocket()``, no Locust
locust-websocket-client a headless ``locust`` run of ``locustfiles/typical.py``: the typical
                       Locust user, websocket-client in a plain ``locust.User``
wslocust-connection    ``echo_clients.py``: greenlets on ``wslocust.transport.connection.Connection``,
                       no Locust
wslocust-user          a headless ``locust`` run of ``locustfiles/wslocust_users.py``
wslocust-window        the same, closed loop without a task: a task-less user with ``in_flight = 1``
                       sends the next echo from the receive path (no task loop, no greenlet switch)
====================== ======================================================================

:class:`Generator` starts one of them pinned to the generator CPU, samples
its whole process tree, takes :class:`Snapshot` s at the edges of a window,
and after it exits reads Locust's final statistics (``--json-file``) and the
probe's exact response times.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .processes import Child, ProcessTree, TreeSampler, busy_seconds, free_port, log, wait_until
from .servers import Server

__all__ = [
    "ALL_VARIANTS",
    "LOCUST_VARIANTS",
    "Generator",
    "Snapshot",
    "echo_clients_command",
    "generator_environment",
    "locust_command",
    "locust_percentile",
    "pin_processes",
    "processes_options",
]

BENCHMARKS = Path(__file__).resolve().parent
REPO_ROOT = BENCHMARKS.parent
ECHO_CLIENTS = BENCHMARKS / "echo_clients.py"
TYPICAL_LOCUSTFILE = BENCHMARKS / "locustfiles" / "typical.py"
WSLOCUST_LOCUSTFILE = BENCHMARKS / "locustfiles" / "wslocust_users.py"

ALL_VARIANTS = (
    "websocket-client",
    "locust-websocket-client",
    "wslocust-connection",
    "wslocust-user",
    "wslocust-window",
)
LOCUST_VARIANTS = ("locust-websocket-client", "wslocust-user", "wslocust-window")
START_TIMEOUT = 60.0
"""Seconds a generator may take to start (a Locust process imports a lot on a busy machine)."""


def processes_options(processes: int) -> list[str]:
    """Locust's options for a master with ``processes`` forked workers, talking on a free loopback port."""
    port = free_port()
    return [
        "--processes", str(processes), "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
        "--master-port", str(port),
    ]  # fmt: skip


def generator_environment() -> dict[str, str]:
    """This process's environment for a generator: the repository importable, the issue's suite variables gone."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    # The variables the suite reads would change what wslocust does.
    for name in ("WS_SERVER_URL", "MESSAGE_INTERVAL", "WORKERS", "LOCUST_PROCESSES", "WS_TIME_SCALE"):
        env.pop(name, None)
    return env


def echo_clients_command(variant: str, url: str, connections: int, size: int, max_seconds: float) -> list[str]:
    return [
        sys.executable, str(ECHO_CLIENTS), variant, url,
        "--connections", str(connections), "--size", str(size), "--max-seconds", f"{max_seconds:g}",
    ]  # fmt: skip


def locust_command(
    variant: str,
    mode: str,
    url: str,
    users: int,
    spawn_rate: float,
    run_time: float,
    json_file: Path,
    *,
    size: int = 64,
    interval: float | None = None,
    exact: tuple[str, ...] = (),
    processes: int | None = None,
) -> list[str]:
    """
    A headless Locust run of ``variant`` (``locust-websocket-client`` or ``wslocust-user``).

    ``mode`` is ``closed-loop`` (echo after echo) or ``periodic`` (one echo per
    connection every ``interval`` seconds; 0: none, the connections are only held).
    """
    if variant == "wslocust-window" and mode == "closed-loop":
        locustfile, user_class, pacing = WSLOCUST_LOCUSTFILE, "WindowUser", []
    elif variant == "wslocust-user":
        locustfile, user_class = WSLOCUST_LOCUSTFILE, "EchoUser" if mode == "closed-loop" else "HoldUser"
        pacing = ["--ws-message-interval", f"{(interval or 0) * 1000:g}"] if mode == "periodic" else []
    elif variant == "locust-websocket-client":
        locustfile, user_class = TYPICAL_LOCUSTFILE, "ClosedLoopEcho" if mode == "closed-loop" else "PeriodicEcho"
        pacing = ["--bench-interval", f"{interval or 0:g}"] if mode == "periodic" else []
    else:
        raise ValueError(f"{variant!r} is not a Locust variant ({', '.join(LOCUST_VARIANTS)})")
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "-u", str(users), "-r", f"{spawn_rate:g}", "-t", f"{max(1, round(run_time))}s",
        "--host", url, "--exit-code-on-error", "0", "--json-file", str(json_file.with_suffix("")),
        "--bench-size", str(size), *pacing,
    ]  # fmt: skip
    if exact:
        command += ["--bench-exact", ",".join(exact)]
    if processes:
        command += processes_options(processes)
    return [*command, user_class]


def locust_percentile(entry: dict[str, Any], fraction: float) -> float | None:
    """
    A percentile of a ``--json-file`` entry, exactly as Locust computes it
    (``locust.stats.calculate_response_time_percentile``; not imported, since
    importing Locust would monkey-patch this process): the histogram keys are
    the bucketed response times, wslocust's two significant digits below 10 ms
    when wslocust is loaded, whole milliseconds below 100 ms otherwise.
    """
    histogram = {float(key): count for key, count in (entry.get("response_times") or {}).items()}
    total = entry.get("num_requests", 0) - entry.get("num_none_requests", 0)
    if total <= 0 or not histogram:
        return None
    below = int(total * fraction)
    processed = 0
    for value in sorted(histogram, reverse=True):
        processed += histogram[value]
        if total - processed <= below:
            return value
    return 0.0


@dataclass
class Snapshot:
    time: float
    counts: dict[str, Any]
    generator_cpu: float
    generator_cpu_by_pid: dict[int, float]
    server: dict[str, Any] | None
    server_cpu: float
    cpus_busy: list[float]


class Generator:
    """One generator process (and its descendants), pinned, sampled, stopped at the end."""

    def __init__(
        self,
        variant: str,
        command: list[str],
        prefix: list[str],
        workdir: Path,
        json_file: Path | None = None,
        label: str | None = None,
    ) -> None:
        self.variant = label or variant
        """The name in messages: the variant, or ``label`` (e.g. ``wslocust-user x2``)."""
        self.is_locust = variant in LOCUST_VARIANTS
        self.child = Child(self.variant, [*prefix, *command], env=generator_environment(), cwd=workdir)
        self.tree = ProcessTree(self.child.pid)
        self.sampler = TreeSampler(self.tree)
        self.json_file = json_file
        """Where Locust writes its final statistics (``--json-file`` adds ``.json``)."""
        self.idle_rss: int | None = None
        self.started_at: float | None = None
        """When Locust started spawning users (its IDLE line), or when the raw generator started."""
        self.exit_code: int | None = None

    # Start-up ------------------------------------------------------------------

    def wait_started(self) -> None:
        """For a Locust run: wait for ``test_start`` (the IDLE line: RSS with 0 users)."""
        if not self.is_locust:
            self.started_at = self.child.started
            return
        idle = self.child.wait_for_json("IDLE", START_TIMEOUT)
        if idle is None:
            raise RuntimeError(
                f"{self.variant}: Locust did not start within {START_TIMEOUT:g} s\n{self.child.output()}"
            )
        self.started_at = time.monotonic()
        self.idle_rss = int(idle["rss"])

    def wait_connected(self, server: Server, connections: int, timeout: float) -> dict[str, Any]:
        """
        Wait until every connection is open, or every attempt ended: the server's
        ``connections_open`` (or the raw generator's READY line), else the
        generator's own connect counts. Returns ``{"connections", "failed", "ready_s"}``.
        """
        if not self.is_locust:
            ready = self.child.wait_for_json("READY", timeout)
            if ready is None:
                raise RuntimeError(f"{self.variant}: connections not open within {timeout:g} s\n{self.child.output()}")
            return {**ready, "ready_s": time.monotonic() - self.child.started}
        last_count: dict[str, Any] = {}
        next_count = 0.0

        def done() -> bool:
            nonlocal last_count, next_count
            if not self.child.alive:
                raise RuntimeError(f"{self.variant} exited early\n{self.child.output()}")
            stats = server.stats()
            if stats is not None and stats.get("connections_open", 0) >= connections:
                return True
            if time.monotonic() >= next_count:  # SIGUSR1 costs the generator: once a second
                next_count = time.monotonic() + 1.0
                last_count = self.child.count() or last_count
                attempts = last_count.get("connects", 0) + last_count.get("connect_failures", 0)
                return attempts >= connections
            return False

        if wait_until(done, timeout, interval=0.05) is None:
            log(f"WARNING: {self.variant}: not every connection open within {timeout:g} s")
        assert self.started_at is not None
        ready_s = time.monotonic() - self.started_at
        counts = self.child.count() or last_count
        return {
            "connections": counts.get("connects", 0),
            "failed": counts.get("connect_failures", 0),
            "first_error": counts.get("first_error"),
            "ready_s": ready_s,
        }

    def pids(self) -> list[int]:
        return [member.pid for member in self.tree.members()]

    # Windows ---------------------------------------------------------------------

    def snapshot(self, server: Server) -> Snapshot:
        counts = self.child.count()
        if counts is None:
            raise RuntimeError(f"{self.variant} did not report its counts\n{self.child.output()}")
        # The server's counters right after the generator's, so that they differ by as few echoes as can be.
        server_stats = server.stats()
        now = time.monotonic()
        cpu, _, by_pid = self.tree.read()
        if not by_pid:
            raise RuntimeError(f"{self.variant} exited\n{self.child.output()}")
        return Snapshot(now, counts, cpu, by_pid, server_stats, server.cpu_seconds(), busy_seconds())

    # The end -----------------------------------------------------------------------

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the generator to stop by itself (Locust's ``-t``); None if it still runs."""
        self.exit_code = self.child.wait(timeout)
        return self.exit_code

    def stop(self) -> None:
        """Stop it (SIGTERM: Locust stops its users, writes its statistics and quits) and the sampler."""
        self.child.stop()
        self.exit_code = self.child.process.returncode
        self.sampler.stop()
        stderr = self.child.stderr()
        # A run can succeed while the generator logs errors (a failed listener, a dead greenlet).
        if "Traceback" in stderr:
            first = stderr[stderr.index("Traceback") :].splitlines()[:30]
            log(f"WARNING: {self.variant} logged a traceback (the first one follows)\n" + "\n".join(first))

    def final_stats(self) -> dict[str, dict[str, Any]]:
        """Locust's final statistics by request name (from ``--json-file``), after the run."""
        if self.json_file is None or not self.json_file.exists():
            return {}
        entries = json.loads(self.json_file.read_text())
        return {entry["name"]: entry for entry in entries if entry.get("method") == "WS"}

    def exact(self) -> dict[str, Any]:
        """The probe's exact response-time summaries (EXACT line at quit), after the run."""
        return self.child.wait_for_json("EXACT", 1.0) or {}

    def peak_rss(self) -> int:
        return self.sampler.peak_rss

    def output(self) -> str:
        return self.child.output()


def pin_processes(pids: list[int], cpus: list[int]) -> None:
    """Pin each of ``pids`` to one of ``cpus`` in turn (our own children only)."""
    for index, pid in enumerate(pids):
        try:
            os.sched_setaffinity(pid, {cpus[index % len(cpus)]})
        except OSError as exc:
            log(f"WARNING: could not pin pid {pid}: {exc}")
