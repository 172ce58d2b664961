"""
Hold 50,000 WebSocket connections from one machine.

A headless Locust master with ``--workers`` forked worker processes
(``--processes``) runs ``locustfiles/echo.py``: every connection holds and
sends one 64-byte message every ``--message-interval`` ms (30 s), bound in
turn to the ``--source-addresses`` (past the ~28,000 connections one source
address holds to one server address and port). The target is the reference
server as ``--servers`` processes sharing one port with ``--reuse-port``
(each process may open at most ``ulimit -Hn`` files). Connections ramp up at
``--spawn-rate`` per second, then are held for ``--hold`` seconds.

Once a second it samples the established connections on the server port
(``ss``, the kernel's count) and the RSS and CPU time of every process. At
the end it prints peak RSS per worker and in total, the connect rate, CPU %
during the ramp and during the hold, and the failures, checked against the
servers' own counters (each prints them on SIGTERM).

    .venv/bin/python benchmarks/hold_50k.py                       # the README's figures (~5 min)
    .venv/bin/python benchmarks/hold_50k.py --connections 2000 --hold 20 --workers 2 --servers 2

All traffic stays on 127.0.0.0/8. Every process is stopped at the end, on errors and Ctrl-C too.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Child:
    """A child process whose output is collected line by line."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.popen = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        for pipe, lines in ((self.popen.stdout, self.stdout), (self.popen.stderr, self.stderr)):
            threading.Thread(target=self._collect, args=(pipe, lines), daemon=True).start()

    @staticmethod
    def _collect(pipe: IO[str], lines: list[str]) -> None:
        for line in pipe:
            lines.append(line.rstrip("\n"))

    def stop(self, timeout: float = 30.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Sample:
    t: float
    open: int
    rss: dict[int, int]
    cpu: dict[int, float]


@dataclass
class Watch:
    """What the sampler saw."""

    samples: list[Sample] = field(default_factory=list)
    roles: dict[int, str] = field(default_factory=dict)
    """pid -> "master", "worker N" or "server N"."""


def established(port: int) -> int:
    listed = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=False
    )
    return listed.stdout.count("\n")


def sample_forever(watch: Watch, port: int, pids: dict[int, psutil.Process], stop: threading.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        rss, cpu = {}, {}
        for pid, process in list(pids.items()):
            try:
                with process.oneshot():
                    rss[pid] = process.memory_info().rss
                    times = process.cpu_times()
                    cpu[pid] = times.user + times.system
            except psutil.Error:
                continue
        watch.samples.append(Sample(time.monotonic(), established(port), rss, cpu))
        stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def cpu_percent(watch: Watch, start: float, end: float, roles: str) -> float:
    """CPU % (100 = one core) of the processes whose role starts with ``roles``, between two times."""
    window = [s for s in watch.samples if start <= s.t <= end]
    if len(window) < 2:
        return float("nan")
    first, last = window[0], window[-1]
    used = sum(
        last.cpu[pid] - first.cpu[pid]
        for pid, role in watch.roles.items()
        if role.startswith(roles) and pid in first.cpu and pid in last.cpu
    )
    return 100.0 * used / (last.t - first.t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4, help="Locust worker processes (default: %(default)s)")
    parser.add_argument("--servers", type=int, default=4, help="reference server processes (default: %(default)s)")
    parser.add_argument("--source-addresses", default="127.0.0.2-127.0.0.5")
    parser.add_argument("--spawn-rate", type=float, default=250.0, help="connections per second (default: %(default)s)")
    parser.add_argument("--hold", type=float, default=120.0, help="seconds to hold them all (default: %(default)s)")
    parser.add_argument("--message-interval", type=float, default=30_000.0, help="ms (default: %(default)s)")
    parser.add_argument("--json-out", type=Path, help="also write the figures to this file as JSON")
    parser.add_argument("--locust-log", type=Path, help="write Locust's log (stderr) to this file")
    args = parser.parse_args(argv)

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    per_worker = math.ceil(args.connections / args.workers) + 100
    per_server = math.ceil(args.connections / args.servers * 1.1) + 100  # SO_REUSEPORT spreads by hash
    if max(per_worker, per_server) > hard:
        print(f"hold_50k: {max(per_worker, per_server)} open files per process needed, the hard limit is {hard}: "
              f"use more --workers / --servers", file=sys.stderr)  # fmt: skip
        return 2
    port, master_port = free_port(), free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    env = {k: v for k, v in os.environ.items() if k not in ("WS_SERVER_URL", "WORKERS", "MESSAGE_INTERVAL")}
    env["PYTHONUNBUFFERED"] = "1"
    ramp = args.connections / args.spawn_rate
    run_time = math.ceil(ramp + args.hold + 15)

    children: list[Child] = []
    stop_sampling = threading.Event()
    watch = Watch()
    try:
        for n in range(args.servers):
            server = Child(f"server {n}", [PYTHON, "-m", "wslocust", "serve", "--port", str(port), "--reuse-port"], env)
            children.append(server)
            watch.roles[server.popen.pid] = f"server {n}"
        deadline = time.monotonic() + 30
        while not all(any("listening on" in line for line in child.stdout) for child in children):
            if time.monotonic() > deadline:
                raise RuntimeError("the servers did not start:\n" + "\n".join(c.stderr[-5:][0] for c in children))
            time.sleep(0.1)
        locust = Child(
            "locust",
            [PYTHON, "-m", "locust", "-f", "locustfiles/echo.py", "--headless", "--json",
             "--processes", str(args.workers), "--master-bind-host", "127.0.0.1",
             "--master-bind-port", str(master_port), "--master-port", str(master_port),
             "-u", str(args.connections), "-r", str(args.spawn_rate), "-t", f"{run_time}s", "--stop-timeout", "30",
             "--host", url, "--ws-message-interval", f"{args.message_interval:g}",
             "--ws-source-addresses", args.source_addresses],
            env,
        )  # fmt: skip
        children.append(locust)
        master = psutil.Process(locust.popen.pid)
        watch.roles[master.pid] = "master"
        deadline = time.monotonic() + 30
        while len(master.children()) < args.workers:
            if time.monotonic() > deadline or locust.popen.poll() is not None:
                raise RuntimeError("the workers did not start:\n" + "\n".join(locust.stderr[-20:]))
            time.sleep(0.1)
        for n, child in enumerate(sorted(master.children(), key=lambda p: p.pid)):
            watch.roles[child.pid] = f"worker {n}"
        processes = {pid: psutil.Process(pid) for pid in watch.roles}
        sampler = threading.Thread(target=sample_forever, args=(watch, port, processes, stop_sampling), daemon=True)
        sampler.start()
        print(f"{args.connections} connections at {args.spawn_rate:g}/s from {args.workers} workers "
              f"({args.source_addresses}) to {args.servers} server processes on port {port}; run time {run_time} s",
              file=sys.stderr, flush=True)  # fmt: skip
        last_print = 0.0
        while locust.popen.poll() is None:
            time.sleep(1)
            if watch.samples and time.monotonic() - last_print >= 10:
                last_print = time.monotonic()
                print(f"  {watch.samples[-1].open} open", file=sys.stderr, flush=True)
        locust.popen.wait()
        stop_sampling.set()
        sampler.join(timeout=5)
    finally:
        stop_sampling.set()
        for child in reversed(children):
            child.stop()
    time.sleep(0.5)  # the readers collect the last lines

    if args.locust_log:
        args.locust_log.write_text("\n".join(locust.stderr) + "\n")
    errors = [line for line in locust.stderr if re.match(r"^\s*\d+\s+WS ", line)]

    # Figures ------------------------------------------------------------------------------
    servers = [json.loads(next(line for line in reversed(c.stdout) if line.startswith("{"))) for c in children[:-1]]
    truth = {
        key: sum(s[key] for s in servers) for key in ("connections_accepted", "messages_received", "messages_sent")
    }
    decoder, text, index, documents = json.JSONDecoder(), "\n".join(locust.stdout), 0, []
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    # With --processes, every worker prints its own (small) --json too: the master's has the most requests.
    entries = max(
        documents, key=lambda d: sum(e.get("num_requests", 0) for e in d) if isinstance(d, list) else -1, default=[]
    )
    stats = {entry["name"]: entry for entry in entries}
    start = next((i for i, line in enumerate(locust.stderr) if line == "WebSocket results"), None)
    results = []
    if start is not None:
        for line in locust.stderr[start + 1 :]:
            if not line.strip():
                break
            results.append(line.strip())
    samples = watch.samples
    peak_open = max((s.open for s in samples), default=0)
    first = next((s.t for s in samples if s.open > 0), math.nan)
    full = next((s.t for s in samples if s.open >= args.connections), math.nan)
    hold_end = full + args.hold if not math.isnan(full) else math.nan
    held = [s.open for s in samples if not math.isnan(full) and full <= s.t <= hold_end]
    rates = [(b.open - a.open) / (b.t - a.t) for a, b in itertools.pairwise(samples) if b.t <= full]
    peak_rss = {role: max((s.rss.get(pid, 0) for s in samples), default=0) for pid, role in watch.roles.items()}
    workers = {role: rss for role, rss in sorted(peak_rss.items()) if role.startswith("worker")}
    total_peak = max((sum(s.rss.values()) for s in samples), default=0)
    workers_total_peak = max(
        (sum(v for pid, v in s.rss.items() if watch.roles[pid].startswith("worker")) for s in samples), default=0
    )
    servers_total_peak = max(
        (sum(v for pid, v in s.rss.items() if watch.roles[pid].startswith("server")) for s in samples), default=0
    )
    connect = stats.get("connect", {})
    echo = stats.get("echo", {})
    figures: dict[str, Any] = {
        "connections": args.connections,
        "workers": args.workers,
        "servers": args.servers,
        "source_addresses": args.source_addresses,
        "peak_open": peak_open,
        "held_min": min(held, default=0),
        "held_seconds": round(args.hold if held else 0),
        "ramp_seconds": round(full - first, 1),
        "connect_rate_mean": round(args.connections / (full - first), 1) if held else None,
        "connect_rate_peak_1s": round(max(rates, default=0), 1),
        "peak_rss_mb_per_worker": {role: round(rss / 2**20, 1) for role, rss in workers.items()},
        "peak_rss_mb_workers_total": round(workers_total_peak / 2**20, 1),
        "peak_rss_mb_master": round(peak_rss.get("master", 0) / 2**20, 1),
        "peak_rss_mb_servers_total": round(servers_total_peak / 2**20, 1),
        "peak_rss_mb_everything": round(total_peak / 2**20, 1),
        "rss_kb_per_connection_workers": round(workers_total_peak / 1024 / max(peak_open, 1), 1),
        "cpu_percent_workers_ramp": round(cpu_percent(watch, first, full, "worker"), 1),
        "cpu_percent_workers_hold": round(cpu_percent(watch, full, hold_end, "worker"), 1),
        "cpu_percent_master_hold": round(cpu_percent(watch, full, hold_end, "master"), 1),
        "cpu_percent_servers_ramp": round(cpu_percent(watch, first, full, "server"), 1),
        "cpu_percent_servers_hold": round(cpu_percent(watch, full, hold_end, "server"), 1),
        "connects": connect.get("num_requests"),
        "connect_failures": connect.get("num_failures"),
        "echoes": echo.get("num_requests"),
        "echo_failures": echo.get("num_failures"),
        "echo_p50_ms": _percentile(echo, 0.5),
        "echo_p99_ms": _percentile(echo, 0.99),
        "server_connections_accepted": truth["connections_accepted"],
        "server_messages_received": truth["messages_received"],
        "server_messages_sent": truth["messages_sent"],
        "websocket_results": results,
        "errors": errors,
        "locust_exit_code": locust.popen.returncode,
        "load_average": os.getloadavg(),
    }
    for key, value in figures.items():
        print(f"{key:34} {value}")
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2) + "\n")
    ok = peak_open >= args.connections and figures["connect_failures"] == 0 and figures["echo_failures"] == 0
    return 0 if ok else 1


def _percentile(entry: dict[str, Any], fraction: float) -> float | None:
    """A percentile from Locust's --json response-time histogram (milliseconds, rounded buckets)."""
    histogram = {float(k): v for k, v in (entry.get("response_times") or {}).items()}
    total = sum(histogram.values())
    if not total:
        return None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= fraction * total:
            return value
    return None


if __name__ == "__main__":
    sys.exit(main())
