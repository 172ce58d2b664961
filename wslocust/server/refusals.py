"""Which WebSocket upgrade requests the reference server refuses with 503, and when."""

from __future__ import annotations

import time
from fractions import Fraction

from .counters import ServerCounters

__all__ = ["UpgradeGate"]


class UpgradeGate:
    """
    Decides, for each upgrade request to the WebSocket path, whether to refuse it.

    Two reasons to refuse: the configured ``refuse_fraction`` (deterministic:
    after ``n`` requests exactly ``floor(n * refuse_fraction)`` were refused),
    and an injected fault (:meth:`refuse_for`), during which every request is
    refused. Each refusal is counted in ``handshakes_refused``.
    """

    def __init__(self, websocket_path: str, refuse_fraction: float, counters: ServerCounters) -> None:
        self.websocket_path = websocket_path
        """The one path where upgrades are accepted; an upgrade to any other path is plain HTTP."""
        self._counters = counters
        # Exact arithmetic: 0.1 is 1/10, so the 10th request is refused, not the 11th.
        self._ratio = Fraction(repr(refuse_fraction))
        self._requests = 0
        self._refusing_until = 0.0

    def refuse_for(self, milliseconds: float) -> None:
        """Refuse every upgrade for the next ``milliseconds`` (extends, never shortens, a running refusal)."""
        if milliseconds:
            self._refusing_until = max(self._refusing_until, time.monotonic() + milliseconds / 1000)

    def should_refuse(self) -> bool:
        """Return True if this upgrade request is to be answered with 503, and count it as refused."""
        if self._refusing_until > time.monotonic():
            self._counters.handshakes_refused += 1
            return True
        # Refuse request n when floor(n * f) grows: after n requests exactly
        # floor(n * f) were refused, with no randomness.
        self._requests += 1
        n = self._requests
        above, below = self._ratio.numerator, self._ratio.denominator
        if n * above // below > (n - 1) * above // below:
            self._counters.handshakes_refused += 1
            return True
        return False
