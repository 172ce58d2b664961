"""
The reference server against hostile clients: fragment floods, idle and trickling
sockets under a low descriptor limit, unguarded or malformed control requests, and
requests with too many headers.

Real ``wslocust serve`` processes (``helpers.run_server_process``) where the process
matters (its memory, its descriptor limit, what it prints), in-process servers on
port 0 elsewhere; every client is a raw socket, so nothing is hidden by a client
library.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import struct
import urllib.error
import urllib.request

import pytest
from helpers import run_server_process, wait_for

from wslocust.integration.recovery import ask_target_to_fail
from wslocust.server import ServerConfig, build_parser, create_server
from wslocust.server.config import MAX_FAULT_MS
from wslocust.server.control import control_token_for, is_loopback

TIMEOUT = 10.0


@pytest.fixture
def start_server():
    """Start in-process servers on port 0; stop them all after the test."""
    servers = []

    def start(**options):
        server = create_server(ServerConfig(port=0, **options))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop(timeout=1)


# Raw WebSocket clients


def client_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """A masked client frame (the mask is zero, so the payload is sent as is: RFC 6455 §5.3 allows any key)."""
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 2**16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return head + b"\0\0\0\0" + payload


def open_websocket(port: int) -> socket.socket:
    """Connect and upgrade; return the socket, its 101 read."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        assert chunk, answer
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 101 "), answer
    return sock


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """Read one server frame (unmasked); return (opcode, payload)."""

    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                raise EOFError(f"connection closed after {len(data)} of {size} bytes")
            data += chunk
        return data

    first, second = exactly(2)
    size = second & 0x7F
    if size == 126:
        size = struct.unpack("!H", exactly(2))[0]
    elif size == 127:
        size = struct.unpack("!Q", exactly(8))[0]
    return first & 0x0F, exactly(size)


def close_code(sock: socket.socket) -> int:
    """The code of the next close frame the server sends (data frames before it are skipped)."""
    while True:
        opcode, payload = read_frame(sock)
        if opcode == 0x8:
            return int(struct.unpack("!H", payload[:2])[0])


def send_until_refused(sock: socket.socket, frames: list[bytes]) -> None:
    """Send ``frames``; stop quietly when the server has closed (a reset or a broken pipe)."""
    try:
        for frame in frames:
            sock.sendall(frame)
    except (ConnectionResetError, BrokenPipeError):
        pass


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


# 11. Messages are capped whole, all their fragments together


def test_a_message_of_max_message_size_in_fragments_is_echoed_and_one_byte_more_is_1009(start_server):
    server = start_server(max_message_size=1000)
    sock = open_websocket(server.port)
    # 1,000 bytes in 4 fragments with a ping in between: exactly the limit, echoed whole.
    parts = [bytes([n]) * 250 for n in range(4)]
    sock.sendall(client_frame(0x2, parts[0], fin=False) + client_frame(0x9, b"between"))
    sock.sendall(b"".join(client_frame(0x0, part, fin=index == 2) for index, part in enumerate(parts[1:])))
    assert read_frame(sock) == (0xA, b"between")
    assert read_frame(sock) == (0x2, b"".join(parts))
    # 1,001 bytes: the last fragment passes the limit.
    sock.sendall(client_frame(0x1, b"a" * 500, fin=False) + client_frame(0x0, b"b" * 501))
    assert close_code(sock) == 1009
    sock.close()
    wait_for(lambda: server.counters.connections_closed == 1, TIMEOUT)
    counters = server.counters
    assert (counters.messages_received, counters.messages_sent, counters.messages_too_big) == (1, 1, 1)
    assert counters.bytes_received == 1000


@pytest.mark.slow
def test_a_fragment_flood_against_wslocust_serve_is_closed_with_1009_without_growing_the_server():
    # The case: 7 fragments of 15 MB without FIN on 3 connections grew the server by
    # ~390 MB (the per-frame limit was 16 MiB, the message had none). Now each message stops
    # at the default 16 MiB: the second fragment closes the connection.
    fragment = bytes(15_000_000)
    frames = [client_frame(0x2 if number == 0 else 0x0, fragment, fin=False) for number in range(7)]
    with run_server_process() as server:
        baseline = peak_memory_mb(server.process.pid)
        sockets = [open_websocket(server.port) for _ in range(3)]
        for sock in sockets:
            send_until_refused(sock, frames)
        assert [close_code(sock) for sock in sockets] == [1009] * 3
        wait_for(lambda: server.stats()["connections_open"] == 0, TIMEOUT, processes=[server])
        stats = server.stats()
        grown = peak_memory_mb(server.process.pid) - baseline
        for sock in sockets:
            sock.close()
    assert stats["messages_too_big"] == 3 and stats["messages_received"] == 0, stats
    # At most one 15 MB fragment per connection held at a time (and its unmasked copy).
    assert grown < 150, f"the server grew by {grown:.0f} MB"
    assert "Traceback" not in server.output()


# 12. Connections that never finish their upgrade


def test_a_slowloris_upgrade_is_closed_at_the_handshake_timeout_but_an_open_websocket_never(start_server):
    server = start_server(handshake_timeout=0.5)
    upgraded = open_websocket(server.port)
    trickling = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    request = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    sent = 0

    def trickle() -> bool:
        # One byte every 50 ms: a socket timeout would be reset by each; the deadline is not.
        nonlocal sent
        try:
            trickling.sendall(request[sent % len(request) : sent % len(request) + 1])
            sent += 1
        except OSError:
            return True
        return server.counters.handshakes_timed_out == 1

    wait_for(trickle, TIMEOUT, interval=0.05, message="the trickling upgrade timed out")
    trickling.settimeout(TIMEOUT)
    assert trickling.recv(100) == b""  # closed without an answer
    trickling.close()
    # The WebSocket opened before has been idle past the timeout, and still echoes.
    upgraded.sendall(client_frame(0x1, b"still here"))
    assert read_frame(upgraded) == (0x1, b"still here")
    upgraded.close()
    assert server.counters.handshakes_timed_out == 1 and server.counters.connections_accepted == 1


def test_a_client_silent_in_its_tls_handshake_is_timed_out(start_server, self_signed_cert):
    cert, key = self_signed_cert
    server = start_server(certfile=cert, keyfile=key, handshake_timeout=0.3)
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
    wait_for(lambda: server.counters.handshakes_timed_out == 1, TIMEOUT)
    assert silent.recv(100) == b""
    silent.close()


@pytest.mark.slow
def test_thousands_of_idle_sockets_under_a_low_descriptor_limit_are_timed_out_and_stats_keeps_answering():
    # The case: 2,000 sockets that never send an upgrade, the server at `ulimit -n 256`:
    # /stats stopped answering for as long as they stayed. Now each is closed after the
    # handshake timeout, and the connections waiting in the listen backlog get their turn.
    idle = 2000
    with run_server_process("--handshake-timeout", "0.5", open_files_limit=256) as server:
        sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) for _ in range(idle)]
        try:
            stats = wait_for(server.stats, 60, interval=0.5, message="GET /stats answered", processes=[server])
            assert stats["connections_accepted"] == 0
            wait_for(
                lambda: server.stats()["handshakes_timed_out"] == idle, 60, interval=0.2,
                message=f"{idle} idle sockets timed out", processes=[server],
            )  # fmt: skip
            assert server.stats()["handshakes_timed_out"] == idle  # exactly: /stats requests are not counted
        finally:
            for sock in sockets:
                sock.close()
        assert server.stop() == 0
    # One line when descriptors ran out (repeated at most every 10 s), and nothing else.
    assert server.stderr_lines, server.output()
    out_of_descriptors = (
        "wslocust serve: out of file descriptors (256 per process); new connections wait until others close. "
        "Raise `ulimit -n`, or run more processes on the same port with --reuse-port."
    )
    assert set(server.stderr_lines) == {out_of_descriptors}, server.output()


# 13. The control endpoint: its parameters and its token


def post(url: str, token: str | None = None) -> tuple[int, object]:
    """POST ``url``; return (status, the JSON body), refusing anything that is not strict JSON."""

    def not_json(constant: str) -> object:
        raise AssertionError(f"{constant} is not JSON")

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST", headers=headers), timeout=5) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    assert body.count(b"\n") == 0, body  # one line
    return status, json.loads(body, parse_constant=not_json)


MILLISECONDS = f"(use a number of milliseconds from 0 to {MAX_FAULT_MS})"


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("refuse_ms=inf", f"refuse_ms=inf is not valid {MILLISECONDS}"),
        ("refuse_ms=nan", f"refuse_ms=nan is not valid {MILLISECONDS}"),
        ("refuse_ms=1e300", f"refuse_ms=1e300 is not valid {MILLISECONDS}"),
        ("refuse_ms=-1", f"refuse_ms=-1 is not valid {MILLISECONDS}"),
        ("refuse_ms=3600001", f"refuse_ms=3600001 is not valid {MILLISECONDS}"),
        ("refuse_ms=ten", f"refuse_ms=ten is not valid {MILLISECONDS}"),
        ("drop=yes", "drop=yes is not valid (use 0, 1, true or false)"),
        ("refuse=5", "unknown parameter refuse (use drop=0|1 and refuse_ms=N)"),
    ],
)
def test_bad_fault_parameters_are_a_one_line_400_in_json_and_change_nothing(start_server, query, error):
    server = start_server()
    assert post(f"http://127.0.0.1:{server.port}/faults?{query}") == (400, {"error": error})
    assert not server._upgrades.should_refuse()  # no refusal was started


def test_valid_fault_parameters_answer_json(start_server):
    server = start_server()
    base = f"http://127.0.0.1:{server.port}/faults"
    assert post(f"{base}?drop=true&refuse_ms={MAX_FAULT_MS}") == (200, {"dropped": 0, "refuse_ms": MAX_FAULT_MS})
    assert post(f"{base}?drop=0&refuse_ms=1e3") == (200, {"dropped": 0, "refuse_ms": 1000.0})


def test_a_given_control_token_is_required_and_refusals_are_counted(start_server, caplog):
    server = start_server(control_token="the-control-token")
    url = f"http://127.0.0.1:{server.port}/faults?refuse_ms=0"
    refused = (401, {"error": "a control token is required: send Authorization: Bearer <token> "
                              "(--control-token / WS_CONTROL_TOKEN)"})  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="wslocust.server"):
        assert post(url) == refused
        assert post(url, token="the-wrong-token") == refused
    assert post(url, token="the-control-token") == (200, {"dropped": 0, "refuse_ms": 0.0})
    assert server.counters.control_requests_refused == 2
    assert [record.getMessage() for record in caplog.records] == [
        "wslocust serve: POST /faults from 127.0.0.1 refused: no valid control token"
    ] * 2
    # Reading stays open: /stats and /healthz change nothing.
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/stats", timeout=5) as answer:
        assert json.load(answer)["control_requests_refused"] == 2


def test_the_control_token_rules():
    assert control_token_for(None, "127.0.0.1") is None and control_token_for(None, "::1") is None
    assert control_token_for("given", "127.0.0.1") == "given" and control_token_for("given", "0.0.0.0") == "given"
    generated = {control_token_for(None, address) for address in ("0.0.0.0", "::", "10.1.2.3", "::ffff:10.0.0.1")}
    assert len(generated) == 4 and all(token and len(token) >= 32 for token in generated)
    assert is_loopback("127.0.0.2") and is_loopback("::ffff:127.0.0.1") and not is_loopback("0.0.0.0")
    with pytest.raises(Exception, match="control_token: must be printable ASCII without spaces"):
        ServerConfig(control_token="two words")


def test_beyond_loopback_wslocust_serve_generates_a_token_prints_it_and_requires_it():
    with run_server_process("--host", "0.0.0.0") as server:
        line = wait_for(lambda: next((l for l in server.stdout_lines if l.startswith("control token")), None))
        match = re.fullmatch(
            r"control token \(POST /faults needs 'Authorization: Bearer <token>'\): (\S+) "
            r"\(generated; choose one with --control-token or WS_CONTROL_TOKEN\)",
            line,
        )
        assert match, line
        url = f"http://127.0.0.1:{server.port}/faults?refuse_ms=0"
        assert post(url)[0] == 401
        assert post(url, token=match[1]) == (200, {"dropped": 0, "refuse_ms": 0.0})
    assert server.stdout_lines.index(line) == 1  # right after the listening line


def test_on_loopback_no_token_is_printed_and_none_is_required():
    with run_server_process() as server:
        assert post(f"http://127.0.0.1:{server.port}/faults?refuse_ms=0")[0] == 200
    assert not any("token" in line for line in server.output().splitlines())


def test_wslocust_serve_reads_its_token_and_handshake_timeout_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("WS_CONTROL_TOKEN", "from-the-environment")
    monkeypatch.setenv("WS_HANDSHAKE_TIMEOUT", "2.5")
    options = build_parser().parse_args([])
    assert (options.control_token, options.handshake_timeout) == ("from-the-environment", 2.5)
    assert build_parser().parse_args(["--control-token", "from-the-command-line"]).control_token == (
        "from-the-command-line"
    )
    monkeypatch.setenv("WS_HANDSHAKE_TIMEOUT", "never")
    with pytest.raises(SystemExit):
        build_parser().parse_args([])
    assert capsys.readouterr().err == (
        "wslocust serve: error: --handshake-timeout: never must be a number of seconds > 0 (from WS_HANDSHAKE_TIMEOUT)\n"
    )


def test_error_recovery_sends_the_control_token_of_its_run(caplog):
    # The ErrorRecovery experiment's POST /faults, against a server that requires a token.
    with run_server_process("--control-token", "recovery-token-123") as server:
        with caplog.at_level(logging.WARNING, logger="wslocust"):
            assert ask_target_to_fail(server.url, 0.1) is False
            assert ask_target_to_fail(server.url, 0.1, token="not-the-token") is False
            assert ask_target_to_fail(server.url, 0.1, token="recovery-token-123") is True
        assert server.stats()["control_requests_refused"] == 2
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert "control token is required and none was given (WS_CONTROL_TOKEN / --ws-control-token" in messages[0]
    assert "the server's control token was refused (WS_CONTROL_TOKEN / --ws-control-token" in messages[1]


# 14. Requests with too many headers


def test_more_than_100_headers_is_a_431_and_one_log_line():
    with run_server_process() as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            headers = b"".join(b"X-Header-%d: v\r\n" % number for number in range(150))
            sock.sendall(b"GET /stats HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n")
            assert sock.recv(200).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
        wait_for(lambda: server.stderr_lines, TIMEOUT, processes=[server])
        assert server.stats()["connections_accepted"] == 0
    assert re.fullmatch(
        r"wslocust serve: bad request from 127\.0\.0\.1:\d+ answered 431: got more than 100 headers",
        "\n".join(server.stderr_lines),
    ), server.output()


def test_the_manifests_give_the_server_and_the_masters_the_same_control_token_secret():
    from k8s_pods import Manifests

    manifests = Manifests()

    def token_source(kind: str, name: str) -> dict:
        container = manifests.get(kind, name)["spec"]["template"]["spec"]["containers"][0]
        (variable,) = [item for item in container.get("env", []) if item["name"] == "WS_CONTROL_TOKEN"]
        return variable["valueFrom"]["secretKeyRef"]

    server = token_source("Deployment", "wslocust-reference-server")
    assert server == {"name": "wslocust-control-token", "key": "token", "optional": True}
    # The masters run the ErrorRecovery experiment; the workers never POST /faults.
    assert token_source("Deployment", "wslocust-master") == server
    assert token_source("Job", "wslocust-headless") == server
    assert not manifests.has("Secret", "wslocust-control-token")  # created by the user, never committed
