"""
The WebSocket section of Locust's HTML report (``--html FILE``, and the web UI's Download report).

The figures of the results block printed at the end of a run (:func:`wslocust.reporting.reports.summary_lines`),
as tables: connections, messages, replies timed out / late / lost, the round-trip percentiles, the
event loop, each generator process's CPU and memory, errors by category; then the dashboard's
charts of the run (:mod:`wslocust.reporting.series`), drawn by uPlot, which is inlined with the page's
script and the data so that the file works offline, mailed around.

Every figure's cell carries ``data-ws="name"`` and ``data-value`` (the raw number), for scripts and tests.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

from wslocust.formatting import category_label, format_bytes
from wslocust.reporting.dashboard import static_text
from wslocust.reporting.latency import latency
from wslocust.reporting.reports import PER_CONNECTION_MINIMUM
from wslocust.reporting.series import Series

if TYPE_CHECKING:
    from wslocust.reporting.live import Live

__all__ = ["report_section"]

_Row = tuple[str, str, Any, str]
"""A table row: label, ``data-ws`` name, raw value, and how it reads (empty: the raw value with separators)."""


def _text(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}" if value else "0"
    return str(value)


def _table(rows: list[_Row]) -> str:
    cells = []
    for title, name, value, shown in rows:
        raw = "" if value is None else html.escape(str(value), quote=True)
        cells.append(
            f'<tr><th>{html.escape(title)}</th><td data-ws="{html.escape(name, quote=True)}" data-value="{raw}">'
            f"{html.escape(shown or _text(value))}</td></tr>"
        )
    return f'<table class="ws-results">{"".join(cells)}</table>'


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.3g} ms" if value < 100 else f"{value:,.0f} ms"


def _figures(live: Live, series: Series) -> list[tuple[str, list[_Row]]]:
    snapshot = live.snapshot()
    run = live.run_summary()
    _, round_trip = latency(live.environment.stats, window=False)
    aggregate = snapshot["aggregate"]
    t = aggregate["totals"]
    trip = round_trip or {}
    lag = aggregate.get("loop_lag") or {}
    sections = [
        (
            "Connections",
            [
                ("peak open", "peak_open", run["peak_open"], ""),
                ("connects", "connects_succeeded", t["connects_succeeded"], ""),
                ("failed attempts", "connects_failed", t["connects_failed"], ""),
                ("reconnects", "reconnects", t["reconnects"], ""),
                ("lost (disconnects)", "disconnects", t["disconnects"], ""),
                ("closed", "closed", t["closed"], ""),
                ("users gave up", "users_gave_up", aggregate["connections"]["failed"], ""),
            ],
        ),
        (
            "Messages",
            [
                ("sent", "messages_sent", t["messages_sent"], ""),
                ("received", "messages_received", t["messages_received"], ""),
                ("pushed by the server", "unsolicited_received", t["unsolicited_received"], ""),
                ("payload out", "bytes_sent", t["bytes_sent"], format_bytes(t["bytes_sent"])),
                ("payload in", "bytes_received", t["bytes_received"], format_bytes(t["bytes_received"])),
                ("received/s at full connections", "msg_rate", _rounded(run["msg_rate"]), ""),
                ("periodic sends > 2 ms behind schedule", "sends_late", t["sends_late"], ""),
            ],
        ),
        (
            "Replies",
            [
                ("timed out", "replies_timed_out", t["replies_timed_out"], ""),
                ("came late (after timing out)", "replies_late", t["replies_late"], ""),
                ("lost on close", "replies_lost", t["replies_lost"], ""),
                ("in flight at stop", "replies_in_flight_at_stop", t["replies_in_flight_at_stop"], ""),
                ("duplicated", "replies_duplicated", t["replies_duplicated"], ""),
                ("out of order", "replies_out_of_order", t["replies_out_of_order"], ""),
            ],
        ),
        (
            "Round trip (whole run)",
            [
                ("timed round trips", "round_trips", trip.get("requests"), ""),
                *((name, f"round_trip_{name}", trip.get(name), _ms(trip.get(name))) for name in ("p50", "p95", "p99")),
                ("average", "round_trip_avg", trip.get("avg"), _ms(trip.get("avg"))),
                ("max", "round_trip_max", trip.get("max"), _ms(trip.get("max"))),
            ],
        ),
        (
            "Event loop of the generator" + (" (worst worker)" if snapshot["mode"] == "master" else ""),
            [
                ("lag p99", "loop_lag_p99", lag.get("p99"), _ms(lag.get("p99"))),
                ("longest stall", "loop_lag_max", lag.get("max"), _ms(lag.get("max"))),
                ("busy % of the time", "loop_busy", lag.get("busy"), ""),
                ("one-second windows with p99 > 5 ms", "lagged_windows", lag.get("lagged_windows"), ""),
            ],
        ),
    ]
    generator: list[_Row] = [("peak CPU % of one core", "cpu_max", run["cpu_max"], "")]
    if (run["peak_open"] or 0) >= PER_CONNECTION_MINIMUM:  # below, a process's fixed cost dominates (see reports.py)
        generator.append(("CPU % per 1K open", "cpu_per_1k", _rounded(run["cpu_per_1k"]), ""))
        per_10k = run["mem_per_10k"]
        generator.append(("memory per 10K connections", "mem_per_10k", _rounded(per_10k), _bytes(per_10k)))
    for view in snapshot["workers"]:
        system = view["system"] or {}
        peak_mb = _peak(series, f"memory/{view['name']}")
        name = view["name"]
        generator += [
            (f"{name}: host, pid", f"process_{name}", f"{view['host']} pid {view['pid']}", ""),
            (f"{name}: peak CPU %", f"peak_cpu_{name}", system.get("peak_cpu"), ""),
            (f"{name}: memory at the end", f"rss_{name}", system.get("rss"), _bytes(system.get("rss"))),
            (f"{name}: peak memory (sampled)", f"peak_rss_{name}", peak_mb, "" if peak_mb is None else f"{peak_mb} MB"),
        ]
    sections.append(("Generator", generator))
    errors = aggregate["errors"]
    total = sum(errors.values())
    error_rows: list[_Row] = [("errors", "errors", total, "")]
    error_rows += [
        (category_label(category), f"error_{category}", count, f"{count:,} ({100 * count / total:.1f} %)")
        for category, count in sorted(errors.items(), key=lambda item: -item[1])
    ]
    sections.append(("Errors by category", error_rows))
    return sections


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _bytes(value: float | None) -> str:
    return "–" if value is None else format_bytes(value)


def _peak(series: Series, key: str) -> float | None:
    values = [value for value in series.columns.get(key, ()) if not math.isnan(value)]
    return max(values) if values else None


def _script_data(text: str) -> str:
    # JSON inside <script>: no "</script>" or "<!--" can come out of it.
    return text.replace("<", "\\u003c")


def report_section(live: Live, series: Series) -> str:
    """
    The WebSocket section, as HTML to add to Locust's report page.

    Args:
        live: the run's live metrics (the figures of the results block).
        series: the run's recorded series (the charts).

    Returns:
        A ``<section id="wslocust-report">`` with its styles, tables, charts and scripts inlined.
    """
    tables = "".join(
        f'<div class="ws-results-group"><h3>{html.escape(title)}</h3>{_table(rows)}</div>'
        for title, rows in _figures(live, series)
    )
    charts = ""
    if series.times:
        charts = (
            "<h2>WebSocket charts</h2>"
            '<div class="ws-charts" id="ws-report-charts"></div>'
            f"<script>{static_text('uPlot.iife.min.js')}</script>"
            f"<script>{static_text('dashboard.js')}</script>"
            f"<script>window.wsDashboard = WsDashboard.show("
            f'document.getElementById("ws-report-charts"), {_script_data(series.as_json())});</script>'
        )
    return (
        '<section id="wslocust-report" class="ws-dashboard ws-report">'
        f"<style>{static_text('uPlot.min.css')}\n{static_text('dashboard.css')}</style>"
        "<h2>WebSocket results</h2>"
        f'<div class="ws-results-groups">{tables}</div>'
        f"{charts}</section>"
    )
