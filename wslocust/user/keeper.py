"""
Connection keeping of :class:`~wslocust.user.websocket_user.WebSocketUser`: connect, reconnect with
backoff, retire a connection at the end of its lifetime (churn), run its pinger (:mod:`wslocust.user.pings`),
and say goodbye on stop.
A greenlet receives each connection (:meth:`ConnectionKeeper._keep_connected`), or, for a user without tasks,
the event loop does (:mod:`wslocust.user.held`).
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
from gevent import GreenletExit
from locust import User
from locust.exception import StopUser

from wslocust.exceptions import ConfigurationError, ConnectionClosed, WsLocustError, connection_closed
from wslocust.run import settings
from wslocust.run.state import run_state
from wslocust.transport.connection import Connection, Proxy
from wslocust.transport.tls import ssl_context
from wslocust.user.connecting import ConnectionOpening, aborted_at_stop
from wslocust.user.pings import Pings
from wslocust.user.state import ConnectionState
from wslocust.user.ticks import PeriodicMessages

__all__ = ["ConnectionKeeper", "overrides_hook"]

perf_counter = time.perf_counter


class ConnectionKeeper(ConnectionOpening, Pings, PeriodicMessages):
    """
    The life of a user's connections (a mixin of :class:`~wslocust.user.websocket_user.WebSocketUser`):
    it starts and stops the periodic messages, and fails the requests a lost connection leaves pending.

    :meth:`_keep_connected` runs in the user's session greenlet until the user stops or gives up;
    :meth:`_shutdown` ends it.
    """

    # From the rest of WebSocketUser (more in ConnectionOpening, Messaging and PeriodicMessages): its
    # documented settings, Locust's greenlet and the state its __init__ creates.
    greenlet: Any
    proxy: str | None
    tls_ca_file: str | None
    tls_cert_file: str | None
    tls_key_file: str | None
    max_message_size: int | None
    validate_utf8: bool
    close_timeout: float
    kernel_timestamps: bool
    reconnect: bool
    reconnect_delay: float
    reconnect_max_delay: float
    max_reconnect_attempts: int
    connection_lifetime: float | None
    _ready: gevent.event.Event
    _start_turn: Any

    if TYPE_CHECKING:

        def on_start(self) -> None: ...

        def on_stop(self) -> None: ...

        def _run_hook(self, hook: Any) -> None: ...

        def _end_receives(self, closed: ConnectionClosed | None) -> None: ...  # Receiving

    def _keep_connected(self) -> None:
        """The session in a greenlet: connect, receive until the connection closes, reconnect; until stopped."""
        destination = self._destination()
        if destination is None:
            return
        first = True
        while True:
            connection = self._connect(*destination, first)
            if connection is None:
                return
            pinger = gevent.spawn(self._ping_forever, connection) if self.ping_interval > 0 else None
            retirer = self._retire_later(connection, first)
            try:
                closed = connection.receive_forever()
            except Exception as exc:  # noqa: BLE001 - reported; the user reconnects instead of dying
                self._report_user_error(exc)
                connection.abort()
                closed = connection_closed(1006)
            finally:
                # Also when the user is stopped in the middle of receiving: a pinger left
                # behind would report a missing pong after the run.
                self._stop_ticking()
                if pinger is not None:
                    pinger.kill(block=False)
                if retirer is not None and not self._retiring:
                    retirer.kill(block=False)
            first = False
            delay = self._after_close(closed)
            if delay is None:
                return
            if delay:
                gevent.sleep(delay)

    def _destination(self) -> tuple[Any, Proxy | None] | None:
        """The URI and proxy to connect to, or None after failing ``connect`` once when they cannot work."""
        try:
            uri = self._target()
            proxy = Proxy.from_url(self.proxy) if self.proxy else None
            if uri.secure:
                ssl_context(self.verify_tls, self._tls_files())  # a TLS file that cannot work fails once, here
        except ConfigurationError as exc:
            self._fail("connect", exc)
            self._give_up()
            return None
        if self._start_turn is not None:
            # Users started together connect one after another, not all in the same instant.
            run_state(self.environment).start_pacer.wait_turn(*self._start_turn)
        return uri, proxy

    _attempts = 0
    """Connection attempts of this user so far (the ``connect_headers`` hook is told which one it is)."""

    def _connect(self, uri: Any, proxy: Proxy | None, first: bool) -> Connection | None:
        """
        Open a connection, retrying with backoff; return it open (ticking, for a user without tasks), or
        None when the user stopped or gave up.
        """
        failed_attempts = 0
        name = "connect" if first else "reconnect"
        while not self._stopping:
            connection = Connection(
                uri,
                on_message=self._on_message,
                on_pong=self._on_pong,
                max_message_size=self.max_message_size,
                validate_utf8=self.validate_utf8,
                close_timeout=self.close_timeout,
                kernel_timestamps=self.kernel_timestamps,
                timing=self.counters,
                compression_counts=self.counters,
            )
            self._attempts += 1
            headers, error = self._attempt_headers(self._attempts)  # the user's hook may block: not timed
            counters = self.counters
            counters.connect_attempts += 1
            started = perf_counter()
            self._opening = True
            try:
                if error is None:
                    self._open_connection(connection, headers, proxy)
            except WsLocustError as exc:
                error = exc
            except GreenletExit:
                # A user with tasks, stopped half-way through its upgrade, which did not finish within
                # close_timeout (see _shutdown): still one attempt, failed.
                counters.connects_failed += 1
                self._fail(name, aborted_at_stop(), (perf_counter() - started) * 1000)
                raise
            finally:
                # Only while in open(): a stop joins an upgrade under way, never a backoff.
                self._opening = False
            if error is not None:
                counters.connects_failed += 1
                self._fail(name, error, response_time=(perf_counter() - started) * 1000)
                failed_attempts += 1
                if self._stopping:
                    return None
                if not self.reconnect or failed_attempts > self.max_reconnect_attempts:
                    self._give_up()
                    return None
                self._set_state(ConnectionState.RECONNECTING if not first else ConnectionState.CONNECTING)
                self._backoff(failed_attempts)
                continue
            # Up to the arrival of the 101 response (the kernel's time of it, where there is one).
            elapsed = ((connection.opened_at or perf_counter()) - started) * 1000
            counters.connects_succeeded += 1
            if not first:
                counters.reconnects += 1
            self._succeed(name, elapsed, 0)
            self._correlator.new_connection()
            self.connection = connection
            self._set_state(ConnectionState.OPEN)
            self._open.set()
            self._ready.set()
            if self._stopping:  # stopped during the upgrade (see _shutdown): counted, then closed at once
                connection.close_reading()
                counters.closed += 1
                return None
            if self._holding:
                if first and overrides_hook(self, "on_start"):
                    gevent.spawn(self._run_hook, self.on_start)  # it may wait for replies: not in the receiver
                self._start_ticking()
            return connection
        return None

    def _after_close(self, closed: ConnectionClosed) -> float | None:
        """
        Count how a connection ended; return the seconds to wait before the next connection, or None when
        the session ends (stopped, or not reconnecting).
        """
        self._open.clear()
        if self._stopping:
            self._drained.set()  # _shutdown waits for no more replies: none can come
            return None
        counters = self.counters
        if self._retiring:  # closed by _retire: not a failure; reconnect at once
            self._retiring = False
            counters.closed += 1
            self._fail_pending(closed)
            return 0.0
        counters.disconnects += 1
        self._fail("disconnect", closed)
        self._fail_pending(closed)
        if not self.reconnect:
            self._give_up()
            return None
        self._set_state(ConnectionState.RECONNECTING)
        return self._backoff_delay(1)

    def _backoff(self, attempt: int) -> None:
        gevent.sleep(self._backoff_delay(attempt))

    def _backoff_delay(self, attempt: int) -> float:
        delay = min(self.reconnect_max_delay, self.reconnect_delay * 2 ** (attempt - 1))
        delay *= settings.time_scale(self.environment)
        return delay / 2 + random.uniform(0, delay / 2)

    # Connection lifetime (churn) ----------------------------------------------

    _retiring = False
    """True from the end of a connection's lifetime until the next connection opens."""
    _opening = False
    """True while the session greenlet is in ``Connection.open()``."""

    def _retire_later(self, connection: Connection, first: bool) -> gevent.Greenlet | None:
        schedule = run_state(self.environment).schedule
        if schedule is not None and schedule.lifetime is not None:
            lifetime: float | None = schedule.lifetime
        elif self.connection_lifetime is not None:
            lifetime = self.connection_lifetime * settings.time_scale(self.environment)
        else:
            lifetime = None
        if lifetime is None:
            return None
        if first:
            lifetime = random.uniform(0, lifetime)
        return gevent.spawn_later(lifetime, self._retire, connection)

    def _retire(self, connection: Connection) -> None:
        """End of the connection's lifetime: let in-flight replies arrive, then close it cleanly."""
        self._retiring = True
        self._open.clear()  # new messages wait for the next connection
        self._set_state(ConnectionState.RECONNECTING)
        if self._correlator.waiting():
            self._drained.clear()
            self._drained.wait(self.close_timeout)
        connection.close(timeout=self.close_timeout)

    def _give_up(self) -> None:
        running_tasks = self._ready.is_set() and not self._holding
        self._set_state(ConnectionState.FAILED)
        self._ready.set()
        if running_tasks:
            self.greenlet.kill(StopUser(), block=False)

    def _fail_pending(self, closed: ConnectionClosed) -> None:
        self._end_receives(closed)
        for pending in self._correlator.fail_all():
            self._fail(pending.name, closed)
            if pending.blocking:
                self._wake_soon(pending)

    # Stop ----------------------------------------------------------------------

    def _shutdown(self) -> None:
        """
        Stop, as the stop contract says: wait, up to ``close_timeout`` in all, only for the replies
        to messages in flight on an open connection, then close it cleanly; everything read
        before the close is counted. A user with no open connection (in backoff, given up) or
        nothing in flight stops at once; one whose upgrade is under way lets it finish (at most
        ``close_timeout``), then closes at once. Each connection is counted once: ``closed`` here
        only if it was open at the stop and still open when the user closed it (a lost one was counted
        as lost; one the server closed while the stop waited for its replies is lost too, its replies
        with it).
        """
        self._stopping = True
        self._stop_ticking()
        connection = self.connection
        session = self._session
        receiver = None
        open_at_stop = connection is not None and connection.closed is None
        if session is gevent.getcurrent():
            # A user without tasks: this greenlet received until Locust stopped it.
            if (
                connection is not None
                and open_at_stop
                and not self._correlator.waiting()
                and not overrides_hook(self, "on_stop")
            ):
                # Nothing to wait for but the close: this greenlet reads it (a stop closes thousands at once).
                try:
                    connection.close_reading()
                finally:  # counted also when Locust kills this greenlet half-way (--stop-timeout): the close is ours
                    self.counters.closed += 1
                open_at_stop = False
            elif connection is not None and open_at_stop:
                # Another greenlet receives the last replies and the close while on_stop runs and we drain.
                receiver = gevent.spawn(self._receive_until_closed, connection)
            if self.state is not ConnectionState.FAILED:
                self._run_hook(self.on_stop)
        deadline = perf_counter() + self.close_timeout
        if connection is not None and open_at_stop:
            if self._correlator.waiting() and connection.closed is None:
                self._drained.clear()
                self._drained.wait(self.close_timeout)
            lost = connection.closed
            if lost is None:
                try:
                    connection.close(timeout=max(0.0, deadline - perf_counter()))
                finally:  # as above
                    self.counters.closed += 1
            else:
                self._lost_at_stop(lost)
        if receiver is not None:
            receiver.kill(block=True)
        if session is not None and not session.dead and session is not gevent.getcurrent():
            if self._opening:
                # Let an upgrade under way finish: killed half-way, the server would count a
                # connection that the user never did (a churning run stops in many upgrades).
                session.join(max(0.0, deadline - perf_counter()))
            session.kill(block=True)
        self._stopped()

    def _lost_at_stop(self, closed: ConnectionClosed) -> None:
        """Closed by the server (or lost) while the stop waited for its replies: the connection lost, they with it."""
        self.counters.disconnects += 1
        self._fail("disconnect", closed)
        self._fail_pending(closed)

    def _stopped(self) -> None:
        """The end of a stop: replies still awaited count as in flight at the stop; the state is final."""
        self._correlator.discard_all()  # counted in replies_in_flight_at_stop
        self._end_receives(None)
        if self.state is not ConnectionState.FAILED:
            self._set_state(ConnectionState.CLOSED)

    def _receive_until_closed(self, connection: Connection) -> None:
        """Receive the last replies and the close; then wake a drain waiting for replies that cannot come."""
        connection.receive_forever()
        self._drained.set()

    # Bookkeeping -------------------------------------------------------------

    def _set_state(self, state: ConnectionState) -> None:
        if state is not self.state:
            self._counters_state(self.state, state)
            self.state = state

    def _counters_state(self, old: ConnectionState | None, new: ConnectionState) -> None:
        counters = self.counters
        if old is not None and old is not ConnectionState.CLOSED:
            setattr(counters, old.value, getattr(counters, old.value) - 1)
        if new is not ConnectionState.CLOSED:
            setattr(counters, new.value, getattr(counters, new.value) + 1)
        if new is ConnectionState.OPEN and counters.open > counters.peak_open:
            counters.peak_open = counters.open  # at each open: no connection is too short-lived to count


def overrides_hook(user: Any, hook: str) -> bool:
    """Whether ``user``'s class has a ``hook`` (``on_start``, ``on_stop``) of its own, not Locust's empty one."""
    return getattr(type(user), hook) is not getattr(User, hook)
