"""Parsing and validating ``ws://`` and ``wss://`` target URLs (RFC 6455 §3)."""

from __future__ import annotations

import base64
import functools
import ipaddress
import urllib.parse
from typing import NamedTuple

from wslocust.exceptions import ConfigurationError
from wslocust.redaction import looks_concealed, redact_uri, reveal_uri

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
    user_info: tuple[str, str] | None = None
    """``(user, password)`` from ``ws://user:password@host/``, sent as HTTP Basic authorization."""

    @property
    def host_header(self) -> str:
        """The Host header value: the port only when not the scheme's default (RFC 7230 §5.4)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header value for :attr:`user_info` (RFC 7617), or None."""
        if self.user_info is None:
            return None
        return "Basic " + base64.b64encode(":".join(self.user_info).encode()).decode("ascii")

    def __str__(self) -> str:
        # Never the credentials, nor a token in the query: this is what messages quote.
        return redact_uri(f"{'wss' if self.secure else 'ws'}://{self.host_header}{self.resource}")

    def __repr__(self) -> str:
        return f"WsURI({str(self)!r})"


def parse_uri(url: str) -> WsURI:
    """
    Parse a WebSocket URL, or the concealed form of one (:func:`wslocust.redaction.conceal_uri`).

    Raises:
        ConfigurationError: the URL is not a valid ``ws://`` or ``wss://`` URL,
            or it is a concealed form this process does not know.
    """
    return _parse(reveal_uri(url))


@functools.lru_cache(maxsize=256)
def _parse(url: str) -> WsURI:
    # Cached because every user of a run parses the same few URLs.
    shown = redact_uri(url)
    if looks_concealed(url):
        raise ConfigurationError(
            f"{shown!r} holds *** where its credentials were hidden from display; give the real URL "
            "(a worker learns it from its master's spawn message, or from its own --host / WS_SERVER_URL)"
        )
    try:
        parsed = urllib.parse.urlsplit(url.strip())
    except ValueError:  # "Invalid IPv6 URL": unbalanced brackets
        raise ConfigurationError(f"{shown!r} has a malformed [IPv6] host; use ws://[::1]:port/path") from None
    if parsed.scheme not in ("ws", "wss"):
        scheme = f"{parsed.scheme}://" if parsed.scheme and "://" in url else "no scheme"
        raise ConfigurationError(
            f"{shown!r} is not a WebSocket URL ({scheme}); use ws://host[:port]/path or wss://host[:port]/path"
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
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigurationError(f"{shown!r} has a malformed [IPv6] host; use ws://[::1]:port/path") from None
    resource = parsed.path or "/"
    if parsed.query:
        resource += "?" + parsed.query
    # RFC 3986: a request target holds visible ASCII only; checked here so that the
    # message is redacted (the handshake would quote the whole resource).
    if not (resource.isascii() and resource.isprintable()) or " " in resource:
        raise ConfigurationError(
            f"{shown!r} has spaces or non-ASCII characters in its path or query; percent-encode them"
        )
    user_info = None
    if parsed.username is not None:
        user_info = (urllib.parse.unquote(parsed.username), urllib.parse.unquote(parsed.password or ""))
    return WsURI(secure, host, port or (443 if secure else 80), resource, user_info)
