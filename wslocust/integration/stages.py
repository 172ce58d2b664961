"""
Stage tables: :class:`Stages`, the Locust ``LoadTestShape`` every wslocust shape is built on.

A shape is a table of :class:`Stage` rows, like k6's stages: :meth:`Stages.plan`
validates it and applies the time scale, and :meth:`Stages.tick` follows it
and publishes the schedule of message intervals to the users. The suite's
patterns (:mod:`wslocust.integration.shapes`) only build tables. A shape
depends only on ``get_run_time()``, the time scale and the run's options
(``parsed_options``, None in unit tests: the class attributes then apply as
they are).

Resolution limits, from how Locust drives shapes:

- Locust calls ``tick()`` about once a second, so a stage starts at the first
  tick after its start time (up to 1 s late) and the run ends at the first tick
  after the last stage. A stage that changes the number of users must last at
  least :data:`TICK` seconds after time scaling, or no tick could fall inside
  it: such a table is rejected with an error naming the stage.
- Locust starts or stops ``floor(spawn_rate)`` users at a time, once a second.
  A stage without a ``spawn_rate`` gets the one that reaches its users by its
  end; :data:`AT_ONCE` starts or stops them all in one step.
- With workers, the master waits for each ramp to finish (plus up to 1 s for
  the workers' reports) before it ticks again: a ramp slower than its stage
  delays the following stages.
- Message intervals and connection lifetimes change exactly at stage
  boundaries: the shape sends the whole timeline to the users (see
  :mod:`wslocust.integration.scenario`).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

from locust import LoadTestShape

from wslocust.exceptions import ConfigurationError
from wslocust.integration.options import given, option_flag, scenario_option
from wslocust.integration.scenario import publish_schedule
from wslocust.integration.startup import stop_at_start
from wslocust.run.schedule import Schedule

__all__ = ["AT_ONCE", "AT_ONCE_RATE_FACTOR", "TICK", "Plan", "Stage", "Stages"]

logger = logging.getLogger("wslocust")

TICK = 1.0
"""Seconds between two calls of ``tick()`` by Locust: the time resolution of every shape."""

AT_ONCE = math.inf
"""A ``spawn_rate`` that starts or stops all of a stage's users in one step."""

AT_ONCE_RATE_FACTOR = 1000
"""An :data:`AT_ONCE` step asks Locust for this many times its change per second: Locust
dispatches it in one step, and :mod:`wslocust.run.pacing`, which spreads the connects of a burst
over the burst's size divided by the rate, then opens them within a millisecond per thousand."""

_HIGH_RATE_WARNING = "Your selected spawn rate is very high"


class _QuietAboutAtOnce(logging.Filter):
    """Drops Locust's warning about spawn rates above 100/s, which every AT_ONCE step would print."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_HIGH_RATE_WARNING)


class Stage(NamedTuple):
    """One row of a :class:`Stages` table; durations in seconds, before time scaling."""

    duration: float
    """How long the stage lasts."""
    users: int
    """Connections (users) to reach, then hold until the stage ends."""
    spawn_rate: float | None = None
    """Users started or stopped per second; None reaches ``users`` by the end of the stage
    (like k6); :data:`AT_ONCE` in one step."""
    message_interval: float | None = None
    """Seconds between the periodic messages of each connection during the stage; 0 sends
    none; None leaves the users' own (``MESSAGE_INTERVAL``, else the user class's)."""


class Plan(NamedTuple):
    """A table after time scaling, as :meth:`Stages.tick` follows it."""

    ends: list[float]
    """End of each stage, in seconds since the start."""
    ticks: list[tuple[int, float]]
    """(users, spawn_rate) of each stage."""
    intervals: list[float | None]
    """Message interval of each stage (None: the users' own)."""
    lifetime: float | None
    """Seconds each connection lives (None: the whole run)."""


class Stages(LoadTestShape):
    """
    A table of stages: each lasts ``duration`` seconds, moves to ``users``
    connections at ``spawn_rate`` and sets the ``message_interval`` of every
    connection. The run stops after the last stage.

    Example::

        class Steps(Stages):
            stages = [
                Stage(duration=10, users=100),                      # 0 -> 100 in 10 s
                Stage(duration=60, users=100, message_interval=1),  # hold, 1 message/s each
                Stage(duration=5, users=500, spawn_rate=AT_ONCE),   # jump to 500
                Stage(duration=30, users=0),                        # back to 0 in 30 s
            ]

    ``MESSAGE_INTERVAL``, when given, replaces every interval but 0.
    """

    abstract = True

    stages: ClassVar[Sequence[Stage]] = ()
    """The table; subclasses may compute it in :meth:`build` instead."""

    connection_lifetime: ClassVar[float | None] = None
    """Seconds each connection lives before its user closes it cleanly and opens a new one
    (counted as a ``reconnect``); None keeps connections for the whole run."""

    watch_connections: ClassVar[bool] = False
    """Have workers send their open connections to the master every 0.2 s (see
    :func:`~wslocust.integration.scenario.live_connections`), for shapes that react to them."""

    run_options: ClassVar[frozenset[str]] = frozenset()
    """The attributes the run may override: ``connections`` (``TARGET_CONNECTIONS``), ``ramp_up``
    (``RAMP_UP_TIME``), ``duration`` (``TEST_DURATION``) and ``message_interval``
    (``MESSAGE_INTERVAL``); the profile (``WS_PROFILE``) gives defaults for the first three
    it has."""

    def __init__(self) -> None:
        super().__init__()
        self._plan: Plan | None = None
        self._warned = False

    # Building the table ----------------------------------------------------------

    def build(self) -> list[Stage]:
        """Return the table before time scaling; the default is :attr:`stages`."""
        return list(self.stages)

    def setting(self, name: str) -> Any:
        """
        The value of parameter ``name``: the run's option if this shape takes it
        (see :attr:`run_options`) and it was given, else the profile's, else the
        class attribute.
        """
        if name in self.run_options:
            environment = self._environment()
            value = scenario_option(environment, name)
            if value is not None:
                return value
            profile = scenario_option(environment, "profile")
            if profile is not None and hasattr(profile, name):
                return getattr(profile, name)
        return getattr(self, name)

    def time_scale(self) -> float:
        """The run's ``--ws-time-scale`` (1 when not given)."""
        scale = scenario_option(self._environment(), "time_scale")
        return 1.0 if scale is None else scale

    def message_time_scale(self) -> float:
        """
        The factor of the stages' message intervals: the time scale with ``--ws-time-scale-messages
        scaled``; 1 by default, so that a compressed run keeps each connection's real message rate.
        """
        if scenario_option(self._environment(), "time_scale_messages"):
            return self.time_scale()
        return 1.0

    def plan(self) -> Plan:
        """
        Validate and time-scale the table (message intervals: see :meth:`message_time_scale`).

        Raises:
            ConfigurationError: a stage is not valid, or too short for Locust's tick.
        """
        name = type(self).__name__
        stages = self.build()
        if not stages:
            raise ConfigurationError(f"{name}: no stages")
        scale = self.time_scale()
        message_scale = self.message_time_scale()
        run_interval = scenario_option(self._environment(), "message_interval")
        ends: list[float] = []
        ticks: list[tuple[int, float]] = []
        intervals: list[float | None] = []
        end = 0.0
        users = 0
        rate = 0.0
        for number, stage in enumerate(stages, 1):
            duration, target, spawn_rate, interval = stage
            _check(name, number, "duration", duration, duration > 0, "must be > 0 seconds")
            _check(name, number, "users", target, target >= 0 and int(target) == target, "must be a whole number >= 0")
            _check(name, number, "spawn_rate", spawn_rate, spawn_rate is None or spawn_rate > 0, "must be > 0")
            _check(name, number, "message_interval", interval, interval is None or interval >= 0, "must be >= 0")
            target = int(target)
            scaled = duration * scale
            if number > 1 and target != users and scaled < TICK:
                raise ConfigurationError(
                    f"{name}: stage {number} ({target} users) lasts {scaled:g} s at time scale {scale:g}, "
                    f"less than Locust's {TICK:g} s shape tick, so it could be skipped: lengthen it "
                    "or use a larger --ws-time-scale"
                )
            change = abs(target - users)
            if spawn_rate == AT_ONCE:
                rate = float(max(change, 1)) * AT_ONCE_RATE_FACTOR
            elif spawn_rate is not None:
                rate = spawn_rate / scale
            elif change:
                rate = change / scaled
            elif not rate:
                rate = float(max(target, 1))  # nothing to spawn: any rate will do
            if run_interval is not None and interval != 0:
                interval = run_interval
            end += scaled
            ends.append(end)
            ticks.append((target, rate))
            intervals.append(None if interval is None else interval * message_scale)
            users = target
        if end < TICK:
            raise ConfigurationError(
                f"{name}: the whole run lasts {end:g} s at time scale {scale:g}, less than Locust's {TICK:g} s "
                "shape tick, so nothing would run: lengthen it or use a larger --ws-time-scale"
            )
        lifetime = self.connection_lifetime
        if lifetime is not None and not lifetime > 0:
            raise ConfigurationError(f"{name}.connection_lifetime: {lifetime!r} must be > 0 seconds (or None)")
        return Plan(ends, ticks, intervals, None if lifetime is None else lifetime * scale)

    def check_settings(self) -> None:
        """Validate the table with the run's options; on error print one line and exit with status 2."""
        try:
            self.plan()
        except ConfigurationError as exc:
            stop_at_start(self._environment(), f"wslocust: {exc}")

    # Running ---------------------------------------------------------------------

    def reset_time(self) -> None:
        super().reset_time()
        self._plan = None  # a new run (web UI) may come with new options

    def tick(self) -> tuple[int, float] | None:
        plan = self._plan
        if plan is None:
            try:
                plan = self._plan = self.plan()
            except ConfigurationError as exc:
                logger.error("wslocust: %s", exc)
                return None
            self._warn_ignored_options()
            runners_logger = logging.getLogger("locust.runners")
            if not any(isinstance(known, _QuietAboutAtOnce) for known in runners_logger.filters):
                runners_logger.addFilter(_QuietAboutAtOnce())
        run_time = self.get_run_time()
        environment = self._environment()
        if environment is not None:
            # Every tick: a worker that joins late, or a master that reset the clock, catches up.
            published = Schedule(plan.ends, plan.intervals, plan.lifetime, self.start_time, self.watch_connections)
            publish_schedule(environment, published)
        index = bisect.bisect_right(plan.ends, run_time)
        if index >= len(plan.ends):
            return None
        return plan.ticks[index]

    @property
    def total_duration(self) -> float:
        """Seconds from the start to the end of the last stage, time scale applied."""
        return self.plan().ends[-1]

    def _environment(self) -> Any:
        runner = self.runner
        return runner.environment if runner is not None else None

    def _warn_ignored_options(self) -> None:
        environment = self._environment()
        if environment is None or self._warned:
            return
        self._warned = True
        ignored = [
            option_flag(name)
            for name in ("connections", "ramp_up", "duration")  # MESSAGE_INTERVAL applies to users anyway
            if name not in self.run_options and given(environment, name)
        ]
        if ignored:
            logger.warning("%s: no effect on %s", ", ".join(ignored), type(self).__name__)


def _check(shape: str, number: int, field: str, value: Any, valid: bool, what: str) -> None:
    if not valid:
        raise ConfigurationError(f"{shape}: stage {number}: {field} {value!r} {what}")
