"""
Compressed runs measure the server, not the generator: ``--ws-time-scale`` keeps each connection's
real message rate unless ``--ws-time-scale-messages scaled`` asks for the full run's messages; and
a generator that cannot keep up is said to, whatever the run's length.
"""

from __future__ import annotations

import argparse
import textwrap
import time

import locust
import pytest
from helpers import REPO_ROOT, run_server_process, wait_for
from locust.env import Environment
from locust_process import run_locust
from test_scenario_runs import Sampler

from wslocust import WebSocketUser
from wslocust.reporting.saturation import LATE_SENDS_SHARE, saturation_warnings
from wslocust.run.state import run_state

FLASH_SALE_RATE = 10.0
"""Messages per second of each flash_sale.py connection (a message every 100 ms)."""


def per_connection_rate(sampler: Sampler, connections: int) -> float:
    """Messages the server received per second and per connection while all ``connections`` were open."""
    held = [(taken, stats) for taken, stats in sampler.samples if stats and stats["connections_open"] == connections]
    assert len(held) >= 5, sampler.samples
    # Leave out the first and last samples: connections start sending with a random phase, and stop.
    (t0, first), (t1, last) = held[1], held[-2]
    return (last["messages_received"] - first["messages_received"]) / (t1 - t0) / connections


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scaling", "scale", "expected"),
    [
        # The default: 5 minutes in 3 s, each connection at its real 10 messages a second.
        (None, "0.01", FLASH_SALE_RATE),
        # The miniature: 20 s in 2 s and as many messages per connection as the full run, 10 times as often.
        ("scaled", "0.1", FLASH_SALE_RATE / 0.1),
    ],
    ids=["real rate (default)", "scaled messages"],
)
def test_a_compressed_scenario_keeps_each_connections_message_rate_unless_asked_to_scale_it(scaling, scale, expected):
    options = ["--ws-time-scale", scale, "--ws-target-connections", "20"]
    if scaling:
        options += ["--ws-time-scale-messages", scaling, "--ws-test-duration", "20000"]
    with run_server_process() as server, Sampler(server.stats_url, interval=0.1) as sampler:
        result = run_locust(
            "-f", str(REPO_ROOT / "locustfiles" / "flash_sale.py"), "--headless", "--host", server.url, *options,
            timeout=60,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rate = per_connection_rate(sampler, 20)
    assert 0.75 * expected <= rate <= 1.25 * expected, (rate, expected)


def test_in_a_compressed_run_users_keep_their_message_interval_while_lifetimes_shrink(server):
    class Steady(WebSocketUser):
        message_interval = 0.2
        connection_lifetime = 10.0  # 0.1 s at scale 0.01

    environment = Environment(user_classes=[Steady], events=locust.events, host=server.url)
    environment.parsed_options = argparse.Namespace(ws_message_interval=None, ws_time_scale="0.01")
    runner = environment.create_local_runner()
    runner.start(2, spawn_rate=1000)
    started = time.perf_counter()
    wait_for(lambda: run_state(environment).counters.reconnects >= 10, timeout=5)  # lifetimes are scaled
    wait_for(lambda: time.perf_counter() - started >= 1.0, timeout=5)
    sent = run_state(environment).counters.messages_sent
    elapsed = time.perf_counter() - started
    runner.quit()
    # 2 users, 5 messages a second each (scaled, it would be 500): a new phase per connection, so a few more
    assert sent <= 2 * 5 * elapsed + 2 * run_state(environment).counters.reconnects, (sent, elapsed)


# The generator's warnings

BUSY_LOCUSTFILE = """
import time

import gevent
from locust import events
from locust.runners import MasterRunner

from wslocust import WebSocketUser


class Echoer(WebSocketUser):
    message_interval = 0.1


def keep_the_loop_busy():
    # 10 ms of CPU every 20 ms, without yielding: the event loop stalls half the time.
    while True:
        until = time.perf_counter() + 0.010
        while time.perf_counter() < until:
            pass
        gevent.sleep(0.010)


@events.test_start.add_listener
def start_stalling(environment, **_):
    if not isinstance(environment.runner, MasterRunner):
        environment.runner.greenlet.spawn(keep_the_loop_busy)
"""


@pytest.mark.slow
@pytest.mark.parametrize("workers", [None, "2"], ids=["one process", "two workers"])
def test_a_short_run_on_a_stalling_generator_warns_about_its_loop_lag_and_late_sends(tmp_path, workers):
    locustfile = tmp_path / "stalling.py"
    locustfile.write_text(textwrap.dedent(BUSY_LOCUSTFILE))
    result = run_locust(
        "-f", str(locustfile), "--headless", "-u", "20", "-r", "100", "-t", "3s",
        env={"WORKERS": workers} if workers else None, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "/WARNING/wslocust:" in line]
    processes = 2 if workers else 1
    lagged = [line for line in warnings if "its event loop lagged, loop-lag p99 above 5 ms" in line]
    late = [line for line in warnings if "left more than 2 ms behind their schedule" in line]
    assert len(lagged) == processes and len(late) == processes, warnings


def _snapshot(sends_late: int, messages_sent: int) -> dict:
    system = {"saturated_seconds": 0, "peak_cpu": 40.0, "loop_lag": {"lagged_windows": 0}}
    view = {"name": "local", "host": "h", "pid": 1, "system": system}
    return {"workers": [{**view, "totals": {"sends_late": sends_late, "messages_sent": messages_sent}}]}


def test_late_sends_are_a_warning_above_one_percent_of_the_messages():
    assert LATE_SENDS_SHARE == 0.01
    assert saturation_warnings(_snapshot(10, 1000)) == []  # a GC pause, a burst of connects
    [line] = saturation_warnings(_snapshot(322, 589))
    assert line == (
        "local (h, pid 1): 322 of its 589 messages (55%) left more than 2 ms behind their schedule: the generator "
        "could not keep up, and their round trips include the wait (lower the message rate or add worker processes)"
    )
