"""
Receiving a connection in the event loop, without a greenlet: a part of
:class:`~wslocust.transport.connection.Connection` (a mixin).

A connection held by a greenlet costs that greenlet's stack and frames, ~8 KB, for as long as it is open.
Here the socket's read watcher makes the event loop call :meth:`LoopReader._read_in_loop` when bytes
arrive: one non-blocking read, dispatched as ``receive_forever`` dispatches (``Connection._deliver``), its
pongs and close replies written without waiting. The closing handshake is bounded by a timer; whoever
ends the connection (EOF, a reset, a failed write, :meth:`abort`), ``on_closed`` is called in the loop.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent

from wslocust.codec.protocol import OPEN, ClientProtocol
from wslocust.exceptions import ConnectionClosed
from wslocust.transport.streams import RECEIVE_CHUNK, SocketStream, TlsStream
from wslocust.transport.timestamps import shared_clock_map

__all__ = ["LoopCloseHandler", "LoopReader", "LoopReading"]

perf_counter = time.perf_counter

LoopCloseHandler = Callable[[ConnectionClosed, "Exception | None"], None]
"""Called in the event loop with why the connection closed and the exception a callback raised (or None)."""


class LoopReader:
    """Receiving in the event loop for :class:`~wslocust.transport.connection.Connection` (see the module)."""

    # Set by Connection.
    uri: Any
    opened_at: float | None
    opened_by_kernel: bool
    _sock: socket.socket | None
    _raw_socket: socket.socket | None
    _stream: SocketStream | TlsStream | None
    _tls: TlsStream | None
    _protocol: ClientProtocol
    _leftover: bytes
    _closing: bool
    _closed: ConnectionClosed | None
    _close_timeout: float
    _in_loop: LoopReading | None

    if TYPE_CHECKING:

        def _deliver(self, data: bytes, received_at: float, by_kernel: bool, flush: Callable[..., None]) -> None: ...

        def _flush_nowait(self, protocol: ClientProtocol) -> None: ...

        def _write(self, data: bytes, block: bool = True) -> int: ...

        def _lost(self) -> None: ...

        def _closed_error(self) -> ConnectionClosed: ...

        def abort(self) -> None: ...

    def receive_in_loop(self, on_closed: LoopCloseHandler) -> None:
        """
        :meth:`receive_forever` without a greenlet: a watcher of the socket makes the event loop read what
        arrives and dispatch it, and calls ``on_closed(why, error)`` once the connection is closed (``error``:
        the exception a callback raised, which aborted the connection, or None). Returns at once.

        A held connection then costs no greenlet (its stack and frames: ~8 KB). Everything it calls runs
        in the event loop and must never block: ``on_message``, ``on_pong``, ``on_closed``. Plain TCP only
        (a ``ws://`` connection, through a proxy or not): see :attr:`receivable_in_loop`.
        """
        if not self.receivable_in_loop:
            raise ValueError(f"{self.uri}: only plain TCP connections are received in the event loop")
        reading = self._in_loop = LoopReading(on_closed, self._stream.receiver_nowait())  # type: ignore[union-attr]
        if self._sock is None:  # closed before it was handed over
            gevent.get_hub().loop.run_callback(on_closed, self._closed_error(), None)
            return
        reading.read_at = self.opened_at or perf_counter()
        data, self._leftover = self._leftover, b""
        if data:  # bytes read with the 101 response arrived with it
            self._read_in_loop_guarded(data, reading.read_at, self.opened_by_kernel)
            if self._sock is None:
                return
        reading.watcher = gevent.get_hub().loop.io(self._sock.fileno(), 1)
        reading.watcher.start(self._read_in_loop)

    @property
    def receivable_in_loop(self) -> bool:
        """Whether :meth:`receive_in_loop` can receive this connection: open, over plain TCP."""
        return self._raw_socket is not None and self._tls is None and self._stream is not None

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """
        :meth:`close` without waiting, for a connection received in the loop: send the close frame (never
        waits) and give the server ``close_timeout`` to end TCP; ``on_closed`` says when it is done.
        """
        self._closing = True
        if self._closed is not None or self._sock is None:
            self.abort()
            return
        try:
            self._write(self._protocol.send_close(code, reason), block=False)
        except ConnectionClosed:
            return  # lost while sending: finished already
        self._arm_close_deadline()

    def _read_in_loop(self) -> None:
        """One read of a socket received in the loop, when the loop says it is readable."""
        reading = self._in_loop
        if reading is None or self._sock is None:
            return
        try:
            data, stamp = reading.receive(RECEIVE_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data, stamp = b"", None
        previous_read_at = reading.read_at
        read_at = reading.read_at = perf_counter()
        if not data:
            self._protocol.receive_eof()
            self._lost()
            return
        kernel_at = None if stamp is None else shared_clock_map().to_perf(stamp, read_at, previous_read_at)
        self._read_in_loop_guarded(data, kernel_at if kernel_at is not None else read_at, kernel_at is not None)

    def _read_in_loop_guarded(self, data: bytes, received_at: float, by_kernel: bool) -> None:
        try:
            self._deliver(data, received_at, by_kernel, self._flush_nowait)
        except Exception as exc:  # noqa: BLE001 - a callback's bug: handed to on_closed, the event loop goes on
            if self._in_loop is not None:
                self._in_loop.error = exc
            self.abort()
            return
        if self._protocol.state is not OPEN and self._closed is None:
            self._arm_close_deadline()  # closing (§7.1.1: the server ends TCP first), but not forever

    def _arm_close_deadline(self) -> None:
        reading = self._in_loop
        if reading is not None and reading.deadline is None:
            reading.deadline = gevent.get_hub().loop.timer(self._close_timeout)
            reading.deadline.start(self._close_overdue)

    def _close_overdue(self) -> None:
        if self._closed is None:
            self._protocol.receive_eof()
            self._lost()

    def _report_closed_in_loop(self) -> None:
        """The connection is closed: tell ``on_closed``."""
        if self._in_loop is not None:
            self._stop_reading_in_loop()
            # From the loop, never inside whoever aborted: it may be a greenlet that goes on afterwards.
            gevent.get_hub().loop.run_callback(self._tell_closed, self._in_loop)

    def _tell_closed(self, reading: LoopReading) -> None:
        # The error read now: a callback may raise after a failed write already closed the connection.
        reading.on_closed(self._closed_error(), reading.error)

    def _stop_reading_in_loop(self) -> None:
        """Stop the loop's watcher and timer of this connection, before its socket closes."""
        reading = self._in_loop
        if reading is None:
            return
        for watcher in (reading.watcher, reading.deadline):
            if watcher is not None:
                watcher.close()
        reading.watcher = reading.deadline = None


class LoopReading:
    """The state of a connection received in the event loop (:meth:`Connection.receive_in_loop`)."""

    __slots__ = ("deadline", "error", "on_closed", "read_at", "receive", "watcher")

    def __init__(self, on_closed: LoopCloseHandler, receive: Callable[[int], tuple[bytes, float | None]]) -> None:
        self.on_closed = on_closed
        self.receive = receive
        self.read_at = 0.0
        self.watcher: Any = None  # the socket's read watcher, while reading
        self.deadline: Any = None  # the timer of a closing handshake
        self.error: Exception | None = None
