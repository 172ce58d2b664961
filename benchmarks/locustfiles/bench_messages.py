"""
Per-message client times for ``latency-error``: which reply, on which connection, took how long.

Benchmark-only instrumentation shared by the benchmark locustfiles; it imports Locust only, never
wslocust. With ``--bench-messages DIR``, a ``request`` listener keeps, for every successful request
named in ``--bench-exact``, ``(client port, its number on that connection from 1, response time
ms)``, and each process writes them to ``DIR/messages-<pid>.json`` when its test stops and again at
quit (master and workers alike), with whatever the ``summaries`` callables add (wslocust's
``sends_late``). The Node.js server numbers the messages of each connection the same way
(``GET /latency/messages``): the benchmark joins both sides per message on (port, number).

The listener does not see the message: the user says which connection a reply came on with
:func:`replied_on` just before the event fires (wslocust users from ``reply_key``, which runs
right before the event, in the same greenlet; the plain users before their ``fire``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locust import events

__all__ = ["replied_on", "summaries"]

_port = 0
_numbers: dict[int, int] = {}
_records: list[tuple[int, int, float]] = []
summaries: list[Callable[[Any], dict[str, Any]]] = []
"""Callables ``(environment) -> dict`` whose items are added to the file (e.g. ``sends_late``)."""


def replied_on(port: int) -> None:
    """The next request event is the reply received on the connection from local ``port``."""
    global _port
    _port = port


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("benchmark messages", "benchmarks/locustfiles/bench_messages.py")
    group.add_argument("--bench-messages", default="", help="directory for each process's per-message times")


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    parsed = environment.parsed_options
    directory = getattr(parsed, "bench_messages", "") if parsed is not None else ""
    if not directory:
        return
    names = {name.strip() for name in (getattr(parsed, "bench_exact", "") or "").split(",") if name.strip()}
    numbers, records = _numbers, _records

    def record(name: str, response_time: float | None, exception: Any = None, **_: Any) -> None:
        if name in names and exception is None and response_time is not None and _port:
            number = numbers.get(_port, 0) + 1
            numbers[_port] = number
            records.append((_port, number, response_time))

    def write(**_: Any) -> None:
        extra: dict[str, Any] = {}
        for summary in summaries:
            extra.update(summary(environment))
        path = Path(directory) / f"messages-{os.getpid()}.json"
        path.write_text(json.dumps({"pid": os.getpid(), **extra, "messages": records}))

    environment.events.request.add_listener(record)
    environment.events.test_stop.add_listener(write)
    environment.events.quit.add_listener(write)
