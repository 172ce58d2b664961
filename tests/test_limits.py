"""
Open files (issue 7): a run whose connections cannot fit the open-files limit
is refused up front with one line, not met by a storm of EMFILE failures.

Real ``locust`` processes whose RLIMIT_NOFILE is lowered (soft and hard, so
that wslocust cannot raise it): headless, a shape, ``--processes``, a master
with a worker on its own, and the web UI.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import REPO_ROOT, free_port, master_json_stats, run_server_process, wait_for

from wslocust.integration.limits import HEADROOM, Capacity, open_files_limit, refusal

pytestmark = pytest.mark.slow

LIMIT = 300
"""The open-files limit of the runs: room for 300 - HEADROOM = 236 users in one process."""

# python -c this LIMIT ARGS...: lower RLIMIT_NOFILE in the child itself (a preexec_fn is
# unsafe in a process with threads), then run Locust's command line.
_LOCUST_WITH_OPEN_FILES_LIMIT = (
    "import resource, runpy, sys; limit = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)); "
    "runpy.run_module('locust', run_name='__main__', alter_sys=True)"
)


def _environment() -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("WS_SERVER_URL", "WORKERS", "MESSAGE_INTERVAL")}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    return environment


def limited_locust(limit: int | None, *args: str) -> list[str]:
    """The command line of ``locust ARGS`` in a process whose open-files limit is ``limit`` (None: unchanged)."""
    if limit is None:
        return [sys.executable, "-m", "locust", *args]
    return [sys.executable, "-c", _LOCUST_WITH_OPEN_FILES_LIMIT, str(limit), *args]


def run(limit: int | None, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        limited_locust(limit, *args), cwd=REPO_ROOT, env=_environment(), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip


def refusal_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "open-files limit (RLIMIT_NOFILE)" in line]


def assert_refused_once(result: subprocess.CompletedProcess[str], *parts: str) -> None:
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
    started = time.monotonic()
    result = run(LIMIT, "-f", "locustfiles/echo.py", "--headless", "-u", "500", "-r", "500", "-t", "30s",
                 "--host", "ws://127.0.0.1:1/ws")  # fmt: skip
    assert result.returncode == 2, result.stderr[-3000:]
    assert time.monotonic() - started < 15  # before any user: the run's 30 s never start
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
    started = time.monotonic()
    result = run(LIMIT, "-f", "locustfiles/echo.py", "--headless", "--processes", "2", "-u", "600", "-r", "600",
                 "-t", "30s", "--host", "ws://127.0.0.1:1/ws")  # fmt: skip
    # The workers share the master's stderr: run() returns once every one of them has exited too.
    assert result.returncode == 2, result.stderr[-3000:]
    assert time.monotonic() - started < 20
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
    worker = subprocess.Popen(
        limited_locust(LIMIT, "-f", "locustfiles/echo.py", "--worker", "--master-port", str(master_port)),
        cwd=REPO_ROOT, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        started = time.monotonic()
        master = run(None, "-f", "locustfiles/echo.py", "--master", "--headless", "--expect-workers", "1",
                     "-u", "500", "-r", "500", "-t", "30s", "--master-bind-host", "127.0.0.1",
                     "--master-bind-port", str(master_port), "--host", "ws://127.0.0.1:1/ws")  # fmt: skip
        elapsed = time.monotonic() - started
        _, worker_stderr = worker.communicate(timeout=20)  # it was told to quit
    finally:
        worker.kill()
        worker.wait()
    assert master.returncode == 2, master.stderr[-3000:]
    assert elapsed < 20
    assert_refused_once(master, "500 users over 1 worker are up to 500 users per worker process", f"is {LIMIT}:")
    assert "(index 0) is 300" in refusal_lines(master.stderr)[0]
    assert worker.returncode == 0, worker_stderr[-3000:]
    assert "Traceback" not in worker_stderr and "Too many open files" not in worker_stderr


# The web UI -------------------------------------------------------------------------------


def test_a_web_ui_swarm_that_cannot_fit_is_refused_and_the_next_one_runs():
    web_port = free_port()
    with run_server_process() as server:
        process = subprocess.Popen(
            limited_locust(LIMIT, "-f", "locustfiles/echo.py", "--web-host", "127.0.0.1", "--web-port", str(web_port),
                           "--host", server.url),
            cwd=REPO_ROOT, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{web_port}"
        try:
            wait_for(lambda: _answers(base + "/"), timeout=30, interval=0.1, message="the web UI")
            refused = _swarm(base, user_count=500, spawn_rate=500)
            accepted = _swarm(base, user_count=200, spawn_rate=200)
            wait_for(lambda: server.stats()["connections_open"] == 200, timeout=20, interval=0.1)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait()
    assert refused["success"] is False
    assert refused["message"].startswith("wslocust: 500 users in one process need about 564 open files")
    assert accepted["success"] is True
    assert process.returncode == 0, stderr[-3000:]
    assert len(refusal_lines(stderr)) == 1 and "Traceback" not in stderr


def test_a_shape_started_from_the_web_ui_is_stopped_at_its_first_tick_when_it_cannot_fit(peak_shape):
    web_port = free_port()
    with run_server_process() as server:
        process = subprocess.Popen(
            limited_locust(LIMIT, "-f", str(peak_shape), "--web-host", "127.0.0.1", "--web-port", str(web_port),
                           "--host", server.url),
            cwd=REPO_ROOT, env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        base = f"http://127.0.0.1:{web_port}"
        try:
            wait_for(lambda: _answers(base + "/"), timeout=30, interval=0.1, message="the web UI")
            assert _swarm(base)["success"] is True  # Locust starts the shape; its first tick asks for users
            wait_for(lambda: _get(base + "/stats/requests")["state"] == "stopped", timeout=20, interval=0.1)
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=30)
            truth = server.stats()
        finally:
            process.kill()
            process.wait()
    assert truth["connections_accepted"] == 0  # not even the first stage's 10
    assert process.returncode == 0, stderr[-3000:]
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
    alone = SimpleNamespace(runner=None, ws_embedded_server=None)
    serving = SimpleNamespace(runner=None, ws_embedded_server=object())
    assert refusal(alone, users) is None
    line = refusal(serving, users)
    assert line is not None and "two per connection: the embedded reference server runs in this process" in line
    assert "run the server in its own process (`wslocust serve`, then --host)" in line
