"""
Event-loop lag: how long the gevent loop of this process stayed away from the network.

Every reply, pong and connect of a generator process is read by one gevent
loop. While anything in the process runs (a user's code, Locust's statistics,
its web UI, wslocust's own sampling), the loop is not polling: a reply that
arrives then waits until the work is done, and its latency includes the wait.
:class:`LoopLag` measures that wait for everything in the process, whoever
does the work.

How: libev timers fire only to about a millisecond, so no timer is used.
Each loop iteration polls for events, then runs what became ready (I/O,
timers, gevent's callbacks and the greenlets they switch to), then polls
again. A *check* watcher of the highest priority runs first after each poll
and notes when the poll returned (libev's loop time, taken in C right after
the poll, so that time spent waiting for the GIL held by another thread
counts too); a *prepare* watcher of the lowest priority runs last before the
next poll (after gevent's own callbacks). The time between the two is one
*busy interval* ``B`` of the loop.

The *loop lag* at a moment is how long an event arriving at that moment waits
for the loop to come back: the rest of the busy interval it falls in, or 0
while the loop polls. Over a window of ``W`` seconds, the lag exceeds ``x``
for ``sum(max(0, B - x))`` seconds; the lag's p99 is the ``x`` for which that
is 1 % of ``W`` (what a probe firing at random moments would measure, without
a probe's own delay). So a 20 ms stall once a second gives a p99 of 10 ms and
a max of 20 ms; thousands of 50 µs iterations give a p99 near 50 µs only
when they fill more than 1 % of the time. Busy intervals go into a histogram
of log-spaced buckets (about 12 % wide), per one-second window and for the
run; the share of time the loop was busy comes with them.

Figures cover the windows closed so far (whole seconds). The probe's own
cost: two Python callbacks per loop iteration, about half a microsecond in
all (``tests/test_loop_lag.py`` checks it; the ``hold-10k`` benchmark reports
the loop iterations per second).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import gevent

__all__ = [
    "BOUNDS",
    "HISTORY_WINDOWS",
    "LAG_WARNING_MS",
    "RECENT_WINDOWS",
    "SHORT",
    "WINDOW",
    "LagFigures",
    "LoopLag",
    "Window",
    "figures_between",
    "lag_percentile",
]

WINDOW = 1.0
"""Seconds per window of the per-window figures."""
LAG_WARNING_MS = 5.0
"""A window whose loop-lag p99 is above this many milliseconds is a warning: its latencies include the stall."""
RECENT_WINDOWS = 5
"""Windows behind the *recent* figures (the live views)."""
SHORT = 5e-5
"""Busy intervals shorter than this (50 µs) are only counted and summed: most iterations are."""
BOUNDS: tuple[float, ...] = (0.0, *(SHORT * 10 ** (k / 20) for k in range(127)))
"""Lower bounds of the histogram buckets, seconds: below :data:`SHORT`, then 20 per decade up to 100 s."""
HISTORY_WINDOWS = 120
"""Windows kept in :attr:`LoopLag.history`."""
_MAX_BUSY = 3600.0
"""A busy interval longer than this is a clock step, not a stall: dropped."""


def lag_percentile(counts: list[int], sums: list[float], seconds: float, quantile: float = 0.99) -> float:
    """
    The time-weighted ``quantile`` of the loop lag, seconds, from a histogram of busy intervals.

    Args:
        counts: busy intervals per bucket of :data:`BOUNDS`.
        sums: their summed lengths per bucket, seconds.
        seconds: the length of the window they were taken over.
        quantile: e.g. 0.99.

    Returns:
        The smallest ``x`` such that the lag exceeded ``x`` for at most
        ``1 - quantile`` of the window (0 when the loop was busy less than that).
    """
    budget = (1.0 - quantile) * seconds
    # Going down from the longest intervals: ``above_*`` are the intervals of the buckets
    # above, ``ceiling`` the lowest bound among them. The time the lag exceeded ``x`` is
    # exact at bucket bounds and piecewise linear in between (a bucket's intervals taken
    # at their mean length).
    above_count, above_sum, ceiling = 0, 0.0, math.inf
    for k in range(len(BOUNDS) - 1, -1, -1):
        count, total = counts[k], sums[k]
        if not count:
            continue
        top = BOUNDS[k + 1] if k + 1 < len(BOUNDS) else math.inf
        if above_count:  # in the gap between this bucket and the ones above?
            x = (above_sum - budget) / above_count
            if x >= top:
                return min(x, ceiling)
        low = BOUNDS[k]
        if above_sum + total - (above_count + count) * low > budget:  # in this bucket
            x = (above_sum + total - budget) / (above_count + count)
            if x > total / count and above_count:
                x = (above_sum - budget) / above_count
            return max(low, min(x, ceiling))
        above_count, above_sum, ceiling = above_count + count, above_sum + total, low
    if above_count:  # in the gap below every bucket
        return max(0.0, min((above_sum - budget) / above_count, ceiling))
    return 0.0


@dataclass(frozen=True)
class Window:
    """The figures of one window (about :data:`WINDOW` seconds)."""

    end: float
    """``time.time()`` at its end."""
    seconds: float
    p99: float
    """Loop-lag p99 over the window, ms."""
    max: float
    """Longest busy interval that ended in the window, ms."""
    busy: float
    """Share of the window the loop was busy, 0..1."""


@dataclass
class LagFigures:
    """What :meth:`LoopLag.figures` reports: recent and whole-run loop lag, milliseconds."""

    recent_p99: float = 0.0
    """Highest window p99 over the last :data:`RECENT_WINDOWS` windows."""
    recent_max: float = 0.0
    """Longest busy interval over the last :data:`RECENT_WINDOWS` windows."""
    recent_busy: float = 0.0
    """Share of the time the loop was busy over those windows, %."""
    p99: float = 0.0
    """Loop-lag p99 over the run (since the last :meth:`LoopLag.reset`)."""
    max: float = 0.0
    """Longest busy interval of the run."""
    busy: float = 0.0
    """Share of the run's time the loop was busy, %."""
    worst_p99: float = 0.0
    """Highest window p99 of the run."""
    windows: int = 0
    """Windows measured in the run."""
    lagged_windows: int = 0
    """Windows of the run whose p99 was above :data:`LAG_WARNING_MS`."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Histogram:
    """Busy intervals by bucket of :data:`BOUNDS`, with their total and longest."""

    def __init__(self) -> None:
        self.counts = [0] * len(BOUNDS)
        self.sums = [0.0] * len(BOUNDS)
        self.busy = 0.0
        self.max = 0.0

    def add(self, other: _Histogram) -> None:
        counts, sums = self.counts, self.sums
        for k, count in enumerate(other.counts):
            if count:
                counts[k] += count
                sums[k] += other.sums[k]
        self.busy += other.busy
        self.max = max(self.max, other.max)


class LoopLag:
    """
    The loop-lag probe of this process's gevent hub: :meth:`start` it once,
    read :meth:`figures` whenever (see the module's docstring for what it measures).
    """

    # Slots: the two callbacks run at every loop iteration and touch only these.
    __slots__ = (
        "_busy",
        "_busy_since",
        "_counts",
        "_lagged_windows",
        "_max",
        "_poll_clock",
        "_run",
        "_run_start",
        "_short",
        "_short_busy",
        "_sums",
        "_watchers",
        "_window_end",
        "_window_start",
        "_windows",
        "_worst_p99",
        "history",
        "recent",
    )

    def __init__(self) -> None:
        self._busy_since: float | None = None
        self._poll_clock: Any = time.time
        self._watchers: list[Any] = []
        self._run = _Histogram()
        self._new_window(time.time())
        self._run_start = self._window_start
        self._worst_p99 = 0.0
        self._windows = 0
        self._lagged_windows = 0
        self.recent: deque[Window] = deque(maxlen=RECENT_WINDOWS)
        """The last windows, oldest first."""
        self.history: deque[Window] = deque(maxlen=HISTORY_WINDOWS)
        """The last :data:`HISTORY_WINDOWS` windows, oldest first (for benchmarks)."""

    def _new_window(self, now: float) -> None:
        self._counts = [0] * len(BOUNDS)
        self._sums = [0.0] * len(BOUNDS)
        self._busy = self._max = self._short_busy = 0.0
        self._short = 0
        self._window_start, self._window_end = now, now + WINDOW

    # The watchers -----------------------------------------------------------------

    def start(self) -> None:
        """Watch this thread's gevent loop (idempotent). The watchers never keep the loop alive."""
        if self._watchers:
            return
        loop = gevent.get_hub().loop
        loop.update_now()
        # libev's loop time is the real-time clock, updated in C right after each poll;
        # another loop (libuv) keeps its own clock: then the Python-side time is taken.
        if abs(loop.now() - time.time()) < 1.0:
            self._poll_clock = loop.now
        check = loop.check(ref=False, priority=loop.MAXPRI)
        check.start(self._on_poll_returned)
        prepare = loop.prepare(ref=False, priority=loop.MINPRI)
        prepare.start(self._on_poll_next)
        self._watchers = [check, prepare]

    def stop(self) -> None:
        """Stop watching (the figures stay)."""
        for watcher in self._watchers:
            watcher.close()
        self._watchers = []
        self._busy_since = None

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return bool(self._watchers)

    def _on_poll_returned(self) -> None:
        self._busy_since = self._poll_clock()

    def _on_poll_next(self, _time: Any = time.time) -> None:
        # Once per loop iteration: kept short (a local clock, the short intervals summed apart).
        since = self._busy_since
        if since is None:
            return
        self._busy_since = None
        now = _time()
        busy = now - since
        if 0.0 <= busy < SHORT:
            self._short += 1
            self._short_busy += busy
        elif 0.0 < busy < _MAX_BUSY:  # else a clock step, not a stall
            k = bisect_right(BOUNDS, busy) - 1
            self._counts[k] += 1
            self._sums[k] += busy
            self._busy += busy
            self._max = max(self._max, busy)
        if now >= self._window_end:
            self._close_window(now)

    # Windows --------------------------------------------------------------------------

    def _close_window(self, now: float) -> None:
        window = _Histogram()
        window.counts, window.sums, window.max = self._counts, self._sums, self._max
        window.counts[0] += self._short
        window.sums[0] += self._short_busy
        window.busy = self._busy + self._short_busy
        seconds = now - self._window_start
        if 0.0 < seconds < 10 * _MAX_BUSY:  # else the clock stepped: the window is dropped
            p99 = lag_percentile(window.counts, window.sums, seconds) * 1000
            summary = Window(
                end=now, seconds=seconds, p99=p99, max=window.max * 1000, busy=min(1.0, window.busy / seconds)
            )
            self.recent.append(summary)
            self.history.append(summary)
            self._run.add(window)
            self._windows += 1
            self._worst_p99 = max(self._worst_p99, p99)
            if p99 > LAG_WARNING_MS:
                self._lagged_windows += 1
        self._new_window(now)

    def reset(self) -> None:
        """Start the run's figures over (a new test start); the recent windows stay."""
        self._run = _Histogram()
        self._run_start = self._window_start
        self._worst_p99 = 0.0
        self._windows = self._lagged_windows = 0

    def figures(self) -> LagFigures:
        """Recent and whole-run figures, over the windows closed so far."""
        run = self._run
        seconds = self._run_seconds()
        recent = list(self.recent)
        recent_seconds = sum(w.seconds for w in recent)
        return LagFigures(
            recent_p99=round(max((w.p99 for w in recent), default=0.0), 3),
            recent_max=round(max((w.max for w in recent), default=0.0), 3),
            recent_busy=round(100 * sum(w.busy * w.seconds for w in recent) / recent_seconds, 2)
            if recent_seconds
            else 0.0,
            p99=round(lag_percentile(run.counts, run.sums, seconds) * 1000, 3) if seconds > 0 else 0.0,
            max=round(run.max * 1000, 3),
            busy=round(100 * run.busy / seconds, 2) if seconds > 0 else 0.0,
            worst_p99=round(self._worst_p99, 3),
            windows=self._windows,
            lagged_windows=self._lagged_windows,
        )

    def _run_seconds(self) -> float:
        return self._window_start - self._run_start

    def totals(self) -> dict[str, Any]:
        """
        The run's raw histogram, for a benchmark that takes the difference of two readings
        (:func:`figures_between`): ``t`` (``time.time()`` of the last window's end),
        ``seconds``, ``busy`` (s), ``buckets`` (``{index in BOUNDS: [count, summed s]}``)
        and the ``history`` of windows as ``[end, p99 ms, max ms, busy share]``.
        """
        run = self._run
        return {
            "t": self._window_start,
            "seconds": self._run_seconds(),
            "busy": run.busy,
            "buckets": {k: [count, run.sums[k]] for k, count in enumerate(run.counts) if count},
            "history": [[w.end, round(w.p99, 4), round(w.max, 4), round(w.busy, 5)] for w in self.history],
        }


def figures_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """
    Loop lag between two :meth:`LoopLag.totals` readings of one run (no reset in between).

    Returns:
        ``seconds``, ``p99`` (ms, time-weighted over the interval), ``max`` (ms, the longest
        stall in the windows that ended in it), ``worst_p99`` (ms, the highest window p99),
        ``busy`` (%), ``windows``, ``lagged_windows`` (p99 above :data:`LAG_WARNING_MS`) and
        ``iterations_per_s`` (loop iterations, each of which costs the probe two callbacks).
    """
    seconds = after["seconds"] - before["seconds"]
    counts, sums = [0] * len(BOUNDS), [0.0] * len(BOUNDS)
    for reading, sign in ((after, 1), (before, -1)):
        for k, (count, total) in reading["buckets"].items():
            counts[int(k)] += sign * count
            sums[int(k)] += sign * total
    windows = [w for w in after["history"] if before["t"] < w[0] <= after["t"]]
    return {
        "seconds": round(seconds, 3),
        "p99": round(lag_percentile(counts, sums, seconds) * 1000, 3) if seconds > 0 else None,
        "max": round(max((w[2] for w in windows), default=0.0), 3),
        "worst_p99": round(max((w[1] for w in windows), default=0.0), 3),
        "busy": round(100 * (after["busy"] - before["busy"]) / seconds, 2) if seconds > 0 else None,
        "windows": len(windows),
        "lagged_windows": sum(1 for w in windows if w[1] > LAG_WARNING_MS),
        "iterations_per_s": round(sum(counts) / seconds) if seconds > 0 else None,
    }
