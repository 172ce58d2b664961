"""
Run-wide scenario settings: the original suite's environment variables, the
load profiles, the time scale, and the timeline a shape sends to every user.

Options, each also an environment variable with the suite's meaning:

- ``--ws-target-connections N`` (``TARGET_CONNECTIONS``): connections of the scenario's shape;
- ``--ws-ramp-up-time MS`` (``RAMP_UP_TIME``): time to reach them;
- ``--ws-test-duration MS`` (``TEST_DURATION``): time to hold them after the ramp-up;
- ``--ws-profile NAME`` (``WS_PROFILE``): light, medium, heavy or extreme;
- ``--ws-time-scale F`` (``WS_TIME_SCALE``): multiply every duration by F;
- ``WORKERS``: Locust's ``--processes``, the number of worker processes.

A value the command line or the environment gave wins over the profile, which
wins over the locustfile's shape. ``MESSAGE_INTERVAL`` is defined in
:mod:`wslocust.integration.plugin`.

The shape runs only on the master (or the single process), but message
intervals and connection lifetimes are user behaviour: at each tick the shape
publishes a :class:`Schedule` (the message interval of every stage and the
connection lifetime) with :func:`publish_schedule`; a master sends it to its
workers with ``runner.send_message``, and users read it with
:func:`schedule`. The whole timeline is sent, not the current value, so that a
user sleeping through a long interval still wakes up at the next stage.
"""

from __future__ import annotations

import argparse
import bisect
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from wslocust.exceptions import ConfigurationError

__all__ = [
    "PROFILES",
    "Profile",
    "Schedule",
    "live_connections",
    "publish_schedule",
    "scenario_option",
    "schedule",
    "show_in_web_ui",
    "stop_at_start",
    "time_scale",
    "time_scaled",
]

logger = logging.getLogger("wslocust")

SCHEDULE_MESSAGE = "wslocust_schedule"
"""The custom message type that carries the shape's schedule from the master to its workers."""


@dataclass(frozen=True)
class Profile:
    """One of the original suite's load profiles (its ``targetConnections``, ``messageInterval``, ``testDuration``)."""

    connections: int
    message_interval: float
    """Seconds between the periodic messages of each connection."""
    duration: float
    """Seconds to hold the connections after the ramp-up."""


PROFILES: dict[str, Profile] = {
    "light": Profile(connections=1000, message_interval=10.0, duration=60.0),
    "medium": Profile(connections=5000, message_interval=5.0, duration=120.0),
    "heavy": Profile(connections=10000, message_interval=1.0, duration=300.0),
    "extreme": Profile(connections=50000, message_interval=0.5, duration=600.0),
}
"""The suite's profiles by name, selected with ``--ws-profile`` / ``WS_PROFILE``."""


# Parsing ----------------------------------------------------------------------
#
# Each check takes the text of an option (command line, environment or web UI)
# and returns its value, or raises ValueError with what is valid. The argparse
# types keep the validated *text*: Locust's web UI hands custom options back as
# strings (and crashes converting a bad one to a number), so every value is
# converted where it is read, by the same check.


def _number(text: str) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_connections(text: str) -> int:
    value = _number(text)
    if value is None or value < 1 or value != int(value):
        raise ValueError("is not a whole number of connections >= 1")
    return int(value)


def _check_ramp_up(text: str) -> float:
    value = _number(text)
    if value is None or value < 0:
        raise ValueError("is not a number of milliseconds >= 0")
    return value / 1000


def _check_duration(text: str) -> float:
    value = _number(text)
    if value is None or value <= 0:
        raise ValueError("is not a number of milliseconds > 0")
    return value / 1000


def _check_profile(text: str) -> Profile:
    profile = PROFILES.get(str(text).strip().lower())
    if profile is None:
        raise ValueError(f"is not a profile ({', '.join(PROFILES)})")
    return profile


def _check_time_scale(text: str) -> float:
    value = _number(text)
    if value is None or value <= 0:
        raise ValueError("is not a time scale > 0 (1 = real time, 0.01 = 100 times faster)")
    return value


def _check_workers(text: str) -> int:
    value = _number(text)
    if value is None or value < 1 or value != int(value):
        raise ValueError("is not a whole number of worker processes >= 1")
    return int(value)


@dataclass(frozen=True)
class _Option:
    name: str
    flag: str
    env: str
    check: Callable[[str], Any]
    metavar: str
    help: str

    @property
    def dest(self) -> str:
        """The attribute of ``parsed_options`` (``--ws-time-scale`` -> ``ws_time_scale``)."""
        return self.flag.removeprefix("--").replace("-", "_")


_OPTIONS = [
    _Option(
        name="connections",
        flag="--ws-target-connections",
        env="TARGET_CONNECTIONS",
        check=_check_connections,
        metavar="N",
        help="Connections of the scenario's shape (the 10K test's target; the spike, wave and churn size...). "
        "Default: the profile's, else the locustfile's.",
    ),
    _Option(
        name="ramp_up",
        flag="--ws-ramp-up-time",
        env="RAMP_UP_TIME",
        check=_check_ramp_up,
        metavar="MS",
        help="Milliseconds to reach the target connections, for shapes with a ramp-up. Default: the locustfile's.",
    ),
    _Option(
        name="duration",
        flag="--ws-test-duration",
        env="TEST_DURATION",
        check=_check_duration,
        metavar="MS",
        help="Milliseconds to hold the connections after the ramp-up. Default: the profile's, else the locustfile's.",
    ),
    _Option(
        name="profile",
        flag="--ws-profile",
        env="WS_PROFILE",
        check=_check_profile,
        metavar="NAME",
        help="Load profile: light (1,000 connections, a message every 10 s, 60 s), medium (5,000, 5 s, 120 s), "
        "heavy (10,000, 1 s, 300 s) or extreme (50,000, 0.5 s, 600 s). Explicit options win over it.",
    ),
    _Option(
        name="time_scale",
        flag="--ws-time-scale",
        env="WS_TIME_SCALE",
        check=_check_time_scale,
        metavar="F",
        help="Multiply every duration of the scenario (stages, message intervals, connection lifetimes, "
        "reconnect delays) by F and divide spawn rates by it: 0.01 runs a 2-minute scenario in 1.2 s. "
        "Default 1.",
    ),
]
_BY_NAME = {option.name: option for option in _OPTIONS}


def _argparse_type(option: _Option) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            option.check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{option.env} / {option.flag}: {text!r} {exc}") from None
        return text.strip()

    return parse


def option_flag(name: str) -> str:
    """``"ENV / --flag"`` of a scenario option, as error messages name it."""
    if name == "message_interval":
        return "MESSAGE_INTERVAL / --ws-message-interval"
    option = _BY_NAME[name]
    return f"{option.env} / {option.flag}"


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = _option_group(parser)
    for option in _OPTIONS:
        choices = list(PROFILES) if option.name == "profile" else None
        action = group.add_argument(
            option.flag,
            type=_argparse_type(option),
            env_var=option.env,
            default=None,
            metavar=option.metavar,
            help=option.help,
            choices=choices,
        )
        show_in_web_ui(action)
    _map_workers_to_processes(parser)


def show_in_web_ui(action: Any) -> Any:
    """
    Make an option added to an argument group a field of Locust's web UI.

    Only ``LocustArgumentParser.add_argument`` marks options for the UI;
    ``add_argument_group(...).add_argument`` does not.
    """
    action.include_in_web_ui = True
    action.is_secret = action.is_required = action.is_multiple = False
    return action


def _option_group(parser: Any) -> Any:
    # One "wslocust" group in --help, whichever module adds its options first.
    for group in parser._action_groups:
        if group.title == "wslocust":
            return group
    return parser.add_argument_group("wslocust", "WebSocket options (wslocust)")


def _map_workers_to_processes(parser: Any) -> None:
    # The suite's WORKERS is Locust's --processes. Locust parses --processes
    # (and forks) before any init listener runs, so WORKERS becomes the
    # option's default here: --processes and LOCUST_PROCESSES still win.
    text = os.environ.get("WORKERS")
    if text is None or text.strip() == "":
        return
    try:
        workers = _check_workers(text)
    except ValueError as exc:
        parser.error(f"WORKERS / --processes: {text!r} {exc}")
    if "--master" in sys.argv or os.environ.get("LOCUST_MODE_MASTER", "").lower() in ("1", "true"):
        return  # Locust refuses --master with --processes; the workers are started separately
    parser.set_defaults(processes=workers)


def stop_at_start(environment: Any, line: str) -> NoReturn:
    """
    Print ``line`` and exit with status 2, from an ``init`` listener.

    A master whose workers Locust forked (``--processes``, ``WORKERS``) first
    tells them to quit: Locust does not stop its children when the master
    exits that early, and they would wait a minute for its heartbeat.
    """
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    runner = getattr(environment, "runner", None)
    options = getattr(environment, "parsed_options", None)
    if isinstance(runner, MasterRunner) and getattr(options, "processes", None):
        deadline = time.monotonic() + 5.0
        while runner.worker_count < options.expect_workers and time.monotonic() < deadline:
            gevent.sleep(0.05)
        runner.quit()
    sys.exit(2)


# Reading options ------------------------------------------------------------------


def scenario_option(environment: Any, name: str) -> Any:
    """
    The run's value of a scenario option, converted, or None when not given.

    ``name`` is one of ``connections``, ``ramp_up`` and ``duration`` (seconds),
    ``message_interval`` (seconds), ``profile`` (a :class:`Profile`) and
    ``time_scale``.

    Raises:
        ConfigurationError: a value set in the web UI is not valid; the
            message names the option, the value and what is valid.
    """
    options = getattr(environment, "parsed_options", None) if environment is not None else None
    if options is None:
        return None
    if name == "message_interval":
        from wslocust.integration.plugin import message_interval

        try:
            return message_interval(environment)
        except ValueError:
            text = options.ws_message_interval
            raise ConfigurationError(f"{option_flag(name)}: {text!r} is not a number of milliseconds >= 0") from None
    option = _BY_NAME[name]
    text = getattr(options, option.dest, None)
    if text is None or str(text).strip() == "":
        return None
    try:
        return option.check(text)
    except ValueError as exc:
        raise ConfigurationError(f"{option_flag(name)}: {str(text)!r} {exc}") from None


def time_scale(environment: Any) -> float:
    """The run's ``--ws-time-scale``; 1.0 when not given (or not valid: the shape reports that)."""
    try:
        scale = scenario_option(environment, "time_scale")
    except ConfigurationError:
        return 1.0
    return 1.0 if scale is None else scale


def time_scaled(wait_time: Callable[[Any], float]) -> Callable[[Any], float]:
    """
    Make a Locust ``wait_time`` follow ``--ws-time-scale``.

    Example::

        class BurstUser(WebSocketUser):
            wait_time = time_scaled(constant(2))
    """

    def scaled(user: Any) -> float:
        return float(wait_time(user)) * time_scale(user.environment)

    return scaled


# The schedule a shape sends to every user ----------------------------------------


class Schedule:
    """
    What a shape tells every user, on this process's clock.

    Args:
        ends: the end of each stage, in seconds since the shape started
            (ascending).
        intervals: the message interval of each stage in seconds (already
            time-scaled); None leaves the user's own; 0 sends none.
        lifetime: seconds each connection lives before it is closed and
            reopened (already time-scaled), or None.
        origin: this process's ``perf_counter()`` when the shape started.
        watch: workers send the master their open connections every
            :data:`WATCH_INTERVAL` (see :func:`live_connections`).
    """

    __slots__ = ("ends", "intervals", "lifetime", "origin", "watch")

    def __init__(
        self,
        ends: Sequence[float],
        intervals: Sequence[float | None],
        lifetime: float | None,
        origin: float,
        watch: bool = False,
    ) -> None:
        self.ends = [origin + end for end in ends]
        self.intervals = list(intervals)
        self.lifetime = lifetime
        self.origin = origin
        self.watch = watch

    def at(self, now: float) -> tuple[float | None, float]:
        """The message interval at ``now`` (a ``perf_counter()`` time) and when it ends (``inf``: never)."""
        index = bisect.bisect_right(self.ends, now)
        if index >= len(self.ends):
            return (self.intervals[-1] if self.intervals else None), math.inf
        return self.intervals[index], self.ends[index]

    def as_message(self) -> dict[str, Any]:
        now = time.perf_counter()
        return {
            "ends": [end - self.origin for end in self.ends],
            "intervals": self.intervals,
            "lifetime": self.lifetime,
            "run_time": now - self.origin,
            "watch": self.watch,
        }

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Schedule:
        # run_time says how long the shape has run: the origin on this clock follows.
        origin = time.perf_counter() - data["run_time"]
        return cls(data["ends"], data["intervals"], data["lifetime"], origin, data.get("watch", False))


def publish_schedule(environment: Any, published: Schedule) -> None:
    """Make ``published`` the schedule of this process's users and, on a master, of every worker's."""
    environment.ws_schedule = published
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        runner.send_message(SCHEDULE_MESSAGE, published.as_message())


def schedule(environment: Any) -> Schedule | None:
    """The schedule the run's shape published, or None (no wslocust shape)."""
    return getattr(environment, "ws_schedule", None)


def _receive_schedule(environment: Any, msg: Any, **_: Any) -> None:
    environment.ws_schedule = Schedule.from_message(msg.data)


# Fresh connection counts (for ErrorRecovery) ----------------------------------------
#
# Workers report their counters to the master every 3 s (Locust's report
# interval): too coarse to time a recovery. While the schedule asks for it,
# each worker also sends its open connections every WATCH_INTERVAL.

CONNECTIONS_MESSAGE = "wslocust_connections"
WATCH_INTERVAL = 0.2
"""Seconds between two reports of a worker's open connections while a shape watches them."""


def live_connections(environment: Any) -> tuple[int, int]:
    """
    The run's (open connections, disconnects so far), as fresh as can be: this
    process's counters, plus each worker's last :data:`WATCH_INTERVAL` report
    on a master (its last 3-second report before the first one arrives).
    """
    from wslocust.integration.plugin import aggregate_counters, counters

    fresh: dict[str, tuple[int, int]] = getattr(environment, "ws_live_connections", {})
    if not fresh:
        total = aggregate_counters(environment)
        return total.open, total.disconnects
    own = counters(environment)
    return own.open + sum(open_ for open_, _ in fresh.values()), own.disconnects + sum(d for _, d in fresh.values())


def _receive_connections(environment: Any, msg: Any, **_: Any) -> None:
    if not hasattr(environment, "ws_live_connections"):
        environment.ws_live_connections = {}
    environment.ws_live_connections[msg.node_id] = (msg.data["open"], msg.data["disconnects"])


def _send_connections_forever(environment: Any) -> None:
    from wslocust.integration.plugin import counters

    runner = environment.runner
    while True:
        gevent.sleep(WATCH_INTERVAL)
        published = schedule(environment)
        if published is not None and published.watch:
            own = counters(environment)
            runner.send_message(CONNECTIONS_MESSAGE, {"open": own.open, "disconnects": own.disconnects})


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        runner.register_message(SCHEDULE_MESSAGE, _receive_schedule)
        runner.greenlet.spawn(_send_connections_forever, environment)
        return
    if isinstance(runner, MasterRunner):
        runner.register_message(CONNECTIONS_MESSAGE, _receive_connections)
    if environment.parsed_options is None:
        return
    from wslocust.integration.shapes import Stages

    if isinstance(environment.shape_class, Stages):
        environment.shape_class.check_settings()
        return
    given = [name for name in ("connections", "ramp_up", "duration", "profile") if _given(environment, name)]
    ignored = [option_flag(name) for name in given]
    if ignored:
        logger.warning("%s: no effect, this locustfile has no wslocust shape (use -u, -r and -t)", ", ".join(ignored))


def _given(environment: Any, name: str) -> bool:
    return getattr(environment.parsed_options, _BY_NAME[name].dest, None) not in (None, "")
