"""What the reference server did: the exact counters behind ``GET /stats``."""

from __future__ import annotations

__all__ = ["ServerCounters"]


class ServerCounters:
    """
    What the server did since it started; the truth load-test figures are checked against.

    Each value is updated at a precise point, so it can be compared exactly:

    Attributes:
        connections_accepted: WebSocket upgrades completed (the 101 was sent).
        connections_closed: accepted connections that ended, cleanly or not.
        handshakes_refused: upgrade requests answered with 503 because of
            ``refuse_fraction``; they are never counted as accepted.
        messages_received: complete text or binary messages read, counted
            before the echo is sent. Messages arriving after the server sent
            its close frame are counted but not echoed (RFC 6455 §5.5.1).
        messages_sent: text or binary messages written, counted right after
            the write succeeded; echoes and broadcasts.
        broadcasts_sent: the part of ``messages_sent`` that were broadcasts.
        bytes_received: payload bytes of ``messages_received`` (no framing).
        bytes_sent: payload bytes of ``messages_sent`` (no framing).
        messages_too_big: connections closed with 1009 because a message, all its
            fragments together, outgrew ``max_message_size``; the message is not
            counted in ``messages_received``.
        handshakes_timed_out: connections closed because no complete HTTP request
            (an upgrade, a ``GET /stats``...) arrived within ``handshake_timeout``
            seconds of being accepted or of their previous answer.
        control_requests_refused: requests to a control endpoint (``POST /faults``)
            refused with 401 for a missing or wrong token.
    """

    __slots__ = (
        "broadcasts_sent",
        "bytes_received",
        "bytes_sent",
        "connections_accepted",
        "connections_closed",
        "control_requests_refused",
        "handshakes_refused",
        "handshakes_timed_out",
        "messages_received",
        "messages_sent",
        "messages_too_big",
    )

    def __init__(self) -> None:
        self.connections_accepted = 0
        self.connections_closed = 0
        self.handshakes_refused = 0
        self.messages_received = 0
        self.messages_sent = 0
        self.broadcasts_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.messages_too_big = 0
        self.handshakes_timed_out = 0
        self.control_requests_refused = 0

    @property
    def connections_open(self) -> int:
        """Connections accepted and not yet closed; derived, so it can never drift."""
        return self.connections_accepted - self.connections_closed

    def as_dict(self) -> dict[str, int]:
        """Return every counter, ``connections_open`` included, as a new dict."""
        return {
            "connections_open": self.connections_open,
            "connections_accepted": self.connections_accepted,
            "connections_closed": self.connections_closed,
            "handshakes_refused": self.handshakes_refused,
            "messages_received": self.messages_received,
            "messages_sent": self.messages_sent,
            "broadcasts_sent": self.broadcasts_sent,
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "messages_too_big": self.messages_too_big,
            "handshakes_timed_out": self.handshakes_timed_out,
            "control_requests_refused": self.control_requests_refused,
        }
