"""
How wslocust writes numbers and error categories for people: shared by the
console reports, the web UI and ``wslocust monitor``.

Pure functions: no Locust, no gevent, so the monitor (an HTTP client) can use
them without importing a load generator.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "FINE_BELOW_MS",
    "TENTHS_BELOW_MS",
    "category_label",
    "format_bytes",
    "format_count",
    "format_ms",
    "node_status",
]

FINE_BELOW_MS = 10.0
"""Below this, response times keep two significant digits."""
TENTHS_BELOW_MS = 100.0
"""From :data:`FINE_BELOW_MS` to this, tenths of a millisecond are kept; from here up, whole milliseconds."""


def format_ms(value: float | None) -> str:
    """
    A response time as the console shows it: whole milliseconds from 100 ms up
    (as Locust prints them), tenths from 10 ms (``50.3``), two significant
    digits below (``0.37``, ``4.2``).
    """
    if not value:
        return "0"
    if value < 0:  # never a round trip; shown, not fatal to the printer that asked
        return "-" + format_ms(-value)
    if value >= TENTHS_BELOW_MS:
        return f"{value:.0f}"
    if value >= FINE_BELOW_MS:
        return f"{value:.1f}"
    digits = min(3, max(1, 1 - math.floor(math.log10(value))))
    return f"{value:.{digits}f}"


def format_count(value: float) -> str:
    """1234 -> ``1,234``; rates keep one decimal below 10 (``2.5``)."""
    if value and abs(value) < 10 and value != int(value):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def format_bytes(value: float | None, per_second: bool = False) -> str:
    """Bytes in B, KB, MB or GB (powers of 1000)."""
    suffix = "/s" if per_second else ""
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}{suffix}"
    return f"{value:.0f} B{suffix}"


_LABELS = {
    "dns": "DNS lookup failed",
    "refused": "connection refused",
    "tls": "TLS failed",
    "connect": "no TCP connection",
    "connect_timeout": "connect timeout",
    "connect_aborted": "connect aborted at stop",
    "handshake": "upgrade rejected",
    "protocol": "protocol error",
    "reply_timeout": "no reply in time",
    "ping_timeout": "no pong in time",
    "closed_1006": "connection lost (1006)",
}


def category_label(category: str) -> str:
    """A category in words: ``closed_1011`` -> ``closed by server with code 1011``."""
    if category in _LABELS:
        return _LABELS[category]
    if category.startswith("handshake_"):
        return f"upgrade rejected: HTTP {category[10:]}"
    if category.startswith("bad_101_"):
        header = "-".join(part.capitalize() for part in category[8:].split("-")).replace("Websocket", "WebSocket")
        return f"101 response with a missing or wrong {header} header"
    if category.startswith("closed_"):
        return f"closed by server with code {category[7:]}"
    return category


def node_status(view: dict[str, Any], state: str) -> str:
    """
    A node's status in the tables: the saturation signal (CPU pinned, or an event loop that stalls) over
    its state, except for a worker no longer reporting: gone or missing, whatever its last report said.
    """
    if state in ("gone", "missing"):
        return state
    return "SATURATED" if view["saturated"] else "LAGGING" if view.get("lagging") else state
