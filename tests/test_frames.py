"""Tests of wslocust.codec.frames: RFC 6455 §5 framing, byte for byte."""

from __future__ import annotations

import ast
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from wslocust.codec import frames
from wslocust.codec.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    CloseCode,
    Frame,
    FrameError,
    FrameParser,
    Opcode,
    apply_mask,
    parse_close_payload,
    serialize_close_payload,
    serialize_frame,
)
from wslocust.exceptions import ProtocolError

# The masking key of every masked example in RFC 6455 §5.7.
MASK = bytes.fromhex("37fa213d")

MASK_IMPLS = ["python"]
if frames._apply_mask_c is not None:
    MASK_IMPLS.insert(0, "websockets")


@pytest.fixture(params=MASK_IMPLS)
def mask_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once with each masking implementation."""
    impl = frames._apply_mask_c if request.param == "websockets" else frames._apply_mask_py
    monkeypatch.setattr(frames, "_mask", impl)
    return str(request.param)


def parse_all(data: bytes, **kwargs: object) -> list[Frame]:
    return FrameParser(**kwargs).feed(data)  # type: ignore[arg-type]


def parse_bytewise(data: bytes, **kwargs: object) -> list[Frame]:
    parser = FrameParser(**kwargs)  # type: ignore[arg-type]
    result: list[Frame] = []
    for i in range(len(data)):
        result += parser.feed(data[i : i + 1])
    return result


def assert_error(data: bytes, code: int, **kwargs: object) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_all(data, **kwargs)
    assert info.value.code == code
    # Fed byte by byte, the parser must find the same fault.
    with pytest.raises(FrameError) as info2:
        parse_bytewise(data, **kwargs)
    assert info2.value.code == code
    return info.value


# Enumerations --------------------------------------------------------------


def test_opcodes() -> None:
    assert [int(op) for op in Opcode] == [0, 1, 2, 8, 9, 10]
    assert (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG) == tuple(Opcode)
    assert frames.DATA_OPCODES == (OP_CONT, OP_TEXT, OP_BINARY)
    assert frames.CTRL_OPCODES == (OP_CLOSE, OP_PING, OP_PONG)


def test_close_codes() -> None:
    assert CloseCode.NORMAL_CLOSURE == 1000
    assert CloseCode.NO_STATUS_RCVD == 1005
    assert CloseCode.INVALID_DATA == 1007
    assert CloseCode.MESSAGE_TOO_BIG == 1009
    assert CloseCode.TLS_HANDSHAKE == 1015
    assert sorted(int(c) for c in CloseCode) == [1000, 1001, 1002, 1003] + list(
        range(1005, 1016)
    )


def test_frame_error_is_a_protocol_error() -> None:
    error = FrameError(CloseCode.PROTOCOL_ERROR, "bad")
    assert isinstance(error, ProtocolError)
    assert (error.code, error.reason, str(error), error.frames) == (
        1002,
        "bad",
        "bad",
        [],
    )


# RFC 6455 §5.7 examples, both directions -----------------------------------

VECTORS = [
    pytest.param(
        Frame(OP_TEXT, b"Hello"),
        None,
        "810548656c6c6f",
        id="single-frame unmasked text",
    ),
    pytest.param(
        Frame(OP_TEXT, b"Hello"),
        MASK,
        "818537fa213d7f9f4d5158",
        id="single-frame masked text",
    ),
    pytest.param(
        Frame(OP_TEXT, b"Hel", fin=False),
        None,
        "010348656c",
        id="first fragment unmasked",
    ),
    pytest.param(Frame(OP_CONT, b"lo"), None, "80026c6f", id="last fragment unmasked"),
    pytest.param(Frame(OP_PING, b"Hello"), None, "890548656c6c6f", id="unmasked ping"),
    pytest.param(
        Frame(OP_PONG, b"Hello"), MASK, "8a8537fa213d7f9f4d5158", id="masked pong"
    ),
    pytest.param(
        Frame(OP_BINARY, bytes(range(256))),
        None,
        "827e0100" + bytes(range(256)).hex(),
        id="256-byte binary",
    ),
    pytest.param(
        Frame(OP_BINARY, b"\xab" * 65536),
        None,
        "827f0000000000010000" + "ab" * 65536,
        id="64KiB binary",
    ),
]


@pytest.mark.parametrize(("frame", "mask", "wire_hex"), VECTORS)
def test_rfc_vector_serialize(
    frame: Frame, mask: bytes | None, wire_hex: str, mask_impl: str
) -> None:
    wire = serialize_frame(frame.opcode, frame.payload, fin=frame.fin, mask_key=mask)
    assert wire == bytes.fromhex(wire_hex)


@pytest.mark.parametrize(("frame", "mask", "wire_hex"), VECTORS)
def test_rfc_vector_parse(
    frame: Frame, mask: bytes | None, wire_hex: str, mask_impl: str
) -> None:
    wire = bytes.fromhex(wire_hex)
    assert parse_all(wire, allow_masked=mask is not None) == [frame]


def test_rfc_fragmented_message_in_one_chunk() -> None:
    wire = bytes.fromhex("010348656c80026c6f")
    assert parse_all(wire) == [Frame(OP_TEXT, b"Hel", fin=False), Frame(OP_CONT, b"lo")]


def test_masked_binary_vectors_with_larger_lengths(mask_impl: str) -> None:
    for size in (126, 65535, 65536):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        wire = serialize_frame(OP_BINARY, payload, mask_key=MASK)
        assert wire[1] & 0x80
        assert wire[-len(payload) - 4 : -len(payload)] == MASK
        assert parse_all(wire, allow_masked=True) == [Frame(OP_BINARY, payload)]


def test_length_encodings_at_the_boundaries() -> None:
    assert serialize_frame(OP_BINARY, bytes(125))[:2] == b"\x82\x7d"
    assert serialize_frame(OP_BINARY, bytes(126))[:4] == b"\x82\x7e\x00\x7e"
    assert serialize_frame(OP_BINARY, bytes(65535))[:4] == b"\x82\x7e\xff\xff"
    assert serialize_frame(OP_BINARY, bytes(65536))[:10] == b"\x82\x7f" + (
        65536
    ).to_bytes(8, "big")
    masked = serialize_frame(OP_BINARY, bytes(126), mask_key=MASK)
    assert masked[:8] == b"\x82\xfe\x00\x7e" + MASK


# Serializing ---------------------------------------------------------------


def test_serialize_flags() -> None:
    assert serialize_frame(OP_TEXT, b"", fin=False) == b"\x01\x00"
    assert serialize_frame(OP_TEXT, b"", rsv1=True) == b"\xc1\x00"
    assert serialize_frame(OP_TEXT, b"", rsv2=True) == b"\xa1\x00"
    assert serialize_frame(OP_TEXT, b"", rsv3=True) == b"\x91\x00"
    # Fake servers may build invalid frames on purpose.
    assert serialize_frame(3, b"") == b"\x83\x00"


def test_serialize_empty_masked_payload(mask_impl: str) -> None:
    assert serialize_frame(OP_PING, b"", mask_key=MASK) == b"\x89\x80" + MASK


def test_serialize_accepts_bytes_like() -> None:
    assert serialize_frame(OP_BINARY, bytearray(b"ab")) == b"\x82\x02ab"
    assert serialize_frame(OP_BINARY, memoryview(b"ab")) == b"\x82\x02ab"  # type: ignore[arg-type]


@pytest.mark.parametrize("opcode", [-1, 16])
def test_serialize_rejects_bad_opcode(opcode: int) -> None:
    with pytest.raises(ValueError, match="opcode"):
        serialize_frame(opcode, b"")


@pytest.mark.parametrize("mask", [b"", b"abc", b"abcde"])
def test_serialize_rejects_bad_mask(mask: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        serialize_frame(OP_TEXT, b"x", mask_key=mask)


# Masking -------------------------------------------------------------------


def test_apply_mask_rfc_example(mask_impl: str) -> None:
    assert apply_mask(b"Hello", MASK) == bytes.fromhex("7f9f4d5158")
    assert apply_mask(b"", MASK) == b""


def test_apply_mask_rejects_bad_mask() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"x", b"abc")


@given(data=st.binary(max_size=2000), mask=st.binary(min_size=4, max_size=4))
def test_mask_implementations_agree(data: bytes, mask: bytes) -> None:
    expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    assert frames._apply_mask_py(data, mask) == expected
    if frames._apply_mask_c is not None:
        assert frames._apply_mask_c(data, mask) == expected
    assert apply_mask(apply_mask(data, mask), mask) == data


# Parsing -------------------------------------------------------------------


def test_parser_keeps_partial_frames() -> None:
    parser = FrameParser()
    assert parser.feed(b"") == []
    assert parser.feed(b"\x81") == []
    assert parser.feed(b"\x05Hel") == []
    assert parser.feed(b"") == []
    assert parser.feed(b"lo\x82") == [Frame(OP_TEXT, b"Hello")]
    assert parser.feed(b"\x00\x89") == [Frame(OP_BINARY, b"")]
    assert parser.feed(b"\x00") == [Frame(OP_PING, b"")]


def test_parser_partial_extended_lengths() -> None:
    for payload in (bytes(300), bytes(70000)):
        wire = serialize_frame(OP_BINARY, payload)
        parser = FrameParser()
        for cut in (1, 2, 3, 5, 9, 11):
            assert parser.feed(wire[:cut]) == []
            wire = wire[cut:]
        assert parser.feed(wire) == [Frame(OP_BINARY, payload)]


def test_parser_accepts_bytes_like() -> None:
    assert FrameParser().feed(bytearray(b"\x81\x01a")) == [Frame(OP_TEXT, b"a")]
    assert FrameParser().feed(memoryview(b"\x81\x01a")) == [Frame(OP_TEXT, b"a")]  # type: ignore[arg-type]
    payload = FrameParser().feed(bytearray(b"\x81\x01a"))[0].payload
    assert type(payload) is bytes


def test_parser_returns_plain_tuples_with_enum_opcodes() -> None:
    (frame,) = FrameParser().feed(b"\x82\x01a")
    assert frame.opcode is OP_BINARY
    assert frame == (OP_BINARY, b"a", True, False, False, False)


def test_parser_fed_one_byte_at_a_time_matches_whole() -> None:
    wire = b"".join(
        [
            bytes.fromhex("810548656c6c6f"),
            bytes.fromhex("010348656c"),
            bytes.fromhex("890548656c6c6f"),
            bytes.fromhex("80026c6f"),
            serialize_frame(OP_BINARY, bytes(range(256))),
            serialize_frame(OP_BINARY, b"\x01" * 70000),
            serialize_frame(OP_CLOSE, serialize_close_payload(1000, "bye")),
            serialize_frame(OP_PONG, b""),
        ]
    )
    whole = parse_all(wire)
    assert len(whole) == 8
    assert parse_bytewise(wire) == whole


def test_parser_accepts_non_minimal_lengths() -> None:
    assert parse_all(b"\x81\x7e\x00\x05Hello") == [Frame(OP_TEXT, b"Hello")]
    assert parse_all(b"\x81\x7f" + (5).to_bytes(8, "big") + b"Hello") == [
        Frame(OP_TEXT, b"Hello")
    ]


def test_parser_unmasks_when_allowed(mask_impl: str) -> None:
    wire = bytes.fromhex("818537fa213d7f9f4d5158") + b"\x89\x80" + MASK
    assert parse_all(wire, allow_masked=True) == [
        Frame(OP_TEXT, b"Hello"),
        Frame(OP_PING, b""),
    ]


def test_parser_max_frame_size() -> None:
    assert parse_all(serialize_frame(OP_BINARY, bytes(10)), max_frame_size=10) == [
        Frame(OP_BINARY, bytes(10))
    ]
    assert_error(serialize_frame(OP_BINARY, bytes(11)), 1009, max_frame_size=10)


def test_parser_rejects_oversized_frame_from_its_header() -> None:
    # The payload never has to arrive: 1 GiB announced, 10 bytes allowed.
    parser = FrameParser(10)
    with pytest.raises(FrameError) as info:
        parser.feed(b"\x82\x7f" + (2**30).to_bytes(8, "big"))
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        pytest.param(b"\xc1\x00", "reserved bits", id="rsv1"),
        pytest.param(b"\xa1\x00", "reserved bits", id="rsv2"),
        pytest.param(b"\x91\x00", "reserved bits", id="rsv3"),
        *(
            pytest.param(bytes([0x80 | op, 0]), "reserved opcode", id=f"opcode-{op}")
            for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)
        ),
        pytest.param(
            b"\x89\x7e\x00\x7e" + bytes(126), "control frame too long", id="ping-126"
        ),
        pytest.param(
            b"\x88\x7e\x00\x7e" + bytes(126), "control frame too long", id="close-126"
        ),
        pytest.param(b"\x09\x00", "fragmented control frame", id="ping-not-fin"),
        pytest.param(b"\x0a\x00", "fragmented control frame", id="pong-not-fin"),
        pytest.param(b"\x81\x80" + MASK, "masked frame from server", id="masked"),
        pytest.param(
            b"\x82\x7f\x80" + bytes(7), "invalid frame length", id="length-msb"
        ),
    ],
)
def test_parser_protocol_errors(wire: bytes, reason: str) -> None:
    error = assert_error(wire, CloseCode.PROTOCOL_ERROR)
    assert reason in error.reason


def test_parser_control_frame_of_125_bytes_is_fine() -> None:
    assert parse_all(serialize_frame(OP_PING, bytes(125))) == [
        Frame(OP_PING, bytes(125))
    ]


def test_parser_error_keeps_preceding_frames_and_sticks() -> None:
    parser = FrameParser()
    with pytest.raises(FrameError) as info:
        parser.feed(b"\x81\x01a\x82\x01b\xc1\x00\x81\x01c")
    assert info.value.frames == [Frame(OP_TEXT, b"a"), Frame(OP_BINARY, b"b")]
    with pytest.raises(FrameError) as again:
        parser.feed(b"\x81\x01d")
    assert (again.value.code, again.value.reason) == (
        info.value.code,
        info.value.reason,
    )
    assert again.value.frames == []


# Close payloads (§5.5.1, §7.4) --------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        1000,
        1001,
        1002,
        1003,
        1007,
        1008,
        1009,
        1010,
        1011,
        1012,
        1013,
        1014,
        3000,
        4999,
    ],
)
def test_close_payload_round_trip(code: int) -> None:
    data = serialize_close_payload(code, "héllo")
    assert data == code.to_bytes(2, "big") + "héllo".encode()
    assert parse_close_payload(data) == (code, "héllo")
    assert parse_close_payload(code.to_bytes(2, "big")) == (code, "")


def test_close_payload_rfc_layout() -> None:
    assert serialize_close_payload(1000) == b"\x03\xe8"
    assert serialize_close_payload(1001, "bye") == b"\x03\xe9bye"


def test_empty_close_payload_means_1005() -> None:
    assert parse_close_payload(b"") == (1005, "")


def test_one_byte_close_payload_is_a_protocol_error() -> None:
    with pytest.raises(FrameError) as info:
        parse_close_payload(b"\x03")
    assert info.value.code == 1002


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]
)
def test_invalid_close_codes(code: int) -> None:
    with pytest.raises(FrameError) as info:
        parse_close_payload(code.to_bytes(2, "big"))
    assert info.value.code == 1002
    with pytest.raises(ValueError, match="may not be sent"):
        serialize_close_payload(code)


def test_close_reason_must_be_utf8() -> None:
    with pytest.raises(FrameError) as info:
        parse_close_payload(b"\x03\xe8\xff")
    assert info.value.code == 1007


def test_close_reason_length_limit() -> None:
    assert len(serialize_close_payload(1000, "x" * 123)) == 125
    with pytest.raises(ValueError, match="123 bytes"):
        serialize_close_payload(1000, "x" * 124)
    with pytest.raises(ValueError, match="123 bytes"):
        serialize_close_payload(1000, "é" * 62)


# Properties ----------------------------------------------------------------


@st.composite
def frame_lists(draw: st.DrawFn) -> list[Frame]:
    result = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.booleans()):
            opcode = draw(st.sampled_from([OP_CLOSE, OP_PING, OP_PONG]))
            result.append(Frame(opcode, draw(st.binary(max_size=125))))
        else:
            opcode = draw(st.sampled_from([OP_CONT, OP_TEXT, OP_BINARY]))
            payload = draw(st.binary(max_size=70000))
            result.append(Frame(opcode, payload, fin=draw(st.booleans())))
    return result


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(
    frame_list=frame_lists(),
    masked=st.booleans(),
    cuts=st.lists(st.integers(min_value=0), max_size=20),
)
def test_parse_serialize_round_trip(
    frame_list: list[Frame], masked: bool, cuts: list[int]
) -> None:
    mask = MASK if masked else None
    wire = b"".join(
        serialize_frame(f.opcode, f.payload, fin=f.fin, mask_key=mask)
        for f in frame_list
    )
    parser = FrameParser(allow_masked=masked)
    parsed: list[Frame] = []
    for chunk in split_at(wire, cuts):
        parsed += parser.feed(chunk)
    assert parsed == frame_list


@given(payload=st.binary(max_size=300), mask=st.binary(min_size=4, max_size=4))
@example(payload=b"", mask=MASK)
@example(payload=bytes(125), mask=MASK)
@example(payload=bytes(126), mask=MASK)
@example(payload=bytes(65535), mask=MASK)
@example(payload=bytes(65536), mask=MASK)
@example(payload=bytes(range(256)) * 4096, mask=MASK)
def test_masked_round_trip_sizes(payload: bytes, mask: bytes) -> None:
    wire = serialize_frame(OP_BINARY, payload, mask_key=mask)
    assert FrameParser(allow_masked=True).feed(wire) == [Frame(OP_BINARY, payload)]


# Isolation -----------------------------------------------------------------

CODEC_MODULES = ("frames", "protocol", "handshake")
FORBIDDEN_MODULES = (
    "gevent",
    "socket",
    "_socket",
    "ssl",
    "_ssl",
    "locust",
    "websocket",
)
PACKAGE_DIR = Path(frames.__file__).parent

# wslocust/__init__.py imports locust (which patches sockets through gevent),
# so importing wslocust.codec.frames normally would drag it in. The child process
# registers a bare "wslocust" package pointing at the source directory, so the
# codec modules (and wslocust.exceptions, which they use) load from their
# files without running __init__.py.
ISOLATED_IMPORT = """
import importlib, json, sys, types
package = types.ModuleType("wslocust")
package.__path__ = [sys.argv[1]]
sys.modules["wslocust"] = package
before = set(sys.modules)
for name in sys.argv[2:]:
    importlib.import_module("wslocust." + name)
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_codec_modules_load_no_io_library() -> None:
    result = subprocess.run(
        [sys.executable, "-c", ISOLATED_IMPORT, str(PACKAGE_DIR), *CODEC_MODULES],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = json.loads(result.stdout)
    assert {f"wslocust.{name}" for name in CODEC_MODULES} <= set(loaded)
    roots = {name.partition(".")[0] for name in loaded}
    assert not roots & set(FORBIDDEN_MODULES), sorted(roots & set(FORBIDDEN_MODULES))


@pytest.mark.parametrize("name", CODEC_MODULES)
def test_codec_modules_import_statements(name: str) -> None:
    tree = ast.parse((PACKAGE_DIR / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported.add(node.module.partition(".")[0])
    assert not imported & set(FORBIDDEN_MODULES)
