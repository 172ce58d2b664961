"""
Reading what a finished headless Locust run printed, for the interop and hostile-server suites
(``tests/test_interop.py``, ``tests/test_hostile_servers.py``): the WebSocket summary line, the error
report, how long the users took to stop, and whether any process the test started outlived it.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import psutil

__all__ = ["TRACEBACK_SIGNS", "error_report", "leftover_descendants", "stop_delay", "summary"]

_SUMMARY = re.compile(
    r"WebSocket summary: (?P<connects>\d+) connects \((?P<failed>\d+) failed, (?P<reconnects>\d+) reconnects, "
    r"(?P<disconnects>\d+) disconnects\), (?P<sent>\d+) messages sent, (?P<received>\d+) received "
    r"\((?P<unsolicited>\d+) unsolicited\), (?P<bytes_sent>\d+) bytes sent, (?P<bytes_received>\d+) received, "
    r"(?P<timed_out>\d+) replies timed out, (?P<lost>\d+) lost, (?P<in_flight>\d+) in flight at stop"
)
_ERROR_REPORT_LINE = re.compile(r"^(?P<occurrences>\d+) +WS (?P<name>\w+): (?P<error>.+?) *$", re.MULTILINE)
_LOG_TIME = r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \S+/INFO/locust\.main: "

TRACEBACK_SIGNS = ("Traceback", "Unhandled exception in greenlet", "Exception in thread", "/ERROR/", "/CRITICAL/")
"""What a run that ended cleanly never prints."""


def summary(stderr: str) -> dict[str, int]:
    """The figures of the "WebSocket summary:" line (connects, failed, ..., in_flight)."""
    match = _SUMMARY.search(stderr)
    assert match, stderr[-3000:]
    return {key: int(value) for key, value in match.groupdict().items()}


def error_report(stderr: str) -> Counter[tuple[str, str]]:
    """Occurrences by (request name, error) from Locust's final error report."""
    _, _, report = stderr.rpartition("\nError report\n")
    return Counter(
        {(line["name"], line["error"]): int(line["occurrences"]) for line in _ERROR_REPORT_LINE.finditer(report)}
    )


def stop_delay(stderr: str) -> float:
    """Seconds from Locust's "--run-time limit reached" to its "Shutting down": how long the users took to stop."""
    reached = re.search(_LOG_TIME + "--run-time limit reached", stderr)
    shutting_down = re.search(_LOG_TIME + "Shutting down", stderr)
    assert reached and shutting_down, stderr[-3000:]
    return _log_time(shutting_down[1]) - _log_time(reached[1])


def leftover_descendants(since: float) -> list[str]:
    """
    Processes descended from this one and started after ``since`` (``time.time()``) that still run
    (zombies left out): what a test that started them left behind.
    """
    leftovers = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.create_time() >= since - 1 and child.status() != psutil.STATUS_ZOMBIE:
                leftovers.append(f"{child.pid} {' '.join(child.cmdline())[:200]}")
        except psutil.Error:
            continue  # gone meanwhile
    return leftovers


def _log_time(text: str) -> float:
    return time.mktime(time.strptime(text[:19], "%Y-%m-%d %H:%M:%S")) + int(text[20:]) / 1000
