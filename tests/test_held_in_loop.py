"""
Users without tasks held in the event loop (``WebSocketUser.holds_in_loop``): no greenlet of their own while
they hold, against real servers on 127.0.0.1, in Locust's LocalRunner in this process.

What must not change: every echo, disconnect, reconnect and close counted as the greenlet path counts it,
and Locust seeing each user start, stop and end as it does for any user.
"""

from __future__ import annotations

import gc

import gevent
import greenlet
import locust
import pytest
from fault_servers import FaultServer
from helpers import wait_for
from locust.env import Environment

from wslocust import WebSocketUser
from wslocust.locust_compat.user import STOPS_PER_TURN
from wslocust.run.state import run_state


def start_run(user_class, users, host):
    environment = Environment(user_classes=[user_class], events=locust.events, host=host)
    runner = environment.create_local_runner()
    runner.start(users, spawn_rate=1000)
    return environment, runner


def user_greenlets():
    """Greenlets suspended in wslocust's user code (not the test server's threads, greenlets too here)."""
    return sum(
        1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet) and obj and _in_wslocust(obj.gr_frame)
    )


def _in_wslocust(frame):
    while frame is not None:
        if "/wslocust/user/" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def requests(environment, name):
    entry = environment.stats.get(name, "WS")
    return entry.num_requests, entry.num_failures


@pytest.fixture
def fault_server():
    server = FaultServer().start()
    yield server
    server.stop()


def test_held_users_echo_and_close_without_a_greenlet_each_and_count_like_the_server(fault_server):
    class Holder(WebSocketUser):
        message_interval = 0.1

    environment, runner = start_run(Holder, 100, fault_server.url("/ok?held"))
    counters = run_state(environment).counters
    try:
        wait_for(lambda: counters.open == 100 and requests(environment, "echo")[0] >= 300, timeout=20)
        assert runner.user_count == 100
        # Before: one greenlet per held user, blocked in its receive (~8 KB each).
        assert user_greenlets() == 0, f"{user_greenlets()} greenlets in wslocust's user code for 100 held users"
        assert all(not user_greenlet.started for user_greenlet in runner.user_greenlets)
    finally:
        runner.quit()
    echoes, echo_failures = requests(environment, "echo")
    assert fault_server.wait_idle(10)
    truth = fault_server.counts("/ok?held")
    assert echo_failures == 0
    assert truth["messages_received"] == truth["messages_sent"] == echoes
    assert counters.closed == truth["client_close_1000"] == 100
    assert counters.open == 0 and runner.user_count == 0


def test_a_lost_connection_held_in_the_loop_is_counted_and_reconnected(fault_server):
    class Holder(WebSocketUser):
        message_interval = 0.05
        reconnect_delay = 0.05

    target = "/close/1006?n=10"
    environment, runner = start_run(Holder, 10, fault_server.url(target))
    counters = run_state(environment).counters
    try:
        wait_for(lambda: counters.reconnects == 10 and counters.open == 10, timeout=20)
        wait_for(lambda: requests(environment, "echo")[0] - requests(environment, "echo")[1] >= 50, timeout=10)
    finally:
        runner.quit()
    assert counters.disconnects == requests(environment, "disconnect")[1] == 10
    assert requests(environment, "reconnect") == (10, 0)
    assert fault_server.wait_idle(10)
    assert fault_server.counts(target)["faults"] == 10
    assert counters.closed == fault_server.counts(target)["client_close_1000"] == 10


def test_a_held_user_that_does_not_reconnect_ends_and_locust_counts_it_gone(fault_server):
    class Holder(WebSocketUser):
        message_interval = 0.05
        reconnect = False

    environment, runner = start_run(Holder, 10, fault_server.url("/close/1006?no-reconnect"))
    counters = run_state(environment).counters
    try:
        wait_for(lambda: counters.disconnects == 10 and runner.user_count == 0, timeout=20)
        assert counters.failed == 10
    finally:
        runner.quit()
    assert requests(environment, "disconnect") == (10, 10)
    assert counters.closed == 0


def test_a_callback_that_raises_is_reported_and_its_connection_replaced_not_the_process(fault_server):
    raised = []

    class Holder(WebSocketUser):
        message_interval = 0.05
        reconnect_delay = 0.05

        def _on_message(self, message, received_at):
            if not raised:  # the first reply of the run: a bug in wslocust's own dispatch
                raised.append(message)
                raise RuntimeError("dispatch failed")
            super()._on_message(message, received_at)

    errors = []

    def user_error(user_instance, exception, tb, **_):
        errors.append(exception)

    locust.events.user_error.add_listener(user_error)
    try:
        environment, runner = start_run(Holder, 5, fault_server.url("/ok?raising"))
        counters = run_state(environment).counters
        try:
            wait_for(lambda: counters.reconnects == 1 and counters.open == 5, timeout=20)
            wait_for(lambda: requests(environment, "echo")[0] >= 50, timeout=10)
        finally:
            runner.quit()
    finally:
        locust.events.user_error.remove_listener(user_error)
    assert [str(error) for error in errors] == ["dispatch failed"]
    assert counters.disconnects == 1 and runner.user_count == 0


def test_held_users_churn_in_the_loop(fault_server):
    class Churner(WebSocketUser):
        message_interval = 0.05
        connection_lifetime = 0.3

    environment, runner = start_run(Churner, 10, fault_server.url("/ok?churn"))
    counters = run_state(environment).counters
    try:
        wait_for(lambda: counters.reconnects >= 30, timeout=20)
    finally:
        runner.quit()
    assert fault_server.wait_idle(10)
    truth = fault_server.counts("/ok?churn")
    assert counters.disconnects == 0 and requests(environment, "echo")[1] == 0
    assert counters.closed == truth["client_close_1000"] == truth["connections"]
    assert counters.connects_succeeded == truth["connections"]


def test_users_whose_hooks_may_block_keep_a_greenlet(fault_server):
    class Listener(WebSocketUser):
        message_interval = 0.05

        def on_message(self, message):
            gevent.sleep(0.001)  # a hook that waits: only a greenlet may

    class Pinger(WebSocketUser):
        ping_interval = 0.05

    environment, runner = start_run(Listener, 5, fault_server.url("/ok?on-message"))
    try:
        wait_for(lambda: run_state(environment).counters.open == 5, timeout=10)
        assert all(user_greenlet.started for user_greenlet in runner.user_greenlets)
        assert user_greenlets() == 5
        assert not Pinger(environment).holds_in_loop()
    finally:
        runner.quit()
    assert run_state(environment).counters.closed == 5


def test_a_stop_timeout_shorter_than_the_closes_still_finds_every_close_counted_at_test_stop(fault_server):
    # Locust kills the greenlet of a user still stopping when --stop-timeout ends; a held user's greenlet never
    # ran, and its close goes on in the loop: test_stop's listeners still see it counted.
    class Holder(WebSocketUser):
        close_timeout = 0.5

    at_test_stop = {}

    def look_at_test_stop(environment, **_):
        at_test_stop["closed"] = run_state(environment).counters.closed

    locust.events.test_stop.add_listener(look_at_test_stop)
    try:
        environment, runner = start_run(Holder, 20, fault_server.url("/half-open?stop-timeout"))
        environment.stop_timeout = 0.05
        wait_for(lambda: run_state(environment).counters.open == 20, timeout=10)
        runner.quit()
    finally:
        locust.events.test_stop.remove_listener(look_at_test_stop)
    assert at_test_stop == {"closed": 20}
    assert runner.user_count == 0


def test_a_request_listener_that_stops_the_user_from_the_loop_ends_that_user(fault_server):
    # Locust re-raises StopUser from its listeners: raised while the loop counts a lost connection, it
    # must end the user (as in a task), not leave it behind with nothing connected.
    from locust.exception import StopUser

    class Holder(WebSocketUser):
        message_interval = 0.05
        reconnect_delay = 0.05

    def stop_at_disconnect(name, **_):
        if name == "disconnect":
            raise StopUser()

    locust.events.request.add_listener(stop_at_disconnect)
    try:
        environment, runner = start_run(Holder, 5, fault_server.url("/close/1006?stop-user"))
        try:
            wait_for(lambda: run_state(environment).counters.disconnects == 5 and runner.user_count == 0, timeout=10)
        finally:
            runner.quit()
    finally:
        locust.events.request.remove_listener(stop_at_disconnect)
    assert requests(environment, "reconnect") == (0, 0)


def test_a_whole_stop_lets_the_event_loop_run_between_batches_of_users(server):
    # Stopped in one go, 12,500 held users stalled a busy worker's loop for 12 s: no heartbeat, no timer.
    class Holder(WebSocketUser):
        message_interval = 0

    users = 2 * STOPS_PER_TURN + 50  # below the usual 1,024 open files, with the server's ends in this process
    environment, runner = start_run(Holder, users, f"ws://127.0.0.1:{server.port}/ws")
    try:
        wait_for(lambda: run_state(environment).counters.open == users, timeout=20)
        seen = set()

        def observe():
            while True:
                seen.add(len(runner.user_greenlets))
                gevent.sleep(0)

        observer = gevent.spawn(observe)
        gevent.sleep(0)
        runner.stop()
        observer.kill()
    finally:
        runner.quit()
    # Before: the observer ran only before the stop and after it.
    assert {count for count in seen if 0 < count < users}, sorted(seen)
    assert run_state(environment).counters.closed == users and runner.user_count == 0
