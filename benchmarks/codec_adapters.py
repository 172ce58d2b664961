"""
The maintained sans-I/O WebSocket libraries behind wslocust's codec interface, for the ``codec``
workload: the same user, connection and statistics with another library framing and parsing.

:class:`WebsocketsProtocol` (``websockets.protocol.Protocol``, the sans-I/O layer of websockets'
own clients and servers) and :class:`WsprotoProtocol` (``wsproto.connection.Connection``) stand in
for :class:`wslocust.codec.protocol.ClientProtocol` after the handshake (wslocust's own handshake
runs first, so each starts on an open connection). They speak what the transport uses: received
bytes in, wslocust's events out (``str``, ``bytes``, ``Ping``, ``Pong``, ``Close``, ``Failure``);
messages in, wire bytes out; automatic replies (pongs, close replies) from :meth:`data_to_send`.
Text is decoded here, as each library's own I/O layer does (websockets hands over bytes).

Benchmark code, not part of wslocust: permessage-deflate is not offered through them, and a
message's fragments are joined here as the libraries' I/O layers would.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from wslocust.codec.protocol import CLOSED, CLOSING, OPEN, Close, Event, Failure, Ping, Pong, State

__all__ = ["CODECS", "WebsocketsProtocol", "WsprotoProtocol", "install"]


class WebsocketsProtocol:
    """websockets' sans-I/O ``Protocol`` (client side, already open) behind wslocust's interface."""

    def __init__(self, *, max_message_size: int | None = 2**20, validate_utf8: bool = True, **_: Any) -> None:
        from websockets.frames import Opcode
        from websockets.protocol import CLIENT, Protocol

        self._protocol = Protocol(CLIENT, max_size=max_message_size)
        self._opcodes = Opcode
        self._errors = "strict" if validate_utf8 else "surrogateescape"
        self._fragments: list[bytes] = []
        self._fragment_is_text = False
        self._ended = False  # a Close or Failure was reported
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def validates_utf8(self) -> bool:
        return self._errors == "strict"

    @property
    def state(self) -> State:
        value = self._protocol.state.value  # websockets: CONNECTING 0, OPEN 1, CLOSING 2, CLOSED 3
        return OPEN if value <= 1 else CLOSING if value == 2 else CLOSED

    @property
    def close_sent(self) -> bool:
        return self._protocol.close_sent is not None

    def receive_data(self, data: bytes) -> list[Event]:
        protocol, opcodes = self._protocol, self._opcodes
        protocol.receive_data(data)
        events: list[Event] = []
        for frame in protocol.events_received():
            opcode = frame.opcode
            if opcode is opcodes.TEXT or opcode is opcodes.BINARY or opcode is opcodes.CONT:
                if opcode is not opcodes.CONT:
                    self._fragment_is_text = opcode is opcodes.TEXT
                if not frame.fin:
                    self._fragments.append(bytes(frame.data))
                    continue
                payload = bytes(frame.data)
                if self._fragments:
                    payload = b"".join([*self._fragments, payload])
                    self._fragments = []
                events.append(payload.decode("utf-8", self._errors) if self._fragment_is_text else payload)
            elif opcode is opcodes.PING:
                events.append(Ping(bytes(frame.data)))
            elif opcode is opcodes.PONG:
                events.append(Pong(bytes(frame.data)))
            elif opcode is opcodes.CLOSE:
                received = protocol.close_rcvd
                code, reason = (received.code, received.reason) if received is not None else (1005, "")
                self.close_code, self.close_reason, self._ended = code, reason, True
                events.append(Close(code, reason))
        if protocol.state.value >= 2 and not self._ended and protocol.close_sent is not None:
            self._ended = True  # websockets failed the connection (its parser raised): its close frame is queued
            sent = protocol.close_sent
            self.close_code, self.close_reason = sent.code, sent.reason
            events.append(Failure(sent.code, sent.reason))
        return events

    def receive_eof(self) -> None:
        if self._protocol.state.value < 3:
            self._protocol.receive_eof()
        if self.close_code is None:
            self.close_code = 1006

    def data_to_send(self) -> bytes:
        return b"".join(self._protocol.data_to_send())

    def send_text(self, data: str | bytes) -> bytes:
        self._protocol.send_text(data.encode() if isinstance(data, str) else data)
        return self.data_to_send()

    def send_binary(self, data: bytes) -> bytes:
        self._protocol.send_binary(data)
        return self.data_to_send()

    def send_ping(self, data: bytes = b"") -> bytes:
        self._protocol.send_ping(data)
        return self.data_to_send()

    def send_pong(self, data: bytes = b"") -> bytes:
        self._protocol.send_pong(data)
        return self.data_to_send()

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        if self._protocol.state.value == 1:
            self._protocol.send_close(code, reason)
        return self.data_to_send()


class WsprotoProtocol:
    """wsproto's ``Connection`` (client side, already open) behind wslocust's interface."""

    def __init__(self, *, max_message_size: int | None = 2**20, validate_utf8: bool = True, **_: Any) -> None:
        from wsproto import events as wsproto_events
        from wsproto.connection import Connection, ConnectionState, ConnectionType

        self._connection = Connection(ConnectionType.CLIENT)
        self._events = wsproto_events
        self._states = ConnectionState
        self._validates = validate_utf8  # wsproto always validates text: it cannot be turned off
        self._outgoing: list[bytes] = []
        self._fragments: list[Any] = []
        self._ended = False
        self.close_code: int | None = None
        self.close_reason = ""

    @property
    def validates_utf8(self) -> bool:
        return self._validates

    @property
    def state(self) -> State:
        state, states = self._connection.state, self._states
        return OPEN if state is states.OPEN else CLOSED if state is states.CLOSED else CLOSING

    @property
    def close_sent(self) -> bool:
        return self._connection.state in (self._states.LOCAL_CLOSING, self._states.CLOSED)

    def receive_data(self, data: bytes) -> list[Event]:
        connection, kinds = self._connection, self._events
        connection.receive_data(data)
        events: list[Event] = []
        for event in connection.events():
            kind = type(event)
            if kind is kinds.TextMessage or kind is kinds.BytesMessage:
                # wsproto hands over a message as its bytes arrive: join the pieces of one.
                if not event.message_finished:
                    self._fragments.append(event.data)
                    continue
                if self._fragments:
                    data_ = (
                        "".join(self._fragments) + event.data
                        if kind is kinds.TextMessage
                        else b"".join([*self._fragments, event.data])
                    )
                    self._fragments = []
                    events.append(data_)
                else:
                    events.append(event.data)
            elif kind is kinds.Ping:
                self._outgoing.append(connection.send(event.response()))
                events.append(Ping(bytes(event.payload)))
            elif kind is kinds.Pong:
                events.append(Pong(bytes(event.payload)))
            elif kind is kinds.CloseConnection:
                self.close_code, self.close_reason, self._ended = event.code, event.reason or "", True
                if connection.state is self._states.REMOTE_CLOSING:
                    self._outgoing.append(connection.send(event.response()))
                # wsproto reports its own failure (a protocol error) as a CloseConnection it sent.
                failed = connection.state is self._states.CLOSED and event.code in (1002, 1007, 1009)
                events.append(Failure(event.code, event.reason or "") if failed else Close(event.code, event.reason))
        return events

    def receive_eof(self) -> None:
        if self._connection.state is not self._states.CLOSED:
            self._connection.receive_data(None)
            list(self._connection.events())
        if self.close_code is None:
            self.close_code = 1006

    def data_to_send(self) -> bytes:
        outgoing, self._outgoing = self._outgoing, []
        return b"".join(outgoing)

    def _send(self, event: Any) -> bytes:
        return self.data_to_send() + self._connection.send(event)

    def send_text(self, data: str | bytes) -> bytes:
        return self._send(self._events.Message(data=data.decode() if isinstance(data, bytes) else data))

    def send_binary(self, data: bytes) -> bytes:
        return self._send(self._events.Message(data=data))

    def send_ping(self, data: bytes = b"") -> bytes:
        return self._send(self._events.Ping(payload=data))

    def send_pong(self, data: bytes = b"") -> bytes:
        return self._send(self._events.Pong(payload=data))

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        if self._connection.state is not self._states.OPEN:
            return self.data_to_send()
        return self._send(self._events.CloseConnection(code=code, reason=reason))


CODECS: dict[str, Callable[..., Any] | None] = {
    "wslocust": None,
    "websockets": WebsocketsProtocol,
    "wsproto": WsprotoProtocol,
}
"""The codecs by name; ``None``: wslocust's own, nothing replaced."""


def install(name: str) -> None:
    """Make every connection opened from now on use codec ``name`` (``wslocust``: leave its own)."""
    if name not in CODECS:
        raise ValueError(f"codec {name!r} is not one of {', '.join(CODECS)}")
    protocol = CODECS[name]
    if protocol is None:
        return
    protocol(max_message_size=2**20)  # an ImportError here, not in the first connection
    from wslocust.transport import connection

    connection.ClientProtocol = protocol  # type: ignore[misc, assignment]
    print(f"benchmarks: every connection frames and parses with {protocol.__name__} ({name})", file=sys.stderr)
