"""Users that Locust starts in one burst connect evenly over the burst's share of time (wslocust.run.pacing)."""

from __future__ import annotations

import time

import locust
import pytest
from helpers import run_server_process, wait_for
from locust.env import Environment
from locust_process import run_locust

from wslocust import WebSocketUser
from wslocust.run.pacing import StartPacer


def connect_times(users: int, spawn_rate: float, url: str) -> list[float]:
    """Start ``users`` users at ``spawn_rate`` in this process; return when each connect succeeded."""

    class Holder(WebSocketUser):
        message_interval = 0

    environment = Environment(user_classes=[Holder], events=locust.events, host=url)
    times: list[float] = []

    def on_request(name, exception, **_):
        if name == "connect" and exception is None:
            times.append(time.perf_counter())

    locust.events.request.add_listener(on_request)
    try:
        runner = environment.create_local_runner()
        started = time.perf_counter()
        runner.start(users, spawn_rate=spawn_rate)
        wait_for(lambda: len(times) == users, timeout=10)
        runner.quit()
    finally:
        locust.events.request.remove_listener(on_request)
    return [t - started for t in sorted(times)]


def test_a_burst_of_users_connects_evenly_over_the_second_it_stands_for(server):
    # Locust hands out all 100 users at once (rate 100/s, one dispatch per second).
    times = connect_times(100, 100, server.url)
    assert times[-1] - times[0] >= 0.8  # spread over the second, not opened in one instant
    # evenly: each tenth of the second got about a tenth of the users (in one burst, one tenth
    # would get them all; a busy machine that starts the greenlets late bunches the first few)
    per_tenth = [sum(1 for t in times if k / 10 <= t - times[0] < (k + 1) / 10) for k in range(10)]
    assert max(per_tenth) <= 40 and sorted(per_tenth)[5] >= 5, per_tenth


def test_a_fast_spawn_rate_is_not_slowed_down_to_one_second(server, monkeypatch):
    # 50 users at 1,000/s: 50 ms worth of starts. What the pacer plans, not the wall clock: a
    # busy machine connects late whatever the plan.
    planned = []
    plan = StartPacer.delay

    def recording(pacer, burst, place):
        planned.append(plan(pacer, burst, place))
        return planned[-1]

    monkeypatch.setattr(StartPacer, "delay", recording)
    connect_times(50, 1000, server.url)
    assert len(planned) == 50 and max(planned) == pytest.approx(49 / 1000)  # one a millisecond, not one a 20 ms


@pytest.mark.slow
def test_a_worker_learns_its_share_of_the_spawn_rate_from_the_master(tmp_path):
    locustfile = tmp_path / "rate.py"
    locustfile.write_text(
        "from locust import events\n"
        "from wslocust import WebSocketUser\n"
        "class Holder(WebSocketUser):\n"
        "    message_interval = 0\n"
        "    def on_start(self):\n"
        "        rate = self.environment.parsed_options.ws_spawn_rate_per_worker\n"
        # one write per line: both workers print to the same pipe
        "        print(f'rate per worker {rate}', flush=True)\n"
    )
    with run_server_process() as server:
        run = run_locust(
            "-f", str(locustfile), "--headless", "--processes", "2", "-u", "4", "-r", "40", "-t", "2s",
            "--host", server.url,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("rate per worker 20.0") == 4, run.stdout
