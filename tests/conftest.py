"""
Fixtures shared by the tests.

The tests run in-process servers and users as greenlets beside blocking
clients (websocket-client, urllib): gevent must patch the standard library
before anything imports it, as Locust does when a locustfile is loaded.
``import wslocust`` no longer imports Locust (its public names load on first
use), so this file does it, first, whatever test file runs alone.
"""

import locust  # noqa: F401  isort:skip  # gevent's monkey patching, before socket is imported anywhere

import socket
import sys

import pytest


@pytest.fixture(autouse=True)
def _no_locust_process_outlives_its_test():
    """Every Locust run a test started ends with the test: kill (with its group) whatever still runs."""
    yield
    locust_process = sys.modules.get("locust_process")  # imported by any test that started one
    if locust_process is not None:
        locust_process.kill_leftovers()


@pytest.fixture
def server():
    """The reference server in this process, on a free loopback port."""
    from wslocust.server import ServerConfig, create_server

    server = create_server(ServerConfig(host="127.0.0.1", port=0))
    server.start()
    yield server
    server.stop(timeout=1)


@pytest.fixture
def unused_port():
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def self_signed_cert(tmp_path_factory):
    """A self-signed certificate and key for 127.0.0.1 and localhost, made with openssl."""
    import subprocess

    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)
