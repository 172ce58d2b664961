"""Writing the reference server's plain HTTP answers (``/stats``, ``/healthz``, ``/faults``, errors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["respond", "respond_json"]


def respond(
    start_response: Callable[..., Any],
    status: str,
    body: bytes,
    headers: list[tuple[str, str]] | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> list[bytes]:
    """Start a WSGI response with ``status``, a Content-Length and ``headers``; return its body."""
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))), *(headers or [])])
    return [body]


def respond_json(
    start_response: Callable[..., Any], status: str, value: object, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    """As :func:`respond`, with ``value`` as the JSON body.

    Raises:
        ValueError: ``value`` holds an infinite or NaN number, which JSON cannot express
            (Python would write ``Infinity``, which no JSON parser reads).
    """
    body = json.dumps(value, allow_nan=False).encode("ascii")
    return respond(start_response, status, body, headers, content_type="application/json")
