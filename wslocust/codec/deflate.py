"""
permessage-deflate (RFC 7692), sans I/O: the offer a client sends, the server's answer checked, and
the compression of each message.

A client that asks for it offers::

    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits

(``client_max_window_bits`` with no value says "choose any window for my messages"; a smaller
``window_bits`` offers ``client_max_window_bits=N; server_max_window_bits=N``, and no context
takeover adds ``client_no_context_takeover; server_no_context_takeover``). The server selects it
or not; when it does, :func:`accept` checks its parameters (§7.1) and returns the
:class:`Deflate` both directions use: a message's frames carry RSV1 on the first, its payload is
the raw DEFLATE stream without the ``00 00 ff ff`` tail of a sync flush (§7.2.1), and with context
takeover each side keeps its sliding window from one message to the next (about 64 KiB of zlib
state per direction and connection at the default 15 window bits).

zlib cannot compress with an 8-bit window (it needs 9 to 15), so a server that asks
``client_max_window_bits=8`` is refused with a handshake error saying so.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

from wslocust.exceptions import ConfigurationError

__all__ = ["EXTENSION", "Deflate", "DeflateOffer", "DeflateParameters", "Inflated", "accept"]

EXTENSION = "permessage-deflate"

_TAIL = b"\x00\x00\xff\xff"
"""What a sync flush ends with and §7.2.1 removes; put back before inflating (§7.2.2)."""

_WINDOW_BITS = re.compile(r"^(?:[89]|1[0-5])$")  # §7.1.2: 8-15, no leading zero, no sign


@dataclass(frozen=True)
class DeflateOffer:
    """
    What a client offers.

    Args:
        window_bits: the largest window (9-15) either side may use; 15 (the default) leaves the
            server free to choose the window for the client's messages and offers no limit on its own.
        context_takeover: keep each direction's window from one message to the next (better
            compression, ~64 KiB per direction and connection); False offers
            ``client_no_context_takeover; server_no_context_takeover``.
        level: zlib's compression level for the messages sent (0-9).
    """

    window_bits: int = 15
    context_takeover: bool = True
    level: int = 6

    def __post_init__(self) -> None:
        if type(self.window_bits) is not int or not 9 <= self.window_bits <= 15:
            raise ConfigurationError(
                f"compression_window_bits {self.window_bits!r} is not valid: use a whole number from 9 to 15"
            )
        if type(self.level) is not int or not 0 <= self.level <= 9:
            raise ConfigurationError(f"compression level {self.level!r} is not valid: use a whole number from 0 to 9")

    def header(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value of the offer."""
        parts = [EXTENSION]
        if self.window_bits == 15:
            parts.append("client_max_window_bits")
        else:
            parts += [f"client_max_window_bits={self.window_bits}", f"server_max_window_bits={self.window_bits}"]
        if not self.context_takeover:
            parts += ["client_no_context_takeover", "server_no_context_takeover"]
        return "; ".join(parts)


@dataclass(frozen=True)
class DeflateParameters:
    """The parameters both sides agreed on (§7.1)."""

    client_max_window_bits: int = 15
    server_max_window_bits: int = 15
    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False

    def describe(self) -> str:
        """One line for a report: ``permessage-deflate (client window 15 bits, server window 15 bits, ...)``."""
        takeover = []
        if self.client_no_context_takeover:
            takeover.append("no client context takeover")
        if self.server_no_context_takeover:
            takeover.append("no server context takeover")
        return (
            f"{EXTENSION} (client window {self.client_max_window_bits} bits, server window "
            f"{self.server_max_window_bits} bits{''.join(', ' + t for t in takeover)})"
        )


def accept(answer: str, offer: DeflateOffer) -> DeflateParameters:
    """
    Check the server's ``Sec-WebSocket-Extensions`` answer to ``offer`` (RFC 7692 §5, §7.1).

    Args:
        answer: the header's value, not empty.
        offer: what was offered.

    Returns:
        The agreed parameters.

    Raises:
        ValueError: the answer selects another extension or more than one, or has a parameter
            that is unknown, repeated, not offered where the server may only accept, or out of
            range; the message names it.
    """
    extensions = [part.strip() for part in answer.split(",") if part.strip()]
    if len(extensions) != 1:
        raise ValueError(f"server selected {len(extensions)} extensions, {EXTENSION} was the one offered")
    name, *parameters = (item.strip() for item in extensions[0].split(";"))
    if name.lower() != EXTENSION:
        raise ValueError(f"server selected an unrequested extension: {name}")
    values: dict[str, str | None] = {}
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        key = key.strip().lower()
        if key in values:
            raise ValueError(f"{EXTENSION}: parameter {key} given twice")
        values[key] = value.strip().strip('"') if value else None
    agreed: dict[str, int | bool] = {}
    for key, given in values.items():
        if key in ("client_no_context_takeover", "server_no_context_takeover"):
            if given is not None:
                raise ValueError(f"{EXTENSION}: {key} takes no value, got {given!r}")
            agreed[key] = True
        elif key in ("client_max_window_bits", "server_max_window_bits"):
            if given is None or not _WINDOW_BITS.match(given):
                raise ValueError(f"{EXTENSION}: {key}={given} is not a window size (8-15)")
            agreed[key] = int(given)
        else:
            raise ValueError(f"{EXTENSION}: unknown parameter {key}")
    if not offer.context_takeover and not agreed.get("server_no_context_takeover"):
        # §7.1.1.1: a server that accepts an offer with server_no_context_takeover says so.
        raise ValueError(f"{EXTENSION}: server_no_context_takeover was offered and not accepted")
    # §7.1.2: the server may lower the client's window (it offered to accept any, or at most its value).
    client_bits = min(offer.window_bits, int(agreed.get("client_max_window_bits", 15)))
    server_bits = int(agreed.get("server_max_window_bits", 15))
    if offer.window_bits < 15:
        if "server_max_window_bits" not in agreed:
            raise ValueError(f"{EXTENSION}: server_max_window_bits={offer.window_bits} was offered and not accepted")
        if server_bits > offer.window_bits:
            raise ValueError(
                f"{EXTENSION}: server_max_window_bits={server_bits} is above the {offer.window_bits} offered"
            )
    if client_bits == 8:
        raise ValueError(f"{EXTENSION}: client_max_window_bits=8 cannot be honoured (zlib compresses with 9-15)")
    return DeflateParameters(
        client_max_window_bits=client_bits,
        server_max_window_bits=server_bits,
        client_no_context_takeover=bool(agreed.get("client_no_context_takeover", not offer.context_takeover)),
        server_no_context_takeover=bool(agreed.get("server_no_context_takeover", False)),
    )


class Inflated(Exception):
    """A compressed message that cannot be inflated: not DEFLATE, or larger than allowed once inflated."""

    def __init__(self, too_big: bool, reason: str) -> None:
        super().__init__(reason)
        self.too_big = too_big
        self.reason = reason


class Deflate:
    """
    One connection's compression state, both directions (client side).

    Args:
        parameters: what the handshake agreed.
        level: zlib's level for the messages sent.
        max_message_size: the largest message accepted once inflated, or None for no limit.
        counters: adds each message's sizes, compressed and not, to its ``deflate_*`` fields
            (:class:`wslocust.run.counters.WsCounters`), if given.
    """

    __slots__ = (
        "_counters",
        "_deflater",
        "_inflater",
        "_level",
        "_max_size",
        "_reset_deflater",
        "_reset_inflater",
        "parameters",
    )

    def __init__(
        self,
        parameters: DeflateParameters,
        level: int = 6,
        max_message_size: int | None = None,
        counters: Any = None,
    ) -> None:
        self.parameters = parameters
        self._counters = counters
        self._level = level
        self._max_size = 0 if max_message_size is None else max_message_size  # zlib: 0 = no limit
        self._reset_deflater = parameters.client_no_context_takeover
        self._reset_inflater = parameters.server_no_context_takeover
        self._deflater = self._new_deflater()
        self._inflater = zlib.decompressobj(-parameters.server_max_window_bits)

    def _new_deflater(self) -> zlib._Compress:
        # memLevel 8 is zlib's default; the window is what the server may hold for our messages.
        return zlib.compressobj(self._level, zlib.DEFLATED, -self.parameters.client_max_window_bits, 8)

    def compress(self, data: bytes) -> bytes:
        """A message's payload as sent (§7.2.1): deflated, sync-flushed, without the flush's tail."""
        deflater = self._deflater
        payload = deflater.compress(data) + deflater.flush(zlib.Z_SYNC_FLUSH)
        if self._reset_deflater:
            self._deflater = self._new_deflater()
        if payload.endswith(_TAIL):
            payload = payload[:-4]
        counters = self._counters
        if counters is not None:
            counters.deflate_payload_sent += len(data)
            counters.deflate_wire_sent += len(payload)
        return payload

    def decompress(self, payload: bytes) -> bytes:
        """
        A received message's payload inflated (§7.2.2).

        Raises:
            Inflated: the payload is not valid DEFLATE, or inflates past ``max_message_size``.
        """
        inflater = self._inflater
        try:
            data = inflater.decompress(payload + _TAIL, self._max_size + 1 if self._max_size else 0)
        except zlib.error as exc:
            raise Inflated(False, f"invalid compressed message ({exc})") from None
        if self._max_size and (len(data) > self._max_size or inflater.unconsumed_tail):
            raise Inflated(True, "message exceeds size limit once inflated")
        if self._reset_inflater:
            self._inflater = zlib.decompressobj(-self.parameters.server_max_window_bits)
        counters = self._counters
        if counters is not None:
            counters.deflate_payload_received += len(data)
            counters.deflate_wire_received += len(payload)
        return data
