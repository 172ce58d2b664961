"""
``hold-50k``: hold 50,000 connections from this machine (``benchmarks/hold_50k.py``).

A headless Locust master with forked workers and rotated source addresses
against several ``--reuse-port`` reference servers; peak RSS, connect rate,
CPU during the ramp and the hold, failures checked against the servers'
counters. Its options are passed through unchanged (``--connections``,
``--workers``, ``--servers``, ``--source-addresses``, ``--spawn-rate``,
``--hold``, ``--message-interval``, ``--locust-log``); the figures it prints
are followed by one ``RESULT {json}`` line. About 5 minutes with the defaults;
not part of ``all`` unless ``--include-50k``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .. import hold_50k as script
from ..measure import Context
from ..report import emit_results, header

__all__ = ["add_arguments", "run"]

NAME = "hold-50k"
VARIANTS = ("wslocust-user",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connections", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4, help="Locust worker processes (default: 4)")
    parser.add_argument("--servers", type=int, default=4, help="reference server processes (default: 4)")
    parser.add_argument("--source-addresses", default="127.0.0.2-127.0.0.5")
    parser.add_argument("--spawn-rate", type=float, default=250.0, help="connections per second (default: 250)")
    parser.add_argument("--hold", type=float, default=120.0, help="seconds to hold them all (default: 120)")
    parser.add_argument("--message-interval", type=float, default=30_000.0, help="ms (default: 30000)")
    parser.add_argument("--locust-log", help="write Locust's log (stderr) to this file")


def run(args: argparse.Namespace, context: Context) -> list[dict[str, Any]]:
    print(header("not pinned: master, workers and servers share every CPU"))
    figures_file = context.workdir / "hold_50k.json"
    argv = [
        "--connections", str(args.connections), "--workers", str(args.workers), "--servers", str(args.servers),
        "--source-addresses", args.source_addresses, "--spawn-rate", f"{args.spawn_rate:g}",
        "--hold", f"{args.hold:g}", "--message-interval", f"{args.message_interval:g}",
        "--json-out", str(figures_file),
    ]  # fmt: skip
    if args.locust_log:
        argv += ["--locust-log", args.locust_log]
    exit_code = script.main(argv)
    if not figures_file.exists():
        result: dict[str, Any] = {"variant": "wslocust-user", "error": f"hold_50k.py exited with {exit_code}"}
    else:
        result = {"variant": "wslocust-user", **json.loads(figures_file.read_text()), "exit_code": exit_code}
        if exit_code:
            result["error"] = f"hold_50k.py exited with {exit_code}: not every connection held, or failures"
    emit_results(NAME, [result])
    return [result]
