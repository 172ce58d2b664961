"""
Closed-loop echo generators run by ``echo_throughput.py``, one per process.

Each variant opens ``--connections`` connections, each driven by its own
greenlet: send a text message of ``--size`` bytes, wait for the echo, repeat.
No Locust events are fired; the ``wslocust-user`` variant, a real Locust run,
is a generated locustfile instead (see ``echo_throughput.py``).

- ``websocket-client``: ``websocket.WebSocket()`` with websocket-client's own
  framing and blocking ``recv()``, under gevent's monkey patching.
- ``wslocust-connection``: :class:`wslocust.transport.connection.Connection`, one
  receiving greenlet per connection; ``on_message`` sets a
  :class:`gevent.event.Event` the sending greenlet waits on.

Protocol with the parent process, on stdout, one line each:

- ``READY {"connections": n, "failed": k}`` once every connection attempt ended;
  the closed loops start then.
- ``COUNT {"echoes": n, "failures": k}`` on each SIGUSR1: cumulative counts.
- SIGTERM or SIGINT stops the process, and so does ``--max-seconds``.

Run: ``python benchmarks/echo_clients.py VARIANT ws://127.0.0.1:PORT/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["VARIANTS", "main"]

VARIANTS = ("websocket-client", "wslocust-connection")

CONNECT_TIMEOUT = 10.0
ECHO_TIMEOUT = 10.0


class Counts:
    """Cumulative counts of one process: greenlets only, so no locking."""

    def __init__(self) -> None:
        self.echoes = 0
        self.failures = 0
        self.connected = 0
        self.connect_failed = 0
        self.first_error: str | None = None

    def fail(self, error: BaseException) -> None:
        self.failures += 1
        if self.first_error is None:
            self.first_error = f"{type(error).__name__}: {error}"


def emit(tag: str, data: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {json.dumps(data)}\n")
    sys.stdout.flush()


# Variants: each returns (connect, loop, close) for one connection ------------

Client = tuple[Callable[[], None], Callable[[], None], Callable[[], None]]


def websocket_client(url: str, payload: str, counts: Counts, stopping: Any) -> Client:
    import websocket

    ws = websocket.WebSocket()

    def connect() -> None:
        ws.connect(url, timeout=CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]
        ws.settimeout(ECHO_TIMEOUT)

    def loop() -> None:
        send, recv = ws.send, ws.recv
        try:
            while not stopping.is_set():
                send(payload)
                recv()
                counts.echoes += 1
        except Exception as exc:  # noqa: BLE001  the benchmark counts and reports every failure
            if not stopping.is_set():
                counts.fail(exc)

    def close() -> None:
        ws.shutdown()  # type: ignore[no-untyped-call]

    return connect, loop, close


def wslocust_connection(url: str, payload: str, counts: Counts, stopping: Any) -> Client:
    import gevent
    import gevent.event

    from wslocust.codec.uri import parse_uri
    from wslocust.transport.connection import Connection

    echoed = gevent.event.Event()

    def on_message(message: Any, received_at: float) -> None:
        echoed.set()

    connection = Connection(parse_uri(url), on_message=on_message)

    def connect() -> None:
        connection.open(timeout=CONNECT_TIMEOUT)
        gevent.spawn(connection.receive_forever)

    def loop() -> None:
        send_text, clear, wait = connection.send_text, echoed.clear, echoed.wait
        try:
            while not stopping.is_set():
                clear()
                send_text(payload)
                if not wait(ECHO_TIMEOUT):
                    if not stopping.is_set():
                        counts.fail(TimeoutError(f"no echo within {ECHO_TIMEOUT:g} s"))
                    return
                counts.echoes += 1
        except Exception as exc:  # noqa: BLE001
            if not stopping.is_set():
                counts.fail(exc)

    def close() -> None:
        connection.abort()

    return connect, loop, close


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("url", help="ws://127.0.0.1:PORT/")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (ASCII text)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="exit after this long, whatever happens")
    args = parser.parse_args(argv)

    # Before anything imports socket: websocket-client must get gevent's.
    from gevent import monkey

    monkey.patch_all()

    import gevent
    import gevent.event
    import gevent.pool

    stopping = gevent.event.Event()
    counts = Counts()
    factory = websocket_client if args.variant == "websocket-client" else wslocust_connection
    payload = "x" * args.size

    def report() -> None:
        emit("COUNT", {"echoes": counts.echoes, "failures": counts.failures, "first_error": counts.first_error})

    gevent.signal_handler(signal.SIGUSR1, report)
    gevent.signal_handler(signal.SIGTERM, stopping.set)
    gevent.signal_handler(signal.SIGINT, stopping.set)

    clients = [factory(args.url, payload, counts, stopping) for _ in range(args.connections)]

    def connect(client: Client) -> Client | None:
        try:
            client[0]()
        except Exception as exc:  # noqa: BLE001
            counts.connect_failed += 1
            counts.fail(exc)
            return None
        counts.connected += 1
        return client

    opened = [client for client in gevent.pool.Pool(200).imap_unordered(connect, clients) if client]
    emit("READY", {"connections": counts.connected, "failed": counts.connect_failed, "first_error": counts.first_error})

    loops = [gevent.spawn(client[1]) for client in opened]
    stopping.wait(args.max_seconds)
    stopping.set()
    gevent.joinall(loops, timeout=2.0)
    gevent.killall(loops, block=False)
    for client in opened:
        with contextlib.suppress(Exception):  # closing a connection that already failed
            client[2]()
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
