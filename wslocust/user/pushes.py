"""
Delivery latency of server pushes: from the send time a pushed message carries to its arrival.

A push is a message that answers no request: a chat message, a live event's update, a command to
a device. When one carries the time its sender sent it (``time.time()`` seconds, read from the
message by :meth:`~wslocust.user.websocket_user.WebSocketUser.push_sent_at`), its delivery latency
is reported as a request of its own, ``push``: the receive time minus the send time. By default a
JSON object's ``"sent_at"`` field is read, which is what the reference server's broadcasts carry
(``{"broadcast": 12, "sent_at": 1718000000.123456}``).

The receive time is the connection's (on the ``perf_counter`` clock, as every reply is timed),
moved to the wall clock by reading both clocks at once. Sender and receiver on one host read the
same wall clock, so the figure is exact there; across hosts it is as good as the two clocks agree
(NTP keeps them within a millisecond or a few on a LAN, more across the internet). A receive time
that comes out before the send time (a receiver's clock behind the sender's) is reported as 0 ms.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["SENT_AT_FIELD", "PushTimingUser", "epoch_time", "sent_at_field", "time_push"]

SENT_AT_FIELD = "sent_at"
"""The JSON field the default hook reads; the reference server's broadcasts carry it."""

_QUOTED_FIELD = f'"{SENT_AT_FIELD}"'

PLAUSIBLE_SKEW = 86_400.0
"""Seconds between a push's send time and its arrival beyond which the hook's value is taken for a
mistake (milliseconds, or a ``perf_counter()`` reading, rather than ``time.time()`` seconds)."""


class PushTimingUser(Protocol):
    """What :func:`time_push` needs of a user (a :class:`~wslocust.user.websocket_user.WebSocketUser`)."""

    _succeed: Callable[[str, float, int], None]
    _push_timing_off: bool

    def push_sent_at(self, message: str | bytes) -> float | None: ...

    def _report_user_error(self, exception: Exception) -> None: ...


def sent_at_field(message: str | bytes) -> float | None:
    """
    The default :meth:`~wslocust.user.websocket_user.WebSocketUser.push_sent_at`: a text message
    holding a JSON object with a number in ``"sent_at"`` (epoch seconds) was sent then.

    Returns:
        That number, or None for any other message (binary, not JSON, no such field).
    """
    if type(message) is not str or _QUOTED_FIELD not in message:
        return None  # most pushes: no parsing
    try:
        document = json.loads(message)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    value = document.get(SENT_AT_FIELD)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def epoch_time(perf_time: float) -> float:
    """
    The ``time.time()`` of a ``time.perf_counter()`` reading, both clocks read now.

    Read anew at each call, so a step of the wall clock (NTP, a manual change) is followed at once.
    """
    return perf_time + (time.time() - time.perf_counter())


def time_push(user: PushTimingUser, message: str | bytes, received_at: float, size: int) -> None:
    """
    Report ``message``'s delivery latency as a ``push`` request, if the user's hook gives its send time.

    A hook that raises or returns something other than ``time.time()`` seconds is reported once
    as a user error (as Locust reports a failing task); the user then stops timing its pushes.

    Args:
        user: the receiving user.
        message: the push (a message that answered no request).
        received_at: when it arrived, on the ``perf_counter`` clock.
        size: its payload's size in bytes.
    """
    if user._push_timing_off:
        return
    try:
        sent_at = user.push_sent_at(message)
        if sent_at is None:
            return
        received = epoch_time(received_at)
        if (
            isinstance(sent_at, bool)
            or not isinstance(sent_at, (int, float))
            or not math.isfinite(sent_at)
            or abs(received - sent_at) > PLAUSIBLE_SKEW
        ):
            raise ValueError(
                f"push_sent_at returned {sent_at!r}: expected the sender's time.time() in seconds, or None"
            )
    except Exception as exc:  # noqa: BLE001 - a bug in a hook must not take the connection down
        user._push_timing_off = True
        user._report_user_error(exc)
        return
    user._succeed("push", max(0.0, (received - sent_at) * 1000), size)
