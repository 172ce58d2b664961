"""
Fuzzing the receive path: whatever a server sends, the client neither crashes
nor hangs, and delivers exactly the messages the stream validly holds.

``tests/test_protocol.py`` checks valid messages under any fragmentation and
chunking, and one table of known violations. Here the byte streams are
arbitrary: random bytes, and valid streams (messages fragmented around
control frames, pings, pongs, a close) with one random mutation (bits
flipped, bytes inserted, deleted or overwritten, the stream truncated), cut
into random chunks. They go (a) into the sans-I/O
:class:`~wslocust.codec.protocol.ClientProtocol` and (b) through a real socket,
from a fake server after a valid upgrade, into
:class:`~wslocust.transport.connection.Connection`.

Properties:

- nothing raises: a violation is a :class:`~wslocust.codec.protocol.Failure` with
  code 1002, 1007 or 1009 and a queued close frame carrying it; through the
  socket, ``receive_forever`` returns a ``ConnectionClosed`` with that code;
- nothing hangs: each example runs under a deadline;
- the events are the same however the stream is chunked;
- every message of the intact prefix (the frames before the first mutated
  byte) is delivered, in order, and a truncated stream delivers exactly
  those; after a failure or a close nothing more is delivered.

Runs are reproducible: hypothesis is derandomized (its examples derive from
each test's name) with a fixed number of examples, so CI time stays bounded
(about 10 s for the file). ``WSLOCUST_FUZZ_EXAMPLES=N`` runs N random
examples per test instead, to fuzz longer.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import gevent
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wslocust.codec.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    parse_close_payload,
    serialize_close_payload,
    serialize_frame,
)
from wslocust.codec.protocol import ClientProtocol, Close, Event, Failure, Ping, Pong
from wslocust.codec.uri import parse_uri
from wslocust.exceptions import ConnectionClosed
from wslocust.transport.connection import Connection

_RANDOM_EXAMPLES = int(os.environ.get("WSLOCUST_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples: int) -> settings:
    """``examples`` derandomized examples, or ``WSLOCUST_FUZZ_EXAMPLES`` random ones; no hypothesis deadline."""
    return settings(
        max_examples=_RANDOM_EXAMPLES or examples,
        derandomize=not _RANDOM_EXAMPLES,
        database=None,
        # Our own deadline (bounded()) catches hangs; hypothesis's would only flag slow examples.
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


MASK = b"\x01\x02\x03\x04"
TERMINAL = (Close, Failure)
FAILURE_CODES = {1002, 1007, 1009}


_hangs: list[float] = []


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Fail, rather than hang, if the block takes longer than ``seconds`` (SIGALRM: works in pure-Python loops)."""
    if _hangs:
        # Once one example hung, hypothesis shrinks it: do not wait the full time for each attempt.
        seconds = 0.05

    def hang(signum: int, frame: object) -> None:
        _hangs.append(seconds)
        raise AssertionError(f"not done within {seconds} s: the receive path hangs")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# Streams ---------------------------------------------------------------------------


@dataclass
class Stream:
    """A server's byte stream and, for each frame end, the events completed up to there."""

    wire: bytes
    boundaries: list[tuple[int, int]]
    """(offset after a frame, number of events completed by then), in order."""
    events: list[Event]

    def events_before(self, offset: int) -> list[Event]:
        """The events of the frames that end at or before ``offset``: an edit there cannot touch them."""
        count = 0
        for end, completed in self.boundaries:
            if end > offset:
                break
            count = completed
        return self.events[:count]


controls = st.one_of(
    st.builds(lambda data: (OP_PING, data), st.binary(max_size=125)),
    st.builds(lambda data: (OP_PONG, data), st.binary(max_size=125)),
)
messages = st.one_of(
    st.builds(lambda text: (OP_TEXT, text.encode()), st.text(max_size=200)),
    st.builds(lambda data: (OP_BINARY, data), st.binary(max_size=400)),
)
# A message cut into fragments, with control frames between them (§5.4).
fragmented = st.tuples(messages, st.lists(st.integers(min_value=0), max_size=4), st.lists(controls, max_size=3))
close_codes = st.sampled_from([1000, 1001, 1003, 1008, 1011, 3000, 4000, 4999])
closes = st.tuples(close_codes, st.text(max_size=40).filter(lambda reason: len(reason.encode()) <= 123))


@st.composite
def valid_streams(draw: st.DrawFn) -> Stream:
    """Messages (fragmented or not), pings and pongs, sometimes ended by a close frame."""
    wire, boundaries, events = bytearray(), [], []

    def add(frame: bytes, event: Event | None = None) -> None:
        wire.extend(frame)
        if event is not None:
            events.append(event)
        boundaries.append((len(wire), len(events)))

    for (opcode, payload), cuts, between in draw(st.lists(fragmented, max_size=6)):
        points = sorted({cut % (len(payload) + 1) for cut in cuts})
        pieces = [payload[a:b] for a, b in itertools.pairwise([0, *points, len(payload)])]
        message = payload.decode() if opcode is OP_TEXT else payload
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            add(serialize_frame(OP_CONT if index else opcode, piece, fin=last), message if last else None)
            if not last and index < len(between):
                control, data = between[index]
                add(serialize_frame(control, data), Ping(data) if control is OP_PING else Pong(data))
    close = draw(st.none() | closes)
    if close is not None:
        code, reason = close
        add(serialize_frame(OP_CLOSE, serialize_close_payload(code, reason)), Close(code, reason))
    return Stream(bytes(wire), boundaries, events)


@dataclass
class Mutation:
    kind: str
    position: int
    data: bytes

    def apply(self, wire: bytes) -> tuple[bytes, int]:
        """The mutated stream, and the first offset whose byte may differ."""
        at = self.position % (len(wire) + 1)
        if self.kind == "flip" and at < len(wire):
            xor = self.data[0] or 0x80
            return wire[:at] + bytes([wire[at] ^ xor]) + wire[at + 1 :], at
        if self.kind == "overwrite":
            return wire[:at] + self.data + wire[at + len(self.data) :], at
        if self.kind == "insert":
            return wire[:at] + self.data + wire[at:], at
        if self.kind == "delete":
            return wire[:at] + wire[at + len(self.data) :], at
        return wire[:at], at  # truncate (or a flip past the end)


mutations = st.builds(
    Mutation,
    st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate"]),
    st.integers(min_value=0, max_value=10**6),
    st.binary(min_size=1, max_size=16),
)
cuts = st.lists(st.integers(min_value=0, max_value=10**6), max_size=12)


def chunked(data: bytes, cut_points: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cut_points})
    return [data[a:b] for a, b in itertools.pairwise([0, *points, len(data)])]


# (a) The sans-I/O protocol ---------------------------------------------------------


def receive(wire: bytes, chunks: list[bytes] | None, **options: object) -> tuple[ClientProtocol, list[Event], bytes]:
    protocol = ClientProtocol(mask_key=lambda: MASK, **options)  # type: ignore[arg-type]
    events: list[Event] = []
    out = b""
    with bounded(5):
        for chunk in [wire] if chunks is None else chunks:
            events += protocol.receive_data(chunk)
            out += protocol.data_to_send()
    return protocol, events, out


def check_well_formed(protocol: ClientProtocol, events: list[Event], out: bytes, max_size: int | None) -> None:
    """What any stream may produce, valid or not."""
    for index, event in enumerate(events):
        assert type(event) in (str, bytes, Ping, Pong, Close, Failure), event
        if isinstance(event, TERMINAL):
            assert index == len(events) - 1, f"{event} is followed by {events[index + 1 :]}"
        if type(event) in (str, bytes) and max_size is not None:
            assert len(event.encode("utf-8", "surrogateescape") if type(event) is str else event) <= max_size
        if type(event) in (Ping, Pong):
            assert len(event.data) <= 125
    # Our replies: masked, well-formed frames; a close frame only once, last.
    sent = FrameParser(allow_masked=True).feed(out)
    closes = [frame for frame in sent if frame.opcode is OP_CLOSE]
    assert len(closes) <= 1 and (not closes or sent[-1].opcode is OP_CLOSE)
    assert [frame.payload for frame in sent if frame.opcode is OP_PONG] == [
        event.data for event in events if type(event) is Ping
    ]
    terminal = events[-1] if events and isinstance(events[-1], TERMINAL) else None
    if type(terminal) is Failure:
        assert terminal.code in FAILURE_CODES and terminal.reason
        assert protocol.close_code == terminal.code
        assert parse_close_payload(closes[0].payload) == (terminal.code, terminal.reason)
    elif type(terminal) is Close:
        assert protocol.close_received and protocol.close_code == terminal.code
        assert 1000 <= terminal.code < 5000
    else:
        assert not closes and protocol.close_code is None
    if terminal is not None:  # nothing more is processed
        assert protocol.receive_data(serialize_frame(OP_TEXT, b"late") + serialize_frame(OP_PING, b"p")) == []
        assert protocol.data_to_send() == b""
    protocol.receive_eof()
    assert protocol.close_code == (terminal.code if terminal is not None else 1006)


@fuzz_settings(400)
@given(
    wire=st.binary(max_size=3000),
    chunk_cuts=cuts,
    max_size=st.sampled_from([None, 16, 2**20]),
    validate_utf8=st.booleans(),
)
def test_random_bytes_fail_cleanly_and_alike_in_any_chunks(wire, chunk_cuts, max_size, validate_utf8):
    options = {"max_message_size": max_size, "validate_utf8": validate_utf8}
    protocol, events, out = receive(wire, None, **options)
    check_well_formed(protocol, events, out, max_size)
    _, events_chunked, out_chunked = receive(wire, chunked(wire, chunk_cuts), **options)
    assert events_chunked == events and out_chunked == out


@fuzz_settings(400)
@given(stream=valid_streams(), mutation=mutations, chunk_cuts=cuts)
def test_a_mutated_stream_delivers_its_intact_prefix_then_fails_cleanly(stream, mutation, chunk_cuts):
    wire, first_changed = mutation.apply(stream.wire)
    protocol, events, out = receive(wire, chunked(wire, chunk_cuts))
    check_well_formed(protocol, events, out, 2**20)
    intact = stream.events_before(first_changed)
    assert events[: len(intact)] == intact
    if mutation.kind == "truncate" or first_changed >= len(stream.wire) and mutation.kind == "flip":
        assert events == intact  # a cut stream is incomplete, not invalid


@fuzz_settings(200)
@given(stream=valid_streams(), chunk_cuts=cuts)
def test_a_valid_stream_delivers_every_event(stream, chunk_cuts):
    protocol, events, out = receive(stream.wire, chunked(stream.wire, chunk_cuts))
    assert events == stream.events
    check_well_formed(protocol, events, out, 2**20)


# (b) Through a real socket -----------------------------------------------------------


class FakeServer:
    """
    Upgrades one connection correctly, then sends ``chunks`` (the first one in the
    same write as the 101 response, when ``glued``); then closes TCP, or keeps it
    open (reading what the client sends) until the client closes.
    """

    def __init__(self, chunks: list[bytes], *, glued: bool, keep_open: bool) -> None:
        self.chunks, self.glued, self.keep_open = chunks, glued, keep_open
        self.received = b""
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        with client:
            client.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                head += client.recv(4096)
            key = next(
                line.split(b":", 1)[1].strip()
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"sec-websocket-key:")
            )
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"  # fmt: skip
            chunks = list(self.chunks)
            if self.glued and chunks:
                response += chunks.pop(0)
            try:
                client.sendall(response)
                for chunk in chunks:
                    client.sendall(chunk)
                if not self.keep_open:
                    client.shutdown(socket.SHUT_WR)
                while data := client.recv(65536):
                    self.received += data
            except OSError:
                pass  # the client may drop the connection first, e.g. after a failure

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=10)


@fuzz_settings(120)
@given(
    stream=valid_streams(),
    mutation=st.none() | mutations,
    chunk_cuts=cuts,
    glued=st.booleans(),
    keep_open=st.booleans(),
)
def test_through_a_socket_the_connection_delivers_what_the_protocol_decodes_and_ends(
    stream, mutation, chunk_cuts, glued, keep_open
):
    wire, _ = mutation.apply(stream.wire) if mutation else (stream.wire, 0)
    _, expected, _ = receive(wire, None)
    terminal = expected[-1] if expected and isinstance(expected[-1], TERMINAL) else None
    # A server that keeps TCP open without a close or failure is simply idle: it must end it itself.
    server = FakeServer(chunked(wire, chunk_cuts), glued=glued, keep_open=keep_open and terminal is not None)
    delivered: list[str | bytes] = []
    try:
        connection = Connection(
            parse_uri(f"ws://127.0.0.1:{server.port}/"),
            on_message=lambda message, at: delivered.append(message),
            close_timeout=0.2,
        )
        connection.open(timeout=5)
        with gevent.Timeout(10, AssertionError("receive_forever did not return within 10 s: a hang")):
            closed = connection.receive_forever()
    finally:
        server.close()
    assert isinstance(closed, ConnectionClosed)
    assert delivered == [event for event in expected if type(event) in (str, bytes)]
    assert closed.code == (terminal.code if terminal is not None else 1006)
    # Our close frame reached the server after a close or a failure.
    if terminal is not None:
        replies = FrameParser(allow_masked=True).feed(server.received)
        assert replies and replies[-1].opcode is OP_CLOSE


@pytest.mark.parametrize("keep_open", [False, True])
def test_a_failure_through_a_socket_is_a_categorised_close_with_its_code(keep_open):
    # One fixed case, readable when the properties above fail: a text message, then a reserved opcode.
    server = FakeServer([serialize_frame(OP_TEXT, b"ok"), b"\x83\x00"], glued=False, keep_open=keep_open)
    delivered: list[str | bytes] = []
    try:
        connection = Connection(
            parse_uri(f"ws://127.0.0.1:{server.port}/"),
            on_message=lambda message, at: delivered.append(message),
            close_timeout=0.2,
        )
        connection.open(timeout=5)
        with gevent.Timeout(10, AssertionError("a hang")):
            closed = connection.receive_forever()
    finally:
        server.close()
    assert delivered == ["ok"]
    assert isinstance(closed, ConnectionClosed) and closed.code == 1002
    assert "1002" in str(closed)
