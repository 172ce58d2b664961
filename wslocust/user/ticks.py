"""
The messages of a user without tasks, sent from event-loop timers rather than a greenlet of their own.

- Open loop (``in_flight`` 0): one echo per tick of a repeating libev timer, every
  ``message_interval`` or the interval of the shape's current stage, whether or not replies came
  back. A message that leaves late is timed from its tick (no coordinated omission).
- Closed loop (``in_flight`` > 0): a window of echoes kept full; the next one leaves as soon as
  one is answered (once the event loop's turn has read what it found: :meth:`PeriodicMessages._refill_soon`),
  and a slow timer only times out the replies that never come.
"""

from __future__ import annotations

import math
import random
import time
from typing import TYPE_CHECKING, Any

from wslocust.exceptions import ConfigurationError
from wslocust.run import settings
from wslocust.run.state import run_state
from wslocust.user.messaging import Messaging
from wslocust.user.state import ConnectionState

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["BURST_GAP", "SEND_SLACK", "TICK_GRID", "PeriodicMessages", "StepBurst"]

perf_counter = time.perf_counter

SEND_SLACK = 0.002
"""Seconds a periodic message may leave before or after its tick and still be timed from its
send: gevent's timers fire up to ~1 ms late (libev waits in whole milliseconds). A later send
means the generator fell behind (unless it was queued behind its step's burst, :class:`StepBurst`);
it is counted in ``sends_late`` and timed from its tick."""


BURST_GAP = 0.001
"""Seconds between two sends of one grid step's burst above which the burst broke off (the event loop
did something else in between: a stall, a collection): the step's later messages are late."""


class StepBurst:
    """
    The ticks of one step of the grid fire in one turn of the event loop, and their messages leave
    one after the other: at 15,000 messages a second, 75 a step, the last ~3 ms after the tick. The
    step is on schedule when its first message left within :data:`SEND_SLACK` of it; the messages
    queued behind it in the same burst are on schedule too (each on its connection's cadence), and are
    timed from their send, until the burst outlasts its step (:data:`TICK_GRID` + :data:`SEND_SLACK`).
    A step that started late, a burst that broke off and one longer than its step are the generator
    falling behind. One per process: every user's ticks share the grid.
    """

    __slots__ = ("last_send", "step")

    def __init__(self) -> None:
        self.step = -1.0
        self.last_send = -math.inf

    def on_schedule(self, tick: float, sent_at: float) -> bool:
        """Whether the message of ``tick``, leaving at ``sent_at``, is on schedule; an on-schedule one extends the burst."""
        if sent_at - tick <= SEND_SLACK:
            on_schedule = True
        else:
            # Ticks of one step are equal but for the rounding of their repeats (microseconds apart at most).
            on_schedule = (
                abs(tick - self.step) < 1e-6
                and sent_at - self.last_send <= BURST_GAP
                and sent_at - tick <= TICK_GRID + SEND_SLACK
            )
        if on_schedule:
            self.step, self.last_send = tick, sent_at
        return on_schedule


_step_burst = StepBurst()


TICK_GRID = 0.005
"""Seconds of the grid that periodic ticks fall on (of the monotonic clock). Each connection's phase
is random over its interval, then rounded up to the grid: the ticks of the connections that fall in
one step leave in one wake-up of the event loop (one wait, one loop iteration) and reach the server
in one of its own, instead of waking both sides once per message or two. At 2,000 messages a second
a step holds ~10 messages; at 200, one at most, and nothing changes."""


def on_grid(moment: float) -> float:
    """``moment`` rounded up to the next step of :data:`TICK_GRID`."""
    return math.ceil(moment / TICK_GRID) * TICK_GRID


class PeriodicMessages(Messaging):
    """
    The periodic messages of :class:`~wslocust.user.websocket_user.WebSocketUser` (a mixin), sent
    as requests of :class:`~wslocust.user.messaging.Messaging`.

    :meth:`_start_ticking` when a connection opens, :meth:`_stop_ticking` when it closes; the
    timer callbacks run in the event loop and never block.
    """

    # From the rest of WebSocketUser (more in Messaging).
    environment: Environment
    message_interval: float | None

    def _init_ticks(self) -> None:
        self._tick_timer: Any = None
        self._tick_repeat = 0.0
        if self._holding:
            interval = self._message_interval()
            self._interval = interval
            self._next_tick = on_grid(perf_counter() + random.uniform(0, interval or 3600.0))

    def _message_interval(self) -> float:
        return self._unscaled_message_interval() * settings.message_time_scale(self.environment)

    def _unscaled_message_interval(self) -> float:
        configured = settings.message_interval(self.environment)
        if configured is not None:
            return configured
        if self.message_interval is not None:
            if self.message_interval < 0:
                raise ConfigurationError(
                    f"{type(self).__name__}.message_interval: {self.message_interval!r} must be >= 0 seconds"
                )
            return float(self.message_interval)
        return settings.DEFAULT_MESSAGE_INTERVAL_MS / 1000

    # The shape's schedule (wslocust.run.schedule): set by _follow_schedule.
    _schedule_ends = math.inf
    """When the current stage's message interval ends: the user wakes up then to follow the next."""
    _own_interval: float | None = None

    def _follow_schedule(self, now: float) -> None:
        """Take the message interval of the shape's current stage, if a shape published one."""
        schedule = run_state(self.environment).schedule
        if schedule is None:
            return
        interval, self._schedule_ends = schedule.at(now)
        if interval is None:
            if self._own_interval is None:
                self._own_interval = self._message_interval()
            interval = self._own_interval
        if interval != self._interval:
            self._interval = interval
            # A new phase for each user, so that a stage change is no thundering herd.
            self._next_tick = on_grid(now + random.uniform(0, interval)) if interval > 0 else now

    def _start_ticking(self) -> None:
        now = perf_counter()
        if self.in_flight > 0:
            self._fill_window()
            # Only to time out replies that never come (no tick sends anything).
            self._tick_timer = self._hub.loop.timer(self.reply_timeout / 2, self.reply_timeout / 2)
            self._tick_repeat = -1.0
            self._tick_timer.start(self._tick, update=True)
            return
        self._follow_schedule(now)
        # Ticks missed while disconnected are not sent late in a burst.
        if self._next_tick < now:
            self._next_tick = on_grid(now)
        self._arm_tick(now)

    def _stop_ticking(self) -> None:
        timer, self._tick_timer = self._tick_timer, None
        if timer is not None:
            timer.close()

    def _arm_tick(self, now: float) -> None:
        if self._tick_timer is not None:
            self._tick_timer.close()
        # Also wake at the end of the shape's stage, to follow the next one's interval.
        due = min(self._next_tick, self._schedule_ends)
        # A repeating timer, while the interval holds: libev re-arms it from its previous
        # expiry, exactly where the next tick is, with no call from here.
        repeat = self._interval if due == self._next_tick and self._interval > 0 else 0.0
        self._tick_timer = self._hub.loop.timer(max(0.0, due - now), repeat)
        self._tick_repeat = repeat
        self._tick_timer.start(self._tick, update=True)

    def _tick(self) -> None:
        """A periodic message is due (runs in the event loop: it must never block)."""
        if self.in_flight > 0:
            try:
                self._expire_overdue(perf_counter())
                self._fill_window()
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the event loop
                self._report_user_error(exc)
            return
        try:
            steady = self._send_periodic()
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the ticks (nor the event loop)
            self._report_user_error(exc)
            steady = False
        if self._tick_timer is None:
            return
        if self.state is not ConnectionState.OPEN:
            self._stop_ticking()  # the next connection starts them again
        elif not (steady and self._tick_repeat == self._interval and self._next_tick < self._schedule_ends):
            self._arm_tick(perf_counter())

    def _send_periodic(self) -> bool:
        """Send the message of the tick that is due; True if the schedule simply moved on by one interval."""
        now = perf_counter()
        interval = self._interval
        self._follow_schedule(now)
        if self._interval <= 0:
            self._next_tick = now + 3600.0
            return False
        # Open loop: the schedule advances whether or not replies came back.
        scheduled_at = self._next_tick
        if scheduled_at > now + SEND_SLACK:
            return False  # woken for a stage boundary, or early
        self._next_tick = scheduled_at + self._interval
        self._expire_overdue(now)
        if self.state is not ConnectionState.OPEN:
            return False
        correlator = self._correlator
        payload = correlator.next_payload(self.message_size)
        sent_at = perf_counter()
        if not _step_burst.on_schedule(scheduled_at, sent_at):
            # The generator fell behind its schedule: the wait counts as latency, as the
            # message's sender would have seen it (no coordinated omission).
            self.counters.sends_late += 1
        else:
            # Within the event loop's timer granularity of the tick, or queued behind its step's
            # burst that left on time: time the server, not the timer.
            scheduled_at = sent_at
        self._start_request(payload, payload, "echo", scheduled_at, False, correlator.sequence, block=False, echo=True)
        return interval == self._interval

    _refill_due = False

    def _refill_soon(self) -> None:
        """
        Fill the window once this turn of the event loop has read everything it found (a reply came).

        Sent from inside the read of its reply, each connection's next echo reached a server that had
        gone back to sleep and woke it: 0.5 wake-ups of the server per echo, and 18 us of this process's
        system time per echo (on loopback the sender's system call delivers, and wakes the reader). Sent
        after the turn's reads, the connections' next echoes leave in one burst that the server reads in
        one wake-up: 0.02 per echo, 10 us, 1.5x the echoes per CPU-second, as a task user's echoes do
        (their greenlets resume after the turn's reads); ``python -m benchmarks peers --parts throughput
        --variants wslocust-window``, 2026-12-04.
        """
        if not self._refill_due:
            self._refill_due = True
            self._hub.loop.run_callback(self._refill)

    def _refill(self) -> None:
        self._refill_due = False
        if self._retiring:
            return
        try:
            self._fill_window()
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the event loop
            self._report_user_error(exc)

    def _fill_window(self) -> None:
        """Send echoes until ``in_flight`` are waiting (never blocks)."""
        correlator = self._correlator
        while len(correlator.echoes) < self.in_flight and self.state is ConnectionState.OPEN and not self._stopping:
            payload = correlator.next_payload(self.message_size)
            sent = self._start_request(
                payload, payload, "echo", perf_counter(), False, correlator.sequence, block=False, echo=True
            )
            if sent is None:
                return

    def _expire_overdue(self, now: float) -> None:
        """Record as failures the echoes nobody waits for whose reply is ``reply_timeout`` overdue."""
        timeout = self.reply_timeout
        for pending in self._correlator.expire(now, timeout):
            self._fail_timed_out(pending, timeout)
