"""WebSocketUser against the real reference server, in this process (Locust's LocalRunner)."""

from __future__ import annotations

import gc
import json
import os
import time

import gevent
import greenlet
import locust
from fault_servers import FaultServer
from helpers import wait_for
from locust import constant, task
from locust.env import Environment

from wslocust import ConnectionState, WebSocketUser
from wslocust.run.state import run_state
from wslocust.server import ServerConfig, create_server
from wslocust.user.ticks import BURST_GAP, SEND_SLACK, StepBurst


def start_run(*user_classes, users=1, host=None):
    environment = Environment(user_classes=list(user_classes), events=locust.events, host=host)
    runner = environment.create_local_runner()
    # Connect within milliseconds: wslocust.run.pacing spreads a burst over its size divided by the rate.
    runner.start(users, spawn_rate=1000)
    return environment, runner


def requests(environment, name):
    entry = environment.stats.get(name, "WS")
    return entry.num_requests, entry.num_failures


def answered(environment, name):
    requests_made, failures = requests(environment, name)
    return requests_made - failures


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_periodic_messages_are_echoed_and_counted_like_the_server(server):
    class Periodic(WebSocketUser):
        message_interval = 0.05

    environment, runner = start_run(Periodic, users=5, host=server.url)
    wait_for(lambda: requests(environment, "echo")[0] >= 50, timeout=10)
    runner.quit()

    connects, connect_failures = requests(environment, "connect")
    echoes, echo_failures = requests(environment, "echo")
    totals = run_state(environment).counters
    truth = server.counters
    assert (connects, connect_failures) == (5, 0)
    assert truth.connections_accepted == 5
    assert echo_failures == 0
    # A stopping user waits for its in-flight echoes, so nothing is left over.
    assert totals.replies_in_flight_at_stop == 0
    assert echoes == truth.messages_received == truth.messages_sent == totals.messages_sent
    assert environment.stats.get("echo", "WS").total_content_length == truth.bytes_sent
    assert totals.bytes_received == truth.bytes_sent
    assert totals.open == 0 and totals.closed == 5
    wait_for(lambda: server.counters.connections_open == 0, timeout=5)


def test_a_steps_burst_that_started_on_time_is_on_schedule_and_one_that_started_late_or_broke_off_is_not():
    burst = StepBurst()
    step = 1000.0
    # 75 ticks of one step (15,000 messages a second on the 5 ms grid), the first sent 0.5 ms after
    # the step, each 40 us after the one before: the last leaves 3.5 ms after its tick, on its cadence.
    sends = [step + 0.0005 + i * 0.00004 for i in range(75)]
    assert all(burst.on_schedule(step, at) for at in sends)
    assert sends[-1] - step > SEND_SLACK
    # A burst longer than its step (and the slack) cannot keep the cadence: its tail is late.
    longer = StepBurst()
    tail = [step + 0.0005 + i * 0.00004 for i in range(200)]  # the last 8.5 ms after the tick
    assert [longer.on_schedule(step, at) for at in tail].count(False) == sum(at - step > 0.007 for at in tail) > 0
    # The event loop did something else for longer than BURST_GAP: the rest of the step fell behind.
    resumed = sends[-1] + BURST_GAP + 0.0001
    assert not burst.on_schedule(step, resumed)
    assert not burst.on_schedule(step, resumed + 0.00004)
    # The next step's first message left late: the generator fell behind, and its whole burst with it.
    step += 0.005
    first = step + SEND_SLACK + 0.001
    assert not burst.on_schedule(step, first)
    assert not burst.on_schedule(step, first + 0.00004)
    # A step whose first message left on time starts a burst of its own; a tick repeated with another
    # interval's rounding (a microsecond off) belongs to it, an earlier step's late message does not.
    step += 0.005
    assert burst.on_schedule(step, step + 0.0018)
    assert burst.on_schedule(step + 1e-9, step + SEND_SLACK + 0.0003)
    assert not burst.on_schedule(step - 0.005, step + SEND_SLACK + 0.0004)


def test_echo_request_and_unsolicited_messages(server):
    replies = []

    class Scripted(WebSocketUser):
        wait_time = constant(0.01)

        def reply_key(self, message):
            return json.loads(message)["id"] if message[:1] == "{" else message

        def on_message(self, message):
            replies.append(message)

        @task
        def talk(self):
            assert self.echo("hello") == "hello"
            assert self.echo(b"\x00\x01") == b"\x00\x01"
            assert self.request(json.dumps({"id": 7}), match=7, name="rpc") == '{"id": 7}'

    environment, runner = start_run(Scripted, users=2, host=server.url)
    wait_for(lambda: requests(environment, "rpc")[0] >= 10, timeout=10)
    runner.quit()
    assert requests(environment, "echo")[1] == 0
    assert requests(environment, "rpc")[1] == 0
    assert replies == []  # every message answered a request


def test_reply_timeout_is_a_failure_of_its_own():
    silent = create_server(ServerConfig(host="127.0.0.1", port=0, delay_ms=2000))
    silent.start()

    class Impatient(WebSocketUser):
        wait_time = constant(10)
        close_timeout = 0.1

        @task
        def ask(self):
            self.echo("slow", timeout=0.2)

    try:
        environment, runner = start_run(Impatient, users=1, host=silent.url)
        wait_for(lambda: requests(environment, "echo")[1] == 1, timeout=5)
        runner.quit()
    finally:
        silent.stop(timeout=1)
    [error] = environment.stats.errors.values()
    assert repr(error.error) == "ReceiveTimeout('no reply within 0.2 s')"
    assert run_state(environment).counters.replies_timed_out == 1


def test_server_pushes_reach_on_message():
    pushing = create_server(ServerConfig(host="127.0.0.1", port=0, broadcast_interval_ms=20))
    pushing.start()
    received = []

    class Listener(WebSocketUser):
        message_interval = 0

        def on_message(self, message):
            received.append(message)

    try:
        environment, runner = start_run(Listener, users=2, host=pushing.url)
        wait_for(lambda: len(received) >= 6, timeout=5)
        runner.quit()
    finally:
        pushing.stop(timeout=1)
    assert run_state(environment).counters.unsolicited_received >= 6
    assert all(message.startswith('{"broadcast": ') for message in received)


def test_server_close_is_counted_and_the_user_reconnects():
    closing = create_server(ServerConfig(host="127.0.0.1", port=0, close_after=3, close_code=4000))
    closing.start()

    class Reconnecting(WebSocketUser):
        message_interval = 0.02
        reconnect_delay = 0.01

    try:
        environment, runner = start_run(Reconnecting, users=1, host=closing.url)
        wait_for(lambda: requests(environment, "reconnect")[0] >= 2, timeout=10)
        runner.quit()
    finally:
        closing.stop(timeout=1)
    disconnects = environment.stats.get("disconnect", "WS")
    assert disconnects.num_failures >= 2
    assert any("closed by server with code 4000" in str(e.error) for e in environment.stats.errors.values())
    assert run_state(environment).counters.reconnects == requests(environment, "reconnect")[0]
    assert closing.counters.connections_accepted == 1 + run_state(environment).counters.reconnects


def test_refused_connection_gives_up_after_max_attempts(unused_port):
    class Stubborn(WebSocketUser):
        reconnect_delay = 0.01
        max_reconnect_attempts = 3

    environment, runner = start_run(Stubborn, users=1, host=f"ws://127.0.0.1:{unused_port}/ws")
    wait_for(lambda: run_state(environment).counters.failed == 1, timeout=10)
    wait_for(lambda: runner.user_count == 0, timeout=5)
    runner.quit()
    attempts, failures = requests(environment, "connect")
    assert attempts == failures == 4  # the first attempt and three retries
    [error] = environment.stats.errors.values()
    assert repr(error.error) == f"ConnectionRefused('connection refused by 127.0.0.1:{unused_port}')"


def test_handshake_rejection_is_categorised(server):
    class WrongPath(WebSocketUser):
        max_reconnect_attempts = 0

    environment, runner = start_run(WrongPath, users=1, host=server.url.replace("/ws", "/nope"))
    wait_for(lambda: run_state(environment).counters.failed == 1, timeout=5)
    runner.quit()
    [error] = environment.stats.errors.values()
    assert "HTTP 404" in str(error.error)


def test_ping_round_trips_are_timed(server):
    class Pinging(WebSocketUser):
        message_interval = 0
        ping_interval = 0.02

    environment, runner = start_run(Pinging, users=1, host=server.url)
    wait_for(lambda: requests(environment, "ping")[0] >= 3, timeout=5)
    runner.quit()
    assert requests(environment, "ping")[1] == 0


def test_stop_closes_cleanly_without_leaking_descriptors(server):
    class Holder(WebSocketUser):
        message_interval = 0.05

    before = open_fds()
    environment, runner = start_run(Holder, users=20, host=server.url)
    wait_for(lambda: run_state(environment).counters.open == 20, timeout=10)
    assert server.counters.connections_open == 20
    users = [greenlet.args[0] for greenlet in runner.user_greenlets]
    runner.quit()
    wait_for(lambda: server.counters.connections_open == 0, timeout=5)
    assert [user.state for user in users] == [ConnectionState.CLOSED] * 20
    # closed sockets are released as their greenlets finish: wait for it rather than one switch
    wait_for(lambda: open_fds() <= before, timeout=5, message=f"open descriptors back to {before}")


def test_an_exception_in_on_message_is_reported_and_the_connection_lives_on():
    pushing = create_server(ServerConfig(host="127.0.0.1", port=0, broadcast_interval_ms=20))
    pushing.start()
    calls = []

    class Buggy(WebSocketUser):
        message_interval = 0.02

        def on_message(self, message):
            calls.append(message)
            raise ValueError("bug in the locustfile")

    try:
        environment, runner = start_run(Buggy, users=1, host=pushing.url)
        wait_for(lambda: len(calls) >= 3 and requests(environment, "echo")[0] >= 3, timeout=5)
        runner.quit()
    finally:
        pushing.stop(timeout=1)
    assert run_state(environment).counters.disconnects == 0
    assert requests(environment, "echo")[1] == 0
    [row] = runner.exceptions.values()
    assert row["msg"] == "bug in the locustfile" and row["count"] == len(calls)


def test_a_closed_loop_never_times_out_early_however_long_it_runs():
    # The reply timer is reused from one request to the next: every wait gets the full timeout,
    # not what the previous waits left of it (libev keeps a stopped timer's remaining time).
    # Checked on each wait that failed rather than by asking for none: on a loaded machine a
    # reply may well come after 0.1 s, but a wait that failed must have lasted the timeout.
    slow = create_server(ServerConfig(host="127.0.0.1", port=0, delay_ms=5))
    slow.start()
    early = []

    class ClosedLoop(WebSocketUser):
        wait_time = constant(0)
        reply_timeout = 0.1

        @task
        def echo_once(self):
            started = time.perf_counter()
            if self.echo() is None:
                waited = time.perf_counter() - started
                if waited < 0.9 * self.reply_timeout:  # libev's timers never fire early: margin to spare
                    early.append(waited)

    try:
        environment, runner = start_run(ClosedLoop, users=2, host=slow.url)
        # 5 ms per echo: 100 answered echoes per user waited 0.5 s in all, five timeouts' worth
        wait_for(lambda: early or answered(environment, "echo") >= 200, timeout=20)
        runner.quit()
    finally:
        slow.stop(timeout=1)
    assert early == []
    # every failure is a timeout (no early one, and nothing else failed)
    assert requests(environment, "echo")[1] == run_state(environment).counters.replies_timed_out


def test_a_user_without_tasks_can_keep_a_window_of_echoes_in_flight(server):
    class Window(WebSocketUser):
        in_flight = 3

    environment, runner = start_run(Window, users=2, host=server.url)
    wait_for(lambda: requests(environment, "echo")[0] >= 500, timeout=10)
    runner.quit()
    echoes, failures = requests(environment, "echo")
    totals = run_state(environment).counters
    assert failures == 0 and totals.replies_in_flight_at_stop == 0  # the window drained at stop
    assert echoes == server.counters.messages_received == totals.messages_sent


def test_a_closed_loop_sends_its_next_echo_after_the_event_loops_reads_not_from_inside_one(server):
    # Sent from inside the read of its reply, each connection's next echo woke the server on its own
    # (the benchmark's server woke 0.5 times per echo, against 0.02 with the sends after the turn's reads,
    # and the generator paid 18 us of system time per echo against 10).
    sends_inside_a_read = []
    sends = []

    class Window(WebSocketUser):
        in_flight = 1
        _reading = False

        def _on_message(self, message, received_at):
            self._reading = True
            try:
                super()._on_message(message, received_at)
            finally:
                self._reading = False

        def _start_request(self, *args, **kwargs):
            (sends_inside_a_read if self._reading else sends).append(args[0])
            return super()._start_request(*args, **kwargs)

    environment, runner = start_run(Window, users=3, host=server.url)
    wait_for(lambda: requests(environment, "echo")[0] >= 300, timeout=10)
    runner.quit()
    assert sends_inside_a_read == []
    assert requests(environment, "echo") == (server.counters.messages_received, 0)
    assert len(sends) == server.counters.messages_received


def test_a_ramp_down_stops_users_without_a_waiting_greenlet_each_and_counts_them_gone_at_once():
    # Locust stops each user of a ramp-down from a greenlet spawned for it, which waited until the user had
    # ended: one more ~8 KB greenlet per stopping user while its close waits for the server (5,000 -> 500
    # users: +37 MiB), and the stopping users still counted as running. Here every close waits close_timeout.
    server = FaultServer().start()

    class Holder(WebSocketUser):
        close_timeout = 0.5

    def live_greenlets():
        return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet) and not obj.dead)

    try:
        environment, runner = start_run(Holder, users=50, host=server.url("/half-open"))
        counters = run_state(environment).counters
        wait_for(lambda: counters.open == 50, timeout=10)
        before = live_greenlets()
        most = [before]
        closed_when_counted_gone = []

        def watch():
            deadline = time.monotonic() + 10
            while counters.closed < 45 and time.monotonic() < deadline:
                most.append(live_greenlets())
                if runner.user_count == 5 and not closed_when_counted_gone:
                    closed_when_counted_gone.append(counters.closed)
                gevent.sleep(0.02)

        watcher = gevent.spawn(watch)
        runner.start(5, spawn_rate=1000)
        watcher.join(timeout=15)
        assert counters.open == 5 and counters.closed == 45
        assert runner.user_count == 5
        runner.quit()
    finally:
        server.stop()
    assert counters.closed == 50
    # Gone from Locust's count while their closes still waited for the server.
    assert closed_when_counted_gone and closed_when_counted_gone[0] < 45
    assert max(most) - before < 10, f"{max(most) - before} more greenlets while 45 users stopped"


def test_a_whole_stop_waits_for_every_close_at_once_not_from_a_greenlet_per_user(monkeypatch):
    # The closes wait close_timeout for a server that answers nothing. Locust stopped each user from a
    # greenlet of its own that waited for it: one more ~8 KB greenlet per user, the peak memory of a
    # 10,000-connection stop. The runner now waits for them all at once, before test_stop's listeners;
    # and Locust's stop_users, which calls each user's stop from a greenlet spawned for it (gevent.spawn_later),
    # finds the users already stopping (~1.8 KB per user of a 10,000-connection stop's peak).
    server = FaultServer().start()

    class Holder(WebSocketUser):
        close_timeout = 0.5

    at_test_stop = {}
    users = []
    spawned_later = []
    locust_spawn_later = gevent.spawn_later

    def spawn_later(*args, **kwargs):
        spawned_later.append(args)
        return locust_spawn_later(*args, **kwargs)

    def look_at_test_stop(environment, **_):
        at_test_stop["closed"] = run_state(environment).counters.closed
        at_test_stop["users alive"] = sum(not user_greenlet.dead for user_greenlet in users)

    def live_greenlets():
        return sum(1 for obj in gc.get_objects() if isinstance(obj, greenlet.greenlet) and not obj.dead)

    locust.events.test_stop.add_listener(look_at_test_stop)
    try:
        environment, runner = start_run(Holder, users=50, host=server.url("/half-open"))
        wait_for(lambda: run_state(environment).counters.open == 50, timeout=10)
        users.extend(runner.user_greenlets)
        before = live_greenlets()
        monkeypatch.setattr(gevent, "spawn_later", spawn_later)
        quitting = gevent.spawn(runner.quit)
        most = before
        while not quitting.dead:
            most = max(most, live_greenlets())
            gevent.sleep(0.05)
    finally:
        locust.events.test_stop.remove_listener(look_at_test_stop)
        server.stop()
    assert len(users) == 50
    assert at_test_stop == {"closed": 50, "users alive": 0}
    assert most - before < 10, f"{most - before} more greenlets during the stop of 50 users"
    assert not [args for args in spawned_later if getattr(args[1], "__name__", "") == "stop"], "a greenlet per user"
