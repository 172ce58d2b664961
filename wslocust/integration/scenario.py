"""
The scenario between a master and its workers: the shape's schedule going
out, fresh connection counts coming back.

The shape runs only on the master (or the single process), but message
intervals and connection lifetimes are user behaviour: at each tick the shape
publishes a :class:`~wslocust.run.schedule.Schedule` with
:func:`publish_schedule`; a master sends it to its workers in the custom
message :data:`SCHEDULE_MESSAGE`, and users read it from
:attr:`wslocust.run.state.RunState.schedule`.

Workers report their counters to the master every 3 s (Locust's report
interval): too coarse to time a recovery. While the schedule asks for it
(``watch``), each worker also sends its open connections every
:data:`WATCH_INTERVAL` (:data:`CONNECTIONS_MESSAGE`), and
:func:`live_connections` adds them up.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import MasterRunner

from wslocust.integration.options import given, option_flag
from wslocust.run.schedule import Schedule
from wslocust.run.state import RunState, run_state

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = [
    "CONNECTIONS_MESSAGE",
    "SCHEDULE_MESSAGE",
    "WATCH_INTERVAL",
    "live_connections",
    "publish_schedule",
    "receive_connections",
    "receive_schedule",
    "send_connections_forever",
    "warn_ignored_options",
]

logger = logging.getLogger("wslocust")

SCHEDULE_MESSAGE = "wslocust_schedule"
"""The custom message type that carries the shape's schedule from the master to its workers."""

CONNECTIONS_MESSAGE = "wslocust_connections"
"""The custom message type in which a worker sends its open connections while a shape watches them."""

WATCH_INTERVAL = 0.2
"""Seconds between two reports of a worker's open connections while a shape watches them."""


# The schedule ------------------------------------------------------------------------


def publish_schedule(environment: Environment, published: Schedule) -> None:
    """Make ``published`` the schedule of this process's users and, on a master, of every worker's."""
    run_state(environment).schedule = published
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.send_message(SCHEDULE_MESSAGE, published.as_message())


def receive_schedule(state: RunState, data: dict[str, Any]) -> None:
    """On a worker: take the schedule the master sent (:data:`SCHEDULE_MESSAGE`)."""
    state.schedule = Schedule.from_message(data)


# Fresh connection counts (for ErrorRecovery) ---------------------------------------------


def live_connections(environment: Environment) -> tuple[int, int]:
    """
    The run's (open connections, disconnects so far), as fresh as can be: this
    process's counters, plus each worker's last :data:`WATCH_INTERVAL` report
    on a master (its last 3-second report before the first one arrives).
    """
    state = run_state(environment)
    fresh = [view.watched for view in state.workers.values() if view.watched is not None]
    if not fresh:
        total = state.total_counters()
        return total.open, total.disconnects
    own = state.counters
    return own.open + sum(open_ for open_, _ in fresh), own.disconnects + sum(lost for _, lost in fresh)


def receive_connections(state: RunState, client_id: str, data: dict[str, Any]) -> None:
    """On a master: take a worker's open connections (:data:`CONNECTIONS_MESSAGE`)."""
    state.worker(client_id).watched = (data["open"], data["disconnects"])


def send_connections_forever(state: RunState, runner: Any) -> None:
    """On a worker: send the open connections every :data:`WATCH_INTERVAL` while the schedule asks for them."""
    while True:
        gevent.sleep(WATCH_INTERVAL)
        published = state.schedule
        if published is not None and published.watch:
            own = state.counters
            runner.send_message(CONNECTIONS_MESSAGE, {"open": own.open, "disconnects": own.disconnects})


# Options without a shape ----------------------------------------------------------------------


def warn_ignored_options(environment: Environment) -> None:
    """Say which scenario options the run gave in vain: its locustfile has no wslocust shape."""
    names = [name for name in ("connections", "ramp_up", "duration", "profile") if given(environment, name)]
    ignored = [option_flag(name) for name in names]
    if ignored:
        logger.warning("%s: no effect, this locustfile has no wslocust shape (use -u, -r and -t)", ", ".join(ignored))
