"""
Every run-wide wslocust option, declared once: its flag, its environment
variable, its default, its help, how its value is checked, and whether it is
a field of Locust's web UI.

Run-wide settings are Locust command-line options with an ``env_var``, so
Locust's precedence applies (configuration file, then environment, then
command line). In ``--help`` they form one "wslocust" group:

- ``--ws-source-addresses ADDRESSES`` (``WS_SOURCE_ADDRESSES``): local addresses to bind
  connections to, a property of each host (:mod:`wslocust.integration.source_addresses`);
- the scenario options, each also an environment variable with the original suite's meaning:
  ``--ws-target-connections N`` (``TARGET_CONNECTIONS``), ``--ws-ramp-up-time MS``
  (``RAMP_UP_TIME``), ``--ws-test-duration MS`` (``TEST_DURATION``), ``--ws-profile NAME``
  (``WS_PROFILE``), ``--ws-time-scale F`` (``WS_TIME_SCALE``) and ``--ws-time-scale-messages MODE``
  (``WS_TIME_SCALE_MESSAGES``). The command line or the environment win over the profile, then the shape;
- ``--ws-thresholds EXPRESSIONS`` (``WS_THRESHOLDS``) and ``--ws-thresholds-abort``
  (``WS_THRESHOLDS_ABORT``): pass/fail criteria (:mod:`wslocust.reporting.thresholds`);
- ``--ws-message-interval MS`` (``MESSAGE_INTERVAL``): the periodic messages' interval;
- ``--ws-compression deflate|off`` (``WS_COMPRESSION``): permessage-deflate, over the user classes'
  ``compression``;
- ``--ws-embedded-port PORT`` (``WS_EMBEDDED_PORT``): the port of the embedded reference server;
- ``--ws-control-token TOKEN`` (``WS_CONTROL_TOKEN``): the token the ``ErrorRecovery`` experiment sends
  with its ``POST /faults`` to a reference server in another process (:data:`CONTROL_TOKEN_OPTION`);
- ``--ws-tls-ca-file PEM`` (``WS_TLS_CA_FILE``), ``--ws-tls-cert-file PEM`` (``WS_TLS_CERT_FILE``) and
  ``--ws-tls-key-file PEM`` (``WS_TLS_KEY_FILE``): the CA bundle to trust and the client certificate of
  mutual TLS, over the user classes' ``tls_*`` settings (:mod:`wslocust.integration.connection_options`);
- ``WORKERS``: Locust's ``--processes``, the number of worker processes.

The scenario options and the message interval are also fields of the web
UI's start form. The argparse types keep the validated *text*: the web UI
hands custom options back as strings (and crashes converting a bad one to a
number), so every value is converted where it is read, by the same check
(:func:`scenario_option`, :mod:`wslocust.run.settings`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wslocust.exceptions import ConfigurationError
from wslocust.integration.connection_options import add_connection_options
from wslocust.locust_compat import name_option_errors, show_in_web_ui
from wslocust.run.schedule import PROFILES, Profile
from wslocust.run.settings import check_message_scaling, check_time_scale, message_interval, parse_number
from wslocust.transport.addresses import parse_source_addresses

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = [
    "CONTROL_TOKEN_OPTION",
    "EMBEDDED_PORT",
    "add_options",
    "given",
    "option_flag",
    "scenario_option",
]

EMBEDDED_PORT = 3003
"""The embedded reference server's default port (the original suite's)."""

_SOURCE_ADDRESSES = ("--ws-source-addresses", "WS_SOURCE_ADDRESSES")

CONTROL_TOKEN_OPTION = ("--ws-control-token", "WS_CONTROL_TOKEN")
"""(flag, environment variable) of the reference server's control token, read as
``parsed_options.ws_control_token`` by :mod:`wslocust.integration.recovery`; the same variable as
``wslocust serve``'s, so that one Kubernetes Secret gives it to both."""

# Value checks -----------------------------------------------------------------------
#
# Each takes the text of an option (command line, environment or web UI) and
# returns its value, or raises ValueError with what is valid.


def _check_connections(text: str) -> int:
    value = parse_number(text)
    if value is None or value < 1 or value != int(value):
        raise ValueError("is not a whole number of connections >= 1")
    return int(value)


def _check_ramp_up(text: str) -> float:
    value = parse_number(text)
    if value is None or value < 0:
        raise ValueError("is not a number of milliseconds >= 0")
    return value / 1000


def _check_duration(text: str) -> float:
    value = parse_number(text)
    if value is None or value <= 0:
        raise ValueError("is not a number of milliseconds > 0")
    return value / 1000


def _check_profile(text: str) -> Profile:
    profile = PROFILES.get(str(text).strip().lower())
    if profile is None:
        raise ValueError(f"is not a profile ({', '.join(PROFILES)})")
    return profile


def _check_workers(text: str) -> int:
    value = parse_number(text)
    if value is None or value < 1 or value != int(value):
        raise ValueError("is not a whole number of worker processes >= 1")
    return int(value)


# Scenario options -----------------------------------------------------------------------


@dataclass(frozen=True)
class _ScenarioOption:
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


_SCENARIO = [
    _ScenarioOption(
        name="connections",
        flag="--ws-target-connections",
        env="TARGET_CONNECTIONS",
        check=_check_connections,
        metavar="N",
        help="Connections of the scenario's shape (the 10K test's target; the spike, wave and churn size...). "
        "Default: the profile's, else the locustfile's.",
    ),
    _ScenarioOption(
        name="ramp_up",
        flag="--ws-ramp-up-time",
        env="RAMP_UP_TIME",
        check=_check_ramp_up,
        metavar="MS",
        help="Milliseconds to reach the target connections, for shapes with a ramp-up. Default: the locustfile's.",
    ),
    _ScenarioOption(
        name="duration",
        flag="--ws-test-duration",
        env="TEST_DURATION",
        check=_check_duration,
        metavar="MS",
        help="Milliseconds to hold the connections after the ramp-up. Default: the profile's, else the locustfile's.",
    ),
    _ScenarioOption(
        name="profile",
        flag="--ws-profile",
        env="WS_PROFILE",
        check=_check_profile,
        metavar="NAME",
        help="Load profile: light (1,000 connections, a message every 10 s, 60 s), medium (5,000, 5 s, 120 s), "
        "heavy (10,000, 1 s, 300 s) or extreme (50,000, 0.5 s, 600 s). Explicit options win over it.",
    ),
    _ScenarioOption(
        name="time_scale",
        flag="--ws-time-scale",
        env="WS_TIME_SCALE",
        check=check_time_scale,
        metavar="F",
        help="Multiply every duration of the scenario (stages, connection lifetimes, reconnect delays) by F "
        "and divide spawn rates by it: 0.01 runs a 2-minute scenario in 1.2 s. Message intervals: see "
        "--ws-time-scale-messages. Default 1.",
    ),
    _ScenarioOption(
        name="time_scale_messages",
        flag="--ws-time-scale-messages",
        env="WS_TIME_SCALE_MESSAGES",
        check=check_message_scaling,
        metavar="MODE",
        help="real (default): with --ws-time-scale, each connection keeps the scenario's real message rate; scaled: "
        "message intervals shrink too (as many messages as the full run, at 1/F the rate: a load on the generator).",
    ),
]
_BY_NAME = {option.name: option for option in _SCENARIO}


def _scenario_type(option: _ScenarioOption) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip() == "":
            return ""  # not given: the web form's empty field, an empty variable
        try:
            option.check(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{option.env} / {option.flag}: {text!r} {exc}") from None
        return text.strip().lower()  # the profile's name as its choices spell it; numbers are unchanged

    return parse


# Types of the other options -------------------------------------------------------------


def _source_addresses(text: str) -> str:
    try:
        parse_source_addresses(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{_SOURCE_ADDRESSES[1]} / {_SOURCE_ADDRESSES[0]}: {exc}") from None
    return text


def _milliseconds(option: str, env: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{env} / {option}: {text!r} is not a number of milliseconds >= 0")
        return value

    return parse


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"WS_EMBEDDED_PORT / --ws-embedded-port: {text!r} is not a port (0-65535)")
    return value


# The parser --------------------------------------------------------------------------------


def add_options(parser: Any) -> None:
    """
    Add every wslocust option to Locust's argument parser (``init_command_line_parser``).

    Options added to an argument group stay out of the web UI's form unless
    :func:`~wslocust.locust_compat.show_in_web_ui` marks them: the scenario options and the message
    interval are run parameters; source addresses are a host's own, and
    thresholds are for headless runs.
    """
    group = parser.add_argument_group("wslocust", "WebSocket options (wslocust)")  # one group: declared here only
    group.add_argument(
        _SOURCE_ADDRESSES[0],
        type=_source_addresses,
        env_var=_SOURCE_ADDRESSES[1],
        default=None,
        metavar="ADDRESSES",
        help="Bind each connection of this process to the next of these local addresses, e.g. "
        "127.0.0.2-127.0.0.50 or 10.0.0.5,10.0.0.6 or 10.0.1.0/28: each one holds about 28,000 connections "
        "to one server address and port. Read by each process from its own command line or environment. "
        "Default: the kernel chooses.",
    )
    for option in _SCENARIO:
        action = group.add_argument(
            option.flag,
            type=_scenario_type(option),
            env_var=option.env,
            default=None,
            metavar=option.metavar,
            help=option.help,
            choices=["", *PROFILES] if option.name == "profile" else None,  # the form's select: empty first
        )
        show_in_web_ui(action)
    group.add_argument(
        "--ws-thresholds",
        env_var="WS_THRESHOLDS",
        default=None,
        metavar="EXPRESSIONS",
        help="Pass/fail criteria evaluated at the end of the run, e.g. "
        "'echo.p95<100ms, connect.p99<500ms, error_rate<0.1%%, cpu_per_1k<5%%'; 'suite' adds the original "
        "suite's targets. A failed threshold makes the exit code 3.",
    )
    group.add_argument(
        "--ws-thresholds-abort",
        env_var="WS_THRESHOLDS_ABORT",
        action="store_true",
        default=False,
        help="Also check the thresholds every 5 s once all users run, and stop the run at the first breach.",
    )
    action = group.add_argument(
        "--ws-message-interval",
        type=_milliseconds("--ws-message-interval", "MESSAGE_INTERVAL"),
        env_var="MESSAGE_INTERVAL",
        default=None,
        metavar="MS",
        help="Milliseconds between the periodic messages of each connection (users without tasks); "
        "0 sends none. Overrides the locustfile's message_interval. Default: the locustfile's, else 5000.",
    )
    show_in_web_ui(action)
    group.add_argument(
        "--ws-embedded-port",
        type=_port,
        env_var="WS_EMBEDDED_PORT",
        default=EMBEDDED_PORT,
        metavar="PORT",
        help=f"Port of the embedded reference server, started when no target is given (--host / WS_SERVER_URL); "
        f"0 takes any free port. Default: {EMBEDDED_PORT}.",
    )
    group.add_argument(
        CONTROL_TOKEN_OPTION[0],
        env_var=CONTROL_TOKEN_OPTION[1],
        default=None,
        metavar="TOKEN",
        help="Control token of the target's reference server (its --control-token / WS_CONTROL_TOKEN), sent "
        "with the POST /faults of an ErrorRecovery run. Better given as WS_CONTROL_TOKEN than on the command line.",
    )
    add_connection_options(group)
    name_option_errors(parser, group, {"WORKERS": "WORKERS / --processes"})  # "wslocust: ENV / --flag: ..."
    _map_workers_to_processes(parser)


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


# Reading scenario options ---------------------------------------------------------------------


def option_flag(name: str) -> str:
    """``"ENV / --flag"`` of a scenario option, as error messages name it."""
    if name == "message_interval":
        return "MESSAGE_INTERVAL / --ws-message-interval"
    option = _BY_NAME[name]
    return f"{option.env} / {option.flag}"


def given(environment: Environment, name: str) -> bool:
    """True when the run gave scenario option ``name`` (on the command line, in the environment or the web UI)."""
    return getattr(environment.parsed_options, _BY_NAME[name].dest, None) not in (None, "")


def scenario_option(environment: Environment, name: str) -> Any:
    """
    The run's value of a scenario option, converted, or None when not given.

    ``name`` is one of ``connections``, ``ramp_up`` and ``duration`` (seconds),
    ``message_interval`` (seconds), ``profile`` (a :class:`~wslocust.run.schedule.Profile`),
    ``time_scale`` and ``time_scale_messages`` (True: message intervals follow the time scale).

    Raises:
        ConfigurationError: a value set in the web UI is not valid; the
            message names the option, the value and what is valid.
    """
    options = getattr(environment, "parsed_options", None) if environment is not None else None
    if options is None:
        return None
    if name == "message_interval":
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
