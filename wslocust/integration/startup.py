"""
Stopping a run at start with one line, as Locust does for a bad option.

A setting that cannot work (a bad target, an address that is not this
host's, users that cannot fit the open-files limit...) is found in Locust's
``init`` event, before any user starts: :func:`stop_at_start` prints why and
exits with status 2 rather than let every user fail.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, NoReturn

import gevent
from locust.runners import MasterRunner, WorkerRunner

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["stop_at_start"]

FORKED_WORKERS_WAIT = 5.0
"""Seconds a master waits for the workers it forked to connect, so that it can tell them to quit."""


def stop_at_start(environment: Environment, line: str) -> NoReturn:
    """
    Print ``line`` and exit with status 2, from an ``init`` listener.

    A master whose workers Locust forked (``--processes``, ``WORKERS``) first
    tells them to quit: Locust does not stop its children when the master
    exits that early, and they would wait a minute for its heartbeat. A
    worker first fires Locust's ``quitting`` event, as Locust's shutdown
    does, which tells its master that it quit: otherwise the master waited
    for its last report until it gave up on it.
    """
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    runner = getattr(environment, "runner", None)
    options = getattr(environment, "parsed_options", None)
    if isinstance(runner, MasterRunner) and options is not None and getattr(options, "processes", None):
        deadline = time.monotonic() + FORKED_WORKERS_WAIT
        # Every worker seen, not every worker connected: one may have stopped at start already, by itself.
        while len(runner.worker_indexes) < options.expect_workers and time.monotonic() < deadline:
            gevent.sleep(0.05)
        runner.quit()
    elif isinstance(runner, WorkerRunner):
        environment.events.quitting.fire(environment=environment, reverse=True)
    sys.exit(2)
