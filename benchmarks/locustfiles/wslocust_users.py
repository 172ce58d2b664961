"""
The wslocust users the benchmarks run, with full Locust statistics on.

- ``EchoUser``: closed loop, one ``self.echo()`` after another
  (``wait_time = constant(0)``).
- ``WindowUser``: closed loop without a task: ``in_flight = 1`` sends the
  next echo as soon as the previous one is answered.
- ``HoldUser``: no task: holds its connection and sends one message every
  ``--ws-message-interval`` ms on wslocust's open-loop schedule
  (``--ws-message-interval 0``: none).
- ``PacedEchoUser``: what users write: ``wait_time = constant_pacing(--bench-interval)``
  and a task calling ``self.echo("x" * --bench-size)``.
- ``RequestUser``: the same pacing, ``self.request()`` with JSON messages carrying an
  ``id`` and ``reply_key`` returning it.

``--bench-size`` sets ``message_size`` of all. With ``--bench-messages`` (``latency-error``
joins the client's and the server's times per message) every user tells ``bench_messages``
which connection each reply came on, as it arrives, and each process adds its WebSocket
counters (``sends_late``...) to its per-message file; without it, the users run as a user's would.

``WSLOCUST_BENCH_CODEC`` (the ``codec`` workload) names the library that frames and parses every
connection's messages: ``wslocust`` (its own, the default), ``websockets`` or ``wsproto``
(``benchmarks/codec_adapters.py``).
"""

import json
import os

import bench_cprofile  # noqa: F401  --bench-cprofile: latency-error --profile
import bench_messages
import bench_probe
import bench_stall  # noqa: F401  --bench-stall: a loaded generator
from locust import constant, constant_pacing, events, task

from benchmarks.codec_adapters import install as install_codec
from wslocust import WebSocketUser
from wslocust.run.state import run_state

install_codec(os.environ.get("WSLOCUST_BENCH_CODEC", "wslocust"))

__all__ = ["EchoUser", "HoldUser", "PacedEchoUser", "RequestUser", "WindowUser"]


def _local_port(connection):
    """The local TCP port of a wslocust connection (found by duck typing: the transport's attributes are private)."""
    for value in vars(connection).values():
        getsockname = getattr(value, "getsockname", None)
        if callable(getsockname):
            try:
                return getsockname()[1]
            except (OSError, IndexError, TypeError):
                continue
    return 0


class _JoinedUser(WebSocketUser):
    abstract = True
    _bench_connection = None
    _bench_port = 0

    def _replied_on_connection(self):
        connection = self.connection
        if connection is not self._bench_connection:
            self._bench_connection, self._bench_port = connection, _local_port(connection)
        bench_messages.replied_on(self._bench_port)

    def _on_message_joined(self, message, received_at):
        # Every message, before its request event fires (an echo's reply is matched by its payload,
        # without reply_key): a private hook, as benchmark-only instrumentation may use. Installed
        # as _on_message with --bench-messages only: other runs do not pay for it.
        self._replied_on_connection()
        super()._on_message(message, received_at)


class EchoUser(_JoinedUser):
    wait_time = constant(0)

    @task
    def echo_once(self):
        self.echo()


class WindowUser(_JoinedUser):
    in_flight = 1


class HoldUser(_JoinedUser):
    pass


class PacedEchoUser(_JoinedUser):
    wait_time = constant_pacing(1.0)  # --bench-interval, set at init
    payload = "x" * 64

    @task
    def echo_paced(self):
        self.echo(self.payload)


class RequestUser(_JoinedUser):
    wait_time = constant_pacing(1.0)  # --bench-interval, set at init

    def on_start(self):
        self.number = 0

    @task
    def ask(self):
        self.number += 1
        number = self.number
        head = f'{{"id": {number}, "data": "'
        self.request(head + "x" * max(0, self.message_size - len(head) - 2) + '"}', match=number)

    def reply_key(self, message):
        return json.loads(message)["id"]


@events.init.add_listener
def _message_size(environment, **_):
    options = bench_probe.options(environment)
    for user in (EchoUser, HoldUser, WindowUser, PacedEchoUser, RequestUser):
        user.message_size = options.bench_size
    PacedEchoUser.payload = "x" * options.bench_size
    PacedEchoUser.wait_time = RequestUser.wait_time = constant_pacing(options.bench_interval or 3600.0)
    if getattr(options, "bench_messages", ""):
        _JoinedUser._on_message = _JoinedUser._on_message_joined


bench_messages.summaries.append(lambda environment: {"ws_counters": run_state(environment).counters.as_dict()})
