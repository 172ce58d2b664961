"""
permessage-deflate (RFC 7692): the offer, the server's answer checked, and compressed messages both
ways, against zlib on the server's side (the codec, sans I/O), against a real server that speaks it
(Python ``websockets``, a subprocess) and one that does not (the reference server, which declines).
"""

from __future__ import annotations

import sys
import zlib

import gevent
import pytest
from helpers import REPO_ROOT, subprocess_environment, wait_for

from benchmarks.processes import CapturedProcess
from wslocust.codec.deflate import Deflate, DeflateOffer, DeflateParameters, accept
from wslocust.codec.frames import OP_CONT, OP_TEXT, serialize_frame
from wslocust.codec.protocol import ClientProtocol, Failure
from wslocust.codec.uri import parse_uri
from wslocust.exceptions import ConfigurationError, HandshakeError
from wslocust.run.counters import WsCounters
from wslocust.transport.connection import Connection

TAIL = b"\x00\x00\xff\xff"


def server_deflater(window_bits: int = 15) -> zlib._Compress:
    return zlib.compressobj(6, zlib.DEFLATED, -window_bits)


def server_compress(deflater: zlib._Compress, data: bytes) -> bytes:
    """A message's payload as a server sends it (§7.2.1)."""
    payload = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
    assert payload.endswith(TAIL)
    return payload[:-4]


def server_frame(payload: bytes, *, fin: bool = True, rsv1: bool = True, opcode=OP_TEXT) -> bytes:
    return serialize_frame(opcode, payload, fin=fin, rsv1=rsv1)


def unmask(frame: bytes) -> tuple[int, bytes]:
    """The first header byte and the unmasked payload of one client frame (payload < 126 bytes)."""
    length = frame[1] & 0x7F
    assert length < 126
    key, payload = frame[2:6], frame[6 : 6 + length]
    return frame[0], bytes(b ^ key[i % 4] for i, b in enumerate(payload))


# The offer and the answer --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "header"),
    [
        (DeflateOffer(), "permessage-deflate; client_max_window_bits"),
        (DeflateOffer(window_bits=10), "permessage-deflate; client_max_window_bits=10; server_max_window_bits=10"),
        (
            DeflateOffer(context_takeover=False),
            "permessage-deflate; client_max_window_bits; client_no_context_takeover; server_no_context_takeover",
        ),
    ],
    ids=["default", "window-10", "no-context-takeover"],
)
def test_the_offer_says_what_the_client_accepts(offer, header):
    assert offer.header() == header


@pytest.mark.parametrize(
    ("answer", "offer", "agreed"),
    [
        ("permessage-deflate", DeflateOffer(), DeflateParameters()),
        ("Permessage-Deflate; client_max_window_bits=12", DeflateOffer(), DeflateParameters(client_max_window_bits=12)),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            DeflateOffer(context_takeover=False),
            DeflateParameters(client_no_context_takeover=True, server_no_context_takeover=True),
        ),
        (
            'permessage-deflate; server_max_window_bits="10"',
            DeflateOffer(window_bits=10),
            DeflateParameters(client_max_window_bits=10, server_max_window_bits=10),
        ),
        # Unasked, a server may still limit its own window, and say it keeps no context.
        (
            "permessage-deflate; server_max_window_bits=9; server_no_context_takeover",
            DeflateOffer(),
            DeflateParameters(server_max_window_bits=9, server_no_context_takeover=True),
        ),
    ],
    ids=["plain", "client-window", "no-takeover", "quoted-window", "server-limits-itself"],
)
def test_an_answer_within_the_offer_is_agreed(answer, offer, agreed):
    assert accept(answer, offer) == agreed


@pytest.mark.parametrize(
    ("answer", "offer", "message"),
    [
        ("x-webkit-deflate-frame", DeflateOffer(), "server selected an unrequested extension: x-webkit-deflate-frame"),
        ("permessage-deflate, permessage-deflate", DeflateOffer(), "server selected 2 extensions"),
        ("permessage-deflate; level=9", DeflateOffer(), "permessage-deflate: unknown parameter level"),
        (
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            DeflateOffer(),
            "permessage-deflate: parameter server_no_context_takeover given twice",
        ),
        (
            "permessage-deflate; client_no_context_takeover=1",
            DeflateOffer(),
            "permessage-deflate: client_no_context_takeover takes no value, got '1'",
        ),
        (
            "permessage-deflate; server_max_window_bits=16",
            DeflateOffer(),
            "permessage-deflate: server_max_window_bits=16 is not a window size (8-15)",
        ),
        (
            "permessage-deflate; client_max_window_bits=09",
            DeflateOffer(),
            "permessage-deflate: client_max_window_bits=09 is not a window size (8-15)",
        ),
        (
            "permessage-deflate; client_max_window_bits",
            DeflateOffer(),
            "permessage-deflate: client_max_window_bits=None is not a window size (8-15)",
        ),
        (
            "permessage-deflate; client_max_window_bits=8",
            DeflateOffer(),
            "permessage-deflate: client_max_window_bits=8 cannot be honoured (zlib compresses with 9-15)",
        ),
        (
            "permessage-deflate; server_max_window_bits=12",
            DeflateOffer(window_bits=10),
            "permessage-deflate: server_max_window_bits=12 is above the 10 offered",
        ),
        (
            "permessage-deflate",
            DeflateOffer(window_bits=10),
            "permessage-deflate: server_max_window_bits=10 was offered and not accepted",
        ),
        (
            "permessage-deflate; client_no_context_takeover",
            DeflateOffer(context_takeover=False),
            "permessage-deflate: server_no_context_takeover was offered and not accepted",
        ),
    ],
    ids=[
        "other-extension", "two", "unknown-parameter", "repeated", "flag-with-value", "window-16",
        "leading-zero", "window-without-value", "client-window-8", "above-offer", "offer-ignored",
        "takeover-ignored",
    ],
)
def test_an_answer_outside_the_offer_is_refused_naming_what_is_wrong(answer, offer, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        accept(answer, offer)


@pytest.mark.parametrize("bits", [8, 16, "15"])
def test_a_window_outside_9_to_15_is_a_configuration_error_naming_it(bits):
    with pytest.raises(ConfigurationError, match=rf"^compression_window_bits {bits!r} is not valid: use a whole"):
        DeflateOffer(window_bits=bits)


# Messages both ways, sans I/O ---------------------------------------------------------------


def deflating_protocol(parameters: DeflateParameters | None = None, max_message_size=2**20, counters=None):
    deflate = Deflate(parameters or DeflateParameters(), max_message_size=max_message_size, counters=counters)
    mask = b"\x01\x02\x03\x04"
    return ClientProtocol(max_message_size=max_message_size, deflate=deflate, mask_key=lambda: mask)


def test_messages_sent_are_compressed_with_rsv1_and_keep_their_context():
    counters = WsCounters()
    protocol = deflating_protocol(counters=counters)
    server = zlib.decompressobj(-15)
    message = '{"type": "chat", "text": "hello hello hello"}'
    payloads = []
    for _ in range(2):
        head, payload = unmask(protocol.send_text(message))
        assert head == 0x80 | 0x40 | OP_TEXT  # FIN, RSV1, text
        assert server.decompress(payload + TAIL) == message.encode()
        payloads.append(payload)
    # The second message refers back to the first: context takeover.
    assert len(payloads[1]) < len(payloads[0]) < len(message)
    assert counters.deflate_payload_sent == 2 * len(message)
    assert counters.deflate_wire_sent == sum(map(len, payloads))


def test_without_client_context_takeover_each_message_is_compressed_alone():
    protocol = deflating_protocol(DeflateParameters(client_no_context_takeover=True))
    message = "hello " * 10
    first, second = (unmask(protocol.send_text(message))[1] for _ in range(2))
    assert first == second
    assert zlib.decompressobj(-15).decompress(second + TAIL) == message.encode()


def test_compressed_messages_received_are_inflated_with_their_context_and_counted():
    counters = WsCounters()
    protocol = deflating_protocol(counters=counters)
    deflater = server_deflater()
    wire = [server_compress(deflater, b"hello world " * 5) for _ in range(2)]
    events = protocol.receive_data(server_frame(wire[0]) + server_frame(wire[1]) + server_frame(b"plain", rsv1=False))
    assert events == ["hello world " * 5, "hello world " * 5, "plain"]
    assert (counters.deflate_payload_received, counters.deflate_wire_received) == (120, sum(map(len, wire)))


def test_without_server_context_takeover_each_message_is_inflated_alone():
    protocol = deflating_protocol(DeflateParameters(server_no_context_takeover=True))
    payloads = [server_compress(server_deflater(), b"again and again") for _ in range(2)]
    assert protocol.receive_data(b"".join(server_frame(p) for p in payloads)) == ["again and again"] * 2


def test_a_fragmented_compressed_message_is_inflated_whole():
    protocol = deflating_protocol()
    payload = server_compress(server_deflater(), b"fragmented " * 20)
    middle = len(payload) // 2
    frames = server_frame(payload[:middle], fin=False) + server_frame(payload[middle:], rsv1=False, opcode=OP_CONT)
    assert protocol.receive_data(frames) == ["fragmented " * 20]


@pytest.mark.parametrize(
    ("frames", "code", "reason"),
    [
        (server_frame(b"\xff\xff\xff\xff"), 1007, "invalid compressed message"),
        (server_frame(server_compress(server_deflater(), b"\x00" * 5000)), 1009, "message exceeds size limit once inflated"),
        (
            server_frame(b"a", fin=False, rsv1=False) + server_frame(b"b", rsv1=True, opcode=OP_CONT),
            1002,
            "RSV1 on a continuation or control frame",
        ),
    ],
    ids=["not-deflate", "inflates-past-the-limit", "rsv1-on-continuation"],
)
def test_a_bad_compressed_message_fails_the_connection(frames, code, reason):
    protocol = deflating_protocol(max_message_size=4096)
    events = protocol.receive_data(frames)
    assert isinstance(events[-1], Failure)
    assert (events[-1].code, events[-1].reason.split(" (")[0]) == (code, reason)


def test_rsv1_without_negotiation_fails_the_connection():
    events = ClientProtocol().receive_data(server_frame(server_compress(server_deflater(), b"hi")))
    assert events == [Failure(1002, "reserved bits must be 0")]


# Real servers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def websockets_server(tmp_path_factory):
    """Python websockets' server (it accepts permessage-deflate), echoing, as a subprocess."""
    folder = tmp_path_factory.mktemp("websockets")
    script = REPO_ROOT / "tests" / "interop_servers" / "websockets_server.py"
    server = CapturedProcess(
        "websockets", [sys.executable, str(script)], env=subprocess_environment(), cwd=REPO_ROOT, folder=folder
    )
    try:
        port = wait_for(lambda: server.find(r"^PORT (\d+)$", "stdout"), timeout=20, message="its port")
        yield f"ws://127.0.0.1:{port[1]}/deflate"
    finally:
        server.kill()


def echo_through(url: str, offer: DeflateOffer | None, messages: list[str]) -> tuple[Connection, list, WsCounters]:
    counters = WsCounters()
    received: list = []
    connection = Connection(parse_uri(url), on_message=lambda m, at: received.append(m), compression_counts=counters)
    connection.open(timeout=10, compression=offer)
    receiver = gevent.spawn(connection.receive_forever)
    for message in messages:
        connection.send_text(message)
    wait_for(lambda: len(received) == len(messages), timeout=10)
    connection.close()
    receiver.join(5)
    return connection, received, counters


@pytest.mark.parametrize(
    ("offer", "agreed"),
    [
        # websockets answers with 12-bit windows both ways (its memory-saving defaults).
        (DeflateOffer(), DeflateParameters(client_max_window_bits=12, server_max_window_bits=12)),
        (
            DeflateOffer(window_bits=10, context_takeover=False),
            DeflateParameters(10, 10, client_no_context_takeover=True, server_no_context_takeover=True),
        ),
    ],
    ids=["default", "small-window-no-takeover"],
)
def test_a_server_that_speaks_it_agrees_and_echoes_compressed_messages(websockets_server, offer, agreed):
    messages = [f'{{"n": {n}, "text": "{"lorem ipsum " * 20}"}}' for n in range(20)]
    connection, received, counters = echo_through(websockets_server, offer, messages)
    assert connection.compression == agreed
    assert received == messages
    assert counters.deflate_connects == 1
    assert counters.deflate_payload_sent == counters.deflate_payload_received == sum(len(m) for m in messages)
    assert counters.deflate_wire_sent < counters.deflate_payload_sent / 4


def test_a_server_that_does_not_speak_it_declines_and_messages_flow_uncompressed(server):
    connection, received, counters = echo_through(f"ws://127.0.0.1:{server.port}/ws", DeflateOffer(), ["plain"])
    assert connection.compression is None
    assert received == ["plain"]
    assert counters.deflate_connects == counters.deflate_wire_sent == 0


def test_an_extension_the_client_did_not_offer_fails_the_upgrade(websockets_server):
    # websockets answers every offer; with none made, it selects nothing and the upgrade succeeds...
    connection, received, _ = echo_through(websockets_server, None, ["none offered"])
    assert connection.compression is None and received == ["none offered"]
    # ...and an answer to an offer never made is refused, naming the extension.
    from wslocust.codec.handshake import Response, negotiated_deflate

    with pytest.raises(HandshakeError, match="^server selected an unrequested extension: permessage-deflate$"):
        answer = Response(101, "Switching Protocols", [("Sec-WebSocket-Extensions", "permessage-deflate")])
        negotiated_deflate(answer, None)
