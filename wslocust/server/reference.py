"""
The reference server: the HTTP routes, the echo loop, broadcasts, faults and the drain.

It echoes every message back and counts exactly what it did, so that the load
tester's figures can be checked against it. :func:`create_server` makes one.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.pool
import gevent.queue
from gevent import ssl as gevent_ssl
from gevent.event import Event

from .config import FAULTS_PATH, HEALTH_PATH, STATS_PATH, ServerConfig
from .connection import AcceptedConnection, QueuedClose
from .control import control_token_for, is_authorized, parse_fault_query
from .counters import ServerCounters
from .gevent_websocket import REFUSED_KEY, ServerHandler, ServerWebSocket
from .listener import Listener, listen
from .refusals import UpgradeGate
from .responses import respond, respond_json

__all__ = ["ReferenceServer", "create_server"]


# One logger for the whole server package, named as it was before the split.
logger = logging.getLogger("wslocust.server")

#: How long the server waits for the client's reply to its close frame before
#: dropping the TCP connection (RFC 6455 §7.1.1 lets the server close first).
CLOSE_TIMEOUT = 5.0

#: How long SIGTERM/SIGINT give open connections to finish the close handshake.
DRAIN_TIMEOUT = 5.0

#: Most outgoing messages queued for one connection (delayed echoes and
#: broadcasts) before broadcasts to it are skipped.
MAX_QUEUED = 1000


class ReferenceServer:
    """
    A running (or ready to run) reference server; create it with :func:`create_server`.

    Call :meth:`start` then :meth:`stop` from the gevent hub's thread.
    """

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        """The configuration it was created with."""
        self.counters = ServerCounters()
        """Live counters; read them directly in-process, or over ``GET /stats``."""
        self._wsgi: Listener | None = None
        self._connections: set[AcceptedConnection] = set()
        self._upgrades = UpgradeGate(config.path, config.refuse_fraction, self.counters)
        self._started_at = 0.0
        self._control_token: str | None = None
        self._broadcaster: gevent.Greenlet | None = None
        self._stopping = False
        self._drained = Event()
        self._stopped = Event()

    # Lifecycle

    def start(self) -> None:
        """
        Bind, listen and start accepting; returns at once.

        Raises:
            OSError: the address cannot be bound (in use, not local...).
            ConfigurationError: ``reuse_port`` is not supported here.
        """
        listener = listen(self.config.host, self.config.port, self.config.reuse_port)
        # From the address actually bound: a host name may resolve to loopback or not.
        self._control_token = control_token_for(self.config.control_token, str(listener.getsockname()[0]))
        # A pool (unbounded) so that stop() can wait for and kill the handlers.
        self._wsgi = Listener(
            listener,
            self._application,
            upgrade_gate=self._upgrades,
            counters=self.counters,
            max_message_size=self.config.max_message_size,
            handshake_timeout=self.config.handshake_timeout,
            handler_class=ServerHandler,
            spawn=gevent.pool.Pool(),
            log=None,
            **self._tls_arguments(),
        )
        self._wsgi.start()
        self._started_at = time.monotonic()
        if self.config.broadcast_interval_ms:
            self._broadcaster = gevent.spawn(self._broadcast_loop)

    def _tls_arguments(self) -> dict[str, Any]:
        if not self.config.certfile:
            return {}
        # gevent's context, whether or not the standard library is patched (``wslocust serve`` does not patch it):
        # a stdlib context would do each TLS handshake blocking, one silent client stalling every other.
        defaults = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context = gevent_ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.options = defaults.options
        context.minimum_version = defaults.minimum_version
        context.load_cert_chain(self.config.certfile, self.config.keyfile)
        return {"ssl_context": context}

    def serve_forever(self) -> None:
        """Start if needed, then block until :meth:`stop` has finished."""
        if self._wsgi is None:
            self.start()
        self._stopped.wait()

    def stop(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """
        Drain and stop: stop accepting, close every open connection with 1001
        "going away", wait up to ``timeout`` seconds for the close handshakes,
        then end whatever is left. Calling it again waits for the first call.
        """
        if self._stopping:
            self._stopped.wait()
            return
        self._stopping = True
        deadline = time.monotonic() + timeout
        if self._broadcaster is not None:
            self._broadcaster.kill()
        if self._wsgi is None:
            self._stopped.set()
            return
        self._wsgi.close()
        # One greenlet per connection: a client that does not read must not
        # hold up the close frames of the others.
        for connection in list(self._connections):
            gevent.spawn(self._close_connection, connection, 1001, "going away", timeout)
        if self._connections:
            self._drained.wait(max(0.0, deadline - time.monotonic()))
        # Handlers still running (clients that ignored the close, idle HTTP
        # keep-alive) are killed; their cleanup still counts them as closed.
        self._wsgi.stop(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        self._stopped.set()

    # Addresses and statistics

    @property
    def port(self) -> int:
        """The port actually listened on (useful with ``port=0``)."""
        if self._wsgi is None:
            raise RuntimeError("the server is not started")
        return int(self._wsgi.server_port)

    @property
    def url(self) -> str:
        """The WebSocket URL, e.g. ``ws://127.0.0.1:3003/ws``."""
        scheme = "wss" if self.config.certfile else "ws"
        return f"{scheme}://{self._authority()}{self.config.path}"

    @property
    def stats_url(self) -> str:
        """The statistics URL, e.g. ``http://127.0.0.1:3003/stats``."""
        scheme = "https" if self.config.certfile else "http"
        return f"{scheme}://{self._authority()}{STATS_PATH}"

    @property
    def control_token(self) -> str | None:
        """The token ``POST /faults`` requires once started: the configured one, one generated
        because the server listens beyond loopback, or None (loopback, none configured)."""
        return self._control_token

    @property
    def control_token_generated(self) -> bool:
        """True if :attr:`control_token` was generated at start, so that it must be shown to its users."""
        return self._control_token is not None and self._control_token != self.config.control_token

    def stats(self) -> dict[str, float]:
        """The counters plus ``uptime_s`` and ``pid``: the body of ``GET /stats``."""
        values: dict[str, float] = dict(self.counters.as_dict())
        uptime = time.monotonic() - self._started_at if self._started_at else 0.0
        values["uptime_s"] = round(uptime, 3)
        values["pid"] = os.getpid()
        return values

    def _authority(self) -> str:
        host = self.config.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    # HTTP

    def _application(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        ws = environ.get("wsgi.websocket")
        if ws is not None:
            self._serve_connection(ws)
            return []
        path = environ.get("PATH_INFO", "")
        if environ.get(REFUSED_KEY):
            body = b"refused (refuse_fraction)\n"
            return respond(start_response, "503 Service Unavailable", body, [("Retry-After", "1")])
        if path == STATS_PATH:
            body = json.dumps(self.stats()).encode("ascii")
            return respond(start_response, "200 OK", body, content_type="application/json")
        if path == HEALTH_PATH:
            return respond(start_response, "200 OK", b"ok")
        if path == FAULTS_PATH:
            return self._fault_request(environ, start_response)
        if path == self.config.path:
            return respond(
                start_response,
                "426 Upgrade Required",
                b"this path only accepts WebSocket upgrades\n",
                [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
            )
        return respond(start_response, "404 Not Found", b"not found\n")

    def _fault_request(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return respond(start_response, "405 Method Not Allowed", b"POST only\n", [("Allow", "POST")])
        if not is_authorized(environ, self._control_token):
            self.counters.control_requests_refused += 1
            logger.warning("wslocust serve: POST %s from %s refused: no valid control token", FAULTS_PATH,
                           environ.get("REMOTE_ADDR", "?"))  # fmt: skip
            error = (
                "a control token is required: send Authorization: Bearer <token> (--control-token / WS_CONTROL_TOKEN)"
            )
            return respond_json(start_response, "401 Unauthorized", {"error": error}, [("WWW-Authenticate", "Bearer")])
        try:
            fault = parse_fault_query(environ.get("QUERY_STRING", ""))
        except ValueError as exc:
            return respond_json(start_response, "400 Bad Request", {"error": str(exc)})
        dropped = self.inject_fault(drop=fault.drop, refuse_ms=fault.refuse_ms)
        return respond_json(start_response, "200 OK", {"dropped": dropped, "refuse_ms": fault.refuse_ms})

    def inject_fault(self, *, drop: bool = False, refuse_ms: float = 0.0) -> int:
        """
        Make the server fail on purpose, as ``POST /faults`` does.

        Args:
            drop: drop every open connection's TCP without a close frame, as a
                crashed server would (clients see 1006).
            refuse_ms: answer every upgrade with 503 for this many milliseconds.

        Returns:
            How many connections were dropped.
        """
        self._upgrades.refuse_for(refuse_ms)
        if not drop:
            return 0
        victims = list(self._connections)
        for connection in victims:
            connection.close_now(1006, "", 0)
        logger.info("fault injected: dropped %d connections, refusing upgrades for %g ms", len(victims), refuse_ms)
        return len(victims)

    # WebSocket connections

    def _serve_connection(self, ws: ServerWebSocket) -> None:
        counters = self.counters
        counters.connections_accepted += 1
        connection = AcceptedConnection(ws)
        self._connections.add(connection)
        try:
            if self.config.delay_ms or self.config.broadcast_interval_ms:
                connection.outbox = gevent.queue.Queue()
                connection.writer = gevent.spawn(self._write_loop, connection, connection.outbox)
            if self._stopping:  # accepted while draining
                self._close_connection(connection, 1001, "going away", CLOSE_TIMEOUT)
            self._echo_loop(connection)
        finally:
            self._connections.discard(connection)
            for greenlet in (connection.writer, connection.watchdog):
                if greenlet is not None:
                    greenlet.kill(block=False)
            counters.connections_closed += 1
            if self._stopping and not self._connections:
                self._drained.set()

    def _echo_loop(self, connection: AcceptedConnection) -> None:
        # The hot path: no logging, no allocation beyond the message itself.
        ws = connection.ws
        outbox = connection.outbox
        counters = self.counters
        receive = ws.receive
        send_message = ws.send_message
        delay = self.config.delay_ms / 1000.0
        close_after = self.config.close_after
        echoed = 0
        while True:
            message = receive()
            if message is None:
                if ws.failure_code == 1009:
                    counters.messages_too_big += 1
                return
            counters.messages_received += 1
            counters.bytes_received += ws.message_bytes
            if connection.closing:
                continue  # §5.5.1: no data after our close frame; counted, not echoed
            if delay and outbox is not None:
                # The writer sends it when due; the queue keeps this connection's order.
                outbox.put((time.monotonic() + delay, message, False))
            else:
                try:
                    size = send_message(message)
                except OSError:
                    if ws.close_sent and not ws.closed:
                        continue  # the drain closed meanwhile: wait for the client's reply
                    return
                counters.messages_sent += 1
                counters.bytes_sent += size
            echoed += 1
            if close_after and echoed >= close_after:
                self._close_connection(connection, self.config.close_code, "close_after", CLOSE_TIMEOUT)

    def _write_loop(self, connection: AcceptedConnection, outbox: gevent.queue.Queue) -> None:
        ws = connection.ws
        counters = self.counters
        get = outbox.get
        while True:
            due, item, is_broadcast = get()
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            if type(item) is QueuedClose:
                connection.close_now(item.code, item.reason, item.timeout)
                return
            try:
                size = ws.send_message(item)
            except OSError:
                return
            counters.messages_sent += 1
            counters.bytes_sent += size
            if is_broadcast:
                counters.broadcasts_sent += 1

    def _close_connection(self, connection: AcceptedConnection, code: int, reason: str, timeout: float) -> None:
        if connection.closing:
            return
        connection.closing = True
        if connection.outbox is not None:
            # After the echoes already queued, so that none is lost.
            connection.outbox.put((0.0, QueuedClose(code, reason, timeout), False))
        else:
            connection.close_now(code, reason, timeout)

    def _broadcast_loop(self) -> None:
        interval = self.config.broadcast_interval_ms / 1000.0
        number = 0
        next_at = time.monotonic() + interval
        while True:
            gevent.sleep(max(0.0, next_at - time.monotonic()))
            # Late (a busy server)? Skip ahead rather than burst to catch up.
            next_at = max(next_at + interval, time.monotonic())
            number += 1
            # One message for every connection, stamped when the broadcast begins: what a client
            # measures from it is the fan-out's delivery, queueing behind the other connections included.
            item = (0.0, f'{{"broadcast": {number}, "sent_at": {time.time():.6f}}}', True)
            # put() on an unbounded queue never yields, so the set cannot change meanwhile.
            for connection in self._connections:
                # A client that does not read misses broadcasts instead of growing
                # the server's memory; broadcasts_sent counts only those sent.
                outbox = connection.outbox
                if outbox is not None and not connection.closing and outbox.qsize() < MAX_QUEUED:
                    outbox.put(item)


def create_server(config: ServerConfig | None = None) -> ReferenceServer:
    """Return a reference server for ``config`` (defaults if omitted); call ``start()`` on it."""
    return ReferenceServer(config if config is not None else ServerConfig())
