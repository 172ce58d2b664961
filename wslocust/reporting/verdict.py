"""
The thresholds' verdict on a run: parsed at start, checked during the run
with ``--ws-thresholds-abort``, and turned into the exit code and a table at
the end (:mod:`wslocust.reporting.thresholds` parses and evaluates them).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import gevent
from locust import log as locust_log
from locust.runners import STATE_RUNNING

from wslocust.exceptions import ConfigurationError
from wslocust.integration.startup import stop_at_start
from wslocust.reporting.thresholds import EXIT_CODE, evaluate, format_table, parse_thresholds
from wslocust.run.state import RunState

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["ABORT_CHECK_INTERVAL", "abort_on_breach", "decide_exit_code", "print_table", "set_up_thresholds"]

logger = logging.getLogger("wslocust")
console = logging.getLogger("locust.stats_logger")
"""Locust's plain console logger (no timestamps), the one its tables go to."""

ABORT_CHECK_INTERVAL = 5.0
"""Seconds between checks with ``--ws-thresholds-abort``."""


def set_up_thresholds(environment: Environment, state: RunState) -> bool:
    """
    Parse ``--ws-thresholds`` into the run state, on a master or a single process.

    Returns:
        True when the run should also be stopped at the first breach
        (``--ws-thresholds-abort``): run :func:`abort_on_breach` then.

    Exits with one line (:func:`~wslocust.integration.startup.stop_at_start`) on an invalid expression.
    """
    state.thresholds = None
    options = environment.parsed_options
    text = getattr(options, "ws_thresholds", None) if options is not None else None
    if not text:
        return False
    try:
        state.thresholds = parse_thresholds(text)
    except ConfigurationError as exc:
        stop_at_start(environment, f"wslocust: WS_THRESHOLDS / --ws-thresholds: {exc}")
    return bool(getattr(options, "ws_thresholds_abort", False))


def abort_on_breach(environment: Environment, state: RunState) -> None:
    """Every :data:`ABORT_CHECK_INTERVAL` while all users run: stop the run at the first breached threshold."""
    while True:
        gevent.sleep(ABORT_CHECK_INTERVAL)
        runner = environment.runner
        if runner is None or runner.state != STATE_RUNNING or not state.thresholds:
            continue
        breached = [r for r in evaluate(state.thresholds, environment) if r.value is not None and not r.ok]
        if breached:
            logger.error(
                "threshold %s breached (%s): stopping the run",
                breached[0].threshold.text,
                breached[0].describe(),
            )
            if getattr(environment.parsed_options, "headless", False):
                runner.quit()
            else:
                runner.stop()
            return


def decide_exit_code(environment: Environment, state: RunState) -> None:
    """
    At ``quitting``, once the figures are final: evaluate the thresholds and
    set the exit code. A failed threshold makes it :data:`EXIT_CODE`; when all
    pass it is 0 even if some requests failed, unless Locust already chose one
    or something crashed.
    """
    if not state.thresholds or environment.runner is None:
        return
    results = evaluate(state.thresholds, environment)
    state.threshold_results = results
    if not all(result.ok for result in results):
        if not environment.process_exit_code:
            environment.process_exit_code = EXIT_CODE
    elif (
        environment.process_exit_code is None
        and not environment.runner.exceptions
        and not locust_log.unhandled_greenlet_exception
    ):
        environment.process_exit_code = 0


def print_table(state: RunState) -> None:
    """At ``quit``: the pass/fail table, when the run had thresholds."""
    if state.threshold_results:
        for line in format_table(state.threshold_results):
            console.info(line)
        console.info("")
