"""
``hold-10k``: hold 10,000 connections with one echo per connection every 5 s.

One generator process (a single ``locust --headless``, pinned to the generator
CPU) opens ``--connections`` connections at ``--spawn-rate`` per second to
the reference server (``wslocust serve``, pinned to the other CPU), then holds
them. Variants, side by side:

- ``wslocust-user``: a task-less ``WebSocketUser`` with
  ``--ws-message-interval`` = ``--interval`` (wslocust's open-loop schedule);
- ``locust-websocket-client``: the typical plain user, one greenlet per user
  blocking in ``recv()`` and a task sending one echo every ``--interval``;
- on request (``--variants``), ``wslocust-user`` with its housekeeping changed
  by a benchmark-only switch: ``wslocust-user-quiet`` without wslocust's
  once-a-second sampling and console lines (``WSLOCUST_BENCH_HOUSEKEEPING=off``),
  ``wslocust-user-sampling-on-loop`` reading ``/proc`` on the event loop
  rather than in gevent's thread pool (``WSLOCUST_BENCH_SAMPLING=loop``).

Measured: RSS of the generator's whole process tree at ``test_start`` (0
users; the probe reads it in-process) and its peak over the run, RSS per
connection = (peak - idle) / connections open, the ramp time (from
``test_start`` to every connection open, as the server counts them), CPU %
over a ``--hold`` window that starts ``--settle`` seconds after the ramp
(CPU-seconds / wall seconds, 100 % = one core), connects failed, and the
echoes the generator counted in the window against the server's counters.
For the wslocust variants, the event-loop lag over the hold window
(``wslocust.run.loop_lag``, read from the generator at the window's edges):
its time-weighted p99, the longest stall, and the share of time the loop was busy.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

from ..generators import LOCUST_VARIANTS, Generator, locust_command
from ..measure import Context, run_variants, window_figures
from ..processes import log
from ..profiling import finish_profiler, start_profiler
from ..report import VARIANT_COLUMN, Column, header, ratio, report
from ..servers import Server, start_reference_server

__all__ = ["add_arguments", "run"]

NAME = "hold-10k"
VARIANTS = ("wslocust-user", "locust-websocket-client", "wslocust-user-quiet", "wslocust-user-sampling-on-loop")
DEFAULT_VARIANTS = VARIANTS[:2]
HOUSEKEEPING = {
    "wslocust-user-quiet": {"WSLOCUST_BENCH_HOUSEKEEPING": "off"},
    "wslocust-user-sampling-on-loop": {"WSLOCUST_BENCH_SAMPLING": "loop"},
}
"""The ``wslocust-user`` variants that change its housekeeping: their environment (``wslocust.reporting.live``)."""
TARGET_RSS_MB = 150
TARGET_CPU_PERCENT = 8.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=10_000, help="connections held (default: 10000)")
    parser.add_argument(
        "--spawn-rate", type=float, default=1000.0, help="connections opened per second (default: 1000)"
    )
    parser.add_argument(
        "--interval", type=float, default=5.0, help="seconds between echoes per connection (default: 5)"
    )
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds between the end of the ramp and the hold window (default: 5)"
    )
    parser.add_argument("--hold", type=float, default=30.0, help="measured seconds of holding (default: 30)")
    parser.add_argument(
        "--servers", type=int, default=1, help="reference server processes, --reuse-port when > 1 (default: 1)"
    )
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (default: 64)")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="sample each generator with py-spy during its hold window into DIR"
    )
    parser.add_argument(
        "--variants",
        default=",".join(DEFAULT_VARIANTS),
        help=f"comma-separated, from {', '.join(VARIANTS)} (default: {','.join(DEFAULT_VARIANTS)})",
    )


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    server = start_reference_server(context.pinning, args.servers)
    print(header(context.pinning.description, server.kind))
    if args.servers > 1:
        log("with several server processes GET /stats reaches one of them: echoes are counted by the generator only")
    detail = (
        f"{args.connections} connections at {args.spawn_rate:g}/s, one echo every {args.interval:g} s, "
        f"{args.settle:g} s settle + {args.hold:g} s hold window"
    )
    results = run_variants(NAME, detail, server, _run_variant, args, context, idle_timeout=120.0)
    title = (
        f"hold-10k: {args.connections:,} connections, one {args.size}-byte echo every {args.interval:g} s each, "
        f"{args.hold:g} s hold window"
    )
    return report(NAME, title, COLUMNS, results, NOTES + _verdict(results))


COLUMNS = (
    VARIANT_COLUMN,
    Column("open", "connections_open"),
    Column("failed", "connects_failed"),
    Column("ramp s", "ramp_s", "f1"),
    Column("idle MB", "generator_idle_rss", "mb"),
    Column("peak MB", "generator_peak_rss", "mb"),
    Column("KB/conn", "rss_kb_per_connection", "f1"),
    Column("hold CPU %", "generator_cpu_share", "pct"),
    Column("ramp CPU %", "generator_ramp_cpu_share", "pct"),
    Column("echoes/s", "generator_echoes_per_s", "f1"),
    Column("srv msgs/s", "server_msgs_per_s", "f1"),
    Column("echo fails", "generator_failures"),
    Column("srv %", "server_cpu_share", "pct"),
    Column("core %", "generator_core_busy_share", "pct"),
    Column("lag p99 ms", "loop_lag_p99_ms", "f3"),
    Column("lag max ms", "loop_lag_max_ms", "f3"),
    Column("loop busy %", "loop_busy_percent", "f1"),
)
NOTES = """\
idle MB: the generator's RSS at test_start, 0 users; peak MB: the peak RSS of its whole process tree
over the run; KB/conn = (peak - idle) / open connections. hold CPU %: CPU-seconds of the generator
per wall second over the hold window (100 = one core); ramp CPU %: the same during the ramp.
echoes/s (generator) against srv msgs/s (the server's counters): equal but for messages in flight.
core %: how busy the generator's CPU was, other processes included. lag p99 / max: the event-loop
lag of the wslocust generator over the hold window (time-weighted p99; the longest stall), loop busy %:
the share of the window its loop was not waiting for events (wslocust.run.loop_lag)."""


def _run_variant(variant: str, server: Server, args: argparse.Namespace, context: Context) -> dict[str, Any]:
    ramp_bound = args.connections / args.spawn_rate + 60
    bound = ramp_bound + args.settle + args.hold + 60
    json_file = context.workdir / f"{NAME}-{variant}.json"
    kind = "wslocust-user" if variant in HOUSEKEEPING else variant
    assert kind in LOCUST_VARIANTS
    command = locust_command(
        kind, "periodic", server.url, args.connections, args.spawn_rate, bound, json_file,
        size=args.size, interval=args.interval,
    )  # fmt: skip
    switches = HOUSEKEEPING.get(variant, {})
    os.environ.update(switches)  # the generator's environment is a copy of this process's, taken now
    try:
        generator = Generator(kind, command, context.pinning.generator, context.workdir, json_file, label=variant)
    finally:
        for name in switches:
            os.environ.pop(name, None)
    profiler = None
    try:
        generator.wait_started()
        ramp_start_cpu = generator.tree.cpu_seconds()
        opened = generator.wait_connected(server, args.connections, ramp_bound)
        ramp_cpu = generator.tree.cpu_seconds() - ramp_start_cpu
        time.sleep(args.settle)
        if args.profile:
            profiler = start_profiler(variant, generator.child.pid, args.profile, args.hold, context.pinning)
        before = generator.snapshot(server)
        time.sleep(args.hold)
        after = generator.snapshot(server)
        connections_open = (after.server or {}).get("connections_open", opened["connections"])
    finally:
        if profiler is not None:
            finish_profiler(variant, profiler, args.profile, args.hold)
        generator.stop()
    figures = window_figures(before, after, context.pinning)
    peak, idle = generator.peak_rss(), generator.idle_rss
    expected = connections_open / args.interval
    result = {
        "variant": variant,
        "server": server.kind,
        "connections": args.connections,
        "connections_open": connections_open,
        "connects_failed": after.counts.get("connect_failures", opened.get("failed")),
        "ramp_s": round(opened["ready_s"], 2),
        "generator_ramp_cpu_share": round(ramp_cpu / opened["ready_s"], 4) if opened["ready_s"] else None,
        "generator_idle_rss": idle,
        "generator_peak_rss": peak,
        "rss_kb_per_connection": round((peak - idle) / 1024 / connections_open, 2)
        if idle and connections_open
        else None,
        **figures,
        **_loop_lag(before.counts.get("loop_lag"), after.counts.get("loop_lag")),
        "expected_echoes_per_s": round(expected, 1),
        "echo_rate_vs_expected": ratio(figures["generator_echoes_per_s"], expected, 3),
    }
    if result["connects_failed"] or figures["generator_failures"]:
        result["first_error"] = after.counts.get("first_error")
    if figures["server_messages"] is not None and abs(figures["server_messages"] - figures["generator_echoes"]) > max(
        connections_open // 50, 20
    ):
        log(
            f"WARNING: {variant}: the server echoed {figures['server_messages']} messages in the window, "
            f"the generator counted {figures['generator_echoes']}"
        )
    return result


@cache
def _loop_lag_module() -> Any:
    # wslocust.run.loop_lag by its path: importing the package would import Locust, which
    # would monkey-patch this process. The module itself needs gevent only.
    path = Path(__file__).resolve().parents[2] / "wslocust" / "run" / "loop_lag.py"
    spec = importlib.util.spec_from_file_location("_bench_loop_lag", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _loop_lag(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, Any]:
    """The generator's event-loop lag over the window, from its probe's totals at both edges (wslocust only)."""
    if not before or not after:
        return {}
    lag = _loop_lag_module().figures_between(before, after)
    return {
        "loop_lag_p99_ms": lag["p99"],
        "loop_lag_max_ms": lag["max"],
        "loop_lag_worst_window_p99_ms": lag["worst_p99"],
        "loop_busy_percent": lag["busy"],
        "loop_lagged_windows": lag["lagged_windows"],
        "loop_iterations_per_s": lag["iterations_per_s"],
    }


def _verdict(results: list[dict[str, Any]]) -> str:
    user = next((r for r in results if r["variant"] == "wslocust-user" and "error" not in r), None)
    if user is None:
        return ""
    rss_mb = user["generator_peak_rss"] / 2**20
    cpu = 100 * user["generator_cpu_share"]
    rss_met = "met" if rss_mb <= TARGET_RSS_MB else "MISSED"
    cpu_met = "met" if cpu <= TARGET_CPU_PERCENT else "MISSED"
    return (
        f"\ntarget 2: wslocust-user peak RSS {rss_mb:.1f} MB (target <= {TARGET_RSS_MB} MB): {rss_met}; "
        f"CPU while holding {cpu:.1f} % (target <= {TARGET_CPU_PERCENT:g} %): {cpu_met}"
    )
