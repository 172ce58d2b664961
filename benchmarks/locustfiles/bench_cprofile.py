"""
``--bench-cprofile PREFIX``: profile each generator process with cProfile from ``test_start`` to
``test_stop`` and write ``PREFIX-<pid>.prof`` (``latency-error --profile DIR``). The clock is the
process's CPU time, so that the time the event loop waits in epoll is not counted; every greenlet
runs in the one profiled thread, so a function that switches greenlets (a sleep, a blocking
``recv()``) is charged the CPU of whatever ran meanwhile (``benchmarks/cprofile_report.py`` shows
those apart). cProfile's own cost inflates Python calls: compare shares, not absolute times.
Benchmark-only; imports Locust only.
"""

from __future__ import annotations

import cProfile
import os
import time
from typing import Any

from locust import events

__all__: list[str] = []

_profiler: list[cProfile.Profile] = []


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("benchmark cProfile", "benchmarks/locustfiles/bench_cprofile.py")
    group.add_argument("--bench-cprofile", default="", metavar="PREFIX", help="write PREFIX-<pid>.prof")


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    prefix = getattr(environment.parsed_options, "bench_cprofile", "") if environment.parsed_options else ""
    if prefix and not _profiler:
        profiler = cProfile.Profile(time.process_time)
        _profiler.append(profiler)
        profiler.enable()


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    if _profiler:
        profiler = _profiler.pop()
        profiler.disable()
        profiler.dump_stats(f"{environment.parsed_options.bench_cprofile}-{os.getpid()}.prof")
