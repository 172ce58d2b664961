"""
The gevent I/O layer: one WebSocket client connection on a gevent socket.

:class:`Connection` opens the TCP (and TLS) connection, performs the HTTP
upgrade, then moves bytes between the socket and the sans-I/O
:class:`~wslocust.codec.protocol.ClientProtocol`. Reads are buffered (one ``recvmsg``
per chunk of up to 64 KiB, never one per header byte); every message found in
a chunk carries the time the chunk arrived, which is what latency is measured
against: the kernel's receive time (:mod:`wslocust.transport.timestamps`), however
late the event loop got round to the read, or the read time where the kernel gave
none (counted in :attr:`Connection.timing`). ``wss://`` runs TLS in memory
over the TCP socket (:mod:`wslocust.transport.streams`) so that the stamps survive.

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

from wslocust.codec.deflate import Deflate, DeflateOffer, DeflateParameters
from wslocust.codec.protocol import OPEN, ClientProtocol, Close, Failure, Ping, Pong
from wslocust.codec.uri import WsURI
from wslocust.exceptions import ConnectionClosed, ConnectionFailed, connection_closed
from wslocust.transport.loop_reading import LoopReader, LoopReading
from wslocust.transport.opening import open_socket
from wslocust.transport.proxy import Proxy
from wslocust.transport.streams import RECEIVE_CHUNK, SocketStream, TlsStream
from wslocust.transport.timestamps import ReceiveTiming, TimingCounts, shared_clock_map
from wslocust.transport.tls import TlsFiles
from wslocust.transport.writing import FrameWriter

# Proxy is the type open() takes: importable from here, beside Connection.
__all__ = ["Connection", "Proxy"]

perf_counter = time.perf_counter

YIELD_EVERY = 65536
"""Bytes a receiving greenlet handles before it lets others run. gevent's ``recv`` returns
without switching while data is waiting, so a server that sends faster than the client
parses would otherwise hold the process: timers (``-t``), other connections and stops."""

MessageHandler = Callable[[Any, float], None]
"""Called with each received message (``str`` or ``bytes``) and the ``perf_counter()`` time it arrived."""
PongHandler = Callable[[bytes, float], None]
CloseHandler = Callable[[ConnectionClosed], None]


class Connection(LoopReader, FrameWriter):
    """
    One client connection: :meth:`open` it, then run :meth:`receive_forever`
    in one greenlet (it delivers messages to ``on_message`` until the
    connection closes) and send from any other.

    Callbacks run in the receiving greenlet and must not block. The time they get is
    the kernel's receive time of the read that completed the message, mapped to
    ``perf_counter()``'s clock; with ``kernel_timestamps=False``, on another system
    than Linux, or where the kernel gave no stamp, the time of the read.

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
        kernel_timestamps: bool = True,
        timing: TimingCounts | None = None,
        compression_counts: Any = None,
    ) -> None:
        self.uri = uri
        self.subprotocol: str | None = None
        """The subprotocol the server selected, if any."""
        self.compression: DeflateParameters | None = None
        """The permessage-deflate parameters the server agreed to, once open with an offer it accepted."""
        self._compression_counts = compression_counts  # where compressed messages' sizes are added (WsCounters)
        self.bytes_sent = 0
        """Wire bytes written: frames with their headers."""
        self.bytes_received = 0
        """Wire bytes read after the upgrade."""
        self.kernel_timestamps = kernel_timestamps
        """Whether to time what arrives from the kernel's receive timestamps (``SO_TIMESTAMPNS``)."""
        self.opened_at: float | None = None
        """``perf_counter()`` time the 101 response arrived (kernel time where there is one), once open."""
        self.timing: TimingCounts = timing if timing is not None else ReceiveTiming()
        """Counts the messages and pongs (and the 101) delivered with the kernel's receive time, and those
        delivered with their read time instead: the kernel gave no stamp (timestamps off, another system,
        a segment from before the option took effect, a clock step). Shared when given (a user passes
        its process's counters)."""
        self.opened_by_kernel = False
        """Whether :attr:`opened_at` is the kernel's receive time."""
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
        self._stream: SocketStream | TlsStream | None = None
        self._tls: TlsStream | None = None  # TLS in memory: records to encrypt and send in order
        self._leftover = b""
        # Frames from several greenlets (a task's send, the receiver's pong)
        # must not interleave when a send blocks half-way on a full buffer.
        self._send_lock = gevent.lock.Semaphore()
        self._closed: ConnectionClosed | None = None
        self._closed_event = gevent.event.Event()
        self._closing = False  # we started the close: no on_close callback
        self._in_loop: LoopReading | None = None  # received in the event loop (receive_in_loop)

    # Opening -----------------------------------------------------------------

    def open(
        self,
        *,
        timeout: float,
        headers: Sequence[tuple[str, str]] = (),
        subprotocols: Sequence[str] = (),
        origin: str | None = None,
        verify_tls: bool = True,
        tls_files: TlsFiles | None = None,
        source_address: tuple[str, int] | None = None,
        proxy: Proxy | None = None,
        compression: DeflateOffer | None = None,
    ) -> None:
        """
        Connect and upgrade.

        Args:
            timeout: seconds allowed for DNS, TCP connect, TLS and the upgrade together.
            headers: extra request headers (e.g. Authorization).
            subprotocols: offered in Sec-WebSocket-Protocol.
            origin: sent as the Origin header when given.
            verify_tls: verify the server certificate for ``wss://``.
            tls_files: the CA bundle to trust and the client certificate of mutual TLS, for ``wss://``.
            source_address: local (address, port) to bind before connecting.
            proxy: an HTTP proxy to tunnel through with CONNECT (RFC 9110 §9.3.6).
            compression: offer permessage-deflate (RFC 7692); when the server accepts, every message
                sent is compressed and :attr:`compression` says what was agreed.

        Raises:
            ConnectError: DNS, refused, TLS or another socket error.
            ConnectTimeout: not done within ``timeout``.
            HandshakeError: the server did not accept the upgrade.
            TlsFileError: a file of ``tls_files`` cannot be used.
        """
        upgraded = open_socket(
            self.uri,
            timeout=timeout,
            headers=headers,
            subprotocols=subprotocols,
            origin=origin,
            verify_tls=verify_tls,
            tls_files=tls_files,
            source_address=source_address,
            proxy=proxy,
            kernel_timestamps=self.kernel_timestamps,
            compression=compression,
        )
        self.subprotocol, self._leftover = upgraded.subprotocol, upgraded.leftover
        if upgraded.compression is not None:
            assert compression is not None
            counts = self._compression_counts
            self._protocol = ClientProtocol(
                max_message_size=self._max_message_size,
                validate_utf8=self._protocol.validates_utf8,
                deflate=Deflate(upgraded.compression, compression.level, self._max_message_size, counts),
            )
            self.compression = upgraded.compression
            if counts is not None:
                counts.deflate_connects += 1
        self.opened_at = upgraded.received_at
        self.opened_by_kernel = upgraded.timed_by_kernel
        if upgraded.timed_by_kernel:
            self.timing.received_timed_by_kernel += 1
        else:
            self.timing.received_timed_at_read += 1
        stream = self._stream = upgraded.stream
        self._tls = stream if isinstance(stream, TlsStream) else None
        sock = self._sock = stream.sock
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
        self._close(code, reason, lambda: self._closed_event.wait(timeout))

    def close_reading(self, code: int = 1000, reason: str = "") -> None:
        """
        :meth:`close` from a greenlet that reads nothing else: send the close frame, then receive
        and dispatch, in this greenlet, what the server sent before its close, until it ends TCP
        (at most ``close_timeout``). No greenlet of its own: a stop closes thousands at once.
        """
        self._close(code, reason, self.receive_forever)

    def _close(self, code: int, reason: str, wait_for_the_server: Callable[[], object]) -> None:
        self._closing = True
        if self._closed is not None or self._sock is None:
            self.abort()
            return
        try:
            self._write(self._protocol.send_close(code, reason))
            wait_for_the_server()
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
        self._stop_reading_in_loop()
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
        sock = self._sock
        stream = self._stream
        if sock is None or stream is None:
            return self._closed_error()
        receive = stream.receive
        deliver, flush = self._deliver, self._flush
        to_perf = shared_clock_map().to_perf
        tls = self._tls
        # Bytes read with the 101 response arrived with it.
        data, self._leftover = self._leftover, b""
        read_at = received_at = self.opened_at or perf_counter()
        by_kernel = self.opened_by_kernel
        closing_deadline = None
        budget = YIELD_EVERY
        try:
            while True:
                if data:
                    budget -= len(data)
                    deliver(data, received_at, by_kernel, flush)
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
                data, stamp = receive(RECEIVE_CHUNK)
                previous_read_at, read_at = read_at, perf_counter()
                if not data:
                    protocol.receive_eof()
                    break
                # One stamp per read, the last segment's: every message this read completed
                # arrived by then, and the last of them at that time.
                kernel_at = None if stamp is None else to_perf(stamp, read_at, previous_read_at)
                by_kernel = kernel_at is not None
                received_at = kernel_at if kernel_at is not None else read_at
                if tls is not None and tls.wants_write:  # reading queued records of its own (TLS 1.3)
                    self._flush_records()
        except OSError:
            protocol.receive_eof()
        self._lost()
        return self._closed_error()

    def _deliver(self, data: bytes, received_at: float, by_kernel: bool, flush: Callable[..., None]) -> None:
        """Parse the bytes of one read and hand on what they complete, all of it timed ``received_at``."""
        self.bytes_received += len(data)
        protocol = self._protocol
        on_message = self._on_message
        timing = self.timing
        for event in protocol.receive_data(data):
            kind = type(event)
            if kind is str or kind is bytes:
                if by_kernel:
                    timing.received_timed_by_kernel += 1
                else:
                    timing.received_timed_at_read += 1
                on_message(event, received_at)
            elif kind is Ping:
                flush(protocol)
            elif kind is Pong:
                if by_kernel:
                    timing.received_timed_by_kernel += 1
                else:
                    timing.received_timed_at_read += 1
                if self._on_pong is not None:
                    self._on_pong(event.data, received_at)  # type: ignore[union-attr]
            elif kind is Close or kind is Failure:
                flush(protocol)
                if isinstance(event, Failure):  # isinstance for the type checker: closes are rare
                    self._failure = event

    def _lost(self) -> None:
        """The TCP connection ended (EOF, reset or failed write)."""
        if self._closed is not None:
            return
        protocol = self._protocol
        code = protocol.close_code if protocol.close_code is not None else 1006
        self._stop_reading_in_loop()
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
        if self._in_loop is not None:
            self._report_closed_in_loop()
