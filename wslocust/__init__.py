"""
wslocust: WebSocket load testing as a Locust extension.

``from wslocust import WebSocketUser`` in a locustfile, subclass it, and run
``locust -f yourfile.py``.

The names below are loaded on first use (PEP 562), so that ``import
wslocust.monitor`` or the codec does not start a load generator. Asking for a
Locust-facing name (the user, its states, the shapes, ``time_scaled``) imports
Locust first, which lets gevent patch the standard library before anything
opens a socket, and then plugs wslocust into Locust's events.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wslocust.exceptions import (
    ConfigurationError,
    ConnectError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    ConnectTimeout,
    HandshakeError,
    ProtocolError,
    ReceiveTimeout,
    WsLocustError,
)

if TYPE_CHECKING:
    from wslocust.integration.shapes import Churn, ErrorRecovery, RampUp, Spike, Sustained, Wave
    from wslocust.integration.stages import AT_ONCE, Stage, Stages
    from wslocust.run.settings import time_scaled
    from wslocust.user import ConnectionState, WebSocketUser

__version__ = "0.1.0"

_LOCUST_FACING = {
    "time_scaled": "wslocust.run.settings",
    "WebSocketUser": "wslocust.user",
    "ConnectionState": "wslocust.user",
    **{name: "wslocust.integration.stages" for name in ("AT_ONCE", "Stage", "Stages")},
    **{
        name: "wslocust.integration.shapes"
        for name in ("Churn", "ErrorRecovery", "RampUp", "Spike", "Sustained", "Wave")
    },
}

__all__ = [
    "AT_ONCE",
    "Churn",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "ConnectionState",
    "ErrorRecovery",
    "HandshakeError",
    "ProtocolError",
    "RampUp",
    "ReceiveTimeout",
    "Spike",
    "Stage",
    "Stages",
    "Sustained",
    "Wave",
    "WebSocketUser",
    "WsLocustError",
    "__version__",
    "time_scaled",
]


def __getattr__(name: str) -> Any:
    module_name = _LOCUST_FACING.get(name)
    if module_name is None:
        raise AttributeError(f"module 'wslocust' has no attribute {name!r}")
    # Locust first: it lets gevent patch the standard library before anything opens a socket.
    importlib.import_module("locust")
    importlib.import_module("wslocust.wiring")  # plugs wslocust into Locust's events
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
