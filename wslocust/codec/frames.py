"""
The WebSocket framing layer (RFC 6455 §5), sans I/O.

:func:`serialize_frame` turns an opcode and a payload into wire bytes;
:class:`FrameParser` turns wire bytes, fed in chunks of any size, back into
:class:`Frame` tuples. Neither touches a socket: the caller moves the bytes.

The per-message path of a load generator runs through this module, so it
favours flat code over abstraction: one ``struct`` call per header, byte
indexing, one bytes slice per payload and no per-frame generator.
"""

from __future__ import annotations

import enum
import importlib.machinery
import importlib.util
import struct
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from wslocust.exceptions import ProtocolError

__all__ = [
    "CTRL_OPCODES",
    "DATA_OPCODES",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "CloseCode",
    "Frame",
    "FrameError",
    "FrameParser",
    "Opcode",
    "apply_mask",
    "parse_close_payload",
    "serialize_close_payload",
    "serialize_frame",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8)."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


OP_CONT = Opcode.CONT
OP_TEXT = Opcode.TEXT
OP_BINARY = Opcode.BINARY
OP_CLOSE = Opcode.CLOSE
OP_PING = Opcode.PING
OP_PONG = Opcode.PONG

DATA_OPCODES = (OP_CONT, OP_TEXT, OP_BINARY)
CTRL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)


class CloseCode(enum.IntEnum):
    """Close status codes (RFC 6455 §7.4.1, plus 1012-1014 from the IANA registry, §11.7)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    # 1004 is reserved (§7.4.1).
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


# §7.4.1 / §7.4.2: 1005, 1006 and 1015 "MUST NOT be set as a status code in a
# Close control frame"; 1004 and 1016-2999 are reserved; 3000-4999 belong to
# libraries, frameworks and applications.
_WIRE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


def _is_wire_close_code(code: int) -> bool:
    return code in _WIRE_CLOSE_CODES or 3000 <= code < 5000


class Frame(NamedTuple):
    """
    One WebSocket frame, already unmasked.

    A plain tuple, so the receive loop can unpack it without attribute lookups.
    """

    opcode: Opcode
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False


class FrameError(ProtocolError):
    """
    The peer sent a frame that RFC 6455 forbids.

    Attributes:
        code: the close code to fail the connection with (§7.4.1), usually
            1002 (protocol error), 1007 (invalid data) or 1009 (too big).
        reason: a short, stable, ASCII explanation, fit for a close frame.
        frames: the complete, valid frames that :meth:`FrameParser.feed`
            decoded from the same call before it met the faulty one, so that
            the caller can still process them in order.
    """

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.frames: list[Frame] = []


# ---------------------------------------------------------------------------
# Masking (§5.3)

_MaskFunc = Callable[[bytes, bytes], bytes]


def _apply_mask_py(data: bytes, mask: bytes) -> bytes:
    # XOR-ing two big integers runs in C; the mask is repeated to the payload's
    # length first. Little-endian keeps the byte order of both operands aligned.
    n = len(data)
    if not n:
        return b""
    key = (mask * ((n + 3) >> 2))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(
        n, "little"
    )


def _load_c_masking() -> _MaskFunc | None:
    """
    websockets' C ``apply_mask`` (a machine word at a time: 0.1 µs at 64 B, 1.6 µs at 64 KiB, where
    wsaccel, byte by byte, took 0.3 and 61 µs; benchmarks/codec_bench.py), or None where websockets
    was built without its C extension. The extension is loaded from its file, without the websockets
    package, whose ``__init__`` imports asyncio and sockets: this codec does no I/O.
    """
    package = importlib.util.find_spec("websockets")  # found, not imported
    folders = package.submodule_search_locations if package is not None else None
    for folder in folders or ():
        for path in sorted(Path(folder).glob("speedups.*.so")) + sorted(Path(folder).glob("speedups.*.pyd")):
            loader = importlib.machinery.ExtensionFileLoader("websockets.speedups", str(path))
            spec = importlib.util.spec_from_loader("websockets.speedups", loader)
            if spec is None:  # pragma: no cover
                continue
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            return module.apply_mask  # type: ignore[no-any-return]
    return None  # pragma: no cover - the pure-Python fallback is tested by swapping _mask


_apply_mask_c = _load_c_masking()


# The implementation the hot path calls; tests swap it to cover both.
_mask: _MaskFunc = _apply_mask_c if _apply_mask_c is not None else _apply_mask_py


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """
    Mask or unmask a payload (RFC 6455 §5.3); the operation is its own inverse.

    Uses websockets' C implementation (``websockets.speedups``) when it is built, else pure Python.

    Args:
        data: the payload.
        mask: the 4-byte masking key.

    Returns:
        ``data`` XOR-ed with ``mask`` repeated.

    Raises:
        ValueError: if ``mask`` is not 4 bytes long.
    """
    if len(mask) != 4:
        raise ValueError("the masking key must be 4 bytes long")
    return _mask(data, mask) if data else b""


# ---------------------------------------------------------------------------
# Serializing (§5.2)

# Header layouts of §5.2: 7-bit, 16-bit (126) and 64-bit (127) payload length,
# each optionally followed by the 4-byte masking key.
_pack_short_masked = struct.Struct("!BB4s").pack
_pack_medium_masked = struct.Struct("!BBH4s").pack
_pack_long_masked = struct.Struct("!BBQ4s").pack
_pack_short = struct.Struct("!BB").pack
_pack_medium = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack
_unpack_medium = struct.Struct("!H").unpack_from
_unpack_long = struct.Struct("!Q").unpack_from


def _serialize_masked(head: int, payload: bytes, mask: bytes) -> bytes:
    # The client's per-message path: ``head`` is the first header byte (FIN,
    # RSV and opcode already combined) so no flag arithmetic happens here.
    if len(mask) != 4:
        # struct's "4s" would silently pad or truncate a wrong key.
        raise ValueError("the masking key must be 4 bytes long")
    n = len(payload)
    if n < 126:
        header = _pack_short_masked(head, 0x80 | n, mask)
    elif n < 0x10000:
        header = _pack_medium_masked(head, 0xFE, n, mask)
    else:
        header = _pack_long_masked(head, 0xFF, n, mask)
    if n:
        return header + _mask(payload, mask)
    return header


def serialize_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    mask_key: bytes | None = None,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
) -> bytes:
    """
    Encode one frame (RFC 6455 §5.2).

    A client must mask every frame it sends and a server must not (§5.1), so
    pass a fresh random ``mask_key`` on the client side and ``None`` to play
    the server in tests. No rule is checked beyond what the encoding needs:
    fake servers may build invalid frames on purpose.

    Args:
        opcode: the frame's opcode, 0-15.
        payload: the application data, unmasked.
        fin: whether this is the final fragment of its message (§5.4).
        mask_key: a 4-byte masking key (§5.3), or ``None`` for no masking.
        rsv1: the RSV1 bit, reserved for extensions.
        rsv2: the RSV2 bit, reserved for extensions.
        rsv3: the RSV3 bit, reserved for extensions.

    Returns:
        The frame's wire bytes.

    Raises:
        ValueError: if ``opcode`` is out of range or ``mask_key`` is not 4 bytes.
    """
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"opcode out of range: {opcode}")
    head = (fin << 7) | (rsv1 << 6) | (rsv2 << 5) | (rsv3 << 4) | opcode
    if mask_key is not None:
        return _serialize_masked(head, payload, mask_key)
    n = len(payload)
    if n < 126:
        header = _pack_short(head, n)
    elif n < 0x10000:
        header = _pack_medium(head, 126, n)
    else:
        header = _pack_long(head, 127, n)
    return header + bytes(payload)


def serialize_close_payload(code: int, reason: str = "") -> bytes:
    """
    Encode the body of a close frame (RFC 6455 §5.5.1).

    Args:
        code: a close code that may appear on the wire (§7.4): 1000-1003,
            1007-1014 or 3000-4999.
        reason: a human-readable reason; at most 123 bytes once UTF-8 encoded,
            since a control frame carries at most 125 bytes (§5.5).

    Returns:
        The 2-byte big-endian code followed by the UTF-8 reason.

    Raises:
        ValueError: if the code may not be sent or the reason is too long.
    """
    if not _is_wire_close_code(code):
        raise ValueError(f"close code {code} may not be sent in a close frame")
    data = code.to_bytes(2, "big") + reason.encode("utf-8")
    if len(data) > 125:
        raise ValueError("the close reason must be at most 123 bytes in UTF-8")
    return data


def parse_close_payload(data: bytes) -> tuple[int, str]:
    """
    Decode the body of a close frame (RFC 6455 §5.5.1).

    Args:
        data: the unmasked payload of a close frame.

    Returns:
        ``(code, reason)``; ``(1005, "")`` for an empty body, since §7.1.5
        says "no status code" is then considered to be 1005.

    Raises:
        FrameError: with code 1002 if the body is 1 byte long or the code may
            not appear on the wire (§7.4), with code 1007 if the reason is not
            valid UTF-8 (§5.5.1, §8.1).
    """
    n = len(data)
    if n == 0:
        return 1005, ""  # CloseCode.NO_STATUS_RCVD, as a plain int like wire codes
    if n == 1:
        raise FrameError(CloseCode.PROTOCOL_ERROR, "close frame too short")
    code = (data[0] << 8) | data[1]
    if not _is_wire_close_code(code):
        raise FrameError(CloseCode.PROTOCOL_ERROR, "invalid close code")
    try:
        reason = bytes(data[2:]).decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(
            CloseCode.INVALID_DATA, "invalid UTF-8 in close reason"
        ) from None
    return code, reason


# ---------------------------------------------------------------------------
# Parsing (§5.2)


_OPCODE_VALUES = frozenset(op.value for op in Opcode)


def _head_opcode(head: int) -> Opcode | None:
    # The opcode of a frame whose first header byte is ``head``, or None if
    # that byte alone breaks a rule: RSV1-3 "MUST be 0 unless an extension is
    # negotiated" and we never negotiate one (§5.2); opcodes 3-7 and 0xB-0xF
    # are reserved (§5.2); "control frames MUST NOT be fragmented" (§5.5).
    if head & 0x70 or head & 0x0F not in _OPCODE_VALUES:
        return None
    opcode = Opcode(head & 0x0F)
    if opcode >= 8 and not head & 0x80:
        return None
    return opcode


def _head_opcode_rsv1(head: int) -> Opcode | None:
    # The same with permessage-deflate negotiated (RFC 7692 §6): RSV1 marks the first frame
    # of a compressed message, so it may be set on a text or binary frame, never on a
    # continuation or control frame.
    if head & 0x70 == 0x40 and head & 0x0F in (OP_TEXT, OP_BINARY):
        return Opcode(head & 0x0F)
    return _head_opcode(head)


# One tuple lookup both validates the first header byte and turns its opcode
# into an enum member, far cheaper than bit tests plus Opcode(n) per frame.
_HEAD_TABLE: tuple[Opcode | None, ...] = tuple(
    _head_opcode(head) for head in range(256)
)
_HEAD_TABLE_RSV1: tuple[Opcode | None, ...] = tuple(_head_opcode_rsv1(head) for head in range(256))

_new_frame = tuple.__new__  # skips NamedTuple's Python-level __new__

# Larger than any length a valid header can announce (§5.2: MSB must be 0),
# so "no limit" needs no separate None test on the hot path.
_NO_LIMIT = 2**63


class FrameParser:
    """
    Incremental frame parser: feed it bytes as they arrive, get whole frames.

    It checks everything that can be checked frame by frame (§5.2, §5.5):
    no reserved bits (but RSV1 when permessage-deflate is negotiated), no reserved opcodes,
    control frames that are final and at most 125 bytes, masking that matches
    the sender's side, sane lengths. Message-level rules (fragmentation
    order, UTF-8) belong to :class:`wslocust.codec.protocol.ClientProtocol`.

    After it raises, the parser is unusable: every later call raises the
    same error again (with no frames).

    Args:
        max_frame_size: the largest payload accepted, in bytes, or ``None``
            for no limit. Checked as soon as the header arrives, so an
            oversized frame is never buffered.
        allow_masked: accept masked frames. A client must leave this False:
            a server must not mask (§5.1). Fake servers in tests set it True.
        allow_rsv1: accept RSV1 on text and binary frames (permessage-deflate was
            negotiated); the frames say it in their ``rsv1``.
    """

    __slots__ = ("_allow_masked", "_allow_rsv1", "_buffer", "_error", "_heads", "_max_size", "_need")

    def __init__(
        self, max_frame_size: int | None = None, *, allow_masked: bool = False, allow_rsv1: bool = False
    ) -> None:
        self._buffer = bytearray()
        # Bytes the buffer must hold before parsing can progress; lets a frame
        # that arrives in many chunks be buffered in linear time.
        self._need = 2
        self._max_size = _NO_LIMIT if max_frame_size is None else max_frame_size
        self._allow_masked = allow_masked
        self._allow_rsv1 = allow_rsv1
        self._heads = _HEAD_TABLE_RSV1 if allow_rsv1 else _HEAD_TABLE
        self._error: FrameError | None = None

    def feed(self, data: bytes) -> list[Frame]:
        """
        Parse as many complete frames as possible.

        Args:
            data: the next bytes received, of any length (even empty).

        Returns:
            Every frame completed by ``data``, in order, possibly none.
            Bytes of an incomplete frame stay buffered for the next call.

        Raises:
            FrameError: if the peer broke a framing rule; its ``frames``
                attribute holds the valid frames that preceded the bad one.
        """
        if self._error is not None:
            # A fresh instance, so that its empty ``frames`` cannot make the
            # caller process the earlier frames twice.
            raise FrameError(self._error.code, self._error.reason)
        buffer = self._buffer
        if buffer:
            buffer += data
            if len(buffer) < self._need:
                return []
            data = bytes(buffer)
            buffer.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        frames: list[Frame] = []
        pos = 0
        end = len(data)
        need = 2
        heads = self._heads
        try:
            while end - pos >= 2:
                head = data[pos]
                length = data[pos + 1]
                opcode = heads[head]
                if length < 126 and opcode is not None:
                    # An unmasked frame with a 7-bit length and a valid first
                    # byte: nearly every frame a server sends.
                    if length > self._max_size:
                        raise FrameError(
                            CloseCode.MESSAGE_TOO_BIG, "frame exceeds size limit"
                        )
                    start = pos + 2
                    stop = start + length
                    if stop > end:
                        need = stop - pos
                        break
                    payload = data[start:stop]
                else:
                    opcode, start, stop, mask = self._parse_header(data, pos, end)
                    if stop > end:
                        need = stop - pos
                        break
                    payload = data[start:stop]
                    if mask:
                        payload = _mask(payload, mask)
                frames.append(
                    _new_frame(
                        Frame, (opcode, payload, head >= 0x80, head & 0x40 == 0x40, False, False)
                    )
                )
                pos = stop
        except FrameError as exc:
            exc.frames = frames
            self._error = exc
            raise
        if pos < end:
            buffer += memoryview(data)[pos:]
        self._need = need
        return frames

    def _parse_header(
        self, data: bytes, pos: int, end: int
    ) -> tuple[Opcode, int, int, bytes]:
        # The general case: 16- or 64-bit length, masking, or a first byte
        # that breaks a rule. Returns (opcode, payload start, payload stop,
        # masking key or b""). If the header itself is incomplete, ``stop`` is
        # where it would end, past ``end``, and the other values are dummies.
        head = data[pos]
        second = data[pos + 1]
        opcode = self._heads[head]
        if opcode is None:
            if head & 0x70 == 0x40 and self._allow_rsv1:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "RSV1 on a continuation or control frame")
            if head & 0x70:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "reserved bits must be 0")
            if head & 0x0F not in _OPCODE_VALUES:
                raise FrameError(CloseCode.PROTOCOL_ERROR, "reserved opcode")
            raise FrameError(CloseCode.PROTOCOL_ERROR, "fragmented control frame")
        masked = second & 0x80
        if masked and not self._allow_masked:
            # §5.1: "a client MUST close a connection if it detects a masked
            # frame".
            raise FrameError(CloseCode.PROTOCOL_ERROR, "masked frame from server")
        length = second & 0x7F
        start = pos + 2
        if length == 126:
            start += 2
        elif length == 127:
            start += 8
        if masked:
            start += 4
        if start > end:
            return opcode, start, start, b""
        # Non-minimal length encodings (§5.2: "the minimal number of bytes
        # MUST be used") are accepted: rejecting them buys a load generator
        # nothing.
        if length == 126:
            length = _unpack_medium(data, pos + 2)[0]
        elif length == 127:
            length = _unpack_long(data, pos + 2)[0]
            if length >> 63:
                # §5.2: "the most significant bit MUST be 0".
                raise FrameError(CloseCode.PROTOCOL_ERROR, "invalid frame length")
        if length > 125 and opcode >= 8:
            # §5.5: "All control frames MUST have a payload length of 125
            # bytes or less".
            raise FrameError(CloseCode.PROTOCOL_ERROR, "control frame too long")
        if length > self._max_size:
            raise FrameError(CloseCode.MESSAGE_TOO_BIG, "frame exceeds size limit")
        mask = data[start - 4 : start] if masked and length else b""
        return opcode, start, start + length, mask
