"""
:class:`WebSocketUser`: one Locust user holding one WebSocket connection.

This is the only layer that fires Locust events. Every event has
``request_type="WS"``; the names are:

========== =================================================================
connect    first connection of a user: TCP + TLS + upgrade time, or the error
reconnect  a later connection after the previous one was lost
echo       round trip of :meth:`~WebSocketUser.echo` and periodic messages,
           from the time the message was *scheduled* to be sent
ping       ping to pong round trip (when ``ping_interval`` is set)
disconnect the server or the network closed the connection (failure only)
send       a plain :meth:`~WebSocketUser.send` that could not be sent
           (failure only; successful sends are counted, not timed)
========== =================================================================
"""

from __future__ import annotations

import enum
import logging
import math
import random
import time
from collections.abc import Hashable, Sequence
from typing import Any, ClassVar

import gevent
import gevent.event
from gevent import GreenletExit
from locust import User
from locust.exception import StopUser
from locust.user.task import LOCUST_STATE_WAITING

from wslocust.codec.uri import WsURI, parse_uri
from wslocust.exceptions import (
    ConfigurationError,
    ConnectionClosed,
    ConnectTimeout,
    PingTimeout,
    ReceiveTimeout,
    WsLocustError,
    connection_closed,
)
from wslocust.integration import plugin, settings
from wslocust.run.counters import WsCounters
from wslocust.run.pacing import start_pacer
from wslocust.transport.connection import Connection, Proxy

__all__ = ["ConnectionState", "WebSocketUser"]

logger = logging.getLogger(__name__)

perf_counter = time.perf_counter

SEND_SLACK = 0.002
"""Seconds a periodic message may leave before or after its tick and still be timed from its
send: gevent's timers fire up to ~1 ms late (libev waits in whole milliseconds). A later send
means the generator fell behind; it is counted in ``sends_late`` and timed from its tick."""

TIMED_OUT_REMEMBERED = 10_000
"""Timed-out echoes per connection whose late reply is still recognised as late (not duplicated)."""


class ConnectionState(enum.Enum):
    """Where a user's connection is in its life."""

    CONNECTING = "connecting"
    OPEN = "open"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    """Gave up after ``max_reconnect_attempts``; the user stops."""
    CLOSED = "closed"


class _Pending:
    """A request waiting for its reply."""

    __slots__ = ("blocking", "done", "key", "later", "name", "reply", "scheduled_at", "sequence", "sleeper")

    def __init__(self, key: Hashable, name: str, scheduled_at: float, blocking: bool, sequence: int) -> None:
        self.key = key
        self.name = name
        self.scheduled_at = scheduled_at
        self.blocking = blocking
        """A :meth:`WebSocketUser.request` call waits for it (and times it out itself)."""
        self.sequence = sequence
        """The user's sequence number in the payload (default echo payloads), else 0."""
        self.done = False
        """Answered, or failed because the connection closed."""
        self.sleeper: Any = None
        """The greenlet switched out until ``done`` or the timeout."""
        self.reply: Any = None
        self.later: _Pending | None = None  # the next request waiting on the same key


class WebSocketUser(User):
    """
    A Locust user that holds one WebSocket connection to ``host``.

    The connection opens before ``on_start`` and is kept open: when the server
    or the network drops it, the user reconnects with exponential backoff and
    jitter. A user without tasks just holds the connection and sends one
    message every ``message_interval`` seconds on an open-loop schedule, as
    the original Node.js suite does; define ``@task`` methods to script other
    traffic with :meth:`send`, :meth:`echo` and :meth:`request`.

    Example::

        class ChatUser(WebSocketUser):
            headers = {"Authorization": "Bearer test-token"}

            @task
            def say_hello(self):
                self.echo("hello")
    """

    abstract = True

    host: str | None = None
    """Target URL, ``ws://`` or ``wss://``. Locust's ``--host`` overrides it; without either,
    ``WS_SERVER_URL`` is used, and without that the embedded reference server."""

    # Messages ---------------------------------------------------------------

    message_interval: float | None = None
    """Seconds between the periodic messages of a user without tasks. ``None`` takes the run's
    ``--message-interval`` / ``MESSAGE_INTERVAL`` (milliseconds, default 5000); 0 sends none."""

    in_flight: int = 0
    """A user without tasks keeps this many echoes in flight and sends the next one as soon as one
    is answered (closed loop: as fast as the server and the network go), instead of one every
    ``message_interval``. 0: the interval's schedule."""

    message_size: int = 64
    """Size in bytes of the periodic messages and of ``echo()`` without a payload."""

    reply_timeout: float = 10.0
    """Seconds to wait for an echo or a reply before counting it as failed."""

    # Connection -------------------------------------------------------------

    connect_timeout: float = 10.0
    """Seconds allowed for DNS, TCP connect, TLS and the upgrade together."""

    headers: ClassVar[dict[str, str] | None] = None
    """Extra upgrade request headers, e.g. ``{"Authorization": "Bearer ..."}``."""

    subprotocols: ClassVar[Sequence[str]] = ()
    """Subprotocols offered in ``Sec-WebSocket-Protocol``; the chosen one is ``connection.subprotocol``."""

    origin: str | None = None
    """Sent as the ``Origin`` header when set."""

    verify_tls: bool = True
    """Verify the server certificate for ``wss://``. Set False only for test servers: it is logged."""

    proxy: str | None = None
    """An HTTP proxy to tunnel through, ``http://[user:password@]host:port`` (CONNECT)."""

    max_message_size: int | None = 2**20
    """Largest message accepted from the server, in bytes; larger ones close the connection with 1009."""

    validate_utf8: bool = True
    """Check that text messages are valid UTF-8 (RFC 6455 §8.1); invalid ones close with 1007."""

    close_timeout: float = 2.0
    """Seconds a stopping user waits for in-flight replies and for the server's close frame."""

    # Reconnection -----------------------------------------------------------

    reconnect: bool = True
    """Reconnect after a lost connection or a failed connect."""

    reconnect_delay: float = 2.0
    """Seconds before the first reconnect attempt; doubled at each further attempt."""

    reconnect_max_delay: float = 30.0
    """Upper bound of the backoff, in seconds."""

    max_reconnect_attempts: int = 5
    """Failed attempts in a row after which the user gives up (state ``failed``) and stops."""

    # Churn (wslocust.integration.settings / wslocust.integration.shapes) ------------------------------

    connection_lifetime: float | None = None
    """Seconds each connection lives before the user closes it cleanly (counted in ``closed``,
    not as a failure) and opens a new one at once (a ``reconnect``); None: forever. A shape's
    ``connection_lifetime`` (:class:`~wslocust.integration.shapes.Churn`) takes precedence. The first
    connection of each user lives a random part of it, so that users do not churn in step."""

    # Ping -------------------------------------------------------------------

    ping_interval: float = 0.0
    """Seconds between client pings (0: none). Each pong is timed as ``ping``."""

    ping_timeout: float = 10.0
    """Seconds without a pong after which the connection is declared dead and dropped."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        self.connection: Connection | None = None
        """The current connection; replaced at each reconnect."""
        self.state = ConnectionState.CONNECTING
        self.counters: WsCounters = plugin.counters(environment)
        self._fire = environment.events.request.fire
        self._pending: dict[Hashable, _Pending] = {}
        self._sequence = 0
        # Message integrity of the default echo payloads, per connection.
        self._highest_replied = 0
        self._timed_out_sequences: dict[int, bool] = {}  # insertion-ordered: the oldest go first
        self._ready = gevent.event.Event()  # first connect done, or given up
        self._open = gevent.event.Event()
        self._drained = gevent.event.Event()
        self._stopping = False
        self._session: gevent.Greenlet | None = None
        self._pongs: dict[bytes, gevent.event.AsyncResult] = {}
        self._hub = gevent.get_hub()
        self._reply_timer: Any = None
        self._reply_timer_limit = 0.0
        self._counters_state(None, ConnectionState.CONNECTING)
        self._holding = self.tasks == [WebSocketUser._hold_connection]
        self._tick_timer: Any = None
        self._tick_repeat = 0.0
        if self._holding:
            interval = self._message_interval()
            self._interval = interval
            self._next_tick = perf_counter() + random.uniform(0, interval or 3600.0)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Locust merges the tasks of base classes into subclasses: keep the
        # built-in behaviour only for classes that define no task of their own.
        own = [t for t in cls.tasks if t is not WebSocketUser._hold_connection]
        cls.tasks = own or [WebSocketUser._hold_connection]

    # Hooks for subclasses ----------------------------------------------------

    def on_message(self, message: str | bytes) -> None:
        """
        Called with each message that answers no pending request (a server push).
        It is already counted; override to react. Runs in the receiving greenlet: don't block.
        """

    def reply_key(self, message: str | bytes) -> Hashable:
        """
        Return the correlation key of a received message, matched against the
        ``match`` of pending :meth:`request` calls. The default suits echo
        servers: the message itself. A JSON-RPC user would return its ``id``.
        An exception here makes the message unsolicited.
        """
        return message

    # Sending -----------------------------------------------------------------

    def send(self, payload: str | bytes, name: str = "send") -> bool:
        """
        Send a text (``str``) or binary (``bytes``) message without waiting.

        Counted in messages and bytes sent, not timed. Returns False, and
        records a ``name`` failure, when the connection is not open.
        """
        connection = self._connection_for_send(name)
        if connection is None:
            return False
        try:
            if type(payload) is str:
                connection.send_text(payload)
            else:
                connection.send_binary(payload)  # type: ignore[arg-type]
        except ConnectionClosed as exc:
            self._fail(name, exc)
            return False
        counters = self.counters
        counters.messages_sent += 1
        counters.bytes_sent += _payload_size(payload)
        return True

    def echo(self, payload: str | bytes | None = None, name: str = "echo", timeout: float | None = None) -> Any:
        """
        Send a message to an echo server and wait for it to come back.

        Args:
            payload: the message; by default ``message_size`` bytes of text
                that start with a per-user sequence number, so that many
                echoes can be in flight at once.
            name: the name in Locust's statistics.
            timeout: seconds to wait; default ``reply_timeout``.

        Returns:
            The echoed message, or None if it failed (the failure is recorded).
        """
        if payload is None:
            payload = self._next_payload()
            return self._round_trip(payload, payload, name, timeout, self._sequence)
        return self._round_trip(payload, payload, name, timeout, 0)

    def request(
        self, payload: str | bytes, match: Hashable, name: str = "request", timeout: float | None = None
    ) -> Any:
        """
        Send a message and wait for the reply whose :meth:`reply_key` equals ``match``.

        The round trip is timed from now, the moment the message was due,
        whatever the send itself costs. A timeout is a failure of its own
        (:class:`~wslocust.exceptions.ReceiveTimeout`).

        Returns:
            The reply, or None if it failed (the failure is recorded).
        """
        return self._round_trip(payload, match, name, timeout, 0)

    def _round_trip(
        self, payload: str | bytes, match: Hashable, name: str, timeout: float | None, sequence: int
    ) -> Any:
        pending = self._start_request(payload, match, name, perf_counter(), True, sequence)
        if pending is None:
            return None
        limit = self.reply_timeout if timeout is None else timeout
        if not pending.done:
            self._sleep_until_done(pending, limit)
        if pending.done:
            return pending.reply
        if self._forget(pending):
            self._time_out(pending, limit)
        return None

    def _time_out(self, pending: _Pending, limit: float) -> None:
        self.counters.replies_timed_out += 1
        if pending.sequence:
            timed_out = self._timed_out_sequences
            timed_out[pending.sequence] = True
            if len(timed_out) > TIMED_OUT_REMEMBERED:
                del timed_out[next(iter(timed_out))]
        self._fail(pending.name, ReceiveTimeout(f"no reply within {limit:g} s"), response_time=limit * 1000)

    def _sleep_until_done(self, pending: _Pending, limit: float) -> None:
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
        pending.sleeper = gevent.getcurrent()
        timer.again(self._wake, pending)
        try:
            self._hub.switch()
        finally:
            timer.stop()
            pending.sleeper = None

    @staticmethod
    def _wake(pending: _Pending) -> None:
        """Resume the greenlet sleeping on ``pending`` (runs in the hub; later calls do nothing)."""
        sleeper = pending.sleeper
        if sleeper is not None:
            pending.sleeper = None
            sleeper.switch()

    def _settle(self, pending: _Pending) -> None:
        """Mark ``pending`` done and wake its sleeper, if any, from the hub."""
        pending.done = True
        if pending.sleeper is not None:
            self._hub.loop.run_callback(self._wake, pending)

    def _start_request(
        self,
        payload: str | bytes,
        match: Hashable,
        name: str,
        scheduled_at: float,
        blocking: bool,
        sequence: int = 0,
        block: bool = True,
    ) -> _Pending | None:
        connection = self._connection_for_send(name)
        if connection is None:
            return None
        pending = _Pending(match, name, scheduled_at, blocking, sequence)
        pendings = self._pending
        first = pendings.get(match)
        if first is None:
            pendings[match] = pending
        else:
            while first.later is not None:
                first = first.later
            first.later = pending
        try:
            if type(payload) is str:
                connection.send_text(payload, block=block)
            else:
                connection.send_binary(payload, block=block)  # type: ignore[arg-type]
        except ConnectionClosed as exc:
            # Never sent, so not lost either: a failure of its own.
            self._forget(pending)
            self._fail(name, exc)
            return None
        counters = self.counters
        counters.messages_sent += 1
        counters.bytes_sent += _payload_size(payload)
        return pending

    def _forget(self, pending: _Pending) -> bool:
        """Remove a pending request; False if it was already answered or failed."""
        pendings = self._pending
        first = pendings.get(pending.key)
        if first is None:
            return False
        if first is pending:
            if pending.later is None:
                del pendings[pending.key]
            else:
                pendings[pending.key] = pending.later
            return True
        while first.later is not None:
            if first.later is pending:
                first.later = pending.later
                return True
            first = first.later
        return False

    def _connection_for_send(self, name: str) -> Connection | None:
        connection = self.connection
        if self.state is ConnectionState.OPEN and connection is not None:
            return connection
        # Wait out a reconnect rather than failing every message sent meanwhile.
        if self._open.wait(self.connect_timeout) and self.connection is not None:
            return self.connection
        last = self.connection.closed if self.connection is not None else None
        self._fail(name, last or connection_closed(1006))
        return None

    def _next_payload(self) -> str:
        self._sequence += 1
        prefix = f"{self._sequence}:"
        return prefix + "x" * max(0, self.message_size - len(prefix))

    # Periodic messages (users without tasks) ---------------------------------

    def _message_interval(self) -> float:
        return self._unscaled_message_interval() * settings.time_scale(self.environment)

    def _unscaled_message_interval(self) -> float:
        configured = plugin.message_interval(self.environment)
        if configured is not None:
            return configured
        if self.message_interval is not None:
            if self.message_interval < 0:
                raise ConfigurationError(
                    f"{type(self).__name__}.message_interval: {self.message_interval!r} must be >= 0 seconds"
                )
            return float(self.message_interval)
        return plugin.DEFAULT_MESSAGE_INTERVAL_MS / 1000

    # The shape's schedule (wslocust.integration.settings): set by _follow_schedule.
    _schedule_ends = math.inf
    """When the current stage's message interval ends: the user wakes up then to follow the next."""
    _own_interval: float | None = None

    def _follow_schedule(self, now: float) -> None:
        """Take the message interval of the shape's current stage, if a shape published one."""
        schedule = settings.schedule(self.environment)
        if schedule is None:
            return
        interval, self._schedule_ends = schedule.at(now)
        if interval is None:
            if self._own_interval is None:
                self._own_interval = self._message_interval()
            interval = self._own_interval
        if interval != self._interval:
            self._interval = interval
            # A new phase for each user, so that a stage change is no thundering herd.
            self._next_tick = now + random.uniform(0, interval) if interval > 0 else now

    def _hold_connection(self) -> None:
        """
        The task Locust sees in a user without tasks. It never runs: such a user's greenlet
        holds the connection itself and an event loop timer sends its periodic messages
        (:meth:`_tick`), which saves a greenlet, Locust's task loop and a wake-up per message.
        """

    def _start_ticking(self) -> None:
        now = perf_counter()
        if self.in_flight > 0:
            self._fill_window()
            # Only to time out replies that never come (no tick sends anything).
            self._tick_timer = self._hub.loop.timer(self.reply_timeout / 2, self.reply_timeout / 2)
            self._tick_repeat = -1.0
            self._tick_timer.start(self._tick, update=True)
            return
        self._follow_schedule(now)
        # Ticks missed while disconnected are not sent late in a burst.
        self._next_tick = max(self._next_tick, now)
        self._arm_tick(now)

    def _stop_ticking(self) -> None:
        timer, self._tick_timer = self._tick_timer, None
        if timer is not None:
            timer.close()

    def _arm_tick(self, now: float) -> None:
        if self._tick_timer is not None:
            self._tick_timer.close()
        # Also wake at the end of the shape's stage, to follow the next one's interval.
        due = min(self._next_tick, self._schedule_ends)
        # A repeating timer, while the interval holds: libev re-arms it from its previous
        # expiry, exactly where the next tick is, with no call from here.
        repeat = self._interval if due == self._next_tick and self._interval > 0 else 0.0
        self._tick_timer = self._hub.loop.timer(max(0.0, due - now), repeat)
        self._tick_repeat = repeat
        self._tick_timer.start(self._tick, update=True)

    def _tick(self) -> None:
        """A periodic message is due (runs in the event loop: it must never block)."""
        if self.in_flight > 0:
            try:
                self._expire_overdue(perf_counter())
                self._fill_window()
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the event loop
                self._report_user_error(exc)
            return
        try:
            steady = self._send_periodic()
        except Exception as exc:  # noqa: BLE001 - a bug must not stop the ticks (nor the event loop)
            self._report_user_error(exc)
            steady = False
        if self._tick_timer is None:
            return
        if self.state is not ConnectionState.OPEN:
            self._stop_ticking()  # the next connection starts them again
        elif not (steady and self._tick_repeat == self._interval and self._next_tick < self._schedule_ends):
            self._arm_tick(perf_counter())

    def _send_periodic(self) -> bool:
        """Send the message of the tick that is due; True if the schedule simply moved on by one interval."""
        now = perf_counter()
        interval = self._interval
        self._follow_schedule(now)
        if self._interval <= 0:
            self._next_tick = now + 3600.0
            return False
        # Open loop: the schedule advances whether or not replies came back.
        scheduled_at = self._next_tick
        if scheduled_at > now + SEND_SLACK:
            return False  # woken for a stage boundary, or early
        self._next_tick = scheduled_at + self._interval
        self._expire_overdue(now)
        if self.state is not ConnectionState.OPEN:
            return False
        payload = self._next_payload()
        sent_at = perf_counter()
        if sent_at - scheduled_at > SEND_SLACK:
            # The generator fell behind its schedule: the wait counts as latency, as the
            # message's sender would have seen it (no coordinated omission).
            self.counters.sends_late += 1
        else:
            # Within the event loop's timer granularity of the tick: time the server, not the timer.
            scheduled_at = sent_at
        self._start_request(payload, payload, "echo", scheduled_at, False, self._sequence, block=False)
        return interval == self._interval

    def _fill_window(self) -> None:
        """Send echoes until ``in_flight`` are waiting (never blocks)."""
        while len(self._pending) < self.in_flight and self.state is ConnectionState.OPEN and not self._stopping:
            payload = self._next_payload()
            if (
                self._start_request(payload, payload, "echo", perf_counter(), False, self._sequence, block=False)
                is None
            ):
                return

    def _expire_overdue(self, now: float) -> None:
        timeout = self.reply_timeout
        pendings = self._pending
        while pendings:
            oldest = next(iter(pendings.values()))
            if now - oldest.scheduled_at < timeout:
                return
            if oldest.blocking:
                return  # a blocking request() times itself out
            self._forget(oldest)
            self._time_out(oldest, timeout)

    # Receiving (runs in the session greenlet) --------------------------------

    def _on_message(self, message: str | bytes, received_at: float) -> None:
        counters = self.counters
        counters.messages_received += 1
        size = _payload_size(message)
        counters.bytes_received += size
        pendings = self._pending
        if pendings:
            try:
                key = self.reply_key(message)
                pending = pendings.pop(key, None)
            except Exception:  # noqa: BLE001 - a message reply_key cannot parse is a server push
                pending = None
            if pending is not None:
                if pending.later is not None:
                    pendings[key] = pending.later
                sequence = pending.sequence
                if sequence:
                    if sequence < self._highest_replied:
                        counters.replies_out_of_order += 1
                    else:
                        self._highest_replied = sequence
                self._fire(
                    request_type="WS",
                    name=pending.name,
                    response_time=(received_at - pending.scheduled_at) * 1000,
                    response_length=size,
                    exception=None,
                    context={},
                )
                if pending.blocking:
                    pending.reply = message
                    self._settle(pending)
                elif self._holding and self.in_flight > 0 and not self._retiring:
                    self._fill_window()  # closed loop: the next one leaves at once
                if not pendings and (self._stopping or self._retiring):
                    self._drained.set()
                return
        if type(message) is str and message[:1].isdigit() and self._is_late_or_duplicate(message):
            return
        counters.unsolicited_received += 1
        try:
            self.on_message(message)
        except Exception as exc:  # noqa: BLE001 - a bug in a hook must not take the connection down
            self._report_user_error(exc)

    def _is_late_or_duplicate(self, message: str) -> bool:
        """Count an echo of one of our default payloads that answers no pending request."""
        head, colon, padding = message.partition(":")
        if not colon or not head.isdigit() or padding.strip("x"):
            return False
        sequence = int(head)
        if not 0 < sequence <= self._sequence or len(message) != max(self.message_size, len(head) + 1):
            return False
        if self._timed_out_sequences.pop(sequence, False):
            self.counters.replies_late += 1
        else:
            self.counters.replies_duplicated += 1
        return True

    def _on_pong(self, data: bytes, received_at: float) -> None:
        waiter = self._pongs.pop(data, None)
        if waiter is not None:
            waiter.set(received_at)

    # Connection life ---------------------------------------------------------

    _start_turn: Any = None
    """(burst, place) given by the start pacer when Locust started this user with others."""

    def start(self, group: Any) -> Any:
        """Locust's ``User.start``; the user also takes its turn in the burst it was started in."""
        self._start_turn = start_pacer(self.environment).join()
        return super().start(group)

    def run(self) -> None:
        """Open the connection, run Locust's task loop while it lives, close it on stop."""
        if self._holding:
            self._hold()
            return
        self._session = gevent.spawn(self._keep_connected)
        try:
            self._ready.wait()
            if self.state is ConnectionState.FAILED:
                return
            super().run()
        finally:
            self._shutdown()

    def _hold(self) -> None:
        """A user without tasks: this greenlet is the session; timers send the messages."""
        # Locust stops a waiting user at once, as it does between two tasks.
        self._state = LOCUST_STATE_WAITING
        self._session = gevent.getcurrent()
        try:
            self._keep_connected()
        except GreenletExit:
            pass  # Locust stopped the user: _shutdown says goodbye
        finally:
            self._shutdown()

    def _run_hook(self, hook: Any) -> None:
        try:
            hook()
        except (GreenletExit, StopUser):
            pass
        except Exception as exc:  # noqa: BLE001 - reported as Locust reports a failing on_start
            self._report_user_error(exc)

    def _target(self) -> WsURI:
        return parse_uri(self.host or plugin.default_target(self.environment))

    def _keep_connected(self) -> None:
        failed_attempts = 0
        first = True
        try:
            uri = self._target()
            proxy = Proxy.from_url(self.proxy) if self.proxy else None
        except ConfigurationError as exc:
            self._fail("connect", exc)
            self._give_up()
            return
        headers = list((self.headers or {}).items())
        if self._start_turn is not None:
            # Users started together connect one after another, not all in the same instant.
            start_pacer(self.environment).wait_turn(*self._start_turn)
        while not self._stopping:
            name = "connect" if first else "reconnect"
            connection = Connection(
                uri,
                on_message=self._on_message,
                on_pong=self._on_pong,
                max_message_size=self.max_message_size,
                validate_utf8=self.validate_utf8,
                close_timeout=self.close_timeout,
            )
            counters = self.counters
            counters.connect_attempts += 1
            started = perf_counter()
            self._opening = True
            try:
                self._open_connection(connection, headers, proxy)
            except WsLocustError as exc:
                counters.connects_failed += 1
                self._fail(name, exc, response_time=(perf_counter() - started) * 1000)
                failed_attempts += 1
                if self._stopping:
                    return
                if not self.reconnect or failed_attempts > self.max_reconnect_attempts:
                    self._give_up()
                    return
                self._set_state(ConnectionState.RECONNECTING if not first else ConnectionState.CONNECTING)
                self._backoff(failed_attempts)
                continue
            finally:
                self._opening = False
            elapsed = (perf_counter() - started) * 1000
            counters.connects_succeeded += 1
            if not first:
                counters.reconnects += 1
            self._fire(
                request_type="WS", name=name, response_time=elapsed, response_length=0, exception=None, context={}
            )
            first = False
            failed_attempts = 0
            self._highest_replied = 0
            self._timed_out_sequences.clear()  # their replies cannot come on a new connection
            self.connection = connection
            self._set_state(ConnectionState.OPEN)
            self._open.set()
            self._ready.set()
            if self._stopping:  # stopped during the upgrade (see _shutdown): counted, then closed
                connection.close(timeout=self.close_timeout)
                return
            if self._holding:
                if name == "connect":
                    gevent.spawn(self._run_hook, self.on_start)  # it may wait for replies: not in the receiver
                self._start_ticking()
            pinger = gevent.spawn(self._ping_forever, connection) if self.ping_interval > 0 else None
            retirer = self._retire_later(connection, name == "connect")
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
            self._open.clear()
            if self._stopping:
                return
            if self._retiring:  # closed by _retire: not a failure; reconnect at once
                self._retiring = False
                counters.closed += 1
                self._fail_pending(closed)
                continue
            counters.disconnects += 1
            self._fail("disconnect", closed)
            self._fail_pending(closed)
            if not self.reconnect:
                self._give_up()
                return
            self._set_state(ConnectionState.RECONNECTING)
            self._backoff(1)

    def _open_connection(self, connection: Connection, headers: list[tuple[str, str]], proxy: Proxy | None) -> None:
        options = {
            "timeout": self.connect_timeout,
            "headers": headers,
            "subprotocols": self.subprotocols,
            "origin": self.origin,
            "verify_tls": self.verify_tls,
            "source_address": plugin.next_source_address(self.environment),
            "proxy": proxy,
        }
        if self._session is not gevent.getcurrent() or not self._holding:
            connection.open(**options)  # _shutdown lets an upgrade under way finish
            return
        # This greenlet is the user's own, which Locust may kill at any time. Killed half-way
        # through an upgrade, the server would count a connection that the user never did:
        # the upgrade runs in a greenlet of its own and is let finish.
        opener = gevent.spawn(_returning_errors, connection.open, options)
        try:
            opener.join()
        except GreenletExit:
            self._stopping = True
            opener.join(self.close_timeout)
            if not opener.ready():
                opener.kill()
        error = opener.value if opener.ready() else GreenletExit()
        if isinstance(error, GreenletExit):  # the upgrade did not finish in close_timeout: a failed attempt
            raise ConnectTimeout(f"stopped during the upgrade, after {self.close_timeout:g} s")
        if error is not None:
            raise error

    def _backoff(self, attempt: int) -> None:
        delay = min(self.reconnect_max_delay, self.reconnect_delay * 2 ** (attempt - 1))
        delay *= settings.time_scale(self.environment)
        gevent.sleep(delay / 2 + random.uniform(0, delay / 2))

    # Connection lifetime (churn) ----------------------------------------------

    _retiring = False
    """True from the end of a connection's lifetime until the next connection opens."""
    _opening = False
    """True while the session greenlet is in ``Connection.open()``."""

    def _retire_later(self, connection: Connection, first: bool) -> gevent.Greenlet | None:
        schedule = settings.schedule(self.environment)
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
        if self._pending:
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
        pendings, self._pending = self._pending, {}
        for first in pendings.values():
            pending: _Pending | None = first
            while pending is not None:
                self.counters.replies_lost += 1
                self._fail(pending.name, closed)
                if pending.blocking:
                    self._settle(pending)
                pending = pending.later

    def _ping_forever(self, connection: Connection) -> None:
        sequence = 0
        while True:
            gevent.sleep(self.ping_interval)
            sequence += 1
            data = sequence.to_bytes(8, "big")
            pong = gevent.event.AsyncResult()
            self._pongs[data] = pong
            sent_at = perf_counter()
            try:
                connection.send_ping(data)
            except ConnectionClosed:
                return
            received_at = pong.wait(self.ping_timeout)
            self._pongs.pop(data, None)
            if received_at is None:
                self._fail("ping", PingTimeout(f"no pong within {self.ping_timeout:g} s"))
                connection.abort()  # the session greenlet sees the close and reconnects
                return
            self._fire(
                request_type="WS",
                name="ping",
                response_time=(received_at - sent_at) * 1000,
                response_length=0,
                exception=None,
                context={},
            )

    def _shutdown(self) -> None:
        self._stopping = True
        self._stop_ticking()
        connection = self.connection
        session = self._session
        receiver = None
        if session is gevent.getcurrent():
            # A user without tasks: this greenlet received until Locust stopped it. Another
            # one receives the last replies and the close while on_stop runs and we drain.
            if connection is not None and connection.closed is None:
                receiver = gevent.spawn(connection.receive_forever)
            if self.state is not ConnectionState.FAILED:
                self._run_hook(self.on_stop)
        if connection is not None and connection.closed is None:
            if self._pending:
                self._drained.clear()
                self._drained.wait(self.close_timeout)
            connection.close(timeout=self.close_timeout)
        if receiver is not None:
            receiver.kill(block=True)
        if session is not None and not session.dead and session is not gevent.getcurrent():
            if self._opening:
                # Let an upgrade under way finish: killed half-way, the server would count a
                # connection that the user never did (a churning run stops in many upgrades).
                session.join(self.close_timeout)
            session.kill(block=True)
        in_flight = sum(1 for _ in self._iter_pending())
        self._pending = {}
        self.counters.replies_in_flight_at_stop += in_flight
        if self.state is not ConnectionState.FAILED:
            self._set_state(ConnectionState.CLOSED)
            if self.connection is not None:
                self.counters.closed += 1

    def _iter_pending(self) -> Any:
        for first in self._pending.values():
            pending: _Pending | None = first
            while pending is not None:
                yield pending
                pending = pending.later

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

    def _report_user_error(self, exception: Exception) -> None:
        logger.error("%s in %s: %s", type(exception).__name__, type(self).__name__, exception, exc_info=exception)
        self.environment.events.user_error.fire(user_instance=self, exception=exception, tb=exception.__traceback__)

    def _fail(self, name: str, exception: Exception, response_time: float | None = None) -> None:
        self._fire(
            request_type="WS",
            name=name,
            response_time=response_time,
            response_length=0,
            exception=exception,
            context={},
        )


def _returning_errors(call: Any, options: dict[str, Any]) -> BaseException | None:
    """Run ``call(**options)`` in a greenlet and return its exception: gevent would print it."""
    try:
        call(**options)
    except Exception as exc:  # noqa: BLE001 - handed to the waiting greenlet, which raises it
        return exc
    return None


def _payload_size(payload: str | bytes) -> int:
    # isascii() is O(1) on str: most text needs no encoding to be measured.
    if type(payload) is str and not payload.isascii():
        return len(payload.encode())
    return len(payload)
