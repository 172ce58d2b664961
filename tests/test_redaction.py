"""
Secrets stay out of every output: URL credentials and tokens, header values and
proxy credentials are redacted in logs, the web UI, CSV files and reports, while
the real values still reach the server.

The unit tests pin :mod:`wslocust.redaction`; the two real runs give a locustfile
full of secrets to ``locust`` with its web UI on, against a server that rejects
the upgrade while quoting the request back, and against the reference server,
then search every output for the secret.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import signal
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import gevent
import pytest
from helpers import run_server_process, wait_for
from locust_process import LocustProcess, master_and_workers

from wslocust import redaction
from wslocust.codec.handshake import build_request
from wslocust.codec.uri import parse_uri
from wslocust.exceptions import ConfigurationError, ConnectionClosedError, HandshakeError
from wslocust.redaction import (
    RedactedStderr,
    RedactSecrets,
    conceal_uri,
    is_secret_header,
    redact_headers,
    redact_text,
    redact_uri,
    reveal_uri,
)
from wslocust.transport.connection import Connection, Proxy

SECRET = "s3cret"
"""The one secret every credential of the real runs is made of, so that one search finds any leak."""

# Pure functions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ws://user:pw@host/ws", "ws://***@host/ws"),
        ("ws://user:p@ss@host:81/ws", "ws://***@host:81/ws"),  # a raw "@" in the password
        ("ws://token-only@host/", "ws://***@host/"),
        ("wss://host/ws?token=abc&room=1", "wss://host/ws?token=***&room=1"),
        ("ws://h/?access_token=a&api_key=b&apiKey=c&client_secret=d", "ws://h/?access_token=***&api_key=***&apiKey=***&client_secret=***"),
        ("ws://h/?X-Amz-Signature=a&X-Amz-Credential=b&sig=c&password=d&auth=e", "ws://h/?X-Amz-Signature=***&X-Amz-Credential=***&sig=***&password=***&auth=***"),
        ("ws://h/?sessionid=a&jwt=b#frag", "ws://h/?sessionid=***&jwt=***#frag"),
        ("ws://h/ws?room=1&user=bob", "ws://h/ws?room=1&user=bob"),  # nothing secret: unchanged
        ("ws://[::1]:9/ws", "ws://[::1]:9/ws"),
        ("http://puser:pw@proxy:3128", "http://***@proxy:3128"),
    ],
)  # fmt: skip
def test_redact_uri_hides_userinfo_and_token_like_query_values(url, shown):
    assert redact_uri(url) == shown


@pytest.mark.parametrize(
    "name",
    ["Authorization", "proxy-authorization", "Cookie", "X-Api-Key", "X-Auth-Token", "X-Session", "Client-Secret"],
)
def test_credential_headers_are_secret(name):
    assert is_secret_header(name)


@pytest.mark.parametrize("name", ["Origin", "User-Agent", "X-Request-Id", "Accept-Language"])
def test_ordinary_headers_are_not_secret(name):
    assert not is_secret_header(name)


def test_redact_headers_keeps_names_and_ordinary_values():
    headers = {"Authorization": "Bearer x", "Cookie": "sid=1", "X-Trace": "42"}
    assert redact_headers(headers) == [("Authorization", "***"), ("Cookie", "***"), ("X-Trace", "42")]
    assert redact_headers([("x-api-key", "k")]) == [("x-api-key", "***")]


def test_a_concealed_target_reveals_its_real_url_and_parse_uri_connects_to_it():
    real = "ws://alice:c0nceal-me@127.0.0.1:9/ws?token=c0nceal-me&room=1"
    shown = conceal_uri(real)
    assert shown == "ws://***@127.0.0.1:9/ws?token=***&room=1"
    assert reveal_uri(shown) == real and conceal_uri(shown) == shown  # idempotent
    uri = parse_uri(shown)
    assert uri.resource == "/ws?token=c0nceal-me&room=1" and uri.user_info == ("alice", "c0nceal-me")
    # What a message or a log quotes about it holds no secret.
    assert "c0nceal-me" not in f"{uri} {uri!r}"
    # Two URLs that redact alike stay apart.
    other = conceal_uri("ws://alice:another-one@127.0.0.1:9/ws?token=another-one&room=1")
    assert other != shown and other.startswith("ws://***2@") and reveal_uri(other).endswith("another-one&room=1")
    assert conceal_uri("ws://127.0.0.1:9/ws") == "ws://127.0.0.1:9/ws"  # nothing to hide


def test_a_worker_learns_the_masters_concealed_targets():
    real = "wss://w0rker-secret@127.0.0.1:9/ws"
    shown = "wss://***@127.0.0.1:9/ws"
    assert shown not in redaction.concealed_targets()
    redaction.add_concealed_targets({shown: real})  # as the spawn message carries them
    assert redaction.concealed_targets()[shown] == real
    assert parse_uri(shown).user_info == ("w0rker-secret", "") and parse_uri(shown).port == 9
    assert redact_text("token w0rker-secret") == "token ***"


def test_a_concealed_form_this_process_never_made_is_refused_rather_than_sent():
    with pytest.raises(ConfigurationError, match=r"holds \*\*\* where its credentials were hidden"):
        parse_uri("ws://***@127.0.0.1:9/ws?token=***")


def test_credentials_in_the_url_become_basic_authorization():
    uri = parse_uri("ws://us%40er:p%3Ass@127.0.0.1:9/")
    assert uri.user_info == ("us@er", "p:ss")
    assert uri.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert parse_uri("ws://127.0.0.1:9/").authorization is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"ftp://u:{SECRET}@h/?token={SECRET}", "is not a WebSocket URL (ftp://)"),
        (f"ws://u:{SECRET}@h:99999/?token={SECRET}", "has an invalid port"),
        (f"ws://u:{SECRET}@h/a b?token={SECRET}", "has spaces or non-ASCII characters"),
        (f"ws://u:{SECRET}@[::1/?token={SECRET}", "has a malformed [IPv6] host"),
        (f"ws://u:{SECRET}@[zz::1]/?token={SECRET}", "has a malformed [IPv6] host"),
        (f"ws://u:{SECRET}@h:0/?token={SECRET}", "has port 0"),
        (f"ws://u:{SECRET}@/?token={SECRET}", "has no host"),
    ],
)
def test_url_errors_name_the_url_without_its_secrets(url, message):
    with pytest.raises(ConfigurationError, match=re.escape(message)) as caught:
        parse_uri(url)
    assert SECRET not in str(caught.value) and "***'" in str(caught.value)  # the quoted URL ends with its token


def test_proxy_errors_and_repr_hold_no_credentials():
    with pytest.raises(ConfigurationError) as caught:
        Proxy.from_url(f"https://puser:{SECRET}@proxy:99999")
    assert SECRET not in str(caught.value)
    proxy = Proxy.from_url(f"http://puser:{SECRET}@proxy:3128")
    assert proxy.authorization and SECRET not in repr(proxy) and proxy.authorization not in repr(proxy)


def test_an_invalid_secret_header_value_is_reported_without_the_value():
    with pytest.raises(ConfigurationError, match=r"^invalid value for header Authorization: \*\*\* \(CR") as caught:
        build_request(host="h", resource="/", key="k", headers=[("Authorization", f"Bearer {SECRET}\r\nX: y")])
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigurationError, match=r"'a\\nb'"):  # an ordinary value is quoted, to be found
        build_request(host="h", resource="/", key="k", headers=[("X-Trace", "a\nb")])


def test_known_secrets_are_redacted_in_exception_messages_and_free_text():
    redaction.register_secret("Bearer k3y-in-text")
    # A server may quote the request back in its status or close reason.
    error = HandshakeError("server rejected the WebSocket upgrade: HTTP 403 Forbidden k3y-in-text", 403)
    assert str(error) == "server rejected the WebSocket upgrade: HTTP 403 Forbidden ***" and error.status == 403
    assert "k3y-in-text" not in str(ConnectionClosedError(1008, "token k3y-in-text refused"))
    text = "GET ws://u:pw@h/ws?token=abc failed; Authorization: Bearer k3y-in-text"
    assert redact_text(text) == "GET ws://***@h/ws?token=*** failed; Authorization: ***"


def test_usage_hints_that_look_like_userinfo_are_left_alone():
    hint = "use http://[user:password@]host:port"
    assert redact_text(hint) == hint and redact_uri(hint) == hint


def test_a_greenlet_that_dies_is_reported_by_gevent_without_the_secrets_of_its_arguments(capsys):
    redaction.register_secret("Bearer gr33nlet-secret")
    hub = gevent.get_hub()
    previous = hub.__dict__.get("exception_stream")
    hub.exception_stream = RedactedStderr()
    try:

        def connect(headers: list[tuple[str, str]]) -> None:
            raise RuntimeError("refused")

        gevent.spawn(connect, [("Authorization", "Bearer gr33nlet-secret")]).join()
    finally:
        if previous is None:
            del hub.exception_stream
        else:
            hub.exception_stream = previous
    err = capsys.readouterr().err
    assert "RuntimeError: refused" in err and "('Authorization', '***')" in err
    assert "gr33nlet-secret" not in err


def test_the_log_filter_redacts_messages_arguments_and_tracebacks():
    redaction.register_secret("l0gged-secret")
    logger = logging.getLogger("test_redaction")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactSecrets())
    logger.addHandler(handler)
    try:
        logger.error("connecting to %s", "ws://u:pw@h/?token=abc")
        try:
            raise RuntimeError("boom with l0gged-secret")
        except RuntimeError:
            logger.exception("failed with %s", "l0gged-secret")
    finally:
        logger.removeHandler(handler)
    assert records[0] == "connecting to ws://***@h/?token=***"
    assert "l0gged-secret" not in records[1] and "RuntimeError: boom with ***" in records[1]


# A real connection ----------------------------------------------------------------


class RecordingServer:
    """Accepts TCP connections in threads and records the first request head of each; answers ``reply``
    (bytes, or a function of the request head)."""

    def __init__(self, reply: bytes | Callable[[bytes], bytes]) -> None:
        self.reply = reply
        self.requests: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(10)
            head = b""
            try:
                while b"\r\n\r\n" not in head and (chunk := client.recv(4096)):
                    head += chunk
                self.requests.append(head)
                client.sendall(self.reply(head) if callable(self.reply) else self.reply)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def test_url_credentials_are_sent_as_basic_authorization_unless_headers_set_one():
    server = RecordingServer(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    try:
        uri = parse_uri(f"ws://user:{SECRET}@127.0.0.1:{server.port}/ws")
        for headers in ([], [("authorization", "Bearer mine")]):
            with pytest.raises(HandshakeError, match="HTTP 403"):
                Connection(uri, on_message=lambda message, at: None).open(timeout=5, headers=headers)
    finally:
        server.close()
    basic = base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert f"Authorization: Basic {basic}\r\n".encode() in server.requests[0]
    assert b"authorization: Bearer mine\r\n" in server.requests[1] and basic.encode() not in server.requests[1]


# Real runs --------------------------------------------------------------------------


def _forbidden_quoting_the_request(head: bytes) -> bytes:
    # As rude as a server can be: the reason phrase quotes the request line and its credentials.
    lines = head.decode("latin-1").split("\r\n")
    quoted = " ".join(line for line in lines if line.startswith(("GET", "Authorization", "Cookie")))
    return f"HTTP/1.1 403 Forbidden {quoted}\r\nContent-Length: 0\r\n\r\n".encode("latin-1")


class ConnectProxy:
    """An HTTP CONNECT proxy in threads that records each CONNECT head and the first bytes tunnelled."""

    def __init__(self) -> None:
        self.connects: list[bytes] = []
        self.tunnelled: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://puser:{SECRET}@127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head and (chunk := client.recv(4096)):
                head += chunk
            self.connects.append(head)
            host, port = head.split(b" ")[1].rsplit(b":", 1)
            try:
                upstream = socket.create_connection((host.decode(), int(port)))
            except OSError:
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            with upstream:
                first = True
                pump = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
                pump.start()
                try:
                    while data := client.recv(65536):
                        if first:
                            self.tunnelled.append(data)
                            first = False
                        upstream.sendall(data)
                except OSError:
                    pass
                upstream.shutdown(socket.SHUT_RDWR)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


LOCUSTFILE = """
from locust import constant

from wslocust import WebSocketUser


class SecretUser(WebSocketUser):
    {host}
    headers = {headers}
    proxy = "{proxy}"
    message_interval = 0.2
    reconnect_delay = 0.2
    max_reconnect_attempts = 1000
"""

WEB_PAGES = [
    "/", "/stats/requests", "/stats/requests/csv", "/stats/failures/csv", "/stats/report", "/exceptions",
    "/exceptions/csv", "/tasks", "/logs", "/ws/stats", "/ws/stats/csv", "/ws/metrics",
]  # fmt: skip


def _get(url: str) -> tuple[bytes, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), str(response.headers)


SECRET_HEADERS = {"Authorization": f"Bearer {SECRET}", "Cookie": f"sid={SECRET}"}


def _run_with_secrets(
    tmp_path: Path, target: str, *, on_command_line: bool, headers: dict[str, str] = SECRET_HEADERS
) -> dict[str, str]:
    """Run locust with its web UI against ``target`` through a proxy; return every output by name."""
    proxy = ConnectProxy()
    host_line = "" if on_command_line else f'host = "{target}"'
    locustfile = tmp_path / "secret_locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(host=host_line, headers=repr(headers), proxy=proxy.url))
    outputs: dict[str, str] = {}
    process = LocustProcess(
        "-f", str(locustfile), "--autostart", "-u", "2", "-r", "100", "-t", "60s", "--csv", str(tmp_path / "run"),
        "--html", str(tmp_path / "report.html"), "--stop-timeout", "2", *(["--host", target] if on_command_line else []),
    )  # fmt: skip
    web = process.web_url
    try:
        # Every page, once the run has counted a failure quoting things (or an echo).
        def counted() -> bool:
            try:
                stats = _get(f"{web}/stats/requests")[0]
            except OSError:  # the web UI is not up yet
                return False
            return b'"echo"' in stats or b"403" in stats

        wait_for(
            counted, timeout=30, interval=0.2, message="a 403 failure or an echo in /stats/requests",
            processes=[process],
        )  # fmt: skip
        for page in WEB_PAGES:
            body, headers = _get(web + page)
            outputs[f"GET {page}"] = headers + body.decode("utf-8", "replace")
        # Ctrl-C: Locust writes the --html report, stops the users, writes the CSV files and exits
        # (on SIGTERM it skips the report).
        process.popen.send_signal(signal.SIGINT)
        assert process.wait(40) in (0, 1)
    finally:
        process.kill()
        proxy.close()
    outputs["stdout"], outputs["stderr"] = process.stdout, process.stderr
    for path in sorted(tmp_path.iterdir()):
        if path.is_file() and path != locustfile:
            outputs[path.name] = path.read_text(errors="replace")
    outputs["proxy CONNECT requests"] = "".join(map(repr, proxy.connects))
    outputs["_tunnelled"] = b"".join(proxy.tunnelled).decode("latin-1")
    return outputs


def _assert_no_secret(outputs: dict[str, str]) -> None:
    encoded = [base64.b64encode(f"{user}:{SECRET}".encode()).decode() for user in ("user", "puser")]
    leaks = {
        name: text[max(0, text.index(needle) - 120) : text.index(needle) + 60]
        for name, text in outputs.items()
        if name not in ("proxy CONNECT requests", "_tunnelled")
        for needle in (SECRET, *encoded)
        if needle in text
    }
    assert not leaks, leaks


@pytest.mark.slow
def test_a_rejected_run_quoting_the_secrets_back_shows_them_nowhere(tmp_path):
    server = RecordingServer(_forbidden_quoting_the_request)
    target = f"ws://user:{SECRET}@127.0.0.1:{server.port}/ws?token={SECRET}"
    try:
        outputs = _run_with_secrets(tmp_path, target, on_command_line=False)
    finally:
        server.close()
    _assert_no_secret(outputs)
    # The secrets did reach the server, and the failures were shown, quoting it redacted.
    assert any(f"GET /ws?token={SECRET} HTTP/1.1".encode() in request for request in server.requests)
    assert any(f"Authorization: Bearer {SECRET}".encode() in request for request in server.requests)
    failures = outputs["GET /stats/failures/csv"]
    assert "server rejected the WebSocket upgrade: HTTP 403 Forbidden GET /ws?token=*** HTTP/1.1" in failures
    assert "Authorization: ***" in failures
    shown = f"ws://***@127.0.0.1:{server.port}/ws?token=***"
    assert shown in outputs["GET /"] and shown in outputs["report.html"]
    assert (
        f"Proxy-Authorization: Basic {base64.b64encode(f'puser:{SECRET}'.encode()).decode()}"
        in outputs["proxy CONNECT requests"]
    )


@pytest.mark.slow
def test_url_credentials_sent_as_basic_authorization_and_quoted_back_show_nowhere(tmp_path):
    # No Authorization header of its own: the URL's credentials go as "Basic base64(user:password)".
    server = RecordingServer(_forbidden_quoting_the_request)
    target = f"ws://user:{SECRET}@127.0.0.1:{server.port}/ws"
    try:
        outputs = _run_with_secrets(tmp_path, target, on_command_line=True, headers={"Cookie": f"sid={SECRET}"})
    finally:
        server.close()
    token = base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert any(f"Authorization: Basic {token}".encode() in request for request in server.requests)
    _assert_no_secret(outputs)
    assert "Authorization: Basic ***" in outputs["GET /stats/failures/csv"]


@pytest.mark.slow
def test_a_working_run_with_secrets_on_the_command_line_shows_them_nowhere(tmp_path):
    with run_server_process() as server:
        target = server.url.replace("ws://", f"ws://user:{SECRET}@") + f"?token={SECRET}"
        outputs = _run_with_secrets(tmp_path, target, on_command_line=True)
        truth = server.stats()
    _assert_no_secret(outputs)
    assert truth["connections_accepted"] >= 2 and truth["messages_received"] > 0
    tunnelled = outputs["_tunnelled"]
    assert f"GET /ws?token={SECRET} HTTP/1.1" in tunnelled and f"Authorization: Bearer {SECRET}" in tunnelled
    assert f"Cookie: sid={SECRET}" in tunnelled
    shown = server.url.replace("ws://", "ws://***@") + "?token=***"
    assert shown in outputs["GET /"] and shown in outputs["report.html"] and shown in outputs["GET /ws/stats"]
    assert "WebSocket summary" in outputs["stderr"]


@pytest.mark.slow
def test_a_worker_given_only_the_concealed_target_connects_with_the_real_one(tmp_path):
    # The master's --host is shown concealed everywhere, spawn messages included: the
    # worker, which has no --host of its own, learns the real URL from the master.
    proxy = ConnectProxy()
    locustfile = tmp_path / "secret_locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(host="", headers=repr(SECRET_HEADERS), proxy=proxy.url))
    with run_server_process() as server:
        target = server.url.replace("ws://", f"ws://user:{SECRET}@") + f"?token={SECRET}"
        try:
            with master_and_workers(
                "--headless", "--expect-workers", "1", "-u", "2", "-r", "100", "-t", "3s", "--host", target,
                locustfile=locustfile, workers=1, folder=tmp_path,
            ) as (master, workers):  # fmt: skip
                codes = [process.wait(40) for process in (master, *workers)]
        finally:
            proxy.close()
        truth = server.stats()
    outputs = {path.name: path.read_text() for path in tmp_path.iterdir() if path.suffix in (".out", ".err")}
    _assert_no_secret(outputs)
    assert codes == [0, 0], outputs["master.err"][-3000:]
    assert truth["connections_accepted"] == 2 and truth["messages_received"] > 0
    tunnelled = b"".join(proxy.tunnelled).decode("latin-1")
    assert tunnelled.count(f"GET /ws?token={SECRET} HTTP/1.1") == 2


@pytest.mark.slow
def test_a_target_typed_in_the_web_uis_start_form_is_concealed_from_the_answer_on(tmp_path):
    proxy = ConnectProxy()
    locustfile = tmp_path / "secret_locustfile.py"
    locustfile.write_text(LOCUSTFILE.format(host="", headers=repr(SECRET_HEADERS), proxy=proxy.url))
    with run_server_process() as server:
        target = server.url.replace("ws://", f"ws://user:{SECRET}@") + f"?token={SECRET}"
        process = LocustProcess("-f", str(locustfile))
        web = process.web_url
        try:

            def up() -> bool:
                try:
                    return bool(_get(f"{web}/")[0])
                except OSError:
                    return False

            wait_for(up, timeout=30, interval=0.2, message="the web UI", processes=[process])
            form = urllib.parse.urlencode({"user_count": 1, "spawn_rate": 1, "host": target}).encode()
            with urllib.request.urlopen(f"{web}/swarm", data=form, timeout=10) as response:
                answer = response.read().decode()
            wait_for(lambda: server.stats()["messages_received"] > 0, timeout=20, message="an echo")
            page = _get(f"{web}/")[0].decode()
        finally:
            process.stop(timeout=20)
            proxy.close()
    outputs = {"POST /swarm": answer, "GET /": page, "stdout": process.stdout, "stderr": process.stderr}
    _assert_no_secret(outputs)
    shown = server.url.replace("ws://", "ws://***@") + "?token=***"
    assert json.loads(answer)["host"] == shown and shown in page
    assert f"GET /ws?token={SECRET} HTTP/1.1" in b"".join(proxy.tunnelled).decode("latin-1")
