"""
Sub-millisecond response times in Locust's statistics.

Locust keeps each request's response time in a histogram whose keys
:func:`locust.stats.bucket_response_time` rounds, and below 100 ms it rounds
to whole milliseconds. A WebSocket echo on a LAN or on loopback takes a few
hundred microseconds, so its median comes out as 0 or 1 and every percentile
below 10 ms has one significant digit at best.

:func:`install` replaces that function (Locust documents it as replaceable,
see :func:`wslocust.locust_compat.patch_response_times`) with
:func:`bucket_response_time`, which keeps two significant digits below 10 ms (0.37, 0.052, 4.1),
tenths of a millisecond from 10 to 100 ms (50.3: the error of a 50 ms echo
stays below 0.05 ms instead of Locust's 0.5) and rounds exactly as Locust does
from 100 ms up, so the histogram sent from the workers grows by at most 90 keys
per decade below 10 ms and 900 between 10 and 100 ms. It also makes the places
that print these numbers as integers show the decimals: the console tables
(``%d`` there), the CSV percentiles (``int()``) and the min and max of the web
UI's table (rounded to whole milliseconds). Figures of 100 ms and more print
exactly as before.
"""

from __future__ import annotations

from typing import Any

import locust.stats
from locust.stats import StatsCSV, StatsEntry

from wslocust.formatting import FINE_BELOW_MS, TENTHS_BELOW_MS, format_ms
from wslocust.locust_compat import (
    locust_bucket_response_time,
    locust_to_dict,
    patch_response_times,
    restore_response_times,
)

__all__ = ["bucket_response_time", "install", "installed", "uninstall"]

_SMALLEST_MS = 0.001
"""One microsecond: the finest bucket."""

_installed = False


def bucket_response_time(response_time: float) -> int | float:
    """
    Round ``response_time`` (ms) to a histogram key with two significant digits.

    0.3712 becomes 0.37, 0.05234 becomes 0.052, 4.16 becomes 4.2; from 10 ms to
    100 ms tenths are kept (50.34 becomes 50.3: a 50 ms echo is known to 0.05 ms,
    not to Locust's 0.5); from 100 ms up the result is Locust's (an ``int``: 150,
    3400). Keys are exact decimal roundings, so the same value always lands in the
    same key, on any worker.
    """
    global _last_time, _last_key
    if response_time == _last_time:  # Locust logs each response time twice: its name's and the total's
        return _last_key
    if response_time >= TENTHS_BELOW_MS:
        key: int | float = locust_bucket_response_time(response_time)
    elif response_time >= FINE_BELOW_MS:
        key = round(response_time, 1)
    elif response_time <= 0:
        key = 0
    elif response_time < _SMALLEST_MS:
        key = _SMALLEST_MS
    else:  # two significant digits, at most three decimals
        key = round(response_time, 1 if response_time >= 1 else 2 if response_time >= 0.1 else 3)
    _last_time, _last_key = response_time, key
    return key


_last_time: float = -1.0
_last_key: int | float = 0


# What prints response times, with their decimals -------------------------------------------
# Copies of Locust's methods (column for column), installed by patch_response_times; the Locust
# names they read are in wslocust.locust_compat.PATCHED, under "patch_response_times".


def _display_ms(value: float | None) -> float | int:
    """A response time as a number for JSON and CSV: ints from 100 ms up, tenths from 10 ms, else 3 decimals."""
    if not value:
        return 0
    return round(value) if value >= TENTHS_BELOW_MS else round(value, 1 if value >= FINE_BELOW_MS else 3)


def _to_string(self: StatsEntry, current: bool = True) -> str:
    # StatsEntry.to_string with the four response-time columns formatted by format_ms instead of "%7d".
    rps, fails = (self.current_rps, self.current_fail_per_sec) if current else (self.total_rps, self.total_fail_per_sec)
    type_width = locust.stats.STATS_TYPE_WIDTH
    name_width = (locust.stats.STATS_NAME_WIDTH - type_width) + 4
    return (f"%-{type_width}s %-{name_width}s %7d %12s |%7s %7s %7s%7s | %7.2f %11.2f") % (
        ((self.method and self.method + " ") or ""),
        self.name,
        self.num_requests,
        f"{self.num_failures}({self.fail_ratio * 100:.2f}%)",
        *map(format_ms, (self.avg_response_time, self.min_response_time, self.max_response_time)),
        format_ms(self.median_response_time),
        rps or 0,
        fails or 0,
    )


def _percentile(self: StatsEntry) -> str:
    # StatsEntry.percentile (the "Response time percentiles" table) with "%6s".
    if not self.num_requests:
        raise ValueError("Can't calculate percentile on url with no successful requests")
    percentiles = locust.stats.PERCENTILES_TO_REPORT
    widths = f"%-{locust.stats.STATS_TYPE_WIDTH}s %-{locust.stats.STATS_NAME_WIDTH}s %8s "
    return (widths + " ".join(["%6s"] * len(percentiles))) % (
        self.method or "",
        self.name,
        *(format_ms(self.get_response_time_percentile(p)) for p in percentiles),
        self.num_requests,
    )


def _to_dict(self: StatsEntry, escape_string_values: bool = False) -> dict[str, Any]:
    # The web UI's table: Locust rounds min and max to whole milliseconds.
    data: dict[str, Any] = locust_to_dict(self, escape_string_values)
    data["min_response_time"] = _display_ms(self.min_response_time)
    data["max_response_time"] = _display_ms(self.max_response_time)
    return data


def _percentile_fields(self: StatsCSV, stats_entry: StatsEntry, use_current: bool = False) -> list[Any]:
    # StatsCSV._percentile_fields without the int() that turns 0.37 into 0.
    if not stats_entry.num_requests:
        return self.percentiles_na
    current = use_current and stats_entry.use_response_times_cache
    get = stats_entry.get_current_response_time_percentile if current else stats_entry.get_response_time_percentile
    return [_display_ms(get(p)) for p in self.percentiles_to_report]


def install() -> None:
    """
    Install the finer bucketing and the printing that shows it, in this
    process. Idempotent. Every process of a run must do it before its first
    request (:mod:`wslocust.wiring` does it at Locust's ``init``): a worker's
    histogram keys are made where requests are logged, and the master prints.
    """
    global _installed
    if _installed:
        return
    patch_response_times(
        bucket_response_time,
        to_string=_to_string,
        percentile=_percentile,
        to_dict=_to_dict,
        percentile_fields=_percentile_fields,
    )
    _installed = True


def uninstall() -> None:
    """Put Locust's own bucketing and printing back (for tests)."""
    global _installed
    restore_response_times()
    _installed = False


def installed() -> bool:
    """True once :func:`install` ran in this process."""
    return _installed
