"""
The WebSocket figures in Locust's text outputs: two lines under each
periodic statistics table of a headless run, a results block at the end of
every run, one greppable summary line in the log, and, with ``--csv PREFIX``,
three more CSV files beside Locust's (written by :mod:`wslocust.reporting.csv_files`):

``PREFIX_websocket.csv``
    one row for the run (``All``) and one per worker: every counter, rate,
    round-trip percentile and system figure (the columns of
    :data:`ROW_COLUMNS`), rewritten each second like ``PREFIX_stats.csv``;
``PREFIX_websocket_history.csv``
    the ``All`` row once a second, with a timestamp, appended;
``PREFIX_websocket_errors.csv``
    errors by category.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import TYPE_CHECKING, Any

from wslocust.formatting import category_label, format_bytes, format_count, format_ms, node_status
from wslocust.reporting.latency import latency
from wslocust.reporting.nodes import PER_1K_MINIMUM, RATES, TOTALS
from wslocust.reporting.saturation import saturation_warnings
from wslocust.run.counters import WsCounters
from wslocust.run.loop_lag import LAG_WARNING_MS

if TYPE_CHECKING:
    from wslocust.reporting.live import Live

__all__ = [
    "ROW_COLUMNS",
    "console_lines",
    "log_summary",
    "node_rows",
    "nodes_csv",
    "print_console_lines",
    "print_results",
    "saturation_warnings",
    "summary_lines",
]

console = logging.getLogger("locust.stats_logger")
"""Locust's plain console logger (no timestamps), the one its tables go to."""
logger = logging.getLogger("wslocust")

ROW_COLUMNS = (
    "node",
    "status",
    "host",
    "pid",
    "users",
    "open",
    "connecting",
    "reconnecting",
    "failed",
    *TOTALS,
    "errors",
    *(f"{name}_per_s" for name in (*RATES, "errors")),
    "round_trip_p50_ms",
    "round_trip_p95_ms",
    "round_trip_p99_ms",
    "round_trip_avg_ms",
    "cpu_percent",
    "peak_cpu_percent",
    "cpu_percent_per_1k_open",
    "rss_bytes",
    "open_files",
    "saturated",
    "saturated_seconds",
    "loop_lag_p99_ms",
    "loop_lag_max_ms",
    "loop_lag_run_p99_ms",
    "loop_lag_run_max_ms",
)
"""Columns of ``PREFIX_websocket.csv`` and keys of :func:`node_rows`."""

PER_CONNECTION_MINIMUM = PER_1K_MINIMUM
"""Fewest open connections for which per-1K CPU and per-10K memory are printed."""


def _row(view: dict[str, Any], node: str, status: str, round_trip: dict[str, Any] | None) -> dict[str, Any]:
    system = view.get("system") or {}
    row: dict[str, Any] = {
        "node": node,
        "status": status,
        "host": view.get("host", ""),
        "pid": view.get("pid", ""),
        "users": view.get("users", 0),
        **{name: view["connections"][name] for name in ("open", "connecting", "reconnecting", "failed")},
        **view["totals"],
        **{f"{name}_per_s": value for name, value in view["rates"].items()},
        "round_trip_p50_ms": (round_trip or {}).get("p50"),
        "round_trip_p95_ms": (round_trip or {}).get("p95"),
        "round_trip_p99_ms": (round_trip or {}).get("p99"),
        "round_trip_avg_ms": (round_trip or {}).get("avg"),
        "cpu_percent": system.get("cpu"),
        "peak_cpu_percent": system.get("peak_cpu"),
        "cpu_percent_per_1k_open": system.get("cpu_per_1k"),
        "rss_bytes": system.get("rss"),
        "open_files": system.get("fds"),
        "saturated": bool(view.get("saturated")),
        "saturated_seconds": system.get("saturated_seconds", 0),
        **_loop_lag_columns(system.get("loop_lag")),
    }
    return {column: ("" if row.get(column) is None else row.get(column)) for column in ROW_COLUMNS}


def _loop_lag_columns(lag: dict[str, Any] | None) -> dict[str, Any]:
    # Recent (the last few seconds) and whole-run event-loop lag, ms (wslocust.run.loop_lag).
    if not lag:
        return {}
    return {
        "loop_lag_p99_ms": lag["recent_p99"],
        "loop_lag_max_ms": lag["recent_max"],
        "loop_lag_run_p99_ms": lag["p99"],
        "loop_lag_run_max_ms": lag["max"],
    }


def node_rows(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """
    The run (``All``) and, in a distributed run, each worker, as flat rows
    with the keys of :data:`ROW_COLUMNS`. Missing figures are ``""``.
    """
    aggregate = snapshot["aggregate"]
    workers = snapshot["workers"]
    systems = [view["system"] for view in workers if view["system"]]
    distributed = snapshot["mode"] == "master"
    alive = [view for view in workers if view["state"] not in ("gone", "missing")]
    totals_view = {
        "users": aggregate["users"],
        "connections": aggregate["connections"],
        "totals": aggregate["totals"],
        "rates": aggregate["rates"],
        "saturated": aggregate["saturated"],
        "host": ", ".join(sorted({view["host"] for view in alive if view["host"]})) if distributed else "",
        "pid": "" if distributed else (workers[0]["pid"] if workers else ""),
        "system": {
            **aggregate["system"],
            # Each process's own peak added up, never below the total CPU now (the peaks need not have coincided).
            "peak_cpu": round(sum(s["peak_cpu"] for s in systems), 1) if systems else None,
            "fds": sum(s["fds"] for s in systems) if systems else None,
            "saturated_seconds": round(sum(s["saturated_seconds"] for s in systems), 1),
            "loop_lag": aggregate.get("loop_lag"),
        },
    }
    state = snapshot["state"]
    name = f"All ({len(workers)} workers)" if distributed else "All"
    rows = [_row(totals_view, name, node_status(aggregate, state), aggregate["round_trip"])]
    if distributed:
        for view in workers:
            rows.append(_row(view, view["name"], node_status(view, view["state"]), view["round_trip"]))
    return rows


def nodes_csv(snapshot: dict[str, Any]) -> str:
    """:func:`node_rows` as CSV text with a header line."""
    out = io.StringIO()
    writer = csv.DictWriter(out, ROW_COLUMNS)
    writer.writeheader()
    writer.writerows(node_rows(snapshot))
    return out.getvalue()


# Formatting --------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{format_ms(value)} ms"


def _round_trip(round_trip: dict[str, Any] | None) -> str:
    if not round_trip or round_trip.get("p50") is None:
        return "round trip: no replies yet"
    return f"round trip p50 {_ms(round_trip['p50'])}, p95 {_ms(round_trip['p95'])}, p99 {_ms(round_trip['p99'])}"


def console_lines(snapshot: dict[str, Any]) -> list[str]:
    """The lines printed under each periodic table of a headless run."""
    aggregate = snapshot["aggregate"]
    c = aggregate["connections"]
    r = aggregate["rates"]
    system = aggregate["system"]
    workers = [view for view in snapshot["workers"] if view["state"] not in ("gone", "missing")]
    cpus = [view["system"]["cpu"] for view in workers if view["system"]]
    cpu = " + ".join(f"{value:.0f} %" for value in cpus) if cpus else "-"
    per_1k = f", {system['cpu_per_1k']:.1f} % per 1K open" if system["cpu_per_1k"] is not None else ""
    net = ", ".join(  # all of the host's traffic, loopback included, not the test's alone
        f"host net {format_bytes(host['net_in'], True)} in, {format_bytes(host['net_out'], True)} out ({host['host']})"
        for host in snapshot["hosts"]
    )
    lines = [
        (
            f"WebSocket  {c['open']:,} open, {c['connecting']:,} connecting, {c['reconnecting']:,} reconnecting, "
            f"{c['failed']:,} failed, {c['closed']:,} closed | messages {format_count(r['messages_sent'])}/s out, "
            f"{format_count(r['messages_received'])}/s in ({format_count(r['unsolicited_received'])}/s pushed) | "
            f"payload {format_bytes(r['bytes_sent'], True)} out, {format_bytes(r['bytes_received'], True)} in | "
            f"errors {format_count(r['errors'])}/s, {aggregate['totals']['errors']:,} in all"
        ),
        (
            f"WebSocket  {_round_trip(aggregate['round_trip'])} | CPU {cpu}{per_1k}, "
            f"memory {format_bytes(system['rss'])} | {net}"
        ),
    ]
    for view in workers:
        if view["saturated"]:
            lines.append(
                f"WebSocket  SATURATED: {view['name']} ({view['host']}, pid {view['pid']}) at "
                f"{view['system']['cpu']:.0f} % CPU: its latency figures are not trustworthy"
            )
        elif view.get("lagging"):
            lag = view["system"]["loop_lag"]
            lines.append(
                f"WebSocket  LAGGING: {view['name']} ({view['host']}, pid {view['pid']}): event-loop lag p99 "
                f"{_ms(lag['recent_p99'])}, max {_ms(lag['recent_max'])} over the last seconds: its latency "
                "figures include the generator's own delay"
            )
    return lines


def _timing_lines(totals: dict[str, Any]) -> list[str]:
    """Which clock the latencies were taken from (the results block): none if nothing was received."""
    by_kernel = totals.get("received_timed_by_kernel", 0)
    at_read = totals.get("received_timed_at_read", 0)
    if not by_kernel and not at_read:
        return []
    if not by_kernel:
        return ["  timing       latency timed from read time (no kernel receive timestamps)"]
    line = "  timing       latency timed from kernel receive timestamps (SO_TIMESTAMPNS)"
    if at_read:
        line += f"; {at_read:,} of {by_kernel + at_read:,} received timed from read time (no timestamp)"
    return [line]


def _compression_lines(t: dict[str, int]) -> list[str]:
    """The results line of permessage-deflate, when connections negotiated it: the payload against the wire."""
    connects = t.get("deflate_connects", 0)
    if not connects:
        return []

    def share(wire: int, payload: int) -> str:
        return f" ({wire / payload:.0%})" if payload else ""

    out, out_wire = t["deflate_payload_sent"], t["deflate_wire_sent"]
    into, into_wire = t["deflate_payload_received"], t["deflate_wire_received"]
    line = (
        f"  compression  permessage-deflate on {connects:,} connect{'s' if connects != 1 else ''}: "
        f"{format_bytes(out)} of messages sent took {format_bytes(out_wire)} on the wire{share(out_wire, out)}, "
        f"{format_bytes(into)} received took {format_bytes(into_wire)}{share(into_wire, into)}"
    )
    return [line]


def summary_lines(snapshot: dict[str, Any], run: dict[str, Any], round_trip: dict[str, Any] | None) -> list[str]:
    """The WebSocket results block printed at the end of a run."""
    aggregate = snapshot["aggregate"]
    t = aggregate["totals"]
    # Exact in one process; with workers, their peaks (exact each) added up, which need not have coincided.
    peak = "; the peak is the workers' own peaks added up" if snapshot["mode"] == "master" else ""
    lines = [
        "WebSocket results",
        (
            f"  connections  peak {run['peak_open']:,} open; {t['connects_succeeded']:,} connects "
            f"({t['connects_failed']:,} failed attempts, {t['reconnects']:,} reconnects), "
            f"{t['disconnects']:,} lost, {t['closed']:,} closed, {aggregate['connections']['failed']:,} users gave up"
            f"{peak}"
        ),
        f"  messages     {t['messages_sent']:,} sent, {t['messages_received']:,} received "
        f"({t['unsolicited_received']:,} pushed); {format_bytes(t['bytes_sent'])} out, "
        f"{format_bytes(t['bytes_received'])} in"
        + (f"; {run['msg_rate']:,.0f} received/s at full connections" if run["msg_rate"] is not None else "")
        + (
            f"; {t['sends_late']:,} periodic send{'s' if t['sends_late'] != 1 else ''} > 2 ms behind schedule"
            if t["sends_late"]
            else ""
        ),
        *_compression_lines(t),
        f"  latency      {_round_trip(round_trip)} (whole run)",
        *_timing_lines(t),
        _event_loop_line(aggregate.get("loop_lag"), snapshot["mode"] == "master"),
        (
            f"  replies      {t['replies_timed_out']:,} timed out ({t['replies_late']:,} came late), "
            f"{t['replies_lost']:,} lost on close, {t['replies_in_flight_at_stop']:,} in flight at stop; "
            f"{t['replies_duplicated']:,} duplicated, {t['replies_out_of_order']:,} out of order"
        ),
    ]
    generator = []
    # Below ~1,000 connections a process's fixed cost dominates: a per-connection
    # extrapolation from 50 connections would be a false figure, so none is printed.
    if run["peak_open"] >= PER_CONNECTION_MINIMUM:
        if run["cpu_per_1k"] is not None:
            generator.append(f"{run['cpu_per_1k']:.1f} % CPU per 1K open connections")
        if run["mem_per_10k"] is not None:
            generator.append(f"{format_bytes(run['mem_per_10k'])} per 10K connections")
    if run["cpu_max"] is not None:
        generator.append(f"peak CPU {run['cpu_max']:.0f} % of one core")
    if generator:
        lines.append(f"  generator    {', '.join(generator)} (at up to {run['peak_open']:,} open connections)")
    errors = aggregate["errors"]
    if errors:
        by_category = ", ".join(
            f"{count:,} {category_label(category)}" for category, count in sorted(errors.items(), key=lambda i: -i[1])
        )
        lines.append(
            f"  errors       {sum(errors.values()):,}: {by_category} (error rate {aggregate['error_rate']:.3%})"
        )
    else:
        lines.append("  errors       none")
    if snapshot["mode"] == "master":
        for view in snapshot["workers"]:
            system = view["system"] or {}
            w = view["totals"]
            lines.append(
                f"  {view['name']:<12} {view['host']} pid {view['pid']}: peak {view.get('peak_open', 0):,} open, "
                f"{w['connects_succeeded']:,} connects, "
                f"{w['messages_sent']:,} sent, {w['messages_received']:,} received, {w['errors']:,} errors, "
                f"peak CPU {system.get('peak_cpu', 0):.0f} %"
                + (
                    f", loop lag p99 {_ms(system['loop_lag']['p99'])}, max {_ms(system['loop_lag']['max'])}"
                    if system.get("loop_lag")
                    else ""
                )
            )
    return lines


def _event_loop_line(lag: dict[str, Any] | None, distributed: bool) -> str:
    """The results block's event-loop line: how long replies could wait for the generator's own loop."""
    if not lag or not lag["windows"]:
        return "  event loop   lag not measured (a run shorter than a second)"
    return (
        f"  event loop   lag p99 {_ms(lag['p99'])}, max {_ms(lag['max'])}, busy {lag['busy']:.1f} % of the time"
        f"{' (worst worker)' if distributed else ''}; {lag['lagged_windows']:,} one-second "
        f"window{'s' if lag['lagged_windows'] != 1 else ''} with p99 > {LAG_WARNING_MS:g} ms"
    )


# Printing -----------------------------------------------------------------------


def print_console_lines(live: Live, stats: Any, current: bool) -> None:
    """Under each periodic table of a headless run (not the final one): the WebSocket lines."""
    runner = live.environment.runner
    if current and live.housekeeping and runner is not None and runner.stats is stats:
        for line in console_lines(live.snapshot()):
            console.info(line)
        console.info("")


def print_results(live: Live) -> dict[str, Any]:
    """At the end of a run: the results block, then a warning per saturated generator. Returns the snapshot."""
    snapshot = live.snapshot()
    _, round_trip = latency(live.environment.stats, window=False)
    for line in summary_lines(snapshot, live.run_summary(), round_trip):
        console.info(line)
    console.info("")
    for warning in saturation_warnings(snapshot):
        logger.warning(warning)
    return snapshot


def log_summary(total: WsCounters) -> None:
    """
    One greppable log line with every counter since the start (Reset Stats
    does not touch it), for scripts; the readable block is :func:`print_results`.
    """
    logger.info(
        "WebSocket summary: %d connects (%d failed, %d reconnects, %d disconnects), "
        "%d messages sent, %d received (%d unsolicited), %d bytes sent, %d received, "
        "%d replies timed out, %d lost, %d in flight at stop, %d late, %d duplicated, %d out of order",
        total.connects_succeeded,
        total.connects_failed,
        total.reconnects,
        total.disconnects,
        total.messages_sent,
        total.messages_received,
        total.unsolicited_received,
        total.bytes_sent,
        total.bytes_received,
        total.replies_timed_out,
        total.replies_lost,
        total.replies_in_flight_at_stop,
        total.replies_late,
        total.replies_duplicated,
        total.replies_out_of_order,
    )
