"""The users' long-lived objects out of the garbage collector's full passes (:mod:`wslocust.gc_freeze`)."""

from __future__ import annotations

from typing import Any

import gevent

from wslocust.gc_freeze import FREEZER, LOOK_EVERY, Freezer

__all__ = ["freeze_while_users_come"]


def freeze_while_users_come(runner: Any, freezer: Freezer = FREEZER) -> None:
    """Forever, in a greenlet of a process that runs users: Locust's user count, once a second."""
    while True:
        gevent.sleep(LOOK_EVERY)
        freezer.look("users", runner.user_count)
