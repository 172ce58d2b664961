"""
Byte streams under a WebSocket: a TCP socket, or TLS run over one in memory, read with kernel receive timestamps.

:class:`SocketStream` reads a gevent socket with ``recvmsg()`` when the kernel stamps what it receives
(:mod:`wslocust.transport.timestamps`), with ``recv()`` otherwise. :class:`TlsStream` runs TLS through an
:class:`ssl.SSLObject` and two :class:`ssl.MemoryBIO` over a :class:`SocketStream`, instead of wrapping the
socket in an :class:`ssl.SSLSocket`: an ``SSLSocket`` reads the socket itself, with ``recv()``, and the
stamps would be lost; here the raw bytes are read (stamps included), then decrypted.

Records are encrypted into the outgoing BIO in the order ``write`` is called, and TLS requires them to reach
the wire in that order: whoever writes them (:class:`~wslocust.transport.connection.Connection`) takes them
out of :meth:`TlsStream.encrypted` and sends them under its send lock, emptying the BIO before releasing it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable

from wslocust.exceptions import TLSError
from wslocust.transport.timestamps import ANCILLARY_SIZE, LAYOUTS, enable_receive_timestamps, kernel_time

__all__ = ["RECEIVE_CHUNK", "SocketStream", "TlsStream", "stamp_of"]

RAW_CHUNK = 65536

RECEIVE_CHUNK = 65536
"""Bytes asked of each read of a connection's plaintext: one read per chunk, never one per header byte."""


def stamp_of(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    """The kernel's receive time in a read's ancillary data (one message: the only option that adds any is ours)."""
    _, kind, stamp = ancdata[0]
    layout = LAYOUTS.get(kind)
    if layout is not None and len(stamp) == layout.size:
        seconds, nanoseconds = layout.unpack(stamp)
        if seconds:
            return seconds + nanoseconds * 1e-9
    return kernel_time(ancdata)


class SocketStream:
    """
    A connected gevent socket (TCP, or an :class:`ssl.SSLSocket` when kernel timestamps are off).

    Args:
        sock: the socket, connected.
        timestamps: ask the kernel for receive timestamps (TCP sockets only: an ``SSLSocket`` reads
            its socket itself).
    """

    def __init__(self, sock: socket.socket, timestamps: bool) -> None:
        self.sock = sock
        self.timestamps = timestamps and enable_receive_timestamps(sock)
        """Whether reads return the kernel's receive time."""
        # gevent's own socket (not an SSLSocket, nor a test's stand-in): read the one under it directly.
        direct = self.timestamps and hasattr(sock, "_read_event") and hasattr(sock, "_sock")
        self.receive: Callable[[int], tuple[bytes, float | None]] = (
            self._direct_receiver() if direct else self._receive_stamped if self.timestamps else self._receive_unstamped
        )
        """
        ``receive(size)``: wait for bytes and read up to ``size`` of them. Returns the bytes (empty at end of
        stream) and the kernel's receive time of the last of them, in CLOCK_REALTIME seconds, or None when the
        kernel gave none. Chosen once here: reads are the hot path.
        """

    def _receive_stamped(self, size: int) -> tuple[bytes, float | None]:
        data, ancdata, _, _ = self.sock.recvmsg(size, ANCILLARY_SIZE)
        return data, kernel_time(ancdata) if ancdata else None

    def _direct_receiver(self) -> Callable[[int], tuple[bytes, float | None]]:
        # The socket under gevent's, non-blocking, called directly and waited for as gevent's own recvmsg()
        # does; everything looked up once (gevent's generic wrapper costs about 0.4 µs more per read).
        sock = self.sock
        recvmsg = sock._sock.recvmsg  # type: ignore[attr-defined]
        wait, read_event = sock._wait, sock._read_event  # type: ignore[attr-defined]
        drained = False

        def receive(size: int) -> tuple[bytes, float | None]:
            # A read shorter than asked for emptied the socket: the next one would only find it empty
            # (an EAGAIN raised and caught, a wasted system call, per message in a closed loop), so it
            # waits first.
            nonlocal drained
            if drained:
                wait(read_event)
            while True:
                try:
                    data, ancdata, _, _ = recvmsg(size, ANCILLARY_SIZE)
                    break
                except BlockingIOError:
                    pass
                # Waited for outside the except clause: inside it, every idle connection would keep
                # its BlockingIOError and traceback alive (and chain them to the GreenletExit of its stop).
                wait(read_event)  # raises socket.timeout after the socket's timeout, EBADF when closed
            drained = len(data) < size
            return data, stamp_of(ancdata) if ancdata else None

        return receive

    def receiver_nowait(self) -> Callable[[int], tuple[bytes, float | None]]:
        """
        ``receive(size)`` that never waits, for a reader in an event loop callback: it raises
        :exc:`BlockingIOError` when nothing has arrived. A plain gevent TCP socket only.
        """
        raw = self.sock._sock  # type: ignore[attr-defined]  # non-blocking: gevent's own socket waits for it
        if not self.timestamps:
            recv = raw.recv
            return lambda size: (recv(size), None)
        recvmsg = raw.recvmsg

        def receive(size: int) -> tuple[bytes, float | None]:
            data, ancdata, _, _ = recvmsg(size, ANCILLARY_SIZE)
            return data, stamp_of(ancdata) if ancdata else None

        return receive

    def _receive_unstamped(self, size: int) -> tuple[bytes, float | None]:
        return self.sock.recv(size), None

    def send_all(self, data: bytes) -> None:
        """Write all of ``data``, waiting in the event loop while the socket's buffer is full."""
        self.sock.sendall(data)


class TlsStream:
    """
    TLS over a :class:`SocketStream`, in memory.

    Args:
        raw: the TCP stream (with kernel timestamps, if it has them).
        context: the client context (:func:`wslocust.transport.tls.ssl_context`): verification and ALPN.
        server_hostname: the name to verify and to send as SNI (none is sent for an IP address).
    """

    def __init__(self, raw: SocketStream, context: ssl.SSLContext, server_hostname: str) -> None:
        self.raw = raw
        self.sock = raw.sock
        self.timestamps = raw.timestamps
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=server_hostname)
        self._ended = False
        """The server's close_notify (or an abrupt TLS end) was read: nothing more will decrypt. A peer
        that ends TLS properly (asyncio's, nginx) may keep TCP open until ours comes, so the end must
        not wait for TCP's when the close_notify came in the same read as the last records."""

    def handshake(self) -> None:
        """
        The TLS handshake, waiting in the event loop.

        Raises:
            ssl.SSLError: the handshake failed (ssl.SSLCertVerificationError: the certificate).
            TLSError: the server closed the connection during it.
        """
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_encrypted()
                data, _ = self.raw.receive(RAW_CHUNK)
                if not data:
                    raise TLSError("TLS handshake failed: the server closed the connection")
                self._incoming.write(data)
        self._send_encrypted()

    def _send_encrypted(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self.raw.send_all(pending)

    # Receiving ---------------------------------------------------------------

    def receive(self, size: int) -> tuple[bytes, float | None]:
        """
        Wait for plaintext and return all that the bytes read so far decrypt to.

        A record may span several reads, a read may hold several records: the plaintext of the records a read
        completed carries that read's kernel time (when the last byte the message needed arrived); the start
        of a record waits in the incoming BIO for the read that completes it.

        Returns:
            Plaintext (empty at the end of the stream: close_notify or TCP end) and the kernel's receive
            time of the read that completed it, in CLOCK_REALTIME seconds, or None.
        """
        tls = self._tls
        while True:
            if self._ended:
                return b"", None
            data, stamp = self.raw.receive(RAW_CHUNK)
            if not data:
                return b"", stamp
            self._incoming.write(data)
            plaintext: list[bytes] = []
            try:
                while True:
                    chunk = tls.read(size)
                    if not chunk:  # after close_notify, read() returns b"" for ever instead of raising
                        self._ended = True
                        break
                    plaintext.append(chunk)
            except ssl.SSLWantReadError:
                pass
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):  # close_notify, or an abrupt end
                self._ended = True
            if not plaintext and self._ended:
                return b"", stamp
            if plaintext:
                return b"".join(plaintext) if len(plaintext) > 1 else plaintext[0], stamp

    @property
    def wants_write(self) -> bool:
        """True when reading queued records of its own (a TLS 1.3 key update answer): send :meth:`encrypted`."""
        return self._outgoing.pending > 0

    # Sending -----------------------------------------------------------------

    def encrypt(self, data: bytes | memoryview) -> None:
        """Encrypt ``data`` into the outgoing records, after everything encrypted before. Never waits."""
        self._tls.write(data)

    def encrypted(self) -> bytes:
        """Take every record encrypted so far and not yet taken, in order."""
        return self._outgoing.read()

    def send_all(self, data: bytes) -> None:
        """Encrypt and write ``data`` (during the upgrade, when no other greenlet writes)."""
        self.encrypt(data)
        self._send_encrypted()
