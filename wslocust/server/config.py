"""
The reference server's configuration: :class:`ServerConfig` and the checks of its values.

The checks are shared with the ``serve`` command line (see
:mod:`wslocust.server.command`), so both report a bad value the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..exceptions import ConfigurationError

__all__ = [
    "CONTROL_TOKEN_ENV",
    "FAULTS_PATH",
    "FIELD_CHECKS",
    "HANDSHAKE_TIMEOUT_ENV",
    "HEALTH_PATH",
    "MAX_FAULT_MS",
    "STATS_PATH",
    "ServerConfig",
]

# HTTP paths served next to the WebSocket path, which may not reuse them.

STATS_PATH = "/stats"
"""``GET``: the counters as JSON."""
HEALTH_PATH = "/healthz"
"""``GET``: ``200 ok``, for load balancers and Kubernetes probes."""
FAULTS_PATH = "/faults"
"""``POST ?drop=1&refuse_ms=N``: fail on purpose (see :meth:`ReferenceServer.inject_fault`)."""

MAX_FAULT_MS = 3_600_000
"""Longest ``refuse_ms`` of ``POST /faults``: one hour. A longer refusal is a typo that would leave the
server refusing every upgrade until it is restarted."""

CONTROL_TOKEN_ENV = "WS_CONTROL_TOKEN"
"""The environment variable that gives ``--control-token``; the Locust side reads the same one
(``--ws-control-token``), so one Kubernetes Secret serves both."""

HANDSHAKE_TIMEOUT_ENV = "WS_HANDSHAKE_TIMEOUT"
"""The environment variable that gives ``--handshake-timeout``."""


# Configuration
#
# Each check takes the raw value (a CLI string or a Python value), returns it
# normalised, or raises ValueError with a message that names the bad value and
# what is valid. ServerConfig and the command line share them.


def _show(value: object) -> str:
    # The bad value as the user typed it; quoted only when it would be invisible.
    return value if isinstance(value, str) and value.strip() == value and value else repr(value)


def _parse_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _parse_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _check_host(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{_show(value)} is not a valid host (a name or IP address to listen on)")
    return value.strip()


def _check_port(value: object) -> int:
    port = _parse_int(value)
    if port is None or not 0 <= port <= 65535:
        raise ValueError(f"{_show(value)} is not a valid port (0-65535)")
    return port


def _check_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value.split()) != 1:
        raise ValueError(f"{_show(value)} is not a valid path (it must start with / and contain no spaces)")
    if value in (STATS_PATH, HEALTH_PATH, FAULTS_PATH):
        raise ValueError(f"{value} is reserved (use a path other than {STATS_PATH}, {HEALTH_PATH} and {FAULTS_PATH})")
    return value


def _check_delay_ms(value: object) -> float:
    delay = _parse_float(value)
    if delay is None or delay < 0:
        raise ValueError(f"{_show(value)} must be a number of milliseconds >= 0")
    return delay


def _check_count(value: object) -> int:
    count = _parse_int(value)
    if count is None or count < 0:
        raise ValueError(f"{_show(value)} must be a whole number >= 0 (0 = never)")
    return count


def _check_interval_ms(value: object) -> float:
    interval = _parse_float(value)
    if interval is None or interval < 0:
        raise ValueError(f"{_show(value)} must be a number of milliseconds >= 0 (0 = off)")
    return interval


def _check_close_code(value: object) -> int:
    # RFC 6455 §7.4.1: 1004 is reserved and 1005/1006/1015 must never be sent.
    # 1006 is accepted anyway and means "drop TCP without a close frame", which
    # is how a client comes to report 1006.
    code = _parse_int(value)
    if code is None or not (1000 <= code <= 1003 or 1006 <= code <= 1014 or 3000 <= code <= 4999):
        raise ValueError(
            f"{_show(value)} is not a valid close code (1000-1003, 1007-1014 or 3000-4999; "
            "1006 drops the connection without a close frame)"
        )
    return code


def _check_fraction(value: object) -> float:
    fraction = _parse_float(value)
    if fraction is None or not 0 <= fraction <= 1:
        raise ValueError(f"{_show(value)} must be between 0 and 1")
    return fraction


def _check_message_size(value: object) -> int:
    size = _parse_int(value)
    # 125 bytes: the largest control frame, so that every valid close or ping frame still fits.
    if size is None or size < 125:
        raise ValueError(f"{_show(value)} must be a whole number of bytes >= 125")
    return size


def _check_handshake_timeout(value: object) -> float:
    seconds = _parse_float(value)
    if seconds is None or seconds <= 0:
        raise ValueError(f"{_show(value)} must be a number of seconds > 0")
    return seconds


def _check_control_token(value: object) -> str | None:
    if value is None or value == "":
        return None  # none given: see ServerConfig.control_token
    # Sent in an HTTP header: visible ASCII only, so that it can be neither mangled nor split.
    if not isinstance(value, str) or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("must be printable ASCII without spaces (e.g. the output of `openssl rand -hex 16`)")
    return value


def _check_flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{_show(value)} must be True or False")
    return value


FIELD_CHECKS: dict[str, Callable[[object], Any]] = {
    "host": _check_host,
    "port": _check_port,
    "path": _check_path,
    "delay_ms": _check_delay_ms,
    "close_after": _check_count,
    "close_code": _check_close_code,
    "refuse_fraction": _check_fraction,
    "broadcast_interval_ms": _check_interval_ms,
    "reuse_port": _check_flag,
    "max_message_size": _check_message_size,
    "handshake_timeout": _check_handshake_timeout,
    "control_token": _check_control_token,
}
"""The check of each checked :class:`ServerConfig` field, by field name (the TLS files are not
checked); the ``serve`` command line parses its options with the same ones."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """
    How the reference server listens and behaves; validated on creation.

    Raises:
        ConfigurationError: a value is out of range; the message names the
            field, the value and what is valid.
    """

    # Listening

    host: str = "127.0.0.1"
    """Address to listen on. Loopback by default: a load target must not be exposed by accident."""

    port: int = 3003
    """TCP port; 0 picks a free one (read it back from :attr:`ReferenceServer.port`)."""

    path: str = "/ws"
    """The WebSocket path; ``/stats`` and ``/healthz`` are reserved."""

    reuse_port: bool = False
    """Set SO_REUSEPORT so that several server processes share one port (each
    process is limited by its file-descriptor limit). Each process keeps its
    own counters, so ``/stats`` reports whichever process the kernel picked."""

    certfile: str | None = None
    """PEM certificate chain: serve ``wss://`` (and ``https://`` stats) instead of ``ws://``."""

    keyfile: str | None = None
    """PEM private key of ``certfile`` (omit when the key is in the certificate file)."""

    # Limits

    max_message_size: int = 16 * 2**20
    """Largest message accepted, in payload bytes, all its fragments together (RFC 6455 §5.4); a
    larger one closes the connection with 1009 and counts in ``messages_too_big``. The default,
    16 MiB, is well above a ``WebSocketUser``'s own 1 MiB ``max_message_size``."""

    handshake_timeout: float = 10.0
    """Seconds a connection has to send a complete HTTP request (the upgrade, or a request to
    ``/stats``...) once accepted, or once its previous answer was sent: a connection that does not
    is closed and counted in ``handshakes_timed_out``, so that idle or trickling sockets cannot
    hold every file descriptor. Never applies to an upgraded WebSocket."""

    # Control

    control_token: str | None = None
    """The token that ``POST /faults`` must carry (``Authorization: Bearer <token>``). When None
    and the server listens beyond loopback, :meth:`ReferenceServer.start` generates one (read it
    from :attr:`ReferenceServer.control_token`); on loopback none is required unless given."""

    # Behaviour

    delay_ms: float = 0.0
    """Delay before each echo. Other connections are not held up, and one
    connection's echoes keep their order."""

    broadcast_interval_ms: float = 0.0
    """Every this many ms, send the text message ``{"broadcast": <n>, "sent_at": <t>}`` to
    every open connection, ``n`` counting from 1 and ``t`` the server's ``time.time()`` when
    the broadcast began (seconds, to the microsecond), so that a client times its fan-out
    delivery (``WebSocketUser.push_sent_at`` reads the field by default); 0 = off."""

    # Faults

    close_after: int = 0
    """Close each connection once it has received this many messages (the last
    one is echoed first); 0 = never."""

    close_code: int = 1000
    """Close code of the ``close_after`` close; 1006 drops TCP without a close frame."""

    refuse_fraction: float = 0.0
    """Answer this fraction of upgrade requests with 503. Deterministic: after
    ``n`` upgrade requests exactly ``floor(n * refuse_fraction)`` were refused
    (with 0.25, the 4th, 8th, 12th...)."""

    def __post_init__(self) -> None:
        for name, check in FIELD_CHECKS.items():
            try:
                object.__setattr__(self, name, check(getattr(self, name)))
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{name}: {exc}") from None
