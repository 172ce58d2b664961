"""
Instrumentation shared by the benchmark locustfiles, talking to the benchmark
process over stdout (one line each, read by ``benchmarks/processes.py``).

It imports Locust only, never wslocust: the plain websocket-client user must
run without wslocust's listeners, statistics bucketing or live metrics.

- ``COUNT {json}`` on each SIGUSR1: the cumulative ``WS`` request counts
  (``echoes`` are successful ``echo`` requests), this process's RSS and, in a
  wslocust run, its event-loop lag totals (``loop_lag``, empty otherwise). On a
  master, Locust's statistics lag the workers by up to one report (3 s).
- ``IDLE {json}`` at ``test_start``, before the first user is spawned: this
  process's RSS with 0 users.
- ``EXACT {json}`` at quit, with ``--bench-exact NAMES``: count and p50/p95/p99
  of the exact response times of those request names, before Locust's
  statistics round them into histogram buckets.

Options for the locustfiles: ``--bench-size`` (message bytes) and
``--bench-interval`` (seconds between the plain user's periodic echoes).
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import gevent
import psutil
from locust import events
from locust.runners import WorkerRunner

__all__ = ["exact_summary", "options"]

_PROCESS = psutil.Process()
_exact: dict[str, list[float]] = {}


def _emit(tag: str, data: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {json.dumps(data)}\n")
    sys.stdout.flush()


def options(environment: Any) -> Any:
    """The run's parsed options (``bench_size``, ``bench_interval``, ``bench_exact``)."""
    return environment.parsed_options


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("benchmarks", "Benchmark probe (benchmarks/locustfiles/bench_probe.py)")
    group.add_argument("--bench-size", type=int, default=64, help="message size in bytes (default: 64)")
    group.add_argument(
        "--bench-interval",
        type=float,
        default=5.0,
        help="seconds between the periodic echoes of the plain PeriodicEcho user; 0: none (default: 5)",
    )
    group.add_argument(
        "--bench-exact",
        default="",
        help="comma-separated request names whose exact response times are reported at quit (EXACT line)",
    )


def _counts(environment: Any) -> dict[str, Any]:
    stats = environment.runner.stats if environment.runner is not None else environment.stats
    requests = {
        entry.name: [entry.num_requests, entry.num_failures]
        for entry in list(stats.entries.values())
        if entry.method == "WS"
    }
    echo = requests.get("echo", [0, 0])
    connect = requests.get("connect", [0, 0])
    errors = [f"{error.name}: {error.error}" for error in list(stats.errors.values())]
    return {
        "echoes": echo[0] - echo[1],
        "failures": sum(failures for _, failures in requests.values()),
        "connects": connect[0] - connect[1],
        "connect_failures": connect[1],
        "requests": requests,
        "first_error": errors[0] if errors else None,
        "rss": _PROCESS.memory_info().rss,
        "users": environment.runner.user_count if environment.runner is not None else None,
        # A wslocust run's event-loop lag probe (wslocust.run.loop_lag), read without importing wslocust.
        "loop_lag": getattr(getattr(getattr(environment, "wslocust", None), "loop_lag", None), "totals", dict)(),
    }


def exact_summary(samples: list[float]) -> dict[str, Any]:
    """Count and p50/p95/p99 (ms) by the rank Locust uses: sorted[floor(n * p)]."""
    ordered = sorted(samples)
    n = len(ordered)
    if not n:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "mean": None}
    return {
        "count": n,
        **{f"p{round(p * 100)}": ordered[min(n - 1, int(n * p))] for p in (0.5, 0.95, 0.99)},
        "mean": sum(ordered) / n,
    }


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    gevent.signal_handler(signal.SIGUSR1, lambda: _emit("COUNT", _counts(environment)))
    parsed = environment.parsed_options
    names = [name.strip() for name in (getattr(parsed, "bench_exact", "") or "").split(",") if name.strip()]
    if names and not isinstance(environment.runner, WorkerRunner):
        _exact.update({name: [] for name in names})

        def record(name: str, response_time: float | None, exception: Any = None, **_: Any) -> None:
            samples = _exact.get(name)
            if samples is not None and exception is None and response_time is not None:
                samples.append(response_time)

        environment.events.request.add_listener(record)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        _emit("IDLE", {"rss": _PROCESS.memory_info().rss})


@events.quit.add_listener
def _on_quit(**_: Any) -> None:
    if _exact:
        _emit("EXACT", {name: exact_summary(samples) for name, samples in _exact.items()})
