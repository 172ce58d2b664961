"""
The top functions of cProfile files (``latency-error --profile DIR``, CPU-time clock), per request,
summed over the generator's processes.

Every greenlet runs in the profiled thread: a function that switches to the event loop (a sleep, a
blocking ``recv()``, a wait for a reply) is charged, as its own time, the CPU of everything that ran
until it resumed. Those are listed apart ("switching"): their figure is other code's time.
"""

from __future__ import annotations

import pstats
import re
from collections.abc import Sequence
from pathlib import Path

__all__ = ["SWITCHING", "cprofile_summary"]

SWITCHING = re.compile(
    r"gevent/(hub|_socketcommon|_socket3|thread|event|greenlet|pool|lock|_hub_primitives)\.py"
    r"|locust/user/(users|task)\.py|'switch' of|_sleep_until_done|wslocust/user/keeper\.py|session \("
)
"""Functions (``file:line(name)`` as pstats names them) that switch greenlets."""


def cprofile_summary(files: Sequence[Path], requests: int, limit: int = 15) -> str:
    """
    The ``limit`` functions with the most own CPU time that do not switch greenlets: microseconds
    per request (own, and with what they called), calls per request, share of all profiled CPU;
    then the switching functions' total.
    """
    stats = pstats.Stats(*(str(path) for path in files))
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(own for _, _, own, _, _ in entries.values()) or 1e-9
    per = max(1, requests)
    rows = []
    switching = 0.0
    for (filename, line, function), (_, calls, own, cumulative, _) in entries.items():
        name = f"{function} ({_short(filename)}:{line})"
        if SWITCHING.search(f"{filename}:{line}({function})") or SWITCHING.search(name):
            switching += own
            continue
        rows.append((own, cumulative, calls, name))
    rows.sort(reverse=True)
    lines = [
        (
            f"  profiled CPU {1e6 * total / per:.0f} us per request (cProfile's own cost included); "
            f"{100 * switching / total:.0f} % charged to functions that switch greenlets (other code's time)"
        ),
        f"  {'own us':>7} {'cum us':>7} {'calls':>6} {'own %':>6}  function (per request)",
    ]
    for own, cumulative, calls, name in rows[:limit]:
        lines.append(
            f"  {1e6 * own / per:7.1f} {1e6 * cumulative / per:7.1f} {calls / per:6.2f} {100 * own / total:6.1f}  {name}"
        )
    areas: dict[str, float] = {}
    for (filename, line, function), (_, _, own, _, _) in entries.items():
        switches = SWITCHING.search(f"{filename}:{line}({function})") or SWITCHING.search(function)
        area = "switching (other code's time)" if switches else _area(filename, function)
        areas[area] = areas.get(area, 0.0) + own
    ranked = sorted(areas.items(), key=lambda item: item[1], reverse=True)
    lines.append(
        "  own CPU by area, us per request: " + ", ".join(f"{area} {1e6 * own / per:.0f}" for area, own in ranked)
    )
    return "\n".join(lines)


def _area(filename: str, function: str) -> str:
    """Where a function belongs: a wslocust or Locust subpackage, gevent, websocket-client, a system call..."""
    if filename == "~":
        if re.search(r"'(send|recv|sendall|recv_into|recvmsg)' of '_socket", function):
            return "socket calls"
        return "C builtins"
    short = _short(filename)
    match = re.match(
        r"(wslocust/\w+|locust/(?:stats|runners|event|user)|locust|gevent|websocket|psutil|greenlet)", short
    )
    if match:
        return match.group(1)
    if short.startswith("benchmarks/"):
        return "benchmarks"
    return "standard library" if "/" not in short or short.startswith("<frozen") else "other Python"


def _short(filename: str) -> str:
    return re.sub(r"^/work/main/", "", re.sub(r"^.*/(?:site-packages|python3\.\d+)/", "", filename))
