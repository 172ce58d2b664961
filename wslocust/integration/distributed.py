"""
Distributed runs: the master's view of its workers.

Locust's master/worker mode is the engine (``--processes N`` / ``WORKERS`` on
one host; ``--master`` and ``--worker --master-host`` across hosts). This
module adds what a WebSocket run needs on top of it:

- Workers that leave: a worker killed with SIGKILL stops sending heartbeats;
  after about 3 s Locust marks it ``missing`` and the run goes on with the
  others (with ``--enable-rebalancing`` its users are started again on them).
  Its last WebSocket counters stay in the totals, since workers send
  snapshots; this module notes when that happens, says so in the logs at
  that moment and at the end of the run, and lists every worker with
  :func:`worker_reports` for monitoring endpoints.

- The end of a run: a quitting master waits for every worker's last report
  (Locust alone waits 0.5 s, less than WebSocket users may take to close),
  at most ``--stop-timeout`` plus :data:`FINAL_REPORT_TIMEOUT` seconds, so
  that the totals printed at the end hold the whole run
  (:func:`wslocust.locust_compat.wait_for_final_reports_on_quit`).

- A worker that loses its master (killed, or cut off by the network) stops
  its users and quits after :data:`MASTER_TIMEOUT` seconds without a
  heartbeat from it, instead of Locust's 60 s of load that nobody controls
  (:func:`wslocust.locust_compat.limit_master_heartbeat_timeout`).

- Spawn messages: Locust's worker spends seconds of CPU on each (it rebuilds
  its argument parser once per option); cached
  (:func:`wslocust.locust_compat.cache_default_args`), so that
  busy workers keep sending heartbeats during a ramp.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import STATE_MISSING, MasterRunner

from wslocust.run.counters import WsCounters
from wslocust.run.state import RunState, run_state

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = [
    "FINAL_REPORT_TIMEOUT",
    "MASTER_TIMEOUT",
    "MISSING_CHECK_INTERVAL",
    "WorkerReport",
    "log_late_workers",
    "log_missing_workers",
    "log_no_master",
    "watch_workers",
    "worker_reports",
]

logger = logging.getLogger("wslocust")

MISSING_CHECK_INTERVAL = 1.0
"""Seconds between the master's looks at its workers' states (Locust's heartbeat interval)."""

MASTER_TIMEOUT = 10
"""Seconds without a heartbeat from the master after which a worker stops its users and quits.
Locust waits 60 s, holding its connections and sending messages all along; the master has
declared such a worker missing after ~3 s (and, with --enable-rebalancing, started its users
elsewhere), so its load is no longer counted nor controlled. 10 s still rides out a short blip."""

FINAL_REPORT_TIMEOUT = 10.0
"""Seconds, on top of ``--stop-timeout``, that a quitting master waits for its workers' last reports."""


@dataclass
class WorkerReport:
    """One worker as the master knows it: what it last reported, and whether it is still there."""

    id: str
    """Locust's client id: ``hostname_`` plus a random hex string."""
    index: int | None
    """Locust's worker index (0, 1, ...), stable while the master runs."""
    state: str
    """Locust's state (``ready``, ``spawning``, ``running``, ``stopped``), ``missing`` (no
    heartbeat: killed, hung or cut off) or ``disconnected`` (it quit)."""
    last_report: float | None
    """``time.time()`` of its last report, None if it never reported."""
    counters: WsCounters = field(default_factory=WsCounters)
    """Its last WebSocket counters, as included in the totals."""
    missing_since: float | None = None
    """``time.time()`` when the master first saw it missing, else None."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: for ``/ws/stats``-style endpoints."""
        return {
            "id": self.id,
            "index": self.index,
            "state": self.state,
            "last_report": self.last_report,
            "missing_since": self.missing_since,
            "counters": self.counters.as_dict(),
        }


def worker_reports(environment: Environment) -> list[WorkerReport]:
    """
    Every worker that is connected or ever reported, by index.

    On a master only; an empty list elsewhere. The counters of a ``missing``
    or ``disconnected`` worker are its last report: they stay in the totals
    (:meth:`wslocust.run.state.RunState.total_counters`).
    """
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return []
    views = run_state(environment).workers
    reported = [client_id for client_id, view in views.items() if view.reported]
    reports = []
    for client_id in {**dict.fromkeys(runner.clients), **dict.fromkeys(reported)}:
        node = runner.clients.get(client_id)
        view = views.get(client_id)
        if view is not None and view.missing and (node is None or node.state == STATE_MISSING):
            status = STATE_MISSING
        elif node is not None:
            status = node.state
        else:
            status = "disconnected"
        reports.append(
            WorkerReport(
                id=client_id,
                index=runner.worker_indexes.get(client_id),
                state=status,
                last_report=view.last_report if view is not None else None,
                counters=view.counters if view is not None else WsCounters(),
                missing_since=view.missing_since if view is not None and status == STATE_MISSING else None,
            )
        )
    reports.sort(key=lambda report: (report.index is None, report.index or 0, report.id))
    return reports


# Workers that go missing -------------------------------------------------------------------


def watch_workers(state: RunState, runner: MasterRunner) -> None:
    """Note, and log, each worker that goes missing or comes back; runs for the whole run in a greenlet."""
    # Locust has no event for a worker that goes missing: look at each heartbeat tick.
    while True:
        gevent.sleep(MISSING_CHECK_INTERVAL)
        try:
            _check_workers(state, runner)
        except Exception:  # never let monitoring end the run
            logger.exception("wslocust: checking the workers failed")


def _check_workers(state: RunState, runner: MasterRunner) -> None:
    for node in list(runner.clients.values()):
        view = state.workers.get(node.id)
        if node.state == STATE_MISSING and (view is None or not view.missing):
            state.worker(node.id).missing_since = time.time()
            logger.warning("wslocust: %s", _describe_missing(state, runner, node.id))
        elif node.state != STATE_MISSING and view is not None and view.missing:
            view.missing_since = None
            logger.info(
                "wslocust: worker %s (index %s) is back; its next report replaces its last one",
                node.id,
                runner.worker_indexes.get(node.id),
            )


def _describe_missing(state: RunState, runner: MasterRunner, client_id: str) -> str:
    view = state.workers.get(client_id)
    who = f"worker {client_id} (index {runner.worker_indexes.get(client_id)})"
    if view is None or view.last_report is None:
        return f"{who} is missing (no heartbeat) and never reported WebSocket counters"
    counters = view.counters
    return (
        f"{who} is missing (no heartbeat): its last report, from {_clock(view.last_report)} "
        f"({counters.open} open, {counters.connects_succeeded} connects, {counters.messages_sent} messages sent), "
        f"stays in the totals"
    )


def _clock(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def log_no_master(host: str, port: int, seconds_left: float) -> None:
    """Say, once, that a worker has no master at ``host:port`` yet, and how long Locust keeps trying."""
    sys.stderr.write(
        f"wslocust: this worker has no master at {host}:{port} yet (--master-host, --master-port); "
        f"Locust retries for {seconds_left:.0f} s more, then exits\n"
    )
    sys.stderr.flush()


def log_missing_workers(environment: Environment) -> None:
    """At the end of a master's run: one line naming the missing workers whose last report is in the totals."""
    missing = [report for report in worker_reports(environment) if report.state == STATE_MISSING]
    if not missing:
        return
    described = "; ".join(
        f"{report.id} (index {report.index}, missing since {_clock(report.missing_since or 0)}, "
        f"last report {_clock(report.last_report) if report.last_report else 'never'})"
        for report in missing
    )
    logger.warning(
        "wslocust: the WebSocket totals include the last report of %d missing worker%s: %s",
        len(missing),
        "" if len(missing) == 1 else "s",
        described,
    )


def log_late_workers(environment: Environment, late: list[str]) -> None:
    """The workers whose last report did not come before the master quit (``on_late`` of the quit wrapper)."""
    limit = (environment.stop_timeout or 0.0) + FINAL_REPORT_TIMEOUT
    logger.warning(
        "wslocust: no last report within %g s from %s: their previous reports stay in the totals",
        limit,
        ", ".join(sorted(late)),
    )
