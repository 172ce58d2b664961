"""
Hostile servers (issue 13, "How to test it"): one real headless Locust run against the hand-written
servers of ``tests/hostile_servers.py`` (independent of ``tests/fault_servers.py``), one user per case:

- fragmented echoes with a ping between each two fragments (text and binary);
- a server quoting the whole request back, credentials and all, in a 403's reason phrase and body,
  and in close reasons: no secret (a class header's value, the URL's ``Basic`` token and its decoded
  password, a URL token percent-encoded and decoded) appears in the console, ``--csv``, ``--html``
  or ``--json``;
- a server that never answers the client's close: the run still ends within ``close_timeout`` and a
  margin;
- slowloris upgrades (the 101 dribbled a byte at a time): each attempt a connect timeout, within the
  connect timeout.

Each asserts exact counts against the server's own and exact categories; the run ends on time
without a traceback, and no process of the test survives it.
"""

from __future__ import annotations

import base64
import time
from collections import Counter
from dataclasses import dataclass

import pytest
from hostile_servers import HostileServer
from locust_process import LocustResult, run_locust
from run_outcome import TRACEBACK_SIGNS, error_report, leftover_descendants, stop_delay, summary

pytestmark = pytest.mark.slow

RUN_TIME = 4.0
START_AND_EXIT = 20.0
"""Seconds allowed on top of the run time for Locust to start and exit on a busy machine."""
CONNECT_TIMEOUT = 1.0
"""The slowloris user's connect timeout (its 101 would take 13 s at 0.1 s a byte)."""
NEVER_CLOSE_TIMEOUT = 1.0
"""The close_timeout of the user whose close the server never answers: the longest a stop may wait."""
MARGIN = 1.0
"""What a stop may take beyond the longest close_timeout, on a busy machine."""

# The secrets, each in every form in which it travels or may be quoted back.
USER, PASSWORD, PASSWORD_IN_URL = "user", "pa@ss-w0rd-77", "pa%40ss-w0rd-77"
TOKEN, TOKEN_IN_URL = "tok/en-val-99", "tok%2Fen-val-99"
HEADER_SECRET, COOKIE_SECRET = "hdr-secret-4242", "cookie-secret-31"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
SECRETS = (PASSWORD, PASSWORD_IN_URL, TOKEN, TOKEN_IN_URL, HEADER_SECRET, COOKIE_SECRET, BASIC)

LOCUSTFILE = """
from locust import constant, task

from wslocust import WebSocketUser

SECRET_HEADERS = {secret_headers!r}


class Fragments(WebSocketUser):
    fixed_count = 1
    host = "{fragments}"
    wait_time = constant(0.1)

    @task
    def text(self):
        self.echo(name="fragmented_text")

    @task
    def binary(self):
        self.echo(bytes(range(256)) * 4, name="fragmented_binary")


class QuoteReject(WebSocketUser):
    fixed_count = 1
    host = "{quote_reject}"
    headers = SECRET_HEADERS
    message_interval = 0.2
    reconnect_delay = reconnect_max_delay = 0.2
    max_reconnect_attempts = 1000


class QuoteClose(WebSocketUser):
    fixed_count = 1
    host = "{quote_close}"
    headers = SECRET_HEADERS
    message_interval = 0.1
    reconnect_delay = reconnect_max_delay = 0.1
    max_reconnect_attempts = 1000


class NeverClose(WebSocketUser):
    fixed_count = 1
    host = "{never_close}"
    close_timeout = {never_close_timeout}
    wait_time = constant(0.1)

    @task
    def echo_one(self):
        self.echo(name="never_closed")


class Slowloris(WebSocketUser):
    fixed_count = 1
    host = "{slowloris}"
    connect_timeout = {connect_timeout}
    close_timeout = 0.5
    message_interval = 0.2
    reconnect_delay = reconnect_max_delay = 0.05
    max_reconnect_attempts = 1000
"""
USERS = 5

QUOTE_TARGET = f"?token={TOKEN_IN_URL}"
REJECTED = "HandshakeError('server rejected the WebSocket upgrade: HTTP 403 "
CLOSED_1008 = "ConnectionClosedError('closed by server with code 1008 "
SLOWLORIS_TIMEOUT = f"ConnectTimeout('no connection within {CONNECT_TIMEOUT:g} s (connect timeout)')"
ABORTED = "ConnectAborted("


@dataclass
class HostileRun:
    result: LocustResult
    server: HostileServer
    outputs: dict[str, str]
    """Every output of the run by name: stdout (with --json), stderr (the console), each file it wrote."""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> HostileRun:
    since = time.time()
    folder = tmp_path_factory.mktemp("hostile")
    server = HostileServer()
    server.start()
    try:
        userinfo = f"{USER}:{PASSWORD_IN_URL}"
        locustfile = folder / "hostile.py"
        locustfile.write_text(
            LOCUSTFILE.format(
                secret_headers={"X-Api-Key": HEADER_SECRET, "Cookie": f"sid={COOKIE_SECRET}"},
                fragments=server.url("/fragments"),
                quote_reject=server.url("/quote-reject" + QUOTE_TARGET, userinfo),
                quote_close=server.url("/quote-close" + QUOTE_TARGET, userinfo),
                never_close=server.url("/never-close"),
                slowloris=server.url("/slowloris?interval=0.1"),
                never_close_timeout=NEVER_CLOSE_TIMEOUT,
                connect_timeout=CONNECT_TIMEOUT,
            )
        )
        result = run_locust(
            "-f", str(locustfile), "--headless", "-u", str(USERS), "-r", str(USERS), "-t", f"{RUN_TIME:g}s",
            "--stop-timeout", "5", "--json", "--csv", str(folder / "run"), "--html", str(folder / "report.html"),
            folder=folder, timeout=RUN_TIME + START_AND_EXIT,
        )  # fmt: skip
        # Every connection ended with the Locust process; let the handlers finish counting.
        assert server.wait_idle(10), "a connection to the hostile server outlived the locust process"
    finally:
        server.stop(timeout=1)
    assert not leftover_descendants(since)
    outputs = {"console (stderr)": result.stderr, "stdout (--json)": result.stdout}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in (".csv", ".html"):
            outputs[path.name] = path.read_text(errors="replace")
    return HostileRun(result, server, outputs)


def failures(result: LocustResult, name: str, start: str) -> int:
    """Occurrences of the failures of request ``name`` whose error starts with ``start``."""
    return sum(
        count
        for (request, error), count in error_report(result.stderr).items()
        if request == name and error.startswith(start)
    )


def test_fragmented_echoes_with_interleaved_pings_arrive_whole_and_every_ping_is_answered(hostile):
    counts, stats = hostile.server.counts("/fragments"), hostile.result.stats
    echoes = stats["fragmented_text"]["num_requests"] + stats["fragmented_binary"]["num_requests"]
    assert stats["fragmented_text"]["num_failures"] == stats["fragmented_binary"]["num_failures"] == 0
    assert counts["messages_received"] == counts["messages_sent"] == echoes >= 10, counts
    assert counts["pings_sent"] == 3 * echoes and counts["pongs_received"] == counts["pings_sent"], counts
    assert counts["pongs_unmatched"] == 0 and counts["connections"] == 1 and counts["client_close_1000"] == 1


def fragments_of(secret: str) -> list[str]:
    """What of ``secret`` must not show either: the whole, a start of 3+ characters cut short with "..."
    (a quote shortened before it was concealed), any 8 characters of it."""
    cut = [secret[:length] + ellipsis for length in range(3, len(secret)) for ellipsis in ("...", "…")]
    return [secret, *cut, *(secret[start : start + 8] for start in range(len(secret) - 7))]


def test_a_server_quoting_the_request_back_reaches_no_output_with_a_secret(hostile):
    leaks = {
        (name, fragment): text[max(0, text.index(fragment) - 100) : text.index(fragment) + 40]
        for name, text in hostile.outputs.items()
        for secret in SECRETS
        for fragment in fragments_of(secret)
        if fragment in text
    }
    assert not leaks, leaks
    # Every output was there to look at, and the quotes did reach it, concealed.
    assert {"report.html", "run_failures.csv", "run_stats.csv"} <= set(hostile.outputs), list(hostile.outputs)
    assert "WS" in hostile.outputs["stdout (--json)"]
    for name in ("console (stderr)", "run_failures.csv", "report.html"):
        assert (
            "Forbidden, you sent: GET /quote-reject?token=*** HTTP/1.1 | GET /quote-reject?token=***"
            in (hostile.outputs[name])
        ), name
        for concealed in ("X-Api-Key: ***", "Authorization: Basic ***", "basic credentials user:***", "password ***"):
            assert concealed in hostile.outputs[name], (name, concealed)


def test_quoted_back_rejections_and_closes_are_counted_once_each(hostile):
    result, server = hostile.result, hostile.server
    rejected, closes = server.counts("/quote-reject"), server.counts("/quote-close")
    assert rejected["rejected"] == rejected["connections"] >= 3, rejected
    attempts = failures(result, "connect", REJECTED) + failures(result, "reconnect", REJECTED)
    assert attempts == rejected["rejected"]
    assert closes["closes_sent"] == closes["close_answered"] >= 3, closes
    assert closes["connections"] - closes["closes_sent"] in (0, 1), closes  # the last one may be closed by the stop
    assert failures(result, "disconnect", CLOSED_1008) == closes["closes_sent"]
    # The one message on each connection was lost with it, and named the same way.
    assert failures(result, "echo", CLOSED_1008) == closes["messages_received"] == closes["closes_sent"]


def test_a_server_that_never_answers_the_close_delays_the_stop_only_by_close_timeout(hostile):
    result, server = hostile.result, hostile.server
    counts = server.counts("/never-close")
    assert counts["connections"] == counts["client_closes_ignored"] == 1, counts
    assert counts["messages_received"] == counts["messages_sent"] == result.stats["never_closed"]["num_requests"] > 5
    assert result.stats["never_closed"]["num_failures"] == 0
    # The client gave up waiting for the close reply after close_timeout, and dropped TCP.
    [waited] = server.close_wait
    assert NEVER_CLOSE_TIMEOUT - 0.2 <= waited <= NEVER_CLOSE_TIMEOUT + MARGIN, waited
    assert stop_delay(result.stderr) <= NEVER_CLOSE_TIMEOUT + MARGIN


def test_slowloris_upgrades_are_connect_timeouts_within_the_connect_timeout(hostile):
    result, server = hostile.result, hostile.server
    counts = server.counts("/slowloris")
    assert counts["upgrades_completed"] == 0 and counts["connections"] == counts["dropped_by_client"] >= 2, counts
    # Each upgrade dropped by the client at its connect timeout (within a byte's interval); the last
    # one, cut short by the stop, is an abort, not a timeout.
    timed_out = [held for held in server.held if held >= CONNECT_TIMEOUT - 0.15]
    assert all(held <= CONNECT_TIMEOUT + 0.5 for held in server.held), server.held
    timeouts = failures(result, "connect", SLOWLORIS_TIMEOUT) + failures(result, "reconnect", SLOWLORIS_TIMEOUT)
    aborted = failures(result, "connect", ABORTED) + failures(result, "reconnect", ABORTED)
    assert timeouts == len(timed_out) >= 2, (server.held, error_report(result.stderr))
    assert timeouts + aborted == counts["connections"], (server.held, error_report(result.stderr))


def test_every_failure_is_one_of_the_expected_categories_and_the_run_ends_on_time(hostile):
    result = hostile.result
    expected = {
        ("connect", REJECTED), ("reconnect", REJECTED), ("disconnect", CLOSED_1008), ("echo", CLOSED_1008),
        ("connect", SLOWLORIS_TIMEOUT), ("reconnect", SLOWLORIS_TIMEOUT), ("connect", ABORTED), ("reconnect", ABORTED),
    }  # fmt: skip
    unexpected = Counter(
        {
            (name, error): count
            for (name, error), count in error_report(result.stderr).items()
            if not any(name == want and error.startswith(start) for want, start in expected)
        }
    )
    assert not unexpected, unexpected
    s = summary(result.stderr)
    assert (s["timed_out"], s["in_flight"]) == (0, 0)
    assert result.returncode == 1, result.stderr[-3000:]  # failures were recorded
    assert result.elapsed < RUN_TIME + START_AND_EXIT
    assert stop_delay(result.stderr) <= NEVER_CLOSE_TIMEOUT + MARGIN
    for sign in TRACEBACK_SIGNS:
        assert sign not in result.stderr, result.stderr[-5000:]
