"""``wslocust monitor``: rendering, a master that restarts, ``--once`` and Ctrl-C."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import subprocess
import sys
import time
import urllib.request

import locust
import pytest
from helpers import REPO_ROOT, free_port, run_server_process, wait_for
from locust.env import Environment
from locust.runners import WorkerNode
from locust_process import LocustProcess
from rich.console import Console

from wslocust import WebSocketUser
from wslocust.monitor import Monitor, render
from wslocust.reporting.live import Live
from wslocust.reporting.system import SystemSample
from wslocust.run.counters import WsCounters
from wslocust.run.state import REPORT_KEY, run_state, worker_report


class Echo(WebSocketUser):
    pass


def text_of(renderable, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_dashboard_shows_states_throughput_latency_workers_errors_and_saturation():
    environment = Environment(user_classes=[Echo], events=locust.events)
    runner = environment.create_master_runner("127.0.0.1", free_port())
    try:
        live = Live(environment)
        for worker, (open_, cpu) in {"a": (1000, 45.0), "b": (1000, 97.0)}.items():
            runner.clients[worker] = WorkerNode(worker, state="running")
            for t, sent in ((1.0, 0), (4.0, 3000)):
                counters = WsCounters(open=open_, connects_succeeded=open_, messages_sent=sent, messages_received=sent)
                system = SystemSample(host="gen", pid=7, cpu=cpu, rss=200_000_000, saturated=cpu > 90)
                node = {"t": t, "system": system.as_dict(), "errors": {"closed_1011": 2}}
                data = {REPORT_KEY: worker_report(counters, node)}
                live.receive(run_state(environment).receive_worker_report(worker, data))
        screen = text_of(render(live.snapshot(), "http://master:8089"))
    finally:
        runner.quit()
    assert "wslocust monitor http://master:8089" in screen
    assert any(line.split("│")[1].split() == ["open", "2,000"] for line in screen.splitlines() if "│ open " in line)
    assert "SATURATED: worker 2" in screen and "latency figures are not trustworthy" in screen
    assert "closed by server with code 1011" in screen
    lines = [line for line in screen.splitlines() if "worker 1" in line and "running" in line]
    assert lines and "1,000" in lines[0] and "45" in lines[0]
    assert "per second" in screen and "1,000" in screen  # 2 x 3000 messages in 3 s


def test_before_any_data_it_says_what_it_waits_for():
    screen = text_of(render(None, "http://127.0.0.1:1", error="no answer from http://127.0.0.1:1/ws/stats"))
    assert "master unreachable: no answer from http://127.0.0.1:1/ws/stats; retrying" in screen
    assert "waiting for a wslocust master at http://127.0.0.1:1" in screen


def start_master(web_port: int, server_url: str, tmp_path, name: str) -> LocustProcess:
    return LocustProcess(
        "-f", "locustfiles/echo.py", "--autostart", "-u", "5", "-r", "5", "-t", "60s", "--web-port", str(web_port),
        "--host", server_url, "--ws-message-interval", "100", name=name, folder=tmp_path,
    )  # fmt: skip


def monitor_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wslocust", "monitor", *args]


@pytest.mark.slow
def test_the_monitor_follows_a_master_through_a_restart_and_once_prints_a_snapshot(tmp_path):
    web_port = free_port()
    url = f"http://127.0.0.1:{web_port}"
    monitor = Monitor(url, timeout=2)
    with run_server_process() as server:
        master = start_master(web_port, server.url, tmp_path, "first")
        try:
            wait_for(lambda: monitor.poll() and monitor.snapshot["aggregate"]["connections"]["open"] == 5, timeout=30)
            wait_for(lambda: monitor.poll() and monitor.snapshot["aggregate"]["rates"]["messages_received"] > 0, 10)
            screen = text_of(monitor.render())
            assert "RUNNING" in screen and "echo" in screen and "Generator process" in screen

            once = subprocess.run(
                monitor_command(url, "--once"), cwd=REPO_ROOT, capture_output=True, text=True, check=False
            )
            assert once.returncode == 0, once.stderr
            assert "Connections" in once.stdout and "Latency" in once.stdout and "open" in once.stdout

            master.kill()  # a crash: no goodbye
            assert not monitor.poll()
            screen = text_of(monitor.render())
            assert "master unreachable" in screen and "RUNNING" in screen  # the last figures stay

            master = start_master(web_port, server.url, tmp_path, "second")
            wait_for(lambda: monitor.poll() and monitor.snapshot["aggregate"]["connections"]["open"] == 5, timeout=30)
            assert monitor.error is None
            assert "master unreachable" not in text_of(monitor.render())
            assert server.stats()["connections_accepted"] == 10

            # Reset Stats in the web UI starts the totals over; the gauges stay.
            wait_for(lambda: monitor.poll() and monitor.snapshot["aggregate"]["totals"]["messages_sent"] > 50, 10)
            before = monitor.snapshot["aggregate"]["totals"]["messages_sent"]
            request = urllib.request.Request(f"{url}/stats/reset", method="POST")
            urllib.request.urlopen(request, timeout=5).close()
            assert monitor.poll()
            after = monitor.snapshot["aggregate"]
            assert after["totals"]["messages_sent"] < before // 2 and after["connections"]["open"] == 5
        finally:
            master.kill()

    unreachable = subprocess.run(
        monitor_command(url, "--once"), cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert unreachable.returncode == 1
    assert unreachable.stdout.strip().splitlines() == [
        f"wslocust monitor: no answer from {url}/ws/stats ([Errno 111] Connection refused)"
    ]


@pytest.mark.slow
def test_the_live_monitor_exits_cleanly_on_ctrl_c():
    url = f"http://127.0.0.1:{free_port()}"  # nothing there: it shows that it waits
    controller, terminal = pty.openpty()
    env = dict(os.environ, COLUMNS="120", LINES="40", TERM="xterm-256color")
    process = subprocess.Popen(
        monitor_command(url, "--interval", "0.2"), cwd=REPO_ROOT, env=env, stdin=terminal, stdout=terminal,
        stderr=terminal, close_fds=True, start_new_session=True,
    )  # fmt: skip
    os.close(terminal)
    screen = b""
    try:
        deadline = time.monotonic() + 30
        while b"waiting for a wslocust master" not in screen and time.monotonic() < deadline:
            if select.select([controller], [], [], 0.2)[0]:
                screen += os.read(controller, 65536)
        assert b"waiting for a wslocust master" in screen
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    assert b"Traceback" not in screen
