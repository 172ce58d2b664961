"""Request correlation without I/O: requests, replies and their integrity, driven by a fake clock."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from wslocust.run.counters import WsCounters
from wslocust.user.correlation import TIMED_OUT_REMEMBERED, Correlator

SIZE = 16
"""Size of the numbered payloads in these tests."""

TIMEOUT = 10.0


class FakeClock:
    """Seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def correlator():
    return Correlator(WsCounters())


def send_echo(correlator, clock, blocking=False):
    """Book a numbered echo the way the user does; return its payload and request."""
    payload = correlator.next_payload(SIZE)
    return payload, correlator.add(payload, "echo", clock.now, blocking, correlator.sequence, echo=True)


def test_numbered_payloads_count_up_and_fill_the_message_size(correlator):
    assert [correlator.next_payload(SIZE) for _ in range(2)] == ["1:xxxxxxxxxxxxxx", "2:xxxxxxxxxxxxxx"]
    assert correlator.next_payload(1) == "3:"  # never shorter than its number
    assert correlator.sequence == 3


def test_a_reply_answers_the_request_waiting_on_its_key(correlator, clock):
    request = correlator.add(7, "rpc", clock.now, blocking=True)
    assert correlator.match(8, '{"id": 8}') is None
    clock.advance(0.25)
    assert correlator.match(7, '{"id": 7}') is request
    assert request.done and request.reply == '{"id": 7}'
    assert clock.now - request.scheduled_at == 0.25  # the round trip the user records
    assert not correlator.waiting() and correlator.match(7, '{"id": 7}') is None


def test_several_requests_on_one_key_are_answered_oldest_first(correlator, clock):
    first, second, third = (correlator.add("ping", f"n{i}", clock.advance(1), blocking=False) for i in range(3))
    assert list(correlator) == [first, second, third]
    assert correlator.match("ping", "pong") is first
    assert correlator.forget(third) and not correlator.forget(third)  # from the end of the chain
    assert list(correlator) == [second]
    assert correlator.match("ping", "pong") is second
    assert not correlator.waiting()


def test_an_unhashable_key_is_refused_before_anything_changes(correlator, clock):
    request = correlator.add("a", "rpc", clock.now, blocking=False)
    with pytest.raises(TypeError):
        correlator.match({"id": 1}, "reply")  # the user takes such a reply for a server push
    assert list(correlator) == [request]


def test_overdue_requests_expire_oldest_first_and_are_counted(correlator, clock):
    _, old = send_echo(correlator, clock)
    _, older_but_less = send_echo(correlator, clock)
    clock.advance(5)
    _, recent = send_echo(correlator, clock)
    assert correlator.expire(clock.advance(TIMEOUT - 5 - 0.001), TIMEOUT) == []
    assert correlator.expire(clock.advance(0.001), TIMEOUT) == [old, older_but_less]
    assert list(correlator) == [recent] and correlator.counters.replies_timed_out == 2
    assert not old.done  # timed out, not answered
    assert correlator.expire(clock.advance(5), TIMEOUT) == [recent]


def test_a_waiting_caller_times_its_own_request_out(correlator, clock):
    _, blocking = send_echo(correlator, clock, blocking=True)
    _, periodic = send_echo(correlator, clock)
    # The oldest is waited for: expiry stops there, the caller's own timer ends it.
    assert correlator.expire(clock.advance(2 * TIMEOUT), TIMEOUT) == []
    assert correlator.time_out(blocking) and not correlator.time_out(blocking)
    assert correlator.expire(clock.now, TIMEOUT) == [periodic]
    assert correlator.counters.replies_timed_out == 2


def test_a_reply_that_came_just_before_the_timeout_is_not_timed_out(correlator, clock):
    payload, request = send_echo(correlator, clock, blocking=True)
    correlator.match_echo(payload)
    assert not correlator.time_out(request)
    assert correlator.counters.replies_timed_out == 0


def test_a_reply_after_its_timeout_is_late_and_a_second_copy_is_duplicated(correlator, clock):
    payload, _ = send_echo(correlator, clock)
    correlator.expire(clock.advance(TIMEOUT), TIMEOUT)
    assert correlator.match_echo(payload) is None  # nobody waits any more
    assert correlator.count_late_or_duplicate(payload, SIZE)
    assert correlator.count_late_or_duplicate(payload, SIZE)
    counters = correlator.counters
    assert (counters.replies_late, counters.replies_duplicated) == (1, 1)


def test_a_reply_answered_twice_is_duplicated(correlator, clock):
    payload, request = send_echo(correlator, clock)
    assert correlator.match_echo(payload) is request
    assert correlator.match_echo(payload) is None
    assert correlator.count_late_or_duplicate(payload, SIZE)
    assert (correlator.counters.replies_duplicated, correlator.counters.replies_late) == (1, 0)


@pytest.mark.parametrize(
    "message",
    ["broadcast 1", b"1:xxxxxxxxxxxxxx", "1:xxxxxxxxxxxxxy", "1:xxx", "9:xxxxxxxxxxxxxx", "0:xxxxxxxxxxxxxx", "1"],
    ids=["text push", "binary", "other padding", "other size", "never sent", "zero", "no colon"],
)
def test_only_echoes_of_our_own_numbered_payloads_are_taken_for_late_or_duplicated(correlator, clock, message):
    send_echo(correlator, clock)
    assert not correlator.count_late_or_duplicate(message, SIZE)
    assert correlator.counters == WsCounters()  # nothing counted: a server push


def test_replies_that_overtake_earlier_ones_count_the_earlier_ones_out_of_order(correlator, clock):
    payloads = [send_echo(correlator, clock)[0] for _ in range(4)]
    for index in (1, 0, 3, 2):
        assert correlator.match_echo(payloads[index]) is not None
    assert correlator.counters.replies_out_of_order == 2
    # requests without a sequence number (request(), echo() with a payload) are not checked
    correlator.add("x", "rpc", clock.now, blocking=True)
    correlator.match("x", "x")
    assert correlator.counters.replies_out_of_order == 2


def test_the_timed_out_memory_is_bounded_and_forgets_the_oldest_first(clock):
    assert TIMED_OUT_REMEMBERED == 10_000
    correlator = Correlator(WsCounters(), remembered=2)
    payloads = [send_echo(correlator, clock)[0] for _ in range(3)]
    assert len(correlator.expire(clock.advance(TIMEOUT), TIMEOUT)) == 3
    for payload in payloads:
        correlator.count_late_or_duplicate(payload, SIZE)
    # the first timeout was forgotten: its late reply can only be told apart as a duplicate
    assert (correlator.counters.replies_late, correlator.counters.replies_duplicated) == (2, 1)


def test_a_new_connection_starts_the_integrity_checks_afresh(correlator, clock):
    first, second = (send_echo(correlator, clock)[0] for _ in range(2))
    correlator.match_echo(second)
    correlator.expire(clock.advance(TIMEOUT), TIMEOUT)  # the first timed out
    correlator.new_connection()
    assert correlator.count_late_or_duplicate(first, SIZE)  # not late: it cannot come on this connection
    assert (correlator.counters.replies_late, correlator.counters.replies_duplicated) == (0, 1)
    third = send_echo(correlator, clock)[0]
    correlator.match_echo(third)
    assert correlator.counters.replies_out_of_order == 0


def test_a_closed_connection_fails_every_pending_request(correlator, clock):
    waiting = correlator.add("k", "rpc", clock.now, blocking=True)
    waiting.waiter = object()  # the user's sleeping greenlet: the caller wakes it
    behind = correlator.add("k", "rpc", clock.now, blocking=False)
    _, echo = send_echo(correlator, clock)
    lost = correlator.fail_all()
    assert lost == [echo, waiting, behind]  # echoes, then requests
    assert all(request.done and request.reply is None for request in lost)
    assert not correlator.waiting() and correlator.counters.replies_lost == 3
    assert correlator.expire(clock.advance(TIMEOUT), TIMEOUT) == []
    assert not correlator.time_out(waiting)  # already failed: not timed out as well
    assert correlator.counters.replies_timed_out == 0


def test_a_stopping_user_counts_what_was_still_in_flight(correlator, clock):
    correlator.add("k", "rpc", clock.now, blocking=True)
    correlator.add("k", "rpc", clock.now, blocking=False)
    send_echo(correlator, clock)
    assert correlator.discard_all() == 3
    assert not correlator.waiting() and correlator.counters.replies_in_flight_at_stop == 3
    assert correlator.counters.replies_lost == 0


# Echoes and requests: two kinds of matching -------------------------------------------------------


def keyed_by_id(message):
    """A JSON user's reply_key: the ``id`` of an object."""
    return json.loads(message)["id"]


def test_an_echo_is_answered_by_its_payload_whatever_the_reply_key_says(correlator, clock):
    echo = correlator.add('{"id": 7, "text": "hi"}', "echo", clock.now, blocking=True, echo=True)
    request = correlator.add(7, "rpc", clock.now, blocking=True)
    # The echo's payload comes back: it answers the echo, although its reply_key (7) is the request's match.
    message = '{"id": 7, "text": "hi"}'
    assert correlator.match_echo(message) is echo and echo.reply == message
    assert list(correlator) == [request]
    # The reply to the request is another message with that key: only it answers the request.
    reply = '{"id": 7, "result": 42}'
    assert correlator.match_echo(reply) is None
    assert correlator.match(keyed_by_id(reply), reply) is request
    assert not correlator.waiting()


def test_a_request_is_not_answered_by_a_message_equal_to_its_match_unless_its_key_is(correlator, clock):
    request = correlator.add(7, "rpc", clock.now, blocking=True)
    correlator.add("7", "echo", clock.now, blocking=True, echo=True)
    assert correlator.match_echo(7) is None  # an echo looks at the message itself, never at reply_key
    assert correlator.match("7", "7") is None  # the requests' table holds only match keys
    assert correlator.match(7, '{"id": 7}') is request


def test_echoes_and_requests_on_the_same_key_wait_apart(correlator, clock):
    """With the default reply_key (the message itself) both kinds may wait on one text."""
    request = correlator.add("ping", "rpc", clock.now, blocking=True)
    echo = correlator.add("ping", "echo", clock.advance(1), blocking=True, echo=True)
    # A message answers an echo first; the user asks reply_key only for a message that answered none.
    assert correlator.match_echo("ping") is echo
    assert correlator.match_echo("ping") is None
    assert correlator.match("ping", "ping") is request


def test_an_unparsable_echo_needs_no_reply_key(correlator, clock):
    payload, echo = send_echo(correlator, clock, blocking=True)
    with pytest.raises(ValueError):
        keyed_by_id(payload)  # what reply_key would do with it: the user would take it for a push
    assert correlator.match_echo(payload) is echo
    assert correlator.counters == WsCounters()  # not late, not duplicated, not out of order


def test_the_in_flight_window_counts_echoes_and_expiry_reaches_both_kinds(correlator, clock):
    _, old_echo = send_echo(correlator, clock)
    old_request = correlator.add(1, "rpc", clock.now, blocking=False)
    clock.advance(5)
    _, recent_echo = send_echo(correlator, clock)
    assert len(correlator.echoes) == 2 and len(correlator.requests) == 1
    assert correlator.expire(clock.advance(TIMEOUT - 5), TIMEOUT) == [old_echo, old_request]
    assert list(correlator) == [recent_echo] and correlator.counters.replies_timed_out == 2
    assert correlator.forget(recent_echo) and not correlator.waiting()


def test_correlation_imports_neither_gevent_nor_locust():
    code = (
        "import sys, wslocust.user.correlation; "
        "print(sorted(m for m in ('gevent', 'locust', 'socket') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"
