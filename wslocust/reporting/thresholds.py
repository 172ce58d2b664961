"""
Pass/fail criteria for CI, k6 style: ``--ws-thresholds`` (``WS_THRESHOLDS``).

A comma-separated list of ``METRIC OP VALUE[UNIT]`` with ``OP`` one of
``<``, ``<=``, ``>``, ``>=``::

    --ws-thresholds "echo.p95<100ms, connect.p99<500ms, error_rate<0.1%, cpu_per_1k<5%"

``METRIC`` is either a request name and a statistic, ``NAME.STAT``, over
the whole run of Locust's statistics for that name (any name: ``connect``,
``echo``, ``ping``, your own):

=============== ========================================= ===============
STAT            meaning                                   unit
=============== ========================================= ===============
``p50`` ...     any percentile: ``p95``, ``p99.9``,       ms (or s, us)
                also ``p(95)``
``med``,        median, average, fastest, slowest         ms (or s, us)
``avg``,
``min``,
``max``
``count``       requests                                  number
``fails``       failed requests                           number
``fail_rate``   failed / all                              ``%`` or ratio
``rps``         requests per second over the run          number
=============== ========================================= ===============

or one of the run-wide metrics of :data:`RUN_METRICS` (``error_rate``,
``cpu_per_1k``, ``mem_per_10k``, ``msg_rate``, ``send_rate``, ``cpu_max``,
``peak_open``, ``recovery_time``). The generator figures are taken at steady state: while at
least 90 % of the peak number of connections were open.

``suite`` stands for the original suite's performance targets
(:data:`SUITE`) and can be combined with more expressions.

Thresholds are evaluated at the end of the run; a pass/fail table is printed
and, if any failed, the process exits with :data:`EXIT_CODE` (3). When every
threshold passes, the exit code is 0 even if some requests failed: the
thresholds are the verdict (an ``error_rate`` threshold says how many are
acceptable). With ``--ws-thresholds-abort``, they are also checked every
few seconds once all users are running, and the first breach stops the run.
A threshold without data (no such request, no connection ever open) fails.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wslocust.exceptions import ConfigurationError
from wslocust.formatting import format_bytes, format_count, format_ms
from wslocust.run.state import run_state

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = [
    "EXIT_CODE",
    "RUN_METRICS",
    "SUITE",
    "Result",
    "Threshold",
    "current",
    "evaluate",
    "format_table",
    "format_value",
    "parse_thresholds",
]

EXIT_CODE = 3
"""Exit code of a run in which a threshold failed (1 stays Locust's "some requests failed")."""

SUITE = "echo.p95<100ms, error_rate<0.1%, cpu_per_1k<5%, mem_per_10k<2GB"
"""
The original suite's performance targets: P95 latency under 100 ms, error rate
under 0.1 %, under 5 % CPU per 1K connections and under 2 GB of memory for 10K
connections. Its fifth target, 100K+ messages per second, depends on the size
of the run; add ``msg_rate>100000`` for a 10K-connection run at 100 ms.
"""

# Kinds of value: how a bare number and each unit are read, and how a value prints.
TIME, RATIO, PERCENT, BYTES, NUMBER = "time", "ratio", "percent", "bytes", "number"

RUN_METRICS = {
    "error_rate": (RATIO, "failed WebSocket requests / all WebSocket requests"),
    "cpu_per_1k": (PERCENT, "generator CPU % (100 = one core) per 1,000 open connections"),
    "mem_per_10k": (BYTES, "generator memory (RSS) per 10,000 open connections"),
    "msg_rate": (NUMBER, "messages received per second"),
    "send_rate": (NUMBER, "messages sent per second"),
    "cpu_max": (PERCENT, "highest CPU % of any generator process"),
    "peak_open": (NUMBER, "most connections open at once"),
    "recovery_time": (TIME, "an ErrorRecovery run's time from the server's return until every connection was back"),
}
"""Run-wide metrics: name -> (kind, meaning)."""

_REQUEST_STATS = {"med": TIME, "avg": TIME, "min": TIME, "max": TIME, "count": NUMBER, "fails": NUMBER}
_REQUEST_STATS.update({"fail_rate": RATIO, "error_rate": RATIO, "rps": NUMBER})

_UNITS = {
    TIME: {"": 1.0, "ms": 1.0, "s": 1000.0, "us": 0.001, "µs": 0.001},
    RATIO: {"": 1.0, "%": 0.01},
    PERCENT: {"": 1.0, "%": 1.0},
    BYTES: {"": 1.0, "b": 1.0, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30},
    NUMBER: {"": 1.0, "k": 1e3, "/s": 1.0, "k/s": 1e3},
}
_UNIT_HELP = {
    TIME: "ms, s or us",
    RATIO: "% or a fraction",
    PERCENT: "% or a number",
    BYTES: "B, KB, MB, GB, KiB, MiB or GiB",
    NUMBER: "a plain number, or k",
}

_EXPRESSION = re.compile(
    r"^(?P<metric>[^<>=]+?)\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>[A-Za-zµ%/]*)$"
)
_PERCENTILE = re.compile(r"^p\(?([0-9]*\.?[0-9]+)\)?$")
# Greedy on the name, so "a.b.p99.9" is request "a.b", statistic "p99.9".
_REQUEST_METRIC = re.compile(r"^(?P<name>.*)\.(?P<stat>p\(?[0-9]*\.?[0-9]+\)?|[A-Za-z_]+)$")
_OPERATORS = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass(frozen=True)
class Threshold:
    """One parsed expression."""

    text: str
    """As written, whitespace normalised: ``echo.p95 < 100ms``."""
    metric: str
    """``error_rate``, or the statistic of a request: ``p95``, ``avg``, ..."""
    name: str | None
    """The request name for ``NAME.STAT`` metrics, else None."""
    percentile: float | None
    """For ``pNN``: NN / 100."""
    kind: str
    operator: str
    limit: float
    """In the metric's base unit: milliseconds, a fraction, percent, bytes or a count."""


@dataclass(frozen=True)
class Result:
    threshold: Threshold
    value: float | None
    """None: no data."""
    ok: bool

    def describe(self) -> str:
        return "no data" if self.value is None else format_value(self.value, self.threshold.kind)


def parse_thresholds(text: str) -> list[Threshold]:
    """
    Parse a ``--ws-thresholds`` value.

    Raises:
        ConfigurationError: one line that quotes the bad expression and says what is valid.
    """
    thresholds: list[Threshold] = []
    for item in re.split(r"[,;\n]", text):
        item = item.strip()
        if not item:
            continue
        if item.lower() == "suite":
            thresholds.extend(parse_thresholds(SUITE))
            continue
        thresholds.append(_parse_one(item))
    if not thresholds:
        raise ConfigurationError(f"{text!r} has no threshold (expected e.g. 'echo.p95<100ms, error_rate<0.1%')")
    return thresholds


def _parse_one(item: str) -> Threshold:
    match = _EXPRESSION.match(item)
    if match is None:
        raise ConfigurationError(
            f"{item!r} is not METRIC<VALUE (operators <, <=, >, >=; e.g. 'echo.p95<100ms', 'error_rate<0.1%')"
        )
    metric_text, operator, value_text, unit = (
        match["metric"].strip(),
        match["op"],
        match["value"],
        match["unit"],
    )
    name: str | None = None
    percentile: float | None = None
    if metric_text in RUN_METRICS:
        metric, kind = metric_text, RUN_METRICS[metric_text][0]
    elif (request := _REQUEST_METRIC.match(metric_text)) is not None:
        name, metric = request["name"].strip(), request["stat"]
        found = _PERCENTILE.match(metric)
        if found is not None:
            percentile = float(found[1]) / 100
            if not 0 < percentile <= 1:
                raise ConfigurationError(f"{item!r}: percentile {found[1]} is not between 0 and 100")
            kind = TIME
        elif metric in _REQUEST_STATS:
            kind = _REQUEST_STATS[metric]
        else:
            raise ConfigurationError(
                f"{item!r}: unknown statistic {metric!r} of {name!r} "
                f"(use p50, p95, p99.9, med, avg, min, max, count, fails, fail_rate or rps)"
            )
        if not name:
            raise ConfigurationError(f"{item!r}: no request name before '.{metric}'")
    else:
        raise ConfigurationError(
            f"{item!r}: unknown metric {metric_text!r} (use NAME.p95, NAME.avg, ... for a request, "
            f"or one of {', '.join(RUN_METRICS)})"
        )
    scale = _UNITS[kind].get(unit.lower() if unit != "µs" else unit)
    if scale is None:
        raise ConfigurationError(f"{item!r}: unit {unit!r} does not fit {metric_text} (use {_UNIT_HELP[kind]})")
    text = f"{metric_text} {operator} {value_text}{unit}"
    return Threshold(text, metric, name, percentile, kind, operator, float(value_text) * scale)


# Evaluation ----------------------------------------------------------------------


def _entry(environment: Environment, name: str) -> Any:
    entries = environment.stats.entries
    found = entries.get((name, "WS"))
    if found is None:  # another request type with that name
        found = next((entry for (entry_name, _), entry in entries.items() if entry_name == name), None)
    return found


def _request_value(threshold: Threshold, entry: Any) -> float | None:
    if entry is None:
        return None
    timed = entry.num_requests - entry.num_none_requests
    metric = threshold.metric
    if threshold.percentile is not None:
        return entry.get_response_time_percentile(threshold.percentile) if timed > 0 else None
    if metric in ("med", "avg", "min", "max") and timed <= 0:
        return None
    value: float | None = {
        "med": lambda: entry.median_response_time,
        "avg": lambda: entry.avg_response_time,
        "min": lambda: entry.min_response_time,
        "max": lambda: entry.max_response_time,
        "count": lambda: entry.num_requests,
        "fails": lambda: entry.num_failures,
        "fail_rate": lambda: entry.fail_ratio if entry.num_requests else None,
        "error_rate": lambda: entry.fail_ratio if entry.num_requests else None,
        "rps": lambda: entry.total_rps,
    }[metric]()
    return value


def _error_rate(environment: Environment) -> float | None:
    entries = [e for (_, method), e in environment.stats.entries.items() if method == "WS"]
    requests = sum(e.num_requests for e in entries)
    return sum(e.num_failures for e in entries) / requests if requests else None


def evaluate(thresholds: list[Threshold], environment: Environment) -> list[Result]:
    """Evaluate against the run so far: Locust's statistics and the live WebSocket metrics."""
    live = run_state(environment).live
    run = live.run_summary() if live is not None else {}
    results = []
    for threshold in thresholds:
        if threshold.name is not None:
            value = _request_value(threshold, _entry(environment, threshold.name))
        elif threshold.metric == "error_rate":
            value = _error_rate(environment)
        elif threshold.metric == "recovery_time":
            # No data (so a failure) when the connections never came back, or the run had no fault.
            recovery = run_state(environment).recovery
            value = None if recovery is None else recovery.seconds * 1000
        else:
            value = run.get(threshold.metric)
            if threshold.metric == "peak_open":
                value = value or 0
        ok = value is not None and _OPERATORS[threshold.operator](value, threshold.limit)
        results.append(Result(threshold, None if value is None else float(value), ok))
    return results


def format_value(value: float, kind: str) -> str:
    if kind == TIME:
        return f"{format_ms(value)} ms"
    if kind == RATIO:
        return f"{value:.3%}"
    if kind == PERCENT:
        return f"{value:.1f} %"
    if kind == BYTES:
        return format_bytes(value)
    return format_count(value)


def format_table(results: list[Result]) -> list[str]:
    """The pass/fail table printed at the end of a run."""
    width = max([len("Threshold"), *(len(r.threshold.text) for r in results)])
    value_width = max([len("Value"), *(len(r.describe()) for r in results)])
    lines = ["WebSocket thresholds", f"  {'Threshold':<{width}}  {'Value':>{value_width}}  Result"]
    lines.append(f"  {'-' * width}  {'-' * value_width}  ------")
    for result in results:
        verdict = "pass" if result.ok else "FAIL"
        lines.append(f"  {result.threshold.text:<{width}}  {result.describe():>{value_width}}  {verdict}")
    failed = sum(not r.ok for r in results)
    lines.append(
        f"  {failed} of {len(results)} thresholds failed (exit code {EXIT_CODE})"
        if failed
        else f"  all {len(results)} thresholds passed"
    )
    return lines


def current(environment: Environment) -> list[dict[str, Any]]:
    """The run's thresholds evaluated now, as data (for ``/ws/stats`` and the monitor); [] when none."""
    thresholds = run_state(environment).thresholds
    if not thresholds or environment.runner is None:
        return []
    return [
        {"threshold": r.threshold.text, "value": r.value, "display": r.describe(), "ok": r.ok}
        for r in evaluate(thresholds, environment)
    ]
