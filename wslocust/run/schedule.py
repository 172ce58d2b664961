"""
What a shape tells every user, as plain data: the original suite's load
profiles and the :class:`Schedule` of message intervals and connection
lifetimes.

The shape runs only on the master (or the single process), but message
intervals and connection lifetimes are user behaviour: at each tick the shape
publishes a :class:`Schedule` (the message interval of every stage and the
connection lifetime); a master sends it to its workers in a Locust custom
message (see :mod:`wslocust.integration.scenario`), and users read it from the
run state (:attr:`wslocust.run.state.RunState.schedule`). The whole timeline
is sent, not the current value, so that a user sleeping through a long
interval still wakes up at the next stage.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PROFILES", "Profile", "Schedule"]


@dataclass(frozen=True)
class Profile:
    """One of the original suite's load profiles (its ``targetConnections``, ``messageInterval``, ``testDuration``)."""

    connections: int
    message_interval: float
    """Seconds between the periodic messages of each connection."""
    duration: float
    """Seconds to hold the connections after the ramp-up."""


PROFILES: dict[str, Profile] = {
    "light": Profile(connections=1000, message_interval=10.0, duration=60.0),
    "medium": Profile(connections=5000, message_interval=5.0, duration=120.0),
    "heavy": Profile(connections=10000, message_interval=1.0, duration=300.0),
    "extreme": Profile(connections=50000, message_interval=0.5, duration=600.0),
}
"""The suite's profiles by name, selected with ``--ws-profile`` / ``WS_PROFILE``."""


class Schedule:
    """
    What a shape tells every user, on this process's clock.

    Args:
        ends: the end of each stage, in seconds since the shape started
            (ascending).
        intervals: the message interval of each stage in seconds (already
            time-scaled if ``--ws-time-scale-messages scaled``); None leaves the
            user's own; 0 sends none.
        lifetime: seconds each connection lives before it is closed and
            reopened (already time-scaled), or None.
        origin: this process's ``perf_counter()`` when the shape started.
        watch: workers send the master their open connections every
            :data:`~wslocust.integration.scenario.WATCH_INTERVAL` (see
            :func:`~wslocust.integration.scenario.live_connections`).
    """

    __slots__ = ("ends", "intervals", "lifetime", "origin", "watch")

    def __init__(
        self,
        ends: Sequence[float],
        intervals: Sequence[float | None],
        lifetime: float | None,
        origin: float,
        watch: bool = False,
    ) -> None:
        self.ends = [origin + end for end in ends]
        self.intervals = list(intervals)
        self.lifetime = lifetime
        self.origin = origin
        self.watch = watch

    def at(self, now: float) -> tuple[float | None, float]:
        """The message interval at ``now`` (a ``perf_counter()`` time) and when it ends (``inf``: never)."""
        index = bisect.bisect_right(self.ends, now)
        if index >= len(self.ends):
            return (self.intervals[-1] if self.intervals else None), math.inf
        return self.intervals[index], self.ends[index]

    def as_message(self) -> dict[str, Any]:
        """The schedule as the data of a Locust message; :meth:`from_message` rebuilds it on another clock."""
        now = time.perf_counter()
        return {
            "ends": [end - self.origin for end in self.ends],
            "intervals": self.intervals,
            "lifetime": self.lifetime,
            "run_time": now - self.origin,
            "watch": self.watch,
        }

    @classmethod
    def from_message(cls, data: dict[str, Any]) -> Schedule:
        """Rebuild a schedule sent with :meth:`as_message`, on this process's clock."""
        # run_time says how long the shape has run: the origin on this clock follows.
        origin = time.perf_counter() - data["run_time"]
        return cls(data["ends"], data["intervals"], data["lifetime"], origin, data.get("watch", False))
