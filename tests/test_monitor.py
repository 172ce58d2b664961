"""``wslocust monitor``: rendering, every size from 80x24 up, a master that restarts, ``--once`` and Ctrl-C."""

from __future__ import annotations

import io
import json
import os
import pty
import re
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
from locust_process import LocustProcess, master_and_workers
from rich.console import Console

from wslocust import WebSocketUser
from wslocust.monitor import Monitor, render
from wslocust.monitor_screen import WIDE_MIN_WIDTH
from wslocust.reporting.live import Live
from wslocust.reporting.system import SystemSample
from wslocust.reporting.thresholds import current, parse_thresholds
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


# Every size: what a terminal of that size shows ------------------------------------

SIZES = [(80, 24), (120, 30), (200, 50)]
TITLES = ["Connections", "Messages", "Errors", "Latency, ms", "Hosts"]
LABELS = ["open", "connecting", "reconnecting", "failed (gave up)", "closed", "peak open", "attempts", "sent",
          "received", "total", "per second", "error rate", "request", "requests", "fails", "req/s", "p50", "p95",
          "p99", "avg", "max", "worker", "state", "sent/s", "recv/s", "errors", "CPU %", "memory", "host"]  # fmt: skip
WIDE_LABELS = ["succeeded / failed", "reconnects / lost", "pushed by server", "payload out", "payload in",
               "replies timed out", "replies lost", "late / dup / reordered", "pid", "users", "rt p50", "rt p95",
               "rt p99", "CPU %/1K", "CPU % (all cores)", "cores", "memory %", "net in", "net out",
               "generator processes", "threshold", "now", "result", "Ctrl-C to quit"]  # fmt: skip
COMPACT_LABELS = ["/s", "pushed", "bytes out", "bytes in", "mem %", "net in/s", "net out/s"]
# Rows that count what went wrong: a short terminal leaves them out while they are 0.
COMPACT_PROBLEMS = {"connects failed": ("connects_failed",), "reconnects": ("reconnects",), "lost": ("disconnects",),
                    "replies timed out": ("replies_timed_out",), "replies lost": ("replies_lost",),
                    "late/dup/reordered": ("replies_late", "replies_duplicated", "replies_out_of_order")}  # fmt: skip


def screen_at(snapshot: dict, width: int, height: int) -> list[str]:
    """The lines the monitor draws in a terminal of ``width`` x ``height``, as plain text."""
    console = Console(file=io.StringIO(), width=width, height=height, record=True, color_system=None)
    console.print(render(snapshot, "http://127.0.0.1:8089", now=snapshot["time"], height=console.height))
    return console.export_text().rstrip("\n").split("\n")


def shows(lines: list[str], label: str) -> bool:
    """``label`` whole on one line, not part of a longer word."""
    pattern = re.compile(rf"(^|\s){re.escape(label)}(\s|$)")
    return any(pattern.search(line) for line in lines)


def assert_every_panel_and_label_whole(snapshot: dict, width: int, height: int) -> list[str]:
    lines = screen_at(snapshot, width, height)
    screen = "\n".join(lines)
    size = f"{width}x{height}:\n{screen}"
    assert len(lines) <= height, f"{len(lines)} lines do not fit {size}"
    assert max(len(line) for line in lines) <= width, size
    assert "…" not in screen and "..." not in screen, f"a cut label at {size}"
    compact = "╭" not in screen
    assert compact == (width < WIDE_MIN_WIDTH or height < 40), f"the layout chosen at {size}"
    workers = "Workers" if snapshot["mode"] == "master" else "Generator process"
    titles = [*TITLES, workers, *(["Thresholds"] if snapshot["thresholds"] else [])]
    assert [title for title in titles if title not in screen] == [], size
    labels = [*LABELS, *(COMPACT_LABELS if compact else WIDE_LABELS)]
    totals = snapshot["aggregate"]["totals"]
    labels += [label for label, keys in COMPACT_PROBLEMS.items() if compact and any(totals[key] for key in keys)]
    labels += [view["name"] for view in snapshot["workers"]] + [host["host"] for host in snapshot["hosts"]]
    labels += [*snapshot["aggregate"]["latency"], *(result["threshold"] for result in snapshot["thresholds"])]
    assert [label for label in labels if not shows(lines, label)] == [], f"labels missing or cut at {size}"
    return lines


def a_master_snapshot(errors: dict[str, int]) -> dict:
    """``/ws/stats`` of a master with two workers on one host, one of them saturated, and two thresholds."""
    environment = Environment(user_classes=[Echo], events=locust.events)
    runner = environment.create_master_runner("127.0.0.1", free_port())
    try:
        live = Live(environment)
        for worker, (open_, cpu) in {"a": (1000, 45.0), "b": (1000, 97.0)}.items():
            runner.clients[worker] = WorkerNode(worker, state="running")
            for t, sent in ((1.0, 0), (4.0, 3000)):
                counters = WsCounters(open=open_, connects_succeeded=open_, connect_attempts=open_ + 3,
                                      connects_failed=3, messages_sent=sent, messages_received=sent)  # fmt: skip
                system = SystemSample(host="gen", pid=7, cpu=cpu, rss=200_000_000, saturated=cpu > 90, host_cpu=60.0,
                                      host_cores=4, net_in=1.5e6, net_out=1.4e6)  # fmt: skip
                node = {"t": t, "system": system.as_dict(), "errors": errors}
                live.receive(
                    run_state(environment).receive_worker_report(worker, {REPORT_KEY: worker_report(counters, node)})
                )
        for name, milliseconds in (("connect", 2.0), ("echo", 0.4), ("echo", 12.0)):
            runner.stats.log_request("WS", name, milliseconds, 64)
        run_state(environment).thresholds = parse_thresholds("echo.p95<100ms, error_rate<0.1%, connect.p99<500ms")
        snapshot = live.snapshot()
        snapshot["thresholds"] = current(environment)
    finally:
        runner.quit()
    return json.loads(json.dumps(snapshot))  # as the monitor receives it


@pytest.mark.parametrize(("width", "height"), SIZES, ids=lambda size: str(size))
def test_every_panel_and_label_is_whole_at_each_size(width, height):
    snapshot = a_master_snapshot({"closed_1011": 2, "reply_timeout": 1, "bad_101_sec-websocket-accept": 1})
    lines = assert_every_panel_and_label_whole(snapshot, width, height)
    screen = "\n".join(lines)
    assert "SATURATED: worker 2" in screen and ("latency figures are not trustworthy" in screen)
    # A description too long for its column gives way to the category's name, never cut.
    assert shows(lines, "closed by server with code 1011") or shows(lines, "closed_1011")
    assert shows(lines, "no reply in time") or shows(lines, "reply_timeout")
    rows = [line for line in lines if re.search(r"worker \d", line) and "SATURATED" not in line.split()[0]]
    assert len(rows) == 2, screen  # one row per worker


def test_a_short_terminal_leaves_out_what_is_zero_then_the_quiet_workers():
    snapshot = a_master_snapshot({})
    full = screen_at(snapshot, 80, 60)
    assert shows(full, "replies timed out") and shows(full, "reconnects")
    tight = screen_at(snapshot, 80, len(full) - 1)
    assert len(tight) < len(full) and shows(tight, "connects failed")  # 6 failed: it stays
    assert not shows(tight, "replies timed out") and not shows(tight, "reconnects")
    for number in range(3, 7):  # six workers, one of them saturated
        snapshot["workers"].append({**snapshot["workers"][0], "id": f"w{number}", "name": f"worker {number}"})
    lines = screen_at(snapshot, 80, 24)
    assert len(lines) <= 24 and "worker 2" in "\n".join(lines), "\n".join(lines)  # the saturated one stays
    assert any(re.search(r"and \d more workers: a taller terminal shows them", line) for line in lines)


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
def test_a_live_master_with_two_workers_fits_every_size(tmp_path):
    with run_server_process() as server, master_and_workers(
        "--autostart", "-u", "6", "-r", "6", "-t", "60s", "--expect-workers", "2",
        "--ws-thresholds", "echo.p95<1000ms, error_rate<50%",
        locustfile="locustfiles/echo.py", common=["--host", server.url, "--ws-message-interval", "100"], folder=tmp_path,
    ) as (master, workers):  # fmt: skip
        monitor = Monitor(master.web_url, timeout=2)

        def running() -> bool:
            if not monitor.poll():
                return False
            aggregate, workers = monitor.snapshot["aggregate"], monitor.snapshot["workers"]
            return (aggregate["connections"]["open"] == 6 and aggregate["rates"]["messages_received"] > 0
                    and [view["state"] for view in workers] == ["running", "running"]
                    and all(view["round_trip"] for view in workers))  # fmt: skip

        wait_for(running, timeout=40, processes=[master, *workers])
    snapshot = monitor.snapshot
    assert snapshot["mode"] == "master" and len(snapshot["thresholds"]) == 2
    for width, height in SIZES:
        lines = assert_every_panel_and_label_whole(snapshot, width, height)
        rows = [line for line in lines if re.search(r"worker [12] ", line)]
        states = r" (running|LAGGING|SATURATED) "  # on a busy machine a worker may lag
        assert len(rows) == 2 and all(re.search(states, row) and " 3 " in row for row in rows), "\n".join(lines)


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
