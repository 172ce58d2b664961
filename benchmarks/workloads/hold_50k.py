"""
``hold-50k``: hold 50,000 connections from this machine.

A headless Locust master with ``--workers`` forked worker processes
(``--processes``) runs ``locustfiles/echo.py``: every connection holds and
sends one 64-byte message every ``--message-interval`` ms (30 s), bound in
turn to the ``--source-addresses`` (past the ~28,000 connections one source
address holds to one server address and port). The target is the reference
server as ``--servers`` processes sharing one port with ``--reuse-port``
(each process may open at most ``ulimit -Hn`` files). Connections ramp up at
``--spawn-rate`` per second, then are held for ``--hold`` seconds. Not
pinned: the master, the workers and the servers share every CPU.

Once a second it samples the established connections on the server port
(``ss``, the kernel's count) and the RSS and CPU time of every process. At
the end it prints peak RSS per worker and in total, the connect rate, CPU %
during the ramp and during the hold, and the failures, checked against the
servers' own counters (each prints them on SIGTERM), one figure a line,
then one ``RESULT {json}`` line. About 5 minutes with the defaults; not part
of ``all`` unless ``--include-50k``. All traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from ..generators import REPO_ROOT, generator_environment, locust_percentile, processes_options
from ..measure import Context, attempt
from ..processes import (
    STOP_TIMEOUT,
    CapturedProcess,
    Child,
    Pinning,
    ProcessTree,
    json_documents,
    log,
    raise_open_files_limit,
    wait_until,
)
from ..report import emit_results, header
from ..servers import Server, start_reference_server

__all__ = ["add_arguments", "run"]

NAME = "hold-50k"
VARIANTS = ("wslocust-user",)
LOCUSTFILE = REPO_ROOT / "locustfiles" / "echo.py"
NOT_PINNED = Pinning([], [], "not pinned: master, workers and servers share every CPU")
START_TIMEOUT = 30.0
RAMP_SLACK = (3.0, 0.1)
"""Seconds, and a share of the nominal ramp, that Locust's run time adds for a ramp that runs late
(100,000 at 300/s: 337 s for a nominal 333 s), so that the hold is measured whole."""
"""Seconds the workers may take to fork, and the servers to print their counters once stopped."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=50_000, help="connections held (default: 50000)")
    parser.add_argument("--workers", type=int, default=4, help="Locust worker processes (default: 4)")
    parser.add_argument("--servers", type=int, default=4, help="reference server processes (default: 4)")
    parser.add_argument(
        "--source-addresses", default="127.0.0.2-127.0.0.5", help="--ws-source-addresses (default: %(default)s)"
    )
    parser.add_argument("--spawn-rate", type=float, default=250.0, help="connections per second (default: 250)")
    parser.add_argument("--hold", type=float, default=120.0, help="seconds to hold them all (default: 120)")
    parser.add_argument("--message-interval", type=float, default=30_000.0, help="ms (default: 30000)")
    parser.add_argument("--locust-log", type=Path, help="write Locust's log (stderr) to this file")


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    print(header(NOT_PINNED.description))
    figures = attempt("wslocust-user", _hold, args, context)
    if "error" in figures:
        result = figures
    else:
        for key, value in figures.items():
            print(f"{key:34} {'not measured' if value is None else value}")
        held = _all_held(figures)
        result = {"variant": "wslocust-user", **figures, "exit_code": 0 if held else 1}
        if not held:
            result["error"] = "not every connection held, or failures"
    emit_results(NAME, [result])
    return [result]


def _all_held(figures: dict[str, Any]) -> bool:
    return (
        figures["peak_open"] >= figures["connections"]
        and figures["connect_failures"] == 0
        and figures["echo_failures"] == 0
    )


# The run ---------------------------------------------------------------------


@dataclass
class Sample:
    time: float
    open: int
    """Connections established on the server port (the kernel's count)."""
    rss: dict[int, int]
    cpu: dict[int, float]
    """CPU-seconds by pid."""


@dataclass
class Watch:
    """What the sampler saw."""

    samples: list[Sample] = field(default_factory=list)
    roles: dict[int, str] = field(default_factory=dict)
    """pid -> "master", "worker N" or "server N"."""


def _hold(args: argparse.Namespace, context: Context) -> dict[str, Any]:
    """Run the servers and Locust, sample them, and return the figures (RuntimeError if they cannot start)."""
    limit = raise_open_files_limit()
    per_worker = math.ceil(args.connections / args.workers) + 100
    per_server = math.ceil(args.connections / args.servers * 1.1) + 100  # SO_REUSEPORT spreads by hash
    if max(per_worker, per_server) > limit:
        raise RuntimeError(
            f"{max(per_worker, per_server)} open files per process needed, the hard limit is {limit}: "
            "use more --workers / --servers"
        )
    ramp = args.connections / args.spawn_rate
    run_time = math.ceil(ramp + args.hold + RAMP_SLACK[0] + RAMP_SLACK[1] * ramp)
    watch = Watch()
    servers = start_reference_server(NOT_PINNED, args.servers)
    try:
        port = int(servers.http_base.rsplit(":", 1)[1])
        for number, child in enumerate(servers.children):
            watch.roles[child.pid] = f"server {number}"
        locust = _start_locust(args, servers.url, run_time, context.workdir)
        try:
            _name_locust_processes(locust, args.workers, watch)
            log(
                f"{NAME}: {args.connections} connections at {args.spawn_rate:g}/s from {args.workers} workers "
                f"({args.source_addresses}) to {args.servers} server processes on port {port}; run time {run_time} s"
            )
            sampler = _Sampler(watch, port)
            try:
                while not _exited(locust, 10.0):
                    if watch.samples:
                        log(f"{NAME}: {watch.samples[-1].open} open")
            finally:
                sampler.stop()
        finally:
            locust.stop(STOP_TIMEOUT)
    finally:
        servers.stop()
    if args.locust_log:
        args.locust_log.write_text(locust.stderr)
    return _figures(args, watch, _servers_counters(servers), locust)


def _start_locust(args: argparse.Namespace, url: str, run_time: int, workdir: Path) -> CapturedProcess:
    """
    The headless master and its forked workers, output in files: Locust's ``--json`` statistics,
    thousands of lines with one document per process, are read whole at the end.
    """
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--json",
        *processes_options(args.workers),
        "-u", str(args.connections), "-r", f"{args.spawn_rate:g}", "-t", f"{run_time}s",
        "--stop-timeout", str(_stop_timeout(args.connections)),
        "--host", url, "--ws-message-interval", f"{args.message_interval:g}",
        "--ws-source-addresses", args.source_addresses,
    ]  # fmt: skip
    return CapturedProcess("hold-50k-locust", command, env=generator_environment(), cwd=workdir, folder=workdir)


def _stop_timeout(connections: int) -> int:
    """
    Seconds the master waits for its workers to stop (and then for their last reports): a second per
    thousand connections, at least 30. Stopping closes every connection at once; with the workers and
    the servers sharing two CPUs, 100,000 took over 80 s, and a master that stops waiting first prints
    totals without the closes of the workers it did not hear from.
    """
    return max(30, math.ceil(connections / 1000))


def _exited(process: CapturedProcess, timeout: float) -> bool:
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True


def _name_locust_processes(locust: CapturedProcess, workers: int, watch: Watch) -> None:
    """Wait until the master forked its workers, and give each its role."""
    tree = ProcessTree(locust.pid)

    def forked() -> list[psutil.Process]:
        if not locust.running():
            raise RuntimeError(f"Locust exited before its workers started\n{locust.output(tail=40)}")
        members = tree.members()
        return members if len(members) > workers else []

    members = wait_until(forked, START_TIMEOUT)
    if members is None:
        raise RuntimeError(f"the workers did not start within {START_TIMEOUT:g} s\n{locust.output(tail=40)}")
    watch.roles[locust.pid] = "master"
    for number, worker in enumerate(sorted(members[1:], key=lambda process: process.pid)):
        watch.roles[worker.pid] = f"worker {number}"


class _Sampler:
    """In a thread, once a second: the connections open on the server port, RSS and CPU of every process."""

    def __init__(self, watch: Watch, port: int) -> None:
        self.watch = watch
        self.port = port
        self.processes = {pid: psutil.Process(pid) for pid in watch.roles}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hold-50k-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            rss, cpu = {}, {}
            for pid, process in self.processes.items():
                try:
                    with process.oneshot():
                        rss[pid] = process.memory_info().rss
                        times = process.cpu_times()
                        cpu[pid] = times.user + times.system
                except psutil.Error:
                    continue
            self.watch.samples.append(Sample(time.monotonic(), _established(self.port), rss, cpu))
            self._stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def _established(port: int) -> int:
    listed = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=False
    )
    return listed.stdout.count("\n")


def _servers_counters(servers: Server) -> dict[str, int]:
    """The servers' counters summed: each prints them as its last line of JSON once stopped."""
    totals = dict.fromkeys(("connections_accepted", "messages_received", "messages_sent"), 0)
    for child in servers.children:
        # Its stdout is read by a thread, which may not have reached the last line when the child exits.
        counters = wait_until(partial(_last_json_line, child), START_TIMEOUT)
        if counters is None:
            log(f"WARNING: {child.name} printed no counters: the servers' totals miss its own")
            continue
        for key in totals:
            totals[key] += counters[key]
    return totals


def _last_json_line(child: Child) -> dict[str, Any] | None:
    lines = [line for line in child.output().splitlines() if line.startswith('{"')]
    return json.loads(lines[-1]) if lines else None


# The figures -------------------------------------------------------------------


def _figures(args: argparse.Namespace, watch: Watch, truth: dict[str, int], locust: CapturedProcess) -> dict[str, Any]:
    log_lines = locust.lines("stderr")
    stats = _locust_statistics(locust.stdout)
    samples = watch.samples
    peak_open = max((s.open for s in samples), default=0)
    first = next((s.time for s in samples if s.open > 0), math.nan)
    full = next((s.time for s in samples if s.open >= args.connections), math.nan)
    hold_end = full + args.hold if not math.isnan(full) else math.nan
    held = [s.open for s in samples if not math.isnan(full) and full <= s.time <= hold_end]
    rates = [(b.open - a.open) / (b.time - a.time) for a, b in itertools.pairwise(samples) if b.time <= full]
    peak_rss = {role: max((s.rss.get(pid, 0) for s in samples), default=0) for pid, role in watch.roles.items()}
    workers = {role: rss for role, rss in sorted(peak_rss.items()) if role.startswith("worker")}

    def peak_total(roles: str) -> int:
        return max(
            (sum(v for pid, v in s.rss.items() if watch.roles[pid].startswith(roles)) for s in samples), default=0
        )

    def cpu(roles: str, start: float, end: float) -> float | None:
        percent = _cpu_percent(watch, start, end, roles)
        return None if percent is None else round(percent, 1)

    # A ramp that fell between two samples (a tiny run) is not measured: 0.0 s would be false.
    ramp_measured = full > first

    connect = stats.get("connect", {})
    echo = stats.get("echo", {})
    return {
        "connections": args.connections,
        "workers": args.workers,
        "servers": args.servers,
        "source_addresses": args.source_addresses,
        "peak_open": peak_open,
        "held_min": min(held, default=0),
        "held_seconds": round(args.hold if held else 0),
        "ramp_seconds": round(full - first, 1) if ramp_measured else None,
        "connect_rate_mean": round(args.connections / (full - first), 1) if held and ramp_measured else None,
        "connect_rate_peak_1s": round(max(rates, default=0), 1),
        "peak_rss_mb_per_worker": {role: _mb(rss) for role, rss in workers.items()},
        "peak_rss_mb_workers_total": _mb(peak_total("worker")),
        "peak_rss_mb_master": _mb(peak_rss.get("master", 0)),
        "peak_rss_mb_servers_total": _mb(peak_total("server")),
        "peak_rss_mb_everything": _mb(peak_total("")),
        "rss_kb_per_connection_workers": round(peak_total("worker") / 1024 / max(peak_open, 1), 1),
        "cpu_percent_workers_ramp": cpu("worker", first, full) if ramp_measured else None,
        "cpu_percent_workers_hold": cpu("worker", full, hold_end),
        "cpu_percent_master_hold": cpu("master", full, hold_end),
        "cpu_percent_servers_ramp": cpu("server", first, full) if ramp_measured else None,
        "cpu_percent_servers_hold": cpu("server", full, hold_end),
        "connects": connect.get("num_requests"),
        "connect_failures": connect.get("num_failures"),
        "echoes": echo.get("num_requests"),
        "echo_failures": echo.get("num_failures"),
        "echo_p50_ms": locust_percentile(echo, 0.5),
        "echo_p99_ms": locust_percentile(echo, 0.99),
        "server_connections_accepted": truth["connections_accepted"],
        "server_messages_received": truth["messages_received"],
        "server_messages_sent": truth["messages_sent"],
        "websocket_results": _results_block(log_lines),
        "errors": [line for line in log_lines if re.match(r"^\s*\d+\s+WS ", line)],
        "locust_exit_code": locust.returncode,
        "load_average": os.getloadavg(),
    }


def _mb(rss: int) -> float:
    return round(rss / 2**20, 1)


def _locust_statistics(stdout: str) -> dict[str, dict[str, Any]]:
    """The master's ``--json`` entries by request name, from every process's document on stdout."""
    documents = json_documents(stdout)
    # With --processes, every worker prints its own (small) --json too: the master's has the most requests.
    entries = max(
        documents, key=lambda d: sum(e.get("num_requests", 0) for e in d) if isinstance(d, list) else -1, default=[]
    )
    return {entry["name"]: entry for entry in entries}


def _results_block(log_lines: list[str]) -> list[str]:
    """wslocust's "WebSocket results" block at the end of Locust's log."""
    start = next((i for i, line in enumerate(log_lines) if line == "WebSocket results"), None)
    if start is None:
        return []
    return [line.strip() for line in itertools.takewhile(str.strip, log_lines[start + 1 :])]


def _cpu_percent(watch: Watch, start: float, end: float, roles: str) -> float | None:
    """CPU % (100 = one core) of the processes whose role starts with ``roles``, between two times (None: under two samples)."""
    window = [s for s in watch.samples if start <= s.time <= end]
    if len(window) < 2:
        return None
    first, last = window[0], window[-1]
    used = sum(
        last.cpu[pid] - first.cpu[pid]
        for pid, role in watch.roles.items()
        if role.startswith(roles) and pid in first.cpu and pid in last.cpu
    )
    return 100.0 * used / (last.time - first.time)
