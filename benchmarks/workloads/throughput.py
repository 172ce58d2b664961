"""
``throughput``: closed-loop echo throughput per generator CPU-second.

``--connections`` connections (default 100), each sending a text message of
``--size`` bytes (default 64) and waiting for its echo before the next,
against the Node.js ``ws`` echo server on the other CPU, for each generator
variant in turn (all four by default), in one invocation so that their ratios
are comparable on a shared, noisy machine. Each variant warms up for
``--warmup`` seconds, then a window of ``--duration`` seconds is measured:
the messages the server echoed (its counters, the truth), the round trips the
generator counted (a cross-check), and the CPU-seconds of the generator's
whole process tree and of the server.

With ``--rounds N`` every variant runs N times, interleaved (every other round
in reverse order); the table shows medians, the RESULT lines every run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

from ..generators import ALL_VARIANTS, Generator, echo_clients_command, locust_command
from ..measure import Context, attempt, cross_check, wait_server_idle, window_figures
from ..processes import log
from ..profiling import finish_profiler, start_profiler
from ..report import VARIANT_COLUMN, Column, header, ratio, report
from ..servers import Server, start_server

__all__ = ["add_arguments", "run"]

NAME = "throughput"
VARIANTS = ALL_VARIANTS
BASELINES = ("locust-websocket-client", "websocket-client")
TARGET = 50_000
"""msgs per generator CPU-second, wslocust-user (the issue's target 1)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per variant (default: 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the window (default: 2)")
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections (default: 100)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (default: 64)")
    parser.add_argument(
        "--variants", default=",".join(ALL_VARIANTS), help=f"comma-separated (default: {','.join(ALL_VARIANTS)})"
    )
    parser.add_argument("--rounds", type=int, default=1, help="run every variant N times, interleaved (default: 1)")
    parser.add_argument(
        "--server", choices=("node", "reference"), default="node", help="echo server (default: node, the fast one)"
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="sample each Python generator with py-spy into DIR")


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    server = start_server(args.server, context.pinning)
    print(header(context.pinning.description, server.kind))
    results: list[dict[str, Any]] = []
    try:
        for round_number in range(1, args.rounds + 1):
            # Every other round in reverse order, so that a drift in the machine's load
            # does not always favour the same variant.
            order = args.variants if round_number % 2 else args.variants[::-1]
            round_results = []
            for variant in order:
                log(
                    f"{NAME} round {round_number}/{args.rounds}, {variant}: {args.connections} connections, "
                    f"{args.size}-byte messages, {args.warmup:g} s warm-up + {args.duration:g} s window"
                )
                wait_server_idle(server)
                result = attempt(variant, _run_variant, variant, server, args, context)
                result["round"] = round_number
                round_results.append(result)
            _add_ratios(round_results)
            results.extend(round_results)
    finally:
        server.stop()
    rows = _summarize(results, args.variants)
    rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
    return report(
        NAME,
        f"throughput: closed-loop echo, {args.connections} connections, {args.size}-byte text messages, "
        f"{args.duration:g} s window{rounds}",
        COLUMNS,
        results,
        NOTES + _verdict(rows),
        rows=rows,
    )


COLUMNS = (
    VARIANT_COLUMN,
    Column("msgs/s", "server_msgs_per_s"),
    Column("echoes/s", "generator_echoes_per_s"),
    Column("fails", "generator_failures"),
    Column("gen CPU-s", "generator_cpu_s", "f2"),
    Column("gen %", "generator_cpu_share", "pct"),
    Column("core %", "generator_core_busy_share", "pct"),
    Column("msgs/gen CPU-s", "msgs_per_generator_cpu_s"),
    Column("srv %", "server_cpu_share", "pct"),
    Column("srv core %", "server_core_busy_share", "pct"),
    Column("x typical", "efficiency_vs_locust_websocket_client", "f2"),
    Column("x raw wsc", "efficiency_vs_websocket_client", "f2"),
)
NOTES = """\
msgs/s: messages the server echoed per second (its counters); echoes/s: round trips the generator
counted (cross-check); fails: failed requests in the window (0 expected). gen % / srv %: CPU-seconds
of the generator's process tree / of the server per second of the window (100 = one core); core %:
how busy that CPU was, other processes included. msgs/gen CPU-s: the figure to compare. x typical /
x raw wsc: msgs/gen CPU-s relative to locust-websocket-client / websocket-client in the same round.
The server is not the limit while srv % stays well below 100."""


def _run_variant(variant: str, server: Server, args: argparse.Namespace, context: Context) -> dict[str, Any]:
    bound = 120 + args.warmup + args.duration  # the generator stops by itself after this, whatever happens
    json_file = context.workdir / f"{NAME}-{variant}.json"
    if variant in ("websocket-client", "wslocust-connection"):
        command = echo_clients_command(variant, server.url, args.connections, args.size, bound)
    else:
        command = locust_command(
            variant, "closed-loop", server.url, args.connections, args.connections, bound, json_file, size=args.size
        )
    generator = Generator(variant, command, context.pinning.generator, context.workdir, json_file)
    profiler = None
    try:
        generator.wait_started()
        opened = generator.wait_connected(server, args.connections, 60.0)
        if opened.get("failed"):
            log(f"{variant}: {opened['failed']} of {args.connections} connections failed: {opened.get('first_error')}")
        time.sleep(args.warmup)
        if args.profile:
            profiler = start_profiler(variant, generator.child.pid, args.profile, args.duration, context.pinning)
        before = generator.snapshot(server)
        time.sleep(args.duration)
        after = generator.snapshot(server)
    finally:
        if profiler is not None:
            finish_profiler(variant, profiler, args.profile, args.duration)
        generator.stop()
    figures = window_figures(before, after, context.pinning)
    cross_check(variant, figures, args.connections)
    if figures["generator_failures"]:
        log(f"WARNING: {variant}: {figures['generator_failures']} failures in the window: {figures.get('first_error')}")
    return {
        "variant": variant,
        "server": server.kind,
        # The server's count: the generator's may lag the server's by the upgrades it is still reading.
        "connections": (before.server or {}).get("connections_open", opened.get("connections")),
        "size": args.size,
        **figures,
        "generator_peak_rss": generator.peak_rss(),
    }


def _add_ratios(results: list[dict[str, Any]]) -> None:
    for baseline_name in BASELINES:
        baseline = next((r for r in results if r["variant"] == baseline_name and "error" not in r), None)
        if baseline is None:
            continue
        key = baseline_name.replace("-", "_")
        for result in results:
            if "error" in result:
                continue
            result[f"efficiency_vs_{key}"] = ratio(
                result["msgs_per_generator_cpu_s"], baseline["msgs_per_generator_cpu_s"]
            )
            rate, base_rate = result["server_msgs_per_s"], baseline["server_msgs_per_s"]
            result[f"throughput_vs_{key}"] = ratio(
                rate or result["generator_echoes_per_s"], base_rate or baseline["generator_echoes_per_s"]
            )


def _summarize(results: list[dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    """One row per variant: the median of each figure over the rounds that succeeded."""
    rows = []
    for variant in variants:
        runs = [r for r in results if r["variant"] == variant and "error" not in r]
        if not runs:
            failed = next(r for r in results if r["variant"] == variant)
            rows.append({"variant": variant, "error": failed["error"]})
            continue
        row: dict[str, Any] = {"variant": variant, "rounds": len(runs)}
        for key in {key for run in runs for key in run}:
            values = [run.get(key) for run in runs]
            if key != "round" and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                row[key] = statistics.median(values)  # type: ignore[type-var]
        row["first_error"] = next((run["first_error"] for run in runs if run.get("first_error")), None)
        rows.append(row)
    return rows


def _verdict(rows: list[dict[str, Any]]) -> str:
    user = next((r for r in rows if r["variant"] == "wslocust-user" and "error" not in r), None)
    if user is None or not user.get("msgs_per_generator_cpu_s"):
        return ""
    figure = user["msgs_per_generator_cpu_s"]
    met = "met" if figure >= TARGET else "MISSED"
    return f"\ntarget 1: wslocust-user {figure:,.0f} msgs per generator CPU-second (target >= {TARGET:,}): {met}"
