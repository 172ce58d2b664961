"""
wslocust: WebSocket load testing as a Locust extension.

``from wslocust import WebSocketUser`` in a locustfile, subclass it, and run
``locust -f yourfile.py``.
"""

# Locust first: it lets gevent patch the standard library before anything opens a socket.
import locust  # noqa: F401  isort:skip

from .exceptions import (
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
from .user import ConnectionState, WebSocketUser

__version__ = "0.1.0"

__all__ = [
    "WebSocketUser",
    "ConnectionState",
    "WsLocustError",
    "ConfigurationError",
    "ConnectError",
    "ConnectTimeout",
    "HandshakeError",
    "ProtocolError",
    "ReceiveTimeout",
    "ConnectionClosed",
    "ConnectionClosedOK",
    "ConnectionClosedError",
    "__version__",
]
