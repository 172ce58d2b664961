"""
The warnings at the end of a run whose generator measured itself: one line per
generator process whose latency figures include its own delay.

Three signals, from a live snapshot (:meth:`wslocust.reporting.live.Live.snapshot`):

- *saturated*: its CPU stayed at or above 90 % for 5 s in a row
  (:mod:`wslocust.reporting.system`); a run shorter than that has no such streak,
  which is why the two signals below, which need no streak, exist;
- *lagging*: a one-second window had an event-loop lag p99 above
  :data:`~wslocust.run.loop_lag.LAG_WARNING_MS` (a run of one second has one window);
- *late sends*: more than :data:`LATE_SENDS_SHARE` of its messages were periodic sends
  that left more than 2 ms after their tick (:data:`~wslocust.user.ticks.SEND_SLACK`): the
  generator could not keep its own schedule, and those sends are timed from their tick.
"""

from __future__ import annotations

from typing import Any

from wslocust.formatting import format_ms
from wslocust.run.loop_lag import LAG_WARNING_MS

__all__ = ["LATE_SENDS_SHARE", "saturation_warnings"]

LATE_SENDS_SHARE = 0.01
"""The share of a process's messages sent late above which it is warned about (1 %): a stall of
the event loop (a GC pause, a burst of connects) makes a few sends late in any run."""


def saturation_warnings(snapshot: dict[str, Any]) -> list[str]:
    """
    One line per generator process that was saturated, then one per process whose event loop
    lagged, then one per process whose periodic sends fell behind their schedule.
    """
    views = [view for view in snapshot["workers"] if view["system"]]
    saturated = [
        f"{_name(view)} ran at >= 90 % CPU for {view['system']['saturated_seconds']:.0f} s "
        f"(peak {view['system']['peak_cpu']:.0f} %): its latency figures are not trustworthy; run more worker processes"
        for view in views
        if view["system"]["saturated_seconds"] > 0
    ]
    lagged = [
        f"{_name(view)}: its event loop lagged, loop-lag p99 above {LAG_WARNING_MS:g} ms in "
        f"{lag['lagged_windows']:,} one-second window{'s' if lag['lagged_windows'] != 1 else ''} (worst p99 "
        f"{_ms(lag['worst_p99'])}, longest stall {_ms(lag['max'])}): latencies measured then include the "
        "generator's own delay"
        for view in views
        if (lag := view["system"].get("loop_lag")) and lag["lagged_windows"]
    ]
    late = [_late_sends(view) for view in snapshot["workers"] if _fell_behind(view)]
    return saturated + lagged + late


def _fell_behind(view: dict[str, Any]) -> bool:
    totals = view["totals"]
    late, sent = totals.get("sends_late", 0), totals.get("messages_sent", 0)
    return bool(late) and late > LATE_SENDS_SHARE * sent


def _late_sends(view: dict[str, Any]) -> str:
    totals = view["totals"]
    late, sent = totals["sends_late"], totals["messages_sent"]
    return (
        f"{_name(view)}: {late:,} of its {sent:,} messages "
        f"({late / max(sent, 1):.0%}) left more than 2 ms behind their schedule: the generator could not keep up, "
        "and their round trips include the wait (lower the message rate or add worker processes)"
    )


def _name(view: dict[str, Any]) -> str:
    return f"{view['name']} ({view['host']}, pid {view['pid']})"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{format_ms(value)} ms"
