"""
Open files (issue 7): a run whose connections cannot fit the open-files limit
is refused up front with one line, not met by a storm of EMFILE failures.

Real ``locust`` processes whose RLIMIT_NOFILE is lowered (soft and hard, so
that wslocust cannot raise it): headless, a shape, ``--processes``, a master
with a worker on its own, and the web UI.
"""

from __future__ import annotations

import json
import signal
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import free_port, run_server_process, wait_for
from locust_process import LocustProcess, LocustResult, master_json_stats, run_locust

from wslocust.integration.limits import HEADROOM, Capacity, open_files_limit, refusal
from wslocust.run.state import run_state

pytestmark = pytest.mark.slow

LIMIT = 300
"""The open-files limit of the runs: room for 300 - HEADROOM = 236 users in one process."""

def run(limit: int | None, *args: str, timeout: float = 60) -> LocustResult:
    """``locust ARGS`` in a process whose open-files limit is ``limit`` (None: unchanged), at most ``timeout`` s."""
    return run_locust(*args, open_files_limit=limit, timeout=timeout)


def refusal_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "open-files limit (RLIMIT_NOFILE)" in line]


def assert_refused_once(result: LocustResult, *parts: str) -> None:
    lines = refusal_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    for part in parts:
        assert part in lines[0], (part, lines[0])
    assert "Traceback" not in result.stderr
    assert "Too many open files" not in result.stderr


@pytest.fixture
def peak_shape(tmp_path: Path) -> Path:
    path = tmp_path / "peak.py"
    path.write_text(
        "from wslocust import Stage, Stages, WebSocketUser\n\n\n"
        "class EchoUser(WebSocketUser):\n    message_interval = 1.0\n\n\n"
        "class Peak(Stages):\n    stages = [Stage(1, 10), Stage(2, 500), Stage(1, 0)]\n"
    )
    return path


# Headless, one process ------------------------------------------------------------------


def test_a_headless_run_asking_for_more_users_than_fit_stops_at_once_with_one_line():
    # Within 15 s: before any user, the run's 30 s never start.
    result = run(LIMIT, "-f", "locustfiles/echo.py", "--headless", "-u", "500", "-r", "500", "-t", "30s",
                 "--host", "ws://127.0.0.1:1/ws", timeout=15)  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert_refused_once(
        result,
        "500 users in one process need about 564 open files",
        f"open-files limit (RLIMIT_NOFILE) is {LIMIT}",
        "run `ulimit -n 564` (or more)",
        "at least 3 worker processes (--processes / WORKERS)",
    )
    assert "WebSocket summary" not in result.stderr  # it never ran


def test_a_shape_is_checked_against_its_largest_stage(peak_shape):
    result = run(LIMIT, "-f", str(peak_shape), "--headless", "--host", "ws://127.0.0.1:1/ws")
    assert result.returncode == 2, result.stderr[-3000:]
    assert_refused_once(result, "500 users in one process need about 564 open files")


def test_a_run_that_fits_exactly_runs_without_a_single_failure():
    users = LIMIT - HEADROOM  # the most that fit: the headroom is what Locust really needs
    with run_server_process() as server:
        result = run(
            LIMIT, "-f", "locustfiles/echo.py", "--headless", "-u", str(users), "-r", str(users), "-t", "3s",
            "--host", server.url, "--json",
        )  # fmt: skip
        truth = server.stats()
    assert result.returncode == 0, result.stderr[-3000:]
    assert refusal_lines(result.stderr) == []
    stats = master_json_stats(result.stdout)
    assert stats["connect"]["num_requests"] == truth["connections_accepted"] == users
    assert stats["connect"]["num_failures"] == 0 and stats["echo"]["num_failures"] == 0


# Several processes ----------------------------------------------------------------------------


def test_processes_are_checked_per_worker_process_and_all_of_them_stop():
    # run() returns once the master and every worker it forked have exited: all within 20 s.
    result = run(LIMIT, "-f", "locustfiles/echo.py", "--headless", "--processes", "2", "-u", "600", "-r", "600",
                 "-t", "30s", "--host", "ws://127.0.0.1:1/ws", timeout=20)  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert_refused_once(
        result,
        "600 users over 2 workers are up to 300 users per worker process, which need about 364 open files",
        f"of each worker process is {LIMIT}",
        "run at least 3 worker processes",
    )


def test_processes_hold_more_users_than_one_process_could():
    users = 400  # more than the 236 that fit in one process with this limit; 200 per worker
    with run_server_process() as server:
        result = run(
            LIMIT, "-f", "locustfiles/echo.py", "--headless", "--processes", "2", "-u", str(users), "-r", str(users),
            "-t", "3s", "--host", server.url, "--json",
        )  # fmt: skip
        truth = server.stats()
    assert result.returncode == 0, result.stderr[-3000:]
    assert refusal_lines(result.stderr) == []
    stats = master_json_stats(result.stdout)
    assert stats["connect"]["num_requests"] == truth["connections_accepted"] == users
    assert stats["connect"]["num_failures"] == 0


def test_a_master_checks_each_workers_own_limit():
    # The worker is another process (another host, as far as the master knows): it reports its limit.
    master_port = free_port()
    with LocustProcess(
        "-f", "locustfiles/echo.py", "--worker", "--master-port", str(master_port), open_files_limit=LIMIT
    ) as worker:  # fmt: skip
        master = run(None, "-f", "locustfiles/echo.py", "--master", "--headless", "--expect-workers", "1",
                     "-u", "500", "-r", "500", "-t", "30s", "--master-bind-host", "127.0.0.1",
                     "--master-bind-port", str(master_port), "--host", "ws://127.0.0.1:1/ws", timeout=20)  # fmt: skip
        worker_code = worker.wait(20)  # it was told to quit
    worker_stderr = worker.stderr
    assert master.returncode == 2, master.stderr[-3000:]
    assert_refused_once(master, "500 users over 1 worker are up to 500 users per worker process", f"is {LIMIT}:")
    assert "(index 0) is 300" in refusal_lines(master.stderr)[0]
    assert worker_code == 0, worker_stderr[-3000:]
    assert "Traceback" not in worker_stderr and "Too many open files" not in worker_stderr


# The web UI -------------------------------------------------------------------------------


def test_a_web_ui_swarm_that_cannot_fit_is_refused_and_the_next_one_runs():
    with (
        run_server_process() as server,
        LocustProcess("-f", "locustfiles/echo.py", "--host", server.url, open_files_limit=LIMIT) as process,
    ):
        base = process.web_url
        wait_for(lambda: _answers(base + "/"), timeout=30, interval=0.1, message="the web UI", processes=[process])
        refused = _swarm(base, user_count=500, spawn_rate=500)
        accepted = _swarm(base, user_count=200, spawn_rate=200)
        wait_for(lambda: server.stats()["connections_open"] == 200, timeout=20, interval=0.1)
        process.popen.send_signal(signal.SIGTERM)
        code = process.wait(30)
    stderr = process.stderr
    assert refused["success"] is False
    assert refused["message"].startswith("wslocust: 500 users in one process need about 564 open files")
    assert accepted["success"] is True
    assert code == 0, stderr[-3000:]
    assert len(refusal_lines(stderr)) == 1 and "Traceback" not in stderr


def test_a_shape_started_from_the_web_ui_is_stopped_at_its_first_tick_when_it_cannot_fit(peak_shape):
    with (
        run_server_process() as server,
        LocustProcess("-f", str(peak_shape), "--host", server.url, open_files_limit=LIMIT) as process,
    ):
        base = process.web_url
        wait_for(lambda: _answers(base + "/"), timeout=30, interval=0.1, message="the web UI", processes=[process])
        assert _swarm(base)["success"] is True  # Locust starts the shape; its first tick asks for users
        wait_for(lambda: _get(base + "/stats/requests")["state"] == "stopped", timeout=20, interval=0.1)
        process.popen.send_signal(signal.SIGTERM)
        code = process.wait(30)
        truth = server.stats()
    stderr = process.stderr
    assert truth["connections_accepted"] == 0  # not even the first stage's 10
    assert code == 0, stderr[-3000:]
    [line] = refusal_lines(stderr)
    assert "500 users in one process need about 564 open files" in line and "Traceback" not in stderr


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _swarm(base: str, **form: object) -> dict:
    data = urllib.parse.urlencode({k: str(v) for k, v in form.items()}).encode()
    with urllib.request.urlopen(urllib.request.Request(base + "/swarm", data=data), timeout=30) as response:
        return json.load(response)


# The arithmetic behind the line -------------------------------------------------------------


def test_the_embedded_server_in_the_same_process_counts_two_descriptors_per_user():
    # The embedded server listens on 127.0.0.1:3003, which a real run here cannot count on: checked in-process.
    assert Capacity(LIMIT).users == LIMIT - HEADROOM and Capacity(LIMIT, per_user=2).users == (LIMIT - HEADROOM) // 2
    users = (open_files_limit() - HEADROOM) // 2 + 1  # fits one per user, not two
    alone = SimpleNamespace(runner=None)
    serving = SimpleNamespace(runner=None)
    run_state(serving).embedded_server = object()
    assert refusal(alone, users) is None
    line = refusal(serving, users)
    assert line is not None and "two per connection: the embedded reference server runs in this process" in line
    assert "run the server in its own process (`wslocust serve`, then --host)" in line
