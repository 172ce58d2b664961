"""
A successful request written straight into Locust's statistics while Locust's own listener is the only one.

Locust records a request by firing ``events.request``; the runner's listener (``on_request``, a
closure of ``Runner.__init__``) then logs it twice, under its name and under the total
(``StatsEntry.log``), each time reading the clock and bucketing the response time: 5-8 µs per
request, twice what writing the fields directly costs (``benchmarks/request_log_cost.py``), in a
closed-loop echo's ~30-70 µs. :class:`RequestLog` writes the same fields in one pass: the same
counts, per-second counts, response-time histogram (bucketed by ``locust.stats.bucket_response_time``,
whatever is installed there), the response-time cache and the last request's time, nothing stale,
so every reader of Locust's statistics (worker reports, the web UI, CSV, ``--json``, thresholds)
sees what the event would have left.

Whenever any other listener is registered (a locustfile's, a plugin's, a benchmark's), the
event fires as before, so every listener still sees every request. Failures always fire it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import locust.stats

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["LOCUST_REQUEST_LISTENER", "RequestLog"]

LOCUST_REQUEST_LISTENER = "Runner.__init__.<locals>.on_request"
"""The qualified name of the listener every Locust runner adds to ``events.request`` for its statistics."""


class RequestLog:
    """Successful requests of one request type into one environment's Locust statistics."""

    def __init__(self, environment: Environment, request_type: str) -> None:
        hook = environment.events.request
        self._hook = hook
        self._request_type = request_type
        self._stats = environment.stats  # what the runner's listener logs into (Runner.stats)
        # Locust's own listener, if this environment's runner added exactly one (a test that makes
        # several runners on one Events object has several: then the event fires).
        own = [handler for handler in hook._handlers if getattr(handler, "__qualname__", "") == LOCUST_REQUEST_LISTENER]
        self._locust_listener: Any = own[0] if len(own) == 1 else None
        self._clock = time.time

    @property
    def direct(self) -> bool:
        """True while Locust's statistics are the only listener: requests are written without the event."""
        handlers = self._hook._handlers
        return len(handlers) == 1 and handlers[0] is self._locust_listener

    def success(self, name: str, response_time: float, length: int) -> None:
        """Record a successful request: ``response_time`` in ms, ``length`` bytes."""
        if not self.direct:
            self._hook.fire(
                request_type=self._request_type,
                name=name,
                response_time=response_time,
                response_length=length,
                exception=None,
                context={},
            )
            return
        # StatsEntry.log for the name's entry and the total, field for field (Locust 2.46-2.47).
        stats = self._stats
        now = self._clock()
        second = int(now)
        key = locust.stats.bucket_response_time(response_time)
        # Any: Locust types response times as int; they are float here, as the event would pass them.
        both: tuple[Any, Any] = (stats.total, stats.entries[(name, self._request_type)])
        for entry in both:
            last = entry.last_request_timestamp
            if entry.use_response_times_cache and last and second > int(last):
                entry._cache_response_times(second - 1)
            entry.num_requests += 1
            entry.num_reqs_per_sec[second] += 1
            entry.last_request_timestamp = now
            entry.total_response_time += response_time
            smallest = entry.min_response_time
            if smallest is None or response_time < smallest:
                entry.min_response_time = response_time
            entry.max_response_time = max(entry.max_response_time, response_time)
            entry.response_times[key] += 1
            entry.total_content_length += length
