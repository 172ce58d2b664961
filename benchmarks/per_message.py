"""
Per-message figures of ``latency-error``, pure functions over the records of both sides:

- :func:`read_client_files`: the client's per-message times, as the benchmark locustfiles wrote
  them (``locustfiles/bench_messages.py``, one file per generator process), and the WebSocket
  counters the wslocust processes added;
- :func:`join_errors`: the client's time minus the server's hold, per message, joined on (client
  port, number of the message on its connection): the error of each measurement;
- :func:`percentiles`: p50/p95/p99 by the rank Locust uses.

(How bunched the sends were is :func:`benchmarks.phase_spread.largest_window_share`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["join_errors", "percentiles", "read_client_files"]


def read_client_files(directory: Path) -> tuple[list[tuple[int, int, float]], dict[str, int]]:
    """
    Every ``messages-<pid>.json`` in ``directory``.

    Returns:
        The records ``(client port, number on its connection, response time ms)`` of every process,
        and the sum of the processes' ``ws_counters`` (empty for the plain users).
    """
    records: list[tuple[int, int, float]] = []
    counters: dict[str, int] = {}
    for path in sorted(directory.glob("messages-*.json")):
        try:
            body = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a process killed while writing: its records are missing, the join says how many
        records.extend((int(port), int(number), float(ms)) for port, number, ms in body.get("messages", ()))
        for name, value in (body.get("ws_counters") or {}).items():
            counters[name] = counters.get(name, 0) + int(value)
    return records, counters


def join_errors(
    client: Iterable[tuple[int, int, float]], server: Iterable[tuple[int, int, float, float]]
) -> tuple[list[float], int]:
    """
    Client response time minus server hold (ms) of each message both sides recorded.

    Args:
        client: ``(port, number, response time ms)``.
        server: ``(port, number, received at ms, held ms)``.

    Returns:
        The errors, and how many client records found no server record (0 expected; the
        server's records of echoes the client never timed, at the end of the run, are not errors).
    """
    held = {(port, number): hold for port, number, _, hold in server}
    errors: list[float] = []
    unmatched = 0
    for port, number, response_time in client:
        hold = held.get((port, number))
        if hold is None:
            unmatched += 1
        else:
            errors.append(response_time - hold)
    return errors, unmatched


def percentiles(values: Sequence[float], quantiles: Sequence[float] = (0.5, 0.95, 0.99)) -> list[float | None]:
    """The ``quantiles`` of ``values`` by Locust's rank, ``sorted[floor(n * q)]``; None when empty."""
    ordered = sorted(values)
    n = len(ordered)
    return [ordered[min(n - 1, int(n * q))] if n else None for q in quantiles]
