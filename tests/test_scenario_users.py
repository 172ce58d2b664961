"""WebSocketUser following a shape's schedule, connection lifetimes and the time scale, in this process."""

from __future__ import annotations

import argparse
import time

import locust
from helpers import wait_for
from locust.env import Environment

from wslocust import WebSocketUser
from wslocust.integration.scenario import publish_schedule
from wslocust.run.schedule import Schedule
from wslocust.run.state import run_state
from wslocust.server import ServerConfig, create_server

ALL_AT_ONCE = 1000
"""A spawn rate at which a few users connect within milliseconds (wslocust.run.pacing spreads a burst over
its size divided by the rate)."""


def start_run(user_class, users, host, **options):
    environment = Environment(user_classes=[user_class], events=locust.events, host=host)
    if options:
        environment.parsed_options = argparse.Namespace(ws_message_interval=None, **options)
    runner = environment.create_local_runner()
    return environment, runner


def requests(environment, name):
    entry = environment.stats.get(name, "WS")
    return entry.num_requests, entry.num_failures


def test_connections_live_their_lifetime_and_the_server_sees_every_reconnect(server):
    class Churning(WebSocketUser):
        connection_lifetime = 0.2
        message_interval = 0.02

    environment, runner = start_run(Churning, 10, server.url)
    runner.start(10, spawn_rate=ALL_AT_ONCE)
    wait_for(lambda: requests(environment, "reconnect")[0] >= 60, timeout=10)
    runner.quit()
    wait_for(lambda: server.counters.connections_open == 0, timeout=5)

    reconnects, reconnect_failures = requests(environment, "reconnect")
    totals = run_state(environment).counters
    assert reconnect_failures == 0 and totals.reconnects == reconnects
    assert server.counters.connections_accepted - 10 == reconnects
    assert requests(environment, "disconnect") == (0, 0)  # closed by the user: not a failure
    assert totals.disconnects == 0 and totals.closed == reconnects + 10
    # in-flight echoes were waited for before each close: none lost, none failed
    assert requests(environment, "echo")[1] == 0 and totals.replies_lost == 0
    assert requests(environment, "echo")[0] == server.counters.messages_sent


def test_first_lifetimes_are_spread_so_that_users_do_not_churn_in_step(server):
    # In step, no user would reconnect before its first connection is 10 s old. Spread over the
    # lifetime, the first ones reconnect within a second or so (4 of 40 first lifetimes uniform over
    # 10 s: about 1 s): a deadline well below 10 s tells the two apart, however busy the machine.
    class Churning(WebSocketUser):
        connection_lifetime = 10.0
        message_interval = 0

    environment, runner = start_run(Churning, 40, server.url)
    runner.start(40, spawn_rate=ALL_AT_ONCE)
    try:
        wait_for(lambda: run_state(environment).counters.reconnects >= 4, timeout=6, message="4 reconnects long before 10 s")
    finally:
        runner.quit()


def test_users_follow_the_published_schedule_from_stage_to_stage(server):
    class Scheduled(WebSocketUser):
        message_interval = 5.0  # replaced by the schedule

    environment, runner = start_run(Scheduled, 5, server.url)
    echoed: list[float] = []
    """When each echo came back, in seconds on the schedule's clock."""

    def on_request(name, exception, **_):
        if name == "echo" and exception is None:
            echoed.append(time.perf_counter() - origin)

    locust.events.request.add_listener(on_request)
    origin = time.perf_counter()
    # no messages for 0.5 s, then one every 20 ms each, then none again after 1.5 s
    publish_schedule(environment, Schedule([0.5, 1.5, 60], [0, 0.02, 0], None, origin))
    try:
        runner.start(5, spawn_rate=ALL_AT_ONCE)
        wait_for(lambda: server.counters.messages_received >= 100, timeout=5, message="the middle stage's messages")
        # Silence is seen over a window: what came in by 0.5 s after the stage's end is all there is.
        wait_for(lambda: time.perf_counter() - origin > 2.0, timeout=5)
        after_stage = server.counters.messages_received
        wait_for(lambda: time.perf_counter() - origin > 2.5, timeout=5)
        runner.quit()
    finally:
        locust.events.request.remove_listener(on_request)
    # None in the first stage: a busy machine makes a message late, never early.
    assert min(echoed) >= 0.5, echoed[:5]
    # At most one every 20 ms per user in the 1 s middle stage (a busy machine sends fewer, never more).
    assert len(echoed) == after_stage <= 5 * (1.0 / 0.02 + 2)
    assert server.counters.messages_received == after_stage  # silent again


def test_the_time_scale_shortens_message_intervals_and_lifetimes(server):
    class Slow(WebSocketUser):
        message_interval = 1.0
        connection_lifetime = 10.0

    environment, runner = start_run(Slow, 2, server.url, ws_time_scale="0.01", ws_time_scale_messages="scaled")
    runner.start(2, spawn_rate=ALL_AT_ONCE)
    # 1 s and 10 s at scale 0.01: 100 messages/s and 10 reconnects/s per user
    wait_for(lambda: server.counters.messages_received >= 100 and run_state(environment).counters.reconnects >= 5, timeout=3)
    runner.quit()


def test_the_time_scale_shortens_reconnect_delays():
    down = create_server(ServerConfig(host="127.0.0.1", port=0, refuse_fraction=1.0))
    down.start()

    class Patient(WebSocketUser):
        reconnect_delay = 10.0
        max_reconnect_attempts = 3

    try:
        environment, runner = start_run(Patient, 1, down.url, ws_time_scale="0.001")
        runner.start(1, spawn_rate=ALL_AT_ONCE)
        # 4 refused attempts with 10, 20 and 40 s between them: 70 ms at scale 0.001
        wait_for(lambda: requests(environment, "connect")[1] == 4, timeout=3)
        runner.quit()
    finally:
        down.stop(timeout=1)
    assert run_state(environment).counters.failed == 1  # gave up after the 4th attempt, well within 3 s


def test_a_stop_in_the_middle_of_fast_churn_leaves_both_sides_counts_equal(server):
    # Stopped users wait for an upgrade under way: killed half-way, the server would count it and
    # the user not. At 2,000 reconnects a second, a stop always lands in some upgrades.
    class FastChurn(WebSocketUser):
        connection_lifetime = 0.02
        message_interval = 0.01

    environment, runner = start_run(FastChurn, 40, server.url)
    runner.start(40, spawn_rate=ALL_AT_ONCE)
    wait_for(lambda: run_state(environment).counters.reconnects >= 200, timeout=10)
    runner.quit()
    wait_for(lambda: server.counters.connections_open == 0, timeout=5)
    totals = run_state(environment).counters
    assert server.counters.connections_accepted - 40 == totals.reconnects == requests(environment, "reconnect")[0]
    assert server.counters.connections_closed == totals.closed == totals.reconnects + 40
    assert totals.disconnects == 0  # a stop during a retire's close: closed by us, not lost


def test_error_recovery_asks_another_target_to_fail_with_post_faults(caplog):
    from gevent.pywsgi import WSGIServer

    from wslocust.integration.recovery import ask_target_to_fail

    received = []

    def application(environ, start_response):
        received.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"]))
        found = environ["PATH_INFO"] == "/faults"
        start_response("200 OK" if found else "404 Not Found", [("Content-Length", "0")])
        return [b""]

    control = WSGIServer(("127.0.0.1", 0), application, log=None)
    control.start()
    try:
        assert ask_target_to_fail(f"ws://127.0.0.1:{control.server_port}/ws", 0.25) is True
        assert received == [("POST", "/faults", "drop=1&refuse_ms=250")]
        assert ask_target_to_fail(f"ws://127.0.0.1:{control.server_port}/elsewhere", 1) is True  # the path is the server's
        assert ask_target_to_fail(None, 1) is False
    finally:
        control.stop()
    assert ask_target_to_fail(f"ws://127.0.0.1:{control.server_port}/ws", 1) is False  # nothing listens any more
    assert "error recovery: POST http://127.0.0.1:" in caplog.text
