"""
Requests and replies over a user's current connection: sending, waiting, waking and dispatching.

The books (which reply answers which request, what came back wrong) are kept by
:class:`~wslocust.user.correlation.Correlator`; this part does the I/O around them: it sends on the
connection, switches a blocked greenlet out until its reply or its timeout, wakes it from the hub,
records Locust's requests, and hands every received message to the request it answers or to ``on_message``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from wslocust.exceptions import ConnectionClosed, ReceiveTimeout, connection_closed
from wslocust.user.pushes import time_push
from wslocust.user.state import ConnectionState

if TYPE_CHECKING:
    from wslocust.run.counters import WsCounters
    from wslocust.transport.connection import Connection
    from wslocust.user.correlation import Correlator, Pending

__all__ = ["Messaging", "payload_size"]

perf_counter = time.perf_counter


class Messaging:
    """The request/reply machinery of :class:`~wslocust.user.websocket_user.WebSocketUser` (a mixin)."""

    # From the rest of WebSocketUser.
    connection: Connection | None
    state: ConnectionState
    counters: WsCounters
    connect_timeout: float
    reply_timeout: float
    in_flight: int
    message_size: int
    _correlator: Correlator
    _succeed: Callable[[str, float, int], None]
    _hub: Any
    _open: gevent.event.Event
    _drained: gevent.event.Event
    _holding: bool
    _stopping: bool
    _retiring: bool
    _receivers: list[Any]

    if TYPE_CHECKING:

        def on_message(self, message: str | bytes) -> None: ...

        def reply_key(self, message: str | bytes) -> Hashable: ...

        def _refill_soon(self) -> None: ...  # PeriodicMessages, built on this class

        def _fail(self, name: str, exception: Exception, response_time: float | None = None) -> None: ...

        def _set_state(self, state: ConnectionState) -> None: ...  # ConnectionKeeper

        def _report_user_error(self, exception: Exception) -> None: ...

        def _offer_to_receivers(self, message: str | bytes, received_at: float, size: int) -> bool: ...  # Receiving

    # Waiting for a reply -------------------------------------------------------

    _reply_timer: Any = None
    """One repeating libev timer per user for the waits of its blocking requests, kept from one to the next."""
    _reply_timer_limit = 0.0

    def _round_trip(
        self, payload: str | bytes, match: Hashable, name: str, timeout: float | None, sequence: int, echo: bool
    ) -> Any:
        pending = self._start_request(payload, match, name, perf_counter(), True, sequence, echo=echo)
        if pending is None:
            return None
        limit = self.reply_timeout if timeout is None else timeout
        if not pending.done:
            self._sleep_until_done(pending, limit)
        if pending.done:
            return pending.reply
        if self._correlator.time_out(pending):
            self._fail_timed_out(pending, limit)
        return None

    def _fail_timed_out(self, pending: Pending, limit: float) -> None:
        """Record ``pending``, timed out after ``limit`` seconds, as a failure of its own."""
        self._fail(pending.name, ReceiveTimeout(f"no reply within {limit:g} s"), response_time=limit * 1000)

    def _sleep_until_done(self, pending: Pending, limit: float) -> None:
        # A bare switch to the hub, woken by _wake: an Event and a Timeout per round
        # trip cost more than the rest of the user's bookkeeping together.
        timer = self._reply_timer
        if timer is None or self._reply_timer_limit != limit:
            if timer is not None:
                timer.close()
            # Repeating, for again(): a stopped libev timer keeps only its remaining time, so
            # start() would reuse what is left of the previous wait; again() starts a full one.
            timer = self._reply_timer = self._hub.loop.timer(limit, limit)
            self._reply_timer_limit = limit
        pending.waiter = gevent.getcurrent()
        timer.again(self._wake, pending)
        try:
            self._hub.switch()
        finally:
            timer.stop()
            pending.waiter = None

    @staticmethod
    def _wake(pending: Pending) -> None:
        """Resume the greenlet sleeping on ``pending`` (runs in the hub; later calls do nothing)."""
        waiter = pending.waiter
        if waiter is not None:
            pending.waiter = None
            waiter.switch()

    def _wake_soon(self, pending: Pending) -> None:
        """Wake the greenlet sleeping on ``pending`` (now done), if any, from the hub."""
        if pending.waiter is not None:
            self._hub.loop.run_callback(self._wake, pending)

    # Sending -----------------------------------------------------------------

    def _start_request(
        self,
        payload: str | bytes,
        match: Hashable,
        name: str,
        scheduled_at: float,
        blocking: bool,
        sequence: int = 0,
        block: bool = True,
        echo: bool = False,
    ) -> Pending | None:
        """
        Send a request (an echo: ``match`` is its payload) and start waiting for its reply; None if it was not sent.

        A message refused by a closing connection (the server's close frame came, or we failed the
        connection, and TCP has not ended yet) was never sent: it is not counted as sent, nor lost,
        nor as a failure of its own; the connection's end is recorded once, as ``disconnect``, by
        the side that closed. A caller that may wait (``block``) sends it on the next connection;
        a periodic message (in the event loop, it cannot wait) is skipped.
        """
        connection = self._connection_for_send(name, block)
        correlator = self._correlator
        while connection is not None:
            pending = correlator.add(match, name, scheduled_at, blocking, sequence, echo)
            try:
                if type(payload) is str:
                    connection.send_text(payload, block=block)
                else:
                    connection.send_binary(payload, block=block)  # type: ignore[arg-type]
            except ConnectionClosed as exc:
                correlator.forget(pending)
                self._stop_sending_on(connection)
                connection = self._connection_for_send(name, block, refused=exc)
                continue
            self._count_sent(payload)
            return pending
        return None

    def _count_sent(self, payload: str | bytes) -> None:
        counters = self.counters
        counters.messages_sent += 1
        counters.bytes_sent += payload_size(payload)

    def _connection_for_send(
        self, name: str, wait: bool = True, refused: ConnectionClosed | None = None
    ) -> Connection | None:
        """
        The open connection to send ``name`` on, waiting out a reconnect (at most ``connect_timeout``)
        rather than failing every message sent meanwhile; None, with a ``name`` failure, if none
        opened in time. With ``wait`` False (in the event loop): None at once, and nothing recorded.
        ``refused``: why the previous connection refused the message.
        """
        connection = self.connection
        if self.state is ConnectionState.OPEN and connection is not None:
            return connection
        if not wait:
            return None
        if self._open.wait(self.connect_timeout) and self.state is ConnectionState.OPEN and self.connection is not None:
            return self.connection
        # The side that ended the last connection, as its end recorded it; while it was still
        # closing, what its refusal said.
        last = self.connection.closed if self.connection is not None else None
        self._fail(name, last or refused or connection_closed(1006))
        return None

    def _stop_sending_on(self, connection: Connection) -> None:
        """
        ``connection`` refused a message: it is closing. Later messages wait for the next connection
        (periodic ones stop) instead of meeting its refusal one by one.
        """
        if connection is self.connection and self.state is ConnectionState.OPEN:
            self._open.clear()
            self._set_state(ConnectionState.RECONNECTING)

    # Receiving (runs in the session greenlet) --------------------------------

    def _on_message(self, message: str | bytes, received_at: float) -> None:
        counters = self.counters
        counters.messages_received += 1
        size = payload_size(message)
        counters.bytes_received += size
        correlator = self._correlator
        # An echo's reply is its own payload back, whatever reply_key says; only a message that
        # answers no echo is asked its reply_key (which may parse it) for the requests.
        pending = correlator.match_echo(message) if correlator.echoes else None
        if pending is None and correlator.requests:
            try:
                pending = correlator.match(self.reply_key(message), message)
            except Exception:  # noqa: BLE001 - a message reply_key cannot parse is a server push
                pending = None
        if pending is not None:
            elapsed = received_at - pending.scheduled_at
            if elapsed < 0:
                elapsed = untrusted_stamp(counters, pending.scheduled_at)
            self._succeed(pending.name, elapsed * 1000, size)
            if pending.blocking:
                self._wake_soon(pending)
            elif self._holding and self.in_flight > 0 and not self._retiring:
                self._refill_soon()  # closed loop: the next one leaves in this turn of the event loop
            if (self._stopping or self._retiring) and not correlator.waiting():
                self._drained.set()
            return
        if correlator.count_late_or_duplicate(message, self.message_size):
            return
        if self._receivers and self._offer_to_receivers(message, received_at, size):
            return  # taken by a receive() call: timed as its request, not a push
        counters.unsolicited_received += 1
        time_push(self, message, received_at, size)  # type: ignore[arg-type]  # the user's push_sent_at hook
        try:
            self.on_message(message)
        except Exception as exc:  # noqa: BLE001 - a bug in a hook must not take the connection down
            self._report_user_error(exc)


def untrusted_stamp(counters: WsCounters, sent_at: float) -> float:
    """
    The round trip of a reply whose kernel receive time came out before its request left: the wall
    clock that maps kernel stamps to ``perf_counter()`` moved (slewed, or stepped by a VM's resume)
    since the map last measured it. No reply comes before its request: it is timed now, as a read
    without a stamp is, and counted with those.
    """
    counters.received_timed_by_kernel -= 1
    counters.received_timed_at_read += 1
    return perf_counter() - sent_at


def payload_size(payload: str | bytes) -> int:
    """Bytes of a message's payload on the wire (text as UTF-8)."""
    # isascii() is O(1) on str: most text needs no encoding to be measured.
    if type(payload) is str and not payload.isascii():
        return len(payload.encode())
    return len(payload)
