"""
WebSocket counters of one process, and their merge across workers.

Latencies go to Locust's own request statistics; these counters carry what
Locust has no place for: connection states, messages that are not round trips
(plain sends, server pushes) and bytes on the wire. Every worker ships its
counters to the master in its Locust worker report (see
:func:`wslocust.run.state.worker_report`); the master adds them up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["CONNECTION_STATES", "WsCounters"]

CONNECTION_STATES = ("connecting", "open", "reconnecting", "failed", "closed")


@dataclass
class WsCounters:
    """
    Counters of one process (or, after :meth:`merge`, of several).

    ``open``, ``connecting``, ``reconnecting`` and ``failed`` are gauges: how
    many users are in that state now. Every other field only grows.
    """

    # Not a field (no annotation): merge() adds fields up, and a sum of peaks is no peak.
    peak_open = 0
    """Most connections open at once in this process since :meth:`restart_peak`, raised at each
    open (exact: a connection that lives a millisecond counts). Not merged, not sent as a counter:
    the live metrics carry it (:meth:`wslocust.reporting.live.Live.node_report`)."""

    connecting: int = 0
    """Users whose first connection attempt is under way."""
    open: int = 0
    """Users with an open connection."""
    reconnecting: int = 0
    """Users that lost their connection and are trying to get it back."""
    failed: int = 0
    """Users that gave up after ``max_reconnect_attempts`` failed attempts."""
    connect_attempts: int = 0
    """Connection attempts started (first connects and reconnects)."""
    connects_succeeded: int = 0
    connects_failed: int = 0
    reconnects: int = 0
    """Successful reconnects (included in ``connects_succeeded``)."""
    disconnects: int = 0
    """Connections closed by the server or the network, not by the user."""
    closed: int = 0
    """Connections closed by the user (stop, churn)."""
    messages_sent: int = 0
    sends_late: int = 0
    """Periodic messages sent more than 2 ms after their tick (the generator fell behind); their
    latency counts from the tick."""
    messages_received: int = 0
    """All data messages received: replies and unsolicited ones."""
    unsolicited_received: int = 0
    """Messages received that answered no pending request (server pushes)."""
    bytes_sent: int = 0
    """Payload bytes of data messages sent."""
    bytes_received: int = 0
    """Payload bytes of data messages received."""
    replies_timed_out: int = 0
    replies_lost: int = 0
    """Requests whose connection closed before the reply came."""
    replies_in_flight_at_stop: int = 0
    """Requests still unanswered when their user stopped (not failures)."""
    replies_late: int = 0
    """Echoes of default payloads that came after their request had timed out (counted there too)."""
    replies_duplicated: int = 0
    """Echoes of default payloads whose request had already been answered."""
    replies_out_of_order: int = 0
    """Echoes of default payloads that came after an echo of a later message on the same connection."""
    received_timed_by_kernel: int = 0
    """Messages, pongs and upgrade responses timed from the kernel's receive timestamp (``SO_TIMESTAMPNS``):
    when their bytes reached the host, however late the event loop read them."""
    received_timed_at_read: int = 0
    """Messages, pongs and upgrade responses timed when they were read instead (the fallback): kernel
    timestamps off (``WebSocketUser.kernel_timestamps``), another system than Linux, a segment that came
    before the option took effect, or a wall-clock step."""

    deflate_connects: int = 0
    """Connections opened with permessage-deflate negotiated (``WebSocketUser.compression``)."""
    deflate_payload_sent: int = 0
    """Payload bytes of the messages sent compressed, before compression (also in ``bytes_sent``)."""
    deflate_wire_sent: int = 0
    """The same messages' payload bytes as sent, compressed."""
    deflate_payload_received: int = 0
    """Payload bytes of the compressed messages received, inflated (also in ``bytes_received``)."""
    deflate_wire_received: int = 0
    """The same messages' payload bytes as received, compressed."""

    def merge(self, other: WsCounters) -> WsCounters:
        """Add ``other`` into this one and return it; associative and commutative."""
        for field in fields(self):
            name = field.name
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def restart_peak(self) -> int:
        """Return :attr:`peak_open` and start the next peak from the connections open now."""
        peak = max(self.peak_open, self.open)
        self.peak_open = self.open
        return peak

    def as_dict(self) -> dict[str, int]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WsCounters:
        """Build from :meth:`as_dict` output; unknown keys (a newer worker) are ignored."""
        known = {field.name for field in fields(cls)}
        return cls(**{key: int(value) for key, value in data.items() if key in known})
