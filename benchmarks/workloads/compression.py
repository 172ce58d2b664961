"""
``compression``: what permessage-deflate (RFC 7692) costs, both sides, against a server that speaks it.

The Node.js ``ws`` echo server with ``--deflate`` (it accepts permessage-deflate from clients that
offer it, compresses every message back, context takeover and 15-bit windows: ws's defaults) on
the other CPU; ``wslocust-user`` as it is (no offer: uncompressed) and ``wslocust-user-deflate``
(the same with ``WS_COMPRESSION=deflate``), side by side:

- **closed loop**: ``--connections`` connections (100) echoing ``--size``-byte messages (1,024) as fast
  as they are answered, ``--duration`` s (10) after ``--warmup`` s: messages per generator CPU-second,
  so the generator's CPU per message, and the server's CPU per message;
- **hold**: ``--hold-connections`` connections (2,000) at one echo every ``--interval`` s (1):
  the generator's RSS per connection (peak over the run, minus its idle RSS), and both sides' CPU per
  message while holding.

The payload is wslocust's default (a sequence number, then ``x`` up to the size): highly
compressible, so the CPU per message is zlib's cheapest and the wire the smallest it gets; the
results' ``compression`` line gives the wire's share. Context takeover keeps zlib's windows per
connection and direction: the memory figure is what it costs.
"""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager
from typing import Any

from ..measure import Context, attempt
from ..processes import log
from ..report import VARIANT_COLUMN, Column, header, ratio, report
from ..servers import start_server
from . import hold, throughput

__all__ = ["VARIANTS", "add_arguments", "run"]

NAME = "compression"
VARIANTS = ("wslocust-user", "wslocust-user-deflate")
_SWITCHES = {"wslocust-user": {"WS_COMPRESSION": "off"}, "wslocust-user-deflate": {"WS_COMPRESSION": "deflate"}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=100, help="closed-loop connections (default: 100)")
    parser.add_argument("--size", type=int, default=1024, help="message size in bytes (default: 1024)")
    parser.add_argument("--duration", type=float, default=10.0, help="closed-loop measured seconds (default: 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="closed-loop seconds before the window (default: 2)")
    parser.add_argument("--hold-connections", type=int, default=2000, help="connections held (default: 2000)")
    parser.add_argument("--interval", type=float, default=1.0, help="hold: seconds between echoes (default: 1)")
    parser.add_argument("--hold", type=float, default=15.0, help="hold: measured seconds (default: 15)")


@contextmanager
def _environment(variant: str):
    # The generator's environment is a copy of this process's, taken when it starts.
    switches = _SWITCHES[variant]
    os.environ.update(switches)
    try:
        yield
    finally:
        for name in switches:
            os.environ.pop(name, None)


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    server = start_server("node", context.pinning, deflate=True)
    if not server.is_node:
        server.stop()
        raise RuntimeError("compression needs Node.js and npm (the ws echo server speaks permessage-deflate)")
    print(header(context.pinning.description, server.kind + " with permessage-deflate"))
    loop_args = argparse.Namespace(
        duration=args.duration, warmup=args.warmup, connections=args.connections, size=args.size, profile=None
    )
    hold_args = argparse.Namespace(
        connections=args.hold_connections, spawn_rate=1000.0, interval=args.interval, settle=3.0, hold=args.hold,
        size=args.size, profile=None,
    )  # fmt: skip
    results: list[dict[str, Any]] = []
    try:
        for variant in VARIANTS:
            log(f"{NAME} closed loop, {variant}: {args.connections} connections, {args.size}-byte messages")
            with _environment(variant):
                result = attempt(variant, throughput._run_variant, "wslocust-user", server, loop_args, context)
            results.append({**result, "variant": variant, "part": "closed loop"})
        for variant in VARIANTS:
            log(f"{NAME} hold, {variant}: {args.hold_connections} connections, one echo every {args.interval:g} s")
            with _environment(variant):
                result = attempt(variant, hold._run_variant, "wslocust-user", server, hold_args, context)
            results.append({**result, "variant": variant, "part": "hold"})
    finally:
        server.stop()
    for result in results:
        if "error" in result:
            continue
        messages = result.get("server_messages") or 0
        if messages:
            result["generator_cpu_us_per_msg"] = round(result["generator_cpu_s"] / messages * 1e6, 1)
            result["server_cpu_us_per_msg"] = round(result["server_cpu_s"] / messages * 1e6, 1)
    _add_ratios(results)
    return report(NAME, _title(args), COLUMNS, results, NOTES)


def _add_ratios(results: list[dict[str, Any]]) -> None:
    for part in ("closed loop", "hold"):
        plain = next(
            (r for r in results if r["part"] == part and r["variant"] == VARIANTS[0] and "error" not in r), None
        )
        if plain is None:
            continue
        for result in results:
            if result["part"] != part or "error" in result:
                continue
            for key in ("generator_cpu_us_per_msg", "server_cpu_us_per_msg", "rss_kb_per_connection"):
                result[f"{key}_vs_plain"] = ratio(result.get(key), plain.get(key))


def _title(args: argparse.Namespace) -> str:
    return (
        f"compression: {args.size}-byte messages against node ws with permessage-deflate; closed loop over "
        f"{args.connections} connections, then {args.hold_connections:,} held at one echo every {args.interval:g} s"
    )


COLUMNS = (
    VARIANT_COLUMN,
    Column("part", "part"),
    Column("msgs/s", "server_msgs_per_s", "f1"),
    Column("gen us/msg", "generator_cpu_us_per_msg", "f1"),
    Column("x gen", "generator_cpu_us_per_msg_vs_plain", "f2"),
    Column("srv us/msg", "server_cpu_us_per_msg", "f1"),
    Column("x srv", "server_cpu_us_per_msg_vs_plain", "f2"),
    Column("peak MB", "generator_peak_rss", "mb"),
    Column("KB/conn", "rss_kb_per_connection", "f1"),
    Column("x mem", "rss_kb_per_connection_vs_plain", "f2"),
)

NOTES = """\
gen us/msg / srv us/msg: CPU-seconds of the generator / of the server per message the server echoed, over
the window; x gen / x srv / x mem: against wslocust-user without compression in the same part. KB/conn (hold only):
(peak RSS - idle RSS) / connections open: with context takeover, zlib's windows per connection. The
run's own results (its `compression` line: the payload against the wire) are in each generator's
output (--logs DIR)."""
