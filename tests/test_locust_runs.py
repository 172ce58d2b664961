"""Real ``locust`` command lines, headless, against real reference-server processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from helpers import REPO_ROOT, ServerProcess, free_port, run_server_process, wait_for

pytestmark = pytest.mark.slow

LOCUST = [sys.executable, "-m", "locust"]


def locust(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("WS_SERVER_URL", "MESSAGE_INTERVAL")}
    environment.update(env or {})
    return subprocess.run(
        [*LOCUST, *args], cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout, check=False
    )


def locust_stats(stdout: str) -> dict[str, dict]:
    """Entries of ``--json`` output by name."""
    return {entry["name"]: entry for entry in json.loads(stdout)}


def test_headless_run_counts_equal_the_servers_counters():
    with run_server_process() as server:
        result = locust(
            "-f", "locustfiles/echo.py", "--headless", "-u", "30", "-r", "30", "-t", "4s",
            "--host", server.url, "--ws-message-interval", "100", "--json",
        )  # fmt: skip
        truth = server.stats()
    assert result.returncode == 0, result.stderr
    stats = locust_stats(result.stdout)
    assert stats["connect"]["num_requests"] == truth["connections_accepted"] == 30
    assert stats["connect"]["num_failures"] == 0
    echo = stats["echo"]
    assert echo["num_failures"] == 0
    assert echo["num_requests"] > 30 * 20  # ~10 per second per connection for 4 s, minus the ramp
    assert echo["num_requests"] == truth["messages_received"] == truth["messages_sent"]
    assert echo["total_content_length"] == truth["bytes_received"] == truth["bytes_sent"]
    n = echo["num_requests"]
    assert f"  messages     {n:,} sent, {n:,} received (0 pushed)" in result.stderr
    assert "  replies      0 timed out (0 came late), 0 lost on close, 0 in flight at stop; 0 duplicated, 0 out of order" in result.stderr


def test_server_killed_mid_run_is_counted_as_reconnects_and_the_run_ends_on_time():
    port = free_port()
    server = ServerProcess(["--port", str(port)])
    server.wait_listening()
    environment = {k: v for k, v in os.environ.items() if k != "WS_SERVER_URL"}
    started = time.monotonic()
    run = subprocess.Popen(
        [*LOCUST, "-f", "locustfiles/echo.py", "--headless", "-u", "10", "-r", "10", "-t", "8s",
         "--host", server.url, "--ws-message-interval", "100", "--json", "--stop-timeout", "2"],
        cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: server.stats()["connections_open"] == 10, timeout=20)
        wait_for(lambda: server.stats()["messages_received"] >= 50, timeout=20)
        server.process.kill()
        server.wait()
        server = ServerProcess(["--port", str(port)])
        server.wait_listening()
        wait_for(lambda: server.stats()["connections_accepted"] == 10, timeout=20)
        stdout, stderr = run.communicate(timeout=40)
        elapsed = time.monotonic() - started
    finally:
        run.kill()
        server.stop()
    assert run.returncode == 1, stderr  # failures were recorded
    stats = locust_stats(stdout)
    assert stats["reconnect"]["num_requests"] - stats["reconnect"]["num_failures"] == 10
    assert stats["disconnect"]["num_failures"] == 10
    assert ", 10 reconnects, 10 disconnects)" in stderr
    assert elapsed < 8 + 2 + 10  # run time + stop timeout + process start-up


@pytest.mark.parametrize(
    "host, message",
    [
        ("http://127.0.0.1:3003/ws", "'http://127.0.0.1:3003/ws' is not a WebSocket URL (http://)"),
        ("ws://127.0.0.1:99999/ws", "'ws://127.0.0.1:99999/ws' has an invalid port"),
        ("ws:///ws", "'ws:///ws' has no host"),
    ],
)
def test_a_bad_url_stops_the_run_with_one_clear_line(host, message):
    result = locust("-f", "locustfiles/echo.py", "--headless", "-u", "1", "-t", "2s", "--host", host)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("wslocust:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_url_in_ws_server_url_names_the_variable():
    result = locust(
        "-f", "locustfiles/echo.py", "--headless", "-u", "1", "-t", "2s", env={"WS_SERVER_URL": "ftp://example/ws"}
    )
    assert result.returncode == 2
    assert "wslocust: WS_SERVER_URL: 'ftp://example/ws' is not a WebSocket URL (ftp://)" in result.stderr


@pytest.mark.parametrize("value", ["abc", "-5", "nan"])
def test_a_bad_message_interval_names_the_variable_and_what_is_valid(value):
    result = locust(
        "-f", "locustfiles/echo.py", "--headless", "-u", "1", "-t", "2s", "--host", "ws://127.0.0.1:1/ws",
        env={"MESSAGE_INTERVAL": value},
    )  # fmt: skip
    assert result.returncode == 2
    assert f"MESSAGE_INTERVAL / --ws-message-interval: {value!r} is not a number of milliseconds >= 0" in result.stderr


def test_ws_server_url_is_the_target_when_no_host_is_given():
    with run_server_process() as server:
        result = locust(
            "-f", "locustfiles/echo.py", "--headless", "-u", "3", "-r", "3", "-t", "2s", "--json",
            env={"WS_SERVER_URL": server.url},
        )  # fmt: skip
        truth = server.stats()
    assert result.returncode == 0, result.stderr
    assert truth["connections_accepted"] == 3
    assert "embedded" not in result.stderr


def test_without_a_target_the_embedded_server_is_started_and_used():
    result = locust(
        "-f", "locustfiles/echo.py", "--headless", "-u", "5", "-r", "5", "-t", "3s", "--json",
        env={"MESSAGE_INTERVAL": "100"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "started the embedded reference server at ws://127.0.0.1:3003/ws" in result.stderr
    stats = locust_stats(result.stdout)
    assert stats["connect"]["num_requests"] == 5 and stats["connect"]["num_failures"] == 0
    assert stats["echo"]["num_requests"] > 5 * 10 and stats["echo"]["num_failures"] == 0
    # --json no longer empties the statistics before the results block and the final tables
    assert "  latency      round trip p50 " in result.stderr
    final_table = result.stderr[result.stderr.rindex("Response time percentiles") :]
    assert "WS       echo" in final_table and f" {stats['echo']['num_requests']}\n" in final_table


def test_master_and_two_worker_processes_add_up_to_the_servers_counters():
    with run_server_process() as server:
        port = free_port()
        common = ["-f", "locustfiles/echo.py", "--ws-message-interval", "100"]
        environment = {k: v for k, v in os.environ.items() if k != "WS_SERVER_URL"}
        master = subprocess.Popen(
            [*LOCUST, *common, "--master", "--master-bind-port", str(port), "--headless", "--expect-workers", "2",
             "-u", "20", "-r", "20", "-t", "4s", "--host", server.url, "--json"],
            cwd=REPO_ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        workers = [
            subprocess.Popen(
                [*LOCUST, *common, "--worker", "--master-port", str(port)],
                cwd=REPO_ROOT,
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            stdout, stderr = master.communicate(timeout=60)
            for worker in workers:
                worker.wait(timeout=30)
        finally:
            for process in (master, *workers):
                process.kill()
        truth = server.stats()
    assert master.returncode == 0, stderr
    stats = locust_stats(stdout)
    assert stats["connect"]["num_requests"] == truth["connections_accepted"] == 20
    assert stats["echo"]["num_requests"] == truth["messages_received"] == truth["messages_sent"]
    sent = truth["messages_received"]
    assert "20 connects (0 failed attempts, 0 reconnects), 0 lost" in stderr
    assert f"  messages     {sent:,} sent, {sent:,} received" in stderr
