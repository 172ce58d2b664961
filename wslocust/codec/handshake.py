"""
The opening handshake of a WebSocket client (RFC 6455 §4.1), sans I/O.

The I/O layer writes :func:`build_request`, feeds what it reads to
:func:`parse_response` until that returns a response, checks it with
:func:`validate_response`, then hands the leftover bytes to
:class:`wslocust.codec.protocol.ClientProtocol`: a server may send frames right
behind its 101 response, in the same TCP segment.
"""

from __future__ import annotations

import base64
import hashlib
import http
import os
import re
from collections.abc import Sequence
from typing import NamedTuple

from wslocust.codec.deflate import DeflateOffer, DeflateParameters, accept
from wslocust.exceptions import ConfigurationError, HandshakeError
from wslocust.redaction import is_secret_header, redact_text, redact_uri

__all__ = [
    "Response",
    "accept_value",
    "body_to_read",
    "build_request",
    "generate_key",
    "negotiated_deflate",
    "parse_response",
    "validate_response",
]

# §1.3 / §4.2.2: the GUID appended to Sec-WebSocket-Key.
_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# RFC 7230 §3.2.6: header names are tokens.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN_STR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 7230 §3.2: field values hold visible characters, spaces and tabs;
# CR, LF and NUL would let a value inject headers.
_FORBIDDEN_IN_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_FORBIDDEN_IN_VALUE_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
# RFC 7230 §3.1.2: status-line = HTTP-version SP status-code SP reason-phrase.
_STATUS_LINE = re.compile(rb"HTTP/1\.[0-9] ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?")

# A rejection's body is quoted in its error message: its first line, at most this many characters, read
# from at most this many bytes (an error page's first line is short; a server's whole page is not read).
BODY_LINE_LENGTH = 160
_BODY_READ_LIMIT = 4096
_HTML_TAG = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"[\x00-\x20\x7f]+")

# Headers that build_request writes itself: passing them in ``headers`` would
# duplicate them and break the handshake in ways servers report obscurely.
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "origin",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
    }
)


def generate_key() -> str:
    """
    Return a new Sec-WebSocket-Key (RFC 6455 §4.1).

    Returns:
        16 random bytes, base64-encoded: "a randomly selected 16-byte value"
        must be used for each connection.
    """
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_value(key: str) -> str:
    """
    Compute the Sec-WebSocket-Accept value that answers a key (RFC 6455 §4.2.2).

    Args:
        key: the Sec-WebSocket-Key sent by the client.

    Returns:
        base64(SHA-1(key + GUID)).
    """
    digest = hashlib.sha1((key + _GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def build_request(
    *,
    host: str,
    resource: str,
    key: str,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
    origin: str | None = None,
    extensions: str | None = None,
) -> bytes:
    """
    Build the HTTP/1.1 upgrade request (RFC 6455 §4.1).

    Args:
        host: the Host header value, with the port when it is not the
            scheme's default.
        resource: the request target: path and query, starting with "/".
        key: the Sec-WebSocket-Key, from :func:`generate_key`.
        subprotocols: the subprotocols to offer, by order of preference.
        headers: extra headers, sent in order after the handshake's own.
        origin: the Origin header value, if any (§4.1 item 8; §10.2).
        extensions: the Sec-WebSocket-Extensions offer, if any (§4.1 item 9), e.g.
            :meth:`wslocust.codec.deflate.DeflateOffer.header`.

    Returns:
        The request bytes, ending with the blank line.

    Raises:
        ConfigurationError: if the resource, a header name or a header value
            is malformed, a subprotocol is not a token, or ``headers`` sets a
            header that the handshake itself controls.
    """
    if not resource.startswith("/") or not _is_visible_ascii(resource):
        raise ConfigurationError(f"invalid request resource: {redact_uri(resource)!r}")
    lines = [
        f"GET {resource} HTTP/1.1",
        f"Host: {_check_value('Host', host)}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {_check_value('Sec-WebSocket-Key', key)}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin is not None:
        lines.append(f"Origin: {_check_value('Origin', origin)}")
    if subprotocols:
        for subprotocol in subprotocols:
            # §4.1 item 10: each subprotocol is a token.
            if not _TOKEN_STR.fullmatch(subprotocol):
                raise ConfigurationError(f"invalid subprotocol: {subprotocol!r}")
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    if extensions:
        lines.append(f"Sec-WebSocket-Extensions: {_check_value('Sec-WebSocket-Extensions', extensions)}")
    for name, value in headers:
        if not _TOKEN_STR.fullmatch(name):
            raise ConfigurationError(f"invalid header name: {name!r}")
        if name.lower() in _RESERVED_HEADERS:
            raise ConfigurationError(f"header {name} is set by the WebSocket handshake")
        lines.append(f"{name}: {_check_value(name, value)}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8")


def _is_visible_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable() and " " not in text


def _check_value(name: str, value: str) -> str:
    if _FORBIDDEN_IN_VALUE.search(value):
        shown = "***" if is_secret_header(name) else repr(value)  # never quote a credential
        raise ConfigurationError(
            f"invalid value for header {name}: {shown} (CR, LF and control characters are not allowed)"
        )
    return value


class Response(NamedTuple):
    """An HTTP response head: status line and headers, in order."""

    status: int
    reason: str
    headers: list[tuple[str, str]]

    def header(self, name: str) -> str | None:
        """
        Return a header's value, looking its name up case-insensitively.

        Args:
            name: the header name.

        Returns:
            The value; the values joined with ", " if the header appears more
            than once (RFC 7230 §3.2.2); ``None`` if it is absent.
        """
        name = name.lower()
        values = [value for key, value in self.headers if key.lower() == name]
        if not values:
            return None
        return ", ".join(values)


def parse_response(buffer: bytes | bytearray, *, max_size: int = 16384) -> tuple[Response, bytes] | None:
    """
    Parse the server's response head once it is complete.

    Call it with everything received so far, after each read.

    Args:
        buffer: the bytes received since the request was sent.
        max_size: the largest response head accepted, blank line included.

    Returns:
        ``None`` while the blank line that ends the head has not arrived;
        else the response and the bytes that follow the head, which belong
        to the WebSocket stream.

    Raises:
        HandshakeError: (status 0) if the head is malformed or larger than
            ``max_size``.
    """
    end = buffer.find(b"\r\n\r\n")
    if end == -1:
        # The blank line may still arrive, unless we already hold too much.
        if len(buffer) > max_size:
            raise HandshakeError("response headers too large")
        return None
    if end + 4 > max_size:
        raise HandshakeError("response headers too large")
    lines = bytes(buffer[:end]).split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise HandshakeError("malformed HTTP status line")
    status = int(match[1])
    # Latin-1 maps every byte to a character, so no value makes decoding fail.
    reason = (match[2] or b"").decode("latin-1")
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # RFC 7230 §3.2.4: no whitespace between name and colon, and no
        # obsolete line folding (a line starting with whitespace); no control
        # characters such as a bare LF in values.
        if not colon or not _TOKEN.fullmatch(name) or _FORBIDDEN_IN_VALUE_BYTES.search(value):
            raise HandshakeError("malformed HTTP header")
        headers.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
    return Response(status, reason, headers), bytes(buffer[end + 4 :])


def _tokens(value: str | None) -> list[str]:
    # A comma-separated header value (RFC 7230 §7) as lowercase items.
    if value is None:
        return []
    return [item.strip().lower() for item in value.split(",") if item.strip()]


def body_to_read(response: Response) -> int:
    """
    How many bytes of a rejection's body to read for :func:`validate_response` to quote it.

    Only a body whose ``Content-Length`` says where it ends is read on; of any other (chunked, or up
    to the end of the connection) only what arrived with the head is quoted, so that reading never
    waits for a server that keeps the connection open.

    Args:
        response: the parsed response.

    Returns:
        ``Content-Length``, at most 4 KiB; 0 without a valid one.
    """
    length = (response.header("Content-Length") or "").strip()
    if not length.isdigit() or response.header("Transfer-Encoding") is not None:
        return 0
    return min(int(length), _BODY_READ_LIMIT)


def _body_line(response: Response, body: bytes, reason: str) -> str:
    """
    The first line of text of a rejection's body that does not just repeat its status (``reason``),
    or "" (the status says it all).

    At most :data:`BODY_LINE_LENGTH` characters; control characters and runs of spaces become one
    space, an HTML page's tags are dropped (its title usually repeats the status: the next line
    says why), a chunked body is read from its first chunk.
    """
    length = (response.header("Content-Length") or "").strip()
    if response.header("Transfer-Encoding") is not None:
        size, _, rest = body.partition(b"\r\n")  # RFC 9112 §7.1: chunk-size [; ext] CRLF data
        try:
            body = rest[: int(size.split(b";")[0].strip() or b"0", 16)]
        except ValueError:
            return ""
    elif length.isdigit():
        body = body[: int(length)]
    text = body[:_BODY_READ_LIMIT].decode("utf-8", "replace")
    if "html" in (response.header("Content-Type") or "").lower() or text.lstrip()[:9].lower() in (
        "<!doctype",
        "<html>",
    ):
        text = _HTML_TAG.sub("\n", text)
    status = {reason.lower(), f"{response.status} {reason}".lower()}
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    # Concealed before it is cut: a secret cut short would no longer be recognised, and its start would show.
    line = redact_text(next((line for line in lines if line and line.lower() not in status), ""))
    if len(line) > BODY_LINE_LENGTH:
        line = line[: BODY_LINE_LENGTH - 3].rstrip() + "..."
    return line


def validate_response(
    response: Response,
    key: str,
    subprotocols: Sequence[str] = (),
    *,
    body: bytes = b"",
    deflate_offer: DeflateOffer | None = None,
) -> str | None:
    """
    Check that the server accepted the upgrade (RFC 6455 §4.1, items 1-6).

    Error messages are stable across connections so that Locust groups them (a rejection's body
    line as stable as the server makes it).

    Args:
        response: the parsed response.
        key: the Sec-WebSocket-Key that was sent.
        subprotocols: the subprotocols that were offered.
        deflate_offer: the permessage-deflate offer sent, if any (:func:`negotiated_deflate` then
            says what the server agreed).
        body: what was read of the body of a rejection (see :func:`body_to_read`): its first line
            ends the message, in parentheses, as a close reason does ("HTTP 400 Bad Request
            (missing Sec-WebSocket-Protocol)"), redacted as every message is.

    Returns:
        The subprotocol the server selected, or ``None`` if it selected none.

    Raises:
        HandshakeError: if the status is not 101 (carrying that status), or
            if the Upgrade, Connection, Sec-WebSocket-Accept,
            Sec-WebSocket-Extensions or Sec-WebSocket-Protocol header is
            wrong (status 101).
    """
    status = response.status
    if status != 101:
        reason = response.reason
        if not reason:
            try:
                reason = http.HTTPStatus(status).phrase
            except ValueError:
                reason = ""
        text = f"server rejected the WebSocket upgrade: HTTP {status} {reason}".rstrip()
        line = _body_line(response, body, reason)
        if line:
            text = f"{text} ({line})"
        raise HandshakeError(text, status)
    # §4.1 item 2: Upgrade must be "websocket", case-insensitively.
    if "websocket" not in _tokens(response.header("Upgrade")):
        raise HandshakeError("missing or wrong Upgrade header", status, "Upgrade")
    # §4.1 item 3: Connection must contain "Upgrade", case-insensitively.
    if "upgrade" not in _tokens(response.header("Connection")):
        raise HandshakeError("missing Connection: upgrade", status, "Connection")
    # §4.1 item 4: Sec-WebSocket-Accept proves the server read our key.
    accept = response.header("Sec-WebSocket-Accept")
    if accept is None:
        raise HandshakeError("missing Sec-WebSocket-Accept", status, "Sec-WebSocket-Accept")
    if accept.strip() != accept_value(key):
        raise HandshakeError("wrong Sec-WebSocket-Accept", status, "Sec-WebSocket-Accept")
    # §4.1 item 5: only an extension offered may be selected (an answer to an offer is checked, and its
    # parameters returned, by negotiated_deflate).
    if deflate_offer is None:
        negotiated_deflate(response, None)
    # §4.1 item 6: at most one subprotocol, and one that we offered.
    selected = response.header("Sec-WebSocket-Protocol")
    if selected is None:
        return None
    selected = selected.strip()
    if "," in selected:
        raise HandshakeError("server selected more than one subprotocol", status, "Sec-WebSocket-Protocol")
    if selected not in subprotocols:
        raise HandshakeError(
            f"server selected an unrequested subprotocol: {selected}", status, "Sec-WebSocket-Protocol"
        )
    return selected


def negotiated_deflate(response: Response, offer: DeflateOffer | None) -> DeflateParameters | None:
    """
    The permessage-deflate parameters the server agreed to in its 101 response (RFC 7692 §5), or
    None when it selected no extension.

    Raises:
        HandshakeError: it selected an extension that was not offered, or answered the offer with
            parameters RFC 7692 does not allow (the message names the parameter).
    """
    answer = response.header("Sec-WebSocket-Extensions")
    if answer is None or not answer.strip():
        return None
    if offer is None:
        name = answer.split(",")[0].split(";")[0].strip()
        raise HandshakeError(
            f"server selected an unrequested extension: {name}", response.status, "Sec-WebSocket-Extensions"
        )
    try:
        return accept(answer, offer)
    except ValueError as exc:
        raise HandshakeError(str(exc), response.status, "Sec-WebSocket-Extensions") from None
