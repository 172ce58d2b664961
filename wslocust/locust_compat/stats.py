"""Locust's statistics: response times below a millisecond, and what the console, ``--json`` and ``--csv`` hold."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import locust.stats
from locust.stats import StatsCSV, StatsCSVFileWriter, StatsEntry

__all__ = [
    "extend_print_stats",
    "keep_stats_on_json_output",
    "locust_bucket_response_time",
    "locust_to_dict",
    "patch_response_times",
    "restore_response_times",
    "write_csv_files_at_close",
]


# Response times below a millisecond (wslocust.reporting.bucketing) ------------------------

_REPLACED: tuple[tuple[Any, str], ...] = ((locust.stats, "bucket_response_time"), (StatsEntry, "to_string"))
_REPLACED += ((StatsEntry, "percentile"), (StatsEntry, "to_dict"), (StatsCSV, "_percentile_fields"))
_LOCUST_ORIGINALS = {(owner, name): getattr(owner, name) for owner, name in _REPLACED if hasattr(owner, name)}
_LOCUST_BUCKET = _LOCUST_ORIGINALS.get((locust.stats, "bucket_response_time"))  # None before Locust 2.43.4


def locust_bucket_response_time(response_time: float) -> int | float:
    """Locust's own ``locust.stats.bucket_response_time``, whatever is installed in its place."""
    if _LOCUST_BUCKET is None:
        raise RuntimeError("locust.stats.bucket_response_time is missing: wslocust needs Locust 2.43.4 or newer")
    return _LOCUST_BUCKET(response_time)  # type: ignore[no-any-return]


def patch_response_times(
    bucket: Callable[[float], int | float],
    *,
    to_string: Callable[..., str],
    percentile: Callable[..., str],
    to_dict: Callable[..., dict[str, Any]],
    percentile_fields: Callable[..., list[Any]],
) -> None:
    """
    Keep sub-millisecond response times in Locust's histograms, and print them with their decimals.

    Installs ``bucket`` as ``locust.stats.bucket_response_time`` (replaceable by design), and in place of
    what prints response times as integers, copies with Locust's layout: ``StatsEntry.to_string`` and
    ``.percentile`` (console tables, ``%7d``/``%6d``), ``.to_dict`` (web UI min and max, rounded; the copy
    may call :func:`locust_to_dict`) and ``StatsCSV._percentile_fields`` (``int()``); their signatures are
    Locust's. Idempotent. Checked: 2.43.4, 2.46.6, 2.47.0 (2.40.0 has no ``bucket_response_time``).
    """
    locust_bucket_response_time(0)  # raises on a Locust without the function
    locust.stats.bucket_response_time = bucket  # type: ignore[assignment]
    StatsEntry.to_string = to_string  # type: ignore[method-assign]
    StatsEntry.percentile = percentile  # type: ignore[method-assign]
    StatsEntry.to_dict = to_dict  # type: ignore[method-assign]
    StatsCSV._percentile_fields = percentile_fields  # type: ignore[method-assign]


def locust_to_dict(entry: StatsEntry, escape_string_values: bool = False) -> dict[str, Any]:
    """Locust's own ``StatsEntry.to_dict`` (the web UI's row), whatever is installed in its place."""
    return _LOCUST_ORIGINALS[StatsEntry, "to_dict"](entry, escape_string_values)  # type: ignore[no-any-return]


def restore_response_times() -> None:
    """Put back what :func:`patch_response_times` replaced (for tests)."""
    for (owner, name), original in _LOCUST_ORIGINALS.items():
        setattr(owner, name, original)


# Console and JSON output (wslocust.reporting.reports) ----------------------------------------

_LOCUST_PRINT_STATS = locust.stats.print_stats


def extend_print_stats(after: Callable[[Any, bool], None]) -> None:
    """
    Print more under each of Locust's console statistics tables: Locust's, then ``after(stats, current)``.

    Replaces ``locust.stats.print_stats``, called through the module by ``stats_printer`` and ``main``;
    calling it again replaces ``after``. Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """

    def print_stats(stats: Any, current: bool = True) -> None:
        _LOCUST_PRINT_STATS(stats, current)
        after(stats, current)

    locust.stats.print_stats = print_stats


def keep_stats_on_json_output() -> None:
    """
    Make ``--json`` and ``--json-file`` leave the statistics as they are.

    Locust's ``print_stats_json``/``save_stats_json`` use ``serialize_stats()``, which *resets* each entry:
    the final tables, results and thresholds saw nothing. Replaced by the same JSON from ``StatsEntry.serialize()``.
    Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    locust.stats.print_stats_json = _print_stats_json
    locust.stats.save_stats_json = _save_stats_json


def _serialized(stats: Any) -> list[dict[str, Any]]:
    return [entry.serialize() for entry in stats.entries.values() if entry.num_requests or entry.num_failures]


def _print_stats_json(stats: Any) -> None:
    print(json.dumps(_serialized(stats), indent=4))


def _save_stats_json(stats: Any, filename: str) -> None:
    with open(f"{filename}.json", "w") as file:
        json.dump(_serialized(stats), file, indent=4)


# --csv (Locust's own files; wslocust.reporting.csv_files writes the WebSocket ones) -----------

_LOCUST_CLOSE_FILES = StatsCSVFileWriter.close_files


def write_csv_files_at_close() -> None:
    """
    Make Locust's ``--csv`` files end with the final figures: written once more when Locust closes them.

    ``StatsCSVFileWriter.stats_writer`` rewrites ``_stats.csv``, ``_failures.csv`` and ``_exceptions.csv``
    and appends to ``_stats_history.csv`` every ``CSV_STATS_INTERVAL_SEC`` (1 s); ``main``'s shutdown
    closes them (``close_files``, after the ``quit`` event: the users have stopped, a master has its
    workers' last reports) without writing again. Everything recorded in the last second and while the
    users stopped was missing (a 20-user 8 s echo run: 140 echoes in ``_stats.csv``, 150 in ``--json``
    and at the server; 5 failed connects of 6). ``close_files`` now first rewrites the three files from
    the start (header included: ``stats_writer`` keeps the requests file's data offset to itself) and
    appends a last history row. Idempotent. Checked: 2.46.6, 2.47.0.
    """
    StatsCSVFileWriter.close_files = _close_files_after_writing  # type: ignore[method-assign,assignment]


def _close_files_after_writing(writer: StatsCSVFileWriter) -> None:
    if not writer.requests_csv_filehandle.closed:
        for handle, csv_writer, write in (
            (writer.requests_csv_filehandle, writer.requests_csv_writer, writer.requests_csv),
            (writer.failures_csv_filehandle, writer.failures_csv_writer, writer.failures_csv),
            (writer.exceptions_csv_filehandle, writer.exceptions_csv_writer, writer.exceptions_csv),
        ):
            handle.seek(0)
            write(csv_writer)
            handle.truncate()
        history = writer.stats_history_csv_filehandle
        if history.tell() == 0:  # stats_writer never ran
            writer.stats_history_csv_writer.writerow(writer.stats_history_csv_columns)
        writer._stats_history_data_rows(writer.stats_history_csv_writer, time.time())
    _LOCUST_CLOSE_FILES(writer)
