"""
Hostile WebSocket servers for ``tests/test_hostile_servers.py``: a second, independent set beside
``tests/fault_servers.py`` (issue 13, "How to test it"), sharing no code with it nor with wslocust.

:class:`HostileServer` is a gevent ``StreamServer`` on 127.0.0.1, port 0, in the test's process (a
greenlet per connection), that speaks HTTP and RFC 6455 by hand on the raw socket. The first segment
of the request path chooses the behaviour:

=================  ======================================================================================
path               behaviour
=================  ======================================================================================
``/fragments``     echoes each message in four fragments, a zero-length one among them, with a ping
                   (payload ``hp-N``) between each two; checks that every pong carries its ping's payload
``/quote-reject``  rejects the upgrade with 403: the reason phrase and the body quote the whole request,
                   as sent and URL-decoded, and the decoded ``Basic`` credentials
``/quote-close``   upgrades, then answers the first message with close 1008 whose reason quotes one
                   secret of the request (the next of :meth:`Request.quotes` at each connection)
``/never-close``   upgrades and echoes; never answers the client's close frame and keeps TCP open
                   until the client drops it
``/slowloris``     answers the upgrade with a correct 101, one byte every ``interval`` seconds (query;
                   default 0.1), until the client drops the connection
=================  ======================================================================================

It counts what it did by path (:meth:`HostileServer.counts`): these are the figures the tests
compare with Locust's.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import time
import urllib.parse
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import gevent
from gevent.server import StreamServer

__all__ = ["HostileServer", "Request"]

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# RFC 6455 §4.2.2, spelled out here so that nothing is shared with the client under test.
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_PATIENCE = 30.0
"""No connection waits longer than this for the client, whatever the test does."""


@dataclass
class Request:
    """An upgrade request as it came: its bytes, its target and its headers (lower-case names)."""

    raw: bytes
    target: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    def quotes(self) -> list[str]:
        """
        Every secret-bearing part of the request, as a rude server would quote it: the request line as
        sent (percent-encoded) and decoded, and each header line; for ``Basic`` credentials also the
        decoded ``user:password`` and the password alone.
        """
        head = self.raw.decode("latin-1").split("\r\n")
        quoted = [head[0], urllib.parse.unquote(head[0])]
        quoted += [line for line in head[1:] if line and not line.lower().startswith(("host:", "sec-websocket"))]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "basic":
            decoded = base64.b64decode(token).decode("latin-1")
            quoted += [f"basic credentials {decoded}", f"password {decoded.partition(':')[2]}"]
        return quoted


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for the client's Sec-WebSocket-Key."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _WEBSOCKET_GUID).digest()).decode("ascii")


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """An unmasked frame, as a server sends it (RFC 6455 §5.2)."""
    first = (0x80 if fin else 0) | opcode
    size = len(payload)
    if size < 126:
        return bytes([first, size]) + payload
    if size < 2**16:
        return bytes([first, 126]) + struct.pack("!H", size) + payload
    return bytes([first, 127]) + struct.pack("!Q", size) + payload


class _Wire:
    """The raw socket of one connection: the request head, then the client's (masked) frames."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def read_head(self) -> Request | None:
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                return None
        raw, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])
        }
        return Request(raw + b"\r\n\r\n", lines[0].split(" ")[1], headers)

    def _exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            if not self._fill():
                return None
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def read_frame(self) -> tuple[bool, int, bytes] | None:
        """(fin, opcode, unmasked payload) of the client's next frame; None at EOF."""
        head = self._exactly(2)
        if head is None:
            return None
        size = head[1] & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._exactly(2) or b"\0\0")[0]
        elif size == 127:
            size = struct.unpack("!Q", self._exactly(8) or bytes(8))[0]
        mask = self._exactly(4) if head[1] & 0x80 else b"\0\0\0\0"
        payload = self._exactly(size)
        if mask is None or payload is None:
            return None
        unmasked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload)) if any(mask) else payload
        return bool(head[0] & 0x80), head[0] & 0x0F, unmasked

    def drain_until_eof(self) -> None:
        """Read and discard everything until the client ends TCP."""
        while self._fill():
            self.buffer = b""


class HostileServer(StreamServer):
    """
    The hostile server (see the module's table), started on a free loopback port.

    Attributes:
        held: for ``/slowloris``, the seconds each connection was held from its request until
            the client dropped it.
        close_wait: for ``/never-close``, the seconds from each client close frame until the
            client dropped TCP.
    """

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), self._serve)
        self._counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._connections = 0
        self.held: list[float] = []
        self.close_wait: list[float] = []

    def url(self, target: str, userinfo: str = "") -> str:
        """``ws://[userinfo@]127.0.0.1:PORT`` + ``target``."""
        return f"ws://{userinfo + '@' if userinfo else ''}127.0.0.1:{self.server_port}{target}"

    def counts(self, path: str) -> Counter[str]:
        """What the server did on ``path`` (without the query)."""
        return self._counts[path]

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every connection has ended; False if one still runs after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._connections and time.monotonic() < deadline:
            gevent.sleep(0.02)
        return not self._connections

    # One connection ---------------------------------------------------------------------

    def _serve(self, sock: socket.socket, _address: object) -> None:
        self._connections += 1
        sock.settimeout(_PATIENCE)
        wire = _Wire(sock)
        try:
            request = wire.read_head()
            if request is None:
                return
            counts = self._counts[request.path]
            counts["connections"] += 1
            behaviour = getattr(self, "_" + request.path.strip("/").split("/")[0].replace("-", "_"), None)
            if behaviour is None:
                sock.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                return
            behaviour(wire, request, counts)
        except OSError:
            pass  # the client went away: what was counted stands
        finally:
            sock.close()
            self._connections -= 1

    def _upgrade(self, wire: _Wire, request: Request) -> None:
        key = request.headers["sec-websocket-key"]
        wire.sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode("ascii")
        )

    def _answer_close(self, wire: _Wire, payload: bytes, counts: Counter[str]) -> None:
        """The client's close frame: count its code, echo it (§5.5.1) and end TCP first (§7.1.1)."""
        counts[f"client_close_{struct.unpack('!H', payload[:2])[0] if len(payload) >= 2 else 1005}"] += 1
        wire.sock.sendall(server_frame(OP_CLOSE, payload[:2]))

    def _fragments(self, wire: _Wire, request: Request, counts: Counter[str]) -> None:
        self._upgrade(wire, request)
        pings: set[bytes] = set()
        while (frame := wire.read_frame()) is not None:
            _, opcode, payload = frame
            if opcode == OP_CLOSE:
                self._answer_close(wire, payload, counts)
                return
            if opcode == OP_PONG:
                counts["pongs_received"] += 1
                if payload in pings:
                    pings.discard(payload)
                else:
                    counts["pongs_unmatched"] += 1
                continue
            if opcode == OP_PING:
                wire.sock.sendall(server_frame(OP_PONG, payload))
                continue
            counts["messages_received"] += 1
            third = max(1, len(payload) // 3)
            parts = [payload[:third], b"", payload[third : 2 * third], payload[2 * third :]]
            out = b""
            for index, part in enumerate(parts):
                if index:
                    ping = f"hp-{counts['pings_sent']}".encode()
                    pings.add(ping)
                    counts["pings_sent"] += 1
                    out += server_frame(OP_PING, ping)
                out += server_frame(opcode if index == 0 else OP_CONTINUATION, part, fin=index == len(parts) - 1)
            wire.sock.sendall(out)
            counts["messages_sent"] += 1

    def _quote_reject(self, wire: _Wire, request: Request, counts: Counter[str]) -> None:
        quotes = request.quotes()
        reason = "Forbidden, you sent: " + " | ".join(quotes)
        # The body's first line (which a client may show) quotes every secret, the rest is the request.
        body = (" | ".join(quotes) + "\r\n\r\n").encode("latin-1") + request.raw
        wire.sock.sendall(
            f"HTTP/1.1 403 {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n\r\n".encode(
                "latin-1"
            )
            + body
        )
        counts["rejected"] += 1

    def _quote_close(self, wire: _Wire, request: Request, counts: Counter[str]) -> None:
        self._upgrade(wire, request)
        quotes = request.quotes()
        quote = quotes[(counts["connections"] - 1) % len(quotes)]
        while (frame := wire.read_frame()) is not None:
            _, opcode, payload = frame
            if opcode == OP_CLOSE:
                self._answer_close(wire, payload, counts)
                return
            if opcode in (OP_TEXT, OP_BINARY):
                counts["messages_received"] += 1
                # A close reason holds at most 123 bytes (§5.5): the quote, cut there.
                reason = f"you sent {quote}".encode("latin-1")[:123]
                wire.sock.sendall(server_frame(OP_CLOSE, struct.pack("!H", 1008) + reason))
                counts["closes_sent"] += 1
                # The client answers with its own close frame; then the server ends TCP (§7.1.1).
                while (frame := wire.read_frame()) is not None:
                    if frame[1] == OP_CLOSE:
                        counts["close_answered"] += 1
                        return
                return

    def _never_close(self, wire: _Wire, request: Request, counts: Counter[str]) -> None:
        self._upgrade(wire, request)
        while (frame := wire.read_frame()) is not None:
            _, opcode, payload = frame
            if opcode == OP_CLOSE:
                counts["client_closes_ignored"] += 1
                ignored_at = time.monotonic()
                wire.drain_until_eof()
                self.close_wait.append(time.monotonic() - ignored_at)
                return
            if opcode in (OP_TEXT, OP_BINARY):
                counts["messages_received"] += 1
                wire.sock.sendall(server_frame(opcode, payload))
                counts["messages_sent"] += 1

    def _slowloris(self, wire: _Wire, request: Request, counts: Counter[str]) -> None:
        interval = float(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.target).query)).get("interval", 0.1))
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(request.headers['sec-websocket-key'])}\r\n\r\n".encode("ascii")
        )
        started = time.monotonic()
        wire.sock.setblocking(False)
        try:
            for index in range(len(response)):
                try:
                    if wire.sock.recv(1) == b"":  # the client gave up and closed
                        break
                except BlockingIOError:
                    pass
                wire.sock.send(response[index : index + 1])
                counts["bytes_dribbled"] += 1
                gevent.sleep(interval)
            else:
                counts["upgrades_completed"] += 1
        except OSError:
            pass  # reset by the client
        self.held.append(time.monotonic() - started)
        counts["dropped_by_client"] += 1
