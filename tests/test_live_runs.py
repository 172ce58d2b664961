"""
Live metrics in real ``locust`` processes: a master and two worker processes
against the reference server, the headless console, the CSV files, the
Prometheus endpoint and the thresholds' exit codes.
"""

from __future__ import annotations

import csv
import json
import signal
import time
import urllib.request

import pytest
from helpers import run_server_process, wait_for
from locust_process import LocustProcess, master_and_workers

pytestmark = pytest.mark.slow

ECHO = ("-f", "locustfiles/echo.py")


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


def ws_stats(web: str) -> dict:
    return json.loads(get(f"{web}/ws/stats"))


def test_master_and_two_worker_processes_live_figures_add_up_to_the_servers_counters(tmp_path):
    # The one run of a master and two worker processes against a server's counters: live
    # figures during the run; Locust's statistics, the WebSocket totals and the CSV after it.
    with (
        run_server_process() as server,
        master_and_workers(
            "--expect-workers", "2", "--autostart", "--autoquit", "60", "-u", "20", "-r", "20", "-t", "6s",
            "--host", server.url, "--csv", str(tmp_path / "run"), "--json",
            locustfile="locustfiles/echo.py", common=["--ws-message-interval", "100"], folder=tmp_path,
        ) as (master, workers),
    ):  # fmt: skip
        web = master.web_url
        everyone = [master, *workers]
        # During the run: the aggregate is the sum of the workers, with live rates.
        running = wait_for(
            lambda: _get_or_none(web, lambda s: s["aggregate"]["connections"]["open"] == 20
                                 and s["aggregate"]["rates"]["messages_received"] > 150 and s),
            timeout=30, interval=0.2, message="20 open connections and ~200 messages/s in /ws/stats",
            processes=everyone,
        )  # fmt: skip
        aggregate, views = running["aggregate"], running["workers"]
        assert running["mode"] == "master" and aggregate["workers"] == 2 and len(views) == 2
        assert [view["connections"]["open"] for view in views] == [10, 10]
        assert aggregate["rates"]["messages_received"] < 250  # 20 connections x 10/s
        assert aggregate["rates"]["messages_received"] == pytest.approx(
            sum(view["rates"]["messages_received"] for view in views), abs=0.05
        )
        assert {view["host"] for view in views} and all(view["system"]["rss"] > 0 for view in views)
        assert all(view["pid"] not in (0, master.pid) for view in views)

        metrics = get(f"{web}/ws/metrics").decode()
        assert 'wslocust_connections{state="open",worker="worker 1"} 10.0' in metrics
        assert "wslocust_messages_received_total{" in metrics and 'quantile="0.95"' in metrics
        tabs = json.loads(get(f"{web}/stats/requests"))["extended_stats"]
        rows = next(tab["data"] for tab in tabs if tab["key"] == "websocket")
        assert [row["node"] for row in rows] == ["All (2 workers)", "worker 1", "worker 2"]
        assert rows[0]["open"] == 20
        assert b"extended_tabs" in get(f"{web}/") and b"WebSocket" in get(f"{web}/")

        # After the run: every message counted once, as the server counted it, from the moment the master
        # says "stopped" (each worker reports as soon as its users stopped, before it tells the master so;
        # it used to report at its next 3-second tick, after the master already said "stopped").
        def stopped() -> dict | None:
            snapshot = ws_stats(web)
            return snapshot if snapshot["state"] == "stopped" else None

        snapshot = wait_for(stopped, timeout=20, interval=0.05, message="the master says stopped")
        truth = server.stats()
        assert snapshot["aggregate"]["totals"]["closed"] == truth["connections_closed"] == 20
        assert snapshot["aggregate"]["totals"]["messages_received"] == truth["messages_sent"]
        totals = snapshot["aggregate"]["totals"]
        for name in ("connects_succeeded", "messages_sent", "messages_received", "bytes_sent", "bytes_received"):
            assert totals[name] == sum(view["totals"][name] for view in snapshot["workers"]), name
        assert totals["connects_succeeded"] == truth["connections_accepted"] == 20
        assert totals["messages_sent"] == truth["messages_received"]
        assert totals["bytes_received"] == truth["bytes_sent"]
        assert totals["errors"] == 0 and snapshot["aggregate"]["errors"] == {}

        master.popen.send_signal(signal.SIGTERM)
        assert master.wait() == 0, master.stderr[-3000:]
        for worker in workers:
            worker.wait(30)

    stderr = master.stderr
    assert "WebSocket results" in stderr and "  worker 1 " in stderr and "  worker 2 " in stderr
    sent = truth["messages_received"]
    assert "20 connects (0 failed attempts, 0 reconnects), 0 lost" in stderr
    assert f"  messages     {sent:,} sent, {sent:,} received (0 pushed)" in stderr
    # Locust's own statistics (--json) count what the server counted too.
    stats = master.stats
    assert stats["connect"]["num_requests"] == truth["connections_accepted"] == 20
    assert stats["connect"]["num_failures"] == stats["echo"]["num_failures"] == 0
    assert stats["echo"]["num_requests"] == truth["messages_received"] == truth["messages_sent"] == sent
    with open(tmp_path / "run_websocket.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["node"] for row in rows] == ["All (2 workers)", "worker 1", "worker 2"]
    assert int(rows[0]["messages_received"]) == sent == sum(int(row["messages_received"]) for row in rows[1:])
    assert (tmp_path / "run_websocket_history.csv").read_text().count("\n") > 3


def _get_or_none(web, check):
    try:
        return check(ws_stats(web))
    except OSError:
        return None


def test_headless_console_lines_csv_sub_millisecond_percentiles_and_a_failing_threshold(tmp_path):
    with run_server_process() as server:
        run = LocustProcess(
            *ECHO, "--headless", "-u", "10", "-r", "10", "-t", "5s", "--host", server.url,
            "--ws-message-interval", "50", "--csv", str(tmp_path / "run"),
            "--ws-thresholds", "echo.p95<10s, echo.p50<0.001ms, error_rate<1%",
        )  # fmt: skip
        code = run.wait()
    stderr = run.stderr
    assert code == 3, stderr[-3000:]
    # The periodic headless output carries the WebSocket lines under Locust's table.
    assert "WebSocket  10 open, 0 connecting, 0 reconnecting, 0 failed, 0 closed | messages" in stderr
    assert "WebSocket  round trip p50 " in stderr
    table = stderr[stderr.index("WebSocket thresholds") :].splitlines()
    assert table[3].split()[-1] == "pass" and table[3].startswith("  echo.p95 < 10s")
    assert table[4].split()[-1] == "FAIL" and table[4].startswith("  echo.p50 < 0.001ms")
    assert table[5].split()[-1] == "pass"
    assert "1 of 3 thresholds failed (exit code 3)" in stderr
    assert "Shutting down (exit code 3)" in stderr
    # A loopback echo takes well under 10 ms: its median keeps its decimals everywhere.
    with open(tmp_path / "run_stats.csv") as f:
        echo = next(row for row in csv.DictReader(f) if row["Name"] == "echo")
    assert 0 < float(echo["Median Response Time"]) < 10 and "." in echo["Median Response Time"]
    assert "." in echo["50%"]
    assert (tmp_path / "run_websocket.csv").exists() and (tmp_path / "run_websocket_errors.csv").exists()


def test_thresholds_are_the_verdict_a_run_with_acceptable_failures_passes(tmp_path):
    # A third of the upgrades are refused: Locust alone would exit 1.
    with run_server_process("--refuse-fraction", "0.3") as server:
        run = LocustProcess(
            *ECHO, "--headless", "-u", "10", "-r", "10", "-t", "4s", "--host", server.url,
            "--ws-message-interval", "50", "--ws-thresholds", "echo.p50<1s, error_rate<20%",
        )  # fmt: skip
        code = run.wait()
    stderr = run.stderr
    assert code == 0, stderr[-3000:]
    assert "all 2 thresholds passed" in stderr
    assert "upgrade rejected: HTTP 503" in stderr  # the results block names the error category


def test_a_malformed_threshold_stops_the_run_at_start_with_one_line(tmp_path):
    run = LocustProcess(
        *ECHO, "--headless", "-u", "1", "-t", "5s", "--host", "ws://127.0.0.1:1/ws",
        "--ws-thresholds", "echo.p95<100ms, echo.p95 100ms",
    )  # fmt: skip
    assert run.wait() == 2
    errors = [line for line in run.stderr.splitlines() if line.startswith("wslocust:")]
    assert errors == [
        (
            "wslocust: WS_THRESHOLDS / --ws-thresholds: 'echo.p95 100ms' is not METRIC<VALUE "
            "(operators <, <=, >, >=; e.g. 'echo.p95<100ms', 'error_rate<0.1%')"
        )
    ]
    assert "Traceback" not in run.stderr


def test_a_breached_threshold_aborts_the_run_early(tmp_path):
    with run_server_process() as server:
        started = time.monotonic()
        run = LocustProcess(
            *ECHO, "--headless", "-u", "5", "-r", "5", "-t", "60s", "--host", server.url,
            "--ws-message-interval", "50", "--ws-thresholds", "echo.p50<0.001ms", "--ws-thresholds-abort",
        )  # fmt: skip
        code = run.wait(60)
        elapsed = time.monotonic() - started
    assert code == 3, run.stderr[-3000:]
    assert "threshold echo.p50 < 0.001ms breached" in run.stderr
    assert elapsed < 30
