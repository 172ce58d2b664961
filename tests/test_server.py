"""
The reference server, exercised for real: in this process on port 0 and as a
``python -m wslocust serve`` subprocess, with websocket-client as the client.

Importing wslocust imports Locust, which lets gevent patch the standard
library: the blocking websocket-client calls below then yield to the
in-process server's greenlets instead of blocking them.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import struct
import time
import urllib.error
import urllib.request

import gevent
import pytest
import websocket
from helpers import ServerProcess, free_port, run_server_process, wait_for
from websocket import ABNF

from wslocust import cli
from wslocust import server as server_module
from wslocust.exceptions import ConfigurationError
from wslocust.redaction import conceal_uri
from wslocust.server import ServerConfig, create_server, faults

TIMEOUT = 5.0


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


@pytest.fixture
def server(start_server):
    return start_server()


@pytest.fixture
def connect(start_server):
    """Open websocket-client connections; drop those still open after the test (before the servers stop)."""
    clients = []

    def connect(url):
        ws = websocket.create_connection(url, timeout=TIMEOUT)
        clients.append(ws)
        return ws

    yield connect
    for ws in clients:
        ws.shutdown()


def http_get(url):
    """Return (status, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_url(server, path):
    return f"http://127.0.0.1:{server.port}{path}"


def fetch_stats(url):
    status, body = http_get(url)
    assert status == 200
    return json.loads(body)


def receive_close(ws):
    """Read up to the server's close frame; return (code, reason), or None if it sent no code."""
    opcode, payload = ws.recv_data(control_frame=True)
    while opcode != ABNF.OPCODE_CLOSE:
        opcode, payload = ws.recv_data(control_frame=True)
    if not payload:
        return None
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()


def raw_request(server, request):
    """Send raw HTTP bytes; return the status line of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


def upgrade_request(
    key="dGhlIHNhbXBsZSBub25jZQ==", version="13", http="HTTP/1.1", path="/ws"
):
    headers = [
        f"GET {path} {http}",
        "Host: localhost",
        "Upgrade: websocket",
        "Connection: Upgrade",
    ]
    if key is not None:
        headers.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        headers.append(f"Sec-WebSocket-Version: {version}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode()


# Echo


def test_echoes_text_and_binary_unchanged(server, connect):
    ws = connect(server.url)
    # 70 KB needs the 64-bit length form.
    for text in ["hello", "héllo ✓ 🚀", "", "x" * 70_000]:
        ws.send(text)
        assert ws.recv_data() == (ABNF.OPCODE_TEXT, text.encode())
    for data in [b"\x00\xff", b"", bytes(range(256)) * 300]:
        ws.send_binary(data)
        assert ws.recv_data() == (ABNF.OPCODE_BINARY, data)
    ws.close()


def test_fragmented_message_is_echoed_whole(server, connect):
    ws = connect(server.url)
    ws.send_frame(ABNF.create_frame("frag", ABNF.OPCODE_TEXT, fin=0))
    ws.send_frame(ABNF.create_frame("mented", ABNF.OPCODE_CONT, fin=1))
    assert ws.recv_data() == (ABNF.OPCODE_TEXT, b"fragmented")
    assert server.counters.bytes_received == len("fragmented")
    ws.close()


def test_ping_is_answered_with_pong(server, connect):
    ws = connect(server.url)
    ws.ping(b"are you there")
    assert ws.recv_data(control_frame=True) == (ABNF.OPCODE_PONG, b"are you there")
    assert server.counters.messages_received == 0  # control frames are not messages
    ws.close()


def test_counts_are_exact_after_n_messages_on_m_connections(server, connect):
    clients, messages = 4, 25
    sockets = [connect(server.url) for _ in range(clients)]
    payload_bytes = 0
    for round_number in range(messages):
        for index, ws in enumerate(sockets):
            if (round_number + index) % 2:
                message = "é" * round_number  # 2 bytes per character in UTF-8
                ws.send(message)
                payload_bytes += len(message.encode())
            else:
                message = bytes(round_number * 3)
                ws.send_binary(message)
                payload_bytes += len(message)
            ws.recv()
            # Counted before the echo was sent, and right after it was: seeing
            # the echo is enough, there is nothing to wait for.
            expected = round_number * clients + index + 1
            assert server.counters.messages_received == expected
            assert server.counters.messages_sent == expected

    expected = {
        "connections_accepted": clients,
        "connections_closed": 0,
        "connections_open": clients,
        "handshakes_refused": 0,
        "messages_received": clients * messages,
        "messages_sent": clients * messages,
        "broadcasts_sent": 0,
        "bytes_received": payload_bytes,
        "bytes_sent": payload_bytes,
        "messages_too_big": 0,
        "handshakes_timed_out": 0,
        "control_requests_refused": 0,
    }
    stats = fetch_stats(server.stats_url)
    assert {key: stats[key] for key in expected} == expected
    assert stats["uptime_s"] >= 0 and stats["pid"] > 0
    assert server.counters.as_dict() == expected

    for ws in sockets:
        ws.close()
    wait_for(lambda: server.counters.connections_closed == clients, TIMEOUT)
    assert server.counters.connections_open == 0
    assert fetch_stats(server.stats_url)["connections_open"] == 0


def test_dropped_client_is_counted_as_closed(server, connect):
    ws = connect(server.url)
    wait_for(lambda: server.counters.connections_open == 1, TIMEOUT)
    ws.sock.close()  # no close frame: the server sees EOF
    wait_for(lambda: server.counters.connections_closed == 1, TIMEOUT)
    assert server.counters.connections_open == 0


# Closing


def test_client_close_code_is_echoed(server, connect):
    ws = connect(server.url)
    ws.send_close(4005, b"done here")
    assert receive_close(ws) == (4005, "")
    wait_for(lambda: server.counters.connections_closed == 1, TIMEOUT)


@pytest.mark.parametrize("delay_ms", [0, 50])
def test_close_after_echoes_the_last_message_then_closes_with_the_code(
    start_server, delay_ms, connect
):
    server = start_server(close_after=3, close_code=4000, delay_ms=delay_ms)
    ws = connect(server.url)
    for number in range(3):
        ws.send(f"message {number}")
    assert [ws.recv() for _ in range(3)] == ["message 0", "message 1", "message 2"]
    assert receive_close(ws) == (4000, "close_after")
    wait_for(lambda: server.counters.connections_closed == 1, TIMEOUT)
    assert server.counters.messages_sent == 3


def test_close_code_1006_drops_the_connection_without_a_close_frame(
    start_server, connect
):
    server = start_server(close_after=1, close_code=1006)
    ws = connect(server.url)
    ws.send("last")
    assert ws.recv() == "last"
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        ws.recv_data(control_frame=True)
    wait_for(lambda: server.counters.connections_closed == 1, TIMEOUT)


def test_invalid_utf8_is_closed_with_1007(server, connect):
    ws = connect(server.url)
    ws.send(b"\xff\xfe", ABNF.OPCODE_TEXT)
    assert receive_close(ws) == (1007, "")
    assert server.counters.messages_received == 0


def test_unmasked_client_frame_is_closed_with_1002(server, connect):
    ws = connect(server.url)
    ws.sock.sendall(b"\x81\x02hi")  # RFC 6455 §5.1: client frames must be masked
    assert receive_close(ws) == (1002, "")


# Faults and features


@pytest.mark.parametrize(
    ("fraction", "attempts", "refused"),
    [
        (0.25, 12, [4, 8, 12]),
        (0.1, 20, [10, 20]),
        (0.5, 5, [2, 4]),
        (1.0, 3, [1, 2, 3]),
        (0.0, 4, []),
    ],
)
def test_refuse_fraction_refuses_exactly_the_predicted_upgrades(
    start_server, fraction, attempts, refused, connect
):
    server = start_server(refuse_fraction=fraction)
    seen = []
    for attempt in range(1, attempts + 1):
        try:
            connect(server.url).close()
        except websocket.WebSocketBadStatusException as error:
            assert error.status_code == 503
            seen.append(attempt)
    assert seen == refused
    assert server.counters.handshakes_refused == len(refused)
    assert server.counters.connections_accepted == attempts - len(refused)


def test_broadcast_reaches_every_open_connection(start_server, connect):
    server = start_server(broadcast_interval_ms=30)
    sockets = [connect(server.url) for _ in range(3)]
    wait_for(lambda: server.counters.connections_open == 3, TIMEOUT)
    sockets[0].send("echo me")
    for index, ws in enumerate(sockets):
        received = [ws.recv() for _ in range(4 if index == 0 else 3)]
        if index == 0:
            received.remove("echo me")
        broadcasts = [json.loads(text) for text in received]
        numbers = [broadcast["broadcast"] for broadcast in broadcasts]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
        # stamped with the server's time.time() when the broadcast began: the fan-out's start
        assert all(0 <= time.time() - broadcast["sent_at"] < 5 for broadcast in broadcasts), broadcasts
    for ws in sockets:
        ws.close()
    wait_for(lambda: server.counters.connections_open == 0, TIMEOUT)
    counters = server.counters
    assert counters.broadcasts_sent >= 9
    assert counters.messages_sent == counters.broadcasts_sent + 1


def test_delay_holds_each_echo_without_blocking_other_messages(start_server, connect):
    # Held echoes one after the other would take one delay per message: finishing in fewer
    # than that many delays proves they overlap, with a margin no load on the machine reaches.
    delay = 0.2
    server = start_server(delay_ms=delay * 1000)
    sockets = [connect(server.url) for _ in range(20)]

    # One message: received (and counted) at once, echoed after the delay.
    started = time.monotonic()
    sockets[0].send("one")
    wait_for(lambda: server.counters.messages_received == 1, TIMEOUT)
    assert server.counters.messages_sent == 0
    # The server is not blocked meanwhile.
    assert http_get(http_url(server, "/healthz"))[0] == 200
    assert sockets[0].recv() == "one"
    assert time.monotonic() - started >= delay

    # Twenty messages on one connection: delayed together, in order.
    started = time.monotonic()
    for number in range(20):
        sockets[0].send(str(number))
    assert [sockets[0].recv() for _ in range(20)] == [str(number) for number in range(20)]
    elapsed = time.monotonic() - started
    assert delay <= elapsed < 20 * delay

    # One message on each of 20 connections: delayed concurrently, not one after the other.
    started = time.monotonic()
    for ws in sockets:
        ws.send("all")
    assert [ws.recv() for ws in sockets] == ["all"] * 20
    elapsed = time.monotonic() - started
    assert delay <= elapsed < 20 * delay
    assert server.counters.messages_sent == server.counters.messages_received == 41


# HTTP routes and bad handshakes


def test_http_routes(server):
    assert http_get(http_url(server, "/healthz")) == (200, b"ok")
    assert http_get(http_url(server, "/nope"))[0] == 404
    assert http_get(http_url(server, "/ws"))[0] == 426  # not an upgrade request
    status, body = http_get(http_url(server, "/stats"))
    assert status == 200
    assert set(json.loads(body)) == {*server.counters.as_dict(), "uptime_s", "pid"}


def test_upgrade_on_another_path_is_404(server):
    assert (
        raw_request(server, upgrade_request(path="/other")) == "HTTP/1.1 404 Not Found"
    )


@pytest.mark.parametrize(
    ("request_options", "status"),
    [
        ({"key": "!!not base64"}, "400"),
        ({"key": "c2hvcnQ="}, "400"),  # 5 bytes, not 16
        ({"key": None}, "400"),
        ({"version": "99"}, "400"),
        ({"version": None}, "426"),
        ({"http": "HTTP/1.0"}, "400"),
    ],
)
def test_bad_upgrade_requests_get_an_error_status_not_a_traceback(
    server, capfd, request_options, status
):
    status_line = raw_request(server, upgrade_request(**request_options))
    assert status_line.split()[1] == status
    assert server.counters.connections_accepted == 0
    assert "Traceback" not in capfd.readouterr().err


# Stopping


def test_stop_closes_every_connection_with_1001(server, connect):
    sockets = [connect(server.url) for _ in range(3)]
    wait_for(lambda: server.counters.connections_open == 3, TIMEOUT)
    started = time.monotonic()
    stopper = gevent.spawn(server.stop, 4)
    # websocket-client replies to the close frame by itself.
    for ws in sockets:
        assert receive_close(ws) == (1001, "going away")
    stopper.join(TIMEOUT)
    assert stopper.dead
    # Finished by the close handshakes, not by the timeout.
    assert time.monotonic() - started < 2
    assert server.counters.connections_closed == 3
    with pytest.raises(OSError):
        connect(server.url)


def test_stop_gives_up_on_clients_that_never_reply(server, connect):
    connect(server.url)  # never reads, so never answers the close frame
    wait_for(lambda: server.counters.connections_open == 1, TIMEOUT)
    started = time.monotonic()
    server.stop(timeout=0.3)
    assert time.monotonic() - started < 2
    assert server.counters.connections_closed == 1


def test_stop_is_not_held_up_by_a_client_that_stopped_reading(server, connect):
    stuck, polite = connect(server.url), connect(server.url)

    def flood():
        message = bytes(65536)
        for _ in range(500):
            stuck.send_binary(message)

    flooder = gevent.spawn(flood)
    last = -1

    def echoes_stalled():
        # The server is stuck writing an echo nobody reads once the count stops moving.
        nonlocal last
        received, last = last, server.counters.messages_received
        return received == last > 0

    wait_for(echoes_stalled, TIMEOUT, interval=0.2)
    started = time.monotonic()
    stopper = gevent.spawn(server.stop, 0.5)
    assert receive_close(polite) == (1001, "going away")
    stopper.join(TIMEOUT)
    assert stopper.dead
    assert time.monotonic() - started < 2.5
    assert server.counters.connections_open == 0
    flooder.kill()


# Configuration and command line


def test_config_rejects_bad_values_naming_the_field():
    with pytest.raises(
        ConfigurationError, match=r"^port: 70000 is not a valid port \(0-65535\)$"
    ):
        ServerConfig(port=70000)
    with pytest.raises(
        ConfigurationError, match=r"^close_code: 1005 is not a valid close code"
    ):
        ServerConfig(close_code=1005)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "--port: 70000 is not a valid port (0-65535)"),
        (["--port", "abc"], "--port: abc is not a valid port (0-65535)"),
        (
            ["--close-code", "999"],
            (
                "--close-code: 999 is not a valid close code "
                "(1000-1003, 1007-1014 or 3000-4999; 1006 drops the connection without a close frame)"
            ),
        ),
        (
            ["--refuse-fraction", "1.5"],
            "--refuse-fraction: 1.5 must be between 0 and 1",
        ),
        (["--delay-ms", "-5"], "--delay-ms: -5 must be a number of milliseconds >= 0"),
        (
            ["--close-after", "2.5"],
            "--close-after: 2.5 must be a whole number >= 0 (0 = never)",
        ),
        (
            ["--broadcast-interval-ms", "inf"],
            "--broadcast-interval-ms: inf must be a number of milliseconds >= 0 (0 = off)",
        ),
        (
            ["--path", "ws"],
            "--path: ws is not a valid path (it must start with / and contain no spaces)",
        ),
        (
            ["--path", "/stats"],
            "--path: /stats is reserved (use a path other than /stats, /healthz and /faults)",
        ),
    ],
)
def test_bad_cli_values_give_one_line_and_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", *argv])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.err == f"wslocust serve: error: {message}\n"
    assert captured.out == ""


def test_server_module_main_uses_the_same_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        server_module.main(["--port", "-1"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err
        == "wslocust serve: error: --port: -1 is not a valid port (0-65535)\n"
    )


def test_command_without_subcommand_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


# The real command, as a subprocess


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_then_drains_on_signal(signum, connect):
    with run_server_process() as process:
        assert re.fullmatch(
            rf"wslocust reference server listening on ws://127\.0\.0\.1:{process.port}/ws "
            rf"\(stats at http://127\.0\.0\.1:{process.port}/stats\)",
            process.stdout_lines[0],
        )
        sockets = [connect(process.url) for _ in range(2)]
        for ws in sockets:
            for number in range(3):
                ws.send(f"hello {number}")
                assert ws.recv() == f"hello {number}"
        assert process.stats()["messages_received"] == 6

        process.process.send_signal(signum)
        for ws in sockets:
            assert receive_close(ws) == (1001, "going away")
        assert process.stop(timeout=15) == 0, process.output()

    final = json.loads(process.stdout_lines[-1])
    assert final["connections_accepted"] == 2
    assert final["connections_closed"] == 2
    assert final["connections_open"] == 0
    assert final["messages_received"] == final["messages_sent"] == 6
    assert final["bytes_received"] == final["bytes_sent"] == 6 * len("hello 0")
    assert "Traceback" not in process.output()


def test_cli_bad_value_as_a_real_process():
    process = ServerProcess(["--port", "70000"])
    assert process.wait() == 2
    assert process.stdout_lines == []
    assert process.stderr_lines == [
        "wslocust serve: error: --port: 70000 is not a valid port (0-65535)"
    ]


def test_cli_port_in_use_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = ServerProcess(["--port", str(port)])
        assert process.wait() == 1
    assert len(process.stderr_lines) == 1, process.output()
    assert process.stderr_lines[0].startswith(
        f"wslocust serve: error: cannot listen on 127.0.0.1:{port}: "
    )


def test_cli_out_of_file_descriptors_warns_once_and_recovers(connect):
    with run_server_process(open_files_limit=40) as process:
        sockets = []
        with pytest.raises(websocket.WebSocketTimeoutException):
            for _ in range(40):
                sockets.append(websocket.create_connection(process.url, timeout=0.5))
        wait_for(
            lambda: any(
                "out of file descriptors" in line for line in process.stderr_lines
            )
        )
        for ws in sockets[:5]:
            ws.close()
        connect(process.url).close()  # accepted again once descriptors are free
        for ws in sockets[5:]:
            ws.shutdown()
        assert process.stop() == 0
    assert process.stderr_lines == [
        (
            "wslocust serve: out of file descriptors (40 per process); new connections "
            "wait until others close. Raise `ulimit -n`, or run more processes on the "
            "same port with --reuse-port."
        )
    ]


def test_cli_reuse_port_lets_two_processes_share_a_port(connect):
    port = str(free_port())
    with (
        run_server_process("--port", port, "--reuse-port") as first,
        run_server_process("--port", port, "--reuse-port") as second,
    ):
        assert first.port == second.port == int(port)
        ws = connect(first.url)
        ws.send("shared")
        assert ws.recv() == "shared"
        ws.close()


def test_post_faults_drops_every_connection_and_refuses_upgrades_for_a_while():
    with run_server_process() as server:
        clients = [websocket.create_connection(server.url, timeout=5) for _ in range(3)]
        base = server.url.replace("ws://", "http://").rsplit("/", 1)[0]
        request = urllib.request.Request(f"{base}/faults?drop=1&refuse_ms=60000", method="POST")
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response) == {"dropped": 3, "refuse_ms": 60000.0}
        for client in clients:
            with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
                client.send("after the fault")
                client.recv()
        with pytest.raises(websocket.WebSocketBadStatusException, match="503"):
            websocket.create_connection(server.url, timeout=5)
        stats = server.stats()
        assert stats["connections_open"] == 0 and stats["handshakes_refused"] == 1
        bad = urllib.request.Request(f"{base}/faults?refuse_ms=-1", method="POST")
        with pytest.raises(urllib.error.HTTPError, match="400"):
            urllib.request.urlopen(bad, timeout=5)


# Failing a server from the client's side (wslocust.server.faults)


def test_restart_server_brings_a_port_0_server_back_on_the_same_port(start_server, connect):
    server = start_server()
    clients = [connect(server.url) for _ in range(2)]
    wait_for(lambda: server.counters.connections_open == 2, TIMEOUT)
    replacement = faults.restart_server(server, 0.2)
    try:
        assert replacement.port == server.port and replacement.url == server.url
        assert [receive_close(ws) for ws in clients] == [(1001, "going away")] * 2
        assert server.counters.connections_closed == 2
        ws = connect(replacement.url)
        ws.send("back")
        assert ws.recv() == "back"
        assert replacement.counters.connections_accepted == 1  # a new server: its own counters
    finally:
        replacement.stop(timeout=1)


def test_faults_url_is_on_the_targets_port_even_for_a_concealed_target():
    assert faults.faults_url("ws://127.0.0.1:3003/ws", refuse_ms=249.6) == (
        "http://127.0.0.1:3003/faults?drop=1&refuse_ms=250"
    )
    assert faults.faults_url("wss://example.com/x", drop=False) == "https://example.com/faults?drop=0&refuse_ms=0"
    assert faults.faults_url("ws://[::1]:8080/") == "http://[::1]:8080/faults?drop=1&refuse_ms=0"
    concealed = conceal_uri("ws://user:faults-test-secret@127.0.0.1:4321/ws?token=faults-test-token")
    assert "faults-test" not in concealed
    assert faults.faults_url(concealed) == "http://127.0.0.1:4321/faults?drop=1&refuse_ms=0"
    with pytest.raises(ConfigurationError):
        faults.faults_url("http://127.0.0.1:3003/")


def test_request_fault_asks_a_server_process_to_fail(connect):
    with run_server_process() as server:
        ws = connect(server.url)
        assert faults.request_fault(faults.faults_url(server.url, refuse_ms=60000)) == 200
        with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
            ws.send("after the fault")
            ws.recv()
        assert server.stats()["connections_open"] == 0
        with pytest.raises(urllib.error.HTTPError, match="400"):
            faults.request_fault(faults.faults_url(server.url, refuse_ms=-1))


def test_a_client_silent_in_its_tls_handshake_does_not_stall_wslocust_serve(self_signed_cert):
    # `wslocust serve` runs without Locust, so without gevent's monkey patching: with the
    # standard library's TLS context, each handshake would block the process until it ended.
    cert, key = self_signed_cert
    with run_server_process("--certfile", cert, "--keyfile", key) as process:
        silent = socket.create_connection(("127.0.0.1", process.port))  # connects, never says hello
        try:
            ws = websocket.create_connection(
                f"wss://127.0.0.1:{process.port}/ws", timeout=TIMEOUT, sslopt={"cert_reqs": 0}
            )
            ws.send("through")
            assert ws.recv() == "through"
            ws.close()
        finally:
            silent.close()
