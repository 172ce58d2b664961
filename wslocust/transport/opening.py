"""
Opening a WebSocket connection: TCP, the proxy tunnel, TLS and the HTTP upgrade.

:func:`open_socket` returns an upgraded stream (:mod:`wslocust.transport.streams`), with the time its
101 response arrived (the kernel's receive time where it gave one), or raises one of the
:mod:`wslocust.exceptions` connect errors: this is where low-level errors of
the opening (``socket.gaierror``, ``ssl.SSLError``, refusals, timeouts) are
translated; :class:`~wslocust.transport.connection.Connection` translates those
of an open connection.
"""

from __future__ import annotations

import errno
import socket
import ssl
import time
from collections.abc import Sequence
from typing import NamedTuple

import gevent
from gevent import socket as gsocket

from wslocust.codec import handshake
from wslocust.codec.uri import WsURI
from wslocust.exceptions import (
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
    DNSError,
    TLSError,
    WsLocustError,
)
from wslocust.transport.addresses import connect_from
from wslocust.transport.proxy import Proxy
from wslocust.transport.streams import SocketStream, TlsStream
from wslocust.transport.timestamps import shared_clock_map
from wslocust.transport.tls import ssl_context

__all__ = ["Upgraded", "open_socket"]


class Upgraded(NamedTuple):
    """A stream past the HTTP upgrade: WebSocket frames flow on it from here."""

    stream: SocketStream | TlsStream
    subprotocol: str | None
    """The subprotocol the server selected, if any."""
    leftover: bytes
    """Bytes the server sent after the 101 response: the start of its first frames."""
    received_at: float
    """``perf_counter()`` time the (last bytes of the) 101 response arrived: the kernel's receive time mapped
    to that clock, or the time it was read where the kernel gave none."""
    timed_by_kernel: bool
    """Whether ``received_at`` is the kernel's receive time."""


def open_socket(
    uri: WsURI,
    *,
    timeout: float,
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    origin: str | None = None,
    verify_tls: bool = True,
    source_address: tuple[str, int] | None = None,
    proxy: Proxy | None = None,
    kernel_timestamps: bool = True,
) -> Upgraded:
    """
    Connect to ``uri`` and upgrade (the arguments are those of
    :meth:`~wslocust.transport.connection.Connection.open`).

    Returns:
        The upgraded stream, the selected subprotocol, the bytes read past the upgrade and when the 101 came.

    Raises:
        ConnectError: DNS, refused, TLS or another socket error.
        ConnectTimeout: not done within ``timeout``.
        HandshakeError: the server did not accept the upgrade.
    """
    if uri.authorization is not None and not any(name.lower() == "authorization" for name, _ in headers):
        headers = [*headers, ("Authorization", uri.authorization)]  # ws://user:password@host/
    upgraded = None
    try:
        with gevent.Timeout(timeout, False):
            if proxy is None:
                sock = _connect_tcp(uri.host, uri.port, source_address)
            else:
                sock = _connect_tcp(proxy.host, proxy.port, source_address)
            try:
                # Before the first byte is sent: the answers to it must carry stamps.
                tcp = SocketStream(sock, kernel_timestamps)
                stream: SocketStream | TlsStream = tcp
                if proxy is not None:
                    tcp.send_all(proxy.connect_request(uri.host, uri.port))
                    proxy.check_tunnel(_read_response_head(tcp)[0].status)
                if uri.secure and tcp.timestamps:
                    stream = TlsStream(tcp, ssl_context(verify_tls), uri.host)
                    stream.handshake()
                elif uri.secure:  # without timestamps, today's SSLSocket (it reads the socket itself)
                    sock = ssl_context(verify_tls).wrap_socket(sock, server_hostname=uri.host)
                    stream = SocketStream(sock, False)
                upgraded = _upgrade(stream, uri, headers, subprotocols, origin)
            except BaseException:  # gevent.Timeout included
                sock.close()
                raise
        if upgraded is None:
            raise ConnectTimeout(f"no connection within {timeout:g} s (connect timeout)")
        return upgraded
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


def _connect_tcp(host: str, port: int, source_address: tuple[str, int] | None) -> socket.socket:
    if source_address is None:
        sock: socket.socket = gsocket.create_connection((host, port))
    else:
        # Bound with IP_BIND_ADDRESS_NO_PORT, so that rotated source addresses share ports.
        sock = connect_from(host, port, source_address)
    # Small frames must leave at once: Nagle would add up to 40 ms to echoes.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_response_head(stream: SocketStream | TlsStream) -> tuple[handshake.Response, bytes, float, bool]:
    """
    Read until a whole HTTP response head arrived.

    Returns:
        The response, the bytes after it, and when its last bytes arrived (``perf_counter()``) and whether
        the kernel said so.
    """
    buffer = b""
    previous_read_at = read_at = time.perf_counter()
    while True:
        chunk, stamp = stream.receive(4096)
        previous_read_at, read_at = read_at, time.perf_counter()
        if not chunk:
            raise ConnectError("server closed the connection during the upgrade")
        buffer += chunk
        parsed = handshake.parse_response(buffer)
        if parsed is not None:
            received_at = None if stamp is None else shared_clock_map().to_perf(stamp, read_at, previous_read_at)
            if received_at is None:
                return parsed[0], parsed[1], read_at, False
            return parsed[0], parsed[1], received_at, True


def _upgrade(
    stream: SocketStream | TlsStream,
    uri: WsURI,
    headers: Sequence[tuple[str, str]],
    subprotocols: Sequence[str],
    origin: str | None,
) -> Upgraded:
    """The HTTP upgrade (RFC 6455 §4.1)."""
    key = handshake.generate_key()
    stream.send_all(
        handshake.build_request(
            host=uri.host_header,
            resource=uri.resource,
            key=key,
            subprotocols=subprotocols,
            headers=headers,
            origin=origin,
        )
    )
    response, leftover, received_at, timed_by_kernel = _read_response_head(stream)
    subprotocol = handshake.validate_response(response, key, subprotocols)
    return Upgraded(stream, subprotocol, leftover, received_at, timed_by_kernel)


def _os_error_text(exc: OSError) -> str:
    """A stable description: the errno name and text, without addresses or ports."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or exc.__class__.__name__
    return f"{text} ({name})" if name else text
