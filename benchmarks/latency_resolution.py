"""
What Locust's response-time buckets do to a loopback echo, side by side.

Runs ``--users`` WebSocketUsers (default 20), each calling ``self.echo()``
(64 bytes) then waiting ``--interval-ms`` (default 50), for ``--duration`` seconds
against ``python -m wslocust serve`` on loopback (a separate process), and
records every echo's exact round trip. It then prints the percentiles of the
same samples three ways:

- ``exact``: sorted raw samples;
- ``locust``: Locust's own ``bucket_response_time`` (whole ms below 100 ms);
- ``wslocust``: :func:`wslocust.reporting.bucketing.bucket_response_time`, two
  significant digits below 10 ms, Locust's buckets above.

Both bucketed columns use Locust's percentile function. Prints a table and a
``RESULT {json}`` line.

Run: ``.venv/bin/python benchmarks/latency_resolution.py [--duration 10]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import gevent
import locust
import locust.stats
from locust import constant, task
from locust.env import Environment
from locust.stats import calculate_response_time_percentile

from wslocust import WebSocketUser
from wslocust.reporting.bucketing import bucket_response_time

__all__ = ["main"]

PERCENTILES = (0.1, 0.25, 0.5, 0.9, 0.95, 0.99)
ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--interval-ms", type=float, default=50.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "wslocust", "serve", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = server.stdout.readline() if server.stdout else ""
        url = line.split("listening on ", 1)[1].split()[0]
        samples = run(url, args.users, args.interval_ms / 1000, args.duration)
    finally:
        server.terminate()
        server.wait(10)

    samples.sort()
    rows = {}
    for p in PERCENTILES:
        exact = samples[min(len(samples) - 1, int(len(samples) * p))]
        rows[f"p{round(p * 100)}"] = {
            "exact": round(exact, 3),
            "locust": _bucketed(samples, locust.stats.bucket_response_time, p),
            "wslocust": _bucketed(samples, bucket_response_time, p),
        }
    print(f"{len(samples)} echoes of {args.users} users on loopback, ms")
    print(f"{'':6} {'exact':>8} {'locust':>8} {'wslocust':>9}")
    for name, row in rows.items():
        print(f"{name:6} {row['exact']:>8} {row['locust']:>8} {row['wslocust']:>9}")
    print("RESULT " + json.dumps({"samples": len(samples), "percentiles": rows}))


def run(url: str, users: int, interval: float, duration: float) -> list[float]:
    class Echo(WebSocketUser):
        host = url
        wait_time = constant(interval)

        @task
        def echo_once(self) -> None:
            self.echo()

    samples: list[float] = []

    def record(name: str, response_time: float | None, exception: object = None, **_: object) -> None:
        if name == "echo" and exception is None and response_time is not None:
            samples.append(response_time)

    environment = Environment(user_classes=[Echo], events=locust.events)
    environment.events.request.add_listener(record)
    runner = environment.create_local_runner()
    runner.start(users, spawn_rate=users)
    gevent.sleep(1.0)  # connected and past the first ticks
    samples.clear()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        gevent.sleep(0.2)
    runner.quit()
    environment.events.request.remove_listener(record)
    return samples


def _bucketed(samples: list[float], bucket: object, percent: float) -> float:
    histogram = Counter(bucket(value) for value in samples)  # type: ignore[operator]
    return calculate_response_time_percentile(histogram, len(samples), percent)


if __name__ == "__main__":
    main()
