"""
``latency-error``: echo latency as reported, against the server-side truth.

The Node.js server holds each echo ``--hold-ms`` (default 50) and records,
for every message, the time from receiving it to sending its echo: the truth.
One generator process runs ``--connections`` connections (default 200), each
sending one 64-byte echo every ``--interval`` seconds (default 1) for
``--duration`` seconds (Locust's ``-t``), open loop for wslocust. Variants
side by side: ``wslocust-user`` (a task-less ``WebSocketUser``,
``--ws-message-interval``) and the typical ``locust-websocket-client`` user
(a greenlet blocking in ``recv()``, a task sending an echo every interval).

Reported, p50/p95/p99 in ms: the ``echo`` request as the run reports it
(Locust's final statistics; wslocust keeps two significant digits below
10 ms, but from 10 ms up Locust's histogram keeps whole milliseconds), the
exact client-side times before that rounding, the server's truth, and the
errors: reported - truth and exact - truth. Target: |error| <= 0.5 ms.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..generators import Generator, locust_command, locust_percentile
from ..measure import Context, run_variants
from ..processes import busy_seconds, log
from ..report import VARIANT_COLUMN, Column, header, percentile_columns, report, rounded
from ..servers import Server, start_server

__all__ = ["add_arguments", "run"]

NAME = "latency-error"
VARIANTS = ("wslocust-user", "locust-websocket-client")
TARGET_ERROR_MS = 0.5
PERCENTILES = ("p50", "p95", "p99")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=200, help="connections (default: 200)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between echoes per connection (default: 1)"
    )
    parser.add_argument(
        "--hold-ms", type=float, default=50.0, help="the server holds each echo this long (default: 50)"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of the run, Locust's -t (default: 30)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (default: 64)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated (default: {','.join(VARIANTS)})"
    )


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    server = start_server("node", context.pinning, hold_ms=args.hold_ms, record_latency=True)
    if not server.is_node:
        server.stop()
        raise RuntimeError(
            "latency-error needs the Node.js server (node and npm): it holds echoes and records the truth"
        )
    print(header(context.pinning.description, server.kind))
    detail = (
        f"{args.connections} connections, an echo every {args.interval:g} s each, held {args.hold_ms:g} ms by the "
        f"server, for {args.duration:g} s"
    )
    results = run_variants(NAME, detail, server, _run_variant, args, context, reset_latency=True)
    return report(
        NAME,
        f"latency-error: {args.connections} connections x 1 echo / {args.interval:g} s, server holds each echo "
        f"{args.hold_ms:g} ms; echo latency in ms",
        COLUMNS,
        results,
        NOTES + _verdict(results),
        rows=[{**result, "exact_errors": _exact_errors(result)} for result in results],
    )


COLUMNS = (
    VARIANT_COLUMN,
    Column("echoes", "echoes"),
    Column("srv msgs", "server_messages"),
    *percentile_columns("", "client"),
    *percentile_columns("exact", "exact"),
    *percentile_columns("srv", "server"),
    *percentile_columns("err", "error"),
    Column("exact err p50/95/99", "exact_errors", "str"),
    Column("gen CPU %", "generator_cpu_share", "pct"),
    Column("core %", "generator_core_busy_share", "pct"),
)
NOTES = """\
p50/p95/p99: the "echo" request as the run reports it (Locust's final statistics); exact: the client's
own response times before Locust's histogram rounds them; srv: the server's time from receiving each
message to sending its echo (the truth). err = reported - truth; exact err = exact - truth: what the
client adds (loopback, its own work and queueing) before any rounding. gen CPU %: over the run;
core %: how busy the generator's CPU was, other processes included (they delay its timers too)."""


def _run_variant(variant: str, server: Server, args: argparse.Namespace, context: Context) -> dict[str, Any]:
    json_file = context.workdir / f"{NAME}-{variant}.json"
    command = locust_command(
        variant, "periodic", server.url, args.connections, args.connections, args.duration, json_file,
        size=args.size, interval=args.interval, exact=("echo",),
    )  # fmt: skip
    stats_before = server.stats() or {}
    generator = Generator(variant, command, context.pinning.generator, context.workdir, json_file)
    try:
        generator.wait_started()
        started = time.monotonic()
        cpu_before, busy_before = generator.tree.cpu_seconds(), busy_seconds()
        # The generator's CPU over the run, up to just before Locust's -t ends it (not its shutdown).
        time.sleep(max(0.0, args.duration - 1.0))
        cpu, busy_after = generator.tree.cpu_seconds() - cpu_before, busy_seconds()
        wall = time.monotonic() - started
        if generator.wait_exit(60) is None:
            log(f"WARNING: {variant} still ran 60 s after its -t: stopped")
    finally:
        generator.stop()
    echo = generator.final_stats().get("echo")
    if echo is None:
        raise RuntimeError(f"{variant}: no echo statistics in Locust's --json-file\n{generator.output()}")
    exact = generator.exact().get("echo", {})
    truth = (server.latency() or {}).get("echo") or {}
    stats_after = server.stats() or {}
    result: dict[str, Any] = {
        "variant": variant,
        "server": server.kind,
        "connections": args.connections,
        "interval_s": args.interval,
        "hold_ms": args.hold_ms,
        "echoes": echo["num_requests"] - echo["num_failures"],
        "echo_failures": echo["num_failures"],
        "server_messages": stats_after.get("messages_sent", 0) - stats_before.get("messages_sent", 0),
        "server_samples": truth.get("count"),
        "generator_cpu_share": round(cpu / wall, 4) if wall > 0 else None,
        "generator_core_busy_share": _core_busy(busy_before, busy_after, wall, context),
        "generator_peak_rss": generator.peak_rss(),
    }
    for name in PERCENTILES:
        fraction = int(name[1:]) / 100
        client, precise, server_time = locust_percentile(echo, fraction), exact.get(name), truth.get(name)
        result[f"client_{name}_ms"] = client
        result[f"exact_{name}_ms"] = rounded(precise, 4)
        result[f"server_{name}_ms"] = rounded(server_time, 4)
        if server_time is not None:
            result[f"error_{name}_ms"] = round(client - server_time, 3) if client is not None else None
            result[f"exact_error_{name}_ms"] = round(precise - server_time, 3) if precise is not None else None
    return result


def _core_busy(before: list[float], after: list[float], wall: float, context: Context) -> float | None:
    """How busy the generator's CPU was over the run, other processes included."""
    if context.pinning.cpus is None or wall <= 0:
        return None
    number = context.pinning.cpus[0]
    return round((after[number] - before[number]) / wall, 3)


def _exact_errors(result: dict[str, Any]) -> str:
    """The three exact errors in one table cell: ``+0.120/+0.300/+0.410``."""
    errors = [result.get(f"exact_error_{name}_ms") for name in PERCENTILES]
    return "/".join("-" if error is None else f"{error:+.3f}" for error in errors)


def _verdict(results: list[dict[str, Any]]) -> str:
    user = next((r for r in results if r["variant"] == "wslocust-user" and "error" not in r), None)
    if user is None:
        return ""
    errors = [user.get(f"error_{name}_ms") for name in PERCENTILES]
    if None in errors:
        return ""
    met = "met" if all(abs(e) <= TARGET_ERROR_MS for e in errors) else "MISSED"  # type: ignore[arg-type]
    shown = " / ".join(f"{e:+.3f}" for e in errors)  # type: ignore[str-format]
    return (
        f"\ntarget 4: wslocust-user echo error p50/p95/p99 {shown} ms (target |error| <= {TARGET_ERROR_MS:g} ms): {met}"
    )
