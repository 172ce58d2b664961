"""
The state of one wslocust run, in one typed object attached once to Locust's environment.

Locust keeps a run's shared objects on its ``Environment`` (runner, stats,
events, web UI) and hands it to whatever needs them; wslocust does the same
with a :class:`RunState` under the single attribute :data:`ATTRIBUTE`
(``environment.wslocust``), read with :func:`run_state`. Nothing in wslocust
remembers "the current environment" elsewhere: the listeners that
:mod:`wslocust.wiring` registers are closures over the environment and its
state.

On a master, everything known of one worker lives in its :class:`WorkerView`:
its latest WebSocket counters and live-metrics report (both travel in one
dict under :data:`REPORT_KEY` of Locust's worker report, see
:func:`worker_report`), its open-files limit, when it connected, when it last
reported, whether it is missing, and its latest open-connection count while a
shape watches them. A worker sends snapshots, never deltas: a view is replaced
by each report, so a lost report or a killed worker neither double-counts nor
drops history, and the run's totals (:meth:`RunState.total_counters`) are a
sum of snapshots, which :meth:`~wslocust.run.counters.WsCounters.merge` makes
associative and commutative.

Fields whose types live in higher layers (the embedded server, the live
metrics, thresholds, CSV files) are typed ``Any`` and name their class in
their docstring: this module imports nothing above it, not even for type
checking, so the import graph has no circle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wslocust.locust_compat import RequestLog
from wslocust.run.counters import WsCounters
from wslocust.run.loop_lag import LoopLag
from wslocust.run.pacing import StartPacer
from wslocust.run.schedule import Schedule

if TYPE_CHECKING:
    import gevent
    from locust.env import Environment

    from wslocust.transport.addresses import SourceAddresses

__all__ = [
    "ATTRIBUTE",
    "REPORT_KEY",
    "Recovery",
    "RunState",
    "WorkerView",
    "run_state",
    "worker_report",
]

ATTRIBUTE = "wslocust"
"""The one attribute of Locust's ``Environment`` that holds the :class:`RunState`."""

REPORT_KEY = "wslocust"
"""Our one key in Locust's worker report (``stats`` and ``errors`` are Locust's): see :func:`worker_report`."""


def worker_report(counters: WsCounters, live: dict[str, Any] | None) -> dict[str, Any]:
    """
    What a worker sends under :data:`REPORT_KEY` of each Locust worker report.

    Args:
        counters: the worker's counters since it started (a snapshot).
        live: its live-metrics report
            (:meth:`wslocust.reporting.live.Live.node_report`), None if it has none.

    Returns:
        ``{"counters": ..., "live": ...}``, plain data for msgpack.
    """
    return {"counters": counters.as_dict(), "live": live or {}}


@dataclass
class WorkerView:
    """Everything a master knows of one worker, replaced piece by piece as the worker tells it."""

    id: str
    """Locust's client id: ``hostname_`` plus a random hex string."""
    counters: WsCounters = field(default_factory=WsCounters)
    """Its latest WebSocket counters (totals since it started), as included in the run's totals."""
    live: dict[str, Any] = field(default_factory=dict)
    """Its latest live-metrics report (:meth:`wslocust.reporting.live.Live.node_report`): its clock, system
    sample, errors by category, round-trip latency and users."""
    last_report: float | None = None
    """``time.time()`` when its last report came, None if it never reported."""
    received_at: float | None = None
    """``time.monotonic()`` when its last report came (for rates and staleness), None if it never reported."""
    open_files: int | None = None
    """Its open-files limit (RLIMIT_NOFILE), sent once when it connects; None until then."""
    connected_at: float | None = None
    """``time.monotonic()`` when it connected, None if the master has not seen it connect."""
    missing_since: float | None = None
    """``time.time()`` when the master first saw it missing (no heartbeat), None while it is not."""
    watched: tuple[int, int] | None = None
    """(open connections, disconnects so far) from its latest fast report while a shape watches
    connections (:data:`wslocust.run.schedule.Schedule.watch`), else None."""

    @property
    def reported(self) -> bool:
        """True once the worker has sent a report."""
        return self.last_report is not None

    @property
    def missing(self) -> bool:
        """True while the master sees it missing."""
        return self.missing_since is not None

    def take_report(self, report: dict[str, Any], *, wall: float, monotonic: float) -> None:
        """
        Replace what the worker last reported by ``report`` (see :func:`worker_report`).

        Args:
            report: the dict the worker sent under :data:`REPORT_KEY`.
            wall: ``time.time()`` of its arrival.
            monotonic: ``time.monotonic()`` of its arrival.
        """
        self.counters = WsCounters.from_dict(report.get("counters") or {})
        self.live = dict(report.get("live") or {})
        self.last_report = wall
        self.received_at = monotonic


@dataclass(frozen=True)
class Recovery:
    """How an :class:`~wslocust.integration.shapes.ErrorRecovery` run came back after its fault."""

    connections: int
    """Connections open when the fault was injected: all of the shape's (the fault waits for them)."""
    recovered: int
    """Connections open again when the recovery was measured (as many)."""
    lowest: int
    """Fewest connections open during the fault."""
    seconds: float
    """Seconds from the target's return (the end of its refusal window) until every connection was back;
    from the drop when the fault came from outside the run."""


@dataclass
class RunState:
    """
    One run of this process: what wslocust adds to Locust's ``Environment``.

    Get it with :func:`run_state`; :mod:`wslocust.wiring` attaches it at
    Locust's ``init`` event.
    """

    start_pacer: StartPacer
    """Spreads the first connects of users that Locust spawns together (:mod:`wslocust.run.pacing`)."""
    counters: WsCounters = field(default_factory=WsCounters)
    """This process's WebSocket counters: its users update them in place."""
    loop_lag: LoopLag = field(default_factory=LoopLag)
    """This process's event-loop lag probe (:mod:`wslocust.run.loop_lag`): started at ``init``, its run figures
    start over at each test start."""
    workers: dict[str, WorkerView] = field(default_factory=dict)
    """On a master: each worker that connected or reported, by client id."""
    schedule: Schedule | None = None
    """The schedule the run's shape published, None without a wslocust shape."""
    embedded_server: Any = None
    """The :class:`wslocust.server.ReferenceServer` started when no target was given, None otherwise."""
    source_addresses: SourceAddresses | None = None
    """This process's rotation over ``--ws-source-addresses``, None when the kernel chooses."""
    live: Any = None
    """The :class:`wslocust.reporting.live.Live` metrics (on a master or a single process; on a worker, what it
    reports), None before ``init``."""
    thresholds: list[Any] | None = None
    """The parsed ``--ws-thresholds`` (:class:`wslocust.reporting.thresholds.Threshold`), None without any."""
    threshold_results: list[Any] | None = None
    """The thresholds evaluated at the end of the run (:class:`wslocust.reporting.thresholds.Result`), None
    before."""
    recovery: Recovery | None = None
    """The error-recovery measurement of an ``ErrorRecovery`` shape, None before (or without one)."""
    csv_files: Any = None
    """The ``--csv`` WebSocket files (:class:`wslocust.reporting.csv_files.CsvFiles`), None without ``--csv``."""
    abort_checker: gevent.Greenlet | None = None
    """The greenlet that stops the run at a threshold's first breach (``--ws-thresholds-abort``), killed at
    ``quitting``, before the thresholds' verdict."""
    greenlets: list[gevent.Greenlet] = field(default_factory=list)
    """Background greenlets of this run (sampling, CSV writing); killed at ``quit``."""
    _request_log: RequestLog | None = None

    def request_log(self, environment: Environment) -> RequestLog:
        """Where this process's users record their successful requests (:mod:`wslocust.locust_compat.request_log`)."""
        if self._request_log is None:
            self._request_log = RequestLog(environment, "WS")
        return self._request_log

    # Workers, as the master sees them ---------------------------------------------

    def worker(self, client_id: str) -> WorkerView:
        """The view of worker ``client_id``, created on first mention."""
        view = self.workers.get(client_id)
        if view is None:
            view = self.workers[client_id] = WorkerView(client_id)
        return view

    def receive_worker_report(self, client_id: str, data: dict[str, Any]) -> WorkerView | None:
        """
        Take a worker's Locust report (the ``worker_report`` event's ``data``) into its view.

        Returns:
            The worker's view, or None when the report has nothing of ours
            (no :data:`REPORT_KEY`: a worker without wslocust).
        """
        report = data.get(REPORT_KEY)
        if report is None:
            return None
        view = self.worker(client_id)
        view.take_report(report, wall=time.time(), monotonic=time.monotonic())
        return view

    def total_counters(self) -> WsCounters:
        """The run's counters: this process's, plus the latest report of every worker on a master."""
        total = WsCounters().merge(self.counters)
        for view in self.workers.values():
            total.merge(view.counters)
        return total

    def next_source_address(self) -> tuple[str, int] | None:
        """The ``(address, 0)`` the next connection of this process binds to; None lets the kernel choose."""
        return self.source_addresses.next() if self.source_addresses is not None else None

    def kill_greenlets(self) -> None:
        """Stop the run's background greenlets (at ``quit``), without waiting."""
        for greenlet in self.greenlets:
            greenlet.kill(block=False)
        self.greenlets.clear()


def run_state(environment: Environment) -> RunState:
    """
    The :class:`RunState` of ``environment``, attached on first use.

    :mod:`wslocust.wiring` attaches it at Locust's ``init``; an environment
    built without it (a test's, a library user's) gets one here.
    """
    state: RunState | None = getattr(environment, ATTRIBUTE, None)
    if state is None:
        state = RunState(start_pacer=StartPacer(environment))
        setattr(environment, ATTRIBUTE, state)
    return state
