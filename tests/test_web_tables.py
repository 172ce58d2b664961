"""
The rows of the web UI's WebSocket tabs and of the final ``PREFIX_websocket.csv``, from real
:class:`~wslocust.reporting.live.Live` snapshots (a master fed worker reports, a single process).
Then the same in real runs; what a browser shows of them at 1,280 px is ``tests/test_browser.py``.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import urllib.request

import locust
import pytest
from helpers import free_port, run_server_process, wait_for
from locust.env import Environment
from locust.runners import WorkerNode
from locust_process import LocustProcess, run_locust
from test_live import Echo, receive, report

from wslocust.reporting import web
from wslocust.reporting.csv_files import final_rows
from wslocust.reporting.live import Live
from wslocust.reporting.reports import node_rows
from wslocust.run.state import REPORT_KEY


@pytest.fixture
def master():
    environment = Environment(user_classes=[Echo], events=locust.events)
    runner = environment.create_master_runner("127.0.0.1", free_port())
    yield environment, runner
    runner.quit()


def worker_report(t: float, cpu: float, peak_cpu: float) -> dict:
    data = report(t, 10, 100, cpu=cpu)
    data[REPORT_KEY]["live"]["system"]["peak_cpu"] = peak_cpu
    return data


def tabs(snapshot: dict) -> dict[str, list[dict]]:
    return by_key(web.tab_rows(snapshot))


def by_key(extended_stats: list[dict]) -> dict[str, list[dict]]:
    return {tab["key"]: tab["data"] for tab in extended_stats}


def test_every_row_has_the_columns_of_its_table_and_the_all_rows_peak_cpu_is_never_below_its_cpu(master):
    environment, runner = master
    live = Live(environment)
    for worker in ("a", "b"):
        runner.clients[worker] = WorkerNode(worker, state="running")
    receive(live, "a", worker_report(1.0, cpu=60.0, peak_cpu=70.0))
    receive(live, "b", worker_report(1.0, cpu=50.0, peak_cpu=55.0))
    rows = tabs(live.snapshot())
    for table in web.TABLES:
        columns = [column["key"] for column in table["structure"]]
        assert all(list(row) == columns for row in rows[table["key"]]), table["key"]
    everything, *workers = rows["websocket-system"]
    cpu, peak = (float(figure) for figure in everything["cpu"].split(web.GROUPED))
    assert cpu == 110.0 and peak >= cpu  # the sum of the workers' peaks (max of them, 70, was below)
    assert [worker["cpu"].split(web.GROUPED) for worker in workers] == [["60.0", "70.0"], ["50.0", "55.0"]]
    assert [worker["process"].split(web.GROUPED) for worker in workers] == [["gen-1", "4242"]] * 2
    assert everything["cpu_per_1k"] == "" and everything["host_net"] != ""  # 20 open: no per-1K figure
    assert rows["websocket-errors"] == [web.NO_ERRORS]


def test_the_final_csv_row_says_stopped_and_keeps_the_gone_workers_memory(master):
    environment, runner = master
    live = Live(environment)
    for worker in ("a", "b"):
        runner.clients[worker] = WorkerNode(worker, state="running")
        receive(live, worker, worker_report(1.0, cpu=10.0, peak_cpu=12.0))
    runner.clients.clear()  # at quit the master's workers have gone
    snapshot = live.snapshot()
    assert node_rows(snapshot)[0]["rss_bytes"] == 0  # what the live figures say: nothing alive
    everything, *workers = final_rows(snapshot)
    assert everything["status"] == "stopped" and [worker["status"] for worker in workers] == ["gone", "gone"]
    assert everything["rss_bytes"] == 100_000_000 and everything["cpu_percent"] == 20.0
    assert everything["host"] == "gen-1"


def test_a_single_processs_row_has_its_hosts_figures_as_a_workers_row_has():
    environment = Environment(user_classes=[Echo], events=locust.events)
    runner = environment.create_local_runner()
    try:
        live = Live(environment)
        live.sampler.sample()
        rows = tabs(live.snapshot())
    finally:
        runner.quit()
    (row,) = rows["websocket-system"]
    assert row["process"].split(web.GROUPED) == [socket.gethostname(), str(os.getpid())]
    assert row["host_cpu"] != "" and row["host_net"] != ""
    (main,) = rows["websocket"]
    assert main["node"] == "All" and main["round_trip"].split(web.GROUPED) == ["-"] * 3  # no replies yet


# Real runs ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_distributed_runs_final_csv_row_is_stopped_with_its_workers_memory(tmp_path):
    with run_server_process() as server:
        result = run_locust(
            "-f", "locustfiles/echo.py", "--processes", "2", "--headless", "-u", "6", "-r", "6", "-t", "4s",
            "--host", server.url, "--ws-message-interval", "100", "--csv", str(tmp_path / "run"), folder=tmp_path,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "run_websocket.csv") as f:
        everything, *workers = csv.DictReader(f)
    assert everything["node"] == "All (2 workers)" and everything["status"] == "stopped", everything
    assert int(everything["rss_bytes"]) == sum(int(worker["rss_bytes"]) for worker in workers) > 0
    assert everything["host"] == socket.gethostname()
    assert everything["cpu_percent_per_1k_open"] == ""  # 6 connections: no per-1K figure
    assert float(everything["peak_cpu_percent"]) >= float(everything["cpu_percent"])


@pytest.mark.slow
def test_a_single_processs_system_row_has_the_hosts_figures_in_a_real_run(tmp_path):
    with run_server_process() as server:
        run = LocustProcess(
            "-f", "locustfiles/echo.py", "--autostart", "-u", "3", "-r", "3", "-t", "30s", "--host", server.url,
            folder=tmp_path,
        )  # fmt: skip
        try:
            wait_for(lambda: server.stats()["connections_open"] == 3, timeout=30, interval=0.2, processes=[run])

            def system_row() -> dict | None:
                with urllib.request.urlopen(f"{run.web_url}/stats/requests", timeout=5) as response:
                    rows = by_key(json.load(response)["extended_stats"])
                row = rows["websocket-system"][0]
                return rows if row["host_cpu"] != "" and row["host_net"] else None

            rows = wait_for(system_row, timeout=20, interval=0.5, processes=[run])
        finally:
            run.stop(timeout=30)
    (row,) = rows["websocket-system"]
    assert row["node"] == "All" and row["process"].split(web.GROUPED)[0] == socket.gethostname()
    assert rows["websocket-errors"] == [web.NO_ERRORS]
