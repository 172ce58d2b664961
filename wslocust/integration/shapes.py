"""
Load shapes: every load pattern of the original suite as a Locust ``LoadTestShape``.

Every class here is an abstract base (``abstract = True``): Locust runs the
first non-abstract shape it finds in a locustfile, so a locustfile subclasses
one and overrides its class attributes, which are in seconds::

    from wslocust.integration.shapes import Spike

    class FiveHundredAtOnce(Spike):
        connections = 500
        duration = 10.0

All of them are built on :class:`Stages`, a table of :class:`Stage` rows like
k6's stages. A shape depends only on ``get_run_time()``, the time scale and the
run's options (``parsed_options``, None in unit tests: the class attributes
then apply as they are).

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
  :mod:`wslocust.integration.settings`).
"""

from __future__ import annotations

import bisect
import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import gevent
from locust import LoadTestShape

from wslocust.codec.uri import parse_uri
from wslocust.exceptions import ConfigurationError
from wslocust.integration.settings import (
    Schedule,
    live_connections,
    option_flag,
    publish_schedule,
    scenario_option,
    stop_at_start,
)

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


class _Plan(NamedTuple):
    """A table after time scaling, as :meth:`Stages.tick` follows it."""

    ends: list[float]
    """End of each stage, in seconds since the start."""
    ticks: list[tuple[int, float]]
    """(users, spawn_rate) of each stage."""
    intervals: list[float | None]
    lifetime: float | None


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
    :func:`~wslocust.integration.settings.live_connections`), for shapes that react to them."""

    run_options: ClassVar[frozenset[str]] = frozenset()
    """The attributes the run may override: ``connections`` (``TARGET_CONNECTIONS``), ``ramp_up``
    (``RAMP_UP_TIME``), ``duration`` (``TEST_DURATION``) and ``message_interval``
    (``MESSAGE_INTERVAL``); the profile (``WS_PROFILE``) gives defaults for the first three
    it has."""

    def __init__(self) -> None:
        super().__init__()
        self._plan: _Plan | None = None
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

    def plan(self) -> _Plan:
        """
        Validate and time-scale the table.

        Raises:
            ConfigurationError: a stage is not valid, or too short for Locust's tick.
        """
        name = type(self).__name__
        stages = self.build()
        if not stages:
            raise ConfigurationError(f"{name}: no stages")
        scale = self.time_scale()
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
            intervals.append(None if interval is None else interval * scale)
            users = target
        lifetime = self.connection_lifetime
        if lifetime is not None and not lifetime > 0:
            raise ConfigurationError(f"{name}.connection_lifetime: {lifetime!r} must be > 0 seconds (or None)")
        return _Plan(ends, ticks, intervals, None if lifetime is None else lifetime * scale)

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
            if name not in self.run_options and _given(environment, name)
        ]
        if ignored:
            logger.warning("%s: no effect on %s", ", ".join(ignored), type(self).__name__)


def _given(environment: Any, name: str) -> bool:
    try:
        return scenario_option(environment, name) is not None
    except ConfigurationError:
        return True


def _check(shape: str, number: int, field: str, value: Any, valid: bool, what: str) -> None:
    if not valid:
        raise ConfigurationError(f"{shape}: stage {number}: {field} {value!r} {what}")


# The suite's patterns ------------------------------------------------------------------


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
    seconds, and the shape measures how long the users take to get back to the
    open connections they had before.

    The fault comes ``fault_at`` seconds after the start, once every connection
    is open (with workers, users start some tenths of a second after the
    shape), but no later than halfway through the rest of the run.

    The fault (:meth:`inject_fault`): the embedded reference server is stopped
    (every connection is closed with 1001 and new ones are refused) and started
    again on the same port after ``fault_duration``; another target is asked
    with ``POST /faults?drop=1&refuse_ms=N`` (the reference server's fault
    endpoint). A drop caused from outside (a server restarted by hand) is
    measured the same way.

    The result is logged as one line, ``error recovery: N of N connections back
    X.XX s after the fault``, and kept in ``environment.ws_recovery``. It comes
    from the users' counters, looked at every ``poll_interval``: exact in one
    process; with workers, each sends its count every 0.2 s while the shape runs
    (:func:`~wslocust.integration.settings.live_connections`).

    The suite: 500 connections, a message per second, about 10 s.
    """

    abstract = True
    run_options = frozenset({"connections", "duration", "message_interval"})
    watch_connections = True

    connections: ClassVar[int] = 500
    duration: ClassVar[float] = 20.0
    fault_at: ClassVar[float] = 5.0
    """Seconds after the start when the target fails (once every connection is open)."""
    fault_duration: ClassVar[float] = 3.0
    """Seconds the target stays down."""
    message_interval: ClassVar[float | None] = 1.0

    poll_interval: ClassVar[float] = 0.05
    """Seconds between two looks at the users' counters."""

    def __init__(self) -> None:
        super().__init__()
        self._watcher: gevent.Greenlet | None = None

    def build(self) -> list[Stage]:
        duration = self.setting("duration")
        if not 0 <= self.fault_at < duration:
            raise ConfigurationError(
                f"{type(self).__name__}.fault_at: {self.fault_at:g} s must be within the {duration:g} s run"
            )
        return [Stage(duration, self.setting("connections"), AT_ONCE, self.setting("message_interval"))]

    def reset_time(self) -> None:
        super().reset_time()
        if self._watcher is not None:
            self._watcher.kill(block=False)
            self._watcher = None

    def tick(self) -> tuple[int, float] | None:
        result = super().tick()
        if self.runner is None:
            return result
        if result is not None and self._watcher is None:
            scale = self.time_scale()
            delay = max(0.0, self.fault_at * scale - self.get_run_time())
            self._watcher = gevent.spawn_later(delay, self._fault_and_recovery, scale)
            self.runner.greenlet.add(self._watcher)  # killed with the runner
        elif result is None and self._watcher is not None and not self._watcher.dead:
            self._watcher.kill(block=False)
            logger.warning("error recovery: the run ended before the connections were back")
        return result

    def inject_fault(self, environment: Any, down_for: float) -> bool:
        """Make the target fail for ``down_for`` seconds; return False if it cannot be done."""
        server = getattr(environment, "ws_embedded_server", None)
        if server is not None:
            restart = gevent.spawn(_restart_embedded_server, environment, down_for)
            environment.runner.greenlet.add(restart)  # no restart after the run has quit
            return True
        return _post_fault(environment.host, down_for)

    def _fault_and_recovery(self, scale: float) -> None:
        environment = self._environment()
        target = self.setting("connections")
        latest = (self.fault_at + (self.setting("duration") - self.fault_at) / 2) * scale
        expected, disconnects = live_connections(environment)
        while expected < target and self.get_run_time() < latest:
            gevent.sleep(self.poll_interval)
            expected, disconnects = live_connections(environment)
        logger.info("error recovery: injecting a fault with %d of %d connections open", expected, target)
        started = time.perf_counter()
        injected = self.inject_fault(environment, self.fault_duration * scale)
        if not injected:
            logger.warning("error recovery: could not make the target fail; waiting for a drop from outside")
        dropped = False
        lowest = expected
        while True:
            gevent.sleep(self.poll_interval)
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
                environment.ws_recovery = {
                    "connections": expected,
                    "recovered": now_open,
                    "lowest": lowest,
                    "seconds": elapsed,
                }
                logger.info(
                    "error recovery: %d of %d connections back %.2f s after the fault (lowest %d open)",
                    now_open, expected, elapsed, lowest,
                )  # fmt: skip
                return


def _restart_embedded_server(environment: Any, down_for: float) -> None:
    from wslocust.server import create_server

    server = environment.ws_embedded_server
    stopped_at = time.perf_counter()
    server.stop(timeout=min(1.0, down_for))
    gevent.sleep(max(0.0, down_for - (time.perf_counter() - stopped_at)))
    replacement = create_server(server.config)
    deadline = time.perf_counter() + 5.0
    while True:
        try:
            replacement.start()
            break
        except OSError as exc:
            if time.perf_counter() > deadline:
                logger.error("error recovery: cannot restart the embedded server: %s", exc)
                return
            gevent.sleep(0.05)
    environment.ws_embedded_server = replacement
    logger.info("error recovery: the embedded server is back at %s", replacement.url)


def _post_fault(target: str | None, down_for: float) -> bool:
    if not target:
        return False
    try:
        uri = parse_uri(target)  # the target may be concealed (wslocust.redaction): never split it by hand
    except ConfigurationError:
        return False
    url = f"{'https' if uri.secure else 'http'}://{uri.host_header}/faults?drop=1&refuse_ms={round(down_for * 1000)}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=5) as response:
            return bool(200 <= response.status < 300)
    except (OSError, urllib.error.URLError) as exc:
        logger.warning("error recovery: POST %s failed: %s", url, exc)
        return False
