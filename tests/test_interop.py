"""
Interop: wslocust against real WebSocket servers from the package registries, their own counts as the
truth (issue 13, "How to test it").

Each server of ``tests/interop_servers/`` (Python ``websockets``, ``tornado``) runs as a subprocess
on 127.0.0.1, port 0, plain and TLS (a self-signed certificate made with ``openssl``), and prints what
it received, sent and pinged, by path, when it is stopped. One real headless Locust run per server
has one user per case, each on a path of its own: text and binary echoes of 64 B and 1 MiB, server
pushes, server pings, client pings, subprotocol negotiation and ``wss://`` with verification off.
Asserted: every count equals the server's own, the request names and failures are exactly the
expected ones (none), every connection was closed by the client with 1000, the run stops on time
and exits 0, and no process outlives the test.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import REPO_ROOT, subprocess_environment, wait_for
from locust_process import LocustResult, run_locust
from run_outcome import TRACEBACK_SIGNS, error_report, leftover_descendants, stop_delay, summary

from benchmarks.processes import CapturedProcess

pytestmark = pytest.mark.slow

SERVERS = Path(__file__).resolve().parent / "interop_servers"
RUN_TIME = 3.0
START_AND_EXIT = 20.0
"""Seconds allowed on top of the run time for Locust to start and exit on a busy machine."""
STOP_DELAY = 1.5
"""Seconds the users may take to stop (nothing is slow here: 1 MiB echoes take milliseconds)."""

MIB = 2**20
PUSHES, SERVER_PINGS, PING_INTERVAL = 20, 10, 0.2

HEADER = """
from locust import constant, task

from wslocust import WebSocketUser

PLAIN, TLS = "ws://127.0.0.1:{port}", "wss://127.0.0.1:{tls_port}"


class Echoes(WebSocketUser):
    abstract = True
    fixed_count = 1
    wait_time = constant(0.05)
"""

PLAIN_USERS = f'''

class Text64(WebSocketUser):
    """No tasks: the periodic 64-byte text messages, named "echo"."""
    fixed_count = 1
    host = PLAIN + "/text64"
    message_interval = 0.05


class Binary64(Echoes):
    host = PLAIN + "/binary64"

    @task
    def binary(self):
        self.echo(bytes(range(64)), name="binary64")


class Text1M(Echoes):
    host = PLAIN + "/text1m"

    @task
    def text(self):
        self.echo("x" * {MIB}, name="text1m")


class Binary1M(Echoes):
    host = PLAIN + "/binary1m"

    @task
    def binary(self):
        self.echo(bytes({MIB}), name="binary1m")


class Pushes(WebSocketUser):
    fixed_count = 1
    host = PLAIN + "/push?count={PUSHES}&interval=0.05"
    message_interval = 0


class ServerPings(WebSocketUser):
    fixed_count = 1
    host = PLAIN + "/server-ping?count={SERVER_PINGS}&interval=0.1"
    message_interval = 0


class ClientPings(WebSocketUser):
    fixed_count = 1
    host = PLAIN + "/client-ping"
    message_interval = 0
    ping_interval = {PING_INTERVAL}


class Deflated(Echoes):
    host = PLAIN + "/deflate"
    compression = "deflate"

    @task
    def text(self):
        self.echo("deflate " * 128, name="deflate1k")


class Subprotocol(Echoes):
    host = PLAIN + "/subprotocol"
    subprotocols = ("v1.unknown", "chat.wslocust")

    @task
    def chosen(self):
        self.echo(self.connection.subprotocol or "none", name="subprotocol")
'''

TLS_USERS = f"""

class Wss(Echoes):
    host = TLS + "/wss"
    verify_tls = False

    @task
    def text(self):
        self.echo("t" * 64, name="wss_text64")

    @task
    def binary(self):
        self.echo(bytes({MIB}), name="wss_binary1m")
"""
PLAIN_PATHS = (
    "/text64", "/binary64", "/text1m", "/binary1m", "/push", "/server-ping", "/client-ping", "/subprotocol", "/deflate"
)  # fmt: skip
PLAIN_NAMES = {"connect", "echo", "binary64", "text1m", "binary1m", "ping", "subprotocol", "deflate1k"}
# Where each request name's messages went, and what they were.
ECHOED = {  # request name: (path, "text" or "binary", bytes each)
    "echo": ("/text64", "text", 64),
    "binary64": ("/binary64", "binary", 64),
    "text1m": ("/text1m", "text", MIB),
    "binary1m": ("/binary1m", "binary", MIB),
    "deflate1k": ("/deflate", "text", 1024),
    "subprotocol": ("/subprotocol", "text", len("chat.wslocust")),
}


class InteropServer(CapturedProcess):
    """A server script of ``tests/interop_servers`` in a session of its own; its ports once it listens."""

    def __init__(self, script: str, cert: tuple[str, str], folder: Path) -> None:
        argv = [sys.executable, str(SERVERS / script), "--certfile", cert[0], "--keyfile", cert[1]]
        super().__init__(script, argv, env=subprocess_environment(), cwd=REPO_ROOT, folder=folder)
        ports = wait_for(self._ports, timeout=20, interval=0.05, message=f"{script}'s ports", processes=[self])
        self.port, self.tls_port = int(ports["PORT"]), int(ports["TLS_PORT"])

    def _ports(self) -> dict[str, str] | None:
        ports = dict(re.findall(r"^(PORT|TLS_PORT) (\d+)$", self.stdout, re.MULTILINE))
        return ports if "TLS_PORT" in ports else None

    def counts(self) -> dict[str, dict[str, int]]:
        """Stop it (SIGTERM) and read the counts it printed, by path."""
        assert self.stop(15, signal.SIGTERM) == 0, self.output(40)
        return json.loads(self.lines("stdout")[-1])


@dataclass
class InteropRun:
    """The runs against one server and what the server counted."""

    plain: LocustResult
    """The run of every case over ``ws://``."""
    tls: LocustResult | str
    """The run over ``wss://``, or why it failed (it runs second, so that its failure hides nothing else)."""
    counts: dict[str, dict[str, int]]
    """The server's counts of both runs, by path."""


def run_locust_against(server: InteropServer, folder: Path, users: str) -> LocustResult:
    """A headless Locust run of the ``users`` classes against ``server``, for RUN_TIME seconds."""
    locustfile = folder / f"interop_{len(list(folder.glob('interop_*.py')))}.py"
    locustfile.write_text(
        (HEADER + users).replace("{port}", str(server.port)).replace("{tls_port}", str(server.tls_port))
    )
    count = str(len(re.findall(r"^class (?!Echoes)\w+\(", users, re.MULTILINE)))
    return run_locust(
        "-f", str(locustfile), "--headless", "-u", count, "-r", count, "-t", f"{RUN_TIME:g}s",
        "--stop-timeout", "5", "--json", "--only-summary", folder=folder, timeout=RUN_TIME + START_AND_EXIT,
    )  # fmt: skip


@pytest.fixture(scope="module", params=["websockets_server.py", "tornado_server.py"], ids=["websockets", "tornado"])
def interop(request, tmp_path_factory, self_signed_cert) -> InteropRun:
    """Both runs against one server (a subprocess), then its counts; nothing of either outlives this."""
    since = time.time()
    folder = tmp_path_factory.mktemp(request.param.removesuffix(".py"))
    server = InteropServer(request.param, self_signed_cert, folder)
    try:
        plain = run_locust_against(server, folder, PLAIN_USERS)
        tls: LocustResult | str
        try:
            tls = run_locust_against(server, folder, TLS_USERS)
        except AssertionError as failure:  # run_locust: it did not exit in time (and was killed)
            tls = str(failure)
        counts = server.counts()
    finally:
        server.kill()
    assert not leftover_descendants(since)
    return InteropRun(plain, tls, counts)


def assert_clean_and_on_time(result: LocustResult) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.elapsed < RUN_TIME + START_AND_EXIT
    assert stop_delay(result.stderr) < STOP_DELAY, result.stderr[-3000:]
    for sign in TRACEBACK_SIGNS:
        assert sign not in result.stderr, result.stderr[-5000:]


def test_every_count_of_the_plain_run_equals_the_real_servers_own(interop):
    result, counts = interop.plain, {path: interop.counts.get(path, {}) for path in PLAIN_PATHS}
    stats = result.stats
    assert set(stats) == PLAIN_NAMES, result.stderr[-3000:]
    assert {name: entry["num_failures"] for name, entry in stats.items() if entry["num_failures"]} == {}
    assert not error_report(result.stderr)
    # One connection per user, accepted by the server, closed by the client with 1000 at the stop.
    assert stats["connect"]["num_requests"] == len(PLAIN_PATHS)
    assert all(path["connections"] == 1 == path["close 1000"] for path in counts.values()), counts
    for name, (path, kind, size) in ECHOED.items():
        echoes = stats[name]["num_requests"]
        assert echoes >= 3, (name, echoes)
        assert counts[path][f"{kind}_received"] == counts[path][f"{kind}_sent"] == echoes, (name, counts[path])
        assert counts[path]["bytes_received"] == counts[path]["bytes_sent"] == echoes * size, (name, counts[path])
    # The subprotocol the client offered second was chosen, and the client knew it (it echoed its name).
    assert counts["/subprotocol"]["subprotocol chat.wslocust"] == 1
    assert sum(path.get("subprotocol none", 0) for path in counts.values()) == len(PLAIN_PATHS) - 1
    # Every push read, every server ping answered, every client ping counted (and no other ping sent).
    assert counts["/push"]["pushes_sent"] == PUSHES
    assert counts["/server-ping"]["pings_sent"] == counts["/server-ping"]["pongs_received"] == SERVER_PINGS
    pings = stats["ping"]["num_requests"]
    assert counts["/client-ping"]["pings_received"] == pings >= RUN_TIME / PING_INTERVAL / 2, counts["/client-ping"]
    assert sum(path.get("pings_received", 0) for path in counts.values()) == pings
    # The summary adds up to the server's totals.
    s = summary(result.stderr)
    received = sum(path.get("text_received", 0) + path.get("binary_received", 0) for path in counts.values())
    sent = sum(path.get("text_sent", 0) + path.get("binary_sent", 0) for path in counts.values())
    assert (s["connects"], s["failed"], s["disconnects"]) == (len(PLAIN_PATHS), 0, 0)
    assert (s["sent"], s["received"], s["unsolicited"]) == (received, sent, PUSHES)
    assert s["bytes_sent"] == sum(path.get("bytes_received", 0) for path in counts.values())
    assert s["bytes_received"] == sum(path.get("bytes_sent", 0) for path in counts.values())
    assert (s["timed_out"], s["lost"], s["in_flight"]) == (0, 0, 0)


def test_compression_is_used_where_the_server_accepts_it_and_the_results_say_so(interop, request):
    # websockets accepts permessage-deflate (and says so in its counts); tornado, by default, declines:
    # the same user then runs uncompressed, and the results have no compression line.
    counts, stderr = interop.counts["/deflate"], interop.plain.stderr
    line = re.search(r"^  compression  permessage-deflate on (\d+) connects?: (.*)$", stderr, re.MULTILINE)
    if "websockets" in request.node.callspec.id:
        assert counts["permessage-deflate"] == 1, counts
        assert line is not None and line[1] == "1", stderr[-3000:]
        sent = re.search(r"([\d.]+ [KM]?B) of messages sent took ([\d.]+ [KM]?B) on the wire \((\d+)%\)", line[2])
        assert sent is not None and int(sent[3]) < 25, line[0]
    else:
        assert "permessage-deflate" not in counts, counts
        assert line is None, line


def test_the_plain_run_ends_on_time_and_cleanly(interop):
    assert_clean_and_on_time(interop.plain)


def test_wss_with_verification_off_counts_equal_the_servers_and_the_run_ends_on_time(interop):
    # A server that ends TLS with close_notify (websockets does; tornado only closes TCP) must not keep the
    # client from stopping: the message says why the run did not exit in time, if it did not.
    assert isinstance(interop.tls, LocustResult), interop.tls
    result, wss = interop.tls, interop.counts["/wss"]
    stats = result.stats
    assert set(stats) == {"connect", "wss_text64", "wss_binary1m"}, result.stderr[-3000:]
    assert sum(entry["num_failures"] for entry in stats.values()) == 0 and not error_report(result.stderr)
    assert (wss["connections"], wss["close 1000"]) == (1, 1)
    assert wss["text_received"] == wss["text_sent"] == stats["wss_text64"]["num_requests"] >= 3
    assert wss["binary_received"] == wss["binary_sent"] == stats["wss_binary1m"]["num_requests"] >= 3
    assert wss["bytes_received"] == wss["bytes_sent"] == 64 * wss["text_received"] + MIB * wss["binary_received"]
    s = summary(result.stderr)
    assert (s["sent"], s["received"], s["bytes_sent"], s["bytes_received"]) == (
        wss["text_received"] + wss["binary_received"],
        wss["text_sent"] + wss["binary_sent"],
        wss["bytes_received"],
        wss["bytes_sent"],
    )
    assert "TLS certificate verification is OFF" in result.stderr
    assert_clean_and_on_time(result)
