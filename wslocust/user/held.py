"""
How a :class:`~wslocust.user.websocket_user.WebSocketUser` without tasks holds its connection: in its own
greenlet, or in the event loop (:meth:`HeldConnection.holds_in_loop`), with the same counts either way.

Held in the loop, a user has no greenlet while its connection lives (~8 KB less each: a greenlet's stack and
frames): a short-lived greenlet connects (and reconnects), the connection's read watcher receives
(:meth:`~wslocust.transport.connection.Connection.receive_in_loop`), the periodic messages leave from timers
as always, and a stop sends the close and waits for the server's in callbacks. Locust counts, finds and stops
users by their greenlets: it holds one for such a user that never runs (:class:`~wslocust.locust_compat.SessionUser`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import gevent
from gevent import GreenletExit

from wslocust.exceptions import ConfigurationError, ConnectionClosed, connection_closed
from wslocust.transport.connection import Connection, Proxy
from wslocust.user.keeper import ConnectionKeeper

__all__ = ["HeldConnection"]


class HeldConnection(ConnectionKeeper):
    """The connection of a user without tasks (a mixin of :class:`~wslocust.user.websocket_user.WebSocketUser`)."""

    if TYPE_CHECKING:

        def _hooks_may_block(self) -> bool: ...  # WebSocketUser

        def end_held_in_loop(self) -> None: ...  # SessionUser

        def stoppable_at_once(self) -> None: ...  # SessionUser

        _hub: Any  # WebSocketUser

    def _hold(self) -> None:
        """A user without tasks held by its own greenlet: this greenlet is the session; timers send the messages."""
        self.stoppable_at_once()
        self._session = gevent.getcurrent()
        try:
            self._keep_connected()
        except GreenletExit:
            pass  # Locust stopped the user: _shutdown says goodbye
        finally:
            self._shutdown()

    def holds_in_loop(self) -> bool:
        """
        Whether this user's connections live in the event loop rather than in a greenlet of the user's
        own: a user without tasks, over plain TCP, with nothing that may block while it receives or stops
        (no pings, no ``in_flight`` window, no ``on_message`` nor ``on_stop`` of its own). Such a user
        holds ~8 KB less (a greenlet's stack and frames): its connects run in a short-lived greenlet; then
        the loop reads its socket, its timers send its messages, and its stop closes without waiting.
        Override it to return False to keep a greenlet per user.
        """
        if not self._holding or self.in_flight > 0 or self.ping_interval > 0 or self._hooks_may_block():
            return False
        try:
            return not self._target().secure
        except ConfigurationError:
            return False  # the greenlet path reports it

    _retirer: gevent.Greenlet | None = None
    _closing_at_stop = False

    def session_in_loop(self) -> None:
        """Start connecting (in a greenlet that ends once the connection is open)."""
        self._session = gevent.spawn(self._connect_in_loop, True)

    def _connect_in_loop(self, first: bool) -> None:
        try:
            self._connect_then_receive_in_loop(first)
        except Exception as exc:  # noqa: BLE001 - as Locust reports a user whose greenlet fails: it ends
            self._report_user_error(exc)
            self._end_in_loop()

    def _connect_then_receive_in_loop(self, first: bool) -> None:
        destination = self._destination() if first else self._destination_known
        if destination is None:
            self._end_in_loop()
            return
        self._destination_known = destination
        uri, proxy = destination
        connection = self._connect(uri, proxy, first)
        if connection is None:
            if not self._stopping:  # gave up; a stop ends the user itself
                self._end_in_loop()
            return
        self._retirer = self._retire_later(connection, first)
        self._session = None
        self._connection_in_loop = connection
        connection.receive_in_loop(self._closed_in_loop)

    _destination_known: tuple[Any, Proxy | None] | None = None
    _connection_in_loop: Connection | None = None
    """The connection the loop receives, until its close has been handled (:meth:`_closed_in_loop`)."""

    def _closed_in_loop(self, closed: ConnectionClosed, error: Exception | None) -> None:
        """The connection received in the loop closed (runs in the event loop: never blocks)."""
        try:
            self._count_close_in_loop(closed, error)
        except Exception as exc:  # noqa: BLE001 - a listener's (StopUser from a request listener): the user ends
            self._report_user_error(exc)
            self._end_in_loop()

    def _count_close_in_loop(self, closed: ConnectionClosed, error: Exception | None) -> None:
        self._connection_in_loop = None
        if error is not None:
            self._report_user_error(error)  # the user reconnects instead of dying
            closed = connection_closed(1006)
        self._stop_ticking()
        retirer, self._retirer = self._retirer, None
        if retirer is not None and not self._retiring:
            retirer.kill(block=False)
        if self._stopping:
            self._open.clear()
            self._drained.set()
            if self._closing_at_stop or self._retiring:  # closed by us: by the stop, or at the end of its lifetime
                self.counters.closed += 1
            else:
                self._lost_at_stop(closed)
            self._end_in_loop()
            return
        delay = self._after_close(closed)
        if delay is None:
            self._end_in_loop()
        elif delay:
            self._session = gevent.spawn_later(delay, self._connect_in_loop, False)
        else:
            self._session = gevent.spawn(self._connect_in_loop, False)

    def stop_in_loop(self) -> None:
        """Locust stops this user: close without waiting here; the user ends when its close is done."""
        if self._stopping:
            return
        self._stopping = True
        self._stop_ticking()
        session, connection = self._session, self._connection_in_loop
        if session is not None and not session.dead:
            gevent.spawn(self._stop_connecting_in_loop, session)  # connecting or backing off
        elif connection is None:
            self._end_in_loop()
        elif connection.closed is None:
            if self._correlator.waiting():
                gevent.spawn(self._close_when_drained, connection)  # replies in flight: up to close_timeout
            else:
                # From a loop callback, not here: a whole stop stops thousands of users in a row, and the
                # loop runs its callbacks a few milliseconds at a time, between its other work.
                self._hub.loop.run_callback(self._close_at_stop, connection)
        # Either way (and when it has just closed), _closed_in_loop counts the close and ends the user.

    def _stop_connecting_in_loop(self, session: gevent.Greenlet) -> None:
        if self._opening:
            # As _shutdown: an upgrade under way finishes (then closes at once), killed half-way the
            # server would count a connection the user never did.
            session.join(self.close_timeout)
        session.kill(block=True)
        self._end_in_loop()

    def _close_when_drained(self, connection: Connection) -> None:
        if self._correlator.waiting():  # the replies may have come since the stop
            self._drained.clear()
            self._drained.wait(self.close_timeout)
        self._close_at_stop(connection)

    def _close_at_stop(self, connection: Connection) -> None:
        if connection.closed is None:  # else the server closed it first: _closed_in_loop counted how
            self._closing_at_stop = True
            connection.start_close()

    def _end_in_loop(self) -> None:
        """The user held in the loop is done: the end of a stop, then Locust sees it end."""
        self._stopped()
        self.end_held_in_loop()
