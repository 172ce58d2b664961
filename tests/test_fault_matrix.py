"""
The server-side fault matrix (issue 7): what a load test shows when the server misbehaves.

Each case is a row of :data:`CASES`: a misbehaving target of
``tests/fault_servers.py`` and the failures Locust must record for it. All
rows share one real headless ``locust`` run (one user per row), so the whole
matrix costs a single Locust start. The first ``n`` connections of a target
misbehave and later ones are correct, so every user also recovers, and each
failure count can be predicted exactly from the fake server's own counts.

Two faults need a run of their own: the reference server killed and
restarted, and a flood (it would starve the other rows' timers).

What is asserted, for every run: the process exits by itself in time, with
the expected exit code and no traceback or unhandled greenlet exception; each
failure is recorded once per occurrence with a categorised request name and a
one-line message naming the cause, blaming the side that closed; connection attempts =
successes + failures; messages sent = echoed + timed out + lost on close + in flight at
stop, and every failed echo is one timed out or lost (a periodic message that meets a
closing connection is not sent, and not a failure: the connection's end is); and all of
it matches what the server counted. Every row sends periodic messages, so that ticks meet
connections that are closing (close frame in, TCP not yet ended).
"""

from __future__ import annotations

import ast
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fault_servers import FaultServer
from helpers import ServerProcess, free_port, wait_for
from locust_process import LocustProcess, master_json_stats

pytestmark = pytest.mark.slow

# The table ---------------------------------------------------------------------------

FAULTS = "faults"
"""Count source: one failure per faulty connection (the fake server's ``faults`` counter)."""
UNANSWERED = "unanswered"
"""Count source: one failure per message the faulty connections received and never answered."""
UNANSWERED_IF_ANY = "unanswered, if any"
"""Count source: as :data:`UNANSWERED`, but the row may have none: a tick that fell between the upgrade and
the read of a close frame sent right after it is an echo lost on that close, and one that did not is none."""
TIMED_OUT = "timed out"
"""Count source: the target's unanswered messages, but for those still in flight at stop (a range per row)."""

LOST = "ConnectionClosedError('connection lost without a close frame (1006)')"


def rejected(status: int, phrase: str, body_line: str = "not a WebSocket endpoint") -> tuple[tuple[str, str, str], ...]:
    """One failed ``connect`` per faulty connection, quoting the status and the first line of the body."""
    message = f"server rejected the WebSocket upgrade: HTTP {status} {phrase} ({body_line})"
    return (("connect", f"HandshakeError({message!r})", FAULTS),)


def lost_on_close(error: str) -> tuple[tuple[str, str, str], ...]:
    """The connection is lost (one ``disconnect``) and so is the reply to every message on it (``echo``)."""
    return (("disconnect", error, FAULTS), ("echo", error, UNANSWERED))


@dataclass(frozen=True)
class Case:
    id: str
    target: str
    """Path and query on the fault server; ``n=N``: the first N connections misbehave."""
    settings: dict[str, Any]
    """WebSocketUser attributes over :data:`BASE_SETTINGS`."""
    failures: tuple[tuple[str, str, str], ...]
    """(request name, the error as Locust records it, count source)."""
    client_close: int | None = None
    """The close code the client must send on each faulty connection (the server records it)."""
    faulty: int = 2
    """Connections that misbehave; 0: all, for as long as the run lasts."""
    extra: dict[str, int] = field(default_factory=dict)
    """Other fake-server counters of the target and the value they must have."""


BASE_SETTINGS: dict[str, Any] = {
    "fixed_count": 1,
    "message_interval": 0.2,
    "reconnect_delay": 0.05,
    "max_reconnect_attempts": 5,
    "connect_timeout": 1.0,
    "close_timeout": 1.0,
}

# fmt: off
CASES = [
    # Upgrade: the first two attempts fail, the third succeeds (all three are "connect").
    Case("no answer to the upgrade", "/silent?n=2", {"connect_timeout": 0.5},
         (("connect", "ConnectTimeout('no connection within 0.5 s (connect timeout)')", FAULTS),)),
    Case("upgrade answered 200", "/status/200?n=2", {}, rejected(200, "OK")),
    Case("upgrade answered 403", "/status/403?n=2", {}, rejected(403, "Forbidden")),
    Case("upgrade answered 404", "/status/404?n=2", {}, rejected(404, "Not Found")),
    Case("upgrade answered 500", "/status/500?n=2", {}, rejected(500, "Internal Server Error")),
    Case("upgrade answered 503", "/status/503?n=2", {}, rejected(503, "Service Unavailable")),
    # The reason is in the body (issue 13): read past the head as far as Content-Length says, never longer
    # than the connect timeout, its first line that is not the status quoted.
    Case("400, the reason in the body", "/reject/subprotocol?n=2", {},
         rejected(400, "Bad Request", "Failed to open a WebSocket connection: missing Sec-WebSocket-Protocol header.")),
    Case("400, an HTML error page", "/reject/html?n=2", {},
         rejected(400, "Bad Request", "No required SSL certificate was sent")),
    Case("400, a chunked body", "/reject/chunked?n=2", {}, rejected(400, "Bad Request", "compression is not supported")),
    Case("400, a body shorter than its Content-Length", "/reject/short?n=2", {"connect_timeout": 0.5},
         rejected(400, "Bad Request", "upgrade refused: too many")),
    Case("wrong Sec-WebSocket-Accept", "/bad-accept?n=2", {},
         (("connect", "HandshakeError('wrong Sec-WebSocket-Accept')", FAULTS),)),
    # Closes by the server, on the first message of the connection.
    Case("server closes 1000", "/close/1000?n=2", {},
         lost_on_close("ConnectionClosedOK('closed by server with code 1000 (fault 1000)')"), client_close=1000),
    Case("server closes 1001", "/close/1001?n=2", {},
         lost_on_close("ConnectionClosedOK('closed by server with code 1001 (fault 1001)')"), client_close=1001),
    Case("server closes 1008", "/close/1008?n=2", {},
         lost_on_close("ConnectionClosedError('closed by server with code 1008 (fault 1008)')"), client_close=1008),
    Case("server closes 1011", "/close/1011?n=2", {},
         lost_on_close("ConnectionClosedError('closed by server with code 1011 (fault 1011)')"), client_close=1011),
    Case("server closes 4000", "/close/4000?n=2", {},
         lost_on_close("ConnectionClosedError('closed by server with code 4000 (fault 4000)')"), client_close=4000),
    Case("server drops TCP without a close frame", "/close/1006?n=2", {}, lost_on_close(LOST)),
    # Ticks meet the closing connection for close_timeout: messages not sent, not failures.
    Case("close frame, then TCP kept open", "/close-keep-tcp?n=1", {"message_interval": 0.1},
         (("disconnect", "ConnectionClosedOK('closed by server with code 1000 (fault keep-tcp)')", FAULTS),
          ("echo", "ConnectionClosedOK('closed by server with code 1000 (fault keep-tcp)')", UNANSWERED_IF_ANY)),
         client_close=1000, faulty=1),
    # Malformed frames, in answer to the first message: the client fails the connection.
    Case("reserved opcode", "/frame/reserved-opcode?n=2", {},
         lost_on_close("ConnectionFailed('protocol error: reserved opcode (1002)')"), client_close=1002),
    Case("reserved bits set", "/frame/reserved-bits?n=2", {},
         lost_on_close("ConnectionFailed('protocol error: reserved bits must be 0 (1002)')"), client_close=1002),
    Case("control frame over 125 bytes", "/frame/control-too-long?n=2", {},
         lost_on_close("ConnectionFailed('protocol error: control frame too long (1002)')"), client_close=1002),
    Case("masked frame from the server", "/frame/masked?n=2", {},
         lost_on_close("ConnectionFailed('protocol error: masked frame from server (1002)')"), client_close=1002),
    # The client failed the connection and waits for TCP's end: each one failure, the client's, not a storm
    # of "closed by server with code 1002" (issue 13's 36 failures for 2 messages sent).
    Case("masked frame, then TCP kept open", "/frame/masked?n=2&keep_tcp=1", {"message_interval": 0.1},
         lost_on_close("ConnectionFailed('protocol error: masked frame from server (1002)')"), client_close=1002),
    Case("64-bit length with the top bit set", "/frame/length-msb?n=2", {},
         lost_on_close("ConnectionFailed('protocol error: invalid frame length (1002)')"), client_close=1002),
    Case("invalid UTF-8 in a text frame", "/frame/invalid-utf8?n=2", {},
         lost_on_close("ConnectionFailed('protocol error: invalid UTF-8 in text message (1007)')"), client_close=1007),
    Case("length lie: truncated frame, then EOF", "/frame/truncated?n=2", {}, lost_on_close(LOST)),
    Case("message over max_message_size", "/frame/oversized?n=2&size=1001",
         {"max_message_size": 1000},
         lost_on_close("ConnectionFailed('message too big: over the 1,000-byte max_message_size (1009)')"),
         client_close=1009),
    Case("fragments over max_message_size", "/frame/oversized-fragments?n=2&size=2000",
         {"max_message_size": 2000},
         lost_on_close("ConnectionFailed('message too big: over the 2,000-byte max_message_size (1009)')"),
         client_close=1009),
    # Valid, if unusual: every echo comes in three fragments with a ping in between.
    Case("fragments with an interleaved ping", "/fragmented-ping", {}, (), faulty=0,
         extra={"connections": 1, "unexpected_pongs": 0}),
    # Timeouts.
    Case("half-open, found by ping", "/half-open?n=2",
         {"message_interval": 0, "ping_interval": 0.2, "ping_timeout": 0.4},
         (("ping", "PingTimeout('no pong within 0.4 s')", FAULTS), ("disconnect", LOST, FAULTS))),
    Case("half-open, echoes time out", "/half-open",
         {"reply_timeout": 0.4, "message_interval": 0.15, "close_timeout": 0.3},
         (("echo", "ReceiveTimeout('no reply within 0.4 s')", TIMED_OUT),), faulty=0, extra={"connections": 1}),
    Case("slow server: 1.5 s per reply", "/slow?delay=1.5",
         {"reply_timeout": 0.5, "message_interval": 0.3, "close_timeout": 0.3},
         (("echo", "ReceiveTimeout('no reply within 0.5 s')", TIMED_OUT),), faulty=0, extra={"connections": 1}),
]
# fmt: on

RUN_TIME = 5.0
STOP_TIMEOUT = 2.0
START_AND_EXIT = 12.0
"""Seconds allowed on top of -t and --stop-timeout for the process to start and exit on a busy machine."""

ROUND_TRIPS = ("echo",)

# Running Locust ------------------------------------------------------------------------


def class_name(case_id: str) -> str:
    return "Case" + "".join(word.capitalize() for word in re.findall(r"[A-Za-z0-9]+", case_id))


def write_locustfile(path: Path, classes: dict[str, dict[str, Any]]) -> Path:
    """A locustfile with one WebSocketUser subclass per entry: class name -> attributes."""
    lines = ["from wslocust import WebSocketUser", ""]
    for name, attributes in classes.items():
        lines += ["", f"class {name}(WebSocketUser):"]
        lines += [f"    {key} = {value!r}" for key, value in attributes.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class LocustResult:
    returncode: int
    elapsed: float
    stdout: str
    stderr: str
    failures: Counter[tuple[str, str]]
    """Occurrences by (request name, error), from Locust's final error report. (Not from the
    --csv failures file: Locust rewrites it once a second and not at exit, so it misses the
    last second.)"""
    stats: dict[str, dict]
    """Locust's --json entries by request name."""
    summary: dict[str, int]
    """The "WebSocket summary:" line."""
    users_closed: int
    users_gave_up: int
    peak_rss: int
    """Highest resident set size of the Locust process seen while it ran, in bytes."""

    def requests(self, name: str) -> tuple[int, int]:
        entry = self.stats.get(name, {"num_requests": 0, "num_failures": 0})
        return entry["num_requests"], entry["num_failures"]


_SUMMARY = re.compile(
    r"WebSocket summary: (?P<connects>\d+) connects \((?P<failed>\d+) failed, (?P<reconnects>\d+) reconnects, "
    r"(?P<disconnects>\d+) disconnects\), (?P<sent>\d+) messages sent, (?P<received>\d+) received "
    r"\((?P<unsolicited>\d+) unsolicited\), \d+ bytes sent, \d+ received, (?P<timed_out>\d+) replies timed out, "
    r"(?P<lost>\d+) lost, (?P<in_flight>\d+) in flight at stop, (?P<late>\d+) late, (?P<duplicated>\d+) duplicated, "
    r"(?P<out_of_order>\d+) out of order"
)
_ERROR_REPORT_LINE = re.compile(r"^(?P<occurrences>\d+) +WS (?P<name>\w+): (?P<error>.+?) *$", re.MULTILINE)
_USERS = re.compile(r"(?P<closed>[\d,]+) closed, (?P<gave_up>[\d,]+) users gave up")


class LocustRun:
    """A headless ``locust`` subprocess, started at once and waited for later."""

    def __init__(self, locustfile: Path, users: int, run_time: float, *, stop_timeout: float = STOP_TIMEOUT) -> None:
        self.limit = run_time + stop_timeout + START_AND_EXIT
        self.process = LocustProcess(
            "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users), "-t", f"{run_time:g}s",
            "--stop-timeout", f"{stop_timeout:g}", "--json", "--only-summary", folder=locustfile.parent,
        )  # fmt: skip
        self.started = self.process.started

    def wait(self) -> LocustResult:
        """Wait for the process to exit by itself (kill it and fail after the time limit); sample its memory."""
        peak_rss = 0
        deadline = self.started + self.limit
        while self.process.running():
            if time.monotonic() > deadline:
                self.process.kill()
                pytest.fail(f"locust did not exit within {self.limit:g} s\n{self.process.stderr[-3000:]}")
            peak_rss = max(peak_rss, _rss(self.process.pid))
            time.sleep(0.05)  # a memory sample every 50 ms while it runs
        elapsed = time.monotonic() - self.started
        stdout, stderr = self.process.stdout, self.process.stderr
        summary = _SUMMARY.search(stderr)
        users = _USERS.search(stderr)
        assert summary and users, stderr[-3000:]
        return LocustResult(
            returncode=self.process.returncode,
            elapsed=elapsed,
            stdout=stdout,
            stderr=stderr,
            failures=_error_report(stderr),
            stats=master_json_stats(stdout),
            summary={key: int(value) for key, value in summary.groupdict().items()},
            users_closed=int(users["closed"].replace(",", "")),
            users_gave_up=int(users["gave_up"].replace(",", "")),
            peak_rss=peak_rss,
        )


def _rss(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match[1]) * 1024 if match else 0


def _error_report(stderr: str) -> Counter[tuple[str, str]]:
    _, _, report = stderr.rpartition("\nError report\n")
    return Counter(
        {(line["name"], line["error"]): int(line["occurrences"]) for line in _ERROR_REPORT_LINE.finditer(report)}
    )


def message_of(error: str) -> str:
    """The message inside Locust's repr of an exception: ``Cls('text')`` -> ``text``."""
    return ast.literal_eval(error[error.index("(") :])


def assert_clean_exit(result: LocustResult, run_time: float, expected_code: int) -> None:
    assert result.returncode == expected_code, result.stderr[-3000:]
    assert result.elapsed < run_time + STOP_TIMEOUT + START_AND_EXIT
    for sign in ("Traceback", "Unhandled exception in greenlet", "Exception in thread", "/ERROR/", "/CRITICAL/"):
        assert sign not in result.stderr, result.stderr[-5000:]


def assert_messages_add_up(result: LocustResult) -> None:
    """Every message sent was echoed, timed out, lost on close or still in flight at stop."""
    s = result.summary
    echoed = sum(result.requests(name)[0] - result.requests(name)[1] for name in ROUND_TRIPS)
    assert s["sent"] == echoed + s["timed_out"] + s["lost"] + s["in_flight"], s
    # A message a closing connection refused was never sent: neither an echo nor a failure.
    assert sum(result.requests(name)[1] for name in ROUND_TRIPS) == s["timed_out"] + s["lost"], (s, result.stats)


def assert_attempts_add_up(result: LocustResult) -> None:
    attempts = sum(result.requests(name)[0] for name in ("connect", "reconnect"))
    failed = sum(result.requests(name)[1] for name in ("connect", "reconnect"))
    assert attempts == result.summary["connects"] + result.summary["failed"]
    assert failed == result.summary["failed"]
    assert result.requests("reconnect")[0] - result.requests("reconnect")[1] == result.summary["reconnects"]
    assert result.requests("disconnect") == (result.summary["disconnects"], result.summary["disconnects"])


# The matrix run ------------------------------------------------------------------------


@dataclass
class MatrixRun:
    result: LocustResult
    server: FaultServer


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> MatrixRun:
    folder = tmp_path_factory.mktemp("fault-matrix")
    server = FaultServer().start()
    try:
        classes = {
            class_name(case.id): {**BASE_SETTINGS, "host": server.url(case.target), **case.settings} for case in CASES
        }
        result = LocustRun(write_locustfile(folder / "faults.py", classes), len(CASES), RUN_TIME).wait()
        # Every connection ended once Locust exited; let the handlers finish counting.
        assert server.wait_idle(10), "a fault-server connection outlived the locust process"
    finally:
        server.stop()
    return MatrixRun(result, server)


def expected_counts(server: FaultServer) -> dict[tuple[str, str], int]:
    """Failures by (request, error) as the fake server's counts predict them (TIMED_OUT rows left out)."""
    expected: Counter[tuple[str, str]] = Counter()
    for case in CASES:
        for request, error, source in case.failures:
            if source != TIMED_OUT:
                counts = server.counts(case.target)
                expected[request, error] += counts["unanswered" if source == UNANSWERED_IF_ANY else source]
    return expected


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_fault_is_reported_once_per_occurrence_and_the_user_recovers(matrix, case):
    result, server = matrix.result, matrix.server
    counts = server.counts(case.target)
    if case.faulty:
        assert counts["faults"] == case.faulty, counts  # the fault happened as often as planned...
        # ... then one correct connection, held to the end and closed cleanly by the stopping user.
        assert counts["connections"] == case.faulty + 1, counts
        assert counts["client_close_1000"] == 1, counts
    else:
        assert counts["faults"] == counts["connections"] >= 1, counts
    for key, value in case.extra.items():
        assert counts[key] == value, counts
    expected = expected_counts(server)
    for request, error, source in case.failures:
        assert "\n" not in message_of(error)
        if source == TIMED_OUT:
            assert 1 <= result.failures[request, error] <= counts["messages_received"], (counts, result.failures)
        else:
            # Rows with the same (request, error) add up, e.g. every 1006.
            assert source == UNANSWERED_IF_ANY or counts[source] >= 1, counts
            assert result.failures[request, error] == expected[request, error], result.failures
    if case.client_close is not None:
        # The client told the server what went wrong, once per faulty connection.
        assert counts[f"fault_client_close_{case.client_close}"] == case.faulty, counts


def test_fragmented_echoes_with_interleaved_pings_are_accepted_and_the_pings_answered(matrix):
    counts = matrix.server.counts("/fragmented-ping")
    assert counts["messages_sent"] == counts["messages_received"] >= 5, counts
    assert counts["pongs_received"] == counts["pings_sent"] == counts["messages_sent"], counts


def test_the_matrix_run_ends_on_time_without_tracebacks_and_every_failure_is_in_the_table(matrix):
    result = matrix.result
    assert_clean_exit(result, RUN_TIME, expected_code=1)
    server = matrix.server
    table = {
        (request, error)
        for case in CASES
        for request, error, source in case.failures
        if source != UNANSWERED_IF_ANY or server.counts(case.target)["unanswered"]
    }
    assert set(result.failures) == table, set(result.failures) ^ table
    # Each failure is also categorised in the results block, e.g. "protocol error".
    errors = re.search(r"\n  errors +[\d,]+: (.*) \(error rate", result.stderr)
    assert errors, result.stderr[-3000:]
    for category in ("protocol error", "connect timeout", "upgrade rejected: HTTP 403", "no pong in time"):
        assert category in errors[1]


def test_connection_attempts_add_up_and_match_the_server(matrix):
    result, server = matrix.result, matrix.server
    assert_attempts_add_up(result)
    attempts = sum(result.requests(name)[0] for name in ("connect", "reconnect"))
    assert attempts == server.tcp_accepted
    assert result.summary["connects"] == server.total("upgrades")
    # Every disconnect was followed by one successful reconnect, and no user gave up.
    assert result.summary["reconnects"] == result.summary["disconnects"] > 0
    assert (result.users_closed, result.users_gave_up) == (len(CASES), 0)


def test_messages_add_up_and_match_the_server(matrix):
    result, server = matrix.result, matrix.server
    s = result.summary
    assert_messages_add_up(result)
    assert s["sent"] == server.total("messages_received")
    # The client reads everything the server wrote before its close frame.
    assert s["received"] == server.total("messages_sent")
    # Every echo the slow server sent came after its message had timed out, and was recognised as such.
    assert s["late"] == server.counts("/slow?delay=1.5")["messages_sent"] > 0
    assert (s["unsolicited"], s["duplicated"], s["out_of_order"]) == (0, 0, 0)


def test_unanswered_messages_timed_out_unless_in_flight_at_stop(matrix):
    result, server = matrix.result, matrix.server
    rows = [(case, failure) for case in CASES for failure in case.failures if failure[2] == TIMED_OUT]
    timed_out = sum(result.failures[request, error] for _, (request, error, _) in rows)
    received = sum(server.counts(case.target)["messages_received"] for case, _ in rows)
    # Nothing else is in flight at stop: correct connections are drained before they close.
    rows_seen = {case.id: dict(server.counts(case.target)) for case, _ in rows}
    assert timed_out + result.summary["in_flight"] == received, (result.summary, timed_out, rows_seen)
    assert timed_out == result.summary["timed_out"]


# Runs of their own -------------------------------------------------------------------


def test_server_killed_and_restarted_users_reconnect_and_every_loss_is_counted(tmp_path):
    # The suite's one run of a server killed and restarted under Locust.
    port = free_port()
    server = ServerProcess(["--port", str(port)])
    restarted = None
    try:
        server.wait_listening()
        locustfile = write_locustfile(
            tmp_path / "restart.py",
            {"Restarting": {**BASE_SETTINGS, "fixed_count": 5, "host": server.url, "message_interval": 0.1,
                            "reconnect_delay": 0.1, "reconnect_max_delay": 0.3, "max_reconnect_attempts": 100}},
        )  # fmt: skip
        run = LocustRun(locustfile, 5, run_time=7)
        wait_for(lambda: server.stats()["messages_received"] >= 50, timeout=20)
        assert server.stats()["connections_accepted"] == 5
        server.process.kill()
        server.wait()
        restarted = ServerProcess(["--port", str(port)])
        restarted.wait_listening()
        wait_for(lambda: restarted.stats()["connections_accepted"] == 5, timeout=10)
        result = run.wait()
        truth = restarted.stats()
    finally:
        for process in (server, restarted):
            if process is not None:
                process.stop()
    assert_clean_exit(result, 7, expected_code=1)
    assert_attempts_add_up(result)
    assert_messages_add_up(result)
    refused = f"ConnectionRefused('connection refused by 127.0.0.1:{port}')"
    assert result.requests("connect") == (5, 0)
    assert result.requests("reconnect") == (5 + result.failures["reconnect", refused], result.summary["failed"])
    assert result.summary["reconnects"] == truth["connections_accepted"] == 5
    assert result.failures["disconnect", LOST] == result.summary["disconnects"] == 5
    # Replies in flight when the server died are lost, each one failed once.
    assert result.failures["echo", LOST] == result.summary["lost"]
    assert set(result.failures) <= {("disconnect", LOST), ("echo", LOST), ("reconnect", refused)}
    assert truth["messages_received"] == truth["messages_sent"] <= result.summary["sent"]
    assert (result.users_closed, result.users_gave_up) == (5, 0)


def test_a_flooding_server_is_read_to_the_end_in_bounded_memory_and_the_run_stops_on_time(tmp_path):
    server = FaultServer().start()
    try:
        locustfile = write_locustfile(
            tmp_path / "flood.py",
            {"Flooded": {**BASE_SETTINGS, "fixed_count": 2, "host": server.url("/flood?size=64"),
                         "message_interval": 0}},
        )  # fmt: skip
        result = LocustRun(locustfile, 2, run_time=3).wait()
        assert server.wait_idle(10)
    finally:
        server.stop()
    counts = server.counts("/flood?size=64")
    assert_clean_exit(result, 3, expected_code=0)
    s = result.summary
    # Every message written before the server's close frame was read and counted: none dropped, none invented.
    assert s["received"] == s["unsolicited"] == counts["messages_sent"] > 20_000, (s, counts)
    assert (s["connects"], s["disconnects"], result.users_closed) == (2, 0, 2)
    assert counts["fault_client_close_1000"] == 2  # both users closed cleanly in the middle of the flood
    # Socket buffers bound what waits to be read: the peak stays near an idle run's (55 MB measured).
    assert 0 < result.peak_rss < 150 * 2**20, result.peak_rss


# The stop contract -------------------------------------------------------------------

_LOG_TIME = r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \S+/INFO/locust\.main: "


def stop_delay(stderr: str) -> float:
    """Seconds from Locust's "--run-time limit reached" to its "Shutting down": how long the users took to stop."""
    reached = re.search(_LOG_TIME + "--run-time limit reached", stderr)
    shutting_down = re.search(_LOG_TIME + "Shutting down", stderr)
    assert reached and shutting_down, stderr[-3000:]
    return _log_time(shutting_down[1]) - _log_time(reached[1])


def _log_time(text: str) -> float:
    return time.mktime(time.strptime(text[:19], "%Y-%m-%d %H:%M:%S")) + int(text[20:]) / 1000


def test_a_stop_waits_only_for_replies_in_flight_on_an_open_connection(tmp_path, unused_port):
    # One run, a user in each situation a stop can find; close_timeout is long, so that any
    # wait it should not bound shows. Old code: 3 s (an upgrade finishing at the stop closed a
    # connection nothing read, and waited for a close reply it could not see).
    close_timeout, run_time, upgrade_delay = 3.0, 2, 2.5
    server = FaultServer().start()
    refused = f"ws://127.0.0.1:{unused_port}/"
    common = {"close_timeout": close_timeout, "message_interval": 0.2, "fixed_count": 1}
    in_backoff = {**common, "host": refused, "reconnect_delay": 10.0}
    classes = {
        "TaskUserInBackoff": in_backoff,  # connection refused, waiting 5-10 s to retry
        "UserInBackoff": in_backoff,
        # The upgrade is under way at the stop: it finishes 0.5 s later, then the connection closes at once.
        "TaskUserUpgrading": {**common, "host": server.url(f"/slow-upgrade?delay={upgrade_delay}&user=1")},
        "UserUpgrading": {**common, "host": server.url(f"/slow-upgrade?delay={upgrade_delay}&user=2")},
        # Its connection was closed by the server (counted lost): waiting to reconnect, not "closed" at the stop.
        "UserLost": {**common, "host": server.url("/close/1000"), "reconnect_delay": 10.0},
        # Replies in flight at the stop (0.5 s each): waited for and counted.
        "UserDraining": {**common, "host": server.url("/slow?delay=0.5")},
    }
    lines = ["from locust import constant, task", "", "from wslocust import WebSocketUser", ""]
    for name, attributes in classes.items():
        lines += ["", f"class {name}(WebSocketUser):", *(f"    {key} = {value!r}" for key, value in attributes.items())]
        if name.startswith("Task"):
            lines += [
                "    wait_time = constant(0.2)",
                "",
                "    @task",
                "    def echo_one(self):",
                "        self.echo()",
            ]
    (tmp_path / "stops.py").write_text("\n".join(lines) + "\n")
    try:
        result = LocustRun(tmp_path / "stops.py", len(classes), run_time, stop_timeout=10).wait()
        assert server.wait_idle(10)
    finally:
        server.stop()
    assert_clean_exit(result, run_time, expected_code=1)
    delay = stop_delay(result.stderr)
    assert delay < upgrade_delay - run_time + 1.0 < close_timeout, (delay, result.stderr[-3000:])
    s = result.summary
    # Every connection counted once: lost (1) or closed by the stop (2 upgraded at the stop, 1 draining).
    assert (s["connects"], s["failed"], s["disconnects"], result.users_closed) == (4, 2, 1, 3), s
    for user in (1, 2):
        assert server.counts(f"/slow-upgrade?delay={upgrade_delay}&user={user}")["client_close_1000"] == 1
    draining = server.counts("/slow?delay=0.5")
    # Everything in flight at the stop came back and was counted: nothing left "in flight at stop".
    assert s["in_flight"] == 0 and draining["messages_received"] >= 2, (s, draining)
    assert s["received"] == server.total("messages_sent") and s["sent"] == server.total("messages_received")
    assert_messages_add_up(result)
    assert_attempts_add_up(result)


CUT_CLOSE = """
import gevent
from locust import constant, task

from wslocust import WebSocketUser


class Tasked(WebSocketUser):
    host = HOST
    close_timeout = 30  # the server never answers the close: this would be the wait
    wait_time = constant(0)

    @task
    def busy(self):
        gevent.sleep(0.5)  # in a task at the stop: Locust waits --stop-timeout for it, then kills the user
"""


def test_a_close_that_locust_cuts_short_at_the_stop_timeout_still_counts_as_closed(tmp_path):
    # Locust lets the users finish their task, then kills them at --stop-timeout (1 s): here half-way through
    # the close, whose answer never comes. Their connections are still the users' own closes (TCP dropped),
    # counted once each, not lost from the totals.
    server = FaultServer().start()
    try:
        locustfile = tmp_path / "cut_close.py"
        locustfile.write_text(f"HOST = {server.url('/half-open')!r}\n" + CUT_CLOSE)
        result = LocustRun(locustfile, 3, run_time=2, stop_timeout=1).wait()
    finally:
        server.stop()
    assert_clean_exit(result, 2, expected_code=0)
    s = result.summary
    assert (s["connects"], s["disconnects"], result.users_closed) == (3, 0, 3), result.stderr[-3000:]
