"""
The figures of a run over time, for the dashboard's charts (``GET /ws/series``) and the ``--html`` report.

The master (or the single process of a local run) records one point a second from the live
metrics' snapshot (:meth:`wslocust.reporting.live.Live.snapshot`, the one behind ``/ws/stats``):
connections by state, messages per second, round-trip percentiles, CPU and memory of each generator
process and of each host, errors per second by category and each process's event-loop lag. Each
figure is a *column* named ``chart/label`` (``connections/open``, ``cpu/worker 2``,
``errors/timeout``); :data:`CHARTS` says which chart shows which columns, so the page draws whatever
columns come, new workers included.

Memory is bounded: at most :data:`HISTORY_POINTS` points (an hour at one a second) of at most
:data:`MAX_COLUMNS` columns, each an ``array('d')`` of 8 bytes a value (a missing figure is NaN).
With ten workers on three hosts, about 40 columns: 1.2 MB for the hour. Every new test start
clears it (the figures start over, as the live metrics' do).
"""

from __future__ import annotations

import json
import logging
import math
import time
from array import array
from typing import TYPE_CHECKING, Any

import gevent

from wslocust.formatting import category_label

if TYPE_CHECKING:
    from wslocust.reporting.live import Live

__all__ = [
    "CHARTS",
    "HISTORY_POINTS",
    "INTERVAL",
    "MAX_COLUMNS",
    "OFF_LOOP_VALUES",
    "Series",
    "points_of",
    "record_forever",
]

logger = logging.getLogger("wslocust")

INTERVAL = 1.0
"""Seconds between points."""
HISTORY_POINTS = 3600
"""Points kept: the last hour at one a second. Older points are dropped."""
MAX_COLUMNS = 400
"""Most columns kept (a column per worker and chart adds up with hundreds of workers); later ones are left out."""
OFF_LOOP_VALUES = 20_000
"""Values in an answer of :meth:`Series.as_json` above which it is encoded off the event loop."""
_TRIM_SLACK = 60
"""Points allowed past :data:`HISTORY_POINTS` before the oldest are dropped, so that dropping is rare."""

CHARTS: list[dict[str, str]] = [
    {"key": "connections", "title": "Connections", "unit": ""},
    {"key": "messages", "title": "Messages per second", "unit": "/s"},
    {"key": "round_trip", "title": "Round trip (ms, last ~10 s)", "unit": "ms"},
    {"key": "errors", "title": "Errors per second, by category", "unit": "/s", "totals": "error_totals"},
    {"key": "cpu", "title": "Generator CPU % (per process, 100 = one core)", "unit": "%"},
    {"key": "memory", "title": "Generator memory (MB, per process)", "unit": "MB"},
    {"key": "host_cpu", "title": "Host CPU % (host-wide, all cores)", "unit": "%"},
    {"key": "host_memory", "title": "Host memory in use % (host-wide)", "unit": "%"},
    {"key": "loop_lag", "title": "Event-loop lag p99 (ms, per process, last 5 s)", "unit": "ms"},
]
"""The dashboard's charts, in order: ``key`` (the columns' prefix), ``title``, ``unit``, and ``totals`` (the
key of :attr:`Series.latest` holding each label's total since the start, shown beside the chart)."""


def points_of(snapshot: dict[str, Any]) -> dict[str, float | None]:
    """
    The figures of one point, by column, from a live-metrics snapshot (errors are totals: :class:`Series`
    turns them into rates).

    Args:
        snapshot: :meth:`wslocust.reporting.live.Live.snapshot`.

    Returns:
        ``{"connections/open": 30, "messages/sent": 299.5, "cpu/worker 1": 12.0, ...}``; None for a figure
        not known yet (no reply, no sample).
    """
    aggregate = snapshot["aggregate"]
    connections = aggregate["connections"]
    rates = aggregate["rates"]
    round_trip = aggregate["round_trip"] or {}
    point: dict[str, float | None] = {
        **{f"connections/{state}": connections[state] for state in ("open", "connecting", "reconnecting", "failed")},
        "messages/sent": rates["messages_sent"],
        "messages/received": rates["messages_received"],
        **{f"round_trip/{name}": round_trip.get(name) for name in ("p50", "p95", "p99")},
    }
    processes = [
        (view["name"], view["system"])
        for view in snapshot["workers"]
        if view["system"] and view["state"] not in ("gone", "missing")
    ]
    if snapshot.get("master"):
        processes.append(("master", snapshot["master"]))
    for name, system in processes:
        if not system["rss"]:
            continue  # not sampled yet: no figure rather than a zero
        point[f"cpu/{name}"] = system["cpu"]
        point[f"memory/{name}"] = round(system["rss"] / 1e6, 1)
        if name != "master":
            point[f"loop_lag/{name}"] = system["loop_lag"]["recent_p99"]
    for host in snapshot["hosts"]:
        if not host["memory"]:
            continue  # not sampled yet
        point[f"host_cpu/{host['host']}"] = host["cpu"]
        point[f"host_memory/{host['host']}"] = host["memory"]
    return point


class Series:
    """
    A bounded history of points, by column (see the module's docstring).

    Args:
        history: points kept.
        max_columns: columns kept.
    """

    def __init__(self, history: int = HISTORY_POINTS, max_columns: int = MAX_COLUMNS) -> None:
        self.history = history
        self.max_columns = max_columns
        self.times = array("d")
        """Wall time (Unix seconds) of each point, oldest first."""
        self.columns: dict[str, array[float]] = {}
        """Each column's values, aligned with :attr:`times`; NaN where a figure was missing."""
        self.latest: dict[str, Any] = {"state": "init", "users": 0, "run_time": 0.0, "error_totals": {}}
        """The last snapshot's run state, users, run time and error totals by category label."""
        self.run = 0
        """Counts the clears: a page that sees it change reloads the whole history."""
        self._error_totals: dict[str, int] = {}
        self._dropped_columns = False

    def clear(self) -> None:
        """Start over (a new test start)."""
        self.times = array("d")
        self.columns = {}
        self._error_totals = {}
        self.latest = {**self.latest, "error_totals": {}}
        self.run += 1

    def record(self, snapshot: dict[str, Any]) -> None:
        """Add the point of a live-metrics snapshot (:func:`points_of`, and errors per second by category)."""
        t = float(snapshot["time"])
        point = points_of(snapshot)
        errors = {category_label(category): count for category, count in snapshot["aggregate"]["errors"].items()}
        elapsed = t - self.times[-1] if self.times else 0.0
        for label, total in errors.items():
            # Since the last point; a reset (Reset Stats) makes totals smaller: never a negative rate.
            new = max(0, total - self._error_totals.get(label, 0))
            point[f"errors/{label}"] = round(new / elapsed, 2) if elapsed > 0 else 0.0
        for label in self._error_totals.keys() - errors.keys():
            point[f"errors/{label}"] = 0.0
        self._error_totals = errors
        self.latest = {
            "state": snapshot["state"],
            "users": snapshot["aggregate"]["users"],
            "run_time": snapshot["run_time"],
            "error_totals": dict(errors),
        }
        self.append(t, point)

    def append(self, t: float, point: dict[str, float | None]) -> None:
        """Add a point at ``t``: a column it lacks gets NaN, a new column NaN before it."""
        for key in [key for key in point if key not in self.columns]:  # in the point's order: the charts' order
            if len(self.columns) >= self.max_columns:
                if not self._dropped_columns:
                    logger.warning(
                        "wslocust: the dashboard keeps %d figures at most; more are left out", self.max_columns
                    )
                    self._dropped_columns = True
                break
            self.columns[key] = array("d", [math.nan] * len(self.times))
        self.times.append(t)
        for key, values in self.columns.items():
            value = point.get(key)
            values.append(math.nan if value is None else float(value))
        if len(self.times) > self.history + _TRIM_SLACK:
            self._trim(len(self.times) - self.history)

    def _trim(self, count: int) -> None:
        del self.times[:count]
        for key in list(self.columns):
            values = self.columns[key]
            del values[:count]
            if all(math.isnan(value) for value in values):
                del self.columns[key]  # a worker gone for an hour

    def as_json(self, since: float | None = None) -> str:
        """
        The points after ``since`` (all of them if None), as JSON text (``GET /ws/series``).

        Its keys: ``run``, ``interval``, ``history``, ``charts`` (:data:`CHARTS`), ``latest``, ``t`` (Unix
        seconds) and ``columns`` (each column's values for those points, null where missing). A large answer
        (an hour of points: about 0.1 s of float formatting) is encoded in gevent's thread pool, so that the
        event loop keeps serving connections meanwhile but for the moments that thread holds the GIL.
        """
        start = 0
        if since is not None:
            start = len(self.times)
            while start > 0 and self.times[start - 1] > since:
                start -= 1
        head = {"run": self.run, "interval": INTERVAL, "history": self.history, "charts": CHARTS}
        head["latest"] = self.latest
        times = self.times[start:]  # copies: the recorder may append while a thread encodes
        columns = {key: values[start:] for key, values in self.columns.items()}
        if len(times) * (len(columns) + 1) > OFF_LOOP_VALUES:
            text: str = gevent.get_hub().threadpool.apply(_encode, (head, times, columns))
            return text
        return _encode(head, times, columns)

    def as_dict(self, since: float | None = None) -> dict[str, Any]:
        """:meth:`as_json`, decoded."""
        data: dict[str, Any] = json.loads(self.as_json(since))
        return data


def _encode(head: dict[str, Any], times: array[float], columns: dict[str, array[float]]) -> str:
    body = ",".join(f"{json.dumps(key)}:{_json_array(values)}" for key, values in columns.items())
    return f'{json.dumps(head)[:-1]},"t":{_json_array(times)},"columns":{{{body}}}}}'


def _json_array(values: array[float]) -> str:
    # json writes NaN for a missing figure; JavaScript's JSON.parse wants null.
    return json.dumps(values.tolist(), separators=(",", ":")).replace("NaN", "null")


def record_forever(series: Series, live: Live) -> None:
    """Record a point of ``live``'s snapshot every :data:`INTERVAL`; runs in a greenlet of the master."""
    while live.housekeeping:
        gevent.sleep(INTERVAL - time.time() % INTERVAL)  # on the second: points of a run line up
        try:
            series.record(live.snapshot())
        except Exception:  # a bad point must not end the recording
            logger.exception("wslocust: recording the dashboard's series failed")
