"""
Run-wide settings as a run's users read them: the target default, the
message interval, the time scale and whether it applies to messages.

The options themselves (flags, environment variables, help) are declared in
:mod:`wslocust.integration.options`; this module only reads their values from
Locust's ``parsed_options``, where it lives below the user so that the user
can call it. The value checks it needs are the ones the option parsers use.

Locust's web UI hands custom options back as strings, and a worker takes them
from each spawn message: every value is read, and converted, when used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = [
    "DEFAULT_MESSAGE_INTERVAL_MS",
    "DEFAULT_TARGET",
    "MESSAGE_SCALINGS",
    "check_message_scaling",
    "check_time_scale",
    "default_target",
    "message_interval",
    "message_time_scale",
    "parse_number",
    "time_scale",
    "time_scaled",
]

DEFAULT_TARGET = "ws://localhost:3003/ws"
"""The original suite's default ``WS_SERVER_URL``."""

DEFAULT_MESSAGE_INTERVAL_MS = 5000.0
"""Milliseconds between the periodic messages of a connection when neither the run nor the user class says."""


def parse_number(text: str) -> float | None:
    """``text`` as a finite number, or None."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_time_scale(text: str) -> float:
    """
    The value of ``--ws-time-scale``.

    Raises:
        ValueError: what is valid, to follow the option's name and value.
    """
    value = parse_number(text)
    if value is None or value <= 0:
        raise ValueError("is not a time scale > 0 (1 = real time, 0.01 = 100 times faster)")
    return value


MESSAGE_SCALINGS = ("real", "scaled")
"""The values of ``--ws-time-scale-messages``; the first is the default. ``real``: a compressed run's
connections send at the scenario's real rate (only the stages, lifetimes and delays shrink); ``scaled``:
their message intervals shrink too (each connection sends as many messages as in the full run)."""


def check_message_scaling(text: str) -> bool:
    """
    The value of ``--ws-time-scale-messages``: True for ``scaled``, False for ``real``.

    Raises:
        ValueError: what is valid, to follow the option's name and value.
    """
    value = str(text).strip().lower()
    if value not in MESSAGE_SCALINGS:
        raise ValueError(
            "is not real (each connection sends at the scenario's real rate) or scaled (message intervals "
            "shrink with the time scale too)"
        )
    return value == "scaled"


def message_time_scale(environment: Environment) -> float:
    """
    The factor of the run's message intervals and ``time_scaled`` waits: the time scale with
    ``--ws-time-scale-messages scaled``, else 1 (each connection keeps its real message rate).
    """
    options = getattr(environment, "parsed_options", None) if environment is not None else None
    text = getattr(options, "ws_time_scale_messages", None) if options is not None else None
    try:
        scaled = text is not None and str(text).strip() != "" and check_message_scaling(text)
    except ValueError:
        scaled = False  # not valid: the shape reports that, users keep the safe default
    return time_scale(environment) if scaled else 1.0


def message_interval(environment: Environment) -> float | None:
    """
    The run's ``--ws-message-interval`` in seconds, or None when not given.

    Raises:
        ValueError: a value set in the web UI is not a number.
    """
    options = environment.parsed_options
    value = getattr(options, "ws_message_interval", None) if options is not None else None
    if value is None or value == "":
        return None
    # The web UI hands custom options back as strings.
    return float(value) / 1000


def default_target(environment: Environment) -> str:
    """The target when neither the user class nor ``--host`` names one."""
    return environment.host or os.environ.get("WS_SERVER_URL") or DEFAULT_TARGET


def time_scale(environment: Environment) -> float:
    """The run's ``--ws-time-scale``; 1.0 when not given (or not valid: the shape reports that)."""
    options = getattr(environment, "parsed_options", None) if environment is not None else None
    text = getattr(options, "ws_time_scale", None) if options is not None else None
    if text is None or str(text).strip() == "":
        return 1.0
    try:
        return check_time_scale(text)
    except ValueError:
        return 1.0


def time_scaled(wait_time: Callable[[Any], float]) -> Callable[[Any], float]:
    """
    Make a Locust ``wait_time`` follow ``--ws-time-scale`` when it applies to messages
    (``--ws-time-scale-messages scaled``), as a periodic message's interval does.

    Example::

        class BurstUser(WebSocketUser):
            wait_time = time_scaled(constant(2))
    """

    def scaled(user: Any) -> float:
        return float(wait_time(user)) * message_time_scale(user.environment)

    return scaled
