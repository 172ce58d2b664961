"""
Client pings of :class:`~wslocust.user.websocket_user.WebSocketUser` (``ping_interval``): each pong
timed as a ``ping`` request, a missing one failed as :class:`~wslocust.exceptions.PingTimeout`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from wslocust.exceptions import ConnectionClosed, PingTimeout
from wslocust.transport.connection import Connection
from wslocust.user.messaging import untrusted_stamp

__all__ = ["Pings"]

perf_counter = time.perf_counter


class Pings:
    """
    The pings of one user (a mixin): :meth:`_ping_forever` runs in a greenlet of its own while a
    connection is open; :meth:`_on_pong` is the connection's pong handler.

    Each ping is reported once, by whoever takes its entry from ``_pongs``: the pong (in the
    receiving greenlet, which also reads the last pongs while a stop closes the connection) or
    the pinger's timeout. A ping whose pong never came before the close of a stopping user's
    connection is in flight at stop, not a failure.
    """

    # From the rest of WebSocketUser.
    ping_interval: float
    ping_timeout: float
    counters: Any
    _succeed: Callable[[str, float, int], None]
    _pongs: dict[bytes, tuple[float, gevent.event.AsyncResult]]
    """Pings in flight on the current connection: data -> (sent at, woken by the pong)."""

    if TYPE_CHECKING:

        def _fail(self, name: str, exception: Exception, response_time: float | None = None) -> None: ...

    def _ping_forever(self, connection: Connection) -> None:
        """Ping every ``ping_interval``; a pong missing after ``ping_timeout`` fails and drops the connection."""
        self._pongs.clear()  # pings of a lost connection: their pongs cannot come
        sequence = 0
        while True:
            gevent.sleep(self.ping_interval)
            sequence += 1
            data = sequence.to_bytes(8, "big")
            pong = gevent.event.AsyncResult()
            self._pongs[data] = (perf_counter(), pong)
            try:
                connection.send_ping(data)
            except ConnectionClosed:
                self._pongs.pop(data, None)  # refused by a closing connection: never sent
                return
            pong.wait(self.ping_timeout)
            if self._pongs.pop(data, None) is not None:  # not taken by its pong: timed out
                self._fail("ping", PingTimeout(f"no pong within {self.ping_timeout:g} s"))
                connection.abort()  # the session greenlet sees the close and reconnects
                return

    def _on_pong(self, data: bytes, received_at: float) -> None:
        """
        A pong came: its ping is reported here, in the receiving greenlet, not by the pinger, which
        a stop kills; so a pong read before the close at the end of a run counts, like a reply.
        """
        entry = self._pongs.pop(data, None)
        if entry is None:
            return  # unsolicited, or its ping already timed out
        sent_at, waiter = entry
        elapsed = received_at - sent_at
        if elapsed < 0:
            elapsed = untrusted_stamp(self.counters, sent_at)
        self._succeed("ping", elapsed * 1000, 0)
        waiter.set(received_at)
