"""
The run-wide options that override a setting of the user classes' connections: the TLS files
(``--ws-tls-ca-file``, ``--ws-tls-cert-file``, ``--ws-tls-key-file``) and compression
(``--ws-compression``). Part of the one "wslocust" group of :mod:`wslocust.integration.options`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["TLS_FILE_OPTIONS", "add_connection_options"]

TLS_FILE_OPTIONS = {
    "tls_ca_file": ("--ws-tls-ca-file", "WS_TLS_CA_FILE"),
    "tls_cert_file": ("--ws-tls-cert-file", "WS_TLS_CERT_FILE"),
    "tls_key_file": ("--ws-tls-key-file", "WS_TLS_KEY_FILE"),
}
"""The TLS file options by the ``WebSocketUser`` setting each one overrides: (flag, environment variable). Their
files are checked at start (:mod:`wslocust.integration.target`), with the user classes' own."""

_TLS_FILE_HELP = {
    "tls_ca_file": "PEM file of the CA certificates that wss:// servers' certificates must chain to, instead of "
    "the system's (a private CA). Overrides the user classes' tls_ca_file.",
    "tls_cert_file": "PEM file of the client certificate presented to wss:// servers that ask for one (mutual "
    "TLS); it may hold the key too. Overrides the user classes' tls_cert_file.",
    "tls_key_file": "PEM file of the unencrypted private key of the client certificate, when that file does not "
    "hold it. Overrides the user classes' tls_key_file.",
}


def _compression(text: str) -> str:
    value = str(text).strip().lower()
    if value not in ("deflate", "off"):
        raise argparse.ArgumentTypeError(
            f"WS_COMPRESSION / --ws-compression: {text!r} is not a compression; use deflate or off"
        )
    return value


def add_connection_options(group: Any) -> None:
    """Add these options to the "wslocust" argument group."""
    for field, (flag, env) in TLS_FILE_OPTIONS.items():
        # Checked at start, together (a key must match its certificate): not by an argparse type.
        group.add_argument(flag, env_var=env, default=None, metavar="PEM", help=_TLS_FILE_HELP[field])
    group.add_argument(
        "--ws-compression",
        type=_compression,
        env_var="WS_COMPRESSION",
        default=None,
        metavar="deflate|off",
        help="deflate: offer permessage-deflate (RFC 7692) in every upgrade, and compress every message when "
        "the server accepts; off: offer nothing. Overrides the user classes' compression. Default: theirs "
        "(None: no offer).",
    )
