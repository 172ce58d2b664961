"""
What recording one successful request costs: through Locust's ``events.request`` (its runner's listener
logs it under its name and the total) against :class:`wslocust.locust_compat.RequestLog` writing the same
fields directly, which wslocust's users do while Locust's statistics are the only listener.

Both write into a real Locust ``Environment`` with a local runner, with Locust's response-time buckets and
with wslocust's finer ones; the response times are spread like a WebSocket run's (sub-millisecond to
seconds). Prints microseconds per request, best of ``--repeat`` rounds, the two paths interleaved.

Run: ``python benchmarks/request_log_cost.py [--requests 20000] [--repeat 7]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import timeit
from typing import Any

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="requests per round (default: 20000)")
    parser.add_argument("--repeat", type=int, default=7, help="rounds per path; the best counts (default: 7)")
    args = parser.parse_args(argv)

    from locust import User
    from locust.env import Environment

    from wslocust.locust_compat import RequestLog
    from wslocust.reporting import bucketing

    class Idle(User):
        abstract = False

    rng = random.Random(1)
    times = [rng.choice([rng.uniform(0.05, 1), rng.uniform(1, 100), rng.uniform(100, 3000)]) for _ in range(1000)]
    rounds = max(1, args.requests // len(times))
    print(f"one successful request recorded, best of {args.repeat} rounds of {rounds * len(times):,} (us)")
    for buckets in ("locust", "wslocust"):
        if buckets == "wslocust":
            bucketing.install()
        by_event, direct = Environment(user_classes=[Idle]), Environment(user_classes=[Idle])
        by_event.create_local_runner()
        direct.create_local_runner()
        fire, log = by_event.events.request.fire, RequestLog(direct, "WS")
        assert log.direct

        def through_event(fire: Any = fire) -> None:
            for response_time in times:
                fire(request_type="WS", name="echo", response_time=response_time, response_length=64, exception=None)

        def written_directly(log: RequestLog = log) -> None:
            for response_time in times:
                log.success("echo", response_time, 64)

        event_us = direct_us = float("inf")
        for _ in range(args.repeat):  # interleaved: the machine's drift touches both
            event_us = min(event_us, timeit.timeit(through_event, number=rounds) / (rounds * len(times)) * 1e6)
            direct_us = min(direct_us, timeit.timeit(written_directly, number=rounds) / (rounds * len(times)) * 1e6)
        print(
            f"  {buckets} buckets: events.request {event_us:.2f}, RequestLog {direct_us:.2f} "
            f"(x{direct_us / event_us:.2f}, {event_us - direct_us:.2f} us saved)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
