"""One accepted WebSocket connection of the reference server, and what its outgoing queue holds."""

from __future__ import annotations

import gevent
import gevent.queue

from .gevent_websocket import ServerWebSocket

__all__ = ["AcceptedConnection", "QueuedClose"]


class QueuedClose:
    """An outbox item: close the connection once the items before it are sent."""

    __slots__ = ("code", "reason", "timeout")

    def __init__(self, code: int, reason: str, timeout: float) -> None:
        self.code = code
        """The close code; 1006 drops TCP without a close frame."""
        self.reason = reason
        """The close reason."""
        self.timeout = timeout
        """Seconds to wait for the client's close frame before dropping TCP."""


class AcceptedConnection:
    """One accepted WebSocket: its socket wrapper and, if needed, its outgoing queue."""

    __slots__ = ("closing", "outbox", "watchdog", "writer", "ws")

    def __init__(self, ws: ServerWebSocket) -> None:
        self.ws = ws
        """The upgraded connection."""
        self.outbox: gevent.queue.Queue | None = None
        """(due monotonic time, message or :class:`QueuedClose`, is_broadcast) items, sent in
        order by :attr:`writer`; only created for delays and broadcasts."""
        self.writer: gevent.Greenlet | None = None
        """The greenlet that sends :attr:`outbox`, if there is one."""
        self.closing = False
        """True once the server decided to close it: nothing more is echoed."""
        self.watchdog: gevent.Greenlet | None = None
        """Drops TCP if the client does not answer the close frame in time."""

    def close_now(self, code: int, reason: str, timeout: float) -> None:
        """Send a close frame (1006: drop TCP instead); drop TCP if no reply in ``timeout`` s."""
        if code == 1006:
            self.ws.abort()
            return
        if self.watchdog is None:
            # Armed first: the close frame itself may wait for a slow client.
            # A socket timeout would not do: the reader is blocked in a read already.
            self.watchdog = gevent.spawn_later(timeout, self.ws.abort)
        self.ws.start_closing(code, reason)
