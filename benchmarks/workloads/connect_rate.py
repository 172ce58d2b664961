"""
``connect-rate``: connect latency while opening 1,000 connections per second.

One generator process opens ``--connections`` connections (default 3,000) at
``--rate`` per second (default 1,000: ``-u 3000 -r 1000``) to the Node.js
server, which records the truth: for every connection, the time from
accepting its TCP connection to writing its 101 response. No messages are
sent. Variants side by side: ``wslocust-user`` (a task-less
``WebSocketUser``, ``--ws-message-interval 0``) and the typical
``locust-websocket-client`` user (``ws.connect()`` in ``on_start``, timed
with ``perf_counter``).

Reported: the ``connect`` request's p50/p95/p99 as the run reports it
(Locust's final statistics, ``--json-file``: wslocust's sub-millisecond
buckets when wslocust is loaded, whole milliseconds otherwise), the same
from the exact response times before bucketing, the server's handshake time
p50/p95/p99, the connect rate reached and the failures.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..generators import Generator, locust_command, locust_percentile
from ..measure import Context, run_variants
from ..processes import log
from ..report import VARIANT_COLUMN, Column, header, percentile_columns, report, rounded
from ..servers import Server, start_server

__all__ = ["add_arguments", "run"]

NAME = "connect-rate"
VARIANTS = ("wslocust-user", "locust-websocket-client")
TARGET_P50_MS = 2.0
PERCENTILES = (0.5, 0.95, 0.99)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=3000, help="connections opened (default: 3000)")
    parser.add_argument("--rate", type=float, default=1000.0, help="connections opened per second (default: 1000)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated (default: {','.join(VARIANTS)})"
    )


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    server = start_server("node", context.pinning, record_latency=True)
    print(header(context.pinning.description, server.kind))
    if not server.is_node:
        log("WARNING: without the Node.js server there is no server-side handshake time to compare with")
    detail = f"{args.connections} connections at {args.rate:g}/s"
    results = run_variants(NAME, detail, server, _run_variant, args, context, reset_latency=True)
    title = f"connect-rate: {args.connections:,} connections opened at {args.rate:g}/s, connect latency in ms"
    return report(NAME, title, COLUMNS, results, NOTES + _verdict(results))


COLUMNS = (
    VARIANT_COLUMN,
    Column("connects", "connects"),
    Column("failed", "connects_failed"),
    Column("conn/s", "connect_rate", "f1"),
    *percentile_columns("", "connect"),
    *percentile_columns("exact", "exact"),
    *percentile_columns("srv", "server"),
    Column("gen CPU %", "generator_cpu_share", "pct"),
    Column("srv %", "server_cpu_share", "pct"),
)
NOTES = """\
p50/p95/p99: the "connect" request as the run reports it (Locust's final statistics); exact: the same
response times before Locust's histogram rounds them; srv: the server's own time from accepting each
TCP connection to writing its 101 (the truth; the client's figure adds its TCP connect, its own
work and its queueing). conn/s: connections / (time from test_start to all open). gen CPU % / srv %:
CPU over that ramp (100 = one core)."""


def _run_variant(variant: str, server: Server, args: argparse.Namespace, context: Context) -> dict[str, Any]:
    ramp_bound = args.connections / args.rate + 60
    json_file = context.workdir / f"{NAME}-{variant}.json"
    command = locust_command(
        variant, "periodic", server.url, args.connections, args.rate, ramp_bound + 60, json_file,
        interval=0, exact=("connect",),
    )  # fmt: skip
    generator = Generator(variant, command, context.pinning.generator, context.workdir, json_file)
    try:
        generator.wait_started()
        cpu_before, server_cpu_before = generator.tree.cpu_seconds(), server.cpu_seconds()
        opened = generator.wait_connected(server, args.connections, ramp_bound)
        ramp_s = opened["ready_s"]
        cpu = generator.tree.cpu_seconds() - cpu_before
        server_cpu = server.cpu_seconds() - server_cpu_before
    finally:
        generator.stop()
    connect = generator.final_stats().get("connect")
    if connect is None:
        raise RuntimeError(f"{variant}: no connect statistics in Locust's --json-file\n{generator.output()}")
    exact = generator.exact().get("connect", {})
    latency = server.latency() or {}
    handshake = latency.get("handshake") or {}
    result: dict[str, Any] = {
        "variant": variant,
        "server": server.kind,
        "connections": args.connections,
        "rate": args.rate,
        "connects": connect["num_requests"] - connect["num_failures"],
        "connects_failed": connect["num_failures"],
        "ramp_s": round(ramp_s, 3),
        "connect_rate": round(opened["connections"] / ramp_s, 1) if ramp_s else None,
        "generator_cpu_share": round(cpu / ramp_s, 4) if ramp_s else None,
        "server_cpu_share": round(server_cpu / ramp_s, 4) if ramp_s else None,
        "generator_peak_rss": generator.peak_rss(),
        "server_handshakes": handshake.get("count"),
    }
    for fraction in PERCENTILES:
        name = f"p{round(fraction * 100)}"
        result[f"connect_{name}_ms"] = locust_percentile(connect, fraction)
        result[f"exact_{name}_ms"] = rounded(exact.get(name), 4)
        result[f"server_{name}_ms"] = rounded(handshake.get(name), 4)
        if result[f"connect_{name}_ms"] is not None and result[f"server_{name}_ms"] is not None:
            result[f"error_{name}_ms"] = round(result[f"connect_{name}_ms"] - result[f"server_{name}_ms"], 4)
    return result


def _verdict(results: list[dict[str, Any]]) -> str:
    user = next((r for r in results if r["variant"] == "wslocust-user" and "error" not in r), None)
    if user is None or user.get("connect_p50_ms") is None:
        return ""
    p50 = user["connect_p50_ms"]
    met = "met" if p50 <= TARGET_P50_MS else "MISSED"
    return f"\ntarget 3: wslocust-user connect p50 {p50:g} ms (target <= {TARGET_P50_MS:g} ms): {met}"
