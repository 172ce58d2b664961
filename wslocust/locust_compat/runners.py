"""Locust's runners: workers and masters, starting users, and the order of event listeners."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable
from types import FrameType, ModuleType
from typing import Any

import gevent
from locust import argument_parser as locust_argument_parser
from locust import runners as locust_runners
from locust.exception import RPCSendError

logger = logging.getLogger(__name__)

__all__ = [
    "STOP_ALLOWANCE",
    "accept_reports_without_user_counts",
    "cache_default_args",
    "dispatcher_spawn_rate",
    "end_a_worker_that_quit_while_created",
    "limit_master_heartbeat_timeout",
    "listen_before_runner",
    "name_stop_callers_from_frames",
    "report_as_soon_as_stopped",
    "say_when_the_master_is_not_there",
    "wait_for_final_reports_on_quit",
    "wrap_runner_start",
]


# Workers and masters (wslocust.integration.distributed) --------------------------------------

STOP_ALLOWANCE = 120.0
"""Seconds beyond ``--stop-timeout`` that a stopping worker waits for its master's heartbeat (see
:func:`limit_master_heartbeat_timeout`): closing 12,500 connections took 16 s."""


def cache_default_args() -> None:
    """
    Compute Locust's ``argument_parser.default_args_dict()`` once per process; each caller gets a copy.

    A worker calls it for every option of every "spawn" message, and each call builds a whole parser
    (10-30 ms): seconds of CPU in the thread that sends heartbeats (in a 16,000-connection ramp the
    master marked all four workers missing). A run cannot change it. Idempotent.
    Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    compute = locust_argument_parser.default_args_dict
    if getattr(compute, "wslocust_cached", False):
        return
    computed = functools.cache(compute)

    def default_args_dict() -> dict[str, Any]:
        return dict(computed())

    default_args_dict.wslocust_cached = True  # type: ignore[attr-defined]
    locust_argument_parser.default_args_dict = default_args_dict


def limit_master_heartbeat_timeout(runner: Any, seconds: float) -> None:
    """
    Make a worker quit after ``seconds`` without a heartbeat from its master, except while it stops its users.

    Sets Locust's global ``MASTER_HEARTBEAT_TIMEOUT`` (60 s, read at each check), and stretches it in
    ``runner.stop`` by ``--stop-timeout`` + :data:`STOP_ALLOWANCE`: the message loop reads no heartbeat until
    every user has stopped (16 s for 12,500 connections, bounded by ``--stop-timeout`` and close timeouts).
    Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    locust_runners.MASTER_HEARTBEAT_TIMEOUT = seconds  # type: ignore[assignment]  # an int in Locust; any number works
    locust_stop = runner.stop

    def stop(*args: Any, **kwargs: Any) -> Any:
        # Suspended, not switched off: a stop that never ends must not keep a worker whose master is gone.
        stopping = (runner.environment.stop_timeout or 0.0) + STOP_ALLOWANCE
        locust_runners.MASTER_HEARTBEAT_TIMEOUT = seconds + stopping  # type: ignore[assignment]
        try:
            return locust_stop(*args, **kwargs)
        finally:
            runner.last_heartbeat_timestamp = time.time()  # the heartbeats that waited are read next
            locust_runners.MASTER_HEARTBEAT_TIMEOUT = seconds  # type: ignore[assignment]

    runner.stop = stop


def end_a_worker_that_quit_while_created(runner: Any) -> None:
    """
    End a worker whose message loop already ended while Locust was creating its runner.

    ``WorkerRunner.__init__`` spawns its message loop, then connects to the master (which yields), and
    only then spawns its heartbeat, its heartbeat checker and its two reporters into ``runner.greenlet``.
    A "quit" read while it yields (a master that stops at start, as its forked workers connect) kills
    the group before those are in it: they ran on, Locust's main waited on them, and the worker lived
    until its master gave up on its last report 10 s later and its parent killed it. Call once the
    runner exists and every greenlet of the run is spawned into its group. Checked: 2.40.0, 2.43.4,
    2.46.6, 2.47.0.
    """
    message_loop = runner.worker
    if not any(getattr(member, "_run", None) == message_loop for member in runner.greenlet):
        runner.greenlet.kill(block=False)


def report_as_soon_as_stopped(runner: Any) -> None:
    """
    Make a worker send its report as soon as its users have stopped, before it tells its master so.

    A worker reports every ``WORKER_REPORT_INTERVAL`` (3 s), and on "stop" it tells its master
    "client_stopped" at once: the master said "stopped" while the last seconds of figures (the closes
    among them) were still to come, up to 3 s later. ``test_stop`` is the end of ``Runner.stop``; the
    reports are deltas, so one more is harmless. Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """

    def report(**_: Any) -> None:
        try:
            runner._send_stats()
        except RPCSendError as error:  # the master is gone: Locust's next periodic report meets the same fate
            logger.debug("wslocust: the report at the stop was not sent: %s", error)

    runner.environment.events.test_stop.add_listener(report)


def accept_reports_without_user_counts(runner: Any) -> None:
    """
    Make a master take a worker report that has no ``user_classes_count`` as one of a worker with no users.

    A worker told to quit while its runner is still being created (its ``connect_to_master`` yields
    before Locust adds the listener that puts the user counts in every report) sends its last report
    without them, and the master's own listener raised ``KeyError`` with a traceback (seen when a master
    stopped at start just as its forked workers connected). Put before Locust's listener on ``worker_report``.
    Checked: 2.46.6, 2.47.0.
    """

    def fill_in(client_id: str, data: dict[str, Any], **_: Any) -> None:
        data.setdefault("user_classes_count", {})
        data.setdefault("user_count", 0)

    listen_before_runner(runner.environment.events.worker_report, fill_in)


def say_when_the_master_is_not_there(report: Callable[[str, int, float], None]) -> None:
    """
    Call ``report(host, port, seconds left)`` once when a worker's first attempt to reach its master fails.

    Locust logs its retries at debug level for 30 s, then keeps trying for five minutes
    (``CONNECT_RETRY_COUNT`` attempts of ``CONNECT_TIMEOUT`` s): a worker started before its master, or
    pointed at the wrong one, said nothing. ``WorkerRunner.connect_to_master`` runs in the runner's
    constructor, before any Locust event, so it is wrapped on the class. Idempotent.
    Checked: 2.46.6, 2.47.0.
    """
    worker_runner = locust_runners.WorkerRunner
    connect = worker_runner.connect_to_master
    if getattr(connect, "wslocust_wrapped", False):
        return

    def connect_to_master(self: Any) -> None:
        if self.retry == 0:
            gevent.spawn(_report_if_not_connected, self, report)
        connect(self)

    connect_to_master.wslocust_wrapped = True  # type: ignore[attr-defined]
    connect_to_master.wslocust_wraps = connect  # type: ignore[attr-defined]
    worker_runner.connect_to_master = connect_to_master  # type: ignore[method-assign]


def _report_if_not_connected(runner: Any, report: Callable[[str, int, float], None]) -> None:
    gevent.sleep(locust_runners.CONNECT_TIMEOUT)
    if not runner.connection_event.is_set():
        attempts_left = locust_runners.CONNECT_RETRY_COUNT - runner.retry + 1
        report(runner.master_host, runner.master_port, attempts_left * locust_runners.CONNECT_TIMEOUT)


def wait_for_final_reports_on_quit(runner: Any, extra_seconds: float, on_late: Callable[[list[str]], None]) -> None:
    """
    Make a master's ``runner.quit()`` wait until every worker has sent its last report.

    Locust's quit waits 0.5 s for them (locust #1426); a WebSocket worker reports after its replies and
    close handshakes. A worker's "quit" follows its last report and removes it from ``runner.clients``:
    wait for that from each worker not missing, up to ``--stop-timeout`` + ``extra_seconds``, then
    ``on_late(ids still awaited)`` if any, then Locust's quit. Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    locust_quit = runner.quit

    def quit() -> None:
        runner.stop(send_stop_to_client=False)  # what Locust's quit() does first; a no-op the second time
        waiting = {node.id for node in runner.clients.all if node.state != locust_runners.STATE_MISSING}
        for client_id in waiting:
            runner.send_message("quit", client_id=client_id)
        deadline = time.monotonic() + (runner.environment.stop_timeout or 0.0) + extra_seconds
        # Not "missing": a worker closing thousands of connections can miss heartbeats for seconds, and still report.
        while (left := sorted(c for c in waiting if c in runner.clients)) and time.monotonic() < deadline:
            gevent.sleep(0.05)
        if left:
            on_late(left)
        locust_quit()

    runner.quit = quit


# Stopping -----------------------------------------------------------------------------


class _FrameOnlyInspect:
    """
    What ``locust.runners`` uses of :mod:`inspect`, without reading any source: :meth:`stack` and
    :meth:`getframeinfo` give the file, line and function from the frames alone; anything else is the
    real module's.
    """

    def __init__(self, real: ModuleType) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    @staticmethod
    def stack(context: int = 1) -> list[tuple[FrameType]]:
        """The caller's frame, then its callers' (what ``inspect.stack()[n][0]`` reads)."""
        frames = []
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            frames.append((frame,))
            frame = frame.f_back
        return frames

    @staticmethod
    def getframeinfo(frame: FrameType, context: int = 1) -> inspect.Traceback:
        code = frame.f_code
        return inspect.Traceback(code.co_filename, frame.f_lineno, code.co_name, None, None)


def name_stop_callers_from_frames() -> None:
    """
    Make Locust's ``Runner.stop`` name its caller without reading source files.

    It logs, at debug level (whether or not that level is on), where it was called from with
    ``inspect.getframeinfo(inspect.stack()[1][0])``; ``inspect.stack()`` reads the source lines of every
    frame on the stack and resolves the path of every loaded module (``inspect.getmodule``): about 25 ms
    in the event loop at each stop, while replies wait to be read. ``locust.runners`` gets an ``inspect``
    that gives the same file, line and function from the frames alone. Idempotent.
    Checked: 2.47.0.
    """
    if not isinstance(locust_runners.inspect, _FrameOnlyInspect):
        locust_runners.inspect = _FrameOnlyInspect(locust_runners.inspect)  # type: ignore[assignment]


# Starting users (wslocust.integration.limits, wslocust.run.pacing) --------------------------


def wrap_runner_start(runner: Any, *, admit: Callable[[int, float], bool], before_start: Callable[..., Any]) -> None:
    """
    Wrap ``runner.start`` once, for every start of users on a master or a single process.

    Headless starts, swarms, shape ticks and rebalancing all call ``self.start(user_count, spawn_rate)``. In
    order: ``admit(user_count, spawn_rate)`` (the open-files guard; False: refused, nothing else runs),
    ``before_start(user_count, spawn_rate)`` (workers' spawn rate), Locust's start. Raises ``RuntimeError``
    if already wrapped. Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    locust_start = runner.start
    if getattr(locust_start, "wslocust_wrapped", False):
        raise RuntimeError("runner.start is already wrapped by wslocust")

    def start(user_count: int, spawn_rate: float, *args: Any, **kwargs: Any) -> Any:
        if not admit(user_count, spawn_rate):
            return None
        before_start(user_count, spawn_rate)
        return locust_start(user_count, spawn_rate, *args, **kwargs)

    start.wslocust_wrapped = True  # type: ignore[attr-defined]
    runner.start = start


# Events ---------------------------------------------------------------------------------


def listen_before_runner(hook: Any, listener: Callable[..., None]) -> None:
    """
    Add ``listener`` to an event hook *before* the listeners already there (``EventHook.add_listener`` appends).

    A runner adds its own listeners when it is created, before Locust's ``init``: on a worker,
    ``report_to_master`` first serializes and *resets* the statistics and empties the error table
    (``setup_distributed_stats_event_listeners``), so a listener added at ``init`` would read them
    empty. EventHook has no public way to insert: its ``_handlers`` list. Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    hook._handlers.insert(0, listener)


def dispatcher_spawn_rate(runner: Any) -> float | None:
    """
    The users per second a local runner is spawning at (``--spawn-rate``, a shape's, a swarm's), or None.

    Locust keeps no public copy of a local run's rate: its users dispatcher's ``_spawn_rate`` is read
    (``wslocust.run.pacing`` spreads a burst's connects over it). Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    rate = getattr(getattr(runner, "_users_dispatcher", None), "_spawn_rate", None)
    return float(rate) if isinstance(rate, (int, float)) else None
