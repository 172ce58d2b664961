"""Parsing and validating ``ws://`` and ``wss://`` target URLs (RFC 6455 §3)."""

from __future__ import annotations

import functools
import ipaddress
import re
import urllib.parse
from typing import NamedTuple

from .exceptions import ConfigurationError

__all__ = ["WsURI", "parse_uri", "redact_uri"]


class WsURI(NamedTuple):
    """A parsed WebSocket URL."""

    secure: bool
    """True for ``wss://``."""
    host: str
    """Host name or IP address, without IPv6 brackets."""
    port: int
    resource: str
    """Path and query string, as sent in the request line."""

    @property
    def host_header(self) -> str:
        """The Host header value: the port only when not the scheme's default (RFC 7230 §5.4)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.resource}"


@functools.lru_cache(maxsize=256)
def parse_uri(url: str) -> WsURI:
    """
    Parse a WebSocket URL.

    Cached because every user of a run parses the same few URLs.

    Raises:
        ConfigurationError: the URL is not a valid ``ws://`` or ``wss://`` URL.
    """
    shown = redact_uri(url)
    parsed = urllib.parse.urlsplit(url.strip())
    if parsed.scheme not in ("ws", "wss"):
        scheme = f"{parsed.scheme}://" if parsed.scheme else "no scheme"
        raise ConfigurationError(
            f"{shown!r} is not a WebSocket URL ({scheme}); use ws://host[:port]/path or wss://host[:port]/path"
        )
    if parsed.username is not None or parsed.password is not None:
        raise ConfigurationError(
            f"{shown!r}: credentials in the URL are not supported; send them in WebSocketUser.headers"
        )
    if not parsed.hostname:
        raise ConfigurationError(f"{shown!r} has no host; use ws://host[:port]/path")
    try:
        port = parsed.port
    except ValueError:
        raise ConfigurationError(f"{shown!r} has an invalid port; use a number from 1 to 65535") from None
    if port == 0:
        raise ConfigurationError(f"{shown!r} has port 0; use a number from 1 to 65535")
    secure = parsed.scheme == "wss"
    host = parsed.hostname
    if ":" in host:
        ipaddress.IPv6Address(host)  # urlsplit already rejected malformed brackets
    resource = parsed.path or "/"
    if parsed.query:
        resource += "?" + parsed.query
    return WsURI(secure, host, port or (443 if secure else 80), resource)


_SECRET_QUERY = re.compile(r"(?i)([?&](?:token|access_token|auth|key|api_key|apikey|password|secret|sig|signature)=)[^&#]*")
_USERINFO = re.compile(r"(//)[^/@]*@")


def redact_uri(url: str) -> str:
    """Hide credentials and token-like query values, so a URL can be logged or shown."""
    return _SECRET_QUERY.sub(r"\1***", _USERINFO.sub(r"\1***@", url))
