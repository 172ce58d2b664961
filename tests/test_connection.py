"""The gevent connection layer against real servers: proxies, TLS, error translation."""

from __future__ import annotations

import socket
import subprocess
import sys

import gevent
import gevent.socket
import pytest
from gevent.server import StreamServer
from helpers import REPO_ROOT, wait_for

from wslocust.codec.uri import parse_uri
from wslocust.exceptions import (
    ConfigurationError,
    ConnectError,
    ConnectionRefused,
    ConnectTimeout,
    DNSError,
    TLSError,
)
from wslocust.server import ServerConfig, create_server
from wslocust.transport.connection import Connection, Proxy
from wslocust.transport.tls import ssl_context


def open_connection(url: str, **options) -> tuple[Connection, list]:
    received: list = []
    connection = Connection(
        parse_uri(url), on_message=lambda message, at: received.append(message)
    )
    connection.open(timeout=options.pop("timeout", 5), **options)
    gevent.spawn(connection.receive_forever)
    return connection, received


class ConnectProxy:
    """A minimal HTTP CONNECT proxy that records the requests it tunnels."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[bytes] = []
        self.server = StreamServer(("127.0.0.1", 0), self.handle)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def handle(self, client: socket.socket, address) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        self.requests.append(head)
        if self.status != 200:
            client.sendall(
                f"HTTP/1.1 {self.status} No\r\nContent-Length: 0\r\n\r\n".encode()
            )
            return
        host, port = head.split(b" ")[1].rsplit(b":", 1)
        # gevent's socket: this process is not monkey-patched, and a blocking recv would stop every greenlet.
        upstream = gevent.socket.create_connection((host.decode(), int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pumps = [
            gevent.spawn(self.pump, client, upstream),
            gevent.spawn(self.pump, upstream, client),
        ]
        gevent.joinall(pumps, count=1)
        upstream.close()

    @staticmethod
    def pump(source: socket.socket, target: socket.socket) -> None:
        while data := source.recv(65536):
            target.sendall(data)


def test_a_connection_tunnels_through_an_http_proxy_with_credentials(server):
    proxy = ConnectProxy()
    try:
        connection, received = open_connection(
            server.url,
            proxy=Proxy.from_url(proxy.url.replace("http://", "http://user:p%40ss@")),
        )
        connection.send_text("through the tunnel")
        wait_for(lambda: received == ["through the tunnel"])
        connection.close()
    finally:
        proxy.server.stop()
    [request] = proxy.requests
    assert request.startswith(f"CONNECT 127.0.0.1:{server.port} HTTP/1.1\r\n".encode())
    assert b"Proxy-Authorization: Basic dXNlcjpwQHNz\r\n" in request  # user:p@ss


def test_a_proxy_refusal_is_a_connect_error_naming_the_proxy(server):
    proxy = ConnectProxy(status=407)
    try:
        with pytest.raises(
            ConnectError, match=r"^proxy 127\.0\.0\.1:\d+ refused the tunnel: HTTP 407$"
        ):
            open_connection(server.url, proxy=Proxy.from_url(proxy.url))
    finally:
        proxy.server.stop()


def test_a_connect_request_brackets_an_ipv6_target_and_hides_the_credentials_from_repr():
    proxy = Proxy.from_url("http://user:pw@proxy.example:3128")
    assert proxy.connect_request("::1", 9000) == (
        b"CONNECT [::1]:9000 HTTP/1.1\r\nHost: [::1]:9000\r\n"
        b"Proxy-Authorization: Basic dXNlcjpwdw==\r\n\r\n"  # user:pw
    )
    assert repr(proxy) == "Proxy(host='proxy.example', port=3128, authorization=***)"
    assert Proxy.from_url("http://proxy.example").connect_request("h", 80) == (
        b"CONNECT h:80 HTTP/1.1\r\nHost: h:80\r\n\r\n"
    )


@pytest.mark.parametrize(
    "url", ["socks5://127.0.0.1:1080", "http://", "http://host:notaport"]
)
def test_an_invalid_proxy_url_is_a_configuration_error(url):
    with pytest.raises(
        ConfigurationError, match="use http://\\[user:password@\\]host:port"
    ):
        Proxy.from_url(url)


def test_refused_unresolvable_and_silent_targets_are_told_apart(unused_port):
    with pytest.raises(
        ConnectionRefused, match=f"^connection refused by 127.0.0.1:{unused_port}$"
    ):
        open_connection(f"ws://127.0.0.1:{unused_port}/ws")
    with pytest.raises(DNSError, match="^DNS lookup failed for no-such-host.invalid$"):
        open_connection("ws://no-such-host.invalid/ws")
    silent = StreamServer(("127.0.0.1", 0), lambda sock, address: gevent.sleep(5))
    silent.start()
    try:
        with pytest.raises(
            ConnectTimeout, match=r"^no connection within 0\.2 s \(connect timeout\)$"
        ):
            open_connection(f"ws://127.0.0.1:{silent.server_port}/ws", timeout=0.2)
    finally:
        silent.stop()


def test_an_address_is_connected_to_without_a_lookup_and_a_name_is_looked_up(server, monkeypatch):
    # gevent looks every name up in its thread pool, literal addresses too: a thread hand-off per
    # connect. A name is still looked up (here the lookup says so).
    def lookup(host, *args, **kwargs):
        raise AssertionError(f"looked up {host}")

    monkeypatch.setattr(gevent.socket, "getaddrinfo", lookup)
    connection, received = open_connection(f"ws://127.0.0.1:{server.port}/ws")
    connection.send_text("no lookup")
    wait_for(lambda: received == ["no lookup"])
    connection.close()
    with pytest.raises(AssertionError, match="^looked up localhost$"):
        open_connection(f"ws://localhost:{server.port}/ws")


def test_ipv6_literal_urls_work():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        server = create_server(ServerConfig(host="::1", port=0))
        server.start()
    except OSError as exc:
        pytest.skip(f"cannot listen on [::1]: {exc}")
    try:
        connection, received = open_connection(f"ws://[::1]:{server.port}/ws")
        connection.send_binary(b"v6")
        wait_for(lambda: received == [b"v6"])
        connection.close()
    finally:
        server.stop(timeout=1)


@pytest.fixture
def tls_server(self_signed_cert):
    cert, key = self_signed_cert
    server = create_server(ServerConfig(host="127.0.0.1", port=0, certfile=cert, keyfile=key))
    server.start()
    yield server
    server.stop(timeout=1)


def test_wss_verifies_certificates_by_default(tls_server):
    assert tls_server.url.startswith("wss://")
    with pytest.raises(TLSError, match="^TLS certificate verification failed: self-signed certificate$"):
        open_connection(tls_server.url)


def test_wss_with_verification_off_works_and_says_so_once(tls_server, caplog):
    connection, received = open_connection(tls_server.url, verify_tls=False)
    connection.send_text("secret")
    wait_for(lambda: received == ["secret"])
    connection.close()
    other, _ = open_connection(tls_server.url, verify_tls=False)
    other.close()
    warnings = [r for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert len(warnings) <= 1  # once per process: an earlier test may have logged it already
    assert ssl_context(False) is ssl_context(False)  # one context per process, not per connection


# A process that never imported Locust: its standard library is not monkey-patched.
UNPATCHED_TLS_HANDSHAKE = """
import sys
import gevent
from gevent.server import StreamServer
from wslocust.codec.uri import parse_uri
from wslocust.exceptions import ConnectTimeout
from wslocust.transport.connection import Connection

silent = StreamServer(("127.0.0.1", 0), lambda sock, address: gevent.sleep(30))
silent.start()
connection = Connection(parse_uri(f"wss://127.0.0.1:{silent.server_port}/"), on_message=print)
try:
    connection.open(timeout=0.5)
except ConnectTimeout as exc:
    print(exc, "locust" in sys.modules)
"""


def test_a_tls_handshake_waits_in_the_event_loop_without_monkey_patching():
    # With the standard library's context, the handshake would block the whole process
    # (the connect timeout included) until the silent server let go.
    done = subprocess.run(
        [sys.executable, "-c", UNPATCHED_TLS_HANDSHAKE],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=20, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "no connection within 0.5 s (connect timeout) False\n"), done.stderr
