"""
The client side of a WebSocket connection after the handshake, sans I/O.

:class:`ClientProtocol` turns received bytes into events and outgoing
messages into bytes; the I/O layer (``wslocust.transport.connection``) only moves bytes
between it and a socket::

    events = protocol.receive_data(sock.recv(65536))
    sock.sendall(protocol.data_to_send())      # pongs, close replies
    for event in events:
        if type(event) is str: ...             # a text message
        elif type(event) is bytes: ...         # a binary message
        else: ...                              # Ping, Pong, Close or Failure

Messages are plain ``str`` and ``bytes`` rather than event objects so that a
load generator's receive loop allocates nothing per message beyond the
message itself.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import struct
from collections.abc import Callable, Iterator
from typing import TypeAlias

from wslocust.codec.deflate import Deflate, Inflated
from wslocust.codec.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseCode,
    FrameError,
    FrameParser,
    Opcode,
    _serialize_masked,
    parse_close_payload,
    serialize_close_payload,
)
from wslocust.exceptions import ConnectionClosed, connection_closed

__all__ = [
    "CLOSED",
    "CLOSING",
    "OPEN",
    "ClientProtocol",
    "Close",
    "Event",
    "Failure",
    "Ping",
    "Pong",
    "State",
    "random_mask",
]


class State(enum.IntEnum):
    """The state of a connection (RFC 6455 §4.1, §7.1.4); it starts OPEN."""

    OPEN = 1
    CLOSING = 2
    CLOSED = 3


OPEN = State.OPEN
CLOSING = State.CLOSING
CLOSED = State.CLOSED


@dataclasses.dataclass(frozen=True, slots=True)
class Ping:
    """The peer sent a ping; the pong is already queued on :meth:`ClientProtocol.data_to_send`."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Pong:
    """The peer sent a pong, solicited or not (§5.5.3)."""

    data: bytes


@dataclasses.dataclass(frozen=True, slots=True)
class Close:
    """
    The peer's close frame arrived (§5.5.1).

    If we had not sent a close frame yet, the reply is queued on
    :meth:`ClientProtocol.data_to_send`. The server then closes TCP (§7.1.1).
    """

    code: int
    """The peer's close code, 1005 if its close frame had none."""
    reason: str
    """The peer's close reason, possibly empty."""


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """
    The peer broke RFC 6455, so we are failing the connection (§7.1.7).

    A close frame with :attr:`code` is queued on
    :meth:`ClientProtocol.data_to_send` (unless one was already sent); flush
    it, then close the socket. Later received bytes are ignored.
    """

    code: int
    """1002 (protocol error), 1007 (invalid UTF-8) or 1009 (message too big)."""
    reason: str
    """A short, stable description of the violation."""


Event: TypeAlias = str | bytes | Ping | Pong | Close | Failure
"""What :meth:`ClientProtocol.receive_data` returns a list of."""


# §5.3: the masking key "MUST be derived from a strong source of entropy".
# os.urandom per frame costs a system call; drawing 4 KiB at once and slicing
# it up in C divides that cost by 1024.
_KEYS_PER_DRAW = 1024
_split_keys = struct.Struct("4s" * _KEYS_PER_DRAW).unpack
_keys: Iterator[bytes] = iter(())


def random_mask() -> bytes:
    """
    Return a fresh, unpredictable 4-byte masking key (RFC 6455 §5.3).

    Keys come from :func:`os.urandom`, drawn in batches.

    Returns:
        4 random bytes.
    """
    global _keys
    # The loop body runs at most once: it takes the next key if one is left.
    for key in _keys:
        return key
    _keys = iter(_split_keys(os.urandom(4 * _KEYS_PER_DRAW)))
    return next(_keys)


# §8.1: "When an endpoint is to interpret a byte stream as UTF-8 but finds
# that the byte stream is not, in fact, a valid UTF-8 stream, that endpoint
# MUST _Fail the WebSocket Connection_"; §7.4.1 assigns code 1007.
_INVALID_UTF8 = "invalid UTF-8 in text message"

# First header bytes of the frames the client sends: FIN set, no RSV bit.
_HEAD_TEXT = 0x80 | OP_TEXT
_HEAD_BINARY = 0x80 | OP_BINARY
_HEAD_CLOSE = 0x80 | OP_CLOSE
_HEAD_PING = 0x80 | OP_PING
_HEAD_PONG = 0x80 | OP_PONG
_RSV1 = 0x40  # the first frame of a compressed message (RFC 7692 §6)


class ClientProtocol:
    """
    A WebSocket connection seen from the client, once the handshake is done.

    Received data goes in through :meth:`receive_data` and
    :meth:`receive_eof`; messages to send go in through the ``send_*``
    methods, which return the wire bytes to write. Automatic replies (pongs,
    close frames) are collected by :meth:`data_to_send`: call it after every
    :meth:`receive_data`.

    Args:
        max_message_size: the largest message accepted, in bytes, after
            reassembling fragments, or ``None`` for no limit. A larger one
            fails the connection with 1009 (§7.4.1).
        validate_utf8: fail the connection with 1007 when a text message is
            not valid UTF-8 (§8.1). When False, invalid bytes are decoded
            with ``errors="surrogateescape"``: they become lone surrogates
            U+DC80-U+DCFF and ``message.encode("utf-8", "surrogateescape")``
            gives back the exact bytes received. Valid UTF-8 decodes at the
            same speed either way.
        mask_key: returns a fresh 4-byte masking key for each frame sent
            (§5.3); tests pass a constant to get deterministic bytes.
        deflate: the connection's permessage-deflate state when the handshake
            negotiated it (RFC 7692): every data message sent is compressed, and
            received messages with RSV1 are inflated (at most ``max_message_size``).

    Attributes:
        state: :data:`OPEN`, then :data:`CLOSING` once a close frame was sent
            or received or the connection failed, then :data:`CLOSED` after
            :meth:`receive_eof`.
        close_code: the code of the peer's close frame (1005 if it had none),
            else the code of our :class:`Failure`, else 1006 once the
            connection ended without either; ``None`` while unknown.
        close_reason: the reason that goes with :attr:`close_code`.
        close_received: whether the peer's close frame arrived.
    """

    __slots__ = (
        "_deflate",
        "_errors",
        "_failed",
        "_fragment_compressed",
        "_fragment_opcode",
        "_fragment_size",
        "_fragments",
        "_mask_key",
        "_max_size",
        "_outgoing",
        "_parser",
        "_sent_code",
        "close_code",
        "close_reason",
        "close_received",
        "state",
    )

    def __init__(
        self,
        *,
        max_message_size: int | None = 2**20,
        validate_utf8: bool = True,
        mask_key: Callable[[], bytes] = random_mask,
        deflate: Deflate | None = None,
    ) -> None:
        # A frame can never be larger than its message, so the parser rejects
        # an oversized single frame from its header, before buffering it (a
        # compressed one may be a little larger than its message: incompressible
        # data gains a few bytes per block).
        frame_limit = max_message_size
        if deflate is not None and max_message_size is not None:
            frame_limit = max_message_size + max_message_size // 256 + 64
        self._parser = FrameParser(frame_limit, allow_rsv1=deflate is not None)
        self._deflate = deflate
        self._max_size = max_message_size
        self._errors = "strict" if validate_utf8 else "surrogateescape"
        self._mask_key = mask_key
        self._outgoing: list[bytes] = []
        # The message being reassembled from fragments (§5.4), if any.
        self._fragment_opcode: Opcode | None = None
        self._fragment_compressed = False
        self._fragments: list[bytes] = []
        self._fragment_size = 0
        self._failed = False
        # The code of the close frame we sent or queued, if any.
        self._sent_code: int | None = None
        self.state = OPEN
        self.close_code: int | None = None
        self.close_reason = ""
        self.close_received = False

    @property
    def validates_utf8(self) -> bool:
        """Whether text messages must be valid UTF-8 (``validate_utf8``)."""
        return self._errors == "strict"

    @property
    def close_sent(self) -> bool:
        """Whether we sent (or queued) a close frame."""
        return self._sent_code is not None

    # Public methods for receiving data

    def receive_data(self, data: bytes) -> list[Event]:
        """
        Process bytes received from the server.

        Never raises because of what the peer sent: a violation becomes a
        :class:`Failure` event plus a queued close frame (§7.1.7).

        After calling this method, call :meth:`data_to_send` and write its
        result: it may hold a pong or a close frame.

        Args:
            data: bytes read from the socket, of any length.

        Returns:
            The events completed by ``data``, in order: ``str`` for a text
            message, ``bytes`` for a binary message, :class:`Ping`,
            :class:`Pong`, :class:`Close` or :class:`Failure`. Empty once a
            close frame was received or the connection failed.
        """
        events: list[Event] = []
        if self._failed or self.close_received or self.state is CLOSED:
            # §5.5.1: nothing may follow a close frame; after a failure the
            # rest of the stream is meaningless.
            return events
        try:
            frames = self._parser.feed(data)
            error = None
        except FrameError as exc:
            frames = exc.frames
            error = exc
        for opcode, payload, fin, rsv1, _, _ in frames:
            if opcode is OP_TEXT and fin and not rsv1 and self._fragment_opcode is None:
                # The hot path: an unfragmented message, whose size the
                # parser already checked.
                try:
                    events.append(payload.decode("utf-8", self._errors))
                except UnicodeDecodeError:
                    self._fail(events, CloseCode.INVALID_DATA, _INVALID_UTF8)
                    return events
            elif opcode is OP_BINARY and fin and not rsv1 and self._fragment_opcode is None:
                events.append(payload)
            elif not self._receive_frame(events, opcode, payload, fin, rsv1):
                return events
        if error is not None:
            self._fail(events, error.code, error.reason)
        return events

    def receive_eof(self) -> None:
        """
        Record that the server closed the TCP connection.

        The server closes TCP first, once the close handshake is done
        (§7.1.1). If no close frame arrived and no failure was detected, the
        connection was lost: :attr:`close_code` becomes 1006 (§7.1.5).
        Calling it again has no effect.
        """
        if self.state is CLOSED:
            return
        if not self.close_received and not self._failed:
            self.close_code = CloseCode.ABNORMAL_CLOSURE.value
            self.close_reason = ""
        self.state = CLOSED
        self._fragments = []

    def data_to_send(self) -> bytes:
        """
        Return the automatic replies queued since the last call.

        These are pongs (§5.5.2), the reply to a close frame (§5.5.1) and the
        close frame of a :class:`Failure`.

        Returns:
            The bytes to write to the socket, ``b""`` if there are none.
        """
        outgoing = self._outgoing
        if not outgoing:
            return b""
        data = b"".join(outgoing)
        outgoing.clear()
        return data

    # Public methods for sending data

    def send_text(self, data: str | bytes) -> bytes:
        """
        Encode a text message in one frame.

        Args:
            data: the message; ``bytes`` are taken as already UTF-8 encoded
                and are not checked.

        Returns:
            The masked frame to write to the socket.

        Raises:
            ConnectionClosed: if the connection is not open.
        """
        if self.state is not OPEN:
            raise self._closed_error()
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._deflate is not None:
            return _serialize_masked(_HEAD_TEXT | _RSV1, self._deflate.compress(data), self._mask_key())
        return _serialize_masked(_HEAD_TEXT, data, self._mask_key())

    def send_binary(self, data: bytes) -> bytes:
        """
        Encode a binary message in one frame.

        Args:
            data: the message.

        Returns:
            The masked frame to write to the socket.

        Raises:
            ConnectionClosed: if the connection is not open.
        """
        if self.state is not OPEN:
            raise self._closed_error()
        if self._deflate is not None:
            return _serialize_masked(_HEAD_BINARY | _RSV1, self._deflate.compress(data), self._mask_key())
        return _serialize_masked(_HEAD_BINARY, data, self._mask_key())

    def send_fragments(
        self, data: str | bytes, fragment_size: int, *, binary: bool = False
    ) -> bytes:
        """
        Encode one message as a series of fragments (§5.4).

        A text message may be cut in the middle of a UTF-8 sequence: only the
        whole message has to be valid UTF-8 (§5.6).

        Args:
            data: the message; a ``str`` is UTF-8 encoded, ``bytes`` are sent
                as they are.
            fragment_size: the payload size of each fragment but the last.
            binary: send a binary message rather than a text message.

        Returns:
            The masked frames, back to back, to write to the socket.

        Raises:
            ConnectionClosed: if the connection is not open.
            ValueError: if ``fragment_size`` is less than 1.
        """
        if fragment_size < 1:
            raise ValueError("fragment_size must be at least 1")
        if self.state is not OPEN:
            raise self._closed_error()
        if isinstance(data, str):
            data = data.encode("utf-8")
        mask_key = self._mask_key
        opcode: int = OP_BINARY if binary else OP_TEXT
        if self._deflate is not None:
            # The message is compressed whole, then cut; RSV1 on its first frame only (RFC 7692 §6.1).
            data = self._deflate.compress(data)
            opcode |= _RSV1
        parts = []
        # An empty message still needs one (final) frame.
        starts = range(0, len(data), fragment_size) or range(1)
        last = starts[-1]
        for start in starts:
            fin = 0x80 if start == last else 0
            chunk = data[start : start + fragment_size]
            parts.append(_serialize_masked(fin | opcode, chunk, mask_key()))
            opcode = OP_CONT
        return b"".join(parts)

    def send_ping(self, data: bytes = b"") -> bytes:
        """
        Encode a ping (§5.5.2).

        Args:
            data: the application data, at most 125 bytes; the pong echoes it.

        Returns:
            The masked frame to write to the socket.

        Raises:
            ConnectionClosed: if the connection is not open.
            ValueError: if ``data`` is longer than 125 bytes (§5.5).
        """
        return self._send_control(_HEAD_PING, data)

    def send_pong(self, data: bytes = b"") -> bytes:
        """
        Encode an unsolicited pong, e.g. as a heartbeat (§5.5.3).

        Pings are answered automatically; there is no need to call this.

        Args:
            data: the application data, at most 125 bytes.

        Returns:
            The masked frame to write to the socket.

        Raises:
            ConnectionClosed: if the connection is not open.
            ValueError: if ``data`` is longer than 125 bytes (§5.5).
        """
        return self._send_control(_HEAD_PONG, data)

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """
        Start the closing handshake (§7.1.2) and move to :data:`CLOSING`.

        Then keep receiving until the server's :class:`Close` arrives and the
        server closes TCP (:meth:`receive_eof`).

        Args:
            code: the close code (§7.4): 1000-1003, 1007-1014 or 3000-4999.
            reason: the close reason, at most 123 bytes in UTF-8.

        Returns:
            The masked close frame to write to the socket, or ``b""`` if a
            close frame was already sent or the connection is closed, so
            that tearing down twice is harmless.

        Raises:
            ValueError: if the code may not be sent or the reason is too long.
        """
        payload = serialize_close_payload(code, reason)
        if self.close_sent or self.state is not OPEN:
            return b""
        self._sent_code = code
        self.state = CLOSING
        return _serialize_masked(_HEAD_CLOSE, payload, self._mask_key())

    # Private methods

    def _send_control(self, head: int, data: bytes) -> bytes:
        if len(data) > 125:
            raise ValueError("control frame payloads are at most 125 bytes")
        if self.state is not OPEN:
            raise self._closed_error()
        return _serialize_masked(head, data, self._mask_key())

    def _closed_error(self) -> ConnectionClosed:
        code = self.close_code
        if code is None:
            # We started closing and the server has not answered yet.
            code = self._sent_code if self._sent_code is not None else 1006
        return connection_closed(code, self.close_reason)

    def _receive_frame(
        self, events: list[Event], opcode: Opcode, payload: bytes, fin: bool, compressed: bool = False
    ) -> bool:
        # Everything but an unfragmented data message. Returns False when the
        # connection failed or closed and the remaining frames must be dropped.
        if opcode is OP_PING:
            # §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a
            # Pong frame in response" with identical data; but nothing may
            # follow our own close frame (§5.5.1).
            if not self.close_sent:
                self._outgoing.append(
                    _serialize_masked(_HEAD_PONG, payload, self._mask_key())
                )
            events.append(Ping(payload))
            return True
        if opcode is OP_PONG:
            events.append(Pong(payload))
            return True
        if opcode is OP_CLOSE:
            return self._receive_close(events, payload)
        if opcode is OP_CONT:
            if self._fragment_opcode is None:
                return self._fail(
                    events, CloseCode.PROTOCOL_ERROR, "unexpected continuation frame"
                )
            self._fragment_size += len(payload)
            self._fragments.append(payload)
        elif self._fragment_opcode is not None:
            # §5.4: fragments of one message are not interleaved with another
            # message's (only control frames may come in between).
            return self._fail(
                events, CloseCode.PROTOCOL_ERROR, "expected a continuation frame"
            )
        else:
            # The first fragment (or a whole compressed message); other unfragmented messages took the fast path.
            self._fragment_opcode = opcode
            self._fragment_compressed = compressed
            self._fragment_size = len(payload)
            self._fragments = [payload]
        # The parser checks each frame; the limit applies to the message.
        if self._max_size is not None and self._fragment_size > self._max_size:
            return self._fail(
                events, CloseCode.MESSAGE_TOO_BIG, "message exceeds size limit"
            )
        if not fin:
            return True
        message = b"".join(self._fragments) if len(self._fragments) > 1 else self._fragments[0]
        opcode = self._fragment_opcode
        self._fragment_opcode = None
        self._fragments = []
        if self._fragment_compressed:
            assert self._deflate is not None  # RSV1 parses only once deflate was negotiated
            try:
                message = self._deflate.decompress(message)
            except Inflated as exc:
                code = CloseCode.MESSAGE_TOO_BIG if exc.too_big else CloseCode.INVALID_DATA
                return self._fail(events, code, exc.reason)
        if opcode is OP_BINARY:
            events.append(message)
            return True
        try:
            events.append(message.decode("utf-8", self._errors))
        except UnicodeDecodeError:
            return self._fail(events, CloseCode.INVALID_DATA, _INVALID_UTF8)
        return True

    def _receive_close(self, events: list[Event], payload: bytes) -> bool:
        try:
            code, reason = parse_close_payload(payload)
        except FrameError as exc:
            return self._fail(events, exc.code, exc.reason)
        self.close_received = True
        self.close_code = code
        self.close_reason = reason
        self._fragments = []
        if not self.close_sent:
            # §5.5.1: reply with a close frame, "typically echoing the status
            # code it received"; an empty close is answered by an empty one
            # since 1005 may not be sent (§7.4.1).
            reply = b"" if code == CloseCode.NO_STATUS_RCVD else code.to_bytes(2, "big")
            self._outgoing.append(
                _serialize_masked(_HEAD_CLOSE, reply, self._mask_key())
            )
            self._sent_code = code
        self.state = CLOSING
        events.append(Close(code, reason))
        return False

    def _fail(self, events: list[Event], code: int, reason: str) -> bool:
        # §7.1.7 _Fail the WebSocket Connection_: send a close frame with the
        # code (unless one was sent already, §5.5.1) and stop processing data.
        code = int(code)
        if not self.close_sent:
            payload = serialize_close_payload(code, reason)
            self._outgoing.append(
                _serialize_masked(_HEAD_CLOSE, payload, self._mask_key())
            )
            self._sent_code = code
        self._failed = True
        self._fragments = []
        self._fragment_opcode = None
        self.state = CLOSING
        self.close_code = code
        self.close_reason = reason
        events.append(Failure(code, reason))
        return False
