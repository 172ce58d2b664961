"""
What the interop servers (``tests/test_interop.py``) share: the behaviour each path asks for, the
counts each keeps, the command line, and the lines a test reads.

Each server is a real implementation from the package registries (``websockets_server.py``:
Python ``websockets``; ``tornado_server.py``: ``tornado``), run as a subprocess. Both behave alike:

====================================  ==========================================================
path (first segment)                  behaviour, after echoing every message back as it came
====================================  ==========================================================
``/push?count=N&interval=S``          sends N text messages ``push I``, one every S seconds
``/server-ping?count=N&interval=S``   sends N pings ``ping I``, one every S seconds
anything else                         echo only
====================================  ==========================================================

Every connection selects the subprotocol ``chat.wslocust`` when the client offers it (and none
otherwise). The counts are the server's own, by path (without the query): the test compares them
with Locust's. They are printed as one JSON object on stdout when the server gets SIGTERM, after
which it exits 0. It listens on 127.0.0.1, port 0, and prints ``PORT N`` (and ``TLS_PORT N`` with
``--certfile``/``--keyfile``: the same behaviour over TLS on a second port).

No wslocust code here: the truth must not come from the code under test.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import urllib.parse
from collections import Counter, defaultdict

__all__ = ["SUBPROTOCOL", "Counts", "Plan", "parse_arguments", "print_counts", "print_ports", "tls_context"]

SUBPROTOCOL = "chat.wslocust"
"""The one subprotocol the servers speak."""


class Counts:
    """Counters by path: ``connections``, ``text_received``, ``binary_received``, ``bytes_received``,
    ``text_sent``, ``binary_sent``, ``bytes_sent``, ``pushes_sent``, ``pings_sent``, ``pongs_received``,
    ``pings_received``, ``subprotocol <name or none>``, ``close <code>`` (the client's close code)."""

    def __init__(self) -> None:
        self.by_path: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def add(self, path: str, key: str, amount: int = 1) -> None:
        self.by_path[urllib.parse.urlsplit(path).path][key] += amount

    def received(self, path: str, message: str | bytes) -> None:
        """A data message came in."""
        self.add(path, "text_received" if isinstance(message, str) else "binary_received")
        self.add(path, "bytes_received", len(message.encode() if isinstance(message, str) else message))

    def sent(self, path: str, message: str | bytes) -> None:
        """A data message went out."""
        self.add(path, "text_sent" if isinstance(message, str) else "binary_sent")
        self.add(path, "bytes_sent", len(message.encode() if isinstance(message, str) else message))


class Plan:
    """What a path asks the server to do besides echoing: pushes or pings, how many, how often."""

    def __init__(self, path: str) -> None:
        parts = urllib.parse.urlsplit(path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        case = parts.path.strip("/").split("/")[0]
        self.pushes = int(query.get("count", 0)) if case == "push" else 0
        self.pings = int(query.get("count", 0)) if case == "server-ping" else 0
        self.interval = float(query.get("interval", 0.05))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certfile", help="serve TLS on a second port too, with this certificate")
    parser.add_argument("--keyfile", help="the certificate's private key")
    return parser.parse_args()


def tls_context(arguments: argparse.Namespace) -> ssl.SSLContext | None:
    if not arguments.certfile:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(arguments.certfile, arguments.keyfile)
    return context


def print_ports(port: int, tls_port: int | None) -> None:
    print(f"PORT {port}", flush=True)
    if tls_port is not None:
        print(f"TLS_PORT {tls_port}", flush=True)


def print_counts(counts: Counts) -> None:
    json.dump({path: dict(counter) for path, counter in counts.by_path.items()}, sys.stdout)
    print(flush=True)
