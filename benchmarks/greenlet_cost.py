"""
What one blocked gevent greenlet costs in memory: what a held connection costs beyond its objects when a
greenlet holds it.

Locust runs each user in a greenlet of its own, and a user with tasks (or hooks that may block) holding its
connection sits in it, blocked; a user without tasks is held in the event loop and has none. This spawns ``--count`` greenlets that each call themselves ``--depth`` times (Python frames), then wait
on one event, and prints the process's RSS growth per greenlet for each depth. The figure is the
pages a suspended greenlet keeps: its saved slice of the C stack and its own Python frame stack.

Run: ``python benchmarks/greenlet_cost.py [--count 10000] [--depths 0,10,30]``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="greenlets per depth (default: 10000)")
    parser.add_argument("--depths", default="0,10,30", help="Python call depths, comma-separated (default: 0,10,30)")
    args = parser.parse_args(argv)

    import gevent
    import gevent.event
    import psutil

    process = psutil.Process()
    for depth in (int(text) for text in args.depths.split(",")):
        release = gevent.event.Event()

        def blocked(calls_left: int, release: gevent.event.Event = release) -> None:
            if calls_left:
                blocked(calls_left - 1)
            else:
                release.wait()

        before = process.memory_info().rss
        greenlets = [gevent.spawn(blocked, depth) for _ in range(args.count)]
        gevent.sleep(0.2)  # every greenlet runs until it blocks
        grown = process.memory_info().rss - before
        print(f"depth {depth:3d}: {grown / args.count:,.0f} bytes per blocked greenlet ({args.count:,} greenlets)")
        release.set()
        gevent.joinall(greenlets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
