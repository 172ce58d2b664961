"""
The interop server of Python ``websockets`` (its asyncio implementation): see ``common.py``.

Run: ``python tests/interop_servers/websockets_server.py [--certfile C --keyfile K]``.
"""

from __future__ import annotations

import asyncio
import signal

from common import SUBPROTOCOL, Counts, Plan, parse_arguments, print_counts, print_ports, tls_context
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Opcode

__all__ = ["CountingConnection"]

COUNTS = Counts()


class CountingConnection(ServerConnection):
    """A connection that counts the control frames it receives (the library answers pings itself)."""

    def process_event(self, event: object) -> None:
        opcode = getattr(event, "opcode", None)
        if opcode is Opcode.PING and self.request is not None:
            COUNTS.add(self.request.path, "pings_received")
        elif opcode is Opcode.PONG and self.request is not None:
            COUNTS.add(self.request.path, "pongs_received")
        super().process_event(event)  # type: ignore[arg-type]


def select_subprotocol(connection: ServerConnection, offered: list[str]) -> str | None:
    return SUBPROTOCOL if SUBPROTOCOL in offered else None


async def send_counted(connection: ServerConnection, path: str, message: str | bytes) -> None:
    await connection.send(message)
    COUNTS.sent(path, message)


async def push_or_ping(connection: ServerConnection, path: str, plan: Plan) -> None:
    for number in range(plan.pushes):
        await asyncio.sleep(plan.interval)
        await send_counted(connection, path, f"push {number}")
        COUNTS.add(path, "pushes_sent")
    for number in range(plan.pings):
        await asyncio.sleep(plan.interval)
        await connection.ping(f"ping {number}".encode())
        COUNTS.add(path, "pings_sent")


async def handle(connection: ServerConnection) -> None:
    assert connection.request is not None
    path = connection.request.path
    COUNTS.add(path, "connections")
    COUNTS.add(path, f"subprotocol {connection.subprotocol or 'none'}")
    for extension in connection.protocol.extensions:  # what the server agreed to, by its own account
        COUNTS.add(path, extension.name)
    background = asyncio.create_task(push_or_ping(connection, path, Plan(path)))
    try:
        async for message in connection:
            COUNTS.received(path, message)
            await send_counted(connection, path, message)
    except ConnectionClosed:
        pass
    finally:
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)
        COUNTS.add(path, f"close {connection.close_code}")


async def main() -> None:
    arguments = parse_arguments()
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    # No keepalive pings (they would be counted), messages up to 2 MiB (the client sends 1 MiB ones).
    options = {
        "ping_interval": None,
        "max_size": 2**21,
        "select_subprotocol": select_subprotocol,
        "create_connection": CountingConnection,
    }
    context = tls_context(arguments)
    async with serve(handle, "127.0.0.1", 0, **options) as plain:
        port = plain.sockets[0].getsockname()[1]
        if context is None:
            print_ports(port, None)
            await stop
        else:
            async with serve(handle, "127.0.0.1", 0, ssl=context, **options) as secure:
                print_ports(port, secure.sockets[0].getsockname()[1])
                await stop
    print_counts(COUNTS)


if __name__ == "__main__":
    asyncio.run(main())
