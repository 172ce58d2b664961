"""
Every locustfile in distributed mode: a master and two worker processes
(``WORKERS=2``), in compressed time, each run against its own reference
server; the master's totals are the server's.

Single-process runs of the same locustfiles are in test_scenario_runs.py;
master and workers on separate (simulated) hosts in test_k8s.py. ``echo.py``'s
master and two worker processes are test_live_runs.py's, whose totals are
checked against the server's during and after the run.
"""

from __future__ import annotations

import csv
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO_ROOT, run_server_process
from locust_process import LocustResult, run_locust

pytestmark = pytest.mark.slow

RUNS = {
    # locustfile: options that make it short (shapes end by themselves; -t bounds the others)
    # ...and, where each connection's real message rate would send next to nothing, scaled intervals
    "ten_k.py": ["--ws-time-scale", "0.01", "--ws-target-connections", "20", "--ws-time-scale-messages", "scaled"],
    "ramp_up.py": ["--ws-time-scale", "0.05", "--ws-target-connections", "20"],
    "spike.py": ["--ws-time-scale", "0.2", "--ws-target-connections", "20"],
    "wave.py": ["--ws-time-scale", "0.5", "--ws-target-connections", "10"],
    "sustained.py": ["--ws-time-scale", "0.05", "--ws-target-connections", "10", "--ws-message-interval", "100"],
    "churn.py": ["--ws-time-scale", "0.1", "--ws-target-connections", "20"],
    "flash_sale.py": ["--ws-time-scale", "0.005", "--ws-target-connections", "10", "--ws-message-interval", "1000"],
    "live_event.py": ["--ws-time-scale", "0.0002", "--ws-target-connections", "10", "--ws-time-scale-messages", "scaled"],
    "iot_network.py": [
        "--ws-time-scale", "0.00002", "--ws-target-connections", "10", "--ws-message-interval", "300000",
        "--ws-time-scale-messages", "scaled",
    ],
    # The shape makes the server drop every connection (POST /faults) and refuse new ones a while.
    "error_recovery.py": ["--ws-time-scale", "0.1", "--ws-target-connections", "20"],
}


def test_every_locustfile_has_a_distributed_run_here():
    # echo.py's is test_live_runs.py's master and two worker processes.
    assert {*RUNS, "echo.py"} == {path.name for path in (REPO_ROOT / "locustfiles").glob("*.py")}


@dataclass
class Result:
    process: LocustResult
    server: dict
    websocket: dict[str, str]
    """The master's WebSocket totals: the ``All`` row of ``PREFIX_websocket.csv``."""

    @property
    def stats(self) -> dict[str, dict]:
        return self.process.stats


def _locust(locustfile: str, options: list[str], host: str | None, folder: Path) -> tuple[LocustResult, dict]:
    prefix = folder / locustfile.removesuffix(".py")
    process = run_locust(
        "-f", f"locustfiles/{locustfile}", "--headless", "--json", "--csv", str(prefix),
        *(["--host", host] if host else []), *options, env={"WORKERS": "2"}, timeout=120,
    )  # fmt: skip
    websocket_csv = Path(f"{prefix}_websocket.csv")
    rows = list(csv.DictReader(websocket_csv.read_text().splitlines())) if websocket_csv.exists() else []
    totals = next((row for row in rows if row["node"].startswith("All")), {})
    return process, totals


def _run_against_own_server(locustfile: str, folder: Path) -> Result:
    with run_server_process() as server:
        process, totals = _locust(locustfile, RUNS[locustfile], server.url, folder)
        return Result(process, server.stats(), totals)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Result]:
    folder = tmp_path_factory.mktemp("distributed-runs")
    # A few at a time: each is three processes plus a server, on a machine of two cores.
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(_run_against_own_server, name, folder) for name in RUNS}
        return {name: future.result() for name, future in futures.items()}


def _tracebacks(stderr: str) -> int:
    """
    Tracebacks in a run's log, but for one of Locust's own: with ``--csv`` and ``--processes``,
    its CSV writer greenlet may wake up once more while the master waits for its forked workers
    at exit, after the files were closed ("I/O operation on closed file"), whatever the run did.
    """
    closed_file = stderr.count("ValueError: I/O operation on closed file.")
    return stderr.count("Traceback (most recent call last)") - closed_file


def _workers_connected(stderr: str) -> int:
    counts = [int(match) for match in re.findall(r"reported as ready\. (\d+) workers connected", stderr)]
    return max(counts, default=0)


@pytest.mark.parametrize("locustfile", sorted(set(RUNS) - {"error_recovery.py"}))
def test_a_locustfile_runs_on_two_workers_and_the_totals_are_the_servers(runs, locustfile):
    result = runs[locustfile]
    stderr = result.process.stderr
    assert result.process.returncode == 0, stderr[-4000:]
    assert _workers_connected(stderr) == 2, stderr[-4000:]
    assert _tracebacks(stderr) == 0, stderr[-4000:]
    stats, server = result.stats, result.server
    assert stats["connect"]["num_failures"] == 0
    reconnect = stats.get("reconnect", {"num_requests": 0, "num_failures": 0})  # churn.py's
    connects = stats["connect"]["num_requests"] + reconnect["num_requests"] - reconnect["num_failures"]
    assert connects == server["connections_accepted"] > 0
    assert 0 < stats["echo"]["num_requests"] == server["messages_received"] == server["messages_sent"]
    # The WebSocket totals (PREFIX_websocket.csv) are the server's too.
    assert int(result.websocket["connects_succeeded"]) == server["connections_accepted"]
    assert int(result.websocket["messages_sent"]) == int(result.websocket["messages_received"]) == (
        server["messages_received"]
    )


def test_error_recovery_runs_on_two_workers_and_every_connection_comes_back(runs):
    result = runs["error_recovery.py"]
    stderr = result.process.stderr
    assert result.process.returncode == 1, stderr[-4000:]  # the fault's disconnects are failures
    assert _workers_connected(stderr) == 2
    # The shape's own timing needs fresher counters than 3-second worker reports at this time
    # scale; the connections themselves all came back, on both workers.
    totals = result.websocket
    assert (totals["connects_succeeded"], totals["reconnects"], totals["disconnects"]) == ("40", "20", "20"), totals
    assert result.server["connections_accepted"] == 40

