"""No descriptor or greenlet outlives a long churn run (connections closed by users and by the server)."""

from __future__ import annotations

import gc
import os

import gevent
import locust
import pytest
from helpers import wait_for
from locust import constant, task
from locust.env import Environment
from locust_process import run_locust

from benchmarks.processes import wait_until
from wslocust import WebSocketUser
from wslocust.run.state import run_state
from wslocust.server import ServerConfig, create_server


def open_fds() -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass  # the directory's own descriptor, already closed
    return sorted(found)


def live_greenlets() -> int:
    """Greenlets of this thread that have not finished (gevent's thread pool has greenlets of its own)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if isinstance(obj, gevent.Greenlet) and not obj.dead)


def test_a_thousand_reconnects_leave_no_descriptor_and_no_greenlet_behind():
    # The server drops every connection after 3 messages; one kind of user retires its own before.
    server = create_server(ServerConfig(host="127.0.0.1", port=0, close_after=3, close_code=1006))
    server.start()

    class Churning(WebSocketUser):
        connection_lifetime = 0.01  # closed by the user after about 2 messages
        message_interval = 0.005
        ping_interval = 0.01
        reconnect_delay = 0.001

    class Echoing(WebSocketUser):
        connection_lifetime = 0.03
        reconnect_delay = 0.001
        wait_time = constant(0.002)

        @task
        def echo_once(self):
            self.echo()

    fds, greenlets = open_fds(), live_greenlets()
    environment = Environment(user_classes=[Churning, Echoing], events=locust.events, host=server.url)
    runner = environment.create_local_runner()
    try:
        runner.start(20, spawn_rate=1000)
        # both kinds of close, many times over
        wait_for(
            lambda: run_state(environment).counters.reconnects >= 1000
            and run_state(environment).counters.disconnects >= 100
            and run_state(environment).counters.closed >= 100,
            timeout=60,
        )
        runner.quit()
        wait_for(lambda: server.counters.connections_open == 0, timeout=10)
    finally:
        server.stop(timeout=1)
    # Killed greenlets finish dying, and release their sockets, over the next turns of the loop:
    # wait (10 s at most) for both counts to come back rather than for one switch; then check them.
    wait_until(lambda: len(open_fds()) <= len(fds) and live_greenlets() <= greenlets, 10, 0.05, sleep=gevent.sleep)
    after = open_fds()
    assert len(after) <= len(fds), sorted(set(after) - set(fds)) or after
    assert live_greenlets() <= greenlets


def live_exceptions(kind: type[BaseException]) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj) is kind)


def test_an_idle_connection_keeps_no_exception_alive(server):
    # Its receiver waits for the socket outside the except clause of the EAGAIN that sent it waiting:
    # inside, every held connection kept that BlockingIOError and its traceback alive.
    from wslocust.codec.uri import parse_uri
    from wslocust.transport.connection import Connection

    before = live_exceptions(BlockingIOError)
    received: list = []
    connections = []
    for _ in range(20):
        connection = Connection(parse_uri(f"ws://127.0.0.1:{server.port}/ws"), on_message=lambda m, at: received.append(m))
        connection.open(timeout=5)
        assert connection.kernel_timestamps  # the direct receiver, the one users run
        gevent.spawn(connection.receive_forever)
        connection.send_text("hello")
        connections.append(connection)
    try:
        wait_for(lambda: len(received) == 20)
        # Every receiver read its echo, found the socket empty again and waits.
        wait_for(lambda: live_exceptions(BlockingIOError) <= before, timeout=5)
    finally:
        for connection in connections:
            connection.abort()


def test_a_close_from_the_reading_greenlet_takes_what_came_before_the_servers_close(server):
    from wslocust.codec.uri import parse_uri
    from wslocust.transport.connection import Connection

    received: list = []
    connection = Connection(
        parse_uri(f"ws://127.0.0.1:{server.port}/ws"), on_message=lambda m, at: received.append(m), close_timeout=30
    )
    connection.open(timeout=5)
    connection.send_text("last words")
    with gevent.Timeout(10, AssertionError("close_reading() waited for its close_timeout: nothing read the close")):
        connection.close_reading()  # no other greenlet reads this connection
    assert received == ["last words"]
    assert connection.closed is not None and connection.closed.code == 1000


GREENLET_TREE_LOCUSTFILE = """
import gevent
from locust import events
from wslocust import WebSocketUser


class Holder(WebSocketUser):
    pass


@events.test_start.add_listener
def _tell(environment, **_):
    spawned = gevent.spawn(lambda: None)
    print(f"TREE tracked={gevent.config.track_greenlet_tree} stack={spawned.spawning_stack is not None}", flush=True)
    spawned.join()
"""


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, "TREE tracked=False stack=False"), ({"GEVENT_TRACK_GREENLET_TREE": "1"}, "TREE tracked=True stack=True")],
    ids=["default", "asked-for"],
)
def test_greenlets_keep_their_spawning_stacks_only_when_asked(tmp_path, env, expected):
    # A kilobyte per held connection; gevent's debugging aid, which Locust does not use.
    locustfile = tmp_path / "tree.py"
    locustfile.write_text(GREENLET_TREE_LOCUSTFILE)
    result = run_locust("-f", str(locustfile), "--headless", "-u", "1", "-r", "1", "-t", "1", env=env)
    assert expected in result.stdout, result.stdout[-2000:] + result.stderr[-2000:]
