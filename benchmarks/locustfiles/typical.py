"""
The typical Locust WebSocket user, written the plain way blog posts and
locust-plugins do it: a ``locust.User`` holding a ``websocket.WebSocket()``
from websocket-client (under Locust's gevent monkey patching), one
``request`` event per echo timed with ``time.perf_counter()``, Locust's own
statistics. The baseline the benchmarks compare wslocust with; it does not
import wslocust.

- ``ClosedLoopEcho``: send, block in ``recv()``, fire the event, repeat
  (``wait_time = constant(0)``).
- ``PeriodicEcho``: one greenlet per user blocking in ``recv()``; the task
  sends one echo every ``--bench-interval`` seconds (0: none, the user only
  holds its connection).
- ``PacedEcho``: ``wait_time = constant_pacing(--bench-interval)``; the task
  sends, blocks in ``recv()`` and fires the event (the same workload as a
  wslocust task calling ``self.echo()``).
- ``PacedRequest``: the same with JSON messages carrying an ``id``; the task
  reads until the reply with its id comes and fires ``request``.
- ``SpreadPacedEcho``, ``SpreadPeriodicEcho``, ``SpreadPacedRequest``: a control,
  not what users write: the same users, whose first task waits a random part
  of ``--bench-interval`` after the connect (pacing restarted from there), so
  that their sends are spread over the interval as wslocust's are, instead of
  leaving together (Locust starts a spawn burst's tasks at once). Spread sends
  cost more CPU per echo: the event loop wakes for each one instead of once per
  burst (``latency-error --generators wslocust,typical,typical-spread``).

All time the connect as a ``connect`` request and use request type ``WS``
and the names ``echo`` (``request``), as wslocust does. Before each event they
tell ``bench_messages`` which connection the reply came on (benchmark-only:
``latency-error`` joins the client's and the server's times per message).
"""

import json
import random
import time

import bench_cprofile  # noqa: F401  --bench-cprofile: latency-error --profile
import bench_messages
import bench_probe
import bench_stall  # noqa: F401  --bench-stall: a loaded generator
import gevent
import websocket
from locust import User, constant, constant_pacing, events, task
from locust.exception import StopUser

__all__ = [
    "ClosedLoopEcho",
    "PacedEcho",
    "PacedRequest",
    "PeriodicEcho",
    "SpreadPacedEcho",
    "SpreadPacedRequest",
    "SpreadPeriodicEcho",
]

CONNECT_TIMEOUT = 10.0
IDLE_WAIT = 3600.0
"""Seconds a PeriodicEcho without echoes waits between its (empty) tasks; stopping interrupts it."""


class _PlainWebSocketUser(User):
    abstract = True

    def on_start(self):
        self.ws = websocket.WebSocket()
        start = time.perf_counter()
        try:
            self.ws.connect(self.host, timeout=CONNECT_TIMEOUT)
        except Exception as exc:
            self._fire("connect", start, 0, exc)
            raise StopUser() from exc
        self._fire("connect", start, 0)
        # connect()'s timeout would stay the socket's: a receive would fail after 10 s of silence.
        self.ws.settimeout(None)
        self.port = self.ws.sock.getsockname()[1]

    def on_stop(self):
        self.ws.close()

    def _fire(self, name, start, length, exception=None):
        bench_messages.replied_on(getattr(self, "port", 0))
        self.environment.events.request.fire(
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - start) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )


class ClosedLoopEcho(_PlainWebSocketUser):
    wait_time = constant(0)

    def on_start(self):
        super().on_start()
        self.payload = "x" * bench_probe.options(self.environment).bench_size

    @task
    def echo(self):
        start = time.perf_counter()
        try:
            self.ws.send(self.payload)
            reply = self.ws.recv()
        except Exception as exc:
            self._fire("echo", start, 0, exc)
            raise StopUser() from exc
        self._fire("echo", start, len(reply))


class PeriodicEcho(_PlainWebSocketUser):
    def wait_time(self):
        return bench_probe.options(self.environment).bench_interval or IDLE_WAIT

    def on_start(self):
        super().on_start()
        self.size = bench_probe.options(self.environment).bench_size
        self.sequence = 0
        self.sent_at = {}
        self.receiver = gevent.spawn(self.receive_forever)

    def receive_forever(self):
        while True:
            try:
                message = self.ws.recv()
            except Exception as exc:  # noqa: BLE001  as plain users do: any error ends the loop
                self._fire("disconnect", time.perf_counter(), 0, exc)
                return
            start = self.sent_at.pop(message, None)
            if start is not None:
                self._fire("echo", start, len(message))

    @task
    def echo(self):
        if not bench_probe.options(self.environment).bench_interval:
            return
        self.sequence += 1
        prefix = f"{self.sequence}:"
        payload = prefix + "x" * max(0, self.size - len(prefix))
        self.sent_at[payload] = time.perf_counter()
        self.ws.send(payload)

    def on_stop(self):
        receiver = getattr(self, "receiver", None)  # None when the connect failed
        if receiver is not None:
            receiver.kill(block=False)
        super().on_stop()


class PacedEcho(ClosedLoopEcho):
    wait_time = constant_pacing(1.0)  # --bench-interval, set at init


class PacedRequest(_PlainWebSocketUser):
    wait_time = constant_pacing(1.0)  # --bench-interval, set at init

    def on_start(self):
        super().on_start()
        self.size = bench_probe.options(self.environment).bench_size
        self.number = 0

    @task
    def ask(self):
        self.number += 1
        number = self.number
        head = f'{{"id": {number}, "data": "'
        payload = head + "x" * max(0, self.size - len(head) - 2) + '"}'
        start = time.perf_counter()
        try:
            self.ws.send(payload)
            while True:
                reply = self.ws.recv()
                if json.loads(reply).get("id") == number:
                    break
        except Exception as exc:
            self._fire("request", start, 0, exc)
            raise StopUser() from exc
        self._fire("request", start, len(reply))


class _SpreadFirstTask:
    """Mixed in before a user class: its first task a random part of the interval after the connect."""

    def on_start(self):
        super().on_start()
        interval = bench_probe.options(self.environment).bench_interval
        if interval:
            gevent.sleep(random.uniform(0, interval))
        # constant_pacing counts from the user's start: without this, the first wait would take the
        # sleep back and the tasks would leave together again.
        self._cp_last_run, self._cp_last_wait_time = time.perf_counter(), 0


class SpreadPacedEcho(_SpreadFirstTask, PacedEcho):
    pass


class SpreadPeriodicEcho(_SpreadFirstTask, PeriodicEcho):
    pass


class SpreadPacedRequest(_SpreadFirstTask, PacedRequest):
    pass


@events.init.add_listener
def _pacing(environment, **_):
    interval = bench_probe.options(environment).bench_interval or IDLE_WAIT
    PacedEcho.wait_time = PacedRequest.wait_time = constant_pacing(interval)
