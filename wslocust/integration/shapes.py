"""
Load shapes: every load pattern of the original suite as a Locust ``LoadTestShape``.

Every class here is an abstract base (``abstract = True``): Locust runs the
first non-abstract shape it finds in a locustfile, so a locustfile subclasses
one and overrides its class attributes, which are in seconds::

    from wslocust.integration.shapes import Spike

    class FiveHundredAtOnce(Spike):
        connections = 500
        duration = 10.0

Each one only builds a table of :class:`Stage` rows from its attributes and the
run's options; :class:`Stages` (:mod:`wslocust.integration.stages`, re-exported
here with :data:`AT_ONCE` and :data:`TICK`) follows the table. The experiment
of :class:`ErrorRecovery` (fail the target, time the return of the
connections) is :mod:`wslocust.integration.recovery`.
"""

from __future__ import annotations

from typing import ClassVar

from wslocust.exceptions import ConfigurationError
from wslocust.integration.stages import AT_ONCE, TICK, Stage, Stages

__all__ = [
    "AT_ONCE",
    "TICK",
    "Churn",
    "ErrorRecovery",
    "RampUp",
    "Spike",
    "Stage",
    "Stages",
    "Sustained",
    "Wave",
]


class RampUp(Stages):
    """
    0 → ``connections`` evenly over ``ramp_up`` seconds, then hold them for ``duration``.

    The 10K test: 10,000 connections over 30 s, held 2 minutes, a message
    every 5 s, none during the ramp. The suite's gradual ramp-up scenario: 1,000
    over 30 s, held 30 s, a message every second.
    """

    abstract = True
    run_options = frozenset({"connections", "ramp_up", "duration", "message_interval"})

    connections: ClassVar[int] = 1000
    """Connections to reach (``TARGET_CONNECTIONS``)."""
    ramp_up: ClassVar[float] = 30.0
    """Seconds to reach them (``RAMP_UP_TIME``); 0 opens them all at once."""
    duration: ClassVar[float] = 30.0
    """Seconds to hold them after the ramp-up (``TEST_DURATION``)."""
    message_interval: ClassVar[float | None] = None
    """Seconds between each connection's messages (``MESSAGE_INTERVAL``); None: the user's own."""
    messages_during_ramp: ClassVar[bool] = True
    """False holds the periodic messages until every connection is open, as the 10K test does."""

    def build(self) -> list[Stage]:
        connections = self.setting("connections")
        ramp_up = self.setting("ramp_up")
        interval = self.setting("message_interval")
        hold = Stage(self.setting("duration"), connections, None if ramp_up else AT_ONCE, interval)
        if not ramp_up:
            return [hold]
        return [Stage(ramp_up, connections, None, interval if self.messages_during_ramp else 0), hold]


class Spike(Stages):
    """
    ``connections`` at once, held for ``duration``, then all dropped at once.

    The suite: 500 connections at once, held for 10 s (five bursts, 2 s apart).
    ``before`` and ``after`` add time at 0 connections around the spike.
    """

    abstract = True
    run_options = frozenset({"connections", "duration", "message_interval"})

    connections: ClassVar[int] = 500
    duration: ClassVar[float] = 10.0
    """Seconds at ``connections``."""
    before: ClassVar[float] = 0.0
    """Seconds at 0 connections before the spike."""
    after: ClassVar[float] = 0.0
    """Seconds at 0 connections after the drop; 0 ends the run with the drop."""
    message_interval: ClassVar[float | None] = None

    def build(self) -> list[Stage]:
        # Stages at 0 keep the interval: users still running until the next tick keep their pace.
        interval = self.setting("message_interval")
        stages = [Stage(self.before, 0, AT_ONCE, interval)] if self.before else []
        stages.append(Stage(self.setting("duration"), self.setting("connections"), AT_ONCE, interval))
        if self.after:
            stages.append(Stage(self.after, 0, AT_ONCE, interval))
        return stages


class Wave(Stages):
    """
    ``cycles`` times: ``connections`` open at once and stay ``up`` seconds, then all
    close and stay closed ``down`` seconds.

    The suite: 5 waves of 200 connections, 5 s up with a message every 100 ms
    each, 2 s down. Each phase must last at least :data:`TICK` after time
    scaling (a period of at least two ticks); shorter ones are rejected.
    """

    abstract = True
    run_options = frozenset({"connections", "message_interval"})

    connections: ClassVar[int] = 200
    """Connections at the top of each wave (the amplitude)."""
    up: ClassVar[float] = 5.0
    down: ClassVar[float] = 2.0
    cycles: ClassVar[int] = 5
    message_interval: ClassVar[float | None] = 0.1

    def build(self) -> list[Stage]:
        if not (isinstance(self.cycles, int) and self.cycles >= 1):
            raise ConfigurationError(f"{type(self).__name__}.cycles: {self.cycles!r} must be a whole number >= 1")
        scale = self.time_scale()
        for phase in ("up", "down"):
            seconds = getattr(self, phase)
            if not seconds * scale >= TICK:
                raise ConfigurationError(
                    f"{type(self).__name__}.{phase}: {seconds:g} s is {seconds * scale:g} s at time scale "
                    f"{scale:g}, less than Locust's {TICK:g} s shape tick: each phase must last at least "
                    f"one tick (use a larger --ws-time-scale)"
                )
        connections = self.setting("connections")
        interval = self.setting("message_interval")
        # The down phase keeps the interval: users still running until the next tick keep their pace.
        cycle = [Stage(self.up, connections, AT_ONCE, interval), Stage(self.down, 0, AT_ONCE, interval)]
        return cycle * self.cycles


class Sustained(Stages):
    """
    ``connections`` at once, each sending one message every ``message_interval``
    seconds, for ``duration``.

    The suite: 2,000 connections × 100 messages/s for 30 s.
    """

    abstract = True
    run_options = frozenset({"connections", "duration", "message_interval"})

    connections: ClassVar[int] = 2000
    duration: ClassVar[float] = 30.0
    message_interval: ClassVar[float | None] = 0.01

    def build(self) -> list[Stage]:
        return [Stage(self.setting("duration"), self.setting("connections"), AT_ONCE, self.setting("message_interval"))]


class Churn(Stages):
    """
    A steady ``connections`` for ``duration`` where each connection lives
    ``connection_lifetime`` seconds, then its user closes it cleanly and opens a
    new one: about ``connections / connection_lifetime`` reconnects per second.

    First lifetimes are spread evenly over ``[0, connection_lifetime]``, so the
    churn is steady from the start. Each new connection is a ``reconnect``, and
    each close counted in the ``closed`` counter, not as a failure.

    The suite: 100 connections, 10 replaced per second (a 10 s lifetime), a
    message every 100 ms, for 30 s.
    """

    abstract = True
    run_options = frozenset({"connections", "duration", "message_interval"})

    connections: ClassVar[int] = 100
    duration: ClassVar[float] = 30.0
    connection_lifetime: ClassVar[float | None] = 10.0
    message_interval: ClassVar[float | None] = 0.1

    def build(self) -> list[Stage]:
        return [Stage(self.setting("duration"), self.setting("connections"), AT_ONCE, self.setting("message_interval"))]


class ErrorRecovery(Stages):
    """
    ``connections`` for ``duration``; the target fails for ``fault_duration``
    seconds, and the run measures how long the users take to get back to the
    open connections they had before.

    The fault comes ``fault_at`` seconds after the start, once every connection
    is open (with workers, users start some tenths of a second after the
    shape). If they are not all open halfway through the rest of the run (the
    deadline that leaves them the time to come back), there is no fault, and a
    warning says how many were open.

    The fault: the embedded reference server is stopped (every connection is
    closed with 1001 and new ones are refused) and started again on the same
    port after ``fault_duration``; another target is asked with
    ``POST /faults?drop=1&refuse_ms=N`` (the reference server's fault
    endpoint). A drop caused from outside (a server restarted by hand) is
    measured the same way.

    The result is logged as one line, ``error recovery: N of N connections back
    X.XX s after the server came back (down D.DD s; N dropped, lowest L open)``,
    timed from the end of the target's refusal window (from the drop, for a
    drop from outside), and kept in the run state
    (:attr:`wslocust.run.state.RunState.recovery`). It comes from the users'
    counters, looked at every ``poll_interval``: exact in one process; with
    workers, each sends its count every 0.2 s while the shape runs
    (:func:`~wslocust.integration.scenario.live_connections`), and only counts
    sent after the target's return are taken. The experiment
    itself is :func:`wslocust.integration.recovery.start`; this class only
    holds the table and the fault's timing.

    The suite: 500 connections, a message per second, about 10 s.
    """

    abstract = True
    run_options = frozenset({"connections", "duration", "message_interval"})
    watch_connections = True

    connections: ClassVar[int] = 500
    duration: ClassVar[float] = 20.0
    fault_at: ClassVar[float] = 5.0
    """Seconds after the start when the target fails (once every connection is open: later if needed)."""
    fault_duration: ClassVar[float] = 3.0
    """Seconds the target stays down."""
    message_interval: ClassVar[float | None] = 1.0

    poll_interval: ClassVar[float] = 0.05
    """Seconds between two looks at the users' counters."""

    def build(self) -> list[Stage]:
        duration = self.setting("duration")
        if not 0 <= self.fault_at < duration:
            raise ConfigurationError(
                f"{type(self).__name__}.fault_at: {self.fault_at:g} s must be within the {duration:g} s run"
            )
        return [Stage(duration, self.setting("connections"), AT_ONCE, self.setting("message_interval"))]
