"""The live metrics' aggregation path, fed with worker reports in this process."""

from __future__ import annotations

import locust
import pytest
from helpers import free_port
from hypothesis import given
from hypothesis import strategies as st
from locust.env import Environment
from locust.runners import WorkerNode

from wslocust import WebSocketUser
from wslocust.exceptions import (
    ConnectionRefused,
    ConnectTimeout,
    DNSError,
    HandshakeError,
    PingTimeout,
    ProtocolError,
    ReceiveTimeout,
    connection_closed,
)
from wslocust.formatting import category_label
from wslocust.reporting.live import NODE_KEY, Live, classify_error, merge_counts
from wslocust.reporting.system import SystemSample
from wslocust.run.counters import REPORT_KEY, WsCounters


class Echo(WebSocketUser):
    pass


@pytest.mark.parametrize(
    "error, category, label",
    [
        (ConnectionRefused("connection refused by 127.0.0.1:1"), "refused", "connection refused"),
        (DNSError("DNS lookup failed for nowhere"), "dns", "DNS lookup failed"),
        (ConnectTimeout("no connection within 10 s"), "connect_timeout", "connect timeout"),
        (HandshakeError("rejected", status=403), "handshake_403", "upgrade rejected: HTTP 403"),
        (ProtocolError("bad frame"), "protocol", "protocol error"),
        (ReceiveTimeout("no reply within 10 s"), "reply_timeout", "no reply in time"),
        (PingTimeout("no pong"), "ping_timeout", "no pong in time"),
        (connection_closed(1011, "boom"), "closed_1011", "closed by server with code 1011"),
        (connection_closed(1006), "closed_1006", "connection lost (1006)"),
        (ValueError("x"), "ValueError", "ValueError"),
    ],
)
def test_errors_are_classified_by_type_not_by_message(error, category, label):
    assert classify_error(error) == category
    assert category_label(category) == label


counts = st.dictionaries(st.sampled_from(["refused", "dns", "closed_1006", "closed_1011"]), st.integers(0, 10**6))
counters = st.builds(WsCounters, **{name: st.integers(0, 10**6) for name in WsCounters.__dataclass_fields__})


@given(counts, counts, counts)
def test_merging_error_counts_is_associative_and_commutative(a, b, c):
    assert merge_counts(merge_counts(a, b), c) == merge_counts(a, merge_counts(b, c)) == merge_counts(c, b, a)


@given(counters, counters, counters)
def test_merging_counters_is_associative(a, b, c):
    left = WsCounters().merge(WsCounters().merge(a).merge(b)).merge(c)
    right = WsCounters().merge(a).merge(WsCounters().merge(b).merge(c))
    assert left == right


@pytest.fixture
def master():
    environment = Environment(user_classes=[Echo], events=locust.events)
    runner = environment.create_master_runner("127.0.0.1", free_port())
    yield environment, runner
    runner.quit()


def report(t: float, open_: int, sent: int, errors: dict[str, int] | None = None, cpu: float = 20.0) -> dict:
    counters = WsCounters(open=open_, connect_attempts=open_, connects_succeeded=open_, messages_sent=sent)
    counters.messages_received = sent
    system = SystemSample(host="gen-1", pid=4242, cpu=cpu, rss=50_000_000, saturated=cpu >= 90)
    return {
        REPORT_KEY: counters.as_dict(),
        NODE_KEY: {"t": t, "system": system.as_dict(), "errors": errors or {}, "users": open_},
    }


def test_the_master_adds_up_its_workers_and_takes_rates_on_each_workers_clock(master):
    environment, runner = master
    live = Live(environment)
    for worker in ("a", "b"):
        runner.clients[worker] = WorkerNode(worker, state="running")
    live.receive("a", report(100.0, 10, 0))
    live.receive("b", report(5.0, 20, 0, {"refused": 1}))
    live.receive("a", report(103.0, 10, 300))  # 100 messages per second
    live.receive("b", report(8.0, 20, 1200, {"refused": 2, "closed_1011": 1}, cpu=95))  # 400 per second

    snapshot = live.snapshot()
    aggregate = snapshot["aggregate"]
    workers = {view["id"]: view for view in snapshot["workers"]}
    assert aggregate["connections"]["open"] == 30 == workers["a"]["connections"]["open"] + 20
    assert aggregate["totals"]["messages_sent"] == 1500
    assert aggregate["rates"]["messages_sent"] == pytest.approx(500)
    assert workers["a"]["rates"]["messages_received"] == pytest.approx(100)
    assert aggregate["errors"] == {"refused": 2, "closed_1011": 1}
    assert aggregate["saturated"] is True and aggregate["saturated_workers"] == [workers["b"]["name"]]
    assert workers["b"]["system"]["cpu_per_1k"] == pytest.approx(95 / 0.02)
    assert aggregate["system"]["cpu_per_1k"] == pytest.approx((20 + 95) / 0.03)
    assert snapshot["hosts"][0]["host"] == "gen-1" and snapshot["hosts"][0]["processes"] == 2


def test_reset_starts_totals_over_but_keeps_gauges_and_a_gone_worker_keeps_its_history(master):
    environment, runner = master
    live = Live(environment)
    for worker in ("a", "b"):
        runner.clients[worker] = WorkerNode(worker, state="running")
    live.receive("a", report(1.0, 10, 100, {"refused": 5}))
    live.receive("b", report(1.0, 20, 200))
    live.reset()
    assert live.snapshot()["aggregate"]["totals"]["messages_sent"] == 0
    assert live.snapshot()["aggregate"]["connections"]["open"] == 30
    live.receive("a", report(4.0, 10, 150, {"refused": 6}))
    aggregate = live.snapshot()["aggregate"]
    assert aggregate["totals"]["messages_sent"] == 50 and aggregate["errors"] == {"refused": 1}

    del runner.clients["b"]  # the worker quit or died
    snapshot = live.snapshot()
    assert snapshot["aggregate"]["connections"]["open"] == 10  # its gauges no longer count
    assert {view["id"]: view["state"] for view in snapshot["workers"]} == {"a": "running", "b": "gone"}
    live.receive("c", report(1.0, 5, 7))  # a new worker starts from zero
    assert live.snapshot()["aggregate"]["totals"]["messages_sent"] == 57


def test_a_node_counts_each_error_of_locusts_table_once_even_after_locust_clears_it():
    environment = Environment(user_classes=[Echo], events=locust.events)
    runner = environment.create_local_runner()
    try:
        live = Live(environment)
        stats = runner.stats
        for _ in range(3):
            stats.log_error("WS", "connect", ConnectionRefused("connection refused by 127.0.0.1:1"))
        assert live.node_report()["errors"] == {"refused": 3}
        stats.log_error("WS", "echo", connection_closed(1011))
        assert live.node_report()["errors"] == {"refused": 3, "closed_1011": 1}
        stats.errors = {}  # what Locust does after each worker report
        stats.log_error("WS", "connect", ConnectionRefused("connection refused by 127.0.0.1:1"))
        assert live.node_report()["errors"] == {"refused": 4, "closed_1011": 1}
    finally:
        runner.quit()
