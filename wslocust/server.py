"""
The reference WebSocket server behind ``wslocust serve``.

It echoes every message back and counts exactly what it did, so that the load
tester's figures can be checked against it. One port serves:

- the WebSocket path (default ``/ws``): echo each text or binary message back
  unchanged, optionally after a delay, with optional faults (close after N
  messages, refuse a fraction of the upgrades) and periodic broadcasts;
- ``GET /stats``: the counters as JSON, plus ``uptime_s`` and ``pid``;
- ``GET /healthz``: ``200 ok``, for load balancers and Kubernetes probes;
- anything else: 404.

The HTTP upgrade comes from gevent-websocket 0.10.1. That release predates
Python 3 fixes it never received, so :class:`_ServerWebSocket` and
:class:`_ServerHandler` replace the broken parts locally; each override says
what it fixes.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import errno
import hashlib
import json
import logging
import math
import os
import signal
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import gevent
import gevent.pool
import gevent.queue
from gevent.event import Event
from gevent.lock import Semaphore
from gevent.pywsgi import WSGIHandler, WSGIServer
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, Stream, WebSocket

from .cli import CommandLineParser
from .exceptions import ConfigurationError

try:
    from wsaccel.xormask import XorMaskerSimple
except ImportError:  # pragma: no cover - wsaccel is a declared dependency
    XorMaskerSimple = None

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "ReferenceServer",
    "ServerConfig",
    "ServerCounters",
    "add_arguments",
    "build_parser",
    "create_server",
    "main",
    "run",
]

logger = logging.getLogger(__name__)

#: How long the server waits for the client's reply to its close frame before
#: dropping the TCP connection (RFC 6455 §7.1.1 lets the server close first).
CLOSE_TIMEOUT = 5.0

#: How long SIGTERM/SIGINT give open connections to finish the close handshake.
DRAIN_TIMEOUT = 5.0

#: Largest frame payload accepted; a bigger one is closed with 1009 instead of
#: letting a client make the server allocate up to 2**63 bytes.
MAX_FRAME_BYTES = 16 * 2**20

#: Most outgoing messages queued for one connection (delayed echoes and
#: broadcasts) before broadcasts to it are skipped.
MAX_QUEUED = 1000

#: Listen backlog, so that a ramp of thousands of connects per second is not
#: refused before the accept loop runs (the kernel caps it at somaxconn).
LISTEN_BACKLOG = 4096

#: What ``wslocust serve`` does, for its --help and the ``wslocust`` command list.
SERVE_DESCRIPTION = (
    "Run the reference WebSocket echo server; its /stats counters are exact."
)

_STATS_PATH = "/stats"
_HEALTH_PATH = "/healthz"
_FAULTS_PATH = "/faults"
_REFUSED_KEY = "wslocust.refused"

_OPCODE_TEXT = WebSocket.OPCODE_TEXT
_OPCODE_BINARY = WebSocket.OPCODE_BINARY
_OPCODE_CLOSE = WebSocket.OPCODE_CLOSE


# Counters


class ServerCounters:
    """
    What the server did since it started; the truth load-test figures are checked against.

    Each value is updated at a precise point, so it can be compared exactly:

    Attributes:
        connections_accepted: WebSocket upgrades completed (the 101 was sent).
        connections_closed: accepted connections that ended, cleanly or not.
        handshakes_refused: upgrade requests answered with 503 because of
            ``refuse_fraction``; they are never counted as accepted.
        messages_received: complete text or binary messages read, counted
            before the echo is sent. Messages arriving after the server sent
            its close frame are counted but not echoed (RFC 6455 §5.5.1).
        messages_sent: text or binary messages written, counted right after
            the write succeeded; echoes and broadcasts.
        broadcasts_sent: the part of ``messages_sent`` that were broadcasts.
        bytes_received: payload bytes of ``messages_received`` (no framing).
        bytes_sent: payload bytes of ``messages_sent`` (no framing).
    """

    __slots__ = (
        "broadcasts_sent",
        "bytes_received",
        "bytes_sent",
        "connections_accepted",
        "connections_closed",
        "handshakes_refused",
        "messages_received",
        "messages_sent",
    )

    def __init__(self) -> None:
        self.connections_accepted = 0
        self.connections_closed = 0
        self.handshakes_refused = 0
        self.messages_received = 0
        self.messages_sent = 0
        self.broadcasts_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0

    @property
    def connections_open(self) -> int:
        """Connections accepted and not yet closed; derived, so it can never drift."""
        return self.connections_accepted - self.connections_closed

    def as_dict(self) -> dict[str, int]:
        """Return every counter, ``connections_open`` included, as a new dict."""
        return {
            "connections_open": self.connections_open,
            "connections_accepted": self.connections_accepted,
            "connections_closed": self.connections_closed,
            "handshakes_refused": self.handshakes_refused,
            "messages_received": self.messages_received,
            "messages_sent": self.messages_sent,
            "broadcasts_sent": self.broadcasts_sent,
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
        }


# Configuration
#
# Each check takes the raw value (a CLI string or a Python value), returns it
# normalised, or raises ValueError with a message that names the bad value and
# what is valid. ServerConfig and the command line share them.


def _show(value: object) -> str:
    # The bad value as the user typed it; quoted only when it would be invisible.
    return (
        value
        if isinstance(value, str) and value.strip() == value and value
        else repr(value)
    )


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
        raise ValueError(
            f"{_show(value)} is not a valid host (a name or IP address to listen on)"
        )
    return value.strip()


def _check_port(value: object) -> int:
    port = _parse_int(value)
    if port is None or not 0 <= port <= 65535:
        raise ValueError(f"{_show(value)} is not a valid port (0-65535)")
    return port


def _check_path(value: object) -> str:
    if (
        not isinstance(value, str)
        or not value.startswith("/")
        or len(value.split()) != 1
    ):
        raise ValueError(
            f"{_show(value)} is not a valid path (it must start with / and contain no spaces)"
        )
    if value in (_STATS_PATH, _HEALTH_PATH, _FAULTS_PATH):
        raise ValueError(
            f"{value} is reserved (use a path other than {_STATS_PATH}, {_HEALTH_PATH} and {_FAULTS_PATH})"
        )
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
        raise ValueError(
            f"{_show(value)} must be a number of milliseconds >= 0 (0 = off)"
        )
    return interval


def _check_close_code(value: object) -> int:
    # RFC 6455 §7.4.1: 1004 is reserved and 1005/1006/1015 must never be sent.
    # 1006 is accepted anyway and means "drop TCP without a close frame", which
    # is how a client comes to report 1006.
    code = _parse_int(value)
    if code is None or not (
        1000 <= code <= 1003 or 1006 <= code <= 1014 or 3000 <= code <= 4999
    ):
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


def _check_flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{_show(value)} must be True or False")
    return value


_CHECKS: dict[str, Callable[[object], Any]] = {
    "host": _check_host,
    "port": _check_port,
    "path": _check_path,
    "delay_ms": _check_delay_ms,
    "close_after": _check_count,
    "close_code": _check_close_code,
    "refuse_fraction": _check_fraction,
    "broadcast_interval_ms": _check_interval_ms,
    "reuse_port": _check_flag,
}


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

    # Behaviour

    delay_ms: float = 0.0
    """Delay before each echo. Other connections are not held up, and one
    connection's echoes keep their order."""

    broadcast_interval_ms: float = 0.0
    """Every this many ms, send the text message ``broadcast <n>`` to every open
    connection, ``n`` counting from 1; 0 = off."""

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
        for name, check in _CHECKS.items():
            try:
                object.__setattr__(self, name, check(getattr(self, name)))
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{name}: {exc}") from None


# The WebSocket layer: gevent-websocket 0.10.1, with its bugs fixed locally


def _unmask(payload: bytes, mask: bytes) -> bytes:
    if XorMaskerSimple is not None:
        return cast(bytes, XorMaskerSimple(mask).process(payload))
    # gevent-websocket XORs byte by byte in Python; one big-int XOR is ~50x faster.
    size = len(payload)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(
        size, "little"
    )


def _is_valid_received_close_code(code: int) -> bool:
    # RFC 6455 §7.4.1 plus the IANA registry (1012-1014 were registered later;
    # gevent-websocket rejects them).
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _MessageTooBig(ProtocolError):  # type: ignore[misc]  # no type hints upstream
    """A frame larger than MAX_FRAME_BYTES arrived."""


class _ServerWebSocket(WebSocket):  # type: ignore[misc]
    """
    gevent-websocket's ``WebSocket`` with these fixes:

    - ``close()`` ignored its ``code`` argument, so every close frame lacked a
      status code, and it sent ``str(bytearray(...))`` as the reason when
      replying to a client's close: the client read "by" as close code 25209.
    - a client close code 1012-1014 was answered with 1002.
    - unmasking and UTF-8 validation ran byte by byte in Python (validation
      twice per message); here wsaccel unmasks and CPython's strict decoder
      validates.
    - sends from several greenlets (echo, broadcast, drain) could interleave
      frames; a per-connection lock serialises them.
    - unmasked client frames (RFC 6455 §5.1) and oversized frames were accepted.
    - ``__del__`` wrote a close frame from the garbage collector.
    """

    def __init__(
        self, environ: dict[str, Any], stream: Stream, handler: WebSocketHandler
    ) -> None:
        super().__init__(environ, stream, handler)
        self.send_lock = Semaphore()
        self.close_sent = False
        """True once this side sent its close frame; no data frame may follow."""
        self.message_bytes = 0
        """Payload size of the message last returned by :meth:`receive`."""

    def __del__(self) -> None:
        pass

    # Receiving

    def receive(self) -> str | bytearray | None:
        """
        Return the next text (``str``) or binary (``bytearray``) message.

        Returns ``None`` once the connection is over: the close handshake
        completed, the peer broke the protocol (answered with 1002, 1007 or
        1009), or TCP failed. Never raises.
        """
        self.message_bytes = 0
        try:
            return cast("str | bytearray | None", self.read_message())
        except _MessageTooBig:
            self.close(1009)
        except UnicodeError:
            self.close(1007)
        except ProtocolError:
            self.close(1002)
        except OSError:  # also WebSocketError: EOF, reset, timeout
            self.closed = True
        return None

    def read_frame(self) -> tuple[Header, bytes]:
        header = Header.decode_header(self.stream)
        if header.flags:
            # RFC 6455 §5.2
            raise ProtocolError("reserved bits set, but no extension was negotiated")
        if not header.mask:
            # RFC 6455 §5.1
            raise ProtocolError("client frames must be masked")
        if header.length > MAX_FRAME_BYTES:
            raise _MessageTooBig(f"frame of {header.length} bytes")
        if header.opcode < 8:  # a data frame: count payload bytes of the message
            self.message_bytes += header.length
        if not header.length:
            return header, b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise WebSocketError("unexpected EOF reading frame payload")
        return header, _unmask(payload, header.mask)

    def validate_utf8(self, payload: bytes) -> None:
        # read_message then decodes the whole message with CPython's strict
        # UTF-8 decoder (RFC 3629: no surrogates, no overlong forms), which
        # raises UnicodeDecodeError -> close 1007, as §8.1 requires.
        pass

    def handle_close(self, header: Header, payload: bytes) -> None:
        if len(payload) == 1:
            raise ProtocolError("close frame with a 1-byte payload")  # §5.5.1
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not _is_valid_received_close_code(code):
                raise ProtocolError(f"invalid close code {code}")
            bytes(payload[2:]).decode("utf-8")  # §7.1.6; UnicodeDecodeError -> 1007
        if not self.close_sent:
            # §5.5.1: reply with a close frame, echoing the status code.
            self._send_close_payload(bytes(payload[:2]))
        self.closed = True

    def handle_ping(self, header: Header, payload: bytes) -> None:
        if not self.close_sent:
            self.send_frame(payload, self.OPCODE_PONG)

    # Sending

    def send_frame(self, message: bytes | bytearray | str, opcode: int) -> None:
        """Write one unfragmented frame; raises ``OSError`` if the connection is closing or lost."""
        if self.close_sent and opcode != _OPCODE_CLOSE:
            raise WebSocketError("close frame already sent")
        if isinstance(message, str):
            message = message.encode("utf-8")
        frame = Header.encode_header(True, opcode, b"", len(message), 0)
        frame += message
        with self.send_lock:
            self.raw_write(frame)

    def send_message(self, message: str | bytes | bytearray) -> int:
        """Send a text (``str``) or binary message and return its payload size in bytes."""
        if isinstance(message, str):
            payload = message.encode("utf-8")
            self.send_frame(payload, _OPCODE_TEXT)
            return len(payload)
        self.send_frame(message, _OPCODE_BINARY)
        return len(message)

    def start_closing(self, code: int, reason: str = "") -> None:
        """Send a close frame and keep reading until the client replies (§7.1.2)."""
        if not self.close_sent:
            self._send_close_payload(code.to_bytes(2, "big") + reason.encode("utf-8"))

    def close(self, code: int = 1000, message: bytes | str = b"") -> None:
        """Send a close frame with this code, if none was sent yet, and stop reading."""
        if not self.close_sent:
            reason = (
                message.encode("utf-8")
                if isinstance(message, str)
                else bytes(message or b"")
            )
            self._send_close_payload(code.to_bytes(2, "big") + reason)
        self.closed = True

    def abort(self) -> None:
        """Drop the TCP connection without a close frame; the reader then sees EOF."""
        self.close_sent = True
        self.closed = True
        sock = getattr(self.handler, "socket", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _send_close_payload(self, payload: bytes) -> None:
        self.close_sent = True  # first, so that concurrent senders stop now
        try:
            self.send_frame(payload, _OPCODE_CLOSE)
        except OSError:
            pass  # the peer is gone: nothing left to close politely


class _ServerHandler(WebSocketHandler):  # type: ignore[misc]
    """
    gevent-websocket's handler, with routing, refusals and these fixes:

    - error responses (no version, bad version) had ``str`` bodies: pywsgi
      raised ``TypeError`` on Python 3, so a 500 and a traceback.
    - HTTP/1.0 upgrades were answered "402 Bad Request"; here 400.
    - a malformed ``Sec-WebSocket-Key`` raised ``binascii.Error`` (the code
      caught ``TypeError``, Python 2's error): a 500 and a traceback on stderr;
      here it is a 400.
    - upgrade requests to any path were upgraded; here only the WebSocket path.
    - accepted sockets kept Nagle's algorithm on (see :meth:`handle`).
    - each request was logged through a logger that gevent-websocket
      reconfigures globally; the reference server logs no request at all.
    """

    def handle(self) -> None:
        # Without TCP_NODELAY, Nagle holds back an echo written while the
        # previous one is unacknowledged, and the client's delayed ACK turns
        # that into a 40 ms stall: pipelined messages measured 1,100 echoes/s.
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()

    @property
    def logger(self) -> logging.Logger:
        return logger

    def log_request(self) -> None:
        pass  # lean per-connection path; /stats tells what happened

    def run_application(self) -> None:
        reference: ReferenceServer = self.server.reference
        environ = self.environ
        if (
            environ.get("PATH_INFO") != reference.config.path
            or environ.get("HTTP_UPGRADE", "").lower() != "websocket"
        ):
            WSGIHandler.run_application(self)  # plain HTTP
        elif reference._refuse_upgrade():
            environ[_REFUSED_KEY] = True
            WSGIHandler.run_application(self)
        else:
            super().run_application()

    def upgrade_websocket(self) -> list[bytes] | None:
        # gevent-websocket answered "402 Bad Request".
        if self.request_version != "HTTP/1.1":
            self.start_response("400 Bad Request", [])
            return [b"WebSocket upgrades need HTTP/1.1\n"]
        result = super().upgrade_websocket()
        # gevent-websocket returns str bodies, which pywsgi cannot write on Python 3.
        return (
            [part.encode("utf-8") if isinstance(part, str) else part for part in result]
            if result
            else result
        )

    def upgrade_connection(self) -> list[bytes] | None:
        version = self.environ.get("HTTP_SEC_WEBSOCKET_VERSION")
        if version not in self.SUPPORTED_VERSIONS:
            self.start_response("400 Bad Request", [("Sec-WebSocket-Version", "13")])
            return [f"unsupported WebSocket version {version!r}\n".encode()]
        key = self.environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip()
        try:
            # RFC 6455 §4.2.1: the base64 encoding of 16 bytes.
            valid_key = len(base64.b64decode(key, validate=True)) == 16
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            self.start_response("400 Bad Request", [])
            return [b"invalid Sec-WebSocket-Key\n"]

        self.websocket = _ServerWebSocket(self.environ, Stream(self), self)
        self.environ.update(
            {"wsgi.websocket_version": version, "wsgi.websocket": self.websocket}
        )
        accept = base64.b64encode(
            hashlib.sha1((key + self.GUID).encode("ascii")).digest()
        ).decode("ascii")
        self.start_response(
            "101 Switching Protocols",
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept),
            ],
        )
        return None


# The server


class _Listener(WSGIServer):  # type: ignore[misc]
    """gevent's WSGIServer, knowing its :class:`ReferenceServer` and quiet when out of descriptors."""

    def __init__(self, reference: ReferenceServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reference = reference
        self._next_fd_warning = 0.0

    def do_read(self) -> Any:
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
        # Out of file descriptors: gevent would print a traceback per retry.
        # Pending connections wait in the listen backlog until some close.
        now = time.monotonic()
        if now >= self._next_fd_warning:
            self._next_fd_warning = now + 10.0
            logger.warning(
                "wslocust serve: out of file descriptors (%s per process); new "
                "connections wait until others close. Raise `ulimit -n`, or run "
                "more processes on the same port with --reuse-port.",
                _open_files_limit(),
            )
        self.stop_accepting()
        gevent.spawn_later(0.1, self._resume_accepting)
        return None

    def _resume_accepting(self) -> None:
        if self.started:
            self.start_accepting()


class _Close:
    """An outbox item: close the connection once the items before it are sent."""

    __slots__ = ("code", "reason", "timeout")

    def __init__(self, code: int, reason: str, timeout: float) -> None:
        self.code = code
        self.reason = reason
        self.timeout = timeout


class _Connection:
    """One accepted WebSocket: its socket wrapper and, if needed, its outgoing queue."""

    __slots__ = ("closing", "outbox", "watchdog", "writer", "ws")

    def __init__(self, ws: _ServerWebSocket) -> None:
        self.ws = ws
        # (due monotonic time, message or _Close, is_broadcast), sent in order
        # by one writer greenlet; only created for delays and broadcasts.
        self.outbox: gevent.queue.Queue | None = None
        self.writer: gevent.Greenlet | None = None
        self.closing = False
        self.watchdog: gevent.Greenlet | None = None

    def close_now(self, code: int, reason: str, timeout: float) -> None:
        """Send a close frame (1006: drop TCP instead); drop TCP if no reply in ``timeout`` s."""
        if code == 1006:
            self.ws.abort()
            return
        if self.watchdog is None:
            # Armed first: the close frame itself may wait for a slow client.
            # A socket timeout would not do: the reader is blocked in a read already.
            self.watchdog = gevent.spawn_later(timeout, self.ws.abort)
        self.ws.start_closing(code, reason)


class ReferenceServer:
    """
    A running (or ready to run) reference server; create it with :func:`create_server`.

    Call :meth:`start` then :meth:`stop` from the gevent hub's thread.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        """The configuration it was created with."""
        self.counters = ServerCounters()
        """Live counters; read them directly in-process, or over ``GET /stats``."""
        self._wsgi: _Listener | None = None
        self._connections: set[_Connection] = set()
        # Exact arithmetic: 0.1 is 1/10, so the 10th request is refused, not the 11th.
        self._refuse_ratio = Fraction(repr(config.refuse_fraction))
        self._upgrade_requests = 0
        self._refusing_until = 0.0  # inject_fault(refuse_ms=...): answer upgrades with 503 until then
        self._started_at = 0.0
        self._broadcaster: gevent.Greenlet | None = None
        self._stopping = False
        self._drained = Event()
        self._stopped = Event()

    # Lifecycle

    def start(self) -> None:
        """
        Bind, listen and start accepting; returns at once.

        Raises:
            OSError: the address cannot be bound (in use, not local...).
            ConfigurationError: ``reuse_port`` is not supported here.
        """
        listener = _listen(self.config.host, self.config.port, self.config.reuse_port)
        # A pool (unbounded) so that stop() can wait for and kill the handlers.
        self._wsgi = _Listener(
            self,
            listener,
            self._application,
            handler_class=_ServerHandler,
            spawn=gevent.pool.Pool(),
            log=None,
            **self._tls_arguments(),
        )
        self._wsgi.start()
        self._started_at = time.monotonic()
        if self.config.broadcast_interval_ms:
            self._broadcaster = gevent.spawn(self._broadcast_loop)

    def _tls_arguments(self) -> dict[str, Any]:
        if not self.config.certfile:
            return {}
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.certfile, self.config.keyfile)
        return {"ssl_context": context}

    def serve_forever(self) -> None:
        """Start if needed, then block until :meth:`stop` has finished."""
        if self._wsgi is None:
            self.start()
        self._stopped.wait()

    def stop(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """
        Drain and stop: stop accepting, close every open connection with 1001
        "going away", wait up to ``timeout`` seconds for the close handshakes,
        then end whatever is left. Calling it again waits for the first call.
        """
        if self._stopping:
            self._stopped.wait()
            return
        self._stopping = True
        deadline = time.monotonic() + timeout
        if self._broadcaster is not None:
            self._broadcaster.kill()
        if self._wsgi is None:
            self._stopped.set()
            return
        self._wsgi.close()
        # One greenlet per connection: a client that does not read must not
        # hold up the close frames of the others.
        for connection in list(self._connections):
            gevent.spawn(
                self._close_connection, connection, 1001, "going away", timeout
            )
        if self._connections:
            self._drained.wait(max(0.0, deadline - time.monotonic()))
        # Handlers still running (clients that ignored the close, idle HTTP
        # keep-alive) are killed; their cleanup still counts them as closed.
        self._wsgi.stop(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        self._stopped.set()

    # Addresses and statistics

    @property
    def port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        if self._wsgi is None:
            raise RuntimeError("the server is not started")
        return int(self._wsgi.server_port)

    @property
    def url(self) -> str:
        """The WebSocket URL, e.g. ``ws://127.0.0.1:3003/ws``."""
        scheme = "wss" if self.config.certfile else "ws"
        return f"{scheme}://{self._authority()}{self.config.path}"

    @property
    def stats_url(self) -> str:
        """The statistics URL, e.g. ``http://127.0.0.1:3003/stats``."""
        scheme = "https" if self.config.certfile else "http"
        return f"{scheme}://{self._authority()}{_STATS_PATH}"

    def stats(self) -> dict[str, float]:
        """The counters plus ``uptime_s`` and ``pid``: the body of ``GET /stats``."""
        values: dict[str, float] = dict(self.counters.as_dict())
        uptime = time.monotonic() - self._started_at if self._started_at else 0.0
        values["uptime_s"] = round(uptime, 3)
        values["pid"] = os.getpid()
        return values

    def _authority(self) -> str:
        host = self.config.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    # HTTP

    def _application(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        ws = environ.get("wsgi.websocket")
        if ws is not None:
            self._serve_connection(ws)
            return []
        path = environ.get("PATH_INFO", "")
        if environ.get(_REFUSED_KEY):
            body = b"refused (refuse_fraction)\n"
            return _respond(
                start_response, "503 Service Unavailable", body, [("Retry-After", "1")]
            )
        if path == _STATS_PATH:
            body = json.dumps(self.stats()).encode("ascii")
            return _respond(
                start_response, "200 OK", body, content_type="application/json"
            )
        if path == _HEALTH_PATH:
            return _respond(start_response, "200 OK", b"ok")
        if path == _FAULTS_PATH:
            return self._fault_request(environ, start_response)
        if path == self.config.path:
            return _respond(
                start_response,
                "426 Upgrade Required",
                b"this path only accepts WebSocket upgrades\n",
                [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            )
        return _respond(start_response, "404 Not Found", b"not found\n")

    def _fault_request(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _respond(start_response, "405 Method Not Allowed", b"POST only\n", [("Allow", "POST")])
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        try:
            drop = query.get("drop", ["0"])[-1] in ("1", "true")
            refuse_ms = float(query.get("refuse_ms", ["0"])[-1])
            if not refuse_ms >= 0:
                raise ValueError
        except ValueError:
            body = b"use POST /faults?drop=1&refuse_ms=N (N >= 0 milliseconds)\n"
            return _respond(start_response, "400 Bad Request", body)
        dropped = self.inject_fault(drop=drop, refuse_ms=refuse_ms)
        body = json.dumps({"dropped": dropped, "refuse_ms": refuse_ms}).encode("ascii")
        return _respond(start_response, "200 OK", body, content_type="application/json")

    def inject_fault(self, *, drop: bool = False, refuse_ms: float = 0.0) -> int:
        """
        Make the server fail on purpose, as ``POST /faults`` does.

        Args:
            drop: drop every open connection's TCP without a close frame, as a
                crashed server would (clients see 1006).
            refuse_ms: answer every upgrade with 503 for this many milliseconds.

        Returns:
            How many connections were dropped.
        """
        if refuse_ms:
            self._refusing_until = max(self._refusing_until, time.monotonic() + refuse_ms / 1000)
        if not drop:
            return 0
        victims = list(self._connections)
        for connection in victims:
            connection.close_now(1006, "", 0)
        logger.info("fault injected: dropped %d connections, refusing upgrades for %g ms", len(victims), refuse_ms)
        return len(victims)

    def _refuse_upgrade(self) -> bool:
        if self._refusing_until > time.monotonic():
            self.counters.handshakes_refused += 1
            return True
        return self._should_refuse()

    def _should_refuse(self) -> bool:
        # Refuse request n when floor(n * f) grows: after n requests exactly
        # floor(n * f) were refused, with no randomness.
        self._upgrade_requests += 1
        n = self._upgrade_requests
        above, below = self._refuse_ratio.numerator, self._refuse_ratio.denominator
        if n * above // below > (n - 1) * above // below:
            self.counters.handshakes_refused += 1
            return True
        return False

    # WebSocket connections

    def _serve_connection(self, ws: _ServerWebSocket) -> None:
        counters = self.counters
        counters.connections_accepted += 1
        connection = _Connection(ws)
        self._connections.add(connection)
        try:
            if self.config.delay_ms or self.config.broadcast_interval_ms:
                connection.outbox = gevent.queue.Queue()
                connection.writer = gevent.spawn(
                    self._write_loop, connection, connection.outbox
                )
            if self._stopping:  # accepted while draining
                self._close_connection(connection, 1001, "going away", CLOSE_TIMEOUT)
            self._echo_loop(connection)
        finally:
            self._connections.discard(connection)
            for greenlet in (connection.writer, connection.watchdog):
                if greenlet is not None:
                    greenlet.kill(block=False)
            counters.connections_closed += 1
            if self._stopping and not self._connections:
                self._drained.set()

    def _echo_loop(self, connection: _Connection) -> None:
        # The hot path: no logging, no allocation beyond the message itself.
        ws = connection.ws
        outbox = connection.outbox
        counters = self.counters
        receive = ws.receive
        send_message = ws.send_message
        delay = self.config.delay_ms / 1000.0
        close_after = self.config.close_after
        echoed = 0
        while True:
            message = receive()
            if message is None:
                return
            counters.messages_received += 1
            counters.bytes_received += ws.message_bytes
            if connection.closing:
                continue  # §5.5.1: no data after our close frame; counted, not echoed
            if delay and outbox is not None:
                # The writer sends it when due; the queue keeps this connection's order.
                outbox.put((time.monotonic() + delay, message, False))
            else:
                try:
                    size = send_message(message)
                except OSError:
                    if ws.close_sent and not ws.closed:
                        continue  # the drain closed meanwhile: wait for the client's reply
                    return
                counters.messages_sent += 1
                counters.bytes_sent += size
            echoed += 1
            if close_after and echoed >= close_after:
                self._close_connection(
                    connection, self.config.close_code, "close_after", CLOSE_TIMEOUT
                )

    def _write_loop(self, connection: _Connection, outbox: gevent.queue.Queue) -> None:
        ws = connection.ws
        counters = self.counters
        get = outbox.get
        while True:
            due, item, is_broadcast = get()
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            if type(item) is _Close:
                connection.close_now(item.code, item.reason, item.timeout)
                return
            try:
                size = ws.send_message(item)
            except OSError:
                return
            counters.messages_sent += 1
            counters.bytes_sent += size
            if is_broadcast:
                counters.broadcasts_sent += 1

    def _close_connection(
        self, connection: _Connection, code: int, reason: str, timeout: float
    ) -> None:
        if connection.closing:
            return
        connection.closing = True
        if connection.outbox is not None:
            # After the echoes already queued, so that none is lost.
            connection.outbox.put((0.0, _Close(code, reason, timeout), False))
        else:
            connection.close_now(code, reason, timeout)

    def _broadcast_loop(self) -> None:
        interval = self.config.broadcast_interval_ms / 1000.0
        number = 0
        next_at = time.monotonic() + interval
        while True:
            gevent.sleep(max(0.0, next_at - time.monotonic()))
            # Late (a busy server)? Skip ahead rather than burst to catch up.
            next_at = max(next_at + interval, time.monotonic())
            number += 1
            item = (0.0, f"broadcast {number}", True)
            # put() on an unbounded queue never yields, so the set cannot change meanwhile.
            for connection in self._connections:
                # A client that does not read misses broadcasts instead of growing
                # the server's memory; broadcasts_sent counts only those sent.
                outbox = connection.outbox
                if (
                    outbox is not None
                    and not connection.closing
                    and outbox.qsize() < MAX_QUEUED
                ):
                    outbox.put(item)


def _respond(
    start_response: Callable[..., Any],
    status: str,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            *(headers or []),
        ],
    )
    return [body]


def _listen(host: str, port: int, reuse_port: bool) -> gevent.socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )[0]
    sock = gevent.socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ConfigurationError(
                    "reuse_port: SO_REUSEPORT is not supported on this platform"
                )
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def create_server(config: ServerConfig | None = None) -> ReferenceServer:
    """Return a reference server for ``config`` (defaults if omitted); call ``start()`` on it."""
    return ReferenceServer(config if config is not None else ServerConfig())


# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser``; each is validated as it is parsed."""
    defaults = ServerConfig()
    listening = parser.add_argument_group("listening")
    listening.add_argument(
        "--host",
        type=_cli_type(_check_host),
        default=defaults.host,
        help="address to listen on (default: %(default)s; 0.0.0.0 to accept remote clients)",
    )
    listening.add_argument(
        "--port",
        type=_cli_type(_check_port),
        default=defaults.port,
        help="TCP port, 0 = any free one (default: %(default)s)",
    )
    listening.add_argument(
        "--path",
        type=_cli_type(_check_path),
        default=defaults.path,
        help="WebSocket path (default: %(default)s)",
    )
    listening.add_argument(
        "--reuse-port",
        action="store_true",
        help="set SO_REUSEPORT so several server processes can share the port (each keeps its own /stats)",
    )
    listening.add_argument(
        "--certfile", metavar="PEM", help="certificate chain: serve wss:// instead of ws://"
    )
    listening.add_argument("--keyfile", metavar="PEM", help="private key of --certfile, if not inside it")
    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument(
        "--delay-ms",
        type=_cli_type(_check_delay_ms),
        default=defaults.delay_ms,
        help="delay each echo by this many ms (default: %(default)s)",
    )
    behaviour.add_argument(
        "--broadcast-interval-ms",
        type=_cli_type(_check_interval_ms),
        default=defaults.broadcast_interval_ms,
        help='send "broadcast <n>" to every open connection every this many ms, 0 = off (default: %(default)s)',
    )
    faults = parser.add_argument_group("faults")
    faults.add_argument(
        "--close-after",
        type=_cli_type(_check_count),
        default=defaults.close_after,
        help="close each connection after it received this many messages, 0 = never (default: %(default)s)",
    )
    faults.add_argument(
        "--close-code",
        type=_cli_type(_check_close_code),
        default=defaults.close_code,
        help="close code for --close-after; 1006 drops TCP without a close frame (default: %(default)s)",
    )
    faults.add_argument(
        "--refuse-fraction",
        type=_cli_type(_check_fraction),
        default=defaults.refuse_fraction,
        help="answer this fraction of upgrades with 503, deterministically (default: %(default)s)",
    )


def _cli_type(check: Callable[[object], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return check(text)
        except ValueError as exc:
            # ArgumentTypeError keeps our message; a ValueError would be replaced by argparse's.
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def run(args: argparse.Namespace) -> int:
    """
    Run the server for parsed ``serve`` options until SIGTERM or SIGINT.

    Prints the listening line, then, after draining, the final statistics as
    one line of JSON. Returns the exit code: 0, or 1 if it cannot listen.
    """
    config = ServerConfig(
        **{name: getattr(args, name) for name in _CHECKS}, certfile=args.certfile, keyfile=args.keyfile
    )
    _raise_open_files_limit()
    server = create_server(config)
    try:
        server.start()
    except (OSError, ConfigurationError) as exc:
        problem = (
            exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        )
        print(
            f"wslocust serve: error: cannot listen on {config.host}:{config.port}: {problem}",
            file=sys.stderr,
        )
        return 1
    # gevent runs each handler in a new greenlet, where stop() may wait for the drain.
    handlers = [
        gevent.signal_handler(signum, server.stop)
        for signum in (signal.SIGTERM, signal.SIGINT)
    ]
    print(
        f"wslocust reference server listening on {server.url} (stats at {server.stats_url})",
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        for handler in handlers:
            handler.cancel()
    print(json.dumps(server.stats()), flush=True)
    return 0


def _raise_open_files_limit() -> None:
    # Each connection is a file descriptor; the soft limit is often 1024 while
    # the hard limit allows far more.
    if resource is None:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _open_files_limit() -> str:
    if resource is None:  # pragma: no cover - Windows
        return "unknown"
    return str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``wslocust serve`` on its own."""
    parser = CommandLineParser(prog="wslocust serve", description=SERVE_DESCRIPTION)
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``wslocust serve`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
