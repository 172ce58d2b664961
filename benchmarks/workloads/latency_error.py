"""
``latency-error``: echo latency as reported, against the server-side truth, in what users write.

The Node.js server holds each echo ``--hold-ms`` (default 50) and records, for every message,
the time from receiving it to sending its echo: the truth. Each variant runs ``--connections``
connections (default 200), one 64-byte message per connection every ``--interval`` seconds
(default 1), for ``--duration`` seconds (Locust's ``-t``, default 20), twice: with wslocust and
with the typical Locust + websocket-client user doing the same workload, one after the other
(the order alternates from one variant to the next):

  task      wslocust: ``wait_time = constant_pacing(1)``, a task calling ``self.echo("x" * 64)``;
            typical: the same pacing, a task that sends, blocks in ``recv()`` and fires
  periodic  wslocust: a task-less ``WebSocketUser`` (open-loop periodic messages); typical: a
            greenlet blocking in ``recv()``, a task sending an echo every interval
  request   ``self.request()`` with JSON messages carrying an ``id`` and ``reply_key`` returning
            it; typical: send, read until the reply with the id, fire
  workers   ``task`` with a master and 2 forked workers (``--processes 2``)
  loaded    ``task`` in a loaded generator: a greenlet of the same process busy-waits 5 ms of
            every 20 ms (``--stall``)

Reported, p50/p95/p99 in ms: the request as the run reports it (Locust's final statistics), the
server's truth, the error (reported - truth), and the error per message: each message's client
time minus its own hold on the server, joined on (client port, number on its connection).
Beside them: wslocust's periodic sends more than 2 ms behind their tick (``sends_late``: timed
from the tick by design), how bunched the sends were (largest share of the messages in one 50 ms
window of the interval, as the server received them), and the generator's CPU per echo (every
process of it, after all connections opened, per echo the server sent meanwhile).
Targets: |error| <= 0.5 ms; CPU per echo <= the typical user's. ``--profile DIR``: run the chosen
variants once more under cProfile instead and print where each generator's time goes.

``--generators wslocust,typical,typical-spread`` adds a control: the typical user with its sends
spread over the interval as wslocust's are (``Spread*`` in ``locustfiles/typical.py``), since
Locust starts a burst's tasks together and sends that leave together cost less CPU each (the
event loop wakes once for a burst, not for every message); ``x spread`` compares with it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cprofile_report import cprofile_summary
from ..generators import TYPICAL_LOCUSTFILE, WSLOCUST_LOCUSTFILE, Generator, locust_percentile, processes_options
from ..measure import Context, attempt, wait_server_idle
from ..per_message import join_errors, percentiles, read_client_files
from ..phase_spread import largest_window_share
from ..processes import busy_seconds, log, wait_until
from ..report import Column, emit_results, header, percentile_columns, print_table, ratio, rounded
from ..servers import Server, start_server

__all__ = ["VARIANTS", "add_arguments", "run"]

NAME = "latency-error"
TARGET_ERROR_MS = 0.5
PERCENTILES = ("p50", "p95", "p99")
GENERATORS = ("wslocust", "typical", "typical-spread")
DEFAULT_GENERATORS = ("wslocust", "typical")
SPREAD = "typical-spread"
"""The control generator: the typical user, its first task a random part of the interval after its connect."""
QUICK = ("task", "periodic", "loaded")
PHASE_WINDOW_MS = 50.0


@dataclass(frozen=True)
class Variant:
    """One workload, as each generator writes it."""

    wslocust_user: str
    typical_user: str
    request_name: str = "echo"
    processes: int = 0
    stall: bool = False


VARIANT_SPECS = {
    "task": Variant("PacedEchoUser", "PacedEcho"),
    "periodic": Variant("HoldUser", "PeriodicEcho"),
    "request": Variant("RequestUser", "PacedRequest", request_name="request"),
    "workers": Variant("PacedEchoUser", "PacedEcho", processes=2),
    "loaded": Variant("PacedEchoUser", "PacedEcho", stall=True),
}
VARIANTS = tuple(VARIANT_SPECS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=200, help="connections (default: 200)")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between messages per connection (default: 1)"
    )
    parser.add_argument(
        "--hold-ms", type=float, default=50.0, help="the server holds each echo this long (default: 50)"
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of each run, Locust's -t (default: 20)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (default: 64)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated (default: {','.join(VARIANTS)})"
    )
    parser.add_argument(
        "--generators",
        default=",".join(DEFAULT_GENERATORS),
        help="of wslocust, typical and typical-spread (the typical user, its sends spread over the interval as "
        "wslocust's are: a control for CPU per echo); default: wslocust,typical",
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"only {','.join(QUICK)}, 10 s each (unless given): about 1.5 minutes"
    )
    parser.add_argument("--stall", default="5/20", help="loaded: busy-wait BUSY/EVERY ms (default: 5/20)")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="run under cProfile instead; keep the profiles in DIR"
    )


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    variants, generators = _chosen(args)
    server = start_server("node", context.pinning, hold_ms=args.hold_ms, record_messages=True)
    if not server.is_node:
        server.stop()
        raise RuntimeError(
            "latency-error needs the Node.js server (node and npm): it holds echoes and records the truth"
        )
    print(header(context.pinning.description, server.kind))
    results = []
    try:
        for index, variant in enumerate(variants):
            # Interleaved: which generator goes first alternates, so that neither always meets the other's leftovers.
            for generator in generators if index % 2 == 0 else generators[::-1]:
                log(
                    f"{NAME}, {variant} / {generator}: {args.connections} connections, a message every "
                    f"{args.interval:g} s each, held {args.hold_ms:g} ms, for {args.duration:g} s"
                    + (" (cProfile)" if args.profile else "")
                )
                wait_server_idle(server)
                server.reset_latency()
                result = attempt(f"{variant} / {generator}", _run_one, variant, generator, server, args, context)
                results.append({"variant": variant, "generator": generator, **result})
    finally:
        server.stop()
    _compare_with_typical(results)
    if args.profile:
        emit_results(NAME, results)
        return results
    print_table(TITLE.format(args=args), COLUMNS, results, NOTES)
    print(_verdicts(results))
    emit_results(NAME, results)
    return results


def _chosen(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    variants = args.variants if isinstance(args.variants, list) else args.variants.split(",")
    if args.quick:
        if variants == list(VARIANTS):
            variants = list(QUICK)
        if args.duration == 20.0:
            args.duration = 10.0
    generators = [g.strip() for g in args.generators.split(",") if g.strip()]
    if not generators or any(g not in GENERATORS for g in generators):
        raise RuntimeError(f"--generators: {args.generators!r}; choose from {', '.join(GENERATORS)}")
    return variants, generators


def _command(variant: str, generator: str, server: Server, args: argparse.Namespace, out: Path) -> list[str]:
    spec = VARIANT_SPECS[variant]
    wslocust = generator == "wslocust"
    command = [
        sys.executable, "-m", "locust", "-f", str(WSLOCUST_LOCUSTFILE if wslocust else TYPICAL_LOCUSTFILE),
        "--headless", "-u", str(args.connections), "-r", str(args.connections),
        "-t", f"{max(1, round(args.duration))}s", "--host", server.url, "--exit-code-on-error", "0",
        "--json-file", str(out / "stats"), "--bench-size", str(args.size), "--bench-interval", f"{args.interval:g}",
        "--bench-exact", spec.request_name, "--bench-messages", str(out),
    ]  # fmt: skip
    if wslocust and spec.wslocust_user == "HoldUser":
        command += ["--ws-message-interval", f"{args.interval * 1000:g}"]
    if spec.stall:
        command += ["--bench-stall", args.stall]
    if spec.processes:
        command += processes_options(spec.processes)
    if args.profile:
        command += ["--bench-cprofile", str(out / "profile")]
    if wslocust:
        return [*command, spec.wslocust_user]
    return [*command, f"Spread{spec.typical_user}" if generator == SPREAD else spec.typical_user]


def _run_one(
    variant: str, generator: str, server: Server, args: argparse.Namespace, context: Context
) -> dict[str, Any]:
    spec = VARIANT_SPECS[variant]
    out = (args.profile or context.workdir) / f"{NAME}-{variant}-{generator}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    command = _command(variant, generator, server, args, out)
    kind = "wslocust-user" if generator == "wslocust" else "locust-websocket-client"
    process = Generator(kind, command, context.pinning.generator, context.workdir, out / "stats.json", label=variant)
    try:
        process.wait_started()
        started = time.monotonic()
        end = started + args.duration - 1.0  # before Locust's -t stops the users
        wait_until(
            lambda: (server.stats() or {}).get("connections_open", 0) >= args.connections,
            max(1.0, end - time.monotonic()),
            interval=0.05,
        )
        # The window: from a second after every connection opened (the connects' CPU left out) to the end.
        time.sleep(max(0.0, min(1.0, (end - time.monotonic()) / 2)))
        before = _edge(process, server)
        time.sleep(max(0.0, end - time.monotonic()))
        after = _edge(process, server)
        if process.wait_exit(60) is None:
            log(f"WARNING: {variant} / {generator} still ran 60 s after its -t: stopped")
    finally:
        process.stop()
    entry = process.final_stats().get(spec.request_name)
    if entry is None:
        raise RuntimeError(f"no {spec.request_name} statistics in Locust's --json-file\n{process.output()}")
    if args.profile:
        return _profile_result(out, entry)
    return _figures(spec, entry, server, out, before, after, args, context)


def _edge(process: Generator, server: Server) -> tuple[float, float, int, list[float]]:
    """(time, generator CPU-seconds, echoes the server sent, each CPU's busy seconds) now."""
    return time.monotonic(), process.tree.cpu_seconds(), (server.stats() or {}).get("messages_sent", 0), busy_seconds()


def _figures(
    spec: Variant,
    entry: dict[str, Any],
    server: Server,
    out: Path,
    before: tuple[float, float, int, list[float]],
    after: tuple[float, float, int, list[float]],
    args: argparse.Namespace,
    context: Context,
) -> dict[str, Any]:
    truth = (server.latency() or {}).get("echo") or {}
    server_records = server.messages() or []
    client_records, counters = read_client_files(out)
    errors, unmatched = join_errors(client_records, server_records)
    wall, cpu, echoes = after[0] - before[0], after[1] - before[1], after[2] - before[2]
    result: dict[str, Any] = {
        "requests": entry["num_requests"] - entry["num_failures"],
        "failures": entry["num_failures"],
        "server_messages": len(server_records),
        "joined": len(errors),
        "unjoined": unmatched,
        "sends_late": counters.get("sends_late") if counters else None,
        "phase_share": rounded(_phase_share(server_records, args.interval), 3),
        "window_s": round(wall, 3),
        "window_echoes": echoes,
        "generator_cpu_share": round(cpu / wall, 4) if wall > 0 else None,
        "cpu_us_per_echo": round(1e6 * cpu / echoes, 1) if echoes > 0 else None,
    }
    if context.pinning.cpus is not None and wall > 0:
        number = context.pinning.cpus[0]
        result["generator_core_busy_share"] = round((after[3][number] - before[3][number]) / wall, 3)
    # Any counter of how replies were timed (kernel receive timestamps and their fallbacks), when wslocust has one.
    result.update({name: value for name, value in counters.items() if "timestamp" in name or "fallback" in name})
    per_message = percentiles(errors)
    for name, joined in zip(PERCENTILES, per_message, strict=True):
        client, server_time = locust_percentile(entry, int(name[1:]) / 100), truth.get(name)
        result[f"client_{name}_ms"] = client
        result[f"server_{name}_ms"] = rounded(server_time, 4)
        result[f"error_{name}_ms"] = (
            round(client - server_time, 3) if client is not None and server_time is not None else None
        )
        result[f"message_error_{name}_ms"] = rounded(joined, 3)
    result["message_errors"] = "/".join("-" if e is None else f"{e:+.2f}" for e in per_message)
    return result


def _phase_share(server_records: list[tuple[int, int, float, float]], interval: float) -> float | None:
    """The largest share of the messages the server received in one 50 ms window of the interval."""
    if not server_records or interval <= PHASE_WINDOW_MS / 1000:
        return None
    return largest_window_share((at / 1000 for _, _, at, _ in server_records), PHASE_WINDOW_MS / 1000, interval)


def _profile_result(out: Path, entry: dict[str, Any]) -> dict[str, Any]:
    requests = entry["num_requests"] - entry["num_failures"]
    files = sorted(out.glob("profile*.prof"))
    print(f"\ncProfile of {out.name}: {requests:,} requests; own time per request, top functions")
    print(cprofile_summary(files, requests, 15) if files else "  (no profile written)")
    return {"requests": requests, "profiles": [str(path) for path in files]}


def _compare_with_typical(results: list[dict[str, Any]]) -> None:
    """Each row's CPU per echo relative to the typical user's in the same variant, and to the spread control's."""
    for generator, key in (("typical", "cpu_vs_typical"), (SPREAD, "cpu_vs_typical_spread")):
        typical = {r["variant"]: r for r in results if r["generator"] == generator and "error" not in r}
        for result in results:
            other = typical.get(result["variant"])
            if other is not None and "error" not in result:
                result[key] = ratio(result.get("cpu_us_per_echo"), other.get("cpu_us_per_echo"))


TITLE = (
    "latency-error: {args.connections} connections x 1 message / {args.interval:g} s, server holds each "
    "{args.hold_ms:g} ms, {args.duration:g} s per run; latency in ms"
)
COLUMNS = (
    Column("variant", "variant", "str"),
    Column("user", "generator", "str"),
    Column("requests", "requests"),
    *percentile_columns("", "client"),
    *percentile_columns("srv", "server"),
    *percentile_columns("err", "error"),
    Column("msg err p50/95/99", "message_errors", "str"),
    Column("joined", "joined"),
    Column("late", "sends_late"),
    Column("phase %", "phase_share", "pct"),
    Column("CPU us/echo", "cpu_us_per_echo", "f1"),
    Column("x typical", "cpu_vs_typical", "f2"),
    Column("x spread", "cpu_vs_typical_spread", "f2"),
    Column("gen CPU %", "generator_cpu_share", "pct"),
    Column("core %", "generator_core_busy_share", "pct"),
)
NOTES = """\
p50/p95/p99: the request as the run reports it (Locust's final statistics); srv: the server's time from
receiving each message to sending its echo (the truth); err = reported - truth. msg err: per message, the
client's exact time minus that message's own hold on the server (joined on client port and message number;
"joined" messages). late: wslocust's periodic sends > 2 ms behind their tick (timed from the tick by design).
phase %: the largest share of the messages the server received in one 50 ms window of the interval (5 % when
evenly spread). CPU us/echo: CPU-microseconds of every generator process per echo the server sent, from a
second after all connections opened to a second before the end; x typical: relative to the typical user's
(the loaded variant's includes the busy-waiting greenlet); x spread: to the typical user's with its sends
spread over the interval as wslocust's are (typical-spread: a control, when run). core %: how busy the
generator's CPU was, other processes included (they delay its timers and receives too)."""


def _verdicts(results: list[dict[str, Any]]) -> str:
    lines = []
    typical = {r["variant"]: r for r in results if r["generator"] == "typical" and "error" not in r}
    spread_rows = {r["variant"]: r for r in results if r["generator"] == SPREAD and "error" not in r}
    for result in results:
        if result["generator"] != "wslocust" or "error" in result:
            continue
        errors = [result.get(f"error_{name}_ms") for name in PERCENTILES]
        other = typical.get(result["variant"], {})
        shown = " / ".join("-" if e is None else f"{e:+.2f}" for e in errors)
        theirs = " / ".join(
            "-" if other.get(f"error_{n}_ms") is None else f"{other[f'error_{n}_ms']:+.2f}" for n in PERCENTILES
        )
        met = "met" if None not in errors and all(abs(e) <= TARGET_ERROR_MS for e in errors) else "MISSED"  # type: ignore[arg-type]
        line = f"target ({result['variant']}): error {shown} ms (typical {theirs}; target |error| <= 0.5): {met}"
        mine, cost = result.get("cpu_us_per_echo"), other.get("cpu_us_per_echo")
        if mine is not None and cost is not None:
            verdict = "met" if mine <= cost else "MISSED"
            line += f"; CPU per echo {mine:.0f} vs {cost:.0f} us (target <= typical): {verdict}"
        spread = spread_rows.get(result["variant"], {}).get("cpu_us_per_echo")
        if mine is not None and spread is not None:
            line += f" (typical with its sends spread as wslocust's: {spread:.0f} us)"
        lines.append(line)
    return "\n".join(lines)
