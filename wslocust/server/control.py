"""
The guard of the control endpoint ``POST /faults``: its token and its parameters.

A request that changes the server's state must carry the control token, as
``Authorization: Bearer <token>``, whenever the server has one: when given one
(``--control-token``, ``WS_CONTROL_TOKEN``), or when it listens beyond loopback,
where :func:`control_token_for` generates one. Its parameters are checked before
anything happens, each bad one answered with one line that names it and what is
valid.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import secrets
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import MAX_FAULT_MS

__all__ = ["FaultRequest", "control_token_for", "is_authorized", "is_loopback", "parse_fault_query"]

#: Bytes of randomness in a generated token (32 URL-safe characters).
TOKEN_BYTES = 24

_TRUE = ("1", "true")
_FALSE = ("0", "false")


@dataclass(frozen=True)
class FaultRequest:
    """The checked parameters of one ``POST /faults``."""

    drop: bool
    """Drop every open connection without a close frame."""
    refuse_ms: float
    """Answer every upgrade with 503 for this many milliseconds (0 to :data:`~wslocust.server.config.MAX_FAULT_MS`)."""


def is_loopback(address: str) -> bool:
    """True if ``address``, an IP address the server is bound to, only reaches this host (127.0.0.0/8, ::1)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope ("fe80::1%eth0") is not part of it
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def control_token_for(given: str | None, bound_address: str) -> str | None:
    """
    The token the control endpoint requires: ``given``, else a new random one beyond loopback.

    Args:
        given: the configured token, or None.
        bound_address: the IP address the listening socket is bound to (``0.0.0.0`` for every
            interface); a name is not resolved here.

    Returns:
        ``given`` if there is one; None on loopback (anyone who can connect already runs on
        this host); otherwise a token from :func:`secrets.token_urlsafe`, which the caller
        must show to whoever is to use it.
    """
    if given:
        return given
    if is_loopback(bound_address):
        return None
    return secrets.token_urlsafe(TOKEN_BYTES)


def is_authorized(environ: Mapping[str, Any], token: str | None) -> bool:
    """True if the request of WSGI ``environ`` carries ``token`` as a bearer token (always, without a token)."""
    if token is None:
        return True
    scheme, _, credentials = str(environ.get("HTTP_AUTHORIZATION", "")).strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: how long the comparison takes tells nothing of how much of the token matched.
    return hmac.compare_digest(credentials.strip().encode("utf-8"), token.encode("utf-8"))


def parse_fault_query(query_string: str) -> FaultRequest:
    """
    Check the query of ``POST /faults``: ``drop`` (0, 1, true or false) and ``refuse_ms``.

    Raises:
        ValueError: an unknown parameter or a bad value; the one-line message names it
            and what is valid.
    """
    try:
        query = urllib.parse.parse_qs(query_string, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:  # e.g. too many fields
        raise ValueError(f"unreadable query: {exc}") from None
    unknown = sorted(set(query) - {"drop", "refuse_ms"})
    if unknown:
        raise ValueError(f"unknown parameter {_shown(unknown[0])} (use drop=0|1 and refuse_ms=N)")
    drop_text = query.get("drop", ["0"])[-1].strip().lower()
    if drop_text not in _TRUE + _FALSE:
        raise ValueError(f"drop={_shown(drop_text)} is not valid (use 0, 1, true or false)")
    refuse_text = query.get("refuse_ms", ["0"])[-1]
    try:
        refuse_ms = float(refuse_text)
    except ValueError:
        refuse_ms = math.nan
    # A float check, not a string one: "1e3" is fine, "inf", "nan" and 1e300 are not.
    if not (math.isfinite(refuse_ms) and 0 <= refuse_ms <= MAX_FAULT_MS):
        raise ValueError(
            f"refuse_ms={_shown(refuse_text)} is not valid (use a number of milliseconds from 0 to {MAX_FAULT_MS})"
        )
    return FaultRequest(drop=drop_text in _TRUE, refuse_ms=refuse_ms)


def _shown(text: str) -> str:
    # The client's text in an answer and a log line: short, one line, quoted when odd.
    text = text[:40]
    return text if text.isprintable() and text and " " not in text else repr(text)
