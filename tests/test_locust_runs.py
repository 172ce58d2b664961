"""Real ``locust`` command lines, headless, against real reference-server processes."""

from __future__ import annotations

import re

import pytest
from helpers import run_server_process
from locust_process import run_locust
from netns import namespaces_or_skip, private_loopback

pytestmark = pytest.mark.slow


def test_headless_run_counts_equal_the_servers_counters():
    with run_server_process() as server:
        result = run_locust(
            "-f", "locustfiles/echo.py", "--headless", "-u", "30", "-r", "30", "-t", "4s",
            "--host", server.url, "--ws-message-interval", "100", "--json",
        )  # fmt: skip
        truth = server.stats()
    assert result.returncode == 0, result.stderr
    stats = result.stats
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


@pytest.mark.parametrize(
    "host, message",
    [
        ("http://127.0.0.1:3003/ws", "'http://127.0.0.1:3003/ws' is not a WebSocket URL (http://)"),
        ("ws://127.0.0.1:99999/ws", "'ws://127.0.0.1:99999/ws' has an invalid port"),
        ("ws:///ws", "'ws:///ws' has no host"),
    ],
)
def test_a_bad_url_stops_the_run_with_one_clear_line(host, message):
    result = run_locust("-f", "locustfiles/echo.py", "--headless", "-u", "1", "-t", "2s", "--host", host)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("wslocust:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_url_in_ws_server_url_names_the_variable():
    result = run_locust(
        "-f", "locustfiles/echo.py", "--headless", "-u", "1", "-t", "2s", env={"WS_SERVER_URL": "ftp://example/ws"}
    )
    assert result.returncode == 2
    assert "wslocust: WS_SERVER_URL: 'ftp://example/ws' is not a WebSocket URL (ftp://)" in result.stderr


@pytest.mark.parametrize("value", ["abc", "-5", "nan"])
def test_a_bad_message_interval_names_the_variable_and_what_is_valid(value):
    result = run_locust(
        "-f", "locustfiles/echo.py", "--headless", "-u", "1", "-t", "2s", "--host", "ws://127.0.0.1:1/ws",
        env={"MESSAGE_INTERVAL": value},
    )  # fmt: skip
    assert result.returncode == 2
    assert f"MESSAGE_INTERVAL / --ws-message-interval: {value!r} is not a number of milliseconds >= 0" in result.stderr


def test_ws_server_url_is_the_target_when_no_host_is_given():
    with run_server_process() as server:
        result = run_locust(
            "-f", "locustfiles/echo.py", "--headless", "-u", "3", "-r", "3", "-t", "2s", "--json",
            env={"WS_SERVER_URL": server.url},
        )  # fmt: skip
        truth = server.stats()
    assert result.returncode == 0, result.stderr
    assert truth["connections_accepted"] == 3
    assert "embedded" not in result.stderr


def test_without_a_target_the_embedded_server_is_started_on_its_default_port_and_used():
    # 3003, the default, in a network namespace of its own: a demo may hold this machine's 3003.
    namespaces_or_skip("the test of the embedded server's default port")
    with private_loopback() as on_its_own_loopback:
        result = run_locust(
            "-f", "locustfiles/echo.py", "--headless", "-u", "5", "-r", "5", "-t", "3s", "--json",
            env={"MESSAGE_INTERVAL": "100"}, embedded_port=None, prefix=on_its_own_loopback,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "started the embedded reference server at ws://127.0.0.1:3003/ws" in result.stderr
    stats = result.stats
    assert stats["connect"]["num_requests"] == 5 and stats["connect"]["num_failures"] == 0
    assert stats["echo"]["num_requests"] > 5 * 10 and stats["echo"]["num_failures"] == 0
    # --json no longer empties the statistics before the results block and the final tables
    assert "  latency      round trip p50 " in result.stderr
    final_table = result.stderr[result.stderr.rindex("Response time percentiles") :]
    assert "WS       echo" in final_table and f" {stats['echo']['num_requests']}\n" in final_table


def test_ws_embedded_port_0_takes_any_free_port():
    result = run_locust(
        "-f", "locustfiles/echo.py", "--headless", "-u", "2", "-r", "2", "-t", "2s", "--json",
        env={"MESSAGE_INTERVAL": "100"}, embedded_port=0,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    match = re.search(r"started the embedded reference server at ws://127\.0\.0\.1:(\d+)/ws", result.stderr)
    assert match and int(match[1]) not in (0, 3003), result.stderr[-3000:]
    assert result.stats["connect"]["num_requests"] == 2 and result.stats["echo"]["num_failures"] == 0
