"""
Server pushes that carry their send time are timed as ``push`` requests (wslocust.user.pushes).

The reference server stamps each broadcast with its ``time.time()`` (``"sent_at"``), which the default
``WebSocketUser.push_sent_at`` reads: a live event's fan-out delivery, measured per viewer.
"""

from __future__ import annotations

import json
import time

import locust
import pytest
from helpers import REPO_ROOT, run_server_process, wait_for
from locust.env import Environment
from locust_process import master_json_stats, run_locust

from wslocust import WebSocketUser
from wslocust.run.state import run_state
from wslocust.server import ServerConfig, create_server
from wslocust.user.pushes import epoch_time, sent_at_field


@pytest.mark.parametrize(
    ("message", "sent_at"),
    [
        ('{"broadcast": 3, "sent_at": 1718000000.25}', 1718000000.25),
        ('{"sent_at": 1718000000}', 1718000000),
        ('{"sent_at": "1718000000"}', None),  # a string is not a time
        ('{"sent_at": true}', None),
        ('["sent_at", 1718000000]', None),  # not an object
        ('{"sent_at": 17', None),  # not JSON
        ("broadcast 3", None),
        (b'{"sent_at": 1718000000.25}', None),  # binary: not read
    ],
)
def test_the_default_hook_reads_a_json_objects_sent_at_number(message, sent_at):
    assert sent_at_field(message) == sent_at


def test_a_perf_counter_reading_is_moved_to_the_wall_clock():
    before = time.time()
    moved = epoch_time(time.perf_counter())
    assert before <= moved <= time.time() + 0.001


def start_local_run(user_class: type[WebSocketUser], users: int, host: str):
    environment = Environment(user_classes=[user_class], events=locust.events, host=host)
    runner = environment.create_local_runner()
    runner.start(users, spawn_rate=users)
    return environment, runner


def test_every_broadcast_a_user_receives_is_a_push_request_timed_from_its_send_time():
    broadcasting = create_server(ServerConfig(host="127.0.0.1", port=0, broadcast_interval_ms=20))
    broadcasting.start()
    received = []

    class Viewer(WebSocketUser):
        message_interval = 0

        def on_message(self, message):
            received.append(message)  # still called: the push is timed, then handed on

    try:
        environment, runner = start_local_run(Viewer, 5, broadcasting.url)
        wait_for(lambda: broadcasting.counters.broadcasts_sent >= 50, timeout=10)
        runner.quit()  # every user closes: no broadcast goes out after
        wait_for(lambda: broadcasting.counters.connections_open == 0, timeout=5)
    finally:
        broadcasting.stop(timeout=1)
    push = environment.stats.get("push", "WS")
    assert push.num_failures == 0
    # Each broadcast the server wrote, read before the close: the client's count of pushes is the server's.
    assert push.num_requests == broadcasting.counters.broadcasts_sent == len(received)
    assert run_state(environment).counters.unsolicited_received == push.num_requests
    assert 0 <= push.min_response_time <= push.max_response_time < 1000  # on one host, in the same process


def test_a_hook_that_returns_garbage_is_reported_once_and_the_user_carries_on():
    broadcasting = create_server(ServerConfig(host="127.0.0.1", port=0, broadcast_interval_ms=10))
    broadcasting.start()
    calls = []
    received = []

    class Milliseconds(WebSocketUser):
        message_interval = 0.02

        def push_sent_at(self, message):
            calls.append(message)
            return json.loads(message)["sent_at"] * 1000  # milliseconds: not time.time()

        def on_message(self, message):
            received.append(message)

    try:
        environment, runner = start_local_run(Milliseconds, 1, broadcasting.url)
        wait_for(lambda: len(received) >= 5 and environment.stats.get("echo", "WS").num_requests >= 3, timeout=10)
        runner.quit()
    finally:
        broadcasting.stop(timeout=1)
    [row] = runner.exceptions.values()
    assert row["count"] == 1 and "push_sent_at returned" in row["msg"] and "expected the sender's" in row["msg"]
    assert len(calls) == 1  # not called again for this user
    assert environment.stats.get("push", "WS").num_requests == 0
    assert run_state(environment).counters.disconnects == 0  # the connection lives on
    assert environment.stats.get("echo", "WS").num_failures == 0


def test_a_hook_that_raises_is_reported_once_too():
    broadcasting = create_server(ServerConfig(host="127.0.0.1", port=0, broadcast_interval_ms=10))
    broadcasting.start()
    received = []

    class Buggy(WebSocketUser):
        message_interval = 0

        def push_sent_at(self, message):
            return json.loads(message)["timestamp"]  # KeyError: a field this server does not send

        def on_message(self, message):
            received.append(message)

    try:
        _, runner = start_local_run(Buggy, 1, broadcasting.url)
        wait_for(lambda: len(received) >= 5, timeout=10)
        runner.quit()
    finally:
        broadcasting.stop(timeout=1)
    [row] = runner.exceptions.values()
    assert row["count"] == 1 and "timestamp" in row["msg"]


@pytest.mark.slow
def test_the_live_event_scenario_times_the_fan_out_of_a_broadcasting_server():
    with run_server_process("--broadcast-interval-ms", "100") as server:
        run = run_locust(
            "-f", str(REPO_ROOT / "locustfiles" / "live_event.py"), "--headless", "--json",
            "--host", server.url, "--ws-time-scale", "0.0002", "--ws-target-connections", "20",
        )  # fmt: skip
        wait_for(lambda: server.stats()["connections_open"] == 0, timeout=5)
        sent = server.stats()["broadcasts_sent"]
    assert run.returncode == 0, run.stderr
    push = master_json_stats(run.stdout)["push"]
    assert push["method"] == "WS" and push["num_failures"] == 0
    assert push["num_requests"] == sent > 0, (push["num_requests"], sent)
    assert 0 <= push["min_response_time"] <= push["max_response_time"] < 1000
