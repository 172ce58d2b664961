"""
A loaded generator for ``latency-error``: ``--bench-stall 5/20`` runs, in every generator process,
a greenlet that busy-waits 5 ms of every 20 ms, as a locustfile doing CPU work in a task or a
listener would: the event loop cannot run meanwhile, so a reply that arrives during a stall is
read up to 5 ms late. A user that times its replies from when it reads them reports the stall as
latency; one that takes the kernel's receive time does not.

Benchmark-only; imports Locust and gevent only.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust import events

__all__ = ["stall_forever"]


def stall_forever(busy: float, every: float) -> None:
    """Busy-wait ``busy`` seconds at the start of every ``every`` seconds (absolute ticks: no drift)."""
    clock = time.perf_counter
    tick = clock()
    while True:
        tick += every
        end = clock() + busy
        while clock() < end:
            pass
        gevent.sleep(max(0.0, tick - clock()))


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("benchmark stall", "benchmarks/locustfiles/bench_stall.py")
    group.add_argument(
        "--bench-stall",
        default="",
        metavar="BUSY_MS/EVERY_MS",
        help="busy-wait BUSY_MS of every EVERY_MS in a greenlet of each process (default: none)",
    )


_stalling: list[Any] = []


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    spec = getattr(environment.parsed_options, "bench_stall", "") if environment.parsed_options else ""
    if not spec or _stalling:
        return
    busy, every = (float(part) / 1000 for part in spec.split("/"))
    _stalling.append(gevent.spawn(stall_forever, busy, every))


@events.test_stop.add_listener
def _on_test_stop(**_: Any) -> None:
    while _stalling:
        _stalling.pop().kill(block=False)
