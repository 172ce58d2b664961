"""
TLS options of the client: a CA bundle of its own (``tls_ca_file``) and a client certificate
(``tls_cert_file``, ``tls_key_file``: mutual TLS), as class settings and as ``--ws-tls-*`` options.

The certificates are made here with the ``openssl`` command: a test CA, a server certificate it signs
for 127.0.0.1, a client certificate it signs, and a client certificate of another CA. The servers are
real: the reference server over TLS, and, for mutual TLS, :class:`MutualTlsFront`, a TLS front that
requires a client certificate of the test CA (the standard library's ``CERT_REQUIRED``) and pipes
what it decrypts to a plain reference server, whose counters are the truth.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest
from helpers import wait_for
from locust_process import run_locust

from wslocust.codec.uri import parse_uri
from wslocust.exceptions import TLSError
from wslocust.server import ServerConfig, create_server
from wslocust.transport.connection import Connection
from wslocust.transport.streams import TlsStream
from wslocust.transport.tls import TlsFileError, TlsFiles, ssl_context

# Certificates ----------------------------------------------------------------------------

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]  # fast to make, unlike RSA


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        "req", "-x509", *_EC, "-days", "2", "-subj", f"/CN=wslocust test {name}", "-keyout", key, "-out", cert,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return cert, key


def _make_leaf(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    cert, key, request, config = (folder / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr", ".ext"))
    config.write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n" + extensions
    )
    _openssl("req", *_EC, "-subj", f"/CN={name}", "-keyout", key, "-out", request)
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "2",
        "-out", cert, "-extfile", config,
    )  # fmt: skip
    return cert, key


class Pki:
    """The test certificates, as file paths (str)."""

    def __init__(self, folder: Path) -> None:
        ca = _make_ca(folder, "ca")
        other_ca = _make_ca(folder, "other-ca")
        server = _make_leaf(
            folder, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        )
        client = _make_leaf(folder, "client", ca, "extendedKeyUsage=clientAuth\n")
        stranger = _make_leaf(folder, "stranger", other_ca, "extendedKeyUsage=clientAuth\n")
        self.folder = folder
        self.ca = str(ca[0])
        self.server_cert, self.server_key = map(str, server)
        self.client_cert, self.client_key = map(str, client)
        self.stranger_cert, self.stranger_key = map(str, stranger)
        combined = folder / "client-with-key.pem"
        combined.write_text(client[0].read_text() + client[1].read_text())
        self.client_with_key = str(combined)
        encrypted = folder / "client-encrypted.key"
        _openssl("pkey", "-in", client[1], "-aes128", "-passout", "pass:secret", "-out", encrypted)
        self.client_key_encrypted = str(encrypted)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


# Servers ---------------------------------------------------------------------------------


@pytest.fixture
def tls_reference_server(pki):
    """The reference server over TLS, with the certificate of the test CA."""
    server = create_server(ServerConfig(host="127.0.0.1", port=0, certfile=pki.server_cert, keyfile=pki.server_key))
    server.start()
    yield server
    server.stop(timeout=1)


class MutualTlsFront:
    """
    A TLS front on 127.0.0.1 (port 0) that requires a client certificate of the test CA and pipes the
    decrypted bytes to ``upstream`` (a plain ``ws://`` server's port). Counts handshakes accepted and
    refused, with the reason of each refusal.
    """

    def __init__(self, pki: Pki, upstream: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki.ca)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_cert_chain(pki.server_cert, pki.server_key)
        self.upstream = upstream
        self.accepted = 0
        self.refused: list[str] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"wss://127.0.0.1:{self.port}/ws"
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept_forever, daemon=True)
        self._accepting.start()

    def _accept_forever(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            self._start(self._serve, client)

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(10)
        try:
            tls = self.context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.refused.append(getattr(exc, "reason", None) or type(exc).__name__)
            client.close()
            return
        self.accepted += 1
        upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
        self._sockets += [tls, upstream]
        self._start(self._pipe, upstream, tls)
        self._pipe(tls, upstream)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        source.settimeout(None)
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except (OSError, ValueError):
            pass
        for sock in (target, source):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
        for thread in [self._accepting, *self._threads]:
            thread.join(5)


@pytest.fixture
def mutual_tls_front(pki, server):
    """A :class:`MutualTlsFront` in front of the plain reference server of the ``server`` fixture."""
    front = MutualTlsFront(pki, server.port)
    yield front
    front.close()


def _open(url: str, kernel_timestamps: bool = True, **options) -> Connection:
    connection = Connection(parse_uri(url), on_message=lambda message, at: None, kernel_timestamps=kernel_timestamps)
    connection.open(timeout=5, **options)
    return connection


# The files, checked ----------------------------------------------------------------------


def _problem(files: TlsFiles) -> tuple[str, str]:
    with pytest.raises(TlsFileError) as caught:
        ssl_context(True, files)
    error = caught.value
    assert str(error) == f"{error.field} {error.path!r} {error.problem}" and "\n" not in str(error)
    return error.field, error.problem


def test_each_unusable_file_is_named_with_what_is_wrong_with_it(pki, tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    missing = str(tmp_path / "missing.pem")
    assert _problem(TlsFiles(tls_ca_file=missing)) == ("tls_ca_file", "does not exist")
    assert _problem(TlsFiles(tls_ca_file=str(tmp_path))) == ("tls_ca_file", "is not a file")
    assert _problem(TlsFiles(tls_ca_file=str(junk))) == ("tls_ca_file", "holds no PEM certificate")
    assert _problem(TlsFiles(tls_ca_file=pki.client_key)) == ("tls_ca_file", "holds no PEM certificate")
    assert _problem(TlsFiles(tls_cert_file=str(junk), tls_key_file=pki.client_key)) == (
        "tls_cert_file", "holds no PEM certificate",
    )  # fmt: skip
    assert _problem(TlsFiles(tls_cert_file=pki.client_cert, tls_key_file=missing)) == ("tls_key_file", "does not exist")
    assert _problem(TlsFiles(tls_cert_file=pki.client_cert, tls_key_file=pki.client_cert)) == (
        "tls_key_file", "holds no PEM private key",
    )  # fmt: skip
    assert _problem(TlsFiles(tls_cert_file=pki.client_cert)) == (
        "tls_cert_file", "holds no PEM private key (give the key's file as tls_key_file)",
    )  # fmt: skip
    assert _problem(TlsFiles(tls_cert_file=pki.client_cert, tls_key_file=pki.stranger_key)) == (
        "tls_key_file", f"is not the private key of {pki.client_cert!r}",
    )  # fmt: skip
    assert _problem(TlsFiles(tls_cert_file=pki.client_cert, tls_key_file=pki.client_key_encrypted)) == (
        "tls_key_file", "is an encrypted private key; give it unencrypted",
    )  # fmt: skip
    assert _problem(TlsFiles(tls_key_file=pki.client_key)) == (
        "tls_key_file", "is given without its certificate (tls_cert_file)",
    )  # fmt: skip


def test_an_unreadable_file_says_why(pki, tmp_path):
    if os.geteuid() == 0:  # root reads any file: one that no read succeeds on, even root's
        unreadable, why = Path("/proc/self/mem"), "Input/output error"
    else:
        unreadable, why = tmp_path / "ca.pem", "Permission denied"
        unreadable.write_text(Path(pki.ca).read_text())
        unreadable.chmod(0)
    assert _problem(TlsFiles(tls_ca_file=str(unreadable))) == ("tls_ca_file", f"cannot be read ({why})")


def test_good_files_make_one_context_per_configuration(pki):
    files = TlsFiles(pki.ca, pki.client_cert, pki.client_key)
    assert ssl_context(True, files) is ssl_context(True, TlsFiles(pki.ca, pki.client_cert, pki.client_key))
    assert ssl_context(True, files) is not ssl_context(True)
    assert ssl_context(True, TlsFiles(pki.ca, pki.client_with_key)) is not None  # the key inside the certificate file


# Connections -----------------------------------------------------------------------------


@pytest.mark.parametrize("kernel_timestamps", [True, False], ids=["tls-in-memory", "ssl-socket"])
def test_a_server_of_a_private_ca_is_verified_against_the_ca_file(pki, tls_reference_server, kernel_timestamps):
    url = tls_reference_server.url
    with pytest.raises(TLSError, match="^TLS certificate verification failed: unable to get local issuer certificate$"):
        _open(url, kernel_timestamps)
    connection = _open(url, kernel_timestamps, tls_files=TlsFiles(tls_ca_file=pki.ca))
    # The context of the CA file is what the TLS path in memory uses: the upgrade is timed by the kernel.
    assert isinstance(connection._stream, TlsStream) is kernel_timestamps
    assert connection.opened_by_kernel is kernel_timestamps
    connection.abort()
    # Another CA's bundle does not verify it.
    with pytest.raises(TLSError, match="unable to get local issuer certificate"):
        _open(url, tls_files=TlsFiles(tls_ca_file=pki.stranger_cert))


def test_mutual_tls_needs_a_client_certificate_of_the_servers_ca(pki, server, mutual_tls_front):
    trusted = TlsFiles(tls_ca_file=pki.ca)
    with pytest.raises(TLSError) as without:
        _open(mutual_tls_front.url, tls_files=trusted)
    assert str(without.value) == (
        "TLS handshake failed: the server requires a client certificate (tls_cert_file) "
        "(TLSV13_ALERT_CERTIFICATE_REQUIRED)"
    )
    with pytest.raises(TLSError) as stranger:
        _open(
            mutual_tls_front.url,
            tls_files=trusted._replace(tls_cert_file=pki.stranger_cert, tls_key_file=pki.stranger_key),
        )
    assert str(stranger.value) == (
        "TLS handshake failed: the server does not trust the client certificate's CA (TLSV1_ALERT_UNKNOWN_CA)"
    )
    connection = _open(
        mutual_tls_front.url, tls_files=trusted._replace(tls_cert_file=pki.client_cert, tls_key_file=pki.client_key)
    )
    assert connection.opened_by_kernel  # kernel timestamps over mutual TLS too
    connection.abort()
    wait_for(lambda: server.stats()["connections_accepted"] == 1)
    assert mutual_tls_front.accepted == 1 and len(mutual_tls_front.refused) == 2, mutual_tls_front.refused


# Real runs -------------------------------------------------------------------------------

LOCUSTFILE = """
from wslocust import WebSocketUser


class Secure(WebSocketUser):
    message_interval = 0.1
    reconnect_delay = 0.1
    max_reconnect_attempts = 1
{settings}
"""


def _run(tmp_path: Path, url: str, *args: str, settings: str = "", env: dict[str, str] | None = None):
    locustfile = tmp_path / "secure.py"
    locustfile.write_text(LOCUSTFILE.format(settings=settings))
    return run_locust(
        "-f", str(locustfile), "--headless", "-u", "3", "-r", "100", "-t", "3s", "--stop-timeout", "2",
        "--host", url, "--json", *args, env=env,
    )  # fmt: skip


def _error_rows(stderr: str) -> list[str]:
    report = stderr[stderr.index("Error report") :].splitlines()
    return [line for line in report[3:] if re.match(r"^\s*\d+\s+WS ", line)]


def _assert_echoes_equal_the_servers(result, truth: dict[str, float]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    stats = result.stats
    assert stats["connect"]["num_requests"] == truth["connections_accepted"] == 3
    assert stats["connect"]["num_failures"] == 0 and stats["echo"]["num_failures"] == 0
    assert stats["echo"]["num_requests"] > 3 * 10
    assert stats["echo"]["num_requests"] == truth["messages_received"] == truth["messages_sent"]


@pytest.mark.slow
def test_a_run_trusts_a_private_ca_given_by_option_and_refuses_the_server_without_it(
    pki, tls_reference_server, tmp_path
):
    url = tls_reference_server.url
    refused = _run(tmp_path, url)
    assert tls_reference_server.stats()["connections_accepted"] == 0
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    [row] = _error_rows(refused.stderr)
    assert "TLSError('TLS certificate verification failed: unable to get local issuer certificate')" in row
    assert "TLS failed" in refused.stderr  # the category of the results block

    trusted = _run(tmp_path, url, "--ws-tls-ca-file", pki.ca)
    _assert_echoes_equal_the_servers(trusted, tls_reference_server.stats())


@pytest.mark.slow
def test_a_run_behind_mutual_tls_fails_clearly_without_a_client_certificate_and_works_with_one(
    pki, server, mutual_tls_front, tmp_path
):
    settings = f"    tls_ca_file = {pki.ca!r}\n"
    refused = _run(tmp_path, mutual_tls_front.url, settings=settings)
    assert server.stats()["connections_accepted"] == 0 and mutual_tls_front.accepted == 0
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    rows = _error_rows(refused.stderr)
    assert len(rows) == 1, refused.stderr[refused.stderr.index("Error report") :]
    [row] = rows
    assert "the server requires a client certificate (tls_cert_file)" in row, row

    # The certificate and key from the environment, over the class's (none).
    env = {"WS_TLS_CERT_FILE": pki.client_cert, "WS_TLS_KEY_FILE": pki.client_key}
    trusted = _run(tmp_path, mutual_tls_front.url, settings=settings, env=env)
    _assert_echoes_equal_the_servers(trusted, server.stats())
    assert mutual_tls_front.accepted == 3


@pytest.mark.slow
@pytest.mark.parametrize(
    "where",
    ["class", "option", "environment"],
)
def test_a_key_that_is_not_the_certificates_stops_the_run_at_start_naming_it(pki, tmp_path, where):
    settings = f"    tls_cert_file = {pki.client_cert!r}\n"
    args: list[str] = []
    env: dict[str, str] = {}
    if where == "class":
        settings += f"    tls_key_file = {pki.stranger_key!r}\n"
        source = "Secure.tls_key_file"
    elif where == "option":
        args = ["--ws-tls-key-file", pki.stranger_key]
        source = "WS_TLS_KEY_FILE / --ws-tls-key-file"
    else:
        env = {"WS_TLS_KEY_FILE": pki.stranger_key}
        source = "WS_TLS_KEY_FILE / --ws-tls-key-file"
    result = _run(tmp_path, "wss://127.0.0.1:1/ws", *args, settings=settings, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"wslocust: {source}: {pki.stranger_key!r} is not the private key of {pki.client_cert!r}\n" in result.stderr
