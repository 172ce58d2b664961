"""
wslocust: WebSocket load testing as a Locust extension.

``from wslocust import WebSocketUser`` in a locustfile, subclass it, and run
``locust -f yourfile.py``.
"""

# Locust first: it lets gevent patch the standard library before anything opens a socket.
import locust  # noqa: F401  isort:skip

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
from wslocust.integration.settings import time_scaled
from wslocust.integration.shapes import AT_ONCE, Churn, ErrorRecovery, RampUp, Spike, Stage, Stages, Sustained, Wave
from wslocust.user.websocket_user import ConnectionState, WebSocketUser

__version__ = "0.1.0"

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
