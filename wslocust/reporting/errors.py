"""
Errors by category: what kind of failure each failed request was, counted
from Locust's own error table so that no request pays for it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from locust.stats import RequestStats

from wslocust.exceptions import (
    ConnectAborted,
    ConnectError,
    ConnectionClosed,
    ConnectionRefused,
    ConnectTimeout,
    DNSError,
    HandshakeError,
    PingTimeout,
    ProtocolError,
    ReceiveTimeout,
    TLSError,
)

__all__ = ["ErrorHarvester", "classify_error", "merge_counts"]


def classify_error(error: object) -> str:
    """
    The category of a failed request's exception: ``refused``, ``dns``,
    ``tls``, ``connect``, ``connect_timeout``, ``connect_aborted`` (the run stopped during the
    upgrade: no fault of the server's), ``handshake_<status>``, ``bad_101_<header>``,
    ``protocol``, ``reply_timeout``, ``ping_timeout``, ``closed_<code>``
    (``closed_1006``: lost without a close frame), else the exception's class
    name.
    """
    if isinstance(error, DNSError):
        return "dns"
    if isinstance(error, ConnectionRefused):
        return "refused"
    if isinstance(error, TLSError):
        return "tls"
    if isinstance(error, ConnectError):
        return "connect"
    if isinstance(error, ConnectTimeout):
        return "connect_timeout"
    if isinstance(error, ConnectAborted):
        return "connect_aborted"
    if isinstance(error, HandshakeError):
        if error.status == 101 and error.header:  # accepted, but the 101 itself was wrong: name the header
            return f"bad_101_{error.header.lower()}"
        return f"handshake_{error.status}" if error.status else "handshake"
    if isinstance(error, ProtocolError):
        return "protocol"
    if isinstance(error, PingTimeout):
        return "ping_timeout"
    if isinstance(error, ReceiveTimeout):
        return "reply_timeout"
    if isinstance(error, ConnectionClosed):
        return f"closed_{error.code}"
    if isinstance(error, str):  # a master's copy of a worker's error
        return error.split("(", 1)[0] or "other"
    return type(error).__name__ if error is not None else "other"


def merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    """Add category counts key by key (associative and commutative)."""
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(total)


class ErrorHarvester:
    """Counts the errors of Locust's error table by category, each occurrence once."""

    def __init__(self) -> None:
        self.categories: Counter[str] = Counter()
        """Occurrences by category since this process started."""
        self._seen: dict[str, tuple[Any, int]] = {}

    def harvest(self, stats: RequestStats) -> None:
        """Count the occurrences added to ``stats.errors`` since the last harvest."""
        seen = {}
        for key, error in list(stats.errors.items()):
            previous = self._seen.get(key)
            counted = previous[1] if previous is not None and previous[0] is error else 0
            if error.occurrences > counted:
                self.categories[classify_error(error.error)] += error.occurrences - counted
            seen[key] = (error, error.occurrences)
        # Locust empties the table after each worker report: forget what is gone.
        self._seen = seen
