"""
Micro-benchmark of the codec's per-message path, and the same against the
maintained sans-I/O libraries: ``websockets`` (``websockets.client.ClientProtocol``)
and ``wsproto`` (``WSConnection``).

For each codec and each message size (64 bytes and 64 KiB, text), the
microseconds per message (best of 40 rounds, and the mean) of:

- **send**: a ``str`` in, the masked frame's bytes out (what the connection
  writes): wslocust ``send_text(str)``; websockets ``send_text(str.encode())``
  then ``data_to_send()``; wsproto ``send(Message(data=str))``;
- **receive**: one unmasked text frame's bytes in (as ``recv()`` returns
  them), the message as a ``str`` out: wslocust ``receive_data()``;
  websockets ``receive_data()``, ``events_received()`` and the frame's
  ``data.decode()`` (its sans-I/O layer hands over bytes; its I/O layers
  decode them); wsproto ``receive_data()`` and ``events()``.

Each library's connection is opened first with a real handshake response
(the same bytes a server sends), so every call runs on an ``OPEN`` protocol.
The wslocust-only lines below the table are the pieces of its path.

Run: ``python benchmarks/codec_bench.py [iterations]`` (wsproto: ``.venv/bin/pip
install wsproto``; a missing library is skipped with one line).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wslocust.codec import frames
from wslocust.codec.frames import OP_TEXT, FrameParser, serialize_frame
from wslocust.codec.protocol import ClientProtocol

__all__ = ["CODECS", "SIZES", "main", "measure"]

SIZES = (64, 65536)
MESSAGE = "x" * 64
WIRE = serialize_frame(OP_TEXT, MESSAGE.encode())
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Pair = tuple[Callable[[], object], Callable[[], object]]
"""(send one message, receive one message)."""


def measure(function: Callable[[], object], iterations: int, rounds: int = 40) -> tuple[float, float]:
    """
    Time ``iterations`` calls, split into ``rounds`` rounds.

    Returns:
        (best round, mean over all rounds) in microseconds per call. On a
        shared or virtual machine the best round is the steadier figure.
    """
    per_round = max(iterations // rounds, 1)
    loop = range(per_round)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in loop:
            function()
        times.append(time.perf_counter() - start)
    return min(times) / per_round * 1e6, sum(times) / (per_round * rounds) * 1e6


def report(label: str, function: Callable[[], object], iterations: int) -> None:
    best, mean = measure(function, iterations)
    print(f"{label:44s} {best:8.3f} µs  (mean {mean:.3f})")


def _switching_response(key: str) -> bytes:
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
    ).encode()


def wslocust_codec(text: str, wire: bytes) -> Pair:
    protocol = ClientProtocol()
    assert protocol.receive_data(wire) == [text]
    return (lambda: protocol.send_text(text)), (lambda: protocol.receive_data(wire))


def websockets_codec(text: str, wire: bytes) -> Pair:
    from websockets.client import ClientProtocol as WebsocketsClient
    from websockets.uri import parse_uri

    protocol = WebsocketsClient(parse_uri("ws://127.0.0.1:8765/"))
    request = protocol.connect()
    protocol.send_request(request)
    protocol.data_to_send()
    protocol.receive_data(_switching_response(request.headers["Sec-WebSocket-Key"]))
    protocol.events_received()
    receive_data, events_received, send_text, data_to_send = (
        protocol.receive_data, protocol.events_received, protocol.send_text, protocol.data_to_send,
    )  # fmt: skip

    def send() -> object:
        send_text(text.encode())
        return data_to_send()

    def receive() -> object:
        receive_data(wire)
        return [frame.data.decode() for frame in events_received()]  # type: ignore[union-attr]

    assert receive() == [text]
    return send, receive


def wsproto_codec(text: str, wire: bytes) -> Pair:
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import Message, Request

    connection = WSConnection(ConnectionType.CLIENT)
    request = connection.send(Request(host="127.0.0.1:8765", target="/"))
    key = next(
        line.split(b": ", 1)[1] for line in request.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")
    )
    connection.receive_data(_switching_response(key.decode()))
    list(connection.events())
    send_event, receive_data, events = connection.send, connection.receive_data, connection.events

    def send() -> object:
        return send_event(Message(data=text))

    def receive() -> object:
        receive_data(wire)
        return [event.data for event in events()]  # type: ignore[attr-defined]

    assert receive() == [text]
    return send, receive


CODECS: dict[str, Callable[[str, bytes], Pair]] = {
    "wslocust": wslocust_codec,
    "websockets": websockets_codec,
    "wsproto": wsproto_codec,
}


def compare(iterations: int) -> None:
    """The table: µs per message sent and received, by codec and size, and each against wslocust's."""
    print(f"{'codec':12s} {'size':>7s} {'send µs':>9s} {'x ours':>7s} {'receive µs':>11s} {'x ours':>7s}")
    for size in SIZES:
        text = "x" * size
        wire = serialize_frame(OP_TEXT, text.encode())
        count = iterations if size <= 1024 else max(iterations // 50, 400)
        ours: tuple[float, float] | None = None
        for name, factory in CODECS.items():
            try:
                send, receive = factory(text, wire)
            except ImportError as exc:
                print(f"{name:12s} {size:7d} not installed ({exc.name}): skipped")
                continue
            sent, received = measure(send, count)[0], measure(receive, count)[0]
            ours = ours or (sent, received)
            print(f"{name:12s} {size:7d} {sent:9.3f} {sent / ours[0]:7.2f} {received:11.3f} {received / ours[1]:7.2f}")


def main(iterations: int = 200_000) -> None:
    masker = "websockets' C code" if frames._mask is frames._apply_mask_c else "pure Python"
    print(f"per message, best round of 40; {iterations} iterations at 64 B, 1/50 of them at 64 KiB")
    compare(iterations)
    protocol = ClientProtocol()
    parser = FrameParser(2**20)
    mask = b"\x37\xfa\x21\x3d"
    payload = MESSAGE.encode()

    def send() -> bytes:
        return protocol.send_text(MESSAGE)

    print(f"\nwslocust's pieces, 64 B, masking with {masker}; best round of 40 (mean)")
    report("send_text, 64-byte masked text frame", send, iterations)
    report("receive_data, 64-byte text frame -> str", lambda: protocol.receive_data(WIRE), iterations)
    report("  serialize_frame, fixed mask key", lambda: serialize_frame(OP_TEXT, payload, mask_key=mask), iterations)
    report("  FrameParser.feed alone", lambda: parser.feed(WIRE), iterations)
    saved = frames._mask
    frames._mask = frames._apply_mask_py
    try:
        report("send_text with pure-Python masking", send, iterations)
    finally:
        frames._mask = saved
    _masking(mask, iterations)


def _masking(mask: bytes, iterations: int) -> None:
    """Masking alone: wslocust's (websockets' C code since issue 15) against wsaccel's (byte by byte), if installed."""
    try:
        from wsaccel.xormask import XorMaskerSimple  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        XorMaskerSimple = None

    def wsaccel_mask(data: bytes) -> bytes:
        return XorMaskerSimple(mask).process(data)  # type: ignore[no-any-return, misc]

    print("\nmasking alone")
    for size in SIZES:
        data = b"x" * size
        count = iterations if size <= 1024 else max(iterations // 50, 400)
        report(f"  wslocust apply_mask, {size} B", functools.partial(frames.apply_mask, data, mask), count)
        report(f"  pure-Python fallback, {size} B", functools.partial(frames._apply_mask_py, data, mask), count)
        if XorMaskerSimple is not None:
            report(f"  wsaccel, {size} B", functools.partial(wsaccel_mask, data), count)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
