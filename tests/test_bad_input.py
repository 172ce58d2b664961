"""
The bad-input matrix: every wslocust option and environment variable given a
wrong type, range or format, unsupported or malformed URLs, an unresolvable
host, a locustfile without users, run through the real ``locust`` command.

Each row of :data:`MATRIX` is one case. Rows with ``tested_in`` are run by the
named test elsewhere (checked to exist here, so that the table stays true);
every row with an ``expected`` line runs here. A bad value must stop the run at
start with exit code 2 and exactly one line on stderr besides Locust's own log
lines, in wslocust's one style whoever checked the value (wslocust, argparse or
configargparse): ``wslocust: OPTION: what is wrong; what is valid``, naming the
option or variable and the value, and no traceback. A fault that only
shows when connecting (an unresolvable host) is a categorised failure instead:
one row of Locust's error report.
"""

from __future__ import annotations

import ast
import json
import re
import ssl
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import REPO_ROOT, ServerProcess, free_port, wait_for
from locust_process import LocustResult, run_locust

pytestmark = pytest.mark.slow

TARGET = ["--host", "ws://127.0.0.1:1/ws"]
"""A valid target for the option cases; nothing listens there, and a case that wrongly runs fails fast."""

LOCUSTFILES = {
    "no-user": "import wslocust  # noqa: F401\n",
    "class-host": (
        "from wslocust import WebSocketUser\n\n\nclass Chat(WebSocketUser):\n    host = 'http://127.0.0.1:1/ws'\n"
    ),
    "class-proxy": (
        "from wslocust import WebSocketUser\n\n\nclass Chat(WebSocketUser):\n"
        "    host = 'ws://127.0.0.1:1/ws'\n    proxy = 'socks5://127.0.0.1:1080'\n"
    ),
    "class-extensions-header": (
        "from wslocust import WebSocketUser\n\n\nclass Chat(WebSocketUser):\n"
        "    host = 'ws://127.0.0.1:1/ws'\n    headers = {'Sec-WebSocket-Extensions': 'permessage-deflate'}\n"
    ),
    "class-compression": (
        "from wslocust import WebSocketUser\n\n\nclass Chat(WebSocketUser):\n"
        "    host = 'ws://127.0.0.1:1/ws'\n    compression = 'gzip'\n"
    ),
    "class-compression-window": (
        "from wslocust import WebSocketUser\n\n\nclass Chat(WebSocketUser):\n"
        "    host = 'ws://127.0.0.1:1/ws'\n    compression = 'deflate'\n    compression_window_bits = 8\n"
    ),
    "class-subprotocol": (
        "from wslocust import WebSocketUser\n\n\nclass Chat(WebSocketUser):\n"
        "    host = 'ws://127.0.0.1:1/ws'\n    subprotocols = ['chat v2']\n"
    ),
    "class-tls-ca-file": (
        "from wslocust import WebSocketUser\n\n\nclass Chat(WebSocketUser):\n"
        "    host = 'wss://127.0.0.1:1/ws'\n    tls_ca_file = 'README.md'\n"
    ),
    "unresolvable": (
        "from wslocust import WebSocketUser\n\n\nclass Chat(WebSocketUser):\n"
        "    host = 'ws://no-such-host.invalid/ws'\n    reconnect_delay = 0.1\n    max_reconnect_attempts = 1\n"
    ),
}
"""Locustfiles of the cases that need their own, by name; the others run ``locustfiles/echo.py``."""


@dataclass(frozen=True)
class Case:
    id: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    expected: str = ""
    """The error line starts with this, after ``wslocust: `` (the option or variable, the value, what is valid)."""
    exit_code: int = 2
    locustfile: str = "locustfiles/echo.py"
    tested_in: str = ""
    """``tests/FILE.py::TEST`` when another test runs this case (too, if it has an ``expected`` line)."""


MATRIX = [
    # Scenario options (settings.py): the command line and the environment.
    Case("target-connections-fraction", [*TARGET, "--ws-target-connections", "1.5"],
         expected="TARGET_CONNECTIONS / --ws-target-connections: '1.5' is not a whole number of connections >= 1"),
    Case("target-connections-word", TARGET, {"TARGET_CONNECTIONS": "many"},
         expected="TARGET_CONNECTIONS / --ws-target-connections: 'many' is not a whole number of connections >= 1"),
    Case("target-connections-zero", TARGET, {"TARGET_CONNECTIONS": "0"},
         expected="TARGET_CONNECTIONS / --ws-target-connections: '0' is not a whole number of connections >= 1",
         tested_in="tests/test_scenario_settings.py::test_a_bad_value_stops_at_start_with_one_line_naming_the_variable_the_value_and_what_is_valid"),
    Case("ramp-up-negative", [*TARGET, "--ws-ramp-up-time", "-1"],
         expected="RAMP_UP_TIME / --ws-ramp-up-time: '-1' is not a number of milliseconds >= 0"),
    Case("ramp-up-word", TARGET, {"RAMP_UP_TIME": "soon"},
         expected="RAMP_UP_TIME / --ws-ramp-up-time: 'soon' is not a number of milliseconds >= 0"),
    Case("test-duration-zero", [*TARGET, "--ws-test-duration", "0"],
         expected="TEST_DURATION / --ws-test-duration: '0' is not a number of milliseconds > 0"),
    Case("test-duration-infinite", TARGET, {"TEST_DURATION": "inf"},
         expected="TEST_DURATION / --ws-test-duration: 'inf' is not a number of milliseconds > 0"),
    Case("profile-unknown", [*TARGET, "--ws-profile", "huge"],
         expected="WS_PROFILE / --ws-profile: 'huge' is not a profile (light, medium, heavy, extreme)"),
    Case("profile-number", TARGET, {"WS_PROFILE": "0"},
         expected="WS_PROFILE / --ws-profile: '0' is not a profile (light, medium, heavy, extreme)"),
    Case("time-scale-nan", [*TARGET, "--ws-time-scale", "nan"],
         expected="WS_TIME_SCALE / --ws-time-scale: 'nan' is not a time scale > 0"),
    Case("time-scale-zero", TARGET, {"WS_TIME_SCALE": "0"},
         expected="WS_TIME_SCALE / --ws-time-scale: '0' is not a time scale > 0"),
    Case("time-scale-messages-word", [*TARGET, "--ws-time-scale-messages", "fast"],
         expected="WS_TIME_SCALE_MESSAGES / --ws-time-scale-messages: 'fast' is not real (each connection"),
    Case("time-scale-messages-number", TARGET, {"WS_TIME_SCALE_MESSAGES": "0.5"},
         expected="WS_TIME_SCALE_MESSAGES / --ws-time-scale-messages: '0.5' is not real (each connection"),
    Case("time-scale-messages-missing", [*TARGET, "--ws-time-scale-messages"],
         expected="WS_TIME_SCALE_MESSAGES / --ws-time-scale-messages: no value; give one"),
    Case("workers-word", TARGET, {"WORKERS": "two"},
         expected="WORKERS / --processes: 'two' is not a whole number of worker processes >= 1"),
    Case("workers-negative", TARGET, {"WORKERS": "-2"},
         expected="WORKERS / --processes: '-2' is not a whole number of worker processes >= 1",
         tested_in="tests/test_scenario_settings.py::test_a_bad_value_on_the_real_command_line_exits_2_without_a_traceback"),
    # Message interval (plugin.py).
    Case("message-interval-infinite", [*TARGET, "--ws-message-interval", "inf"],
         expected="MESSAGE_INTERVAL / --ws-message-interval: 'inf' is not a number of milliseconds >= 0"),
    Case("message-interval-env", TARGET, {"MESSAGE_INTERVAL": "abc"},
         expected="MESSAGE_INTERVAL / --ws-message-interval: 'abc' is not a number of milliseconds >= 0",
         tested_in="tests/test_locust_runs.py::test_a_bad_message_interval_names_the_variable_and_what_is_valid"),
    # Thresholds (thresholds.py).
    Case("thresholds-syntax", [*TARGET, "--ws-thresholds", "echo.p95 100ms"],
         expected="WS_THRESHOLDS / --ws-thresholds: 'echo.p95 100ms' is not METRIC<VALUE (operators <, <=, >, >=;",
         tested_in="tests/test_live_runs.py::test_a_malformed_threshold_stops_the_run_at_start_with_one_line"),
    Case("thresholds-unit", [*TARGET, "--ws-thresholds", "echo.p95<100parsecs"],
         expected="WS_THRESHOLDS / --ws-thresholds: 'echo.p95<100parsecs': unit 'parsecs' does not fit echo.p95 "
                  "(use ms, s or us)"),
    Case("thresholds-env-rate", TARGET, {"WS_THRESHOLDS": "error_rate<lots"},
         expected="WS_THRESHOLDS / --ws-thresholds: 'error_rate<lots'"),
    Case("thresholds-abort-word", TARGET, {"WS_THRESHOLDS_ABORT": "maybe"},
         expected="WS_THRESHOLDS_ABORT / --ws-thresholds-abort: 'maybe' is not a yes/no value; "
                  "use true, false, yes, no, on, off, 1 or 0"),
    # Source addresses (addresses.py, distributed.py).
    Case("source-addresses-syntax", [*TARGET, "--ws-source-addresses", "127.0.0.300"],
         expected="WS_SOURCE_ADDRESSES / --ws-source-addresses: '127.0.0.300' is not an IP address; use addresses",
         tested_in="tests/test_addresses.py::test_bad_source_addresses_stop_the_run_with_one_line"),
    Case("source-addresses-not-local", TARGET, {"WS_SOURCE_ADDRESSES": "192.0.2.1"},
         expected="WS_SOURCE_ADDRESSES / --ws-source-addresses: '192.0.2.1' is not an address of this host",
         tested_in="tests/test_addresses.py::test_bad_source_addresses_stop_the_run_with_one_line"),
    Case("source-addresses-reversed", TARGET, {"WS_SOURCE_ADDRESSES": "127.0.0.5-127.0.0.1"},
         expected="WS_SOURCE_ADDRESSES / --ws-source-addresses: '127.0.0.5-127.0.0.1' is not an address range "
                  "(the end comes before the start); use addresses, ranges"),
    # Compression (options.py, connecting.py): the option, and the class settings it overrides.
    Case("compression-word", [*TARGET, "--ws-compression", "gzip"],
         expected="WS_COMPRESSION / --ws-compression: 'gzip' is not a compression; use deflate or off"),
    Case("compression-env-yes", TARGET, {"WS_COMPRESSION": "yes"},
         expected="WS_COMPRESSION / --ws-compression: 'yes' is not a compression; use deflate or off"),
    Case("class-compression-gzip", locustfile="class-compression",
         expected="Chat.compression 'gzip' is not valid: use 'deflate' or None"),
    Case("class-compression-window-bits", locustfile="class-compression-window",
         expected="Chat.compression_window_bits 8 is not valid: use a whole number from 9 to 15"),
    # The embedded server's port (options.py).
    Case("embedded-port-range", ["--ws-embedded-port", "70000"],
         expected="WS_EMBEDDED_PORT / --ws-embedded-port: '70000' is not a port (0-65535)"),
    Case("embedded-port-env-word", env={"WS_EMBEDDED_PORT": "any"},
         expected="WS_EMBEDDED_PORT / --ws-embedded-port: 'any' is not a port (0-65535)"),
    # TLS files (tls.py, target.py): checked at start, named by where they were given.
    Case("tls-ca-file-missing", [*TARGET, "--ws-tls-ca-file", "/nonexistent/ca.pem"],
         expected="WS_TLS_CA_FILE / --ws-tls-ca-file: '/nonexistent/ca.pem' does not exist"),
    Case("tls-ca-file-env-not-pem", TARGET, {"WS_TLS_CA_FILE": "README.md"},
         expected="WS_TLS_CA_FILE / --ws-tls-ca-file: 'README.md' holds no PEM certificate"),
    Case("tls-cert-file-not-pem", [*TARGET, "--ws-tls-cert-file", "README.md"],
         expected="WS_TLS_CERT_FILE / --ws-tls-cert-file: 'README.md' holds no PEM certificate"),
    Case("tls-cert-file-env-missing", TARGET, {"WS_TLS_CERT_FILE": "/nonexistent/client.pem"},
         expected="WS_TLS_CERT_FILE / --ws-tls-cert-file: '/nonexistent/client.pem' does not exist"),
    Case("tls-key-file-without-certificate", [*TARGET, "--ws-tls-key-file", "README.md"],
         expected="WS_TLS_KEY_FILE / --ws-tls-key-file: 'README.md' is given without its certificate"),
    Case("tls-key-file-env-not-the-certificates", env={"WS_TLS_KEY_FILE": "other.key"},
         tested_in="tests/test_tls_options.py::test_a_key_that_is_not_the_certificates_stops_the_run_at_start_naming_it"),
    Case("class-tls-ca-file-not-pem", locustfile="class-tls-ca-file",
         expected="Chat.tls_ca_file: 'README.md' holds no PEM certificate"),
    # Target URLs (uri.py, target.py).
    Case("host-http", ["--host", "http://127.0.0.1:3003/ws"],
         expected="--host: 'http://127.0.0.1:3003/ws' is not a WebSocket URL (http://); use ws://host[:port]/path",
         tested_in="tests/test_locust_runs.py::test_a_bad_url_stops_the_run_with_one_clear_line"),
    Case("host-port-and-no-host", ["--host", "ws://127.0.0.1:99999/ws / ws:///ws"],
         tested_in="tests/test_locust_runs.py::test_a_bad_url_stops_the_run_with_one_clear_line"),
    Case("host-ftp", ["--host", "ftp://127.0.0.1/ws"],
         expected="--host: 'ftp://127.0.0.1/ws' is not a WebSocket URL (ftp://); "
                  "use ws://host[:port]/path or wss://host[:port]/path"),
    Case("host-no-scheme", ["--host", "localhost:3003"],
         expected="--host: 'localhost:3003' is not a WebSocket URL (no scheme); use ws://host[:port]/path"),
    Case("host-broken-ipv6", ["--host", "ws://[::1/ws"],
         expected="--host: 'ws://[::1/ws' has a malformed [IPv6] host; use ws://[::1]:port/path"),
    Case("host-space", ["--host", "ws://127.0.0.1:1/a b"],
         expected="--host: 'ws://127.0.0.1:1/a b' has spaces or non-ASCII characters in its path or query; "
                  "percent-encode them"),
    Case("host-credentials-redacted", ["--host", "wss://user:pw@127.0.0.1:0/ws?token=t0ken"],
         expected="--host: 'wss://***@127.0.0.1:0/ws?token=***' has port 0; use a number from 1 to 65535"),
    Case("ws-server-url-ftp", env={"WS_SERVER_URL": "ftp://example/ws"},
         expected="WS_SERVER_URL: 'ftp://example/ws' is not a WebSocket URL (ftp://); use ws://host[:port]/path",
         tested_in="tests/test_locust_runs.py::test_a_bad_url_in_ws_server_url_names_the_variable"),
    Case("ws-server-url-empty-host", env={"WS_SERVER_URL": "wss://"},
         expected="WS_SERVER_URL: 'wss://' has no host; use ws://host[:port]/path"),
    # Locustfiles.
    Case("class-host-http", locustfile="class-host",
         expected="Chat.host: 'http://127.0.0.1:1/ws' is not a WebSocket URL (http://)"),
    Case("class-proxy-socks", locustfile="class-proxy",
         expected="Chat.proxy: proxy 'socks5://127.0.0.1:1080' is not valid; use http://[user:password@]host:port"),
    Case("class-extensions-header", locustfile="class-extensions-header",
         expected="Chat: header Sec-WebSocket-Extensions is set by the WebSocket handshake"),
    Case("class-subprotocol-space", locustfile="class-subprotocol",
         expected="Chat: invalid subprotocol: 'chat v2'"),
    Case("no-user-class", ["--host", "ws://127.0.0.1:1/ws"], locustfile="no-user", exit_code=1,
         expected="No User class found!"),
    # A host that does not resolve: not an error of the input's form, but a failure of each connect.
    Case("unresolvable-host", locustfile="unresolvable", exit_code=1,
         expected="WS connect: DNSError('DNS lookup failed for no-such-host.invalid')"),
]  # fmt: skip

RUN_HERE = [case for case in MATRIX if case.expected]


def test_the_matrix_covers_every_option_and_variable_and_its_other_rows_exist():
    text = " ".join(" ".join([*case.args, *case.env]) for case in MATRIX)
    for name in (
        "--ws-target-connections", "TARGET_CONNECTIONS", "--ws-ramp-up-time", "RAMP_UP_TIME", "--ws-test-duration",
        "TEST_DURATION", "--ws-profile", "WS_PROFILE", "--ws-time-scale", "WS_TIME_SCALE", "WORKERS",
        "--ws-message-interval", "MESSAGE_INTERVAL", "--ws-thresholds", "WS_THRESHOLDS", "WS_THRESHOLDS_ABORT",
        "--ws-source-addresses", "WS_SOURCE_ADDRESSES", "--host", "WS_SERVER_URL", "--ws-embedded-port",
        "WS_EMBEDDED_PORT", "--ws-tls-ca-file", "WS_TLS_CA_FILE", "--ws-tls-cert-file", "WS_TLS_CERT_FILE",
        "--ws-tls-key-file", "WS_TLS_KEY_FILE", "--ws-time-scale-messages", "WS_TIME_SCALE_MESSAGES",
        "--ws-compression", "WS_COMPRESSION",
    ):  # fmt: skip
        assert re.search(rf"(^|\s){re.escape(name)}(\s|$)", text), f"no bad-input case for {name}"
    assert len({case.id for case in MATRIX}) == len(MATRIX)
    for case in MATRIX:
        if case.tested_in:
            path, name = case.tested_in.split("::")
            tree = ast.parse((REPO_ROOT / path).read_text())
            assert name in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}, case


def _locust(case: Case, folder: Path) -> LocustResult:
    locustfile = case.locustfile
    if locustfile in LOCUSTFILES:
        path = folder / f"{locustfile.replace('-', '_')}.py"
        path.write_text(LOCUSTFILES[locustfile])
        locustfile = str(path)
    return run_locust("-f", locustfile, "--headless", "-u", "1", "-t", "2s", *case.args, env=case.env)


RUNS_AT_ONCE = 4
"""
Cases run side by side: each is a Locust start-up (~1 s of one core) that stops at its first
check; on two cores, four at a time take about half the time one at a time would (28 s, not 52).
"""


@pytest.fixture(scope="module")
def bad_input_runs(request, tmp_path_factory) -> dict[str, Future[LocustResult]]:
    """
    The runs of the cases this session selected, by case id: run together, and all ended before
    the first test looks at its own (no run outlives the test that started it).
    """
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if item.module is request.module and item.originalname == "test_bad_input"
    ]
    folder = tmp_path_factory.mktemp("bad-input")
    with ThreadPoolExecutor(RUNS_AT_ONCE) as pool:  # its exit waits for every run
        runs = {}
        for case in selected:
            (folder / case.id).mkdir()
            runs[case.id] = pool.submit(_locust, case, folder / case.id)
    return runs


_LOG_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+\] [^/]+/(INFO|DEBUG|WARNING)/")


@pytest.mark.parametrize("case", RUN_HERE, ids=[case.id for case in RUN_HERE])
def test_bad_input(case, bad_input_runs):
    result = bad_input_runs[case.id].result()  # or the failure of its run, e.g. its timeout
    stderr = result.stderr
    assert "Traceback" not in stderr, stderr
    assert result.returncode == case.exit_code, stderr[-3000:]
    if case.id == "unresolvable-host":
        # One row in Locust's error report, every attempt counted in it.
        report = stderr[stderr.index("Error report") :].splitlines()
        rows = report[3 : next(i for i, line in enumerate(report) if i > 3 and line.startswith("---"))]
        failed = re.search(r"WebSocket summary: 0 connects \((\d+) failed", stderr)
        assert failed and int(failed[1]) >= 1, stderr[-3000:]
        assert len(rows) == 1 and case.expected in rows[0] and rows[0].split()[0] == failed[1], report
        return
    lines = [line for line in stderr.splitlines() if line.strip() and not _LOG_LINE.match(line)]
    assert len(lines) == 1, stderr[-3000:]
    if case.exit_code == 2:  # a bad input: wslocust's one style, whoever checked it
        assert lines[0].startswith(f"wslocust: {case.expected}"), lines[0]
    else:
        assert case.expected in lines[0], lines[0]


# TLS ---------------------------------------------------------------------------------

TLS_LOCUSTFILE = """
from wslocust import WebSocketUser


class Secure(WebSocketUser):
    verify_tls = {verify}
    message_interval = 0.2
    reconnect_delay = 0.1
    max_reconnect_attempts = 1
"""


@contextmanager
def tls_server(cert: str, key: str) -> Iterator[tuple[str, Callable[[], dict]]]:
    """A ``wslocust serve`` over TLS; yields its URL and a function that reads its /stats (trusting ``cert``)."""
    port = free_port()
    server = ServerProcess(["--port", str(port), "--certfile", cert, "--keyfile", key])
    try:
        wait_for(lambda: any("listening on wss://" in line for line in server.stdout_lines), 30, processes=[server])
        trusting = ssl.create_default_context(cafile=cert)

        def stats() -> dict:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/stats", timeout=5, context=trusting) as response:
                return json.load(response)

        yield f"wss://127.0.0.1:{port}/ws", stats
    finally:
        server.stop()


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "opted-out"])
def test_a_self_signed_server_is_refused_unless_verification_is_turned_off_loudly(verify, tmp_path, self_signed_cert):
    locustfile = tmp_path / "secure.py"
    locustfile.write_text(TLS_LOCUSTFILE.format(verify=verify))
    with tls_server(*self_signed_cert) as (url, stats):
        result = _locust(Case("tls", ["-u", "3", "-r", "3", "--host", url], locustfile=str(locustfile)), tmp_path)
        truth = stats()
    stderr = result.stderr
    assert "Traceback" not in stderr, stderr[-3000:]
    warnings = [line for line in stderr.splitlines() if "TLS certificate verification is OFF" in line]
    if verify:
        # One categorised failure per attempt, naming the reason; no connection reached the server.
        assert result.returncode == 1, stderr[-3000:]
        report = stderr[stderr.index("Error report") :].splitlines()
        assert "TLSError('TLS certificate verification failed: self-signed certificate')" in report[3]
        assert truth["connections_accepted"] == 0 and warnings == []
    else:
        # It works, and says once, as a warning, that any server would have been accepted.
        assert result.returncode == 0, stderr[-3000:]
        assert truth["connections_accepted"] == 3 and truth["messages_received"] > 0
        assert len(warnings) == 1 and "/WARNING/" in warnings[0] and "impostor" in warnings[0], warnings
