"""
The gevent I/O layer: one WebSocket client connection on a gevent socket.

:class:`Connection` opens the TCP (and TLS) connection, performs the HTTP
upgrade, then moves bytes between the socket and the sans-I/O
:class:`~wslocust.codec.protocol.ClientProtocol`. Reads are buffered (one ``recv``
per chunk of up to 64 KiB, never one per header byte); every message found in
a chunk carries the time the chunk arrived, which is what latency is measured
against.

This is the only module that touches sockets, and the only place where
low-level errors (``socket.gaierror``, ``ssl.SSLError``, resets, timeouts) are
translated into the :mod:`wslocust.exceptions` tree.

Why our own upgrade and framing instead of websocket-client's: websocket-client
reads the 101 response one byte per ``recv`` call, cannot hand bytes that
follow the headers to another frame parser, and validates UTF-8 in pure
Python; ``benchmarks/echo_throughput.py`` measures this layer against it side
by side (figures in ``benchmarks/README.md``).
"""

from __future__ import annotations

import base64
import errno
import logging
import socket
import ssl
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import gevent
import gevent.event
import gevent.lock
from gevent import socket as gsocket

from wslocust.codec import handshake
from wslocust.codec.protocol import OPEN, ClientProtocol, Close, Failure, Ping, Pong
from wslocust.codec.uri import WsURI, redact_uri
from wslocust.exceptions import (
    ConfigurationError,
    ConnectError,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionRefused,
    ConnectTimeout,
    DNSError,
    TLSError,
    WsLocustError,
    connection_closed,
)
from wslocust.transport.addresses import connect_from

__all__ = ["Connection", "Proxy", "ssl_context"]

logger = logging.getLogger(__name__)

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


class Proxy(NamedTuple):
    """An HTTP proxy that WebSocket connections tunnel through with CONNECT."""

    host: str
    port: int
    authorization: str | None
    """The Proxy-Authorization header value, from credentials in the proxy URL."""

    @classmethod
    def from_url(cls, url: str) -> Proxy:
        """
        Parse ``http://[user:password@]host:port``.

        Raises:
            ConfigurationError: not an http:// URL with a host.
        """
        try:
            parsed = urllib.parse.urlsplit(url)
            port = parsed.port or 8080
        except ValueError:  # a port out of range, unbalanced [IPv6] brackets
            parsed, port = urllib.parse.urlsplit(""), -1
        if parsed.scheme != "http" or not parsed.hostname or port < 1:
            raise ConfigurationError(f"proxy {redact_uri(url)!r} is not valid; use http://[user:password@]host:port")
        authorization = None
        if parsed.username is not None:
            credentials = f"{urllib.parse.unquote(parsed.username)}:{urllib.parse.unquote(parsed.password or '')}"
            authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
        return cls(parsed.hostname, port, authorization)

    def __repr__(self) -> str:
        # The authorization is a credential, merely base64-encoded.
        return f"Proxy(host={self.host!r}, port={self.port}, authorization={'***' if self.authorization else None})"


# One SSL context per process and verification mode: creating one per
# connection costs ~1 ms and ~100 KB each, which matters at 10K connections.
_ssl_contexts: dict[bool, ssl.SSLContext] = {}


def ssl_context(verify: bool = True) -> ssl.SSLContext:
    """
    Return the process-wide client SSL context.

    Args:
        verify: verify the server certificate and host name (the default).
            ``False`` accepts any certificate and logs a warning once.
    """
    context = _ssl_contexts.get(verify)
    if context is None:
        context = ssl.create_default_context()
        if not verify:
            logger.warning(
                "TLS certificate verification is OFF (WebSocketUser.verify_tls = False): "
                "any server, including an impostor, is accepted"
            )
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _ssl_contexts[verify] = context
    return context


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
        uri = self.uri
        if uri.authorization is not None and not any(name.lower() == "authorization" for name, _ in headers):
            headers = [*headers, ("Authorization", uri.authorization)]  # ws://user:password@host/
        try:
            with gevent.Timeout(timeout, False):
                if proxy is None:
                    sock = self._connect_tcp(uri.host, uri.port, source_address)
                else:
                    sock = self._connect_tcp(proxy.host, proxy.port, source_address)
                try:
                    if proxy is not None:
                        self._tunnel(sock, proxy)
                    if uri.secure:
                        sock = ssl_context(verify_tls).wrap_socket(sock, server_hostname=uri.host)
                    self._leftover = self._upgrade(sock, headers, subprotocols, origin)
                except BaseException:
                    sock.close()
                    raise
                self._sock = sock
                # The plain (not TLS) socket underneath gevent's: _write() sends without
                # gevent's wrapper first.
                self._raw_socket = sock._sock if type(sock) is gsocket.socket else None
            if self._sock is None:
                raise ConnectTimeout(f"no connection within {timeout:g} s (connect timeout)")
        except WsLocustError:
            raise
        except ssl.SSLCertVerificationError as exc:
            raise TLSError(f"TLS certificate verification failed: {exc.verify_message}") from None
        except ssl.SSLError as exc:
            raise TLSError(f"TLS handshake failed: {exc.reason or exc}") from None
        except socket.gaierror:
            # Through a proxy, only the proxy's name is looked up here (the proxy resolves the target's).
            raise DNSError(f"DNS lookup failed for {f'proxy {proxy.host}' if proxy else uri.host}") from None
        except ConnectionRefusedError:
            refused_by = f"proxy {proxy.host}:{proxy.port}" if proxy else uri.host_header
            raise ConnectionRefused(f"connection refused by {refused_by}") from None
        except TimeoutError:
            raise ConnectTimeout(f"no connection within {timeout:g} s (connect timeout)") from None
        except OSError as exc:
            raise ConnectError(f"connect to {uri.host_header} failed: {_os_error_text(exc)}") from None

    @staticmethod
    def _connect_tcp(host: str, port: int, source_address: tuple[str, int] | None) -> socket.socket:
        if source_address is None:
            sock = gsocket.create_connection((host, port))
        else:
            # Bound with IP_BIND_ADDRESS_NO_PORT, so that rotated source addresses share ports.
            sock = connect_from(host, port, source_address)
        # Small frames must leave at once: Nagle would add up to 40 ms to echoes.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _tunnel(self, sock: socket.socket, proxy: Proxy) -> None:
        host = f"[{self.uri.host}]" if ":" in self.uri.host else self.uri.host
        target = f"{host}:{self.uri.port}"
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if proxy.authorization:
            request += f"Proxy-Authorization: {proxy.authorization}\r\n"
        sock.sendall((request + "\r\n").encode("latin-1"))
        response, _ = self._read_response_head(sock)
        if not 200 <= response.status < 300:
            raise ConnectError(f"proxy {proxy.host}:{proxy.port} refused the tunnel: HTTP {response.status}")

    @staticmethod
    def _read_response_head(sock: socket.socket) -> tuple[handshake.Response, bytes]:
        buffer = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectError("server closed the connection during the upgrade")
            buffer += chunk
            parsed = handshake.parse_response(buffer)
            if parsed is not None:
                return parsed

    def _upgrade(
        self,
        sock: socket.socket,
        headers: Sequence[tuple[str, str]],
        subprotocols: Sequence[str],
        origin: str | None,
    ) -> bytes:
        key = handshake.generate_key()
        sock.sendall(
            handshake.build_request(
                host=self.uri.host_header,
                resource=self.uri.resource,
                key=key,
                subprotocols=subprotocols,
                headers=headers,
                origin=origin,
            )
        )
        response, leftover = self._read_response_head(sock)
        self.subprotocol = handshake.validate_response(response, key, subprotocols)
        return leftover

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
                                self._on_pong(event.data, received_at)
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


def _os_error_text(exc: OSError) -> str:
    """A stable description: the errno name and text, without addresses or ports."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or exc.__class__.__name__
    return f"{text} ({name})" if name else text
