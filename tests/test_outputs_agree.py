"""
Every output of a run agrees with the server at its end (issue 12, point 4).

Each run goes once, against the reference server (``wslocust serve``, whose ``/stats`` counters are
exact), with every output on: the console (Locust's final table and error report, the
"WebSocket summary" line and the results block), ``--csv`` (Locust's ``_stats``, ``_failures`` and
the last ``_stats_history`` row; wslocust's ``_websocket``, ``_websocket_errors`` and the last
``_websocket_history`` row), ``--json``, ``--html`` (the figures of its embedded JSON) and the web
UI (``/ws/stats``, ``/ws/metrics`` and Locust's ``/stats/requests``). The web UI is read at the end of
the run: ``--autostart`` runs headless with the web UI on, and ``--autoquit`` keeps it up after the
stop until every figure is in. Every count must equal the server's, with no difference, in a plain
echo run, with churn, while the server closes and refuses connections (the users recover), with the
server killed and restarted under the run, and with a master and two workers.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import ServerProcess, run_server_process, wait_for
from locust_process import LocustProcess, master_and_workers, master_json_stats

pytestmark = pytest.mark.slow

RUN_TIME = 4
AUTOQUIT = 6
"""Seconds the web UI stays up after the stop, for the test to read it; then the run ends as usual (a
SIGTERM would skip the ``--html`` report). A master's workers report every 3 s."""

# Reading each output -------------------------------------------------------------------------

Counts = dict[str, tuple[int, int]]
"""(requests, failures) by request name."""

_TABLE_ROW = re.compile(r"^WS +(?P<name>\w+) +(?P<requests>\d+) +(?P<failures>\d+)\(", re.MULTILINE)
_ERROR_ROW = re.compile(r"^(?P<occurrences>\d+) +WS (?P<name>\w+): ", re.MULTILINE)
_SUMMARY = re.compile(
    r"WebSocket summary: (?P<connects_succeeded>\d+) connects \((?P<connects_failed>\d+) failed, "
    r"(?P<reconnects>\d+) reconnects, (?P<disconnects>\d+) disconnects\), (?P<messages_sent>\d+) messages sent, "
    r"(?P<messages_received>\d+) received \((?P<unsolicited_received>\d+) unsolicited\), (?P<bytes_sent>\d+) bytes "
    r"sent, (?P<bytes_received>\d+) received, (?P<replies_timed_out>\d+) replies timed out, (?P<replies_lost>\d+) "
    r"lost, (?P<replies_in_flight_at_stop>\d+) in flight at stop"
)
_RESULTS = re.compile(
    r"connections +peak [\d,]+ open; (?P<connects_succeeded>[\d,]+) connects \((?P<connects_failed>[\d,]+) failed "
    r"attempts?, (?P<reconnects>[\d,]+) reconnects?\), (?P<disconnects>[\d,]+) lost, (?P<closed>[\d,]+) closed.*\n"
    r" +messages +(?P<messages_sent>[\d,]+) sent, (?P<messages_received>[\d,]+) received"
)
_METRIC = re.compile(r"^wslocust_(?P<name>\w+)_total\{[^}]*\} (?P<value>[\d.e+]+)$", re.MULTILINE)
_TEMPLATE_ARGS = re.compile(r"window\.templateArgs = (\{.*?\})\s*\n", re.DOTALL)


def console_counts(stderr: str) -> tuple[Counts, Counter[str]]:
    """Locust's final statistics table, and its error report's occurrences by request name."""
    table = {row["name"]: (int(row["requests"]), int(row["failures"])) for row in _TABLE_ROW.finditer(stderr)}
    _, _, report = stderr.rpartition("\nError report\n")
    errors: Counter[str] = Counter()
    for row in _ERROR_ROW.finditer(report):
        errors[row["name"]] += int(row["occurrences"])
    return table, errors


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def entries_counts(entries: list[dict[str, Any]]) -> Counts:
    """(requests, failures) by name from Locust's serialized or web entries (``Aggregated`` left out)."""
    return {e["name"]: (e["num_requests"], e["num_failures"]) for e in entries if e["name"] != "Aggregated"}


def html_counts(path: Path) -> tuple[Counts, Counter[str]]:
    """The requests and failures of the ``--html`` report, from the JSON it embeds."""
    found = _TEMPLATE_ARGS.search(path.read_text())
    assert found, "no templateArgs in the --html report"
    report = json.loads(found[1])
    errors: Counter[str] = Counter()
    for failure in report["failures_statistics"]:
        errors[failure["name"]] += failure["occurrences"]
    return entries_counts(report["requests_statistics"]), errors


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()  # type: ignore[no-any-return]


# One run -----------------------------------------------------------------------------------


@dataclass
class Outputs:
    """Every output of one finished run, and the server's counters."""

    folder: Path
    stderr: str
    stdout: str
    web: dict[str, Any]
    """What the web UI said once the run had stopped: /ws/stats, /ws/metrics, /stats/requests."""
    server: dict[str, int]

    def csv(self, suffix: str) -> list[dict[str, str]]:
        return read_csv(self.folder / f"run_{suffix}.csv")


def read_web_ui_at_the_end(
    url: str, server: Any, processes: list[LocustProcess], run_time: float = RUN_TIME
) -> dict[str, Any]:
    """Once the run stopped and every figure is in (a master has its workers' last reports): the web UI's answers."""

    def final() -> dict[str, Any] | None:
        try:
            stats = json.loads(get(url + "/ws/stats"))
        except OSError:
            return None  # the web UI is not up yet
        truth = server.stats()
        totals = stats["aggregate"]["totals"]
        if stats["state"] != "stopped" or totals["messages_received"] != truth["messages_sent"]:
            return None
        if totals["closed"] + totals["disconnects"] != truth["connections_closed"]:
            return None
        return {
            "ws_stats": stats,
            "metrics": get(url + "/ws/metrics").decode(),
            "requests": json.loads(get(url + "/stats/requests")),
        }

    return wait_for(
        final, timeout=run_time + AUTOQUIT + 20, interval=0.2, message="the web UI's final figures", processes=processes
    )


def run_and_read(
    tmp_path: Path,
    server: Any,
    user: dict[str, Any],
    *,
    workers: int = 0,
    run_time: float = RUN_TIME,
    during: Callable[[LocustProcess], None] | None = None,
) -> Outputs:
    """
    Run ``user``'s settings against ``server`` with every output on; read them all.

    ``during`` is called with the (single) Locust process once it has started, e.g. to kill the server
    under it; ``server`` is anything with ``url`` and ``stats()``.
    """
    lines = ["import locust.stats", "", "from wslocust import WebSocketUser", ""]
    # The --csv files must hold the final figures however seldom they are rewritten: once an hour,
    # here, so that the rewrites during --autoquit cannot make up for a last write that is missing.
    lines += ["locust.stats.CSV_STATS_INTERVAL_SEC = 3600", "", "", "class Echo(WebSocketUser):"]
    lines += [f"    {key} = {value!r}" for key, value in {"host": server.url, **user}.items()]
    locustfile = tmp_path / "outputs.py"
    locustfile.write_text("\n".join(lines) + "\n")
    users = 10
    outputs = [
        "--csv", str(tmp_path / "run"), "--json", "--html", str(tmp_path / "run.html"), "--only-summary",
        "--autostart", "--autoquit", str(AUTOQUIT), "-u", str(users), "-r", str(users), "-t", f"{run_time:g}s",
    ]  # fmt: skip
    if workers:
        with master_and_workers(
            *outputs, "--expect-workers", str(workers), locustfile=locustfile, workers=workers, folder=tmp_path
        ) as (master, worker_processes):
            web = read_web_ui_at_the_end(master.web_url, server, [master, *worker_processes], run_time)
            master.wait(60)
            main = master
    else:
        main = LocustProcess("-f", str(locustfile), *outputs, folder=tmp_path)
        try:
            if during:
                during(main)
            web = read_web_ui_at_the_end(main.web_url, server, [main], run_time)
            main.wait(60)
        finally:
            main.kill()
    return Outputs(tmp_path, main.stderr, main.stdout, web, server.stats())


# The comparison --------------------------------------------------------------------------


def assert_every_output_agrees_with_the_server(out: Outputs, never_reached_the_server: int = 0) -> None:
    """
    ``never_reached_the_server``: messages the users wrote after the server had died, into connections
    they had not yet read the end of (the kernel took them; nobody read them): sent for the users, and
    their replies lost, but not in the server's counts.
    """
    truth = out.server
    assert truth["connections_open"] == 0, truth
    for sign in ("Traceback", "Unhandled exception in greenlet", "/ERROR/", "/CRITICAL/"):
        assert sign not in out.stderr, out.stderr[-5000:]

    # The WebSocket counters, in each output that shows them.
    summary = _SUMMARY.search(out.stderr)
    results = _RESULTS.search(out.stderr)
    assert summary and results, out.stderr[-3000:]
    views = {
        "summary line": {key: int(value) for key, value in summary.groupdict().items()},
        "results block": {key: int(value.replace(",", "")) for key, value in results.groupdict().items()},
        "/ws/stats": out.web["ws_stats"]["aggregate"]["totals"],
        "/ws/metrics": _metrics_totals(out.web["metrics"]),
        "_websocket.csv": _ints(out.csv("websocket")[0]),
        "_websocket_history.csv": _ints(out.csv("websocket_history")[-1]),
    }
    for where, counters in views.items():
        # What the server counted, exactly.
        expected = {
            "messages_sent": truth["messages_received"] + never_reached_the_server,
            "messages_received": truth["messages_sent"],
            "connects_succeeded": truth["connections_accepted"],
            "connects_failed": truth["handshakes_refused"],
            "replies_in_flight_at_stop": 0,
        }
        if "bytes_sent" in counters:
            frame = truth["bytes_received"] // truth["messages_received"]  # every message the same length
            expected |= {
                "bytes_sent": truth["bytes_received"] + never_reached_the_server * frame,
                "bytes_received": truth["bytes_sent"],
            }
        if "closed" in counters:
            expected["closed"] = truth["connections_closed"] - counters["disconnects"]
        seen = {key: counters[key] for key in expected if key in counters}
        assert seen == {key: expected[key] for key in seen}, (where, seen, truth)
    assert views["/ws/stats"]["errors"] == sum(int(row["count"]) for row in out.csv("websocket_errors"))
    totals = views["/ws/stats"]

    # Locust's statistics, in each output that shows them: one echo request per message sent
    # (answered, or failed as lost or timed out), one connect or reconnect per attempt.
    echoes = totals["messages_sent"]
    echo_failures = totals["replies_lost"] + totals["replies_timed_out"]
    connects = (truth["connections_accepted"] + truth["handshakes_refused"], truth["handshakes_refused"])
    table, console_errors = console_counts(out.stderr)
    html, html_errors = html_counts(out.folder / "run.html")
    locust_views: dict[str, Counts] = {
        "console table": table,
        "--json": entries_counts(list(master_json_stats(out.stdout).values())),
        "--html": html,
        "/stats/requests": entries_counts(out.web["requests"]["stats"]),
        "_stats.csv": {
            row["Name"]: (int(row["Request Count"]), int(row["Failure Count"]))
            for row in out.csv("stats")
            if row["Name"] != "Aggregated"
        },
    }
    failures_csv: Counter[str] = Counter()
    for row in out.csv("failures"):
        failures_csv[row["Name"]] += int(row["Occurrences"])
    disconnects = totals["disconnects"]
    for where, counts in locust_views.items():
        echo = counts.get("echo", (0, 0))
        connect = tuple(map(sum, zip(counts.get("connect", (0, 0)), counts.get("reconnect", (0, 0)))))
        assert echo == (echoes, echo_failures), (where, counts, totals, truth)
        assert connect == connects, (where, counts, truth)
        assert counts.get("disconnect", (0, 0)) == (disconnects, disconnects), (where, counts)
    for where, errors in {
        "console error report": console_errors,
        "--html": html_errors,
        "_failures.csv": failures_csv,
    }.items():
        assert errors == Counter({name: failures for name, (_, failures) in table.items() if failures}), (where, errors)
    # The history's last row is the final total.
    [last] = [row for row in out.csv("stats_history")[-1:] if row["Name"] == "Aggregated"]
    total = sum(requests for requests, _ in table.values()), sum(failures for _, failures in table.values())
    assert (int(last["Total Request Count"]), int(last["Total Failure Count"])) == total


def _metrics_totals(text: str) -> dict[str, int]:
    totals: Counter[str] = Counter()
    for metric in _METRIC.finditer(text):
        totals[metric["name"]] += int(float(metric["value"]))
    return dict(totals)


def _ints(row: dict[str, str]) -> dict[str, int]:
    return {key: int(value) for key, value in row.items() if value.isdigit()}


# The runs ------------------------------------------------------------------------------------


ECHO = {"message_interval": 0.2}


def test_every_output_agrees_with_the_server_in_an_echo_run(tmp_path):
    with run_server_process() as server:
        out = run_and_read(tmp_path, server, ECHO)
    assert out.server["messages_received"] > 100
    assert_every_output_agrees_with_the_server(out)


def test_every_output_agrees_with_the_server_with_churn(tmp_path):
    with run_server_process() as server:
        out = run_and_read(tmp_path, server, {**ECHO, "connection_lifetime": 1.0})
    assert out.server["connections_accepted"] > 20  # each user reconnected several times
    assert_every_output_agrees_with_the_server(out)


def test_every_output_agrees_with_the_server_while_it_closes_and_refuses_connections(tmp_path):
    # Error recovery: every connection is closed by the server after 5 messages (its last replies
    # lost), and a quarter of the upgrades are refused with 503; the users reconnect.
    with run_server_process("--close-after", "5", "--refuse-fraction", "0.25") as server:
        out = run_and_read(tmp_path, server, {**ECHO, "reconnect_delay": 0.1, "max_reconnect_attempts": 100})
    assert out.server["handshakes_refused"] > 0 and out.server["connections_accepted"] > 20, out.server
    assert_every_output_agrees_with_the_server(out)


def test_every_output_agrees_with_the_server_with_a_master_and_two_workers(tmp_path):
    with run_server_process() as server:
        out = run_and_read(tmp_path, server, ECHO, workers=2)
    assert out.server["messages_received"] > 100
    assert_every_output_agrees_with_the_server(out)


class KilledAndRestarted:
    """
    A reference server killed (SIGKILL) in the middle of a run and started again on its port: the
    truth is what the first one counted until it died plus what the second one counted.

    The first server's counters die with it, so they are read just before: with the Locust process
    stopped (SIGSTOP), once they no longer change (the server has read and answered everything the users
    sent). Its second life starts before Locust resumes, so the users find the server gone (every
    connection lost, its replies all delivered) and reconnect at once.
    """

    def __init__(self, first: ServerProcess) -> None:
        self.first = first
        self.second: ServerProcess | None = None
        self.at_death: dict[str, float] = {}
        self._last_read: dict[str, float] | None = None

    @property
    def url(self) -> str:
        return self.first.url

    def kill_and_restart(self, locust: LocustProcess) -> None:
        wait_for(
            lambda: self.first.stats()["messages_received"] >= 50, timeout=10, processes=[locust]
        )  # every user connected and echoing
        os.killpg(locust.popen.pid, signal.SIGSTOP)
        try:
            self.at_death = wait_for(self._settled, timeout=10, interval=0.1, message="the server's final counts")
            # What the kill closes: every connection still open, as the second server's count of the closes.
            self.at_death["connections_closed"] += self.at_death["connections_open"]
            self.at_death["connections_open"] = 0
            self.first.process.kill()
            self.first.wait()
            self.second = ServerProcess(["--port", str(self.first.port)])
            self.second.wait_listening()
        finally:
            os.killpg(locust.popen.pid, signal.SIGCONT)

    def _settled(self) -> dict[str, float] | None:
        """The first server's counters once two reads in a row agree."""
        now = {key: value for key, value in self.first.stats().items() if key not in ("uptime_s", "pid")}
        settled, self._last_read = now == self._last_read, now
        return now if settled else None

    def stats(self) -> dict[str, float]:
        assert self.second is not None, "the server was not restarted"
        return {key: value + self.at_death.get(key, 0) for key, value in self.second.stats().items()}

    def stop(self) -> None:
        for server in (self.first, self.second):
            if server is not None:
                server.stop()


@contextmanager
def killed_and_restarted_server() -> Iterator[KilledAndRestarted]:
    server = KilledAndRestarted(ServerProcess(["--port", "0"]))
    try:
        server.first.wait_listening()
        yield server
    finally:
        server.stop()


def test_every_output_agrees_with_the_server_killed_and_restarted_under_the_run(tmp_path):
    with killed_and_restarted_server() as server:
        out = run_and_read(
            tmp_path,
            server,
            {**ECHO, "reconnect_delay": 0.1, "max_reconnect_attempts": 100},
            run_time=6,
            during=server.kill_and_restart,
        )
    assert server.at_death["connections_closed"] == 10, server.at_death  # every user lost its connection once
    assert out.server["connections_accepted"] == 20, out.server  # and reconnected once
    # Everything the first server read it had answered when it died; what a user wrote after that (at
    # most one message each, its next tick on resuming, before it read the end of the connection) never
    # reached a server, and its reply is lost.
    lost = out.web["ws_stats"]["aggregate"]["totals"]["replies_lost"]
    assert lost <= 10, out.web["ws_stats"]["aggregate"]["totals"]
    assert_every_output_agrees_with_the_server(out, never_reached_the_server=lost)
