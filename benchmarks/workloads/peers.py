"""
``peers``: wslocust against the best peers, side by side in one invocation.

Tools (``--variants``): ``wslocust-user`` (wslocust with its default
features: a task calling ``self.echo()`` in the closed loop, a task-less user
holding), ``wslocust-window`` (throughput only: wslocust's closed loop
without a task, ``in_flight = 1``), ``locust-websocket-client`` (the typical
Locust user), ``tsung``
(Tsung 1.7, apt), ``artillery`` (Artillery 2, npm) and ``lean-loop``
(``benchmarks/lean_loop.py``: wslocust's codec on gevent sockets, no
statistics; throughput only). Tsung and Artillery run when installed; a
missing one is skipped with one line, and ``--install-peers`` installs them
first (``apt-get install tsung``; ``npm install artillery@2 --ignore-scripts``
into a cache directory).

Two parts (``--parts``), against the Node.js ``ws`` echo server on the other CPU:

- ``throughput``: closed-loop echo, ``--connections`` (100) connections,
  ``--size`` (64) bytes: messages the server echoed per CPU-second of the
  generator's whole process tree, over a ``--duration`` s window after
  ``--warmup`` s.
- ``hold``: ``--hold-connections`` (10,000) connections opened at
  ``--spawn-rate`` per second, one echo each every ``--interval`` (5) s:
  the generator's peak RSS, its CPU over a ``--hold`` s window ``--settle`` s
  after every connection opened, and the server's CPU for that traffic.

Every tool runs ``--rounds`` (3) times per part, interleaved (every other round
in reverse order); each round's ratios are taken against the best peer of that
round (peers: the typical user, Tsung, Artillery), and the median ratio counts.

Each part ends with the issue's targets, met or MISSED; a missed one with what
it would take (the generator CPU per echo or the memory per connection the
target allows, against what the run measured), what would close it and, with
``--profile DIR``, where wslocust's time goes: one more run of each wslocust
variant, sampled by py-spy in its window (not counted in the table), summed per
layer of wslocust.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..measure import Context, attempt, wait_server_idle
from ..peers import PEER_TOOLS
from ..peers.runs import Plan, measure_run
from ..processes import log
from ..profiling import describe_layers, finish_profiler, layer_shares, start_profiler
from ..report import VARIANT_COLUMN, Column, emit_results, header, print_table, ratio
from ..servers import Server, start_server

__all__ = ["add_arguments", "run"]

NAME = "peers"
VARIANTS = ("wslocust-user", "wslocust-window", "locust-websocket-client", "tsung", "artillery", "lean-loop")
THROUGHPUT_ONLY = ("wslocust-window", "lean-loop")
PEERS = ("locust-websocket-client", "tsung", "artillery")
PARTS = ("throughput", "hold")
TARGET_VS_BEST_PEER = 1.3
TARGET_VS_LEAN_LOOP = 0.85
TARGET_RSS_MB = 150
TARGET_CPU_VS_CHEAPEST = 0.8
WSLOCUST_VARIANTS = ("wslocust-user", "wslocust-window")
GREENLET_COST = Path(__file__).resolve().parents[1] / "greenlet_cost.py"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"comma-separated (default: {','.join(VARIANTS)})"
    )
    parser.add_argument(
        "--parts", type=_parts, default=list(PARTS), help="throughput, hold or both, comma-separated (default: both)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of every tool per part, interleaved (default: 3)")
    parser.add_argument("--install-peers", action="store_true", help="install Tsung (apt) and Artillery (npm) first")
    parser.add_argument("--duration", type=float, default=10.0, help="throughput: measured seconds (default: 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="throughput: seconds before the window (default: 2)")
    parser.add_argument("--connections", type=int, default=100, help="throughput: connections (default: 100)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (default: 64)")
    parser.add_argument("--hold-connections", type=int, default=10_000, help="hold: connections (default: 10000)")
    parser.add_argument("--spawn-rate", type=float, default=1000.0, help="hold: connections per second (default: 1000)")
    parser.add_argument("--interval", type=float, default=5.0, help="hold: seconds between echoes (default: 5)")
    parser.add_argument("--settle", type=float, default=5.0, help="hold: seconds before the window (default: 5)")
    parser.add_argument("--hold", type=float, default=30.0, help="hold: measured seconds (default: 30)")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR",
        help="one more run of each wslocust variant per part, sampled with py-spy into DIR: where its time goes",
    )  # fmt: skip


def _parts(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or set(parts) - set(PARTS):
        raise argparse.ArgumentTypeError(f"{text!r} is not valid; choose from {', '.join(PARTS)}")
    return parts


def available_variants(variants: list[str], install: bool) -> list[str]:
    """The tools that can run: a missing peer is installed (``install``) or skipped with one line."""
    chosen = []
    for variant in variants:
        tool = PEER_TOOLS.get(variant)
        if tool is not None and not tool.installed() and not (install and tool.install(log)):
            log(f"{NAME}: {tool.missing_line()}")
            continue
        chosen.append(variant)
    return chosen


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    parts = args.parts
    variants = available_variants(args.variants, args.install_peers)
    versions = "; ".join(PEER_TOOLS[v].version() for v in variants if v in PEER_TOOLS)
    server = start_server("node", context.pinning)
    print(header(context.pinning.description, server.kind) + (f"\npeers: {versions}" if versions else ""))
    results: list[dict[str, Any]] = []
    try:
        for part in parts:
            part_variants = [v for v in variants if part == "throughput" or v not in THROUGHPUT_ONLY]
            results += _run_part(part, part_variants, server, args, context)
    finally:
        server.stop()
    return results


def _plan(part: str, args: argparse.Namespace) -> Plan:
    if part == "throughput":
        return Plan("closed-loop", args.connections, args.size, max(args.connections, 100.0), 0.0,
                    args.warmup, args.duration)  # fmt: skip
    return Plan("periodic", args.hold_connections, args.size, args.spawn_rate, args.interval, args.settle, args.hold)


def _run_part(
    part: str, variants: list[str], server: Server, args: argparse.Namespace, context: Context
) -> list[dict[str, Any]]:
    plan = _plan(part, args)
    results: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        order = variants if number % 2 else variants[::-1]
        round_results = []
        for variant in order:
            log(f"{NAME} {part} round {number}/{args.rounds}, {variant}: {plan.connections} connections, "
                f"{plan.settle:g} s + {plan.window:g} s window")  # fmt: skip
            wait_server_idle(server, 120.0)
            result = attempt(variant, measure_run, variant, plan, server, context.pinning.generator, context.workdir)
            round_results.append({**result, "part": part, "round": number})
        _add_ratios(part, round_results)
        results += round_results
    rows = _medians(results, variants)
    profiles = _profiles(part, variants, plan, server, args, context) if args.profile else {}
    floor = _greenlet_floor(context) if part == "hold" and _rss_missed(rows) else None
    title, columns, notes = _table(part, plan, args.rounds)
    print_table(title, columns, rows, notes + _verdict(part, rows, profiles, floor, results))
    emit_results(NAME, results)
    return results


def _profiles(
    part: str, variants: list[str], plan: Plan, server: Server, args: argparse.Namespace, context: Context
) -> dict[str, str]:
    """Where each wslocust variant's time goes: py-spy's samples of one more run, per layer."""
    profiles = {}
    for variant in (v for v in variants if v in WSLOCUST_VARIANTS):
        log(f"{NAME} {part}: {variant} once more, sampled by py-spy (not counted)")
        stacks: list[str] = []

        def watch(pid: int, seconds: float, variant: str = variant, stacks: list[str] = stacks):
            profiler = start_profiler(f"peers-{part}-{variant}", pid, args.profile, seconds, context.pinning)

            def finish() -> None:
                if profiler is not None:
                    collapsed = finish_profiler(f"peers-{part}-{variant}", profiler, args.profile, seconds, quiet=True)
                    stacks.append(collapsed or "")

            return finish

        wait_server_idle(server, 120.0)
        result = attempt(variant, measure_run, variant, plan, server, context.pinning.generator, context.workdir, watch)
        if "error" not in result and stacks:
            profiles[variant] = describe_layers(layer_shares(stacks[0]))
    return profiles


def _greenlet_floor(context: Context) -> float | None:
    """Bytes one blocked gevent greenlet keeps (``benchmarks/greenlet_cost.py``, on the generator's CPU)."""
    command = [*context.pinning.generator, sys.executable, str(GREENLET_COST), "--count", "10000", "--depths", "0"]
    try:
        output = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"{NAME}: greenlet_cost.py failed: {exc}")
        return None
    found = re.search(r"depth\s+0: ([\d,]+) bytes", output)
    return float(found.group(1).replace(",", "")) if found else None


def _ok(results: list[dict[str, Any]], variant: str) -> dict[str, Any] | None:
    return next((r for r in results if r["variant"] == variant and "error" not in r), None)


def _add_ratios(part: str, results: list[dict[str, Any]]) -> None:
    """Each run against the best peer of its round (and the lean loop), for the median of rounds."""
    peers = [r for r in results if r["variant"] in PEERS and "error" not in r]
    lean = _ok(results, "lean-loop")
    for result in results:
        if "error" in result:
            continue
        if part == "throughput":
            best = max(peers, key=lambda r: r["msgs_per_generator_cpu_s"] or 0, default=None)
            if best is not None:
                result["best_peer"] = best["variant"]
                result["vs_best_peer"] = ratio(result["msgs_per_generator_cpu_s"], best["msgs_per_generator_cpu_s"])
            if lean is not None:
                result["vs_lean_loop"] = ratio(result["msgs_per_generator_cpu_s"], lean["msgs_per_generator_cpu_s"])
            continue
        if not peers:
            continue
        cheapest = min(peers, key=lambda r: r["generator_cpu_share"])
        result["cheapest_peer"] = cheapest["variant"]
        result["cpu_vs_cheapest_peer"] = ratio(result["generator_cpu_share"], cheapest["generator_cpu_share"])
        result["rss_vs_smallest_peer"] = ratio(
            result["generator_peak_rss"], min(r["generator_peak_rss"] for r in peers)
        )
        lowest = min((r["server_cpu_us_per_msg"] for r in peers if r["server_cpu_us_per_msg"]), default=None)
        result["server_cpu_vs_lowest_peer"] = ratio(result["server_cpu_us_per_msg"], lowest)


def _medians(results: list[dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    rows = []
    for variant in variants:
        runs = [r for r in results if r["variant"] == variant and "error" not in r]
        if not runs:
            failed = next((r for r in results if r["variant"] == variant), {"error": "did not run"})
            rows.append({"variant": variant, "error": failed["error"]})
            continue
        row: dict[str, Any] = {"variant": variant, "rounds": len(runs)}
        for key in {key for run in runs for key in run} - {"round"}:
            values = [run.get(key) for run in runs]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                row[key] = statistics.median(values)  # type: ignore[type-var]
        rows.append(row)
    return rows


def _table(part: str, plan: Plan, rounds: int) -> tuple[str, tuple[Column, ...], str]:
    columns: tuple[Column, ...]
    if part == "throughput":
        title = (f"peers, throughput: closed-loop echo, {plan.connections} connections, {plan.size}-byte messages, "
                 f"{plan.window:g} s window, median of {rounds} rounds")  # fmt: skip
        columns = (
            VARIANT_COLUMN, Column("rounds", "rounds"), Column("msgs/s", "server_msgs_per_s"),
            Column("gen %", "generator_cpu_share", "pct"), Column("msgs/gen CPU-s", "msgs_per_generator_cpu_s"),
            Column("srv %", "server_cpu_share", "pct"), Column("x best peer", "vs_best_peer", "f2"),
            Column("x lean loop", "vs_lean_loop", "f2"),
        )  # fmt: skip
        notes = (
            "msgs/s: echoes the server sent (its counters: the only count every tool shares); gen %: CPU of the\n"
            "tool's whole process tree per second of the window (100 = one core); x best peer / x lean loop: the\n"
            "median over the rounds of msgs/gen CPU-s against the best peer of the same round / the lean loop."
        )
        return title, columns, notes
    title = (f"peers, hold: {plan.connections:,} connections, one {plan.size}-byte echo every {plan.interval:g} s "
             f"each, {plan.window:g} s window, median of {rounds} rounds")  # fmt: skip
    columns = (
        VARIANT_COLUMN, Column("rounds", "rounds"), Column("open", "connections_open"), Column("ramp s", "ramp_s", "f1"),
        Column("peak MB", "generator_peak_rss", "mb"), Column("hold CPU %", "generator_cpu_share", "pct"),
        Column("srv msgs/s", "server_msgs_per_s", "f1"), Column("srv %", "server_cpu_share", "pct"),
        Column("srv us/msg", "server_cpu_us_per_msg", "f1"), Column("srv wakeups/msg", "server_wakeups_per_msg", "f2"),
        Column("x RSS", "rss_vs_smallest_peer", "f2"),
        Column("x CPU", "cpu_vs_cheapest_peer", "f2"), Column("x srv", "server_cpu_vs_lowest_peer", "f2"),
    )  # fmt: skip
    notes = (
        "peak MB: peak RSS of the tool's whole process tree over the run; hold CPU %: its CPU per second of the\n"
        "window; srv us/msg: the server's CPU per echo it sent; srv wakeups/msg: how often per echo its event loop\n"
        "slept and was woken (1.0: each message reached it alone). x RSS / x CPU / x srv: the median over the rounds\n"
        "of peak RSS, hold CPU and server CPU per echo against the lowest peer of the same round."
    )
    return title, columns, notes


def _times(value: float | None) -> str:
    """A median ratio as printed: ``x0.89`` (``x?`` when not measured)."""
    return "x?" if value is None else f"x{value:.2f}"


def _decimal(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _met(value: float | None, target: float, at_most: bool = False) -> str:
    if value is None:
        return "not measured"
    return "met" if (value <= target if at_most else value >= target) else "MISSED"


def _verdict(
    part: str,
    rows: list[dict[str, Any]],
    profiles: dict[str, str] | None = None,
    greenlet_floor: float | None = None,
    results: list[dict[str, Any]] | None = None,
) -> str:
    """The targets' lines under a part's table, from its medians (``rows``) and every round's ``results``."""
    profiles = profiles or {}
    if part == "throughput":
        return _throughput_verdict(rows, profiles)
    return _hold_verdict(rows, profiles, greenlet_floor, results or [])


def _us_per_echo(row: dict[str, Any] | None) -> float | None:
    """Microseconds of the generator's CPU per echo the server sent."""
    rate = row.get("msgs_per_generator_cpu_s") if row else None
    return 1e6 / rate if rate else None


def _where_time_goes(variant: str, profiles: dict[str, str]) -> str:
    if variant in profiles:
        return f"\n  where {variant}'s time goes (py-spy, own time with the C and system calls each function makes, the idle event loop left out): {profiles[variant]}"
    return f"\n  where {variant}'s time goes: --profile DIR (py-spy)"


def _throughput_verdict(rows: list[dict[str, Any]], profiles: dict[str, str]) -> str:
    # Both of wslocust's closed loops: the task calling self.echo() and the task-less in_flight window.
    peers = [row for row in rows if row["variant"] in PEERS and row.get("msgs_per_generator_cpu_s")]
    best = max(peers, key=lambda row: row["msgs_per_generator_cpu_s"], default=None)
    lean_row = _ok(rows, "lean-loop")
    lines = []
    for variant in WSLOCUST_VARIANTS:
        row = _ok(rows, variant)
        if row is None:
            continue
        vs_best, vs_lean = row.get("vs_best_peer"), row.get("vs_lean_loop")
        lines.append(
            f"\ntarget 2: {variant} {_times(vs_best)} the best peer in msgs per generator CPU-second (median ratio; "
            f"target >= {TARGET_VS_BEST_PEER}): {_met(vs_best, TARGET_VS_BEST_PEER)}; {_times(vs_lean)} the lean loop "
            f"(target >= {TARGET_VS_LEAN_LOOP}): {_met(vs_lean, TARGET_VS_LEAN_LOOP)}"
        )
        if _met(vs_best, TARGET_VS_BEST_PEER) != "MISSED" and _met(vs_lean, TARGET_VS_LEAN_LOOP) != "MISSED":
            continue
        lines.append(_throughput_gap(variant, row, best, lean_row, _window_if_met(rows, variant)))
        lines.append(_where_time_goes(variant, profiles))
    return "".join(lines)


def _window_if_met(rows: list[dict[str, Any]], variant: str) -> dict[str, Any] | None:
    """The task-less closed loop's row when it met both throughput targets and ``variant`` is the task's."""
    window = _ok(rows, "wslocust-window")
    if variant != "wslocust-user" or window is None:
        return None
    met = (
        _met(window.get("vs_best_peer"), TARGET_VS_BEST_PEER) == "met"
        and _met(window.get("vs_lean_loop"), TARGET_VS_LEAN_LOOP) == "met"
    )
    return window if met else None


def _throughput_gap(
    variant: str,
    row: dict[str, Any],
    best: dict[str, Any] | None,
    lean: dict[str, Any] | None,
    window: dict[str, Any] | None = None,
) -> str:
    """
    What the missed throughput targets allow per echo, and what would close the gap; ``window``:
    the task-less closed loop's row, when it met them in the same run.
    """
    ours = _us_per_echo(row)
    if ours is None:
        return ""
    allowed = []
    if best is not None:
        allowed.append((_us_per_echo(best) / TARGET_VS_BEST_PEER, f"x{TARGET_VS_BEST_PEER} {best['variant']}"))
    lean_us = _us_per_echo(lean)
    if lean_us is not None:
        allowed.append((lean_us / TARGET_VS_LEAN_LOOP, f"x{TARGET_VS_LEAN_LOOP} the lean loop"))
    if not allowed:
        return ""
    budget, which = min(allowed)
    text = (
        f"\n  {variant}: {ours:.1f} us of generator CPU per echo{_in_kernel(row)}; {which} allows {budget:.1f} us"
        + (f" ({best['variant']} {_us_per_echo(best):.1f} us)" if best is not None else "")
    )
    if lean is None or lean_us is None:
        return text
    text += (
        f"\n  the lean loop (the same codec on gevent sockets, no statistics) takes {lean_us:.1f} us of them"
        f"{_in_kernel(lean)}: everything wslocust adds per echo (the request's bookkeeping, kernel receive "
        "timestamps, Locust's event and statistics" + (", the task loop" if variant == "wslocust-user" else "")
        + f") takes {ours - lean_us:.1f} us here and would have to fit in {budget - lean_us:.1f} us"
    )  # fmt: skip
    if budget <= lean_us:
        return text + ": no room at all; nothing short of a faster codec and socket path closes it"
    text += f"\n  what would close it: that work cut by {(ours - budget) / (ours - lean_us):.0%}"
    window_us = _us_per_echo(window)
    if window_us is not None:
        return text + (
            f": the same closed loop without a task (wslocust-window, in_flight = 1) met both targets in this run, "
            f"at {window_us:.1f} us per echo; the other {ours - window_us:.1f} us are what a task costs: Locust's task "
            "loop (per task its wait, a gevent.sleep(0) at constant(0), the task's pick) and the blocking echo()'s "
            "wait (its timer, the switches to the event loop and back)"
        )
    return text + (
        "; Locust's statistics are already written without its per-request event "
        "(wslocust/locust_compat/request_log.py) while nothing else listens, and a closed loop's next echoes leave "
        "together after the event loop's reads; what is left is the reply's matching, its kernel timestamp and the "
        "request's bookkeeping (--profile)"
    )


def _in_kernel(row: dict[str, Any]) -> str:
    system = row.get("generator_system_us_per_msg")
    return f" ({system:.1f} in the kernel)" if system is not None else ""


def _rss_missed(rows: list[dict[str, Any]]) -> bool:
    user = _ok(rows, "wslocust-user")
    return user is not None and user["generator_peak_rss"] / 2**20 > TARGET_RSS_MB


def _hold_verdict(
    rows: list[dict[str, Any]], profiles: dict[str, str], greenlet_floor: float | None, results: list[dict[str, Any]]
) -> str:
    user = _ok(rows, "wslocust-user")
    if user is None:
        return ""
    rss_mb = user["generator_peak_rss"] / 2**20
    cpu, server = user.get("cpu_vs_cheapest_peer"), user.get("server_cpu_vs_lowest_peer")
    verdict = (
        f"\ntarget 3: wslocust-user peak RSS {rss_mb:.0f} MB (target <= {TARGET_RSS_MB} MB): "
        f"{_met(rss_mb, TARGET_RSS_MB, True)}; hold CPU {_times(cpu)} the cheapest peer's (target <= "
        f"{TARGET_CPU_VS_CHEAPEST}): {_met(cpu, TARGET_CPU_VS_CHEAPEST, True)}; server CPU per echo {_times(server)} "
        f"the lowest peer's (target <= 1.0): {_met(server, 1.0, True)}"
    )
    if rss_mb > TARGET_RSS_MB:
        verdict += _memory_gap(user, greenlet_floor)
    peers = [row for row in rows if row["variant"] in PEERS and row.get("generator_cpu_share")]
    cheapest = min(peers, key=lambda row: row["generator_cpu_share"], default=None)
    if cpu is not None and cpu > TARGET_CPU_VS_CHEAPEST and cheapest is not None:
        ours, theirs = _us_per_echo(user), _us_per_echo(cheapest)
        if ours is not None and theirs is not None:
            verdict += (
                f"\n  hold CPU: {ours:.0f} us of generator CPU per echo{_in_kernel(user)}, "
                f"{cheapest['variant']} {theirs:.0f} us{_in_kernel(cheapest)}: "
                f"x{TARGET_CPU_VS_CHEAPEST} allows {theirs * TARGET_CPU_VS_CHEAPEST:.0f} us, "
                f"{ours - theirs * TARGET_CPU_VS_CHEAPEST:.0f} us less per echo"
            )
        verdict += _where_time_goes("wslocust-user", profiles)
    peers = [row for row in rows if row["variant"] in PEERS and row.get("server_cpu_us_per_msg")]
    lowest = min(peers, key=lambda row: row["server_cpu_us_per_msg"], default=None)
    if server is not None and server > 1.0 and lowest is not None:
        # The reason, when the server pays more for wslocust's traffic: how its messages reach the server.
        ours, theirs = user.get("server_wakeups_per_msg"), lowest.get("server_wakeups_per_msg")
        verdict += (
            f"\n  the server's event loop woke {_decimal(ours)} times per echo for wslocust-user, "
            f"{_decimal(theirs)} for {lowest['variant']}"
        )
        if ours is not None and theirs is not None and ours > theirs:
            verdict += ": messages that reach it one by one cost a wake-up each, a batch shares one"
        else:
            verdict += ": not more often; the difference is per message"
        verdict += _server_spread(results, lowest["variant"])
    return verdict


def _server_spread(results: list[dict[str, Any]], peer: str) -> str:
    """The server's CPU per echo in each round for wslocust-user and ``peer``: is the difference in the noise?"""
    ranges = {}
    for variant in ("wslocust-user", peer):
        values = [
            r["server_cpu_us_per_msg"] for r in results if r["variant"] == variant and r.get("server_cpu_us_per_msg")
        ]
        if len(values) < 2:
            return ""
        ranges[variant] = (min(values), max(values))
    (ours_low, ours_high), (theirs_low, theirs_high) = ranges["wslocust-user"], ranges[peer]
    text = (
        f"\n  the server's CPU per echo over the rounds: {ours_low:.1f}-{ours_high:.1f} us for wslocust-user, "
        f"{theirs_low:.1f}-{theirs_high:.1f} us for {peer}"
    )
    if ours_low <= theirs_high:
        return text + ": the ranges overlap, the difference is within the run-to-run spread"
    return text + ": apart in every round"


def _memory_gap(user: dict[str, Any], greenlet_floor: float | None) -> str:
    """Where the missed memory target stands: memory per connection against what 150 MB allows."""
    idle, connections = user.get("generator_idle_rss"), user.get("connections_open")
    if not idle or not connections:
        return ""
    per_connection = (user["generator_peak_rss"] - idle) / connections
    allowed = (TARGET_RSS_MB * 2**20 - idle) / connections
    text = (
        f"\n  memory: {idle / 2**20:.0f} MB before the first connection + {per_connection / 1024:.1f} KB per "
        f"connection at the peak; {TARGET_RSS_MB} MB allows {allowed / 1024:.1f} KB per connection"
    )
    if greenlet_floor is not None:
        text += (
            f"\n  a blocked gevent greenlet keeps {greenlet_floor / 1024:.1f} KB (benchmarks/greenlet_cost.py); "
            "wslocust-user has none per connection: a user without tasks is held in the event loop"
        )
    return text + (
        "\n  what would close it: fewer or smaller Python objects per connection (the user, its connection, "
        "their watchers and timers, and Locust's greenlet for the user, which never runs)"
    )
