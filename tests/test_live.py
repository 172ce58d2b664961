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
from wslocust.reporting import reports, web
from wslocust.reporting.errors import classify_error, merge_counts
from wslocust.reporting.live import Live
from wslocust.reporting.nodes import PER_1K_MINIMUM, per_1k
from wslocust.reporting.system import SystemSample
from wslocust.run.counters import WsCounters
from wslocust.run.loop_lag import LagFigures
from wslocust.run.state import REPORT_KEY, RunState, run_state, worker_report


class Echo(WebSocketUser):
    pass


@pytest.mark.parametrize(
    "error, category, label",
    [
        (ConnectionRefused("connection refused by 127.0.0.1:1"), "refused", "connection refused"),
        (DNSError("DNS lookup failed for nowhere"), "dns", "DNS lookup failed"),
        (ConnectTimeout("no connection within 10 s"), "connect_timeout", "connect timeout"),
        (HandshakeError("rejected", status=403), "handshake_403", "upgrade rejected: HTTP 403"),
        (
            HandshakeError("wrong Sec-WebSocket-Accept", 101, "Sec-WebSocket-Accept"),
            "bad_101_sec-websocket-accept",
            "101 response with a missing or wrong Sec-WebSocket-Accept header",
        ),
        (
            HandshakeError("missing", 101, "Upgrade"),
            "bad_101_upgrade",
            "101 response with a missing or wrong Upgrade header",
        ),
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


@given(counters, st.lists(st.tuples(st.sampled_from("abc"), counters), max_size=8))
def test_the_run_totals_are_this_process_plus_the_latest_report_of_each_worker(own, reports):
    state = RunState(start_pacer=None)  # type: ignore[arg-type]  # not used here
    state.counters = own
    for client_id, snapshot in reports:
        assert state.receive_worker_report(client_id, {REPORT_KEY: worker_report(snapshot, None)}) is not None
    latest = {client_id: snapshot for client_id, snapshot in reports}  # snapshots replace, never add up
    expected = WsCounters().merge(own)
    for snapshot in latest.values():
        expected.merge(snapshot)
    assert state.total_counters() == expected
    assert state.receive_worker_report("d", {"stats": []}) is None  # a report without our key: no view
    assert set(state.workers) == set(latest)


@pytest.fixture
def master():
    environment = Environment(user_classes=[Echo], events=locust.events)
    runner = environment.create_master_runner("127.0.0.1", free_port())
    yield environment, runner
    runner.quit()


def report(t: float, open_: int, sent: int, errors: dict[str, int] | None = None, cpu: float = 20.0) -> dict:
    """A worker's Locust report, as the master receives it: ours under one key."""
    counters = WsCounters(open=open_, connect_attempts=open_, connects_succeeded=open_, messages_sent=sent)
    counters.messages_received = sent
    system = SystemSample(host="gen-1", pid=4242, cpu=cpu, rss=50_000_000, saturated=cpu >= 90)
    live = {"t": t, "system": system.as_dict(), "errors": errors or {}, "users": open_}
    return {"stats": [], REPORT_KEY: worker_report(counters, live)}


def receive(live: Live, client_id: str, data: dict) -> None:
    """What the master's worker_report listener does: the report into the worker's view, then the live metrics."""
    view = run_state(live.environment).receive_worker_report(client_id, data)
    assert view is not None
    live.receive(view)


def test_the_master_adds_up_its_workers_and_takes_rates_on_each_workers_clock(master):
    environment, runner = master
    live = Live(environment)
    for worker in ("a", "b"):
        runner.clients[worker] = WorkerNode(worker, state="running")
    receive(live, "a", report(100.0, 10, 0))
    receive(live, "b", report(5.0, 20, 0, {"refused": 1}))
    receive(live, "a", report(103.0, 10, 300))  # 100 messages per second
    receive(live, "b", report(8.0, 20, 1200, {"refused": 2, "closed_1011": 1}, cpu=95))  # 400 per second

    snapshot = live.snapshot()
    aggregate = snapshot["aggregate"]
    workers = {view["id"]: view for view in snapshot["workers"]}
    assert aggregate["connections"]["open"] == 30 == workers["a"]["connections"]["open"] + 20
    assert aggregate["totals"]["messages_sent"] == 1500
    assert aggregate["rates"]["messages_sent"] == pytest.approx(500)
    assert workers["a"]["rates"]["messages_received"] == pytest.approx(100)
    assert aggregate["errors"] == {"refused": 2, "closed_1011": 1}
    assert aggregate["saturated"] is True and aggregate["saturated_workers"] == [workers["b"]["name"]]
    # below 1,000 open connections a per-1K figure would be a false extrapolation: none
    assert workers["b"]["system"]["cpu_per_1k"] is None and aggregate["system"]["cpu_per_1k"] is None
    assert per_1k(95, 2000) == pytest.approx(47.5) and per_1k(95, PER_1K_MINIMUM - 1) is None
    assert snapshot["hosts"][0]["host"] == "gen-1" and snapshot["hosts"][0]["processes"] == 2


def test_reset_starts_totals_over_but_keeps_gauges_and_a_gone_worker_keeps_its_history(master):
    environment, runner = master
    live = Live(environment)
    for worker in ("a", "b"):
        runner.clients[worker] = WorkerNode(worker, state="running")
    receive(live, "a", report(1.0, 10, 100, {"refused": 5}))
    receive(live, "b", report(1.0, 20, 200))
    live.reset()
    assert live.snapshot()["aggregate"]["totals"]["messages_sent"] == 0
    assert live.snapshot()["aggregate"]["connections"]["open"] == 30
    receive(live, "a", report(4.0, 10, 150, {"refused": 6}))
    aggregate = live.snapshot()["aggregate"]
    assert aggregate["totals"]["messages_sent"] == 50 and aggregate["errors"] == {"refused": 1}

    del runner.clients["b"]  # the worker quit or died
    snapshot = live.snapshot()
    assert snapshot["aggregate"]["connections"]["open"] == 10  # its gauges no longer count
    assert {view["id"]: view["state"] for view in snapshot["workers"]} == {"a": "running", "b": "gone"}
    receive(live, "c", report(1.0, 5, 7))  # a new worker starts from zero
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


def test_the_master_shows_each_workers_loop_lag_and_flags_the_lagging_one(master):
    environment, runner = master
    live = Live(environment)
    for worker in ("a", "b"):
        runner.clients[worker] = WorkerNode(worker, state="running")
    calm = LagFigures(recent_p99=0.2, recent_max=1.5, p99=0.1, max=3.0, windows=10)
    stalled = LagFigures(
        recent_p99=12.0, recent_max=24.0, p99=2.0, max=24.0, worst_p99=12.0, windows=9, lagged_windows=2
    )
    for worker, lag in (("a", calm), ("b", stalled)):
        data = report(1.0, 10, 100)
        data[REPORT_KEY]["live"]["system"]["loop_lag"] = lag.as_dict()
        receive(live, worker, data)

    snapshot = live.snapshot()
    views = {view["id"]: view for view in snapshot["workers"]}
    assert views["b"]["lagging"] and not views["a"]["lagging"]
    assert views["b"]["system"]["loop_lag"]["recent_max"] == 24.0
    aggregate = snapshot["aggregate"]
    assert aggregate["lagging_workers"] == [views["b"]["name"]] and not aggregate["saturated"]
    assert aggregate["loop_lag"]["recent_p99"] == 12.0 and aggregate["loop_lag"]["lagged_windows"] == 2
    rows = reports.node_rows(snapshot)
    assert [row["status"] for row in rows] == ["LAGGING", "running", "LAGGING"]
    assert rows[2]["loop_lag_max_ms"] == 24.0 and rows[1]["loop_lag_run_p99_ms"] == 0.1
    assert 'wslocust_loop_lag_max_milliseconds{worker="worker 2"} 24.0' in web.prometheus_text(live).decode()
    assert any("its event loop lagged" in line and "in 2 one-second windows" in line
               for line in reports.saturation_warnings(snapshot))  # fmt: skip

    runner.clients["b"].state = "missing"  # no heartbeat: its last report said lagging, but it no longer reports
    assert [row["status"] for row in reports.node_rows(live.snapshot())][2] == "missing"
    del runner.clients["b"]  # gone: its recent figures no longer count, its run's still do
    assert [row["status"] for row in reports.node_rows(live.snapshot())][2] == "gone"
    aggregate = live.snapshot()["aggregate"]
    assert aggregate["loop_lag"]["recent_max"] == 1.5 and aggregate["loop_lag"]["max"] == 24.0
    assert not aggregate["lagging"]
