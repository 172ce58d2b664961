"""
The ``codec`` benchmark's stand-ins (``benchmarks/codec_adapters.py``): websockets' and wsproto's
sans-I/O protocols behind wslocust's codec interface must deliver what wslocust's own codec
delivers, or the benchmark compares different work.
"""

from __future__ import annotations

import gevent
import pytest
from helpers import wait_for

from benchmarks.codec_adapters import WebsocketsProtocol, WsprotoProtocol
from wslocust.codec.frames import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, serialize_frame
from wslocust.codec.protocol import CLOSED, OPEN, ClientProtocol, Close, Ping
from wslocust.codec.uri import parse_uri
from wslocust.transport import connection as connection_module
from wslocust.transport.connection import Connection

STAND_INS = [WebsocketsProtocol, WsprotoProtocol]

STREAMS = {
    "text": serialize_frame(OP_TEXT, "héllo".encode()),
    "binary": serialize_frame(OP_BINARY, b"\x00\xff" * 40),
    "64 KiB text": serialize_frame(OP_TEXT, b"x" * 65536),
    "fragments with a ping between": (
        serialize_frame(OP_TEXT, b"ab", fin=False)
        + serialize_frame(OP_PING, b"p")
        + serialize_frame(OP_CONT, b"cd", fin=False)
        + serialize_frame(OP_CONT, b"ef")
    ),
    "pong": serialize_frame(OP_PONG, b"mine"),
    "close": serialize_frame(OP_CLOSE, (4001).to_bytes(2, "big") + b"bye"),
}


@pytest.mark.parametrize("stand_in", STAND_INS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("name", list(STREAMS))
def test_a_stand_in_delivers_what_wslocusts_codec_delivers_whole_or_a_byte_at_a_time(stand_in, name):
    stream = STREAMS[name]
    own = ClientProtocol()
    expected = own.receive_data(stream)
    for chunks in ([stream], [stream[i : i + 1] for i in range(len(stream))]):
        protocol = stand_in()
        events = [event for chunk in chunks for event in protocol.receive_data(chunk)]
        assert events == expected, (name, len(chunks))
        # A ping is answered, and a close too, from data_to_send, as wslocust's codec does.
        assert bool(protocol.data_to_send()) == any(isinstance(e, (Ping, Close)) for e in expected)
        assert (protocol.state is OPEN) == (own.state is OPEN)  # a close leaves both closing (or closed)
    if name == "close":
        assert protocol.close_code == 4001 and protocol.close_reason == "bye"
        protocol.receive_eof()
        assert protocol.state is CLOSED


@pytest.mark.parametrize("stand_in", STAND_INS, ids=lambda cls: cls.__name__)
def test_a_connection_framed_by_a_stand_in_echoes_pings_and_closes_cleanly_with_the_reference_server(
    stand_in, server, monkeypatch
):
    monkeypatch.setattr(connection_module, "ClientProtocol", stand_in)
    received, pongs = [], []
    connection = Connection(
        parse_uri(server.url),
        on_message=lambda message, at: received.append(message),
        on_pong=lambda data, at: pongs.append(data),
    )
    connection.open(timeout=5)
    assert type(connection._protocol) is stand_in  # the benchmark's swap took
    reader = gevent.spawn(connection.receive_forever)
    messages = ["small", "x" * 65536, b"\x01\x02" * 1000]
    for message in messages:
        if isinstance(message, str):
            connection.send_text(message)
        else:
            connection.send_binary(message)
    connection.send_ping(b"are you there")
    wait_for(lambda: received == messages and pongs == [b"are you there"])
    connection.close()
    reader.join(5)
    assert connection.closed is not None and connection.closed.code == 1000
    assert wait_for(lambda: server.counters.connections_closed == 1)
