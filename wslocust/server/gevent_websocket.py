"""
The WebSocket layer: gevent-websocket 0.10.1, with its bugs fixed locally.

That release predates Python 3 fixes it never received, so
:class:`ServerWebSocket` (framing, closing, sending) and
:class:`ServerHandler` (the HTTP upgrade, and which requests are upgraded)
replace the broken parts; each class docstring lists what it fixes.
Nothing else in wslocust touches gevent-websocket.

This module knows nothing of the reference server: the handler reads its
limits from the listener it runs under (see :class:`ServerHandler`), asks the
listener's :class:`~wslocust.server.refusals.UpgradeGate` which upgrades to
accept, and the application finds the accepted :class:`ServerWebSocket` in the
WSGI environ.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import logging
import socket
from typing import TYPE_CHECKING, Any, cast

import gevent
from gevent.lock import Semaphore
from gevent.pywsgi import WSGIHandler
from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.handler import WebSocketHandler
from geventwebsocket.websocket import Header, Stream, WebSocket

from ..codec.frames import apply_mask
from ..redaction import redact_text

if TYPE_CHECKING:
    from .counters import ServerCounters
    from .refusals import UpgradeGate

__all__ = ["REFUSED_KEY", "ServerHandler", "ServerWebSocket"]


# One logger for the whole server package, named as it was before the split.
logger = logging.getLogger("wslocust.server")

REFUSED_KEY = "wslocust.refused"
"""Set (to True) in the WSGI environ of an upgrade request that the application is to answer with 503."""

_OPCODE_TEXT = WebSocket.OPCODE_TEXT
_OPCODE_BINARY = WebSocket.OPCODE_BINARY
_OPCODE_CLOSE = WebSocket.OPCODE_CLOSE


def _is_valid_received_close_code(code: int) -> bool:
    # RFC 6455 §7.4.1 plus the IANA registry (1012-1014 were registered later;
    # gevent-websocket rejects them).
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _MessageTooBig(ProtocolError):  # type: ignore[misc]  # no type hints upstream
    """A message outgrew ``max_message_size``, all its fragments together."""


def _http_answer(status: str, body: bytes) -> bytes:
    # A complete answer that closes the connection, for errors found before any WSGI response exists.
    head = f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n"
    return head.encode("ascii") + f"Content-Length: {len(body)}\r\n\r\n".encode("ascii") + body


#: Characters of a bad request's description logged at most.
_MAX_LOGGED_REASON = 200

_TOO_MANY_HEADERS = _http_answer("431 Request Header Fields Too Large", b"too many or too long header fields\n")
_BAD_REQUEST = _http_answer("400 Bad Request", b"malformed HTTP request\n")


class ServerWebSocket(WebSocket):  # type: ignore[misc]
    """
    gevent-websocket's ``WebSocket`` with these fixes:

    - ``close()`` ignored its ``code`` argument, so every close frame lacked a
      status code, and it sent ``str(bytearray(...))`` as the reason when
      replying to a client's close: the client read "by" as close code 25209.
    - a client close code 1012-1014 was answered with 1002.
    - unmasking and UTF-8 validation ran byte by byte in Python (validation
      twice per message); here websockets' C code unmasks and CPython's strict decoder
      validates.
    - sends from several greenlets (echo, broadcast, drain) could interleave
      frames; a per-connection lock serialises them.
    - unmasked client frames (RFC 6455 §5.1) and oversized frames were accepted,
      and a message of many fragments grew without limit: here the message, all
      its fragments together, is capped at ``max_message_size`` (1009).
    - ``__del__`` wrote a close frame from the garbage collector.
    """

    def __init__(self, environ: dict[str, Any], stream: Stream, handler: WebSocketHandler) -> None:
        super().__init__(environ, stream, handler)
        self.max_message_size: int = handler.server.max_message_size
        """Largest message accepted, in payload bytes, all its fragments together."""
        self.failure_code: int | None = None
        """The close code this side failed the connection with (1002, 1007 or 1009), if it did."""
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
            self._fail(1009)
        except UnicodeError:
            self._fail(1007)
        except ProtocolError:
            self._fail(1002)
        except OSError:  # also WebSocketError: EOF, reset, timeout
            self.closed = True
        return None

    def _fail(self, code: int) -> None:
        self.failure_code = code
        self.close(code)

    def read_frame(self) -> tuple[Header, bytes]:
        header = Header.decode_header(self.stream)
        if header.flags:
            # RFC 6455 §5.2
            raise ProtocolError("reserved bits set, but no extension was negotiated")
        if not header.mask:
            # RFC 6455 §5.1
            raise ProtocolError("client frames must be masked")
        if header.opcode < 8:  # a data frame: count payload bytes of the message
            # Checked before the payload is read: fragments without FIN must not grow the
            # message past the limit, nor a length of 2**63 make the server allocate it.
            if self.message_bytes + header.length > self.max_message_size:
                raise _MessageTooBig(f"message over {self.max_message_size} bytes")
            self.message_bytes += header.length
        if not header.length:
            return header, b""
        payload = self.raw_read(header.length)
        if len(payload) != header.length:
            raise WebSocketError("unexpected EOF reading frame payload")
        return header, apply_mask(payload, header.mask)

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
            reason = message.encode("utf-8") if isinstance(message, str) else bytes(message or b"")
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


class ServerHandler(WebSocketHandler):  # type: ignore[misc]
    """
    gevent-websocket's handler, with refusals and these fixes:

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
    - a connection could stay idle forever before its upgrade: here it has
      ``handshake_timeout`` seconds to send a complete request.
    - a request with more than 100 header fields printed a traceback (gevent
      catches only ``ValueError`` quietly); here it is one log line and a 431.

    It runs under a server (see :class:`~wslocust.server.listener.Listener`) with these
    attributes: ``upgrade_gate`` (an :class:`~wslocust.server.refusals.UpgradeGate`: only
    upgrades to its path are upgraded, and those it refuses reach the application with
    :data:`REFUSED_KEY` set, to be answered with 503), ``max_message_size``,
    ``handshake_timeout`` and ``counters`` (a :class:`~wslocust.server.counters.ServerCounters`,
    where timed-out requests are counted).
    """

    _request_timer: gevent.Timeout | None = None

    def handle(self) -> None:
        # Without TCP_NODELAY, Nagle holds back an echo written while the
        # previous one is unacknowledged, and the client's delayed ACK turns
        # that into a 40 ms stall: pipelined messages measured 1,100 echoes/s.
        if self.socket.family in (socket.AF_INET, socket.AF_INET6):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()

    def handle_one_request(self) -> Any:
        # The request must be complete within handshake_timeout of the connection's accept, or of its
        # previous answer (keep-alive); read_request stops the clock, so an upgraded WebSocket never
        # times out. A deadline, not a socket timeout: a trickling client would reset the latter.
        timer = self._request_timer = gevent.Timeout(self.server.handshake_timeout)
        timer.start()
        try:
            return super().handle_one_request()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            counters: ServerCounters = self.server.counters
            counters.handshakes_timed_out += 1
            self.close_connection = True
            return None  # handle() closes the socket
        finally:
            timer.close()
            self._request_timer = None

    def read_request(self, raw_requestline: str) -> bool:
        result = cast(bool, super().read_request(raw_requestline))
        if self._request_timer is not None:
            self._request_timer.cancel()  # the whole request arrived in time
        return result

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes]:
        # gevent prints a traceback for any error that is not a ValueError, such as the
        # HTTPException of more than 100 header fields: one line instead, for every bad request.
        too_big = isinstance(ex, http.client.HTTPException)  # too many header fields, or one too long
        status, answer = ("431", _TOO_MANY_HEADERS) if too_big else ("400", _BAD_REQUEST)
        address = self.client_address
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) and len(address) >= 2 else str(address)
        reason = getattr(ex, "formatted_message", None) or str(ex) or type(ex).__name__
        # The request line is the client's text: tokens in its URL concealed, and one short line.
        reason = redact_text(reason.replace("\r", " ").replace("\n", " "))[:_MAX_LOGGED_REASON]
        logger.warning("wslocust serve: bad request from %s answered %s: %s", peer, status, reason)
        return status, answer

    @property
    def logger(self) -> logging.Logger:
        return logger

    def log_request(self) -> None:
        pass  # lean per-connection path; /stats tells what happened

    def run_application(self) -> None:
        gate: UpgradeGate = self.server.upgrade_gate
        environ = self.environ
        if environ.get("PATH_INFO") != gate.websocket_path or environ.get("HTTP_UPGRADE", "").lower() != "websocket":
            WSGIHandler.run_application(self)  # plain HTTP
        elif gate.should_refuse():
            environ[REFUSED_KEY] = True
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
        return [part.encode("utf-8") if isinstance(part, str) else part for part in result] if result else result

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

        self.websocket = ServerWebSocket(self.environ, Stream(self), self)
        self.environ.update({"wsgi.websocket_version": version, "wsgi.websocket": self.websocket})
        accept = base64.b64encode(hashlib.sha1((key + self.GUID).encode("ascii")).digest()).decode("ascii")
        self.start_response(
            "101 Switching Protocols",
            [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept),
            ],
        )
        return None
