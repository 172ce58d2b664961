"""
The gevent I/O layer: one WebSocket client connection on a gevent socket.

:class:`Connection` opens the TCP (and TLS) connection, performs the HTTP
upgrade, then moves bytes between the socket and the sans-I/O
:class:`~wslocust.codec.protocol.ClientProtocol`. Reads are buffered (one ``recv``
per chunk of up to 64 KiB, never one per header byte); every message found in
a chunk carries the time the chunk arrived, which is what latency is measured
against.

:mod:`wslocust.transport.opening` does the opening (TCP, proxy tunnel, TLS,
upgrade). Those two modules are the only ones that touch a WebSocket's socket,
and the only places where low-level errors (``socket.gaierror``,
``ssl.SSLError``, resets, timeouts) are translated into the
:mod:`wslocust.exceptions` tree: opening errors there, those of an open
connection here.

Why our own upgrade and framing instead of websocket-client's: websocket-client
reads the 101 response one byte per ``recv`` call, cannot hand bytes that
follow the headers to another frame parser, and validates UTF-8 in pure
Python; ``benchmarks/echo_throughput.py`` measures this layer against it side
by side (figures in ``benchmarks/README.md``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import gevent.event
import gevent.lock
from gevent import socket as gsocket

from wslocust.codec.protocol import OPEN, ClientProtocol, Close, Failure, Ping, Pong
from wslocust.codec.uri import WsURI
from wslocust.exceptions import ConnectionClosed, ConnectionFailed, connection_closed
from wslocust.transport.opening import open_socket
from wslocust.transport.proxy import Proxy

# Proxy is the type open() takes: importable from here, beside Connection.
__all__ = ["Connection", "Proxy"]

perf_counter = time.perf_counter

RECEIVE_CHUNK = 65536

YIELD_EVERY = 65536
"""Bytes a receiving greenlet handles before it lets others run. gevent's ``recv`` returns
without switching while data is waiting, so a server that sends faster than the client
parses would otherwise hold the process: timers (``-t``), other connections and stops."""

MessageHandler = Callable[[Any, float], None]
"""Called with each received message (``str`` or ``bytes``) and the ``perf_counter()`` time it arrived."""
PongHandler = Callable[[bytes, float], None]
CloseHandler = Callable[[ConnectionClosed], None]


class Connection:
    """
    One client connection: :meth:`open` it, then run :meth:`receive_forever`
    in one greenlet (it delivers messages to ``on_message`` until the
    connection closes) and send from any other.

    Callbacks run in the receiving greenlet and must not block.

    ``close_timeout`` bounds each closing handshake: once a close frame was
    received, or we failed the connection because the server broke the
    protocol, the server has that many seconds to end TCP before the socket
    is dropped, so that a server that never closes cannot hold a user.
    """

    def __init__(
        self,
        uri: WsURI,
        *,
        on_message: MessageHandler,
        on_pong: PongHandler | None = None,
        on_close: CloseHandler | None = None,
        max_message_size: int | None = 2**20,
        validate_utf8: bool = True,
        close_timeout: float = 2.0,
    ) -> None:
        self.uri = uri
        self.subprotocol: str | None = None
        """The subprotocol the server selected, if any."""
        self.bytes_sent = 0
        """Wire bytes written: frames with their headers."""
        self.bytes_received = 0
        """Wire bytes read after the upgrade."""
        self._on_message = on_message
        self._on_pong = on_pong
        self._on_close = on_close
        self._protocol = ClientProtocol(max_message_size=max_message_size, validate_utf8=validate_utf8)
        self._max_message_size = max_message_size
        # Once a close frame was sent or received, how long the server has to end TCP.
        self._close_timeout = close_timeout
        self._failure: Failure | None = None  # we failed the connection (RFC 6455 §7.1.7)
        self._sock: socket.socket | None = None
        self._raw_socket: socket.socket | None = None
        self._leftover = b""
        # Frames from several greenlets (a task's send, the receiver's pong)
        # must not interleave when a send blocks half-way on a full buffer.
        self._send_lock = gevent.lock.Semaphore()
        self._closed: ConnectionClosed | None = None
        self._closed_event = gevent.event.Event()
        self._closing = False  # we started the close: no on_close callback

    # Opening -----------------------------------------------------------------

    def open(
        self,
        *,
        timeout: float,
        headers: Sequence[tuple[str, str]] = (),
        subprotocols: Sequence[str] = (),
        origin: str | None = None,
        verify_tls: bool = True,
        source_address: tuple[str, int] | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        """
        Connect and upgrade.

        Args:
            timeout: seconds allowed for DNS, TCP connect, TLS and the upgrade together.
            headers: extra request headers (e.g. Authorization).
            subprotocols: offered in Sec-WebSocket-Protocol.
            origin: sent as the Origin header when given.
            verify_tls: verify the server certificate for ``wss://``.
            source_address: local (address, port) to bind before connecting.
            proxy: an HTTP proxy to tunnel through with CONNECT (RFC 9110 §9.3.6).

        Raises:
            ConnectError: DNS, refused, TLS or another socket error.
            ConnectTimeout: not done within ``timeout``.
            HandshakeError: the server did not accept the upgrade.
        """
        sock, self.subprotocol, self._leftover = open_socket(
            self.uri,
            timeout=timeout,
            headers=headers,
            subprotocols=subprotocols,
            origin=origin,
            verify_tls=verify_tls,
            source_address=source_address,
            proxy=proxy,
        )
        self._sock = sock
        # The plain (not TLS) socket underneath gevent's: _write() sends without gevent's wrapper first.
        self._raw_socket = sock._sock if type(sock) is gsocket.socket else None  # type: ignore[attr-defined]

    # Sending -----------------------------------------------------------------

    def send_text(self, data: str | bytes, *, block: bool = True) -> int:
        """
        Send a text message; ``bytes`` must already be UTF-8. Returns the wire bytes written.

        With ``block=False`` it never waits (it may run in an event loop callback): what the
        socket does not take at once is sent by a greenlet of its own, in order.
        """
        return self._write(self._protocol.send_text(data), block)

    def send_binary(self, data: bytes, *, block: bool = True) -> int:
        """Send a binary message (``block`` as for :meth:`send_text`). Returns the wire bytes written."""
        return self._write(self._protocol.send_binary(data), block)

    def send_ping(self, data: bytes = b"") -> int:
        """Send a ping (RFC 6455 §5.5.2); the pong goes to ``on_pong``."""
        return self._write(self._protocol.send_ping(data))

    def _write(self, data: bytes, block: bool = True) -> int:
        sock = self._sock
        if sock is None or self._closed is not None:
            raise self._closed_error()
        lock = self._send_lock
        try:
            if lock.locked():  # another greenlet is blocked half-way through a frame: queue behind it
                if not block:
                    gevent.spawn(self._write_rest, data, False)
                else:
                    with lock:
                        sock.sendall(data)
            else:
                # One non-blocking send() is enough almost always. Only a partial send
                # takes the lock (the rest may block); gevent's own send() and sendall()
                # would cost an extra system call per message.
                raw = self._raw_socket
                if raw is None and not block:
                    # TLS may need to wait even for a first byte: let a greenlet write it all.
                    lock.acquire()
                    gevent.spawn(self._write_rest, data, True)
                    sent = len(data)
                elif raw is None:
                    sent = sock.send(data)
                else:
                    try:
                        sent = raw.send(data)
                    except BlockingIOError:
                        sent = 0
                if sent < len(data):
                    rest = memoryview(data)[sent:]
                    if not block:
                        lock.acquire()  # free: taken now so that later frames queue behind this one
                        gevent.spawn(self._write_rest, rest, True)
                    else:
                        with lock:
                            sock.sendall(rest)
        except OSError:
            self._lost()
            raise self._closed_error() from None
        self.bytes_sent += len(data)
        return len(data)

    def _write_rest(self, data: bytes | memoryview, locked: bool) -> None:
        """Send what a non-blocking write could not, in a greenlet of its own."""
        lock = self._send_lock
        if not locked:
            lock.acquire()
        try:
            sock = self._sock
            if sock is not None:
                sock.sendall(data)
        except OSError:
            self._lost()
        finally:
            lock.release()

    # Closing -----------------------------------------------------------------

    @property
    def closed(self) -> ConnectionClosed | None:
        """Why the connection closed, or None while it is open."""
        return self._closed

    def _closed_error(self) -> ConnectionClosed:
        # A fresh instance per raise: re-raising one instance grows its traceback.
        closed = self._closed
        return type(closed)(closed.code, closed.reason) if closed else connection_closed(1006)

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the connection is closed; True if it is."""
        return self._closed_event.wait(timeout)

    def close(self, code: int = 1000, reason: str = "", timeout: float = 2.0) -> None:
        """
        Close cleanly (RFC 6455 §7.1.2): send a close frame, wait up to
        ``timeout`` for the server's close and TCP close, then release the socket.
        Closing a closed connection does nothing.
        """
        self._closing = True
        if self._closed is not None or self._sock is None:
            self.abort()
            return
        try:
            self._write(self._protocol.send_close(code, reason))
            self._closed_event.wait(timeout)
        except ConnectionClosed:
            pass
        finally:
            self.abort()  # also when the closing greenlet is killed while it waits

    def abort(self) -> None:
        """
        Drop the TCP connection without a close handshake. A greenlet blocked
        in :meth:`receive_forever` wakes up and returns.
        """
        self._closing = True
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        if self._closed is None:
            self._finish(connection_closed(1006))

    # Receiving ---------------------------------------------------------------

    def receive_forever(self) -> ConnectionClosed:
        """
        Receive and dispatch until the connection closes; return why it closed.

        Run it in exactly one greenlet per connection, after :meth:`open`.
        """
        protocol = self._protocol
        receive_data = protocol.receive_data
        on_message = self._on_message
        sock = self._sock
        if sock is None:
            return self._closed_error()
        recv = sock.recv
        data, self._leftover = self._leftover, b""
        closing_deadline = None
        budget = YIELD_EVERY
        try:
            while True:
                if data:
                    received_at = perf_counter()
                    self.bytes_received += len(data)
                    budget -= len(data)
                    for event in receive_data(data):
                        kind = type(event)
                        if kind is str or kind is bytes:
                            on_message(event, received_at)
                        elif kind is Ping:
                            self._flush(protocol)
                        elif kind is Pong:
                            if self._on_pong is not None:
                                self._on_pong(event.data, received_at)  # type: ignore[union-attr]
                        elif kind is Close or kind is Failure:
                            self._flush(protocol)
                            if isinstance(event, Failure):  # isinstance for the type checker: closes are rare
                                self._failure = event
                if protocol.state is not OPEN:
                    # Closing (§7.1.1: the server ends TCP first), but not forever.
                    if closing_deadline is None:
                        closing_deadline = perf_counter() + self._close_timeout
                    remaining = closing_deadline - perf_counter()
                    if remaining <= 0:
                        protocol.receive_eof()
                        break
                    sock.settimeout(remaining)
                if budget <= 0:
                    budget = YIELD_EVERY
                    gevent.sleep(0)
                data = recv(RECEIVE_CHUNK)
                if not data:
                    protocol.receive_eof()
                    break
        except OSError:
            protocol.receive_eof()
        self._lost()
        return self._closed_error()

    def _flush(self, protocol: ClientProtocol) -> None:
        """Write what the protocol queued on its own: pongs, close replies."""
        pending = protocol.data_to_send()
        if pending and self._closed is None:
            try:
                with self._send_lock:
                    self._sock.sendall(pending)  # type: ignore[union-attr]
                self.bytes_sent += len(pending)
            except OSError:
                pass

    def _lost(self) -> None:
        """The TCP connection ended (EOF, reset or failed write)."""
        if self._closed is not None:
            return
        protocol = self._protocol
        code = protocol.close_code if protocol.close_code is not None else 1006
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        failure = self._failure
        if failure is None:
            self._finish(connection_closed(code, protocol.close_reason))
        elif failure.code == 1009 and self._max_message_size is not None:
            self._finish(ConnectionFailed(1009, f"over the {self._max_message_size:,}-byte max_message_size"))
        else:
            self._finish(ConnectionFailed(failure.code, failure.reason))

    def _finish(self, closed: ConnectionClosed) -> None:
        self._closed = closed
        self._closed_event.set()
        if not self._closing and self._on_close is not None:
            self._on_close(closed)
