"""
A lean gevent echo loop: wslocust's codec on gevent sockets, no statistics.

The floor the ``peers`` workload measures wslocust against (its target
2: "≥ 0.85x a lean gevent loop with the same codec and no statistics"). It is
a fixed script, not tuned alongside wslocust: one greenlet per connection,
the handshake built and checked by ``wslocust.codec.handshake``, then
``ClientProtocol.send_text`` → ``sendall`` → ``recv`` →
``ClientProtocol.receive_data`` until the echo is back, and a plain integer
incremented. No Locust, no events, no timers, no per-message bookkeeping.

Protocol with the parent process, on stdout (as ``echo_clients.py``):

- ``READY {"connections": n, "failed": k}`` once every connection attempt ended;
- ``COUNT {"echoes": n, "failures": k}`` on each SIGUSR1;
- SIGTERM, SIGINT or ``--max-seconds`` stop it.

Run: ``python benchmarks/lean_loop.py ws://127.0.0.1:PORT/ [--connections 100] [--size 64]``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

__all__ = ["main"]

CONNECT_TIMEOUT = 10.0
RECEIVE_SIZE = 65536


def emit(tag: str, data: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {json.dumps(data)}\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="ws://127.0.0.1:PORT/")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (ASCII text)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="exit after this long, whatever happens")
    args = parser.parse_args(argv)

    import gevent
    import gevent.event
    import gevent.pool
    from gevent import socket

    from wslocust.codec.handshake import build_request, generate_key, parse_response, validate_response
    from wslocust.codec.protocol import ClientProtocol
    from wslocust.codec.uri import parse_uri

    target = parse_uri(args.url)
    stopping = gevent.event.Event()
    counts = {"echoes": 0, "failures": 0, "connected": 0, "connect_failed": 0}
    errors: list[str] = []
    payload = "x" * args.size

    def report() -> None:
        emit("COUNT", {**counts, "first_error": errors[0] if errors else None})

    def connect() -> tuple[Any, ClientProtocol] | None:
        try:
            sock = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            key = generate_key()
            sock.sendall(build_request(host=target.host_header, resource=target.resource, key=key))
            buffer = b""
            while (parsed := parse_response(buffer)) is None:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                buffer += chunk
            validate_response(parsed[0], key)
            sock.settimeout(None)
        except Exception as exc:  # noqa: BLE001  counted and reported
            counts["connect_failed"] += 1
            errors.append(f"{type(exc).__name__}: {exc}")
            return None
        counts["connected"] += 1
        return sock, ClientProtocol()

    def loop(sock: Any, protocol: ClientProtocol) -> None:
        send_text, receive_data, sendall, recv = protocol.send_text, protocol.receive_data, sock.sendall, sock.recv
        try:
            while not stopping.is_set():
                sendall(send_text(payload))
                while True:
                    data = recv(RECEIVE_SIZE)
                    if not data:
                        raise ConnectionError("the server closed the connection")
                    if receive_data(data):
                        break
                counts["echoes"] += 1
        except Exception as exc:  # noqa: BLE001
            if not stopping.is_set():
                counts["failures"] += 1
                errors.append(f"{type(exc).__name__}: {exc}")

    gevent.signal_handler(signal.SIGUSR1, report)
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    gevent.signal_handler(signal.SIGINT, stopping.set)
    opened = [c for c in gevent.pool.Pool(200).imap_unordered(lambda _: connect(), range(args.connections)) if c]
    emit("READY", {"connections": counts["connected"], "failed": counts["connect_failed"]})
    loops = [gevent.spawn(loop, sock, protocol) for sock, protocol in opened]
    stopping.wait(args.max_seconds)
    stopping.set()
    for sock, _ in opened:
        sock.close()
    gevent.joinall(loops, timeout=2.0)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
