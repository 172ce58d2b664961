"""
Micro-benchmark of the codec's per-message path.

Prints microseconds per operation (best of several runs) for:

- serializing a 64-byte masked text frame (``ClientProtocol.send_text``,
  including the masking key and the UTF-8 encoding);
- parsing a 64-byte unmasked text frame into a ``str``
  (``ClientProtocol.receive_data``).

Run: ``python benchmarks/codec_bench.py [iterations]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wslocust.codec import frames
from wslocust.codec.frames import OP_TEXT, FrameParser, serialize_frame
from wslocust.codec.protocol import ClientProtocol

__all__ = ["main", "measure"]

MESSAGE = "x" * 64
WIRE = serialize_frame(OP_TEXT, MESSAGE.encode())


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
    print(f"{label:44s} {best:6.3f} µs  (mean {mean:.3f})")


def main(iterations: int = 200_000) -> None:
    protocol = ClientProtocol()
    assert protocol.receive_data(WIRE) == [MESSAGE]
    parser = FrameParser(2**20)
    mask = b"\x37\xfa\x21\x3d"
    payload = MESSAGE.encode()
    masker = "wsaccel" if frames._mask is frames._apply_mask_c else "pure Python"

    def send() -> bytes:
        return protocol.send_text(MESSAGE)

    def receive() -> object:
        return protocol.receive_data(WIRE)

    print(f"{iterations} iterations each, masking with {masker}; best round of 40 (mean)")
    report("send_text, 64-byte masked text frame", send, iterations)
    report("receive_data, 64-byte text frame -> str", receive, iterations)
    report(
        "  serialize_frame, fixed mask key",
        lambda: serialize_frame(OP_TEXT, payload, mask_key=mask),
        iterations,
    )
    report("  FrameParser.feed alone", lambda: parser.feed(WIRE), iterations)
    saved = frames._mask
    frames._mask = frames._apply_mask_py
    try:
        report("send_text with pure-Python masking", send, iterations)
    finally:
        frames._mask = saved


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
