"""
What the live metrics know of one generator process (a *node*: a worker, or
the single process of a local run), and the per-second rates taken from its
reports on its own clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any

from wslocust.reporting.system import SystemSample
from wslocust.run.counters import WsCounters

__all__ = [
    "GAUGES",
    "PER_1K_MINIMUM",
    "RATES",
    "RATE_WINDOW",
    "STALE_AFTER",
    "TOTALS",
    "Node",
    "loop_lag_view",
    "per_1k",
    "rounded",
    "system_view",
]

GAUGES = ("open", "connecting", "reconnecting", "failed")
"""Counter fields that say how many users are in a state now."""
TOTALS = tuple(f.name for f in fields(WsCounters) if f.name not in GAUGES)
"""Counter fields that only grow."""
RATES = (
    "messages_sent",
    "messages_received",
    "unsolicited_received",
    "bytes_sent",
    "bytes_received",
    "connects_succeeded",
    "connects_failed",
    "disconnects",
)
"""Totals also shown per second."""

RATE_WINDOW = 3.0
"""Seconds over which per-second rates are taken (workers report every 3 s)."""
STALE_AFTER = 10.0
"""A node not heard from for this long counts no rate."""


@dataclass
class Node:
    """What the master knows of one generator process."""

    id: str
    name: str
    index: int = 0
    """Order among the workers (Locust's worker index)."""
    counters: WsCounters = field(default_factory=WsCounters)
    errors: dict[str, int] = field(default_factory=dict)
    system: SystemSample | None = None
    round_trip: dict[str, Any] | None = None
    """Latency of the round trips it logged in its last report interval."""
    users: int = 0
    received_at: float = 0.0
    """When the master got its last report (master's monotonic clock)."""
    history: deque[tuple[float, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=32))
    """(node's clock, totals used for rates), oldest first."""

    def update(self, t: float, counters: WsCounters, errors: dict[str, int], received_at: float) -> None:
        """Take a report made at ``t`` on the node's clock and received at ``received_at`` on the master's."""
        self.counters = counters
        self.errors = errors
        self.received_at = received_at
        values = {name: getattr(counters, name) for name in RATES}
        values["errors"] = sum(errors.values())
        if self.history and t <= self.history[-1][0]:
            self.history.clear()  # the node restarted its clock: rates start over
        if len(self.history) >= 2 and t - self.history[-2][0] < 0.5:
            self.history[-1] = (t, values)  # frequent updates (a local run's snapshots) keep the window long
        else:
            self.history.append((t, values))

    def rates(self, now: float) -> dict[str, float]:
        """Per-second rates over about the last :data:`RATE_WINDOW` seconds (zero when stale)."""
        rates = dict.fromkeys((*RATES, "errors"), 0.0)
        if len(self.history) < 2 or now - self.received_at > STALE_AFTER:
            return rates
        last_t, last = self.history[-1]
        base_t, base = self.history[0]
        for t, values in self.history:
            if t > last_t - RATE_WINDOW * 0.9:
                break
            base_t, base = t, values
        elapsed = last_t - base_t
        if elapsed <= 0:
            return rates
        return {name: max(0.0, (last[name] - base.get(name, 0)) / elapsed) for name in rates}

    def totals(self) -> dict[str, int]:
        """Its totals since it started, errors included."""
        values = {name: getattr(self.counters, name) for name in TOTALS}
        values["errors"] = sum(self.errors.values())
        return values


PER_1K_MINIMUM = 1000
"""Fewest open connections for which CPU per 1,000 open is given: below, a process's fixed cost dominates,
and 100 % per 1K at 100 connections would be a false extrapolation."""


def per_1k(cpu: float, open_connections: int) -> float | None:
    """CPU % per 1,000 open connections; None below :data:`PER_1K_MINIMUM` open."""
    return round(cpu / (open_connections / 1000), 2) if open_connections >= PER_1K_MINIMUM else None


def system_view(system: SystemSample | None, open_connections: int) -> dict[str, Any] | None:
    """A node's system figures as plain data, rounded."""
    if system is None:
        return None
    return {
        "cpu": round(system.cpu, 1),
        "peak_cpu": round(system.peak_cpu, 1),
        "rss": system.rss,
        "fds": system.fds,
        "cpu_per_1k": per_1k(system.cpu, open_connections),
        "saturated": system.saturated,
        "saturated_seconds": round(system.saturated_seconds, 1),
        "loop_lag": system.loop_lag.as_dict(),
        "lagging": system.lagging,
    }


def loop_lag_view(systems: list[SystemSample], alive: list[SystemSample]) -> dict[str, Any]:
    """
    The event-loop lag of several generator processes, ms (see
    :class:`~wslocust.run.loop_lag.LagFigures`): for each figure the worst
    process's, the recent ones over the processes still ``alive``, the run's
    over all ``systems``; and the lagged windows of them all.
    """
    view: dict[str, Any] = {
        name: max((getattr(system.loop_lag, name) for system in alive), default=0.0)
        for name in ("recent_p99", "recent_max", "recent_busy")
    }
    for name in ("p99", "max", "busy", "worst_p99"):
        view[name] = max((getattr(system.loop_lag, name) for system in systems), default=0.0)
    view["windows"] = max((system.loop_lag.windows for system in systems), default=0)
    view["lagged_windows"] = sum(system.loop_lag.lagged_windows for system in systems)
    return view


def rounded(values: dict[str, float]) -> dict[str, float]:
    """Rates rounded to two decimals."""
    return {name: round(value, 2) for name, value in values.items()}
