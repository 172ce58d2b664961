"""
Open files: refuse a run whose connections cannot fit the open-files limit, before it starts.

Each WebSocket user holds one connection, and each connection one file
descriptor (two in one process when the embedded reference server runs
there: it holds the server's side). A process asked for more users than its
``RLIMIT_NOFILE`` allows would open connections until ``accept``/``socket``
fail with EMFILE, one failure per user and per retry. So the run is checked
where the number of users per process is known, after
:func:`raise_open_files_limit` has raised the soft limit to the hard limit:

- at start, for headless runs (``-u``, or the largest stage of a
  :class:`~wslocust.integration.shapes.Stages` shape), in the single process or, with
  ``--processes N``, for the forked workers (same host, same limit): one line
  and exit code 2, as for any bad option;
- when a swarm arrives from the web UI (``POST /swarm``): refused with one
  error line, in the answer and in the log; the master keeps running;
- whenever the master or a single process starts users (shape ticks, the
  first start of a master whose workers are on other hosts, rebalancing after
  a worker left): one error line; the first start of a headless run then ends
  it with exit code 2, a shape is stopped rather than run in part, and other
  starts are refused, leaving the running users as they are.

Workers report their own limit to the master when they connect (a Locust
custom message), so that a master checks every worker's share against that
worker's limit; Locust spreads users evenly, so each of ``N`` workers gets at
most ``ceil(users / N)``.
"""

from __future__ import annotations

import logging
import math
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import STATE_INIT, STATE_MISSING, STATE_STOPPED, MasterRunner

from wslocust.exceptions import ConfigurationError
from wslocust.integration.shapes import Stages
from wslocust.integration.startup import stop_at_start
from wslocust.run.state import RunState, run_state

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = [
    "HEADROOM",
    "OPEN_FILES_MESSAGE",
    "Capacity",
    "StartGuard",
    "check_at_start",
    "open_files_limit",
    "open_files_report",
    "own_capacity",
    "raise_open_files_limit",
    "receive_open_files",
    "refusal",
    "requested_at_start",
    "swarm_refusal",
]

logger = logging.getLogger("wslocust")

HEADROOM = 64
"""Descriptors kept for the process itself. Measured at idle: 8 for a headless single process,
14 for a worker, 16 for a master with its web UI (Locust's ZeroMQ sockets, gevent's hub, pipes,
logs); the rest covers CSV files, web UI clients and DNS lookups in flight."""

OPEN_FILES_MESSAGE = "wslocust_open_files"
"""The custom message in which a worker tells its master its open-files limit."""

_REPORT_WAIT = 2.0
"""Seconds a starting master waits for the open-files report of a worker that has just connected."""


@dataclass(frozen=True)
class Capacity:
    """How many users a process can hold within its open-files limit."""

    limit: int
    """The process's open-files soft limit (RLIMIT_NOFILE), after wslocust raised it."""
    per_user: int = 1
    """Descriptors per user: 2 when the embedded reference server runs in the same process."""

    @property
    def users(self) -> int:
        """Users that fit, with :data:`HEADROOM` descriptors left for the process."""
        return max(0, (self.limit - HEADROOM) // self.per_user)

    def needed(self, users: int) -> int:
        """Open files ``users`` users need in this process."""
        return users * self.per_user + HEADROOM


def raise_open_files_limit() -> None:
    """Raise this process's open-files soft limit to its hard limit (at most 2**20 when unlimited)."""
    # Locust raises the soft limit only to 10,000; a WebSocket run needs one
    # descriptor per connection, so take everything the hard limit allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            logger.warning("could not raise the open-files limit from %d to %d", soft, hard)


def open_files_limit() -> int:
    """This process's open-files soft limit; an unlimited one counts as 2**31."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 2**31 if soft == resource.RLIM_INFINITY else soft


def own_capacity(environment: Environment) -> Capacity:
    """This process's capacity: two descriptors per user when it runs users and the embedded server."""
    serves_itself = run_state(environment).embedded_server is not None and not isinstance(
        environment.runner, MasterRunner
    )
    return Capacity(open_files_limit(), 2 if serves_itself else 1)


# What a run asks for ------------------------------------------------------------


def requested_at_start(environment: Environment) -> int | None:
    """
    The most users a headless run will ask for, when known at start: the largest
    stage of a :class:`~wslocust.integration.shapes.Stages` shape, or ``-u``. None when only
    later swarms will tell (the web UI, other shapes).
    """
    options = environment.parsed_options
    if options is None or not (getattr(options, "headless", False) or getattr(options, "autostart", False)):
        return None  # the web UI's start form may still change the numbers
    shape = environment.shape_class
    if isinstance(shape, Stages):
        return _shape_maximum(shape)
    if shape is not None:
        return None
    users = getattr(options, "num_users", None)
    return None if users is None else int(users)


def _shape_maximum(shape: Any) -> int | None:
    try:
        return max(users for users, _ in shape.plan().ticks)
    except ConfigurationError:
        return None  # reported by the shape's check at start, or at the shape's first tick


# The check ---------------------------------------------------------------------------


def refusal(environment: Environment, users: int, *, forked_workers: int | None = None) -> str | None:
    """
    Why ``users`` users cannot run within the open-files limits, as one line; None if they fit.

    On a master, each worker's share is checked against the limit it reported
    (``forked_workers``: that many workers forked on this host, not connected
    yet, with this process's limit), and the master's own limit against the
    server side of every connection when the embedded server runs in it.
    """
    if users <= 0:
        return None
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        capacity = own_capacity(environment)
        if users <= capacity.users:
            return None
        return _single_process_line(users, capacity)
    own = own_capacity(environment)
    if run_state(environment).embedded_server is not None and users > own.users:
        return _embedded_server_line(users, own)
    if forked_workers:
        workers = {f"worker {index}": own for index in range(forked_workers)}
    else:
        workers = _worker_capacities(environment, runner)
    if not workers:
        return None  # Locust itself refuses to start without workers
    share = math.ceil(users / len(workers))
    name, smallest = min(workers.items(), key=lambda item: item[1].users)
    if share <= smallest.users:
        return None
    return _workers_line(users, len(workers), share, name, smallest, forked=bool(forked_workers))


def _worker_capacities(environment: Environment, runner: MasterRunner) -> dict[str, Capacity]:
    workers = run_state(environment).workers
    present = [node.id for node in runner.clients.values() if node.state != STATE_MISSING]

    def limit(client_id: str) -> int | None:
        view = workers.get(client_id)
        return view.open_files if view is not None else None

    def connected_at(client_id: str, now: float) -> float:
        view = workers.get(client_id)
        return view.connected_at if view is not None and view.connected_at is not None else now

    # A worker reports right after it connects: give a worker that has just done so a moment
    # (only that one: a report lost to a race must not delay every later start).
    now = time.monotonic()
    awaited = [cid for cid in present if limit(cid) is None and now - connected_at(cid, now) < _REPORT_WAIT]
    deadline = now + _REPORT_WAIT
    while any(limit(cid) is None for cid in awaited) and time.monotonic() < deadline:
        gevent.sleep(0.05)
    return {
        f"worker {client_id} (index {runner.worker_indexes.get(client_id)})": Capacity(found)
        for client_id in present
        if (found := limit(client_id)) is not None
    }


def _single_process_line(users: int, capacity: Capacity) -> str:
    needed = capacity.needed(users)
    if capacity.per_user == 2:
        why = "two per connection: the embedded reference server runs in this process and holds the other end"
        instead = "run the server in its own process (`wslocust serve`, then --host)"
    else:
        why = "one per connection"
        instead = f"spread the users over at least {_processes_needed(users, capacity)} worker processes (--processes / WORKERS)"
    return (
        f"wslocust: {users:,} users in one process need about {needed:,} open files ({why}, plus {HEADROOM} "
        f"for Locust), but its open-files limit (RLIMIT_NOFILE) is {capacity.limit:,}: run `ulimit -n {needed}` "
        f"(or more) before starting Locust, or {instead}"
    )


def _embedded_server_line(users: int, capacity: Capacity) -> str:
    needed = capacity.needed(users)
    return (
        f"wslocust: {users:,} users connect to the embedded reference server in the master process, which then "
        f"needs about {needed:,} open files (one per connection, plus {HEADROOM}), but its open-files limit "
        f"(RLIMIT_NOFILE) is {capacity.limit:,}: run `ulimit -n {needed}` (or more) before starting Locust, or "
        f"run the server in its own process (`wslocust serve`, then --host)"
    )


def _workers_line(users: int, workers: int, share: int, name: str, capacity: Capacity, *, forked: bool) -> str:
    needed = capacity.needed(share)
    more = _processes_needed(users, capacity)
    where = "each worker process" if forked else name
    return (
        f"wslocust: {users:,} users over {workers} worker{'s' if workers != 1 else ''} are up to {share:,} users "
        f"per worker process, which need about {needed:,} open files (one per connection, plus {HEADROOM}), but "
        f"the open-files limit (RLIMIT_NOFILE) of {where} is {capacity.limit:,}: run `ulimit -n {needed}` (or "
        f"more) before starting the workers, or run at least {more} worker processes (--processes / WORKERS, "
        f"or more --worker hosts)"
    )


def _processes_needed(users: int, capacity: Capacity) -> int:
    return math.ceil(users / capacity.users) if capacity.users else users


# Where the run asks ----------------------------------------------------------------------


def check_at_start(environment: Environment) -> None:
    """Exit with one line when the users a headless run will ask for cannot fit (see :func:`requested_at_start`)."""
    users = requested_at_start(environment)
    if users is None:
        return
    line = refusal(environment, users, forked_workers=_forked_workers(environment))
    if line is not None:
        stop_at_start(environment, line)


def _forked_workers(environment: Environment) -> int | None:
    """How many workers a master forked on this host (``--processes``), else None."""
    if not isinstance(environment.runner, MasterRunner) or environment.parsed_options is None:
        return None
    return getattr(environment.parsed_options, "processes", None) or None


class StartGuard:
    """
    Refuses starts of users that cannot fit: shape ticks, swarms, rebalancing.

    :meth:`admit` is the ``admit`` of
    :func:`wslocust.locust_compat.wrap_runner_start`.
    """

    def __init__(self, environment: Environment, runner: Any) -> None:
        self._environment = environment
        self._runner = runner
        self._reported: set[str] = set()

    def admit(self, user_count: int, spawn_rate: float) -> bool:
        """True when ``user_count`` users fit; else say why once, and stop the run or the shape as it asks."""
        environment, runner = self._environment, self._runner
        users = user_count
        if isinstance(environment.shape_class, Stages):
            users = max(users, _shape_maximum(environment.shape_class) or 0)
        line = refusal(environment, users, forked_workers=_forked_workers(environment))
        if line is None:
            return True
        if line not in self._reported:  # a shape asks again at every tick: say it once
            self._reported.add(line)
            logger.error("%s", line)
        options = environment.parsed_options
        first = runner.state in (STATE_INIT, STATE_STOPPED)
        if first and options is not None and (options.headless or getattr(options, "autostart", False)):
            environment.process_exit_code = 2
            gevent.spawn(runner.quit)
        elif environment.shape_class is not None:
            gevent.spawn(runner.stop)  # rather than run part of the shape; in a new greenlet: stop() kills the shape's
        return False


def swarm_refusal(environment: Environment) -> Callable[[int], str | None]:
    """
    Why a web UI swarm of N users cannot fit, logged, or None: the ``refusal`` of
    :func:`wslocust.locust_compat.refuse_swarms`.
    """

    def refuse(users: int) -> str | None:
        if environment.shape_class is not None:
            return None  # a shape's users are checked at its first tick
        line = refusal(environment, users)
        if line is not None:
            logger.error("%s", line)
        return line

    return refuse


def receive_open_files(state: RunState, client_id: str, data: dict[str, Any]) -> None:
    """On a master: take a worker's open-files limit (:data:`OPEN_FILES_MESSAGE`)."""
    state.worker(client_id).open_files = int(data["limit"])


def open_files_report() -> dict[str, int]:
    """What a worker sends its master in :data:`OPEN_FILES_MESSAGE` when it starts."""
    return {"limit": open_files_limit()}
