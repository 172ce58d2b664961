"""
The error-recovery experiment of an :class:`~wslocust.integration.shapes.ErrorRecovery` run.

Once every connection is open, the target is made to fail for the shape's
``fault_duration``; once it is back (the end of its refusal window), the
users' counters are watched until every connection is open again. The result
is one log line, ``error recovery: N of N connections back X.XX s after the
server came back (down D.DD s; K dropped, lowest L open)``, and the run
state's :attr:`~wslocust.run.state.RunState.recovery`.

If the connections are not all open by the *deadline*, halfway through the
rest of the run after ``fault_at`` (later, the connections might not have
the time to come back before the run ends), no fault is injected: a warning
says how many were open. A fault with some connections still connecting
would time their first connects, not a recovery.

How the target fails (:func:`inject_fault`): the embedded reference server is
restarted on the same port; any other target is asked with ``POST /faults``
(:mod:`wslocust.server.faults`), with the run's control token
(``--ws-control-token`` / ``WS_CONTROL_TOKEN``) if it has one. If that cannot be
done, a drop caused from outside (a server restarted by hand) is timed from
the drop, as its return is not known.

:func:`start` runs the experiment; call it once per run, on the master or the
single process, when the run starts.
"""

from __future__ import annotations

import logging
import time
import urllib.error
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import STATE_CLEANUP, STATE_RUNNING, STATE_SPAWNING, STATE_STOPPED, STATE_STOPPING

from wslocust.exceptions import ConfigurationError
from wslocust.integration.options import CONTROL_TOKEN_OPTION
from wslocust.integration.scenario import live_connections
from wslocust.redaction import register_secret
from wslocust.run.state import Recovery, RunState, run_state
from wslocust.server.faults import faults_url, request_fault, restart_server

if TYPE_CHECKING:
    from locust.env import Environment
    from locust.runners import Runner

    from wslocust.integration.shapes import ErrorRecovery
    from wslocust.server.reference import ReferenceServer

__all__ = ["Fault", "ask_target_to_fail", "control_token", "inject_fault", "start"]

logger = logging.getLogger("wslocust")


class Fault:
    """
    A fault the experiment made: when the target fails and when it accepts connections again.

    Args:
        down_for: seconds the target refuses connections.
    """

    def __init__(self, down_for: float) -> None:
        self.down_for = down_for
        """Seconds the target was asked to stay down."""
        self.injected_at = time.perf_counter()
        """``perf_counter()`` when the fault was asked for."""
        self.back_at: float | None = None
        """``perf_counter()`` when the target accepts connections again (the end of its refusal
        window; for a remote server, its answer to ``POST /faults`` plus the window, which it opens
        on receipt); None until known."""
        self.failed = False
        """True if the target never came back (the embedded server could not listen again)."""


def start(environment: Environment, shape: ErrorRecovery) -> gevent.Greenlet:
    """
    Run the experiment of ``shape`` in the background, for the run that starts.

    The fault comes ``shape.fault_at`` seconds (time-scaled) after the shape's
    start, once every connection is open. The experiment ends by itself: with
    its result; with a warning when the connections are not all open by the
    deadline (no fault), or when the shape's table ends or the runner stops
    after the fault (the connections were not back); silently when the runner
    stops before the fault.

    Returns:
        The experiment's greenlet; it belongs to the runner's greenlets, so it
        is killed with the runner and never outlives the run.
    """
    return _runner(environment).greenlet.spawn(_experiment, environment, shape)


def inject_fault(environment: Environment, down_for: float) -> Fault | None:
    """
    Make the run's target fail for ``down_for`` seconds.

    The embedded reference server is restarted in the background (its
    replacement becomes the run state's ``embedded_server``); another target
    is asked with :func:`ask_target_to_fail`.

    Returns:
        The fault, whose :attr:`Fault.back_at` is set when the target is back;
        None if the target cannot be made to fail (not a reference server).
    """
    state = run_state(environment)
    fault = Fault(down_for)
    if state.embedded_server is not None:
        # In the runner's greenlets: no restart after the run has quit.
        _runner(environment).greenlet.spawn(_restart_embedded_server, state, state.embedded_server, fault)
        return fault
    if not ask_target_to_fail(environment.host, down_for, token=control_token(environment)):
        return None
    # The server opens its window when it handles the request, before it answers: the window
    # ends at most this late (earlier by up to the request's round trip).
    fault.back_at = time.perf_counter() + round(down_for * 1000) / 1000
    return fault


def control_token(environment: Environment) -> str | None:
    """The run's control token for the target's ``POST /faults`` (``--ws-control-token``), or None."""
    token = getattr(getattr(environment, "parsed_options", None), "ws_control_token", None)
    if not token:
        return None
    register_secret(token)  # wherever it might be quoted back, it is concealed
    return str(token)


def ask_target_to_fail(target: str | None, down_for: float, *, token: str | None = None) -> bool:
    """
    Ask the reference server behind ``target`` to drop every connection and refuse new ones for ``down_for`` s.

    Args:
        target: the run's WebSocket URL.
        down_for: seconds of refused upgrades.
        token: the server's control token, if it has one.

    Returns:
        True if it accepted; False if there is no target, it is not a WebSocket
        URL, or the ``POST /faults`` failed (logged as a warning).
    """
    if not target:
        return False
    try:
        url = faults_url(target, drop=True, refuse_ms=down_for * 1000)
    except ConfigurationError:
        return False
    try:
        return 200 <= request_fault(url, token=token) < 300
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            given = "was refused" if token else "is required and none was given"
            flag, env = CONTROL_TOKEN_OPTION
            logger.warning(
                "error recovery: POST %s failed: the server's control token %s (%s / %s: the token that "
                "`wslocust serve` printed at start, or its --control-token)", url, given, env, flag,
            )  # fmt: skip
        else:
            logger.warning("error recovery: POST %s failed: %s", url, exc)
        return False
    except OSError as exc:
        logger.warning("error recovery: POST %s failed: %s", url, exc)
        return False


def _restart_embedded_server(state: RunState, server: ReferenceServer, fault: Fault) -> None:
    try:
        replacement = restart_server(server, fault.down_for)
    except OSError as exc:
        fault.failed = True
        logger.error("error recovery: cannot restart the embedded server: %s", exc)
        return
    fault.back_at = time.perf_counter()  # listening again: from now on connects succeed
    state.embedded_server = replacement
    logger.info("error recovery: the embedded server is back at %s", replacement.url)


class _RunWatch:
    """Tells when the run an experiment belongs to is over: its shape's table ended, or its runner stopped after it ran."""

    def __init__(self, runner: Any, shape: ErrorRecovery) -> None:
        self._runner = runner
        self._shape = shape
        self._end = shape.total_duration
        # A run starts from STOPPED after a first one (web UI): only a stop seen after running counts.
        self._ran = False

    def over(self) -> bool:
        if self._shape.get_run_time() >= self._end:
            return True
        state = self._runner.state
        if state in (STATE_SPAWNING, STATE_RUNNING):
            self._ran = True
            return False
        return self._ran and state in (STATE_STOPPING, STATE_STOPPED, STATE_CLEANUP)


class _FreshReports:
    """
    Tells when every worker has reported its connections since a moment (a master's counts are
    its workers' last reports, up to :data:`~wslocust.integration.scenario.WATCH_INTERVAL` old).

    Each report replaces a worker's ``watched`` tuple by a new one: a report is new when that
    object is not the one seen at the moment. In one process there is nothing to wait for.
    """

    def __init__(self, state: RunState) -> None:
        self._state = state
        self._seen = {client_id: view.watched for client_id, view in state.workers.items() if view.watched is not None}

    def all_new(self) -> bool:
        workers = self._state.workers
        return all(
            workers[client_id].watched is not seen or workers[client_id].missing
            for client_id, seen in self._seen.items()
            if client_id in workers
        )


def _experiment(environment: Environment, shape: ErrorRecovery) -> None:
    watch = _RunWatch(environment.runner, shape)
    scale = shape.time_scale()
    target = shape.setting("connections")
    duration = shape.setting("duration")
    fault_at = shape.fault_at * scale
    deadline = (shape.fault_at + (duration - shape.fault_at) / 2) * scale
    # On the shape's clock, which Locust may reset just after test_start: looked at, not computed once.
    while (left := fault_at - shape.get_run_time()) > 0:
        gevent.sleep(min(left, shape.poll_interval))
        if watch.over():
            return  # stopped before the fault (web UI): nothing to measure

    open_, disconnects = live_connections(environment)
    while open_ < target:
        if shape.get_run_time() >= deadline:
            logger.warning(
                "error recovery: no fault injected: only %d of %d connections were open %.2f s into the run "
                "(the deadline, halfway through the rest of the run, leaves the connections the time to come "
                "back): lengthen the run (--ws-test-duration) or use a larger --ws-time-scale",
                open_, target, shape.get_run_time(),
            )  # fmt: skip
            return
        gevent.sleep(shape.poll_interval)
        if watch.over():
            return
        open_, disconnects = live_connections(environment)
    logger.info("error recovery: injecting a fault with %d of %d connections open", target, target)
    fault = inject_fault(environment, shape.fault_duration * scale)
    if fault is None:
        logger.warning("error recovery: could not make the target fail; waiting for a drop from outside")
        _time_a_drop_from_outside(environment, shape, watch, target, disconnects)
    else:
        _time_the_return(environment, shape, watch, fault, target, disconnects)


def _time_the_return(
    environment: Environment, shape: ErrorRecovery, watch: _RunWatch, fault: Fault, target: int, disconnects: int
) -> None:
    """After a fault this run injected: from the target's return until every connection is open again."""
    state = run_state(environment)
    lowest = target
    reports: _FreshReports | None = None
    while True:
        gevent.sleep(shape.poll_interval)
        now_open, now_disconnects = live_connections(environment)
        lowest = min(lowest, now_open)
        if fault.failed:
            return  # logged where the restart failed
        if _ended(watch, now_open, target, lowest):
            return
        back_at = fault.back_at
        if back_at is None or time.perf_counter() < back_at:
            continue
        if reports is None:
            reports = _FreshReports(state)  # counts older than the return cannot tell it
        if not reports.all_new() or now_open < target:
            continue
        seconds = time.perf_counter() - back_at
        dropped = now_disconnects - disconnects
        state.recovery = Recovery(connections=target, recovered=target, lowest=lowest, seconds=seconds)
        logger.info(
            "error recovery: %d of %d connections back %.2f s after the server came back "
            "(down %.2f s; %d dropped, lowest %d open)",
            target, target, seconds, back_at - fault.injected_at, dropped, lowest,
        )  # fmt: skip
        return


def _time_a_drop_from_outside(
    environment: Environment, shape: ErrorRecovery, watch: _RunWatch, target: int, disconnects: int
) -> None:
    """A drop this run did not cause: its return is not known, so from the last look before the drop."""
    started = time.perf_counter()
    dropped = False
    lowest = target
    while True:
        gevent.sleep(shape.poll_interval)
        now_open, now_disconnects = live_connections(environment)
        lowest = min(lowest, now_open)
        if _ended(watch, now_open, target, lowest):
            return
        if not dropped:
            dropped = now_disconnects > disconnects or now_open < target
            if not dropped:
                started = time.perf_counter()
                continue
        if now_open >= target:
            seconds = time.perf_counter() - started
            run_state(environment).recovery = Recovery(
                connections=target, recovered=target, lowest=lowest, seconds=seconds
            )
            logger.info(
                "error recovery: %d of %d connections back %.2f s after the drop (lowest %d open)",
                target, target, seconds, lowest,
            )  # fmt: skip
            return


def _ended(watch: _RunWatch, now_open: int, target: int, lowest: int) -> bool:
    if not watch.over():
        return False
    logger.warning(
        "error recovery: the run ended before the connections were back (%d of %d open, lowest %d)",
        min(now_open, target), target, lowest,
    )  # fmt: skip
    return True


def _runner(environment: Environment) -> Runner:
    runner = environment.runner
    if runner is None:
        raise RuntimeError("the error-recovery experiment runs with a Locust runner")
    return runner
