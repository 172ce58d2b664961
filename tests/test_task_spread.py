"""
Users that Locust starts in one burst run their tasks spread over the burst, as they connect.

``constant_pacing`` times its first wait from the moment Locust created the user: the users of a
burst, created in one instant, sent in the same 50 ms of every second however spread out their
connects were (89 % of the sends with 200 users), until ``SessionUser.run_tasks`` restarted the
pacing clock when the tasks start.
"""

from __future__ import annotations

import time

import locust
import pytest
from helpers import run_server_process, wait_for
from locust import constant_pacing, task
from locust.env import Environment
from locust_process import run_locust

from benchmarks.phase_spread import describe_phase_spread, largest_window_share, read_phases
from wslocust import WebSocketUser

USERS = 120

PACED_LOCUSTFILE = """
import os
import time

from locust import constant_pacing, task

from wslocust import WebSocketUser

PHASES = os.environ["PHASES_FILE"]


class Paced(WebSocketUser):
    wait_time = constant_pacing(1)

    @task
    def send(self):
        with open(PHASES, "a") as phases:  # one short write per send: atomic in append mode
            phases.write(f"{time.time() % 1:.6f}\\n")
        self.echo("x" * 64)
"""


def test_the_phase_spread_is_the_share_of_the_most_crowded_window():
    assert largest_window_share([0.99, 0.01, 0.5], window=0.05) == pytest.approx(2 / 3)  # the window wraps
    assert largest_window_share([0.1, 0.2, 0.3, 0.4]) == 0.25
    assert largest_window_share([3.5, 7.5001, 0.2]) == pytest.approx(2 / 3)  # raw times are taken modulo 1 s
    assert largest_window_share([]) == 0.0
    with pytest.raises(ValueError):
        largest_window_share([0.1], window=1.0)


def test_a_paced_user_waits_its_whole_period_after_its_first_task_however_late_it_connected(server):
    # 20 users started together connect over a second (the start pacer); paced from their creation,
    # the late ones would run their second task a few ms after their first, all at the same instant.
    runs: dict[int, list[float]] = {}

    class Paced(WebSocketUser):
        wait_time = constant_pacing(1)

        @task
        def send(self):
            runs.setdefault(id(self), []).append(time.perf_counter())
            self.echo("x")

    environment = Environment(user_classes=[Paced], events=locust.events, host=server.url)
    runner = environment.create_local_runner()
    try:
        runner.start(20, spawn_rate=20)
        wait_for(lambda: len(runs) == 20 and all(len(times) >= 2 for times in runs.values()), timeout=10)
    finally:
        runner.quit()
    first_waits = sorted(times[1] - times[0] for times in runs.values())
    assert first_waits[0] >= 0.9, first_waits


@pytest.mark.slow
def test_paced_tasks_of_users_started_together_do_not_send_in_lockstep(tmp_path):
    locustfile = tmp_path / "paced.py"
    locustfile.write_text(PACED_LOCUSTFILE)
    phases_file = tmp_path / "phases.txt"
    with run_server_process() as server:
        run = run_locust(
            "-f", str(locustfile), "--headless", "-u", str(USERS), "-r", str(USERS), "-t", "5s",
            "--host", server.url, env={"PHASES_FILE": str(phases_file)},
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    phases = read_phases(phases_file)
    assert len(phases) >= 3 * USERS, len(phases)  # the users ran some seconds of tasks
    # Spread evenly, 50 ms of a second holds 5 % of the sends; in lockstep nearly all (88 % before the fix,
    # only the first send of each user elsewhere). 15 % leaves room for a busy machine's bunching.
    assert largest_window_share(phases, window=0.05) <= 0.15, describe_phase_spread(phases)
