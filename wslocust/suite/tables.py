"""
What ``wslocust suite`` prints: a results table after each scenario, and one summary table at the end.

Plain text of fixed-width columns, readable in a terminal and in a CI log alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from wslocust.formatting import format_count, format_ms
from wslocust.suite.runs import Outcome
from wslocust.suite.scenarios import Scenario

__all__ = ["PASSED", "SKIPPED", "Verdict", "scenario_table", "summary_table"]

PASSED = "pass"
SKIPPED = "skipped"


@dataclass
class Verdict:
    """One scenario's place in the summary."""

    scenario: Scenario
    result: str
    """``pass``, ``FAIL``, ``bad input``, ``timed out``, ``error`` or ``skipped``."""
    time_scale: float
    outcome: Outcome | None = None
    """None when skipped."""
    note: str = ""
    """Why it was skipped, failed, or ran at another time scale than asked."""


def _table(header: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    """Fixed-width columns: those numbered in ``left`` aligned left, the others right."""
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        return "  " + "  ".join(cells).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def _ms(value: float | None) -> str:
    return "-" if value is None else format_ms(value)


def _number(row: dict[str, str], column: str) -> float | None:
    try:
        return float(row[column])
    except (KeyError, ValueError):
        return None


def scenario_table(verdict: Verdict) -> list[str]:
    """The results of one scenario: its requests, its WebSocket figures and its thresholds."""
    outcome = verdict.outcome
    if outcome is None:
        return [f"{verdict.scenario.name}: {verdict.result}: {verdict.note}", ""]
    lines = [f"{verdict.scenario.name}: {verdict.result} in {outcome.seconds:.1f} s" + _note(verdict)]
    if outcome.requests:
        rows = [
            [name, format_count(f.count), format_count(f.failures), _ms(f.p50), _ms(f.p95), _ms(f.p99)]
            for name, f in outcome.requests.items()
        ]
        lines += _table(["request", "count", "fails", "p50 ms", "p95 ms", "p99 ms"], rows)
    websocket = outcome.websocket
    if websocket:
        parts = []
        if (sent := _number(websocket, "messages_sent")) is not None:
            received = _number(websocket, "messages_received") or 0
            parts.append(f"{format_count(sent)} messages sent, {format_count(received)} received")
        if (cpu := _number(websocket, "peak_cpu_percent")) is not None:
            parts.append(f"generator peak CPU {cpu:.0f} %")
        if (lag := _number(websocket, "loop_lag_run_p99_ms")) is not None:
            parts.append(f"event-loop lag p99 {format_ms(lag)} ms")
        if websocket.get("saturated", "").lower() == "true" or (lag or 0) > _lag_warning_ms():
            parts.append("the generator lagged: the latencies include its own delay")
        if parts:
            lines.append("  WebSocket: " + "; ".join(parts))
    if outcome.recovery:
        lines.append(f"  error recovery: {outcome.recovery}")
    if outcome.thresholds:
        rows = [[text, value, PASSED if ok else "FAIL"] for text, value, ok in outcome.thresholds]
        lines += _table(["threshold", "value", "result"], rows, left=(0, 2))
    elif verdict.result != PASSED:
        lines += [f"  | {line}" for line in outcome.last_lines]
    return [*lines, ""]


def _lag_warning_ms() -> float:
    from wslocust.run.loop_lag import LAG_WARNING_MS  # imports gevent: only once a run has ended

    return float(LAG_WARNING_MS)


def _note(verdict: Verdict) -> str:
    return f" ({verdict.note})" if verdict.note else ""


def summary_table(verdicts: list[Verdict], target: str, time_scale: float, exit_code: int) -> list[str]:
    """One row per scenario, then the counts and the exit code."""
    rows = []
    for verdict in verdicts:
        outcome = verdict.outcome
        if outcome is None:
            rows.append([verdict.scenario.name, verdict.result, "-", "-", "-", "-", "-", verdict.note])
            continue
        requests = outcome.requests
        connects = sum(requests[name].count for name in ("connect", "reconnect") if name in requests)
        echo = requests.get("echo")
        passed = sum(ok for _, _, ok in outcome.thresholds)
        rows.append(
            [
                verdict.scenario.name,
                verdict.result,
                f"{outcome.seconds:.1f} s",
                format_count(connects),
                format_count(sum(f.failures for f in requests.values())),
                "-" if echo is None or echo.p95 is None else f"{format_ms(echo.p95)} ms",
                f"{passed} of {len(outcome.thresholds)}" if outcome.thresholds else "-",
                verdict.note,
            ]
        )
    header = ["scenario", "result", "time", "connects", "fails", "echo p95", "thresholds", "note"]
    counts = {result: sum(v.result == result for v in verdicts) for result in (PASSED, SKIPPED)}
    failed = len(verdicts) - counts[PASSED] - counts[SKIPPED]
    return [
        f"Suite summary: {target}, time scale {time_scale:g}",
        *_table(header, rows, left=(0, 1, 7)),
        f"  {counts[PASSED]} passed, {failed} failed, {counts[SKIPPED]} skipped: exit code {exit_code}",
    ]
