"""
``codec``: wslocust's codec against websockets' and wsproto's inside the full user path.

The closed loop without a task (``wslocust-window``: 100 connections, ``in_flight = 1``, one Locust
request per echo, replies timed from the kernel's receive time) against the Node.js ``ws`` echo
server on the other CPU, once with each codec framing and parsing its messages: wslocust's own,
websockets' sans-I/O ``Protocol`` and wsproto's ``Connection`` (``benchmarks/codec_adapters.py``
puts each behind wslocust's codec interface; the generator loads it from ``WSLOCUST_BENCH_CODEC``).
Everything else, the handshake included, is wslocust's. For each message size (``--sizes``: 64 B
and 64 KiB) and codec, ``--rounds`` interleaved rounds (every other in reverse order); the table
shows medians: echoes per generator CPU-second, the generator's CPU per echo, and the CPU each codec
adds to or saves from an echo against wslocust's own in the same round.

``python benchmarks/codec_bench.py`` measures the same libraries per message, outside the user.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from typing import Any

from ..codec_adapters import CODECS
from ..measure import Context, attempt, wait_server_idle
from ..processes import log
from ..report import VARIANT_COLUMN, Column, header, ratio, report
from ..servers import start_server
from . import throughput

__all__ = ["VARIANTS", "add_arguments", "run"]

NAME = "codec"
VARIANTS = tuple(CODECS)
CODEC_VARIABLE = "WSLOCUST_BENCH_CODEC"
"""The generator's environment variable that names its codec (read by ``locustfiles/wslocust_users.py``)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run (default: 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the window (default: 2)")
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections (default: 100)")
    parser.add_argument(
        "--sizes", type=_sizes, default=[64, 65536], help="comma-separated message sizes in bytes (default: 64,65536)"
    )
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated codecs (default: {','.join(VARIANTS)})"
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    parser.add_argument(
        "--server", choices=("node", "reference"), default="node", help="echo server (default: node, the fast one)"
    )


@contextmanager
def _codec(name: str):
    # The generator's environment is a copy of this process's, taken when it starts.
    os.environ[CODEC_VARIABLE] = name
    try:
        yield
    finally:
        os.environ.pop(CODEC_VARIABLE, None)


def _sizes(text: str) -> list[int]:
    """``--sizes``: message sizes in bytes, each > 0."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; give sizes in bytes > 0, e.g. 64,65536")
    return sizes


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    sizes = args.sizes
    server = start_server(args.server, context.pinning)
    print(header(context.pinning.description, server.kind))
    results: list[dict[str, Any]] = []
    try:
        for size in sizes:
            loop_args = argparse.Namespace(
                duration=args.duration, warmup=args.warmup, connections=args.connections, size=size, profile=None
            )
            for round_number in range(1, args.rounds + 1):
                order = args.variants if round_number % 2 else args.variants[::-1]
                for codec in order:
                    log(
                        f"{NAME} {size} B, round {round_number}/{args.rounds}, {codec}: {args.connections} "
                        f"connections, {args.warmup:g} s warm-up + {args.duration:g} s window"
                    )
                    wait_server_idle(server)
                    with _codec(codec):
                        result = attempt(codec, throughput._run_variant, "wslocust-window", server, loop_args, context)
                    results.append({**result, "variant": codec, "size": size, "round": round_number})
    finally:
        server.stop()
    for result in results:
        if "error" not in result and result.get("msgs_per_generator_cpu_s"):
            result["generator_cpu_us_per_echo"] = round(1e6 / result["msgs_per_generator_cpu_s"], 2)
    _add_differences(results)
    rows = _summarize(results, args.variants, sizes)
    title = (
        f"codec: wslocust-window (closed loop without a task, full statistics), {args.connections} connections, "
        f"{args.duration:g} s window, median of {args.rounds} round{'s' if args.rounds != 1 else ''}"
    )
    return report(NAME, title, COLUMNS, results, NOTES + _verdict(rows), rows=rows)


def _add_differences(results: list[dict[str, Any]]) -> None:
    """Each run against wslocust's own codec in the same round and size."""
    for result in results:
        own = next(
            (
                r for r in results
                if r["variant"] == "wslocust" and r["size"] == result["size"] and r["round"] == result["round"]
                and "error" not in r
            ),
            None,
        )  # fmt: skip
        if own is None or "error" in result or not result.get("generator_cpu_us_per_echo"):
            continue
        result["vs_wslocust"] = ratio(result["msgs_per_generator_cpu_s"], own["msgs_per_generator_cpu_s"])
        result["us_per_echo_vs_wslocust"] = round(
            result["generator_cpu_us_per_echo"] - own["generator_cpu_us_per_echo"], 2
        )


def _summarize(results: list[dict[str, Any]], codecs: list[str], sizes: list[int]) -> list[dict[str, Any]]:
    """One row per size and codec: the medians over its rounds, as ``throughput`` summarizes."""
    return [
        {**row, "size": size}
        for size in sizes
        for row in throughput._summarize([r for r in results if r["size"] == size], codecs)
    ]


def _verdict(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        if row["variant"] == "wslocust" or row.get("vs_wslocust") is None:
            continue
        extra = row["us_per_echo_vs_wslocust"]
        lines.append(
            f"{row['size']:,} B: {row['variant']} x{row['vs_wslocust']:.2f} wslocust's echoes per CPU-second, "
            f"{'+' if extra >= 0 else ''}{extra:.1f} us of generator CPU per echo"
        )
    if not lines:
        return ""
    return "\nthe codec inside the full user path (medians of the per-round ratios):\n  " + "\n  ".join(lines)


COLUMNS = (
    VARIANT_COLUMN,
    Column("size", "size"),
    Column("msgs/s", "server_msgs_per_s"),
    Column("fails", "generator_failures"),
    Column("msgs/gen CPU-s", "msgs_per_generator_cpu_s"),
    Column("gen us/echo", "generator_cpu_us_per_echo", "f1"),
    Column("x wslocust", "vs_wslocust", "f2"),
    Column("+us/echo", "us_per_echo_vs_wslocust", "f1"),
    Column("srv %", "server_cpu_share", "pct"),
)
NOTES = """\
msgs/s: messages the server echoed per second (its counters); msgs/gen CPU-s: per CPU-second of the
generator's process tree; gen us/echo: its inverse. x wslocust / +us/echo: against wslocust's own codec in
the same round and size (medians over the rounds). The server is not the limit while srv % stays well
below 100."""
