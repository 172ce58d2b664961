"""
What a ramp-down costs the generator in memory: RSS growth while Locust stops most of a run's held users.

A shape that lowers the users (the spike and wave profiles) makes Locust stop users one by one: each
user's ``stop`` runs in a greenlet spawned for it, and a user that closes its connection takes a moment
to end. This opens ``--users`` task-less wslocust users against ``wslocust serve`` (another process,
a free port on 127.0.0.1) in a Locust ``LocalRunner`` in this process, lowers them to ``--to``, and
prints the RSS before, its peak until the closes are done, and when Locust counted the users gone
against when the last close was counted; then stops the run (Locust's ``Runner.stop``) and prints how long
its ``--to`` users took to close and the event loop's longest gap meanwhile. It stops by itself
(``--timeout``).

Run: ``python benchmarks/ramp_down_memory.py [--users 5000] [--to 500]``; ``--users 10500 --to 10000`` for
the whole stop of 10,000 held users.
"""

from __future__ import annotations

import argparse
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5_000, help="users held before the ramp-down (default: 5000)")
    parser.add_argument("--to", type=int, default=500, help="users after it (default: 500)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for each phase (default: 60)")
    args = parser.parse_args(argv)
    if not 0 <= args.to < args.users:
        parser.error(f"--to {args.to}: must be at least 0 and below --users ({args.users})")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < args.users + 100:
        parser.error(f"--users {args.users}: needs {args.users + 100} open files, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.users + 100)), hard))

    sys.path.insert(0, str(REPO_ROOT))
    import gevent
    import locust
    import psutil
    from locust.env import Environment

    from wslocust import WebSocketUser
    from wslocust.run.state import run_state

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bound = f"{2 * args.timeout + 10:.0f}"
    serve = [sys.executable, "-m", "wslocust", "serve", "--port", str(port)]
    server = subprocess.Popen(
        ["timeout", "-k", "5", bound, *serve], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)

        class Holder(WebSocketUser):
            message_interval = 0

        environment = Environment(user_classes=[Holder], events=locust.events, host=f"ws://127.0.0.1:{port}/ws")
        runner = environment.create_local_runner()
        counters = run_state(environment).counters
        process = psutil.Process()
        runner.start(args.users, spawn_rate=1_000)
        deadline = time.monotonic() + args.timeout
        while counters.open < args.users and time.monotonic() < deadline:
            gevent.sleep(0.1)
        if counters.open < args.users:
            print(f"only {counters.open:,} of {args.users:,} connections opened in {args.timeout:g} s", file=sys.stderr)
            runner.quit()
            return 1
        gevent.sleep(1.0)
        held = peak = process.memory_info().rss
        started = time.monotonic()
        counted_gone = None
        runner.start(args.to, spawn_rate=1_000_000)
        deadline = started + args.timeout
        while counters.open > args.to and time.monotonic() < deadline:
            peak = max(peak, process.memory_info().rss)
            if counted_gone is None and runner.user_count == args.to:
                counted_gone = time.monotonic() - started
            gevent.sleep(0.02)
        closed = time.monotonic() - started
        stopped = args.users - args.to
        print(f"{args.users:,} held users, RSS {held / 2**20:.1f} MiB; lowered to {args.to:,}")
        print(f"peak RSS until their closes were done: {peak / 2**20:.1f} MiB (+{(peak - held) / 2**20:.1f} MiB, "
              f"{(peak - held) / stopped:,.0f} bytes per stopped user)")  # fmt: skip
        if counted_gone is None and runner.user_count == args.to:
            counted_gone = closed  # within the last sample
        gone = "not yet" if counted_gone is None else f"after {counted_gone:.2f} s"
        print(f"their closes were counted after {closed:.2f} s; Locust counted them gone {gone}")

        # Then the whole run stops (Locust's Runner.stop: every user at once); meanwhile a probe that wakes
        # every 10 ms sees how long the event loop went without running it.
        longest_gap = [0.0]

        def probe() -> None:
            last = time.perf_counter()
            while True:
                gevent.sleep(0.01)
                now = time.perf_counter()
                longest_gap[0], last = max(longest_gap[0], now - last), now

        prober = gevent.spawn(probe)
        gevent.sleep(0.05)
        longest_gap[0] = 0.0
        started = time.monotonic()
        runner.stop()
        stopped_in = time.monotonic() - started
        prober.kill()
        print(f"then a whole stop of {args.to:,} users: {stopped_in:.2f} s until every close was counted, "
              f"the event loop's longest gap {longest_gap[0] * 1000:.0f} ms (a probe every 10 ms)")  # fmt: skip
        runner.quit()
        return 0
    finally:
        server.terminate()
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    sys.exit(main())
