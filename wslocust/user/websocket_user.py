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
push       delivery of a server push that carries its send time, from that time to its
           arrival (see :meth:`~WebSocketUser.push_sent_at`)
receive    a :meth:`~WebSocketUser.receive` call (or the ``name`` it was given), from the call to
           the arrival of the message it waited for
send       a plain :meth:`~WebSocketUser.send` that could not be sent
           (failure only; successful sends are counted, not timed)
========== =================================================================

The class is the public API (settings, :meth:`~WebSocketUser.send`, :meth:`~WebSocketUser.echo`,
:meth:`~WebSocketUser.request`, :meth:`~WebSocketUser.receive`, the hooks) and Locust's entry points;
its parts live beside it:

- :mod:`wslocust.user.keeper`: connect, reconnect with backoff, churn, stop;
- :mod:`wslocust.user.connecting`: one connection attempt and its ``connect_headers`` hook;
- :mod:`wslocust.user.receiving`: :meth:`~WebSocketUser.receive`, waiting for a particular message;
- :mod:`wslocust.user.pings`: client pings, each pong timed;
- :mod:`wslocust.user.messaging`: sending, waiting for replies, dispatching received messages;
- :mod:`wslocust.user.correlation`: which reply answers which request, and what came back wrong (no I/O);
- :mod:`wslocust.user.ticks`: the periodic messages and the in-flight window of a user without tasks.
- :mod:`wslocust.user.pushes`: the delivery latency of server pushes that carry their send time.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import gevent
import gevent.event
from gevent import GreenletExit
from locust.exception import StopUser

from wslocust.exceptions import ConnectionClosed
from wslocust.locust_compat import SessionUser
from wslocust.run.counters import WsCounters
from wslocust.run.state import run_state
from wslocust.transport.connection import Connection
from wslocust.user.correlation import Correlator
from wslocust.user.held import HeldConnection
from wslocust.user.keeper import overrides_hook
from wslocust.user.pushes import sent_at_field
from wslocust.user.receiving import Receiving
from wslocust.user.state import ConnectionState

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["ConnectionState", "WebSocketUser"]

logger = logging.getLogger(__name__)


class WebSocketUser(HeldConnection, Receiving, SessionUser):
    """
    A Locust user that holds one WebSocket connection to ``host``.

    The connection opens before ``on_start`` and is kept open: when the server
    or the network drops it, the user reconnects with exponential backoff and
    jitter. A user without tasks just holds the connection and sends one
    message every ``message_interval`` seconds on an open-loop schedule, as
    the original Node.js suite does; define ``@task`` methods to script other
    traffic with :meth:`send`, :meth:`echo`, :meth:`request` and :meth:`receive`.

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

    tls_ca_file: str | None = None
    """PEM file of the CA certificates the server's certificate must chain to for ``wss://``, instead of the
    system's (a private CA). ``--ws-tls-ca-file`` / ``WS_TLS_CA_FILE`` overrides it."""

    tls_cert_file: str | None = None
    """PEM file of the client certificate (chain) presented when the server asks for one (mutual TLS); it may
    hold the key too. ``--ws-tls-cert-file`` / ``WS_TLS_CERT_FILE`` overrides it."""

    tls_key_file: str | None = None
    """PEM file of the unencrypted private key of ``tls_cert_file``, when that file does not hold it.
    ``--ws-tls-key-file`` / ``WS_TLS_KEY_FILE`` overrides it. The three files are checked at start: a missing,
    unreadable or malformed one, or a key that is not the certificate's, stops the run with one line."""

    proxy: str | None = None
    """An HTTP proxy to tunnel through, ``http://[user:password@]host:port`` (CONNECT)."""

    max_message_size: int | None = 2**20
    """Largest message accepted from the server, in bytes; larger ones close the connection with 1009."""

    validate_utf8: bool = True
    """Check that text messages are valid UTF-8 (RFC 6455 §8.1); invalid ones close with 1007."""

    close_timeout: float = 2.0
    """Seconds a stopping user waits for in-flight replies and for the server's close frame."""

    kernel_timestamps: bool = True
    """Time replies, pongs and the upgrade response from the kernel's receive timestamps (Linux
    ``SO_TIMESTAMPNS``): when their bytes reached the host, not when the event loop got round to reading
    them (``docs/measurement.md``). False: from the read, and ``wss://`` through ``ssl.SSLSocket``."""

    # Compression ------------------------------------------------------------

    compression: str | None = None
    """``"deflate"``: offer permessage-deflate (RFC 7692) in every upgrade, as browsers do. When the server
    accepts, every message is compressed both ways (``connection.compression`` says with what parameters)
    and the results count the bytes on the wire beside the payload's. None: no offer.
    ``--ws-compression`` / ``WS_COMPRESSION`` (``deflate`` or ``off``) overrides it."""

    compression_window_bits: int = 15
    """The largest LZ77 window (9-15 bits) offered for both directions; smaller windows keep less memory per
    connection (zlib keeps about 2 ** (bits + 3) bytes per direction, 256 KiB at 15)."""

    compression_context_takeover: bool = True
    """Keep each direction's window from one message to the next (better compression of similar messages);
    False offers ``client_no_context_takeover; server_no_context_takeover``: each message compressed alone."""

    # Reconnection -----------------------------------------------------------

    reconnect: bool = True
    """Reconnect after a lost connection or a failed connect."""

    reconnect_delay: float = 2.0
    """Seconds before the first reconnect attempt; doubled at each further attempt."""

    reconnect_max_delay: float = 30.0
    """Upper bound of the backoff, in seconds."""

    max_reconnect_attempts: int = 5
    """Failed attempts in a row after which the user gives up (state ``failed``) and stops."""

    # Churn (wslocust.run.schedule / wslocust.integration.shapes) ------------------------------

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

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.connection: Connection | None = None
        """The current connection; replaced at each reconnect."""
        self.state = ConnectionState.CONNECTING
        """Where the connection is in its life."""
        self.counters: WsCounters = run_state(environment).counters
        """The WebSocket counters of this process, shared by its users."""
        self._fire = environment.events.request.fire
        # Successes straight into Locust's statistics while nothing else listens (see RequestLog).
        self._succeed = run_state(environment).request_log(environment).success
        self._correlator = Correlator(self.counters)
        self._ready = gevent.event.Event()  # first connect done, or given up
        self._open = gevent.event.Event()
        self._drained = gevent.event.Event()
        self._stopping = False
        self._session: gevent.Greenlet | None = None
        self._pongs: dict[bytes, tuple[float, gevent.event.AsyncResult]] = {}  # ping data -> (sent at, pong)
        self._receivers = []  # receive() calls waiting
        self._hub = gevent.get_hub()
        self._counters_state(None, ConnectionState.CONNECTING)
        self._holding = self.tasks == [WebSocketUser._hold_connection]
        self._init_ticks()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Locust merges the tasks of base classes into subclasses: keep the
        # built-in behaviour only for classes that define no task of their own.
        own = [t for t in cls.tasks if t is not WebSocketUser._hold_connection]
        cls.tasks = own or [WebSocketUser._hold_connection]

    # Hooks for subclasses ----------------------------------------------------

    def on_message(self, message: str | bytes) -> None:
        """
        Called with each message that answers no pending request and that no :meth:`receive` call
        took (a server push). It is already counted; override to react. Runs in the receiving
        greenlet: don't block.
        """

    def push_sent_at(self, message: str | bytes) -> float | None:
        """
        Return when the server (or the peer it relays) sent a pushed message, as that sender's
        ``time.time()`` in seconds, or None if the message does not say.

        Called with each message that answers no pending request (nor :meth:`receive`), before :meth:`on_message`;
        a time makes the push's delivery latency a ``push`` request. The default reads the
        ``"sent_at"`` number of a JSON object, which the reference server's broadcasts carry;
        a server that stamps its pushes elsewhere gets its own override, e.g.
        ``return json.loads(message)["ts"] / 1000`` for milliseconds. Exact on one host; across
        hosts as good as the two clocks agree. Runs in the receiving greenlet: keep it cheap.
        A hook that raises or returns anything but seconds is reported once, as a user error,
        and the user stops timing its pushes.
        """
        return sent_at_field(message)

    _push_timing_off = False
    """Set when :meth:`push_sent_at` failed: it is not called again for this user."""

    def reply_key(self, message: str | bytes) -> Hashable:
        """
        Return the correlation key of a received message, matched against the
        ``match`` of pending :meth:`request` calls. The default suits echo
        servers: the message itself. A JSON-RPC user would return its ``id``.
        An exception here makes the message unsolicited. :meth:`echo` does not
        use it: a message that is the payload of a pending echo answers that echo
        first, and only the other messages are passed here.
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
        while connection is not None:
            try:
                if type(payload) is str:
                    connection.send_text(payload)
                else:
                    connection.send_binary(payload)  # type: ignore[arg-type]
            except ConnectionClosed as exc:
                # Closing: the message goes on the next connection, or fails once with why this one ended.
                self._stop_sending_on(connection)
                connection = self._connection_for_send(name, refused=exc)
                continue
            self._count_sent(payload)
            return True
        return False

    def echo(self, payload: str | bytes | None = None, name: str = "echo", timeout: float | None = None) -> Any:
        """
        Send a message to an echo server and wait for it to come back.

        The reply is the first message equal to the payload, whatever :meth:`reply_key` does.

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
            correlator = self._correlator
            payload = correlator.next_payload(self.message_size)
            return self._round_trip(payload, payload, name, timeout, correlator.sequence, echo=True)
        return self._round_trip(payload, payload, name, timeout, 0, echo=True)

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
        return self._round_trip(payload, match, name, timeout, 0, echo=False)

    # Users without tasks -----------------------------------------------------

    def _hold_connection(self) -> None:
        """
        The task Locust sees in a user without tasks. It never runs: an event loop timer sends its
        periodic messages (:meth:`_tick`), which saves a greenlet, Locust's task loop and a wake-up per
        message; the event loop receives its connection (:meth:`holds_in_loop`), or else the user's own
        greenlet does.
        """

    # Connection life ---------------------------------------------------------

    _start_turn: Any = None
    """(burst, place) given by the start pacer when Locust started this user with others."""

    def starting(self) -> None:
        """In Locust's spawning loop: the user takes its turn in the burst it was started in."""
        self._start_turn = run_state(self.environment).start_pacer.join()

    def session(self) -> None:
        """Open the connection, run Locust's task loop while it lives, close it on stop."""
        if self._holding:
            self._hold()
            return
        self._session = gevent.spawn(self._keep_connected)
        try:
            self._ready.wait()
            if self.state is ConnectionState.FAILED:
                return
            self.run_tasks()
        finally:
            self._shutdown()

    def _hooks_may_block(self) -> bool:
        """Whether this class has hooks that may block while its connection is received or stopped."""
        return type(self).on_message is not WebSocketUser.on_message or overrides_hook(self, "on_stop")

    def _run_hook(self, hook: Any) -> None:
        try:
            hook()
        except (GreenletExit, StopUser):
            pass
        except Exception as exc:  # noqa: BLE001 - reported as Locust reports a failing on_start
            self._report_user_error(exc)

    # Bookkeeping -------------------------------------------------------------

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
