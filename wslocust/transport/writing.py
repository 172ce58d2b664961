"""
Writing a connection's frames: in order, without waiting where the caller cannot, TLS records included.

:class:`FrameWriter` is a part of :class:`~wslocust.transport.connection.Connection` (a mixin): frames from
several greenlets (a task's send, the receiver's pong, a background writer) must not interleave when a send
stops half-way on a full socket buffer, and TLS records must reach the wire in the order they were encrypted
(each carries a sequence number). One send lock orders both: whoever holds it sends what was encrypted
meanwhile before letting go (:meth:`FrameWriter._send_encrypted`).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import gevent
import gevent.lock

from wslocust.codec.protocol import ClientProtocol
from wslocust.exceptions import ConnectionClosed
from wslocust.transport.streams import TlsStream

__all__ = ["FrameWriter"]


class FrameWriter:
    """Sending for :class:`~wslocust.transport.connection.Connection` (see the module's docstring)."""

    # Set by Connection.
    bytes_sent: int
    _sock: socket.socket | None
    _raw_socket: socket.socket | None
    _tls: TlsStream | None
    _send_lock: gevent.lock.Semaphore
    _closed: ConnectionClosed | None

    if TYPE_CHECKING:

        def _lost(self) -> None: ...

        def _closed_error(self) -> ConnectionClosed: ...

    def _write(self, data: bytes, block: bool = True) -> int:
        sock = self._sock
        if sock is None or self._closed is not None:
            raise self._closed_error()
        lock = self._send_lock
        size = len(data)
        tls = self._tls
        try:
            if tls is not None:
                # Records leave in the order they are encrypted: whoever holds the send lock sends
                # these after its own before letting go; with the lock free, they leave now.
                tls.encrypt(data)
                if not lock.locked():
                    data = tls.encrypted()
                elif not block:
                    self.bytes_sent += size
                    return size
            if lock.locked():  # another greenlet is blocked half-way through a frame: queue behind it
                if tls is not None:  # the holder sent ours; wait for it to be done, as sendall() would
                    with lock:
                        self._send_encrypted()
                elif not block:
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
                            self._send_encrypted()
        except OSError:
            self._lost()
            raise self._closed_error() from None
        self.bytes_sent += size
        return size

    def _send_encrypted(self) -> None:
        """With the send lock held: send the TLS records encrypted meanwhile by others, before letting go."""
        tls = self._tls
        sock = self._sock
        while tls is not None and sock is not None:
            records = tls.encrypted()
            if not records:
                return
            sock.sendall(records)

    def _write_rest(self, data: bytes | memoryview, locked: bool) -> None:
        """Send what a non-blocking write could not, in a greenlet of its own."""
        lock = self._send_lock
        if not locked:
            lock.acquire()
        try:
            sock = self._sock
            if sock is not None:
                sock.sendall(data)
                self._send_encrypted()
        except OSError:
            self._lost()
        finally:
            lock.release()

    def _flush(self, protocol: ClientProtocol) -> None:
        """Write what the protocol queued on its own: pongs, close replies."""
        pending = protocol.data_to_send()
        if pending and self._closed is None:
            try:
                with self._send_lock:
                    if self._tls is not None:
                        self._tls.encrypt(pending)
                        self._send_encrypted()
                    else:
                        self._sock.sendall(pending)  # type: ignore[union-attr]
                self.bytes_sent += len(pending)
            except OSError:
                pass

    def _flush_nowait(self, protocol: ClientProtocol) -> None:
        """:meth:`_flush` that never waits, for a reader in the event loop: the rest goes as ``_write`` sends it."""
        pending = protocol.data_to_send()
        if pending and self._closed is None:
            try:
                self._write(pending, block=False)
            except ConnectionClosed:
                pass

    def _flush_records(self) -> None:
        """Send the TLS records reading queued, unless a writer holding the send lock sends them."""
        if not self._send_lock.locked():
            try:
                with self._send_lock:
                    self._send_encrypted()
            except OSError:
                pass
