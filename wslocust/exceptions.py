"""
The exceptions wslocust raises, all rooted at :class:`WsLocustError`::

    WsLocustError
     ├── ConfigurationError (also ValueError)   bad option, variable or URL
     ├── ConnectError                           no TCP/TLS connection was made
     │    ├── DNSError                          the host name did not resolve
     │    ├── ConnectionRefused                 nothing listens at host:port
     │    └── TLSError                          TLS failed (certificate, protocol)
     ├── ConnectTimeout (also TimeoutError)     TCP + TLS + upgrade took too long
     ├── HandshakeError                         the server did not accept the upgrade
     ├── ProtocolError                          the peer broke RFC 6455
     ├── ReceiveTimeout (also TimeoutError)     a reply did not arrive in time
     │    └── PingTimeout                       a pong did not arrive in time
     └── ConnectionClosed                       the connection is closed
          ├── ConnectionClosedOK                ... with code 1000 or 1001
          └── ConnectionClosedError             ... any other way

Each message is stable across connections (no ports, no sequence numbers), so
that Locust's Failures tab groups identical faults into one row.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ConnectionRefused",
    "DNSError",
    "HandshakeError",
    "PingTimeout",
    "ProtocolError",
    "ReceiveTimeout",
    "TLSError",
    "WsLocustError",
]


class WsLocustError(Exception):
    """Base class of every exception wslocust raises."""


class ConfigurationError(WsLocustError, ValueError):
    """An option, environment variable or URL has an invalid value."""


class ConnectError(WsLocustError):
    """The TCP (or TLS) connection to the server could not be made."""


class DNSError(ConnectError):
    """The server's host name could not be resolved."""


class ConnectionRefused(ConnectError):
    """The server's host answered, but nothing accepts connections on that port."""


class TLSError(ConnectError):
    """The TLS handshake failed, e.g. the certificate did not verify."""


class ConnectTimeout(WsLocustError, TimeoutError):
    """TCP connect, TLS and the HTTP upgrade did not finish within the connect timeout."""


class HandshakeError(WsLocustError):
    """
    The server answered the HTTP upgrade, but did not accept it.

    Attributes:
        status: the HTTP status code the server sent (0 if the response
            could not be parsed at all).
    """

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(WsLocustError):
    """The peer sent something that RFC 6455 does not allow."""


class ReceiveTimeout(WsLocustError, TimeoutError):
    """An expected message (an echo or a reply) did not arrive within its timeout."""


class PingTimeout(ReceiveTimeout):
    """A pong did not arrive within the ping timeout: the connection is presumed dead."""


class ConnectionClosed(WsLocustError):
    """
    The connection is closed; raised by any operation that needs it open.

    Attributes:
        code: the close code received from the server (RFC 6455 §7.1.5), or
            1006 if the connection dropped without a close frame.
        reason: the close reason received, possibly empty.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(self._describe())

    def _describe(self) -> str:
        if self.code == 1006:
            return "connection lost without a close frame (1006)"
        if self.code == 1005:
            return "closed by server without a close code (1005)"
        text = f"closed by server with code {self.code}"
        return f"{text} ({self.reason})" if self.reason else text


class ConnectionClosedOK(ConnectionClosed):
    """The connection was closed normally (code 1000 or 1001)."""


class ConnectionClosedError(ConnectionClosed):
    """The connection was closed abnormally (any code but 1000 and 1001, or dropped)."""


def connection_closed(code: int, reason: str = "") -> ConnectionClosed:
    """Return the right :class:`ConnectionClosed` subclass for a close code."""
    if code in (1000, 1001):
        return ConnectionClosedOK(code, reason)
    return ConnectionClosedError(code, reason)
