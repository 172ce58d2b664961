"""
The interop server of ``tornado`` (``tornado.websocket.WebSocketHandler``): see ``common.py``.

Run: ``python tests/interop_servers/tornado_server.py [--certfile C --keyfile K]``.
"""

from __future__ import annotations

import asyncio
import signal

import tornado.httpserver
import tornado.netutil
import tornado.web
import tornado.websocket
from common import SUBPROTOCOL, Counts, Plan, parse_arguments, print_counts, print_ports, tls_context

__all__ = ["CountingHandler"]

COUNTS = Counts()


class CountingHandler(tornado.websocket.WebSocketHandler):
    """Echoes, pushes or pings as its path says, and counts everything (see ``common.py``)."""

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None

    def open(self, *_: str) -> None:
        self.path = self.request.uri or "/"
        COUNTS.add(self.path, "connections")
        COUNTS.add(self.path, f"subprotocol {self.selected_subprotocol or 'none'}")
        self.background = asyncio.ensure_future(self.push_or_ping(Plan(self.path)))

    async def push_or_ping(self, plan: Plan) -> None:
        for number in range(plan.pushes):
            await asyncio.sleep(plan.interval)
            await self.send_counted(f"push {number}")
            COUNTS.add(self.path, "pushes_sent")
        for number in range(plan.pings):
            await asyncio.sleep(plan.interval)
            self.ping(f"ping {number}".encode())
            COUNTS.add(self.path, "pings_sent")

    async def send_counted(self, message: str | bytes) -> None:
        await self.write_message(message, binary=isinstance(message, bytes))
        COUNTS.sent(self.path, message)

    async def on_message(self, message: str | bytes) -> None:
        COUNTS.received(self.path, message)
        try:
            await self.send_counted(message)
        except tornado.websocket.WebSocketClosedError:
            pass

    def on_ping(self, data: bytes) -> None:
        COUNTS.add(self.path, "pings_received")

    def on_pong(self, data: bytes) -> None:
        COUNTS.add(self.path, "pongs_received")

    def on_close(self) -> None:
        self.background.cancel()
        COUNTS.add(self.path, f"close {self.close_code}")


async def main() -> None:
    arguments = parse_arguments()
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    # No keepalive pings (they would be counted); tornado's default message limit is 10 MiB.
    application = tornado.web.Application([(r"/.*", CountingHandler)], websocket_ping_interval=None)
    plain = tornado.httpserver.HTTPServer(application)
    [plain_socket] = tornado.netutil.bind_sockets(0, "127.0.0.1")
    plain.add_sockets([plain_socket])
    tls_port = None
    context = tls_context(arguments)
    if context is not None:
        secure = tornado.httpserver.HTTPServer(application, ssl_options=context)
        [secure_socket] = tornado.netutil.bind_sockets(0, "127.0.0.1")
        secure.add_sockets([secure_socket])
        tls_port = secure_socket.getsockname()[1]
    print_ports(plain_socket.getsockname()[1], tls_port)
    await stop
    print_counts(COUNTS)


if __name__ == "__main__":
    asyncio.run(main())
