"""
The error-recovery experiment of an :class:`~wslocust.integration.shapes.ErrorRecovery` run.

Once every connection is open (or halfway through the rest of the run), the
target is made to fail for the shape's ``fault_duration``, then the users'
counters are watched until as many connections are open as before the fault.
The result is one log line, ``error recovery: N of N connections back X.XX s
after the fault (lowest L open)``, and the run state's
:attr:`~wslocust.run.state.RunState.recovery`.

How the target fails (:func:`inject_fault`): the embedded reference server is
restarted on the same port; any other target is asked with ``POST /faults``
(:mod:`wslocust.server.faults`), with the run's control token
(``--ws-control-token`` / ``WS_CONTROL_TOKEN``) if it has one. If that cannot be
done, a drop caused from outside (a server restarted by hand) is timed the same way.

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

__all__ = ["ask_target_to_fail", "control_token", "inject_fault", "start"]

logger = logging.getLogger("wslocust")


def start(environment: Environment, shape: ErrorRecovery) -> gevent.Greenlet:
    """
    Run the experiment of ``shape`` in the background, for the run that starts.

    The fault comes ``shape.fault_at`` seconds (time-scaled) after the shape's
    start. The experiment ends by itself: with its result; when the shape's
    table ends or the runner stops after the fault (logging that the
    connections were not back); silently when the runner stops before it.

    Returns:
        The experiment's greenlet; it belongs to the runner's greenlets, so it
        is killed with the runner and never outlives the run.
    """
    return _runner(environment).greenlet.spawn(_experiment, environment, shape)


def inject_fault(environment: Environment, down_for: float) -> bool:
    """
    Make the run's target fail for ``down_for`` seconds.

    The embedded reference server is restarted in the background (its
    replacement becomes the run state's ``embedded_server``); another target
    is asked with :func:`ask_target_to_fail`.

    Returns:
        False if the target cannot be made to fail (not a reference server).
    """
    state = run_state(environment)
    if state.embedded_server is not None:
        # In the runner's greenlets: no restart after the run has quit.
        _runner(environment).greenlet.spawn(_restart_embedded_server, state, state.embedded_server, down_for)
        return True
    return ask_target_to_fail(environment.host, down_for, token=control_token(environment))


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


def _restart_embedded_server(state: RunState, server: ReferenceServer, down_for: float) -> None:
    try:
        replacement = restart_server(server, down_for)
    except OSError as exc:
        logger.error("error recovery: cannot restart the embedded server: %s", exc)
        return
    state.embedded_server = replacement
    logger.info("error recovery: the embedded server is back at %s", replacement.url)


class _RunWatch:
    """Tells when the run an experiment belongs to is over: its runner stopped after it ran."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        # A run starts from STOPPED after a first one (web UI): only a stop seen after running counts.
        self._ran = False

    def over(self) -> bool:
        state = self._runner.state
        if state in (STATE_SPAWNING, STATE_RUNNING):
            self._ran = True
            return False
        return self._ran and state in (STATE_STOPPING, STATE_STOPPED, STATE_CLEANUP)


def _experiment(environment: Environment, shape: ErrorRecovery) -> None:
    watch = _RunWatch(environment.runner)
    scale = shape.time_scale()
    target = shape.setting("connections")
    duration = shape.setting("duration")
    fault_at = shape.fault_at * scale
    latest = (shape.fault_at + (duration - shape.fault_at) / 2) * scale
    end = shape.total_duration
    # On the shape's clock, which Locust may reset just after test_start: looked at, not computed once.
    while (left := fault_at - shape.get_run_time()) > 0:
        gevent.sleep(min(left, shape.poll_interval))
        if watch.over():
            return  # stopped before the fault (web UI): nothing to measure

    expected, disconnects = live_connections(environment)
    while expected < target and shape.get_run_time() < latest:
        gevent.sleep(shape.poll_interval)
        if watch.over():
            return
        expected, disconnects = live_connections(environment)
    logger.info("error recovery: injecting a fault with %d of %d connections open", expected, target)
    started = time.perf_counter()
    injected = inject_fault(environment, shape.fault_duration * scale)
    if not injected:
        logger.warning("error recovery: could not make the target fail; waiting for a drop from outside")
    dropped = False
    lowest = expected
    while True:
        gevent.sleep(shape.poll_interval)
        if shape.get_run_time() >= end or watch.over():
            logger.warning("error recovery: the run ended before the connections were back")
            return
        now_open, now_disconnects = live_connections(environment)
        lowest = min(lowest, now_open)
        if not dropped:
            dropped = now_disconnects > disconnects or now_open < expected
            if not dropped:
                if not injected:
                    started = time.perf_counter()  # a drop from outside: timed from the last look before it
                continue
        if now_open >= expected:
            elapsed = time.perf_counter() - started
            run_state(environment).recovery = Recovery(
                connections=expected, recovered=now_open, lowest=lowest, seconds=elapsed
            )
            logger.info(
                "error recovery: %d of %d connections back %.2f s after the fault (lowest %d open)",
                now_open, expected, elapsed, lowest,
            )  # fmt: skip
            return


def _runner(environment: Environment) -> Runner:
    runner = environment.runner
    if runner is None:
        raise RuntimeError("the error-recovery experiment runs with a Locust runner")
    return runner
