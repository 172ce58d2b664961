"""
``scaling``: wslocust-user throughput with 1 and 2 worker processes.

A closed-loop ``WebSocketUser`` echo run (as in ``throughput``) with
``--processes 1`` and then ``--processes 2`` (Locust forks the workers; the
master aggregates their statistics), ``--connections`` in total, against the
Node.js server. Measured over a window: the server's messages per second,
the CPU-seconds of the whole generator tree (master and workers; the
master's share is shown apart) and of the server.

Scaling efficiency from 1 to 2 processes, per wall second: rate(2) /
(2 x rate(1)); per generator CPU-second: (msgs per generator CPU-second
with 2) / (the same with 1), i.e. whether each core's rate holds.

With two CPUs the server needs one too, so two layouts are run:

- ``pinned``: every generator process on the generator CPU, the server on
  the other. Per-CPU-second efficiency is meaningful; per-wall-second
  efficiency cannot exceed about 50 % (one core for the generator).
- ``spread``: worker i pinned to CPU i, the master to the first CPU, the
  server not pinned: the server and the second worker share a CPU, so the
  wall-clock rate is limited by the server (see srv % and core %).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..generators import Generator, locust_command, pin_processes
from ..measure import Context, attempt, wait_server_idle, window_figures
from ..processes import Pinning, log, wait_until
from ..report import Column, header, ratio, report
from ..servers import Server, start_server

__all__ = ["add_arguments", "run"]

NAME = "scaling"
VARIANTS = ("wslocust-user",)
LAYOUTS = ("pinned", "spread")
TARGET_EFFICIENCY = 0.9


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=100, help="connections in total (default: 100)")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default: 10)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before the window (default: 3)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (default: 64)")
    parser.add_argument(
        "--layouts", default=",".join(LAYOUTS), help=f"comma-separated: pinned, spread (default: {','.join(LAYOUTS)})"
    )


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    layouts = [layout.strip() for layout in args.layouts.split(",") if layout.strip()]
    bad = [layout for layout in layouts if layout not in LAYOUTS]
    if bad or not layouts:
        raise RuntimeError(f"--layouts: {', '.join(bad) or '(none)'} not valid; choose from {', '.join(LAYOUTS)}")
    print(header(context.pinning.description))
    results: list[dict[str, Any]] = []
    for layout in layouts:
        server_pinning = context.pinning if layout == "pinned" else Pinning([], [], "server not pinned")
        server = start_server("node", server_pinning)
        try:
            layout_results = []
            for processes in (1, 2):
                log(f"{NAME}, {layout}: --processes {processes}, {args.connections} connections closed loop")
                wait_server_idle(server)
                result = attempt(f"{layout} x{processes}", _run_once, layout, processes, server, args, context)
                layout_results.append(result)
            _add_efficiency(layout_results)
            results.extend(layout_results)
        finally:
            server.stop()
    return report(
        NAME,
        f"scaling: wslocust-user closed-loop echo, {args.connections} connections, 1 vs 2 worker processes, "
        f"{args.duration:g} s window",
        COLUMNS,
        results,
        NOTES + _verdict(results),
    )


COLUMNS = (
    Column("layout x processes", "variant", "str"),
    Column("msgs/s", "server_msgs_per_s"),
    Column("fails", "generator_failures"),
    Column("gen CPU %", "generator_cpu_share", "pct"),
    Column("master %", "master_cpu_share", "pct"),
    Column("msgs/gen CPU-s", "msgs_per_generator_cpu_s"),
    Column("srv %", "server_cpu_share", "pct"),
    Column("CPU busy %", "cpus_busy", "str"),
    Column("eff wall", "efficiency_per_wall_second", "f2"),
    Column("eff CPU-s", "efficiency_per_cpu_second", "f2"),
)
NOTES = """\
msgs/s: the server's echoes per second; fails: failed requests the master counted in the window
(its counts lag the workers' by up to 3 s). gen CPU %: the whole generator tree (master + workers;
master %: its part), 100 = one core. CPU busy %: how busy each CPU was, everything included.
eff wall = msgs/s(2) / (2 x msgs/s(1)); eff CPU-s = msgs per generator CPU-second (2) / the same (1).
A run whose CPUs are all near 100 % busy is limited by the machine, not by the generator's design."""


def _run_once(
    layout: str, processes: int, server: Server, args: argparse.Namespace, context: Context
) -> dict[str, Any]:
    bound = 120 + args.warmup + args.duration
    json_file = context.workdir / f"{NAME}-{layout}-{processes}.json"
    command = locust_command(
        "wslocust-user", "closed-loop", server.url, args.connections, args.connections, bound, json_file,
        size=args.size, processes=processes,
    )  # fmt: skip
    prefix = context.pinning.generator if layout == "pinned" else []
    generator = Generator("wslocust-user", command, prefix, context.workdir, json_file, f"wslocust-user x{processes}")
    try:
        if wait_until(lambda: len(generator.pids()) >= processes + 1, 60.0) is None:
            raise RuntimeError(f"Locust did not fork {processes} workers within 60 s\n{generator.output()}")
        master, *workers = generator.pids()
        if layout == "spread":
            pin_processes([master], list(context.pinning.available[:1]))
            pin_processes(workers, list(context.pinning.available))
        generator.wait_started()
        opened = generator.wait_connected(server, args.connections, 60.0)
        if opened.get("failed"):
            log(f"{opened['failed']} of {args.connections} connections failed: {opened.get('first_error')}")
        time.sleep(args.warmup)
        before = generator.snapshot(server)
        time.sleep(args.duration)
        after = generator.snapshot(server)
    finally:
        generator.stop()
    figures = window_figures(before, after, context.pinning)
    if figures["generator_failures"]:
        log(f"WARNING: {layout} x{processes}: {figures['generator_failures']} failures: {figures.get('first_error')}")
    window = figures["window_s"]
    master_cpu = after.generator_cpu_by_pid.get(master, 0.0) - before.generator_cpu_by_pid.get(master, 0.0)
    busy = [round((b - a) / window, 3) for a, b in zip(before.cpus_busy, after.cpus_busy, strict=True)]
    return {
        "variant": f"{layout} x{processes}",
        "layout": layout,
        "processes": processes,
        "server": server.kind,
        "connections": args.connections,
        **figures,
        "master_cpu_share": round(master_cpu / window, 4),
        "cpus_busy_share": busy,
        "cpus_busy": " ".join(f"{100 * share:.0f}" for share in busy),
        "generator_peak_rss": generator.peak_rss(),
    }


def _add_efficiency(results: list[dict[str, Any]]) -> None:
    one = next((r for r in results if r.get("processes") == 1 and "error" not in r), None)
    two = next((r for r in results if r.get("processes") == 2 and "error" not in r), None)
    if one is None or two is None:
        return
    two["efficiency_per_wall_second"] = ratio(two["server_msgs_per_s"], 2 * (one["server_msgs_per_s"] or 0), 3)
    two["efficiency_per_cpu_second"] = ratio(two["msgs_per_generator_cpu_s"], one["msgs_per_generator_cpu_s"], 3)


def _verdict(results: list[dict[str, Any]]) -> str:
    lines = []
    for result in results:
        if result.get("efficiency_per_cpu_second") is not None:
            efficiency = result["efficiency_per_cpu_second"]
            met = "met" if efficiency >= TARGET_EFFICIENCY else "MISSED"
            lines.append(
                f"target 6 ({result['layout']}): per-CPU-second efficiency {efficiency:.2f}, per wall second "
                f"{result['efficiency_per_wall_second'] or 0:.2f} (target >= {TARGET_EFFICIENCY:.2f} where the server "
                f"is not the bottleneck): {met}"
            )
    return "\n" + "\n".join(lines) if lines else ""
