"""
Scripting what real clients do, and echoes beside keyed requests:

- ``echo()`` matches its own replies whatever ``reply_key`` does (a JSON user's echoes used to time
  out, every one, although the server answered them: they were counted as pushes);
- ``receive(predicate, timeout, name)`` waits for a particular server message, timed as a request
  from the call to that message's arrival; what it takes is not also a push, so the counts add up to
  the server's;
- ``connect_headers(attempt)`` gives the upgrade headers of every attempt (an expiring token is
  renewed at each reconnect); a bad header or an exception fails that attempt only.

Real ``locust`` runs against ``wslocust serve`` and the fault server, and in-process runs (Locust's
LocalRunner) against the reference server for the quick cases.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import locust
import pytest
from fault_servers import FaultServer
from helpers import run_server_process, wait_for
from locust import constant, task
from locust.env import Environment
from test_fault_matrix import LocustResult, LocustRun, assert_attempts_add_up, assert_clean_exit

from wslocust import WebSocketUser
from wslocust.exceptions import ConfigurationError
from wslocust.redaction import redact_text
from wslocust.run.state import run_state
from wslocust.server import ServerConfig, create_server
from wslocust.user.connecting import checked_headers


def run_locustfile(folder: Path, source: str, users: int, run_time: float, host: str) -> LocustResult:
    """A headless run of ``source``, whose classes take their target from ``HOST``."""
    locustfile = folder / "hooks_locustfile.py"
    locustfile.write_text(f"HOST = {host!r}\n" + textwrap.dedent(source))
    return LocustRun(locustfile, users, run_time).wait()


def start_run(user_class: type[WebSocketUser], host: str, users: int = 1) -> tuple[Environment, object]:
    environment = Environment(user_classes=[user_class], events=locust.events, host=host)
    runner = environment.create_local_runner()
    runner.start(users, spawn_rate=1000)
    return environment, runner


# echo() beside a JSON reply_key ------------------------------------------------------------------

KEYED = """
    import json

    from locust import constant, task

    from wslocust import WebSocketUser


    class Keyed(WebSocketUser):
        host = HOST
        wait_time = constant(0.02)
        reply_timeout = 1.0

        def reply_key(self, message):
            return json.loads(message)["id"]  # raises on the default echo payloads: not JSON

        @task
        def talk(self):
            self.echo()  # "<n>:xxx...": reply_key cannot parse its reply
            self.echo('{"id": 99, "text": "hello"}', name="echo json")  # reply_key 99: no request waits on it
            self.request(json.dumps({"id": 7, "op": "get"}), match=7, name="rpc")
"""


@pytest.mark.slow
def test_echoes_of_a_json_keyed_user_match_their_payload_and_the_counts_equal_the_servers(tmp_path):
    run_time = 3.0
    with run_server_process() as server:
        result = run_locustfile(tmp_path, KEYED, 3, run_time, server.url)
        wait_for(lambda: server.stats()["connections_open"] == 0, timeout=5)
        truth = server.stats()
    # Stop mid-task (a round trip in flight) or not: what was answered is an echo, never a push.
    for name in ("echo", "echo json", "rpc"):
        assert result.requests(name)[0] > 30 and result.requests(name)[1] == 0, (name, result.stats)
    answered = sum(result.requests(name)[0] for name in ("echo", "echo json", "rpc"))
    summary = result.summary
    assert summary["timed_out"] == summary["unsolicited"] == summary["late"] == summary["duplicated"] == 0, summary
    assert answered == summary["received"] == truth["messages_sent"]
    assert summary["sent"] == truth["messages_received"] == answered + summary["in_flight"]
    assert "(0 pushed)" in result.stderr
    assert_clean_exit(result, run_time, 0)


# receive() ---------------------------------------------------------------------------------------

TICKS = """
    from locust import constant, task

    from wslocust import WebSocketUser


    def is_broadcast(message):
        return message.startswith('{"broadcast"')


    class Player(WebSocketUser):
        host = HOST
        wait_time = constant(0)

        @task
        def play(self):
            self.echo()
            self.receive(is_broadcast, timeout=2, name="tick")  # the next game tick


    class Viewer(WebSocketUser):
        host = HOST
        message_interval = 0  # holds its connection: every broadcast is a push
"""


@pytest.mark.slow
def test_receive_takes_the_messages_it_waits_for_timed_from_the_call_and_the_counts_add_up(tmp_path):
    interval_ms, run_time = 100, 3.0
    with run_server_process("--broadcast-interval-ms", str(interval_ms)) as server:
        result = run_locustfile(tmp_path, TICKS, 4, run_time, server.url)
        wait_for(lambda: server.stats()["connections_open"] == 0, timeout=5)
        truth = server.stats()
    assert_clean_exit(result, run_time, 0)
    ticks, tick_failures = result.requests("tick")
    pushes, push_failures = result.requests("push")
    echoes, echo_failures = result.requests("echo")
    assert tick_failures == push_failures == echo_failures == 0, result.stats
    assert ticks > 2 * run_time * 1000 / interval_ms * 0.5, result.stats  # 2 players: most ticks are waited for
    assert pushes > 2 * run_time * 1000 / interval_ms * 0.5, result.stats  # 2 viewers: every tick is a push
    # Each broadcast went one way: to the receive() that took it, or to the pushes.
    summary = result.summary
    assert ticks + pushes == truth["broadcasts_sent"], (ticks, pushes, truth)
    assert summary["unsolicited"] == pushes
    assert summary["received"] == echoes + ticks + pushes == truth["messages_sent"]
    # A player asks for the next tick right after the previous one: it waits about an interval.
    tick = result.stats["tick"]
    average = tick["total_response_time"] / ticks
    assert 0.5 * interval_ms < average < 1.5 * interval_ms, tick
    assert 0 <= tick["min_response_time"] <= tick["max_response_time"] < 2000, tick


def test_a_receive_that_sees_no_matching_message_fails_after_its_timeout():
    pushing = create_server(ServerConfig(host="127.0.0.1", port=0, broadcast_interval_ms=20))
    pushing.start()
    offered = []

    class Waiting(WebSocketUser):
        wait_time = constant(10)
        close_timeout = 0.1

        @task
        def wait(self):
            self.receive(lambda message: offered.append(message), timeout=0.3, name="never")  # None: no

    try:
        started = time.monotonic()
        environment, runner = start_run(Waiting, pushing.url)
        wait_for(lambda: environment.stats.get("never", "WS").num_failures == 1, timeout=5)
        elapsed = time.monotonic() - started
        runner.quit()
    finally:
        pushing.stop(timeout=1)
    never = environment.stats.get("never", "WS")
    assert (never.num_requests, never.num_failures) == (1, 1)
    assert never.max_response_time == 300
    assert 0.3 <= elapsed < 3
    [error] = environment.stats.errors.values()
    assert repr(error.error) == "ReceiveTimeout('no matching message within 0.3 s')"
    # The predicate saw the broadcasts, refused them, and each went on as a push.
    counters = run_state(environment).counters
    assert len(offered) >= 5 and counters.unsolicited_received >= len(offered)
    assert environment.stats.get("push", "WS").num_requests == counters.unsolicited_received


def test_a_predicate_that_raises_fails_its_task_and_the_message_stays_a_push():
    pushing = create_server(ServerConfig(host="127.0.0.1", port=0, broadcast_interval_ms=20))
    pushing.start()

    class Buggy(WebSocketUser):
        wait_time = constant(10)

        @task
        def wait(self):
            self.receive(lambda message: json.loads(message)["missing"], timeout=5, name="tick")

    try:
        environment, runner = start_run(Buggy, pushing.url)
        wait_for(lambda: environment.runner.exceptions, timeout=5)
        runner.quit()
    finally:
        pushing.stop(timeout=1)
    [exception] = environment.runner.exceptions.values()
    assert exception["msg"] == "'missing'"  # KeyError('missing'), raised in the task
    assert 'json.loads(message)["missing"]' in exception["traceback"]  # with the predicate's line
    assert environment.stats.get("tick", "WS").num_requests == 0  # the task failed, not a request
    assert run_state(environment).counters.unsolicited_received >= 1


def test_a_receive_fails_with_its_connection_when_the_server_closes_it():
    faults = FaultServer().start()

    class Subscriber(WebSocketUser):
        host = faults.url("/close/1011?n=1")
        wait_time = constant(10)
        reconnect_delay = 0.05

        @task
        def subscribe(self):
            self.send("subscribe")  # the fault server closes with 1011 on the first message
            self.receive(lambda message: message == "subscribed", timeout=5, name="subscribed")

    try:
        started = time.monotonic()
        environment, runner = start_run(Subscriber, Subscriber.host)
        wait_for(lambda: environment.stats.get("subscribed", "WS").num_failures == 1, timeout=5)
        elapsed = time.monotonic() - started
        runner.quit()
    finally:
        faults.stop()
    assert elapsed < 4  # not its 5 s timeout
    errors = {(error.name, repr(error.error)) for error in environment.stats.errors.values()}
    assert ("subscribed", "ConnectionClosedError('closed by server with code 1011 (fault 1011)')") in errors


# connect_headers() -------------------------------------------------------------------------------

REFRESHING = """
    from locust import constant, task

    from wslocust import WebSocketUser


    class Refreshing(WebSocketUser):
        host = HOST
        wait_time = constant(0.05)
        reconnect_delay = 0.05

        def connect_headers(self, attempt):
            if attempt == 2:
                raise RuntimeError("token-1 expired; token service down")  # the first token: a secret
            if attempt == 3:
                return {"Authorization": "Bearer bad\\r\\nX-Injected: 1"}
            if attempt == 4:
                return [("X-Attempt", 4)]
            return {"Authorization": f"Bearer token-{attempt}", "X-Attempt": str(attempt)}

        @task
        def talk(self):
            self.echo()
"""


@pytest.mark.slow
def test_connect_headers_runs_before_every_attempt_and_a_bad_one_fails_that_attempt_only(tmp_path):
    run_time = 3.0
    faults = FaultServer().start()
    target = "/close/1001?n=3"  # each of the first three connections closes on its first message
    try:
        result = run_locustfile(tmp_path, REFRESHING, 1, run_time, faults.url(target))
        assert faults.wait_idle(5)
        seen = faults.request_headers(target)
    finally:
        faults.stop()
    assert_clean_exit(result, run_time, 1)  # failures: exit code 1
    # The server saw each successful attempt's own token: attempts 2, 3 and 4 never reached it.
    assert [(headers["Authorization"], headers["X-Attempt"]) for headers in seen] == [
        (f"Bearer token-{attempt}", str(attempt)) for attempt in (1, 5, 6, 7)
    ]
    bad_value = (
        "ConfigurationError('connect_headers: invalid value for header Authorization: *** "
        "(CR, LF and control characters are not allowed)')"
    )
    not_strings = (
        "ConfigurationError('connect_headers returned a list: expected a dict of header names to "
        "values (str), (name, value) pairs, or None')"
    )
    assert result.failures == {
        ("disconnect", "ConnectionClosedOK('closed by server with code 1001 (fault 1001)')"): 3,
        ("echo", "ConnectionClosedOK('closed by server with code 1001 (fault 1001)')"): 3,  # lost
        ("reconnect", "RuntimeError('*** expired; token service down')"): 1,
        ("reconnect", bad_value): 1,
        ("reconnect", not_strings): 1,
    }
    assert result.requests("reconnect") == (6, 3)  # 3 failed attempts, then 3 reconnects
    assert result.summary["failed"] == 3 and result.summary["reconnects"] == 3
    assert_attempts_add_up(result)
    assert result.users_gave_up == 0  # it backed off and carried on
    assert "token-" not in result.stderr + result.stdout  # the tokens are secrets: never shown


def test_headers_from_the_hook_are_checked_like_the_class_headers():
    assert checked_headers({"Authorization": "Bearer abc"}) == [("Authorization", "Bearer abc")]
    assert checked_headers([("X-One", "1"), ("X-One", "2")]) == [("X-One", "1"), ("X-One", "2")]
    assert checked_headers(None) == []
    for bad in ("X-A: 1", 42, {"X-A": 1}, [("X-A",)], {b"X-A": "1"}):
        with pytest.raises(ConfigurationError, match="^connect_headers returned a "):
            checked_headers(bad)
    with pytest.raises(ConfigurationError, match="^connect_headers: invalid header name: 'X A'$"):
        checked_headers({"X A": "1"})
    with pytest.raises(ConfigurationError, match="^connect_headers: header Upgrade is set by the WebSocket handshake"):
        checked_headers({"Upgrade": "websocket"})
    with pytest.raises(ConfigurationError) as raised:
        checked_headers({"X-Api-Key": "s3cret\nvalue"})
    assert "s3cret" not in str(raised.value) and "***" in str(raised.value)
    # A secret-looking value the hook gave is a secret from then on.
    checked_headers({"Authorization": "Bearer renewed-token-0001"})
    assert redact_text("the server said: renewed-token-0001 is expired") == "the server said: *** is expired"
