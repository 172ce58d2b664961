"""
Every process a run starts ends with it: workers that Locust forks (``--processes``) end with
their master whatever ends it (a one-line error at start, SIGKILL), and a worker without a master
says at once what it waits for.
"""

from __future__ import annotations

import os
import signal
import socket

import pytest
from helpers import REPO_ROOT, wait_for
from locust_process import LocustProcess, run_locust

from benchmarks.processes import free_port
from wslocust.integration.distributed import FINAL_REPORT_TIMEOUT

pytestmark = pytest.mark.slow

ECHO = str(REPO_ROOT / "locustfiles" / "echo.py")


def assert_no_traceback(output: str) -> None:
    assert "Traceback" not in output, output
    assert "Unknown message type" not in output, output


def test_a_master_stopped_at_start_takes_its_forked_workers_with_it():
    # The embedded server's port is taken: the master stops at init with one line, its workers with it
    # (they used to wait five minutes for a master that was gone, or, once connected, run forever).
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for _ in range(3):  # the workers connect before or after the master stops: both orders
            result = run_locust(
                "-f", ECHO, "--headless", "-u", "2", "-r", "2", "-t", "30s", "--processes", "2",
                embedded_port=port, timeout=40,
            )  # fmt: skip
            assert result.returncode == 2, result.stderr
            assert f"cannot start the embedded reference server on 127.0.0.1:{port}" in result.stderr
            # A worker told to quit while Locust was still creating its runner used to live on until its
            # master gave up on its last report (FINAL_REPORT_TIMEOUT, 10 s) and its parent killed it.
            assert "no last report" not in result.stderr, result.stderr
            assert result.elapsed < FINAL_REPORT_TIMEOUT, f"the run and its workers took {result.elapsed:.1f} s to end"
            assert_no_traceback(result.stderr)


def test_forked_workers_end_when_their_master_is_killed():
    run = LocustProcess("-f", ECHO, "--headless", "-u", "4", "-r", "4", "-t", "60s", "--processes", "2")
    try:
        wait_for(lambda: run.find(r"2 workers connected") is not None, timeout=30, message="two workers connect")
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=5)  # the whole process group: the workers too (without their master: 10 s and more)
    finally:
        run.kill()


def test_a_worker_without_a_master_says_what_it_waits_for_at_once():
    port = free_port()
    worker = LocustProcess("-f", ECHO, "--worker", "--master-host", "127.0.0.1", "--master-port", str(port))
    try:
        line = rf"this worker has no master at 127\.0\.0\.1:{port} yet .*Locust retries for (\d+) s more"
        wait_for(lambda: worker.find(line) is not None, timeout=20, message="the worker says it has no master")
        seconds = int(worker.find(line)[1])
        assert 250 <= seconds <= 300, seconds
    finally:
        worker.kill()
