"""Where a user's connection is in its life (:attr:`WebSocketUser.state`)."""

from __future__ import annotations

import enum

__all__ = ["ConnectionState"]


class ConnectionState(enum.Enum):
    """Where a user's connection is in its life."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    """Gave up after ``max_reconnect_attempts``; the user stops."""
    CLOSED = "closed"
