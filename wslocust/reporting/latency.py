"""
Latency from Locust's own statistics: per request name, and for all round
trips together, over the whole run or Locust's sliding window of about ten
seconds (the same histograms as Locust's tables).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from locust.stats import (
    CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW,
    RequestStats,
    StatsEntry,
    calculate_response_time_percentile,
    diff_response_time_dicts,
)

__all__ = ["NOT_ROUND_TRIPS", "latency", "rounded_number"]

NOT_ROUND_TRIPS = frozenset({"connect", "reconnect", "disconnect", "send", "ping"})
"""Request names that are not message round trips; every other ``WS`` name is one."""


def _histogram(entry: StatsEntry, window: bool) -> tuple[dict[Any, int], int]:
    """The entry's response times: over Locust's sliding window when asked and available."""
    count = entry.num_requests - entry.num_none_requests
    cache = entry.response_times_cache if window and entry.use_response_times_cache else None
    if cache:
        # The same choice of cached second as StatsEntry.get_current_response_time_percentile.
        now = time.time()
        first = int(now) - CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW
        for ts in [first, *(first + sign * i for i in range(1, 9) for sign in (-1, 1))]:
            cached = cache.get(ts)
            if cached is not None:
                return (
                    diff_response_time_dicts(entry.response_times, cached.response_times),
                    count - (cached.num_requests - cached.num_none_requests),
                )
        # Locust caches a second only when requests come in: none cached in the window
        # means none came for a while (the window is empty), unless the entry is brand new.
        if (entry.last_request_timestamp or 0) < now - 2:
            return {}, 0
    return dict(entry.response_times), count


def _percentiles(histogram: dict[Any, int], count: int) -> dict[str, float | None]:
    if count <= 0:
        return {"p50": None, "p95": None, "p99": None}
    return {
        f"p{round(p * 100)}": rounded_number(calculate_response_time_percentile(histogram, count, p))
        for p in (0.5, 0.95, 0.99)
    }


def latency(stats: RequestStats, window: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Per request name, and for all round trips together: count, percentiles, average, max."""
    names: dict[str, dict[str, Any]] = {}
    merged: Counter[Any] = Counter()
    merged_count = 0
    total_time = 0.0
    timed = 0
    peak = 0.0
    for entry in list(stats.entries.values()):
        if entry.method != "WS":
            continue
        histogram, count = _histogram(entry, window)
        names[entry.name] = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "rps": rounded_number(entry.current_rps) if window else None,
            **_percentiles(histogram, count),
            "avg": rounded_number(entry.avg_response_time),
            "max": rounded_number(entry.max_response_time),
        }
        if entry.name not in NOT_ROUND_TRIPS:
            merged.update(histogram)
            merged_count += count
            total_time += entry.total_response_time
            timed += entry.num_requests - entry.num_none_requests
            peak = max(peak, entry.max_response_time)
    if not timed:
        return names, None
    round_trip = {
        "requests": timed,
        **_percentiles(merged, merged_count),
        "avg": rounded_number(total_time / timed),
        "max": rounded_number(peak),
    }
    return names, round_trip


def rounded_number(value: float | None, digits: int = 3) -> float | None:
    """``value`` rounded for JSON: ints as they are, None for None and non-finite numbers."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return round(value, digits) if math.isfinite(value) else None
