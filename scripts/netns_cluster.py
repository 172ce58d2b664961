"""
Several hosts on one machine: run the Kubernetes manifests' commands in network namespaces.

Each simulated host is a Linux network namespace on a bridge, with an address
in 198.18.0.0/24 and no route out (tests/netns.py); the manifests' Service
names resolve to those hosts. Each pod is started the way Kubernetes starts
its container from the image of the repository's Dockerfile (tests/k8s_pods.py).
The demonstration itself is tests/k8s_demo.py, which tests/test_k8s.py runs too.

Run as root, from the repository with its virtual environment:

    .venv/bin/python scripts/netns_cluster.py                 # 2 workers, kill one, one joins
    .venv/bin/python scripts/netns_cluster.py --workers 3 --users 300 --run-time 60

It shows discovery, the distribution of connections across workers (as the
server's kernel sees them), the master's totals against the server's
counters, and a worker killed with SIGKILL while the run goes on. Everything
it creates is removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The simulated hosts live with the tests that use them (tests/), and import benchmarks.processes.
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT)]

from k8s_demo import run_demo
from netns import namespaces_available, remove_stale

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="workers at start (default: the manifest's replicas)")
    parser.add_argument("--users", type=int, default=40, help="connections (default: %(default)s)")
    parser.add_argument("--run-time", type=float, default=40.0, help="seconds (default: %(default)s)")
    parser.add_argument("--message-interval", type=float, default=200.0, help="ms (default: %(default)s)")
    parser.add_argument("--no-kill", action="store_true", help="do not kill a worker")
    parser.add_argument("--no-join", action="store_true", help="do not add a worker during the run")
    parser.add_argument(
        "--remove-stale", action="store_true", help="only delete the namespaces of earlier runs that died, and exit"
    )
    args = parser.parse_args(argv)
    if args.remove_stale:
        remove_stale()
        return 0
    reason = namespaces_available()
    if reason:
        print(f"netns_cluster: cannot build simulated hosts here: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    result = run_demo(
        workers=args.workers,
        users=args.users,
        run_time=args.run_time,
        message_interval_ms=args.message_interval,
        kill=not args.no_kill,
        join=not args.no_join,
        log=lambda line: print(f"[{time.monotonic() - started:6.1f} s] {line}", flush=True),
    )
    connect = result.master_stats.get("connect", {})
    echo = result.master_stats.get("echo", {})
    server = result.server
    print()
    print(f"workers:                 {result.workers}")
    print(f"spread at start:         {result.spread_before_kill}")
    if result.killed:
        print(f"after killing {result.killed}:     {result.spread_after_kill}")
    if result.spread_after_join:
        print(f"after a worker joined:   {result.spread_after_join}")
    print(f"master exit code:        {result.master_exit_code}")
    print(
        f"connects (master):       {connect.get('num_requests')}   server accepted: {server.get('connections_accepted')}"
    )
    print(
        f"messages sent (master):  {result.totals.get('messages_sent')}   server received: {server.get('messages_received')}"
    )
    print(f"echoes (master):         {echo.get('num_requests')}   server sent:     {server.get('messages_sent')}")
    print("\n".join(line for line in result.master_log if "wslocust:" in line))
    return 0 if result.master_exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
