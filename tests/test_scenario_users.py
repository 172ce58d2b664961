"""WebSocketUser following a shape's schedule, connection lifetimes and the time scale, in this process."""

from __future__ import annotations

import argparse
import time

import locust
from helpers import wait_for
from locust.env import Environment

from wslocust import WebSocketUser
from wslocust.integration.plugin import counters
from wslocust.integration.settings import Schedule, publish_schedule
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
    totals = counters(environment)
    assert reconnect_failures == 0 and totals.reconnects == reconnects
    assert server.counters.connections_accepted - 10 == reconnects
    assert requests(environment, "disconnect") == (0, 0)  # closed by the user: not a failure
    assert totals.disconnects == 0 and totals.closed == reconnects + 10
    # in-flight echoes were waited for before each close: none lost, none failed
    assert requests(environment, "echo")[1] == 0 and totals.replies_lost == 0
    assert requests(environment, "echo")[0] == server.counters.messages_sent


def test_first_lifetimes_are_spread_so_that_users_do_not_churn_in_step(server):
    class Churning(WebSocketUser):
        connection_lifetime = 2.0
        message_interval = 0

    environment, runner = start_run(Churning, 40, server.url)
    started = time.perf_counter()
    runner.start(40, spawn_rate=ALL_AT_ONCE)
    wait_for(lambda: counters(environment).reconnects >= 10, timeout=5)
    quarter = time.perf_counter() - started
    runner.quit()
    # 40 users with first lifetimes spread over 2 s: a quarter of them reconnect after about 0.5 s, not all at 2 s
    assert quarter < 1.2


def test_users_follow_the_published_schedule_from_stage_to_stage(server):
    class Scheduled(WebSocketUser):
        message_interval = 5.0  # replaced by the schedule

    environment, runner = start_run(Scheduled, 5, server.url)
    origin = time.perf_counter()
    # no messages for 0.5 s, then one every 20 ms each, then none again after 1.5 s
    publish_schedule(environment, Schedule([0.5, 1.5, 60], [0, 0.02, 0], None, origin))
    runner.start(5, spawn_rate=ALL_AT_ONCE)
    wait_for(lambda: server.counters.connections_accepted == 5, timeout=5)
    silent = server.counters.messages_received
    wait_for(lambda: time.perf_counter() - origin > 0.45, timeout=5)
    before_boundary = server.counters.messages_received
    wait_for(lambda: server.counters.messages_received >= 100, timeout=5)
    wait_for(lambda: time.perf_counter() - origin > 1.7, timeout=5)
    after_stage = server.counters.messages_received
    wait_for(lambda: time.perf_counter() - origin > 2.0, timeout=5)
    runner.quit()
    assert silent == before_boundary == 0
    # 5 users x 1 s / 20 ms = 250 messages in the middle stage, give or take the phases
    assert 200 <= after_stage <= 260
    assert server.counters.messages_received == after_stage  # silent again


def test_the_time_scale_shortens_message_intervals_and_lifetimes(server):
    class Slow(WebSocketUser):
        message_interval = 1.0
        connection_lifetime = 10.0

    environment, runner = start_run(Slow, 2, server.url, ws_time_scale="0.01")
    runner.start(2, spawn_rate=ALL_AT_ONCE)
    # 1 s and 10 s at scale 0.01: 100 messages/s and 10 reconnects/s per user
    wait_for(lambda: server.counters.messages_received >= 100 and counters(environment).reconnects >= 5, timeout=3)
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
    assert counters(environment).failed == 1  # gave up after the 4th attempt, well within 3 s


def test_a_stop_in_the_middle_of_fast_churn_leaves_both_sides_counts_equal(server):
    # Stopped users wait for an upgrade under way: killed half-way, the server would count it and
    # the user not. At 2,000 reconnects a second, a stop always lands in some upgrades.
    class FastChurn(WebSocketUser):
        connection_lifetime = 0.02
        message_interval = 0.01

    environment, runner = start_run(FastChurn, 40, server.url)
    runner.start(40, spawn_rate=ALL_AT_ONCE)
    wait_for(lambda: counters(environment).reconnects >= 200, timeout=10)
    runner.quit()
    wait_for(lambda: server.counters.connections_open == 0, timeout=5)
    totals = counters(environment)
    assert server.counters.connections_accepted - 40 == totals.reconnects == requests(environment, "reconnect")[0]
    assert server.counters.connections_closed == totals.closed == totals.reconnects + 40


def test_error_recovery_asks_another_target_to_fail_with_post_faults(caplog):
    from gevent.pywsgi import WSGIServer

    from wslocust.integration.shapes import _post_fault

    received = []

    def application(environ, start_response):
        received.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"]))
        found = environ["PATH_INFO"] == "/faults"
        start_response("200 OK" if found else "404 Not Found", [("Content-Length", "0")])
        return [b""]

    control = WSGIServer(("127.0.0.1", 0), application, log=None)
    control.start()
    try:
        assert _post_fault(f"ws://127.0.0.1:{control.server_port}/ws", 0.25) is True
        assert received == [("POST", "/faults", "drop=1&refuse_ms=250")]
        assert _post_fault(f"ws://127.0.0.1:{control.server_port}/elsewhere", 1) is True  # the path is the server's
        assert _post_fault(None, 1) is False
    finally:
        control.stop()
    assert _post_fault(f"ws://127.0.0.1:{control.server_port}/ws", 1) is False  # nothing listens any more
    assert "error recovery: POST http://127.0.0.1:" in caplog.text
