"""
A misbehaving WebSocket server for the fault matrix (``tests/test_fault_matrix.py``).

:class:`FaultServer` listens on 127.0.0.1 (port 0) and serves each TCP
connection in a thread of its own, so it keeps working while a real ``locust``
subprocess runs against it. The request path chooses the fault:

=========================  ===========================================================
path                       behaviour of a faulty connection
=========================  ===========================================================
``/ok``                    none: a correct echo server
``/silent``                reads the upgrade request and never answers it
``/status/CODE``           answers the upgrade with ``HTTP CODE`` and closes
``/reject/KIND``           answers the upgrade with ``HTTP 400`` and the body KIND (:data:`REJECTIONS`): its
                           first line is the reason; the body comes after the head, in a write of its own
``/bad-accept``            answers 101 with a wrong ``Sec-WebSocket-Accept``
``/close/CODE``            on the first message, closes with CODE (reason ``fault CODE``), ``delay``
                           seconds later if given; ``/close/1006`` drops TCP without a close frame
``/close-keep-tcp``        right after the upgrade, sends close 1000, answers nothing more
                           and keeps the TCP connection open
``/frame/KIND``            answers the first message with the malformed frame KIND (:data:`MALFORMED`)
``/fragmented-ping``       echoes each message as three fragments with a ping in between (valid)
``/half-open``             upgrades, then reads everything and answers nothing: no echo, pong or close
``/slow``                  echoes each message ``delay`` seconds later
``/slow-upgrade``          answers the upgrade ``delay`` seconds late, then echoes
``/slow-pong``             answers each ping ``delay`` seconds late (``pongs_sent``), and the pings still
                           unanswered at the client's close before its close reply (``pongs_at_close``);
                           ``delay=inf``: only then
``/flood``                 sends ``size``-byte text messages as fast as the socket takes them
``/disorder``              of every ten messages, echoes the 3rd twice, the 5th after the 6th, never
                           the 8th, and the 9th ``delay`` seconds late (message integrity)
=========================  ===========================================================

Query parameters: ``n`` (the first ``n`` connections of the path are faulty,
later ones are correct echo connections, so that a reconnecting client
recovers and every failure can be counted; 0 or absent: all of them),
``size`` (``/frame/oversized``, ``/flood``), ``delay`` (``/close/CODE``, ``/slow``, ``/slow-upgrade``, ``/slow-pong``) and ``keep_tcp``
(``/frame/KIND``: after the client's close frame, keep TCP open until the client drops it).

The server counts what it did per request target, path and query
(:meth:`FaultServer.counts`): these are the figures the tests compare with
Locust's. Give each client class a target of its own. It also keeps each connection's upgrade
request headers (:meth:`FaultServer.request_headers`).
"""

from __future__ import annotations

import base64
import hashlib
import http
import socket
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable

__all__ = ["MALFORMED", "REJECTIONS", "FaultServer", "frame"]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# RFC 6455 §1.3; computed here rather than imported so that the fake server
# does not share code with the client under test.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

_IO_TIMEOUT = 30.0
"""No handler waits longer than this for the client, whatever happens to the test."""


_SUBPROTOCOL_REQUIRED = (
    b"Failed to open a WebSocket connection: missing Sec-WebSocket-Protocol header.\n\n"
    b"You cannot access a WebSocket server directly with a browser. You need a WebSocket client.\n"
)
_NGINX_PAGE = (
    b"<html>\r\n<head><title>400 Bad Request</title></head>\r\n<body>\r\n"
    b"<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent</center>\r\n"
    b"<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
REJECTIONS: dict[str, tuple[bytes, bytes, bool]] = {
    # As Python's websockets answers a client that offers no subprotocol when one is required.
    "subprotocol": (
        b"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
        + f"Content-Length: {len(_SUBPROTOCOL_REQUIRED)}\r\n\r\n".encode(),
        _SUBPROTOCOL_REQUIRED,
        False,
    ),
    # nginx's error page: its title repeats the status; the next line is the reason.
    "html": (
        b"Content-Type: text/html\r\nConnection: close\r\n" + f"Content-Length: {len(_NGINX_PAGE)}\r\n\r\n".encode(),
        _NGINX_PAGE,
        False,
    ),
    # A chunked body is not read on: its first chunk is quoted when it came with the head.
    "chunked": (
        b"Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        + b"1c\r\ncompression is not supported\r\n",
        b"0\r\n\r\n",
        False,
    ),
    # A Content-Length the body never reaches, on a connection kept open.
    "short": (b"Content-Type: text/plain\r\nContent-Length: 1000\r\n\r\n", b"upgrade refused: too many\n", True),
}
"""The 400 rejections of ``/reject/KIND``: what follows the status line, sent at once; what is sent 20 ms later;
and whether the connection is then kept open (until the client closes it)."""


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, length: int | None = None, mask: bytes = b""
) -> bytes:
    """
    A frame as a server would send it (unmasked unless ``mask`` is given).

    ``rsv`` is or-ed into the first byte (0x40, 0x20, 0x10); ``length`` is
    written in the header instead of the payload's real length (a lie).
    """
    size = len(payload) if length is None else length
    mask_bit = 0x80 if mask else 0
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 65536:
        head += bytes([mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + size.to_bytes(8, "big")
    if mask:
        payload = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return head + mask + payload


MALFORMED: dict[str, Callable[[int], bytes]] = {
    "reserved-opcode": lambda _: frame(0x3),
    "reserved-bits": lambda _: frame(OP_TEXT, b"x", rsv=0x40),
    "control-too-long": lambda _: frame(OP_PING, bytes(126)),
    "invalid-utf8": lambda _: frame(OP_TEXT, b"caf\xc3("),
    "masked": lambda _: frame(OP_TEXT, b"hi", mask=b"abcd"),
    "length-msb": lambda _: frame(OP_BINARY, length=2**63),
    # The header promises 1,000 bytes, 10 come, then the server closes TCP.
    "truncated": lambda _: frame(OP_BINARY, b"0123456789", length=1000),
    "oversized": lambda size: frame(OP_BINARY, bytes(size)),
    "oversized-fragments": lambda size: (
        frame(OP_TEXT, b"a" * (size // 2 + 1), fin=False) + frame(OP_CONT, b"a" * (size // 2 + 1))
    ),
}
"""Malformed frames (or frames over a size limit) by ``/frame/KIND``, built for a ``size``."""


def accept_value(key: str) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


class _Reader:
    """Reads a client's masked frames from a socket."""

    def __init__(self, sock: socket.socket, buffered: bytes = b"") -> None:
        self._sock = sock
        self._buffer = bytearray(buffered)

    def _exactly(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            chunk = self._sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read_frame(self) -> tuple[int, bytes] | None:
        """The next frame's opcode and unmasked payload; None at EOF."""
        head = self._exactly(2)
        if head is None:
            return None
        size = head[1] & 0x7F
        if size >= 126:
            extended = self._exactly(2 if size == 126 else 8)
            if extended is None:
                return None
            size = int.from_bytes(extended, "big")
        mask = self._exactly(4) if head[1] & 0x80 else b"\0\0\0\0"
        payload = self._exactly(size)
        if mask is None or payload is None:
            return None
        return head[0] & 0x0F, bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))


class FaultServer:
    """
    The misbehaving server: :meth:`start` it, point clients at :meth:`url`,
    read :meth:`counts` once :meth:`wait_idle` says every connection ended.

    Counters per request target (path and query): ``connections``, ``faults``
    (connections that misbehaved), ``upgrades`` (101 with a correct accept),
    ``messages_received`` and ``messages_sent`` (data messages; a fragmented
    one counts once), ``unanswered`` (messages received and never echoed),
    ``pings_sent``, ``pongs_received``, ``pings_received``,
    ``client_close_CODE`` (close frames from the client on correct
    connections, by code) and ``fault_client_close_CODE`` (the same on
    faulty ones: how the client told the server what went wrong).
    """

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.tcp_accepted = 0
        self._counts: dict[str, Counter[str]] = {}
        self._request_headers: dict[str, list[dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._active: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_forever, daemon=True)

    # Control -----------------------------------------------------------------

    def start(self) -> FaultServer:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop accepting and close every connection still open."""
        self._stopping.set()
        self._acceptor.join(timeout=5)
        self._listener.close()
        with self._lock:
            active = list(self._active)
        for sock in active:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no connection is open (their handlers have counted everything); True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._active:
                    return True
            time.sleep(0.02)
        return False

    def counts(self, target: str) -> Counter[str]:
        """A copy of the counters of ``target``, a path with its query string."""
        with self._lock:
            return Counter(self._counts.get(target, Counter()))

    def request_headers(self, target: str) -> list[dict[str, str]]:
        """The upgrade request headers of each connection to ``target`` (names as sent, values stripped), in order."""
        with self._lock:
            return [dict(headers) for headers in self._request_headers.get(target, [])]

    def total(self, key: str) -> int:
        """One counter summed over every path."""
        with self._lock:
            return sum(counts[key] for counts in self._counts.values())

    def _count(self, path: str, key: str, amount: int = 1) -> None:
        with self._lock:
            self._counts.setdefault(path, Counter())[key] += amount

    # Connections ---------------------------------------------------------------

    def _accept_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(_IO_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.tcp_accepted += 1
                self._active.add(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            request = _read_request(sock)
            if request is None:
                return
            target, path, query, key, leftover, headers = request
            with self._lock:
                self._request_headers.setdefault(target, []).append(headers)
                counts = self._counts.setdefault(target, Counter())
                counts["connections"] += 1
                limit = int(query.get("n", 0))
                faulty = path != "/ok" and (limit == 0 or counts["faults"] < limit)
                if faulty:
                    counts["faults"] += 1
            connection = _Connection(sock, target, query, key, _Reader(sock, leftover), self._count)
            kind, _, argument = path.strip("/").partition("/")
            if faulty:
                getattr(connection, "fault_" + kind.replace("-", "_"))(argument)
            else:
                connection.upgrade()
                connection.echo()
        except OSError:
            pass  # the client went away: what was counted stands
        finally:
            with self._lock:
                self._active.discard(sock)
            sock.close()


def _read_request(sock: socket.socket) -> tuple[str, str, dict[str, str], str, bytes, dict[str, str]] | None:
    """The request target, its path, query, Sec-WebSocket-Key, the bytes after the head and the headers; None at EOF."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buffer += chunk
    head, _, leftover = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    target = lines[0].split(" ")[1]
    headers = dict(line.partition(":")[::2] for line in lines[1:])
    key = next((value.strip() for name, value in headers.items() if name.lower() == "sec-websocket-key"), "")
    parsed = urllib.parse.urlsplit(target)
    stripped = {name: value.strip() for name, value in headers.items()}
    return target, parsed.path, dict(urllib.parse.parse_qsl(parsed.query)), key, leftover, stripped


class _Connection:
    """One client connection, served by ``fault_KIND`` for a path /KIND[/ARGUMENT], else by :meth:`echo`."""

    def __init__(
        self,
        sock: socket.socket,
        target: str,
        query: dict[str, str],
        key: str,
        reader: _Reader,
        count: Callable[[str, str, int], None],
    ) -> None:
        self.sock = sock
        self.query = query
        self.key = key
        self.reader = reader
        self._target = target
        self._count_in = count

    def count(self, what: str, amount: int = 1) -> None:
        self._count_in(self._target, what, amount)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def upgrade(self, accept: str | None = None) -> None:
        """Answer 101; with a correct Sec-WebSocket-Accept unless ``accept`` is given."""
        self.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept or accept_value(self.key)}\r\n\r\n".encode("ascii")
        )
        if accept is None:
            self.count("upgrades")

    def echo(self, *, answer: bool = True) -> None:
        """
        Serve until the client's close frame or EOF. ``answer``: echo data
        messages, answer pings and the close frame (a correct connection);
        else count messages as unanswered and answer nothing (after a fault).
        """
        while True:
            received = self.reader.read_frame()
            if received is None:
                return
            opcode, payload = received
            if opcode in (OP_TEXT, OP_BINARY):
                self.count("messages_received")
                if answer:
                    self.send(frame(opcode, payload))
                    self.count("messages_sent")
                else:
                    self.count("unanswered")
            elif opcode == OP_PING:
                self.count("pings_received")
                if answer:
                    self.send(frame(OP_PONG, payload))
            elif opcode == OP_PONG:
                self.count("pongs_received")
            elif opcode == OP_CLOSE:
                self.count_client_close(payload, faulty=not answer)
                if answer:
                    self.send(frame(OP_CLOSE, payload[:2]))
                return

    def count_client_close(self, payload: bytes, *, faulty: bool) -> None:
        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        self.count(f"fault_client_close_{code}" if faulty else f"client_close_{code}")

    def first_message(self) -> bool:
        """Wait for the client's first data message (counted unanswered); False if the connection ended first."""
        while True:
            received = self.reader.read_frame()
            if received is None:
                return False
            opcode, payload = received
            if opcode in (OP_TEXT, OP_BINARY):
                self.count("messages_received")
                self.count("unanswered")
                return True
            if opcode == OP_PING:
                self.send(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                return False

    def until_eof(self) -> None:
        while self.sock.recv(65536):
            pass

    def end_tcp(self) -> None:
        """
        Send FIN without a close frame. Reading goes on, so that a message the
        client sent before it saw the FIN is counted (unanswered), not missed.
        """
        self.sock.shutdown(socket.SHUT_WR)
        self.echo(answer=False)

    # Faults: fault_KIND for /KIND/ARGUMENT -------------------------------------

    def fault_silent(self, _: str) -> None:
        self.until_eof()  # the client gives up and closes

    def fault_status(self, argument: str) -> None:
        status = int(argument)
        body = b"not a WebSocket endpoint\n"
        self.send(
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n".encode("ascii")
            + body
        )

    def fault_reject(self, argument: str) -> None:
        first, then, keep_open = REJECTIONS[argument]
        self.send(b"HTTP/1.1 400 Bad Request\r\n" + first)
        time.sleep(0.02)  # in a segment of its own: the client reads past the head
        self.send(then)
        if keep_open:
            self.until_eof()  # the body it announced never ends: the client must not wait for it

    def fault_bad_accept(self, _: str) -> None:
        self.upgrade(accept=accept_value(self.key + "x"))
        self.until_eof()

    def fault_close(self, argument: str) -> None:
        self.upgrade()
        if not self.first_message():
            return
        code = int(argument)
        delay = float(self.query.get("delay", 0))
        if delay:
            time.sleep(delay)
        if code == 1006:
            self.end_tcp()  # no close frame
            return
        self.send(frame(OP_CLOSE, code.to_bytes(2, "big") + f"fault {code}".encode()))
        self.echo(answer=False)  # until the client's close reply; then TCP closes

    def fault_close_keep_tcp(self, _: str) -> None:
        self.upgrade()
        self.send(frame(OP_CLOSE, (1000).to_bytes(2, "big") + b"fault keep-tcp"))
        self.echo(answer=False)
        self.until_eof()  # the client's close reply came: keep TCP open until the client drops it

    def fault_frame(self, argument: str) -> None:
        self.upgrade()
        if not self.first_message():
            return
        self.send(MALFORMED[argument](int(self.query.get("size", 0))))
        if argument == "truncated":
            self.end_tcp()  # EOF in the middle of the frame
            return
        self.echo(answer=False)  # until the client's close frame, then close TCP...
        if self.query.get("keep_tcp"):
            self.until_eof()  # ... or keep it open until the client drops it

    def fault_fragmented_ping(self, _: str) -> None:
        self.upgrade()
        while True:
            received = self.reader.read_frame()
            if received is None:
                return
            opcode, payload = received
            if opcode == OP_TEXT:
                self.count("messages_received")
                third = max(1, len(payload) // 3)
                # §5.4: control frames may be injected between the fragments of a message.
                self.send(
                    frame(OP_TEXT, payload[:third], fin=False)
                    + frame(OP_PING, b"fault-ping")
                    + frame(OP_CONT, payload[third : 2 * third], fin=False)
                    + frame(OP_CONT, payload[2 * third :])
                )
                self.count("pings_sent")
                self.count("messages_sent")
            elif opcode == OP_PONG:
                self.count("pongs_received" if payload == b"fault-ping" else "unexpected_pongs")
            elif opcode == OP_CLOSE:
                self.count_client_close(payload, faulty=True)
                self.send(frame(OP_CLOSE, payload[:2]))
                return

    def fault_half_open(self, _: str) -> None:
        self.upgrade()
        while True:  # read and count everything, answer nothing, until the client drops TCP
            received = self.reader.read_frame()
            if received is None:
                return
            opcode, _payload = received
            if opcode in (OP_TEXT, OP_BINARY):
                self.count("messages_received")
                self.count("unanswered")
            elif opcode == OP_PING:
                self.count("pings_received")
            elif opcode == OP_CLOSE:
                self.count("ignored_closes")

    def fault_slow_upgrade(self, _: str) -> None:
        time.sleep(float(self.query.get("delay", 1.0)))
        self.upgrade()
        self.echo()

    def fault_slow_pong(self, _: str) -> None:
        self.upgrade()
        delay = float(self.query.get("delay", 1.0))
        send_lock = threading.Lock()
        waiting: list[bytes] = []  # pings not answered yet, oldest first

        def pong_later(payload: bytes) -> None:
            time.sleep(delay)
            with send_lock:
                if payload in waiting:  # not answered at the close already
                    waiting.remove(payload)
                    self.send(frame(OP_PONG, payload))
                    self.count("pongs_sent")

        while True:
            received = self.reader.read_frame()
            if received is None:
                return
            opcode, payload = received
            if opcode == OP_PING:
                self.count("pings_received")
                with send_lock:
                    waiting.append(payload)
                if delay < _IO_TIMEOUT:
                    threading.Thread(target=pong_later, args=(payload,), daemon=True).start()
            elif opcode == OP_CLOSE:
                with send_lock:  # every ping is answered, and before the close reply (RFC 6455 §5.5.2)
                    for pending in waiting:
                        self.send(frame(OP_PONG, pending))
                        self.count("pongs_sent")
                        self.count("pongs_at_close")
                    waiting.clear()
                    self.count_client_close(payload, faulty=True)
                    self.send(frame(OP_CLOSE, payload[:2]))
                return

    def fault_slow(self, _: str) -> None:
        self.upgrade()
        delay = float(self.query.get("delay", 1.0))
        closing = threading.Event()
        send_lock = threading.Lock()

        def echo_later(payload: bytes) -> None:
            # A timer per echo, so that replies do not queue behind each other.
            closing.wait(delay)
            with send_lock:
                if closing.is_set():
                    self.count("unanswered")  # the client closed first: dropped
                    return
                self.send(frame(OP_TEXT, payload))
                self.count("messages_sent")

        while True:
            received = self.reader.read_frame()
            if received is None:
                closing.set()
                return
            opcode, payload = received
            if opcode in (OP_TEXT, OP_BINARY):
                self.count("messages_received")
                threading.Thread(target=echo_later, args=(payload,), daemon=True).start()
            elif opcode == OP_CLOSE:
                with send_lock:
                    closing.set()
                    self.count_client_close(payload, faulty=True)
                    self.send(frame(OP_CLOSE, payload[:2]))
                return

    def fault_disorder(self, _: str) -> None:
        self.upgrade()
        delay = float(self.query.get("delay", 1.0))
        closing = threading.Event()
        send_lock = threading.Lock()
        held = None

        def echo(payload: bytes, what: str = "messages_sent") -> None:
            with send_lock:
                if not closing.is_set():
                    self.send(frame(OP_TEXT, payload))
                    self.count(what)

        def echo_late(payload: bytes) -> None:
            closing.wait(delay)
            echo(payload, "late_sent")

        received_count = 0
        while True:
            received = self.reader.read_frame()
            if received is None:
                closing.set()
                return
            opcode, payload = received
            if opcode == OP_TEXT:
                received_count += 1
                self.count("messages_received")
                place = received_count % 10
                if place == 3:
                    echo(payload)
                    echo(payload, "duplicates_sent")
                elif place == 5:
                    held = payload
                elif place == 6 and held is not None:
                    echo(payload)
                    echo(held, "reordered_sent")
                    held = None
                elif place == 8:
                    self.count("unanswered")
                elif place == 9:
                    threading.Thread(target=echo_late, args=(payload,), daemon=True).start()
                else:
                    echo(payload)
            elif opcode == OP_PING:
                with send_lock:
                    self.send(frame(OP_PONG, payload))
            elif opcode == OP_CLOSE:
                with send_lock:
                    closing.set()
                    self.send(frame(OP_CLOSE, payload[:2]))
                return

    def fault_flood(self, _: str) -> None:
        # A small send buffer bounds what is still in flight when the client closes.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        self.upgrade()
        size = int(self.query.get("size", 64))
        batch_messages = max(1, 65536 // (size + 4))
        batch = frame(OP_TEXT, b"f" * size) * batch_messages
        closing = threading.Event()

        def flood() -> None:
            # Whole batches only, so the count is exact: the client reads all
            # of them before the close frame that follows.
            while not closing.is_set():
                try:
                    self.send(batch)
                except OSError:
                    return
                self.count("messages_sent", batch_messages)

        writer = threading.Thread(target=flood, daemon=True)
        writer.start()
        try:
            while True:
                received = self.reader.read_frame()
                if received is None:
                    return
                opcode, payload = received
                if opcode in (OP_TEXT, OP_BINARY):
                    self.count("messages_received")
                elif opcode == OP_CLOSE:
                    closing.set()
                    writer.join(timeout=_IO_TIMEOUT)
                    self.count_client_close(payload, faulty=True)
                    self.send(frame(OP_CLOSE, payload[:2]))
                    return
        finally:
            closing.set()
            writer.join(timeout=_IO_TIMEOUT)
