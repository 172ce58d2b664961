"""Tests of wslocust.codec.handshake: the HTTP/1.1 upgrade (RFC 6455 §4.1, §4.2.2)."""

from __future__ import annotations

import base64

import pytest

from wslocust.codec.handshake import (
    Response,
    accept_value,
    body_to_read,
    build_request,
    generate_key,
    parse_response,
    validate_response,
)
from wslocust.exceptions import ConfigurationError, HandshakeError
from wslocust.redaction import register_secret

# RFC 6455 §1.3 and §4.2.2.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

GOOD_RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


def response(
    status: int = 101, reason: str = "Switching Protocols", **overrides: str | None
) -> Response:
    """A response with the good handshake headers, some overridden (None drops one)."""
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Accept": RFC_ACCEPT,
    }
    for name, value in overrides.items():
        headers[name.replace("_", "-")] = value  # type: ignore[assignment]
    return Response(
        status, reason, [(k, v) for k, v in headers.items() if v is not None]
    )


def rejection(resp: Response, subprotocols: tuple[str, ...] = ()) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        validate_response(resp, RFC_KEY, subprotocols)
    return info.value


# Keys ------------------------------------------------------------------------


def test_accept_value_rfc_example() -> None:
    assert accept_value(RFC_KEY) == RFC_ACCEPT


def test_generate_key() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert len(key) == 24
        assert len(base64.b64decode(key, validate=True)) == 16


# Request ---------------------------------------------------------------------


def test_build_request_minimal() -> None:
    assert build_request(host="example.com", resource="/chat", key=RFC_KEY) == (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"\r\n"
    )


def test_build_request_everything() -> None:
    request = build_request(
        host="example.com:8080",
        resource="/chat?room=1&x=%20",
        key=RFC_KEY,
        subprotocols=["chat", "superchat"],
        headers=[("Authorization", "Bearer abc"), ("X-Trace", "1"), ("X-Trace", "2")],
        origin="http://example.com",
    )
    assert request == (
        b"GET /chat?room=1&x=%20 HTTP/1.1\r\n"
        b"Host: example.com:8080\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, superchat\r\n"
        b"Authorization: Bearer abc\r\n"
        b"X-Trace: 1\r\n"
        b"X-Trace: 2\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"resource": "chat"}, id="resource-not-absolute"),
        pytest.param({"resource": "/a b"}, id="resource-space"),
        pytest.param({"resource": "/a\r\nX: y"}, id="resource-crlf"),
        pytest.param({"resource": "/é"}, id="resource-non-ascii"),
        pytest.param({"host": "a\r\nX: y"}, id="host-crlf"),
        pytest.param({"origin": "a\nb"}, id="origin-lf"),
        pytest.param({"headers": [("X-A", "1\r\nX-B: 2")]}, id="value-crlf"),
        pytest.param({"headers": [("X A", "1")]}, id="name-space"),
        pytest.param({"headers": [("X:A", "1")]}, id="name-colon"),
        pytest.param({"headers": [("", "1")]}, id="name-empty"),
        pytest.param({"headers": [("sec-websocket-key", "x")]}, id="reserved-key"),
        pytest.param({"headers": [("Host", "x")]}, id="reserved-host"),
        pytest.param(
            {"headers": [("Sec-WebSocket-Extensions", "permessage-deflate")]},
            id="reserved-ext",
        ),
        pytest.param({"subprotocols": ["a b"]}, id="subprotocol-space"),
        pytest.param({"subprotocols": ["a,b"]}, id="subprotocol-comma"),
        pytest.param({"subprotocols": [""]}, id="subprotocol-empty"),
    ],
)
def test_build_request_rejects_bad_input(kwargs: dict[str, object]) -> None:
    arguments: dict[str, object] = {
        "host": "example.com",
        "resource": "/",
        "key": RFC_KEY,
    }
    arguments.update(kwargs)
    with pytest.raises(ConfigurationError):
        build_request(**arguments)  # type: ignore[arg-type]


# Parsing the response ------------------------------------------------------------


def test_parse_response() -> None:
    parsed = parse_response(GOOD_RESPONSE)
    assert parsed is not None
    resp, rest = parsed
    assert resp == Response(
        101,
        "Switching Protocols",
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", RFC_ACCEPT),
        ],
    )
    assert rest == b""
    assert type(rest) is bytes


def test_parse_response_returns_none_until_complete() -> None:
    for end in range(len(GOOD_RESPONSE)):
        assert parse_response(GOOD_RESPONSE[:end]) is None
    assert parse_response(bytearray(GOOD_RESPONSE)) is not None


def test_parse_response_returns_the_bytes_after_the_head() -> None:
    frame = b"\x81\x05Hello\x89\x00"
    parsed = parse_response(bytearray(GOOD_RESPONSE + frame))
    assert parsed is not None
    assert parsed[1] == frame
    assert type(parsed[1]) is bytes


def test_parse_response_values_and_header_lookup() -> None:
    parsed = parse_response(
        b"HTTP/1.1 403 Forbidden\r\n"
        b"content-type:  text/plain \t\r\n"
        b"Set-Cookie: a=1\r\n"
        b"set-cookie: b=2\r\n"
        b"X-Empty:\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"\r\nbody"
    )
    assert parsed is not None
    resp, rest = parsed
    assert (resp.status, resp.reason, rest) == (403, "Forbidden", b"body")
    assert resp.header("Content-Type") == "text/plain"
    assert resp.header("SET-COOKIE") == "a=1, b=2"
    assert resp.header("x-empty") == ""
    assert resp.header("X-Latin") == "café"
    assert resp.header("X-Missing") is None


@pytest.mark.parametrize(
    ("status_line", "status", "reason"),
    [
        (b"HTTP/1.1 101 Switching Protocols", 101, "Switching Protocols"),
        (b"HTTP/1.1 101 ", 101, ""),
        (b"HTTP/1.1 101", 101, ""),
        (b"HTTP/1.0 503 Service Unavailable", 503, "Service Unavailable"),
        (b"HTTP/1.1 200 OK \tfine", 200, "OK \tfine"),
    ],
)
def test_parse_status_lines(status_line: bytes, status: int, reason: str) -> None:
    parsed = parse_response(status_line + b"\r\n\r\n")
    assert parsed is not None
    assert (parsed[0].status, parsed[0].reason, parsed[0].headers) == (
        status,
        reason,
        [],
    )


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"HTTP/2 101 Switching Protocols", id="http2"),
        pytest.param(b"ICY 200 OK", id="not-http"),
        pytest.param(b"HTTP/1.1 1010 Weird", id="four-digit-status"),
        pytest.param(b"HTTP/1.1 10 Short", id="two-digit-status"),
        pytest.param(b"HTTP/1.1  101 Switching", id="double-space"),
        pytest.param(b"HTTP/1.1 101 Switching\nProtocols", id="bare-lf-in-reason"),
        pytest.param(
            b"HTTP/1.1 101 OK\r\nUpgrade websocket", id="header-without-colon"
        ),
        pytest.param(
            b"HTTP/1.1 101 OK\r\nUpgrade : websocket", id="space-before-colon"
        ),
        pytest.param(b"HTTP/1.1 101 OK\r\n: websocket", id="empty-name"),
        pytest.param(b"HTTP/1.1 101 OK\r\nUpgrade: web\r\n socket", id="obs-fold"),
        pytest.param(
            b"HTTP/1.1 101 OK\r\nUpgrade: web\nX: socket", id="bare-lf-in-value"
        ),
        pytest.param(b"HTTP/1.1 101 OK\r\nUpgrade: web\x00socket", id="nul-in-value"),
        pytest.param(b"HTTP/1.1 101 OK\r\nUp\xe9grade: websocket", id="non-token-name"),
    ],
)
def test_parse_response_rejects_malformed_heads(head: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        parse_response(head + b"\r\n\r\n")
    assert info.value.status == 0
    assert str(info.value).startswith("malformed HTTP")


def test_parse_response_size_limit() -> None:
    head = b"HTTP/1.1 101 OK\r\nX-Pad: " + b"a" * 100 + b"\r\n\r\n"
    assert parse_response(head, max_size=len(head)) is not None
    # Complete but too large.
    with pytest.raises(HandshakeError, match="too large") as info:
        parse_response(head, max_size=len(head) - 1)
    assert info.value.status == 0
    # Incomplete and already too large: no point waiting for more.
    with pytest.raises(HandshakeError, match="too large"):
        parse_response(head[:-4], max_size=50)
    assert parse_response(head[:40], max_size=50) is None


# Validating the response ------------------------------------------------------


def test_validate_good_response() -> None:
    parsed = parse_response(GOOD_RESPONSE)
    assert parsed is not None
    assert validate_response(parsed[0], RFC_KEY) is None


def test_validate_is_case_insensitive_where_the_rfc_says_so() -> None:
    resp = Response(
        101,
        "",
        [
            ("upgrade", "WebSocket"),
            ("CONNECTION", "keep-alive, UPGRADE"),
            ("sec-websocket-accept", RFC_ACCEPT),
        ],
    )
    assert validate_response(resp, RFC_KEY) is None


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (403, "Forbidden", "server rejected the WebSocket upgrade: HTTP 403 Forbidden"),
        (404, "", "server rejected the WebSocket upgrade: HTTP 404 Not Found"),
        (200, "OK", "server rejected the WebSocket upgrade: HTTP 200 OK"),
        (599, "", "server rejected the WebSocket upgrade: HTTP 599"),
    ],
)
def test_validate_rejects_other_statuses(
    status: int, reason: str, message: str
) -> None:
    error = rejection(Response(status, reason, [("Content-Length", "0")]))
    assert str(error) == message
    assert error.status == status


REJECTED_400 = "server rejected the WebSocket upgrade: HTTP 400 Bad Request"


@pytest.mark.parametrize(
    ("headers", "body", "quoted"),
    [
        # The first line of text, after blank lines; only as much as Content-Length says.
        ([("Content-Length", "42")], b"\n\nmissing Sec-WebSocket-Protocol\nmore\n", "missing Sec-WebSocket-Protocol"),
        ([("Content-Length", "7")], b"too manyclients", "too man"),
        # Nothing to add: no body, or one that repeats the status.
        ([("Content-Length", "0")], b"ignored", ""),
        ([], b"", ""),
        ([("Content-Length", "16")], b"400 Bad Request\n", ""),
        # An HTML page: tags dropped, its title (the status) skipped.
        (
            [("Content-Type", "text/html"), ("Content-Length", "120")],
            b"<html><head><title>400 Bad Request</title></head><body><p>Origin not allowed</p></body></html>",
            "Origin not allowed",
        ),
        # Chunked: the first chunk, as far as it came.
        ([("Transfer-Encoding", "chunked")], b"11\r\nunknown extension\r\n0\r\n\r\n", "unknown extension"),
        ([("Transfer-Encoding", "chunked")], b"zz\r\nnot chunked", ""),
        # Control characters and runs of spaces are one space; not UTF-8 is replaced, never an error.
        ([("Content-Length", "20")], b"bad\x00\x1b[31m  \tkey\xff\n", "bad [31m key\ufffd"),
        # Long lines are cut.
        ([("Content-Length", "400")], b"x" * 400, "x" * 157 + "..."),
    ],
    ids=["first-line", "content-length", "empty", "no-body", "repeats-status", "html", "chunked", "bad-chunk",
         "controls", "long"],
)  # fmt: skip
def test_a_rejection_quotes_the_first_line_of_its_body(headers, body, quoted) -> None:
    with pytest.raises(HandshakeError) as info:
        validate_response(Response(400, "Bad Request", headers), RFC_KEY, body=body)
    assert str(info.value) == (f"{REJECTED_400} ({quoted})" if quoted else REJECTED_400)
    assert info.value.status == 400


def test_a_rejection_body_quoting_a_secret_is_redacted() -> None:
    register_secret("Bearer s3cr3t-t0ken-in-a-body")
    body = b"invalid Authorization: Bearer s3cr3t-t0ken-in-a-body"
    with pytest.raises(HandshakeError) as info:
        validate_response(Response(401, "Unauthorized", [("Content-Length", str(len(body)))]), RFC_KEY, body=body)
    assert (
        str(info.value) == "server rejected the WebSocket upgrade: HTTP 401 Unauthorized (invalid Authorization: ***)"
    )


@pytest.mark.parametrize(
    ("headers", "size"),
    [
        ([("Content-Length", "120")], 120),
        ([("Content-Length", "10000000")], 4096),  # bounded
        ([("Content-Length", "0")], 0),
        ([("Content-Length", "-1")], 0),
        ([("Content-Length", "12, 12")], 0),
        ([], 0),  # up to the end of the connection: only what came with the head
        ([("Transfer-Encoding", "chunked"), ("Content-Length", "12")], 0),
    ],
)
def test_only_a_body_of_known_length_is_read_on(headers, size) -> None:
    assert body_to_read(Response(400, "Bad Request", headers)) == size


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"Upgrade": None}, "missing or wrong Upgrade header"),
        ({"Upgrade": "h2c"}, "missing or wrong Upgrade header"),
        ({"Connection": None}, "missing Connection: upgrade"),
        ({"Connection": "keep-alive"}, "missing Connection: upgrade"),
        ({"Sec-WebSocket-Accept": None}, "missing Sec-WebSocket-Accept"),
        (
            {"Sec-WebSocket-Accept": accept_value("x" + RFC_KEY)},
            "wrong Sec-WebSocket-Accept",
        ),
        (
            {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"},
            "server selected an unrequested extension: permessage-deflate",
        ),
        (
            {"Sec-WebSocket-Protocol": "chat"},
            "server selected an unrequested subprotocol: chat",
        ),
    ],
)
def test_validate_rejects_bad_headers(
    overrides: dict[str, str | None], message: str
) -> None:
    error = rejection(response(**overrides))
    assert str(error) == message
    assert error.status == 101


def test_duplicate_accept_headers_are_wrong() -> None:
    resp = response()
    resp.headers.append(("Sec-WebSocket-Accept", RFC_ACCEPT))
    assert str(rejection(resp)) == "wrong Sec-WebSocket-Accept"


def test_subprotocol_selection() -> None:
    offered = ("chat", "superchat")
    assert (
        validate_response(
            response(Sec_WebSocket_Protocol="superchat"), RFC_KEY, offered
        )
        == "superchat"
    )
    assert (
        validate_response(response(Sec_WebSocket_Protocol="chat"), RFC_KEY, offered)
        == "chat"
    )
    # The server may select none of them (§4.1 item 6 only forbids others).
    assert validate_response(response(), RFC_KEY, offered) is None
    error = rejection(response(Sec_WebSocket_Protocol="other"), offered)
    assert str(error) == "server selected an unrequested subprotocol: other"
    error = rejection(response(Sec_WebSocket_Protocol="chat, superchat"), offered)
    assert str(error) == "server selected more than one subprotocol"
    # Subprotocol names are compared exactly.
    error = rejection(response(Sec_WebSocket_Protocol="CHAT"), offered)
    assert str(error) == "server selected an unrequested subprotocol: CHAT"


def test_full_exchange_with_a_fake_server() -> None:
    """The request's key, read back by a minimal server, yields a valid response."""
    key = generate_key()
    request = build_request(
        host="localhost:8765", resource="/echo", key=key, subprotocols=["v2", "v1"]
    )
    head, _, _ = request.partition(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert headers[b"Sec-WebSocket-Version"] == b"13"
    server_accept = accept_value(headers[b"Sec-WebSocket-Key"].decode())
    reply = (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + server_accept.encode() + b"\r\n"
        b"Sec-WebSocket-Protocol: v1\r\n\r\n"
        b"\x81\x02hi"
    )
    buffer = b""
    parsed = None
    for byte in reply:
        buffer += bytes([byte])
        parsed = parse_response(buffer)
        if parsed is not None:
            break
    assert parsed is not None
    resp, leftover = parsed
    assert leftover == b""  # the head ended exactly at the blank line
    assert validate_response(resp, key, ["v2", "v1"]) == "v1"
    parsed = parse_response(reply)
    assert parsed is not None
    assert parsed[1] == b"\x81\x02hi"
