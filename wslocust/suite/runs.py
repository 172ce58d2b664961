"""
One scenario of ``wslocust suite``: a real ``locust --headless`` process, and what it left behind.

The run is a process of its own in a session of its own (:func:`run_scenario`), so that it and every worker it
forks (``--processes``) form one process group, stopped together when the deadline passes or the suite is
interrupted. Its outputs go to files of the report folder, named after the scenario:

- ``NAME.log``: its console (Locust's tables, the WebSocket results, the thresholds' table, its log);
- ``NAME.json``: Locust's ``--json`` statistics (with workers, each forked worker prints an empty list too);
- ``NAME.html``: Locust's ``--html`` report;
- ``NAME_stats.csv`` ... and ``NAME_websocket.csv`` ...: Locust's and wslocust's ``--csv`` files.

:func:`read_outcome` reads them back: the requests' counts and percentiles from the JSON, the WebSocket ``All``
row from the CSV, and the thresholds' verdicts and the error-recovery line from the log.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "STOP_GRACE",
    "Outcome",
    "RequestFigures",
    "Settings",
    "figures_summary",
    "locust_command",
    "read_outcome",
    "run_scenario",
]

STOP_GRACE = 10.0
"""Seconds a run past its deadline is given to write its reports after SIGTERM, before its group is killed."""

_THRESHOLD_ROW = re.compile(r"^  (?P<text>\S.*?)\s{2,}(?P<value>\S.*?)  (?P<result>pass|FAIL)$")
_RECOVERY = re.compile(r"error recovery: (\d+ of \d+ connections back .*|the run ended before .*|no fault injected: .*)$")
_SHUT_DOWN = "Shutting down (exit code"


@dataclass(frozen=True)
class Settings:
    """What every scenario of one suite run shares."""

    locustfiles: Path
    report_dir: Path
    host: str | None
    """The target; None: each run starts the embedded reference server (on a free port)."""
    time_scale: float
    processes: int | None
    connections: int | None
    extra: tuple[str, ...] = ()
    """More Locust arguments, given to every run."""


@dataclass(frozen=True)
class RequestFigures:
    """One request name of a run (Locust's ``--json`` entry)."""

    count: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    """Milliseconds; None when none was timed."""


@dataclass
class Outcome:
    """What one scenario's run left behind."""

    exit_code: int | None
    """None: it did not end by its deadline and was stopped."""
    seconds: float
    started: bool = False
    """It got past its start: Locust logged its shutdown (a run refused at start does not)."""
    requests: dict[str, RequestFigures] = field(default_factory=dict)
    thresholds: list[tuple[str, str, bool]] = field(default_factory=list)
    """(threshold, value, passed), as its table printed them."""
    websocket: dict[str, str] = field(default_factory=dict)
    """The ``All`` row of ``NAME_websocket.csv``."""
    recovery: str | None = None
    """Its error-recovery line: ``N of N connections back X s after the server came back (...)``, or why there was no fault."""
    last_lines: list[str] = field(default_factory=list)
    """The end of its log, to show why it failed."""


def locust_command(scenario_file: Path, name: str, settings: Settings, time_scale: float, thresholds: str) -> list[str]:
    """The command line of one scenario's run (its outputs named after ``name`` in the report folder)."""
    prefix = settings.report_dir / name
    command = [sys.executable, "-m", "locust", "-f", os.fspath(scenario_file), "--headless", "--only-summary"]
    command += ["--json", "--csv", os.fspath(prefix), "--html", f"{prefix}.html"]
    command += ["--ws-time-scale", f"{time_scale:g}", "--ws-thresholds", thresholds]
    if settings.host is None:
        command += ["--ws-embedded-port", "0"]  # a free port: a demo may hold 3003, and runs follow each other
    else:
        command += ["--host", settings.host]
    if settings.processes:
        port = str(_free_port())  # the forked workers' master, not Locust's 5557 that another run may hold
        command += ["--processes", str(settings.processes), "--master-bind-port", port, "--master-port", port]
    if settings.connections:
        command += ["--ws-target-connections", str(settings.connections)]
    return [*command, *settings.extra]


def run_scenario(command: list[str], name: str, report_dir: Path, timeout: float) -> Outcome:
    """
    Run ``command`` in a session of its own, its stdout in ``NAME.json`` and its stderr in ``NAME.log``; wait
    until it ends, at most ``timeout`` seconds (then SIGTERM, and :data:`STOP_GRACE` later SIGKILL), and kill
    whatever of its process group is left. An interrupt (Ctrl-C, SIGTERM) stops the group too, then goes on up.
    """
    started = time.monotonic()
    with open(report_dir / f"{name}.json", "wb") as stdout, open(report_dir / f"{name}.log", "wb") as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True
        )
    exit_code: int | None = None
    try:
        exit_code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_GRACE)
    finally:
        _signal_group(process.pid, signal.SIGKILL)  # a worker that outlived its master, or all of it
        process.wait()
    return read_outcome(report_dir, name, exit_code, time.monotonic() - started)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Reading a run's outputs ------------------------------------------------------------------------------


def read_outcome(report_dir: Path, name: str, exit_code: int | None, seconds: float) -> Outcome:
    """What the run of scenario ``name`` left in ``report_dir``; whatever is missing stays empty."""
    log = _read_text(report_dir / f"{name}.log").splitlines()
    outcome = Outcome(exit_code, seconds, started=any(_SHUT_DOWN in line for line in log))
    outcome.requests = _requests(_read_text(report_dir / f"{name}.json"))
    outcome.websocket = _all_row(report_dir / f"{name}_websocket.csv")
    outcome.thresholds = _thresholds(log)
    for line in log:
        match = _RECOVERY.search(line)
        if match is not None:
            outcome.recovery = match[1]
    outcome.last_lines = [line for line in log if line.strip()][-8:]
    return outcome


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _requests(text: str) -> dict[str, RequestFigures]:
    # With --processes each forked worker prints its own (empty) list: the master's is the one with entries.
    decoder, index, entries = json.JSONDecoder(), 0, []
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        try:
            document, index = decoder.raw_decode(text, index)
        except ValueError:
            break  # not JSON: something else wrote to stdout
        if isinstance(document, list) and document:
            entries = document
    figures = {}
    for entry in entries:
        times = {float(key): count for key, count in (entry.get("response_times") or {}).items()}
        figures[str(entry.get("name"))] = RequestFigures(
            count=int(entry.get("num_requests", 0)),
            failures=int(entry.get("num_failures", 0)),
            p50=_percentile(times, 0.50),
            p95=_percentile(times, 0.95),
            p99=_percentile(times, 0.99),
        )
    return figures


def _percentile(times: dict[float, int], fraction: float) -> float | None:
    """Locust's percentile of bucketed response times (``calculate_response_time_percentile``)."""
    total = sum(times.values())
    if not total:
        return None
    below = int(total * fraction)
    seen = 0
    for value in sorted(times, reverse=True):
        seen += times[value]
        if total - seen <= below:
            return value
    return min(times)


def _all_row(path: Path) -> dict[str, str]:
    try:
        with open(path, newline="") as file:
            rows = list(csv.DictReader(file))
    except OSError:
        return {}
    return next((row for row in rows if row.get("node") == "All"), rows[0] if rows else {})


def _thresholds(log: list[str]) -> list[tuple[str, str, bool]]:
    """The rows of the last thresholds' table in the log (:func:`wslocust.reporting.thresholds.format_table`)."""
    starts = [number for number, line in enumerate(log) if line.strip() == "WebSocket thresholds"]
    if not starts:
        return []
    rows = []
    for line in log[starts[-1] + 1 :]:
        if not line.startswith("  "):
            break
        match = _THRESHOLD_ROW.match(line)
        if match is not None:
            rows.append((match["text"], match["value"], match["result"] == "pass"))
    return rows


def figures_summary(outcome: Outcome) -> dict[str, Any]:
    """The outcome's figures as plain data (``summary.json``)."""
    return {
        "requests": {name: vars(figures) for name, figures in outcome.requests.items()},
        "thresholds": [{"threshold": t, "value": v, "passed": ok} for t, v, ok in outcome.thresholds],
        "websocket": outcome.websocket,
        "recovery": outcome.recovery,
    }
