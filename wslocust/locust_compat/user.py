"""
The one override of Locust's ``@final`` ``User.run``: a user whose greenlet runs a session of its own.

Locust's spawner calls ``user.start(group)`` for each user of a burst, in one
loop that does not yield, and ``User.start`` spawns the greenlet that calls
``user.run()``: ``on_start``, the task loop, ``on_stop``. Locust marks ``run``
``@final``, which binds type checkers only. A user that keeps a connection
must open it before the task loop and close it after, in its own greenlet:
:class:`SessionUser` lets it say so without overriding ``run`` itself.

It also stops users without a greenlet waiting for each (:meth:`SessionUser.stop`), and a whole stop
without a greenlet per user at all; and a user whose session lives in event-loop callbacks
(:meth:`SessionUser.holds_in_loop`) has no running greenlet: Locust counts, finds and stops users by
the greenlets in its group, so it gets one that never runs (:meth:`SessionUser.start`).

The Locust names this relies on (``User.start(self, group)``, ``User.run(self)``, ``User.stop``,
``User._state``, ``User._group``, ``User._greenlet``, ``LOCUST_STATE_WAITING``, ``STATE_CLEANUP``,
``Runner.user_greenlets``, ``Runner.stop_users``, and the pacing clock ``User._cp_last_run`` and
``User._cp_last_wait_time`` of ``constant_pacing`` / ``constant_throughput``) are listed in
:data:`wslocust.locust_compat.PATCHED`; ``tests/test_locust_compat.py``
fails when one disappears and checks the behaviour on the oldest Locust allowed.
Read in Locust 2.40.0, 2.43.4, 2.46.6 and 2.47.0.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import gevent.event
from gevent.pool import Group
from locust import User
from locust.runners import STATE_CLEANUP
from locust.user.task import LOCUST_STATE_WAITING

from wslocust.locust_compat.runners import listen_before_runner

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

    def holds_in_loop(self) -> bool:
        """Whether this user's session runs in event-loop callbacks, without a greenlet of the user's own."""
        return False

    def session_in_loop(self) -> None:
        """Start the session of a user that :meth:`holds_in_loop`: must not block."""
        raise NotImplementedError

    def stop_in_loop(self) -> None:
        """Stop the session of a user that :meth:`holds_in_loop`, without waiting; it calls :meth:`end_held_in_loop`."""
        raise NotImplementedError

    def end_held_in_loop(self) -> None:
        """The session of a user that :meth:`holds_in_loop` is over: Locust sees the user end."""
        held = self._greenlet
        self._held_stopped = True  # ended by itself: its greenlet's end must not stop it again
        if held is not None:
            held.kill(block=False)  # never started: dead at once, and out of its groups
        if self._closing_counted:
            self._closing_counted = False
            _users_stopping(self.environment.runner).closing_ended()

    _held_in_loop = False
    _held_stopped = False
    _closing_counted = False

    def _held_greenlet_ended(self, _: Any) -> None:
        # Whoever killed it (Locust after --stop-timeout, a user's code), the session stops too.
        if not self._held_stopped:
            self._stop_without_waiting(force=True)

    def stoppable_at_once(self) -> None:
        """
        Let Locust's ``User.stop`` kill this greenlet at once, as it does between two tasks.

        Otherwise a user outside the task loop counts as running a task, and a
        stop with ``--stop-timeout`` waits that long for it.
        """
        self._state = LOCUST_STATE_WAITING

    def stop(self, force: bool = False) -> bool:
        """
        Locust's ``User.stop``; but a kill does not wait here for the user to end.

        Locust stops each user from a greenlet of its own, which waits until the user has ended
        (``killone`` blocks): a run of 10,000 users that close their connections at once held 10,000 more
        greenlets of ~8 KB each, its peak memory (292 MiB, against ~210 while holding), and a ramp-down
        from 5,000 users to 500 grew by 37 MiB. The user leaves Locust's ``user_greenlets`` at once (it
        no longer runs: Locust's counts and its next ramp step see it gone) for a group of users still
        closing, which the runner waits for first thing at ``test_stop`` (the end of ``Runner.stop``,
        after ``stop_users``): every count is final for what listens to it, as before.
        """
        return self._stop_without_waiting(force) or super().stop(force)

    def _stop_without_waiting(self, force: bool) -> bool:
        """Kill this user if Locust's ``stop(force)`` would, without waiting for it to end; True if it did."""
        runner, user_greenlet = self.environment.runner, self._greenlet
        users = getattr(runner, "user_greenlets", None)
        if users is None or self._group is not users or user_greenlet is gevent.getcurrent():
            return False
        if not (force or self._state in (None, LOCUST_STATE_WAITING)):
            return False  # Locust lets it finish its task first
        stopping = _users_stopping(runner)
        if self._held_in_loop:
            users.discard(user_greenlet)
            if not self._held_stopped:
                # Counted, not joined: Locust may kill the greenlet (--stop-timeout) before the close is done.
                self._held_stopped = self._closing_counted = True
                stopping.closing_started()
                self.stop_in_loop()
            return True
        users.killone(user_greenlet, block=False)
        users.discard(user_greenlet)
        stopping.greenlets.add(user_greenlet)  # leaves it by itself when it ends
        return True

    def start(self, group: Any) -> Any:
        """
        Locust's ``User.start``, after :meth:`starting`. A user that :meth:`holds_in_loop` gets a
        greenlet that never runs, in Locust's group (Locust's ``run_user(user)``: Locust reads the
        user from its first argument), and its session starts in the loop.
        """
        self.starting()
        runner = self.environment.runner
        if runner is not None and group is getattr(runner, "user_greenlets", None):
            _stop_sessions_at_once(runner)
            if self.holds_in_loop():
                held = gevent.Greenlet(_held_in_loop, self)
                self._greenlet, self._group = held, group
                self._held_in_loop = True
                self.stoppable_at_once()
                runner.user_greenlets.add(held)
                held.rawlink(self._held_greenlet_ended)
                self.session_in_loop()
                return held
        return super().start(group)

    def run(self) -> None:  # type: ignore[misc]  # Locust's run is @final: this is the one override
        """Runs :meth:`session` in this user's greenlet."""
        self.session()


def _held_in_loop(user: SessionUser) -> None:
    """What the greenlet of a user held in the loop would run: it never starts."""
    raise RuntimeError(f"{type(user).__name__}: a user held in the event loop has no greenlet to run")


STOPS_PER_TURN = 200
"""
Users a whole stop stops between two turns of the event loop. In one go, a worker holding 12,500
connections in the loop stalled it for 12 s on a busy machine; 200 at a time, 10,000 held users stop in
1.71-1.75 s with the loop's longest gap 22-25 ms, against 337-400 ms in one go
(``python benchmarks/ramp_down_memory.py --users 10500 --to 10000``, 2026-12-03).
"""


def _stop_sessions_at_once(runner: Any) -> None:
    """
    Make ``runner``'s whole stop stop its session users in one loop, without a greenlet per user. Idempotent.

    Locust's ``Runner.stop`` calls ``stop_users``, which calls each user's ``stop`` from a greenlet of its
    own (``gevent.spawn_later(0, user.stop)``): 10,000 greenlets with their timers and arguments at once,
    ~18 MB of a 10,000-connection run's peak (228 MiB; 210 without). When the whole run stops (state
    CLEANUP), the session users that Locust would kill at once are stopped here first, one after the other
    (none waits: :meth:`SessionUser.stop`), :data:`STOPS_PER_TURN` between two turns of the loop; Locust's
    ``stop_users`` then stops the rest (users finishing a task within ``--stop-timeout``) as it always does.
    Locust computed the final user counts before.
    """
    if getattr(runner, "_wslocust_stops_sessions_at_once", False):
        return
    runner._wslocust_stops_sessions_at_once = True
    locust_stop_users = runner.stop_users

    def stop_users(user_classes_stop_count: dict[str, int], *args: Any, **kwargs: Any) -> Any:
        if runner.state == STATE_CLEANUP:
            force = not runner.environment.stop_timeout
            for count, user_greenlet in enumerate(list(runner.user_greenlets), 1):
                user = user_greenlet.args[0] if user_greenlet.args else None
                if isinstance(user, SessionUser):
                    user._stop_without_waiting(force)
                if count % STOPS_PER_TURN == 0:
                    gevent.sleep(0)  # the loop runs between batches: timers, heartbeats, the closes begun
        return locust_stop_users(user_classes_stop_count, *args, **kwargs)

    runner.stop_users = stop_users


class _StoppingUsers:
    """
    The users :meth:`SessionUser.stop` killed that have not ended yet (their greenlets), and how many users
    held in the loop are still closing.
    """

    def __init__(self) -> None:
        self.greenlets = Group()
        self._closing = 0
        self._none_closing = gevent.event.Event()
        self._none_closing.set()

    def closing_started(self) -> None:
        self._closing += 1
        self._none_closing.clear()

    def closing_ended(self) -> None:
        self._closing -= 1
        if not self._closing:
            self._none_closing.set()

    def wait(self, user_greenlets: Group) -> None:
        # As Locust's blocking kills did, one by one.
        gevent.joinall([*user_greenlets, *self.greenlets])
        self._none_closing.wait()


def _users_stopping(runner: Any) -> _StoppingUsers:
    """
    The users :meth:`SessionUser.stop` stopped that have not ended yet; ``runner`` waits for them (and for
    every user greenlet) before any other ``test_stop`` listener runs.
    """
    stopping = getattr(runner, "_wslocust_users_stopping", None)
    if stopping is not None:
        return stopping
    stopping = runner._wslocust_users_stopping = _StoppingUsers()

    def wait_for_users(**_: Any) -> None:
        stopping.wait(runner.user_greenlets)

    listen_before_runner(runner.environment.events.test_stop, wait_for_users)
    return stopping
