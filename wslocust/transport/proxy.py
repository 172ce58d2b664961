"""
HTTP proxies: WebSocket connections tunnelled with CONNECT (RFC 9110 §9.3.6).

:class:`Proxy` parses the proxy URL, builds the CONNECT request and judges the
proxy's answer; it does no I/O (:mod:`wslocust.transport.opening` moves the
bytes), so it has no socket and no gevent.
"""

from __future__ import annotations

import base64
import urllib.parse
from typing import NamedTuple

from wslocust.codec.uri import redact_uri
from wslocust.exceptions import ConfigurationError, ConnectError

__all__ = ["Proxy"]


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

    def connect_request(self, host: str, port: int) -> bytes:
        """
        The CONNECT request that asks this proxy for a tunnel to ``host:port``.

        Args:
            host: the WebSocket server's host name or address (IPv6 without brackets).
            port: the WebSocket server's port.
        """
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if self.authorization:
            request += f"Proxy-Authorization: {self.authorization}\r\n"
        return (request + "\r\n").encode("latin-1")

    def check_tunnel(self, status: int) -> None:
        """
        Accept the proxy's answer to :meth:`connect_request`.

        Raises:
            ConnectError: the status is not 2xx: the proxy refused the tunnel.
        """
        if not 200 <= status < 300:
            raise ConnectError(f"proxy {self.host}:{self.port} refused the tunnel: HTTP {status}")

    def __repr__(self) -> str:
        # The authorization is a credential, merely base64-encoded.
        return f"Proxy(host={self.host!r}, port={self.port}, authorization={'***' if self.authorization else None})"
