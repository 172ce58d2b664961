"""
The one override of Locust's ``@final`` ``User.run``: a user whose greenlet runs a session of its own.

Locust's spawner calls ``user.start(group)`` for each user of a burst, in one
loop that does not yield, and ``User.start`` spawns the greenlet that calls
``user.run()``: ``on_start``, the task loop, ``on_stop``. Locust marks ``run``
``@final``, which binds type checkers only. A user that keeps a connection
must open it before the task loop and close it after, in its own greenlet:
:class:`SessionUser` lets it say so without overriding ``run`` itself.

The Locust names this relies on (``User.start(self, group)``, ``User.run(self)``,
``User._state``, ``LOCUST_STATE_WAITING``, and the pacing clock ``User._cp_last_run`` and
``User._cp_last_wait_time`` of ``constant_pacing`` / ``constant_throughput``) are listed in
:data:`wslocust.locust_compat.PATCHED`; ``tests/test_locust_compat.py``
fails when one disappears and checks the behaviour on the oldest Locust allowed.
Read in Locust 2.40.0, 2.43.4, 2.46.6 and 2.47.0.
"""

from __future__ import annotations

import time
from typing import Any

from locust import User
from locust.user.task import LOCUST_STATE_WAITING

__all__ = ["SessionUser"]


class SessionUser(User):
    """A Locust ``User`` whose greenlet runs :meth:`session`; subclasses override it and :meth:`starting`."""

    abstract = True

    def starting(self) -> None:
        """Called in Locust's spawning loop, before this user's greenlet exists: must not block."""

    def session(self) -> None:
        """What this user's greenlet runs; by default :meth:`run_tasks`."""
        self.run_tasks()

    def run_tasks(self) -> None:
        """
        Locust's own ``User.run``: ``on_start``, the task loop, ``on_stop``; paced from now.

        ``constant_pacing`` and ``constant_throughput`` time each wait from the previous task,
        and the first from the moment Locust created the user (``User.__init__`` sets
        ``_cp_last_run``). Locust creates a burst's users in one instant, so however spread out
        their sessions begin their tasks (the start pacer spreads the connects), the first wait
        brings every user back to that instant: 200 users paced at 1 s sent within the same
        50 ms of each second. Their pacing starts when their tasks do.
        """
        self.restart_pacing()
        User.run(self)

    def restart_pacing(self) -> None:
        """Make ``constant_pacing`` / ``constant_throughput`` count the next wait from now."""
        self._cp_last_run = time.perf_counter()
        self._cp_last_wait_time = 0

    def stoppable_at_once(self) -> None:
        """
        Let Locust's ``User.stop`` kill this greenlet at once, as it does between two tasks.

        Otherwise a user outside the task loop counts as running a task, and a
        stop with ``--stop-timeout`` waits that long for it.
        """
        self._state = LOCUST_STATE_WAITING

    def start(self, group: Any) -> Any:
        """Locust's ``User.start``, after :meth:`starting`."""
        self.starting()
        return super().start(group)

    def run(self) -> None:  # type: ignore[misc]  # Locust's run is @final: this is the one override
        """Runs :meth:`session` in this user's greenlet."""
        self.session()
