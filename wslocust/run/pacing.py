"""
Spread the first connects of users that Locust spawns together.

Locust starts users in bursts: with ``-r 1000`` its dispatcher hands out 1,000
users at once, once a second (``locust/dispatch.py``), and each worker starts
its share in one loop. Opening all of them in the same instant queues their
TCP and upgrade handshakes behind each other in the generator itself, so the
``connect`` time measures the generator's own queue (hundreds of
milliseconds) instead of the server.

A :class:`StartPacer` gives every user of a burst a slot: the users of one
burst open their connections evenly over the time the burst stands for — the
burst's size divided by this process's spawn rate, and at most Locust's
one-second dispatch period. A local run reads the rate from its dispatcher; a
master does not tell workers its rate (its spawn messages carry user counts),
so it adds its rate per worker to the options it sends with them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import gevent

from wslocust.locust_compat import dispatcher_spawn_rate

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["DISPATCH_PERIOD", "SPAWN_RATE_OPTION", "StartPacer", "tell_workers_their_rate"]

SPAWN_RATE_OPTION = "ws_spawn_rate_per_worker"
"""Set by the master in the options its spawn messages carry: a worker copies every option
that is not one of Locust's own into its ``parsed_options`` (``WorkerRunner``, "spawn")."""

DISPATCH_PERIOD = 1.0
"""Seconds between two bursts of Locust's dispatcher when the spawn rate is 1/s or more."""


class _Burst:
    __slots__ = ("size", "started_at")

    def __init__(self, started_at: float) -> None:
        self.size = 0
        self.started_at = started_at


class StartPacer:
    """Hands out start times to the users of each burst, evenly spaced."""

    def __init__(self, environment: Environment) -> None:
        self._environment = environment
        self._burst: _Burst | None = None

    def join(self) -> tuple[_Burst, int]:
        """
        Register a user that Locust is starting now; returns its burst and place in it.

        Call it from ``User.start()``: Locust starts a burst's users in one loop without
        yielding, so the burst is complete by the time any of their greenlets runs.
        """
        burst = self._burst
        if burst is None:
            burst = self._burst = _Burst(time.perf_counter())
            # Runs after the spawning loop yields, before the new users' greenlets (FIFO).
            gevent.get_hub().loop.run_callback(self._end_burst)
        burst.size += 1
        return burst, burst.size - 1

    def _end_burst(self) -> None:
        self._burst = None

    def wait_turn(self, burst: _Burst, place: int) -> None:
        """Sleep until the user at ``place`` of ``burst`` may connect."""
        wait = burst.started_at + self.delay(burst, place) - time.perf_counter()
        if wait > 0:
            gevent.sleep(wait)

    def delay(self, burst: _Burst, place: int) -> float:
        """Seconds from the burst's start until the user at ``place`` should connect."""
        if burst.size <= 1:
            return 0.0
        rate = self._spawn_rate()
        window = burst.size / rate if rate else DISPATCH_PERIOD
        return min(window, DISPATCH_PERIOD) * place / burst.size

    def _spawn_rate(self) -> float | None:
        """Users per second that this process is asked to start, if known."""
        rate: Any = dispatcher_spawn_rate(self._environment.runner)  # a local run
        if rate is None:
            rate = getattr(self._environment.parsed_options, SPAWN_RATE_OPTION, None)  # a worker
        return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def tell_workers_their_rate(environment: Environment, runner: Any, spawn_rate: float) -> None:
    """On a master, before each start: put each worker's share of ``spawn_rate`` in the options it sends them."""
    if environment.parsed_options is not None:
        workers = max(1, runner.worker_count)
        setattr(environment.parsed_options, SPAWN_RATE_OPTION, spawn_rate / workers)
