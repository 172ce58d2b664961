"""
The user layer: :class:`WebSocketUser` and what it does per connection.

``WebSocketUser`` loads on first use (PEP 562), so that the sans-I/O parts of this package
(:mod:`wslocust.user.correlation`, :mod:`wslocust.user.state`) import neither gevent nor Locust.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wslocust.user.state import ConnectionState

if TYPE_CHECKING:
    from wslocust.user.websocket_user import WebSocketUser

__all__ = ["ConnectionState", "WebSocketUser"]


def __getattr__(name: str) -> Any:
    if name != "WebSocketUser":
        raise AttributeError(f"module 'wslocust.user' has no attribute {name!r}")
    value = importlib.import_module("wslocust.user.websocket_user").WebSocketUser
    globals()[name] = value  # later lookups skip this function
    return value
