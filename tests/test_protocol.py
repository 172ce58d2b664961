"""Tests of wslocust.codec.protocol.ClientProtocol, without any I/O."""

from __future__ import annotations

import itertools

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
    Frame,
    FrameParser,
    parse_close_payload,
    serialize_close_payload,
    serialize_frame,
)
from wslocust.codec.protocol import (
    CLOSED,
    CLOSING,
    OPEN,
    ClientProtocol,
    Close,
    Event,
    Failure,
    Ping,
    Pong,
    State,
    random_mask,
)
from wslocust.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
)

MASK = bytes.fromhex("37fa213d")


@pytest.fixture(params=["websockets", "python"])
def mask_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once with each masking implementation."""
    if request.param == "websockets":
        if frames._apply_mask_c is None:
            pytest.skip("websockets is built without its C extension")
        monkeypatch.setattr(frames, "_mask", frames._apply_mask_c)
    else:
        monkeypatch.setattr(frames, "_mask", frames._apply_mask_py)
    return str(request.param)


def client(**kwargs: object) -> ClientProtocol:
    kwargs.setdefault("mask_key", lambda: MASK)
    return ClientProtocol(**kwargs)  # type: ignore[arg-type]


def server_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A frame as a server sends it: unmasked."""
    return serialize_frame(opcode, payload, fin=fin)


def server_close(code: int, reason: str = "") -> bytes:
    return server_frame(OP_CLOSE, serialize_close_payload(code, reason))


def sent_frames(data: bytes) -> list[Frame]:
    """Decode what the client wrote, checking that every frame is masked."""
    parser = FrameParser(allow_masked=True)
    result = parser.feed(data)
    pos = 0
    for frame in result:
        assert data[pos + 1] & 0x80, "client frames must be masked (§5.1)"
        n = len(frame.payload)
        pos += 2 + (0 if n < 126 else 2 if n < 65536 else 8) + 4 + n
    assert pos == len(data)
    return result


def test_states() -> None:
    assert (OPEN, CLOSING, CLOSED) == (State.OPEN, State.CLOSING, State.CLOSED)
    protocol = ClientProtocol()
    assert protocol.state is OPEN
    assert protocol.close_code is None
    assert protocol.close_reason == ""
    assert not protocol.close_sent
    assert not protocol.close_received
    assert protocol.data_to_send() == b""


# Sending ---------------------------------------------------------------------


def test_send_text_rfc_vector(mask_impl: str) -> None:
    assert client().send_text("Hello") == bytes.fromhex("818537fa213d7f9f4d5158")


def test_send_text_bytes_are_sent_as_is(mask_impl: str) -> None:
    assert client().send_text(b"Hello") == bytes.fromhex("818537fa213d7f9f4d5158")
    assert sent_frames(client().send_text("é")) == [Frame(OP_TEXT, "é".encode())]


def test_send_binary(mask_impl: str) -> None:
    data = client().send_binary(bytes(range(256)))
    assert data[:8] == b"\x82\xfe\x01\x00" + MASK
    assert sent_frames(data) == [Frame(OP_BINARY, bytes(range(256)))]


def test_send_ping_and_pong(mask_impl: str) -> None:
    protocol = client()
    assert protocol.send_pong(b"Hello") == bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert protocol.send_ping(b"Hello") == bytes.fromhex("898537fa213d7f9f4d5158")
    assert protocol.send_ping() == b"\x89\x80" + MASK
    with pytest.raises(ValueError, match="125"):
        protocol.send_ping(bytes(126))
    with pytest.raises(ValueError, match="125"):
        protocol.send_pong(bytes(126))


def test_send_fragments(mask_impl: str) -> None:
    protocol = client()
    assert sent_frames(protocol.send_fragments("Hello", 3)) == [
        Frame(OP_TEXT, b"Hel", fin=False),
        Frame(OP_CONT, b"lo"),
    ]
    assert sent_frames(protocol.send_fragments(b"abcd", 2, binary=True)) == [
        Frame(OP_BINARY, b"ab", fin=False),
        Frame(OP_CONT, b"cd"),
    ]
    assert sent_frames(protocol.send_fragments("Hello", 5)) == [
        Frame(OP_TEXT, b"Hello")
    ]
    assert sent_frames(protocol.send_fragments("Hello", 99)) == [
        Frame(OP_TEXT, b"Hello")
    ]
    assert sent_frames(protocol.send_fragments("", 3)) == [Frame(OP_TEXT, b"")]
    assert len(sent_frames(protocol.send_fragments("Hello", 1))) == 5
    with pytest.raises(ValueError, match="fragment_size"):
        protocol.send_fragments("Hello", 0)


def test_default_mask_key_is_random() -> None:
    keys = {random_mask() for _ in range(3000)}
    assert all(len(key) == 4 for key in keys)
    assert len(keys) > 2990
    data = ClientProtocol().send_text("Hello")
    assert data[:2] == b"\x81\x85"
    assert sent_frames(data) == [Frame(OP_TEXT, b"Hello")]


def test_wrong_mask_key_length_is_refused() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        ClientProtocol(mask_key=lambda: b"abc").send_text("x")


# Receiving messages ---------------------------------------------------------


def test_receive_text_and_binary() -> None:
    protocol = client()
    data = server_frame(OP_TEXT, b"Hello") + server_frame(OP_BINARY, b"\x00\xff")
    events = protocol.receive_data(data)
    assert events == ["Hello", b"\x00\xff"]
    assert type(events[0]) is str
    assert type(events[1]) is bytes
    assert protocol.receive_data(server_frame(OP_TEXT, b"")) == [""]
    assert protocol.data_to_send() == b""


def test_receive_rfc_fragmented_message() -> None:
    protocol = client()
    assert protocol.receive_data(bytes.fromhex("010348656c")) == []
    assert protocol.receive_data(bytes.fromhex("80026c6f")) == ["Hello"]


def test_receive_fragmented_with_interleaved_control_frames() -> None:
    # §5.4: control frames may be injected in the middle of a fragmented message.
    protocol = client()
    data = (
        server_frame(OP_BINARY, b"ab", fin=False)
        + server_frame(OP_PING, b"p")
        + server_frame(OP_CONT, b"cd", fin=False)
        + server_frame(OP_PONG, b"q")
        + server_frame(OP_CONT, b"ef")
    )
    assert protocol.receive_data(data) == [Ping(b"p"), Pong(b"q"), b"abcdef"]
    assert sent_frames(protocol.data_to_send()) == [Frame(OP_PONG, b"p")]


def test_receive_fragmented_text_split_inside_a_character() -> None:
    protocol = client()
    encoded = "€uro".encode()
    data = server_frame(OP_TEXT, encoded[:1], fin=False) + server_frame(
        OP_CONT, encoded[1:]
    )
    assert protocol.receive_data(data) == ["€uro"]


def test_receive_empty_fragments() -> None:
    protocol = client()
    data = server_frame(OP_TEXT, b"", fin=False) + server_frame(OP_CONT, b"", fin=False)
    assert protocol.receive_data(data + server_frame(OP_CONT, b"")) == [""]


def test_receive_in_small_chunks() -> None:
    protocol = client()
    data = (
        server_frame(OP_TEXT, b"Hello")
        + server_frame(OP_PING, b"x")
        + server_frame(OP_BINARY, bytes(300))
    )
    events: list[Event] = []
    for i in range(len(data)):
        events += protocol.receive_data(data[i : i + 1])
    assert events == ["Hello", Ping(b"x"), bytes(300)]


def test_validate_utf8_false_uses_surrogateescape() -> None:
    protocol = client(validate_utf8=False)
    (message,) = protocol.receive_data(server_frame(OP_TEXT, b"ok\xff"))
    assert message == "ok\udcff"
    assert isinstance(message, str)
    assert message.encode("utf-8", "surrogateescape") == b"ok\xff"
    assert protocol.state is OPEN
    data = server_frame(OP_TEXT, b"\xe2", fin=False) + server_frame(OP_CONT, b"\x82")
    assert protocol.receive_data(data) == ["\udce2\udc82"]


def test_max_message_size_none_means_no_limit() -> None:
    protocol = client(max_message_size=None)
    assert protocol.receive_data(server_frame(OP_BINARY, bytes(2**21))) == [
        bytes(2**21)
    ]


def test_max_message_size_is_inclusive() -> None:
    protocol = client(max_message_size=4)
    data = server_frame(OP_TEXT, b"ab", fin=False) + server_frame(OP_CONT, b"cd")
    assert protocol.receive_data(server_frame(OP_BINARY, b"abcd") + data) == [
        b"abcd",
        "abcd",
    ]


# Pings and pongs ---------------------------------------------------------------


def test_ping_is_answered(mask_impl: str) -> None:
    protocol = client()
    assert protocol.receive_data(bytes.fromhex("890548656c6c6f")) == [Ping(b"Hello")]
    # §5.5.2: the pong carries the ping's data; §5.7's masked pong, exactly.
    assert protocol.data_to_send() == bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert protocol.data_to_send() == b""


def test_several_pings_queue_several_pongs() -> None:
    protocol = client()
    protocol.receive_data(server_frame(OP_PING, b"1") + server_frame(OP_PING, b""))
    assert sent_frames(protocol.data_to_send()) == [
        Frame(OP_PONG, b"1"),
        Frame(OP_PONG, b""),
    ]


def test_pong_is_reported_not_answered() -> None:
    protocol = client()
    assert protocol.receive_data(server_frame(OP_PONG, b"t")) == [Pong(b"t")]
    assert protocol.data_to_send() == b""


# Protocol errors ------------------------------------------------------------

ERRORS = [
    pytest.param(server_frame(OP_CONT, b"x"), 1002, id="continuation-without-start"),
    pytest.param(
        server_frame(OP_TEXT, b"a", fin=False) + server_frame(OP_TEXT, b"b"),
        1002,
        id="new-message-inside-fragmented",
    ),
    pytest.param(
        server_frame(OP_TEXT, b"a", fin=False) + server_frame(OP_BINARY, b"b"),
        1002,
        id="binary-inside-fragmented-text",
    ),
    pytest.param(b"\xc1\x00", 1002, id="rsv1"),
    pytest.param(b"\x83\x00", 1002, id="reserved-opcode"),
    pytest.param(b"\x89\x7e\x00\x7e" + bytes(126), 1002, id="control-too-long"),
    pytest.param(b"\x09\x00", 1002, id="fragmented-control"),
    pytest.param(bytes.fromhex("818537fa213d7f9f4d5158"), 1002, id="masked-by-server"),
    pytest.param(b"\x82\x7f\x80" + bytes(7), 1002, id="length-msb"),
    pytest.param(server_frame(OP_CLOSE, b"\x03"), 1002, id="close-one-byte"),
    pytest.param(
        server_frame(OP_CLOSE, (1005).to_bytes(2, "big")), 1002, id="close-code-1005"
    ),
    pytest.param(
        server_frame(OP_CLOSE, (999).to_bytes(2, "big")), 1002, id="close-code-999"
    ),
    pytest.param(server_frame(OP_CLOSE, b"\x03\xe8\xc3"), 1007, id="close-reason-utf8"),
    pytest.param(server_frame(OP_TEXT, b"\xff"), 1007, id="invalid-utf8"),
    pytest.param(server_frame(OP_TEXT, "é".encode()[:1]), 1007, id="truncated-utf8"),
    pytest.param(
        server_frame(OP_TEXT, b"\xc3", fin=False) + server_frame(OP_CONT, b"\x28"),
        1007,
        id="invalid-utf8-fragmented",
    ),
    pytest.param(server_frame(OP_BINARY, bytes(101)), 1009, id="frame-too-big"),
    pytest.param(server_frame(OP_TEXT, bytes(101)), 1009, id="text-frame-too-big"),
    pytest.param(
        server_frame(OP_BINARY, bytes(60), fin=False)
        + server_frame(OP_CONT, bytes(41)),
        1009,
        id="fragmented-message-too-big",
    ),
]


@pytest.mark.parametrize(("data", "code"), ERRORS)
def test_protocol_errors_fail_the_connection(data: bytes, code: int) -> None:
    protocol = client(max_message_size=100)
    events = protocol.receive_data(data)
    assert len(events) == 1
    failure = events[0]
    assert type(failure) is Failure
    assert failure.code == code
    assert type(failure.code) is int
    assert failure.reason
    # §7.1.7: the close frame carrying the code is queued.
    (frame,) = sent_frames(protocol.data_to_send())
    assert frame.opcode is OP_CLOSE
    assert parse_close_payload(frame.payload) == (code, failure.reason)
    assert protocol.state is CLOSING
    assert protocol.close_sent
    assert not protocol.close_received
    assert (protocol.close_code, protocol.close_reason) == (code, failure.reason)
    # Everything after a failure is ignored.
    assert protocol.receive_data(server_frame(OP_TEXT, b"late")) == []
    assert protocol.receive_data(server_frame(OP_PING)) == []
    assert protocol.data_to_send() == b""
    with pytest.raises(ConnectionClosedError) as info:
        protocol.send_text("x")
    assert info.value.code == code
    protocol.receive_eof()
    assert protocol.state is CLOSED
    assert protocol.close_code == code


@pytest.mark.parametrize(("data", "code"), ERRORS)
def test_protocol_errors_fed_byte_by_byte(data: bytes, code: int) -> None:
    protocol = client(max_message_size=100)
    events: list[Event] = []
    for i in range(len(data)):
        events += protocol.receive_data(data[i : i + 1])
    assert [type(e) for e in events] == [Failure]
    assert events[0].code == code  # type: ignore[union-attr]


def test_messages_before_an_error_are_delivered() -> None:
    protocol = client()
    data = (
        server_frame(OP_TEXT, b"one")
        + server_frame(OP_PING, b"p")
        + b"\xc1\x00"
        + server_frame(OP_TEXT, b"two")
    )
    events = protocol.receive_data(data)
    assert events[:2] == ["one", Ping(b"p")]
    assert type(events[2]) is Failure
    assert len(events) == 3
    assert [f.opcode for f in sent_frames(protocol.data_to_send())] == [
        OP_PONG,
        OP_CLOSE,
    ]


def test_frames_after_a_message_level_error_are_dropped() -> None:
    protocol = client()
    data = server_frame(OP_CONT, b"x") + server_frame(OP_TEXT, b"two")
    events = protocol.receive_data(data)
    assert [type(e) for e in events] == [Failure]


def test_failure_after_our_close_sends_no_second_close() -> None:
    protocol = client()
    protocol.send_close()
    (failure,) = protocol.receive_data(server_frame(OP_TEXT, b"\xff"))
    assert failure == Failure(1007, "invalid UTF-8 in text message")
    assert protocol.data_to_send() == b""
    assert protocol.close_code == 1007


# Closing -------------------------------------------------------------------------


def test_server_initiated_close(mask_impl: str) -> None:
    protocol = client()
    events = protocol.receive_data(
        server_frame(OP_TEXT, b"last") + server_close(1001, "bye")
    )
    assert events == ["last", Close(1001, "bye")]
    # §5.5.1: the reply echoes the code.
    assert protocol.data_to_send() == serialize_frame(
        OP_CLOSE, b"\x03\xe9", mask_key=MASK
    )
    assert protocol.state is CLOSING
    assert protocol.close_sent and protocol.close_received
    assert (protocol.close_code, protocol.close_reason) == (1001, "bye")
    # Nothing may follow a close frame.
    assert (
        protocol.receive_data(server_frame(OP_TEXT, b"late") + server_frame(OP_PING))
        == []
    )
    assert protocol.data_to_send() == b""
    with pytest.raises(ConnectionClosedOK) as info:
        protocol.send_text("x")
    assert (info.value.code, info.value.reason) == (1001, "bye")
    assert protocol.send_close() == b""
    # §7.1.1: the server closes TCP first; only then is the connection CLOSED.
    protocol.receive_eof()
    assert protocol.state is CLOSED
    assert protocol.close_code == 1001


def test_server_close_without_code() -> None:
    protocol = client()
    assert protocol.receive_data(server_frame(OP_CLOSE)) == [Close(1005, "")]
    # 1005 may not be sent: an empty close answers an empty close.
    assert sent_frames(protocol.data_to_send()) == [Frame(OP_CLOSE, b"")]
    with pytest.raises(ConnectionClosedError) as info:
        protocol.send_binary(b"x")
    assert info.value.code == 1005


def test_server_close_with_application_code() -> None:
    protocol = client()
    assert protocol.receive_data(server_close(4000, "app")) == [Close(4000, "app")]
    assert sent_frames(protocol.data_to_send()) == [Frame(OP_CLOSE, b"\x0f\xa0")]


def test_server_close_mid_fragmented_message() -> None:
    protocol = client()
    data = server_frame(OP_TEXT, b"a", fin=False) + server_close(1000)
    assert protocol.receive_data(data) == [Close(1000, "")]


def test_client_initiated_close(mask_impl: str) -> None:
    protocol = client()
    data = protocol.send_close(1000, "done")
    assert data == serialize_frame(OP_CLOSE, b"\x03\xe8done", mask_key=MASK)
    assert protocol.state is CLOSING
    assert protocol.close_sent and not protocol.close_received
    assert protocol.close_code is None
    # Sending after our close raises, with the code we sent.
    with pytest.raises(ConnectionClosedOK) as info:
        protocol.send_text("x")
    assert info.value.code == 1000
    with pytest.raises(ConnectionClosed):
        protocol.send_ping()
    with pytest.raises(ConnectionClosed):
        protocol.send_fragments("ab", 1)
    assert protocol.send_close() == b""
    # The server may still send data before its close reply (§7.1.2); a ping
    # is not answered since nothing may follow our close frame (§5.5.1).
    events = protocol.receive_data(
        server_frame(OP_TEXT, b"late") + server_frame(OP_PING, b"p")
    )
    assert events == ["late", Ping(b"p")]
    assert protocol.receive_data(server_close(1000, "ok")) == [Close(1000, "ok")]
    assert protocol.data_to_send() == b""
    assert protocol.state is CLOSING
    assert protocol.close_received
    assert (protocol.close_code, protocol.close_reason) == (1000, "ok")
    protocol.receive_eof()
    assert protocol.state is CLOSED


def test_client_close_with_error_code_raises_connection_closed_error() -> None:
    protocol = client()
    protocol.send_close(4001)
    with pytest.raises(ConnectionClosedError) as info:
        protocol.send_text("x")
    assert info.value.code == 4001


def test_send_close_validates_its_arguments() -> None:
    protocol = client()
    for code in (1005, 1006, 999, 5000):
        with pytest.raises(ValueError, match="may not be sent"):
            protocol.send_close(code)
    with pytest.raises(ValueError, match="123 bytes"):
        protocol.send_close(1000, "x" * 124)
    assert protocol.state is OPEN


def test_eof_without_close_is_1006() -> None:
    protocol = client()
    assert protocol.receive_data(server_frame(OP_TEXT, b"a", fin=False)[:-1]) == []
    protocol.receive_eof()
    assert protocol.state is CLOSED
    assert (protocol.close_code, protocol.close_reason) == (1006, "")
    assert not protocol.close_received
    for send in (
        lambda: protocol.send_text("x"),
        lambda: protocol.send_binary(b"x"),
        lambda: protocol.send_ping(),
        lambda: protocol.send_pong(),
    ):
        with pytest.raises(ConnectionClosedError) as info:
            send()
        assert info.value.code == 1006
    assert protocol.send_close() == b""
    assert protocol.receive_data(server_frame(OP_TEXT, b"x")) == []
    protocol.receive_eof()
    assert protocol.close_code == 1006


def test_eof_after_our_close_without_reply_is_1006() -> None:
    protocol = client()
    protocol.send_close()
    protocol.receive_eof()
    assert protocol.state is CLOSED
    assert protocol.close_code == 1006


# Round trips ---------------------------------------------------------------------


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def fragment(payload: bytes, cuts: list[int]) -> list[bytes]:
    return split_at(payload, cuts) if payload else [b""]


messages = st.one_of(st.text(max_size=300), st.binary(max_size=3000))


@given(
    message=messages,
    fragment_cuts=st.lists(st.integers(min_value=0), max_size=6),
    chunk_cuts=st.lists(st.integers(min_value=0), max_size=20),
)
@example(message="", fragment_cuts=[], chunk_cuts=[])
@example(message=b"", fragment_cuts=[], chunk_cuts=[])
@example(message="x" * 125, fragment_cuts=[], chunk_cuts=[1])
@example(message=b"x" * 126, fragment_cuts=[], chunk_cuts=[2, 3])
@example(message="€" * 21845, fragment_cuts=[7], chunk_cuts=[])
@example(message=b"y" * 65535, fragment_cuts=[], chunk_cuts=[4, 70000])
@example(message="z" * 65536, fragment_cuts=[], chunk_cuts=[9])
@example(message=b"\x00" * 65536, fragment_cuts=[1, 2, 65535], chunk_cuts=[5, 10])
@example(message="w" * 2**20, fragment_cuts=[], chunk_cuts=[3, 12345, 2**19])
@example(
    message=bytes(range(256)) * 4096, fragment_cuts=[100, 2**19], chunk_cuts=[7, 2**20]
)
def test_server_messages_round_trip(
    message: str | bytes, fragment_cuts: list[int], chunk_cuts: list[int]
) -> None:
    """Whatever the fragmentation and the TCP chunking, the message comes out intact."""
    payload = message.encode() if isinstance(message, str) else message
    opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
    pieces = fragment(payload, fragment_cuts)
    wire = b"".join(
        server_frame(opcode if i == 0 else OP_CONT, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )
    protocol = ClientProtocol()
    events: list[Event] = []
    for chunk in split_at(wire, chunk_cuts):
        events += protocol.receive_data(chunk)
    assert events == [message]
    assert type(events[0]) is type(message)
    assert protocol.data_to_send() == b""


def reassemble(frame_list: list[Frame]) -> str | bytes:
    assert frame_list[0].opcode in (OP_TEXT, OP_BINARY)
    assert all(f.opcode is OP_CONT for f in frame_list[1:])
    assert [f.fin for f in frame_list] == [False] * (len(frame_list) - 1) + [True]
    payload = b"".join(f.payload for f in frame_list)
    return payload.decode() if frame_list[0].opcode is OP_TEXT else payload


@given(message=messages, fragment_size=st.integers(min_value=1, max_value=4000))
@example(message="", fragment_size=1)
@example(message=b"x" * 125, fragment_size=125)
@example(message="x" * 126, fragment_size=4000)
@example(message=b"x" * 65535, fragment_size=65535)
@example(message="x" * 65536, fragment_size=65535)
@example(message=b"x" * 2**20, fragment_size=2**20)
@example(message="x" * 2**20, fragment_size=100000)
def test_client_messages_round_trip(message: str | bytes, fragment_size: int) -> None:
    """What the client sends decodes, once unmasked, to the original message."""
    protocol = ClientProtocol()
    if isinstance(message, str):
        single = protocol.send_text(message)
    else:
        single = protocol.send_binary(message)
    assert reassemble(sent_frames(single)) == message
    fragmented = protocol.send_fragments(
        message, fragment_size, binary=isinstance(message, bytes)
    )
    frame_list = sent_frames(fragmented)
    size = len(message.encode() if isinstance(message, str) else message)
    assert len(frame_list) == max(1, -(-size // fragment_size))
    assert reassemble(frame_list) == message
