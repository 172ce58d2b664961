"""
The exceptions wslocust raises, all rooted at :class:`WsLocustError`::

    WsLocustError
     ├── ConfigurationError (also ValueError)   bad option, variable or URL
     ├── ConnectError                           no TCP/TLS connection was made
     │    ├── DNSError                          the host name did not resolve
     │    ├── ConnectionRefused                 nothing listens at host:port
     │    └── TLSError                          TLS failed (certificate, protocol)
     ├── ConnectTimeout (also TimeoutError)     TCP + TLS + upgrade took too long
     ├── ConnectAborted                         the run stopped before the connection opened
     ├── HandshakeError                         the server did not accept the upgrade
     ├── ProtocolError                          the peer broke RFC 6455
     ├── ReceiveTimeout (also TimeoutError)     a reply did not arrive in time
     │    └── PingTimeout                       a pong did not arrive in time
     └── ConnectionClosed                       the connection is closed
          ├── ConnectionClosedOK                ... with code 1000 or 1001
          └── ConnectionClosedError             ... any other way
               └── ConnectionFailed             ... by us, because the server broke
                                                    RFC 6455 (also ProtocolError)

Each message is stable across connections (no ports, no sequence numbers), so
that Locust's Failures tab groups identical faults into one row.
"""

from __future__ import annotations

from wslocust.redaction import redact_text

__all__ = [
    "ConfigurationError",
    "ConnectAborted",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ConnectionFailed",
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
    """
    Base class of every exception wslocust raises.

    Its message is redacted (:func:`wslocust.redaction.redact_text`): it may
    quote a URL or text chosen by the server (a status reason, a close reason),
    and it reaches logs, Locust's Failures tab, CSV files and reports.
    """

    def __init__(self, *args: object) -> None:
        super().__init__(*(redact_text(arg) if isinstance(arg, str) else arg for arg in args))


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


class ConnectAborted(WsLocustError):
    """
    The run stopped while a connection was being opened, and the upgrade did not finish
    within ``close_timeout``: an attempt cut short, not a timeout of the server's.
    """


class HandshakeError(WsLocustError):
    """
    The server answered the HTTP upgrade, but did not accept it.

    Attributes:
        status: the HTTP status code the server sent (0 if the response
            could not be parsed at all).
        header: the response header that was missing or wrong, when the
            status was 101 (``"Upgrade"``, ``"Sec-WebSocket-Accept"``...).
    """

    def __init__(self, message: str, status: int = 0, header: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.header = header


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


class ConnectionFailed(ConnectionClosedError, ProtocolError):
    """
    We failed the connection (RFC 6455 §7.1.7) because of what the server
    sent: a frame that breaks the protocol (``code`` 1002), invalid UTF-8 in
    a text message (1007) or a message over ``max_message_size`` (1009).

    ``code`` is the close code we sent, ``reason`` what the server did, e.g.
    ``ConnectionFailed(1002, "reserved opcode")``: "protocol error: reserved
    opcode (1002)". Being a :class:`ProtocolError` too, it is categorised
    as one rather than as a close by the server.
    """

    def _describe(self) -> str:
        what = "message too big" if self.code == 1009 else "protocol error"
        return f"{what}: {self.reason} ({self.code})"


def connection_closed(code: int, reason: str = "") -> ConnectionClosed:
    """Return the right :class:`ConnectionClosed` subclass for a close code."""
    if code in (1000, 1001):
        return ConnectionClosedOK(code, reason)
    return ConnectionClosedError(code, reason)
