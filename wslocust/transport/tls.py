"""
The client TLS context, one per process and TLS configuration.

Creating an :class:`ssl.SSLContext` per connection costs about 1 ms and 100 KB,
which matters at 10K connections; every ``wss://`` connection of a process
shares the context built here for its configuration: verification on or off,
and the files of :class:`TlsFiles` (the CAs to trust, the client certificate of
mutual TLS).

They are gevent's contexts: the sockets they wrap wait for the TLS handshake and
for reads in the event loop, also where the standard library is not
monkey-patched (Locust patches it; a test or a benchmark may not), instead of
blocking every greenlet of the process. The same context serves both TLS paths of
:mod:`wslocust.transport.opening`: in memory (:class:`~wslocust.transport.streams.TlsStream`,
with kernel timestamps) and ``SSLSocket``.

The files are read and checked when a context is first built: a missing, unreadable or
malformed file, or a key that does not belong to its certificate, is a
:class:`TlsFileError` naming the file, never a failure of each connection.
"""

from __future__ import annotations

import logging
import os
import ssl
from typing import NamedTuple

from gevent import ssl as gevent_ssl

from wslocust.exceptions import ConfigurationError

__all__ = ["TlsFileError", "TlsFiles", "ssl_context"]

logger = logging.getLogger(__name__)


class TlsFiles(NamedTuple):
    """
    Where a client's trust and identity come from, as PEM files (``None``: not given).

    The field names are those of the :class:`~wslocust.user.websocket_user.WebSocketUser` settings.
    """

    tls_ca_file: str | None = None
    """The CA certificates that the server's certificate must chain to, instead of the system's."""
    tls_cert_file: str | None = None
    """The client certificate (chain) sent when the server asks for one (mutual TLS)."""
    tls_key_file: str | None = None
    """The unencrypted private key of ``tls_cert_file``; None when that file holds it."""


class TlsFileError(ConfigurationError):
    """
    A TLS file cannot be used.

    Attributes:
        field: the :class:`TlsFiles` field that names it (``"tls_ca_file"``...).
        path: the file, as given.
        problem: what is wrong with it, to follow the path: ``"does not exist"``...
    """

    def __init__(self, field: str, path: str, problem: str) -> None:
        super().__init__(f"{field} {path!r} {problem}")
        self.field = field
        self.path = path
        self.problem = problem


_NO_FILES = TlsFiles()
_ssl_contexts: dict[tuple[bool, TlsFiles], ssl.SSLContext] = {}
_warned_unverified = False


def ssl_context(verify: bool = True, files: TlsFiles | None = None) -> ssl.SSLContext:
    """
    Return the process-wide client SSL context of a TLS configuration.

    Args:
        verify: verify the server certificate and host name (the default).
            ``False`` accepts any certificate and logs a warning once.
        files: the CA bundle to trust and the client certificate and key to present; None: none.

    Returns:
        The same context for every call with the same arguments.

    Raises:
        TlsFileError: a file is missing, unreadable, not PEM, encrypted, or the key is not the
            certificate's (checked once: a context is built only from files that work).
    """
    global _warned_unverified
    files = files if files is not None else _NO_FILES
    context = _ssl_contexts.get((verify, files))
    if context is None:
        context = _default_client_context(files.tls_ca_file)
        _load_client_certificate(context, files)
        if not verify:
            if not _warned_unverified:
                logger.warning(
                    "TLS certificate verification is OFF (WebSocketUser.verify_tls = False): "
                    "any server, including an impostor, is accepted"
                )
                _warned_unverified = True
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        _ssl_contexts[verify, files] = context
    return context


def _default_client_context(ca_file: str | None) -> ssl.SSLContext:
    """A gevent context set up as :func:`ssl.create_default_context` sets up its own (``cafile`` included)."""
    defaults = ssl.create_default_context()
    context = gevent_ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    context.options = defaults.options
    context.verify_flags = defaults.verify_flags  # Python 3.13 adds strict X.509 checks
    context.minimum_version = defaults.minimum_version
    if defaults.keylog_filename:  # SSLKEYLOGFILE, for Wireshark
        context.keylog_filename = defaults.keylog_filename
    if ca_file is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return context
    # Only these CAs, as curl's --cacert and create_default_context(cafile=...): a private CA's servers
    # are verified against it, and a public certificate passed off as the service's is not accepted.
    _read_pem("tls_ca_file", ca_file, "CERTIFICATE", "no PEM certificate")
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise TlsFileError("tls_ca_file", ca_file, f"holds no valid PEM certificate ({_reason(exc)})") from None
    return context


def _load_client_certificate(context: ssl.SSLContext, files: TlsFiles) -> None:
    """Load the certificate and key of mutual TLS, after checking each file, so that the error names the bad one."""
    cert_file, key_file = files.tls_cert_file, files.tls_key_file
    if cert_file is None:
        if key_file is not None:
            raise TlsFileError("tls_key_file", key_file, "is given without its certificate (tls_cert_file)")
        return
    certificate = _read_pem("tls_cert_file", cert_file, "CERTIFICATE", "no PEM certificate")
    if key_file is None:
        if "PRIVATE KEY-----" not in certificate:
            raise TlsFileError(
                "tls_cert_file", cert_file, "holds no PEM private key (give the key's file as tls_key_file)"
            )
        key_field, key_path, key = "tls_cert_file", cert_file, certificate
    else:
        key_field, key_path = "tls_key_file", key_file
        key = _read_pem(key_field, key_file, "PRIVATE KEY", "no PEM private key")
    if "BEGIN ENCRYPTED PRIVATE KEY" in key or "Proc-Type: 4,ENCRYPTED" in key:  # PKCS#8, or OpenSSL's own
        raise TlsFileError(key_field, key_path, "is an encrypted private key; give it unencrypted")
    try:
        context.load_cert_chain(cert_file, key_file, password=_no_password)
    except _EncryptedKey:
        raise TlsFileError(key_field, key_path, "is an encrypted private key; give it unencrypted") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise TlsFileError(key_field, key_path, f"is not the private key of {cert_file!r}") from None
        raise TlsFileError(
            "tls_cert_file", cert_file, f"is not a valid PEM certificate and key ({_reason(exc)})"
        ) from None


def _read_pem(field: str, path: str, label: str, missing: str) -> str:
    """
    The text of a PEM file, checked: it exists, is a readable file and holds a ``-----BEGIN ...{label}-----``.

    Raises:
        TlsFileError: it does not, saying which way.
    """
    if not os.path.exists(path):
        raise TlsFileError(field, path, "does not exist")
    if not os.path.isfile(path):
        raise TlsFileError(field, path, "is not a file")
    try:
        with open(path, "rb") as file:
            text = file.read().decode("latin-1")
    except OSError as exc:
        raise TlsFileError(field, path, f"cannot be read ({exc.strerror})") from None
    if not any(
        line.startswith("-----BEGIN ") and line.rstrip().endswith(f"{label}-----") for line in text.splitlines()
    ):
        raise TlsFileError(field, path, f"holds {missing}")
    return text


class _EncryptedKey(Exception):
    """Raised by the password callback: a key that needs a passphrase (which would be asked on the terminal)."""


def _no_password() -> str:
    raise _EncryptedKey


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc)
