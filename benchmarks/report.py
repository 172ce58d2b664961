"""
What a benchmark prints on stdout: a header naming the machine and versions,
a table per workload, notes, and one ``RESULT {json}`` line per result.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "VARIANT_COLUMN",
    "Column",
    "emit_results",
    "header",
    "percentile_columns",
    "print_table",
    "ratio",
    "report",
    "rounded",
]


@dataclass(frozen=True)
class Column:
    title: str
    key: str
    format: str = "int"
    """``int`` (1,234), ``f1`` / ``f2`` / ``f3`` (decimals), ``pct`` (a share as %), ``mb`` (bytes as MB),
    ``str``."""


VARIANT_COLUMN = Column("variant", "variant", "str")
"""The first column of most tables: the variant each row measured."""


def percentile_columns(prefix: str, key: str) -> tuple[Column, ...]:
    """p50, p95 and p99 columns of a figure in ms: titles ``PREFIX p50``..., keys ``KEY_p50_ms``..."""
    title = f"{prefix} " if prefix else ""
    return tuple(Column(f"{title}p{q}", f"{key}_p{q}_ms", "f3") for q in (50, 95, 99))


_FORMATS: dict[str, Callable[[Any], str]] = {
    "int": lambda v: f"{v:,.0f}",
    "f1": lambda v: f"{v:,.1f}",
    "f2": lambda v: f"{v:,.2f}",
    "f3": lambda v: f"{v:,.3f}",
    "pct": lambda v: f"{100 * v:.1f}",
    "mb": lambda v: f"{v / 2**20:,.1f}",
    "str": str,
}


def _cell(row: dict[str, Any], column: Column) -> str:
    value = row.get(column.key)
    if value is None or value == "":
        return "-"
    if isinstance(value, str) and column.format != "str":
        return value
    return _FORMATS[column.format](value)


def print_table(title: str, columns: Sequence[Column], rows: Sequence[dict[str, Any]], notes: str = "") -> None:
    """A fixed-width table; a row with an ``error`` prints it instead of its figures."""
    print(f"\n{title}")
    cells = [[_cell(row, column) for column in columns] for row in rows]
    widths = [max([len(column.title), *(len(line[i]) for line in cells)]) for i, column in enumerate(columns)]
    line = "  ".join(
        column.title.ljust(width) if i == 0 else column.title.rjust(width)
        for i, (column, width) in enumerate(zip(columns, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row, values in zip(rows, cells, strict=True):
        if row.get("error"):
            print(f"{values[0].ljust(widths[0])}  FAILED: {str(row['error']).splitlines()[0]}")
            continue
        print(
            "  ".join(
                value.ljust(width) if i == 0 else value.rjust(width)
                for i, (value, width) in enumerate(zip(values, widths, strict=True))
            )
        )
    for row in rows:
        if row.get("first_error") and not row.get("error"):
            print(f"{row.get('variant')}: first failure: {row['first_error']}")
    if notes:
        print(notes.rstrip())
    sys.stdout.flush()


def emit_results(workload: str, results: Sequence[dict[str, Any]]) -> None:
    for result in results:
        print("RESULT " + json.dumps({"workload": workload, **result}, sort_keys=False))
    sys.stdout.flush()


def report(
    workload: str,
    title: str,
    columns: Sequence[Column],
    results: Sequence[dict[str, Any]],
    notes: str = "",
    rows: Sequence[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """A workload's table (of ``rows``, default ``results``), then one RESULT line per result; returns ``results``."""
    print_table(title, columns, results if rows is None else rows, notes)
    emit_results(workload, results)
    return list(results)


def ratio(numerator: float | None, denominator: float | None, digits: int = 2) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, digits)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def header(pinning_description: str, server_kind: str | None = None) -> str:
    """The machine, the versions and the CPU placement, for the top of a workload's output."""
    # From the metadata: importing locust here would monkey-patch this process.
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    packages = ", ".join(
        f"{name} {installed(name)}" for name in ("locust", "gevent", "websocket-client", "websockets", "wslocust")
    )
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    server = f"; server {server_kind}" if server_kind else ""
    return (
        f"{platform.machine()} {os.cpu_count()} CPUs ({_cpu_model()}), python {platform.python_version()}, "
        f"{packages}{server}\n{pinning_description}; load average {load} at start"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
