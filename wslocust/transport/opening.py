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

from wslocust.codec import handshake
from wslocust.codec.deflate import DeflateOffer, DeflateParameters
from wslocust.codec.uri import WsURI
from wslocust.exceptions import (
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
    DNSError,
    TLSError,
    WsLocustError,
)
from wslocust.transport.addresses import connect_from, connect_to
from wslocust.transport.proxy import Proxy
from wslocust.transport.streams import SocketStream, TlsStream
from wslocust.transport.timestamps import shared_clock_map
from wslocust.transport.tls import TlsFiles, ssl_context

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
    compression: DeflateParameters | None
    """The permessage-deflate parameters the server agreed to, if it accepted the offer."""


def open_socket(
    uri: WsURI,
    *,
    timeout: float,
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    origin: str | None = None,
    verify_tls: bool = True,
    tls_files: TlsFiles | None = None,
    source_address: tuple[str, int] | None = None,
    proxy: Proxy | None = None,
    kernel_timestamps: bool = True,
    compression: DeflateOffer | None = None,
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
        TlsFileError: a file of ``tls_files`` cannot be used (before anything is sent).
    """
    # The one context of this configuration, for both TLS paths below; its files are checked here, once.
    context = ssl_context(verify_tls, tls_files) if uri.secure else None
    if uri.authorization is not None and not any(name.lower() == "authorization" for name, _ in headers):
        headers = [*headers, ("Authorization", uri.authorization)]  # ws://user:password@host/
    upgraded = None
    try:
        with gevent.Timeout(timeout, False) as deadline:
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
                if context is not None and tcp.timestamps:
                    stream = TlsStream(tcp, context, uri.host)
                    stream.handshake()
                elif context is not None:  # without timestamps, today's SSLSocket (it reads the socket itself)
                    sock = context.wrap_socket(sock, server_hostname=uri.host)
                    stream = SocketStream(sock, False)
                upgraded = _upgrade(stream, uri, headers, subprotocols, origin, compression, deadline)
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
        raise TLSError(_tls_failure(exc)) from None
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
        sock: socket.socket = connect_to(host, port)
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
    compression: DeflateOffer | None,
    deadline: gevent.Timeout,
) -> Upgraded:
    """The HTTP upgrade (RFC 6455 §4.1), within the connect timeout ``deadline``."""
    key = handshake.generate_key()
    request = handshake.build_request(
        host=uri.host_header,
        resource=uri.resource,
        key=key,
        subprotocols=subprotocols,
        headers=headers,
        origin=origin,
        extensions=compression.header() if compression is not None else None,
    )
    try:
        stream.send_all(request)
    except OSError:
        # In TLS 1.3 the client's handshake ends before the server has checked the client's certificate: a
        # server that refuses it sends an alert and closes, and the request, sent meanwhile, meets a reset.
        # The alert, still to be read, says why.
        alert = _pending_tls_alert(stream) if uri.secure else None
        if alert is not None:
            raise alert from None
        raise
    response, leftover, received_at, timed_by_kernel = _read_response_head(stream)
    body = _rejection_body(stream, response, leftover, deadline) if response.status != 101 else b""
    subprotocol = handshake.validate_response(response, key, subprotocols, body=body, deflate_offer=compression)
    agreed = handshake.negotiated_deflate(response, compression) if compression is not None else None
    return Upgraded(stream, subprotocol, leftover, received_at, timed_by_kernel, agreed)


def _pending_tls_alert(stream: SocketStream | TlsStream) -> ssl.SSLError | None:
    """After a failed send over TLS: the alert the server sent before it closed, if it can still be read."""
    try:
        stream.receive(4096)
    except ssl.SSLError as alert:  # before OSError, its base class
        return alert
    except OSError:
        pass
    return None


def _rejection_body(
    stream: SocketStream | TlsStream, response: handshake.Response, received: bytes, deadline: gevent.Timeout
) -> bytes:
    """
    The start of a rejection's body, for its error message to quote the server's reason: the bytes that
    came with the head, read on only as far as ``Content-Length`` says (and
    :func:`~wslocust.codec.handshake.body_to_read` allows), and only until the connect timeout
    ``deadline``. Whatever arrived then is quoted: the rejection itself is already known.
    """
    wanted = handshake.body_to_read(response)
    body = received
    try:
        while len(body) < wanted:
            chunk, _ = stream.receive(wanted - len(body))
            if not chunk:
                break
            body += chunk
    except gevent.Timeout as exc:
        if exc is not deadline:
            raise
    except OSError:  # ssl.SSLError included: the server went away after its answer; quote what came
        pass
    return body


# TLS alerts with which a server refuses the client's certificate (or its absence), in words.
_CLIENT_CERTIFICATE_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the server requires a client certificate (tls_cert_file)",
    "TLSV1_ALERT_UNKNOWN_CA": "the server does not trust the client certificate's CA",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the server rejected the client certificate",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the server rejected the client certificate as expired",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the server rejected the client certificate",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the server rejected the client certificate as unsupported",
    "TLSV1_ALERT_ACCESS_DENIED": "the server denied access to the client certificate",
}


def _tls_failure(exc: ssl.SSLError) -> str:
    """The message of a TLS failure other than the server certificate's: the reason, in words where known."""
    reason = exc.reason or str(exc)
    explained = _CLIENT_CERTIFICATE_ALERTS.get(reason)
    return f"TLS handshake failed: {explained} ({reason})" if explained else f"TLS handshake failed: {reason}"


def _os_error_text(exc: OSError) -> str:
    """A stable description: the errno name and text, without addresses or ports."""
    name = errno.errorcode.get(exc.errno or 0)
    text = exc.strerror or exc.__class__.__name__
    return f"{text} ({name})" if name else text
