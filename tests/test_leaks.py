"""No descriptor or greenlet outlives a long churn run (connections closed by users and by the server)."""

from __future__ import annotations

import gc
import os

import gevent
import locust
from helpers import wait_for
from locust import constant, task
from locust.env import Environment

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
