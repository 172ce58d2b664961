"""
The WebSocket CSV files of ``--csv PREFIX``, beside Locust's (their columns:
:mod:`wslocust.reporting.reports`): ``PREFIX_websocket.csv`` and
``PREFIX_websocket_errors.csv`` rewritten at Locust's CSV interval, and
``PREFIX_websocket_history.csv`` appended to.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import gevent
import locust.stats

from wslocust.formatting import category_label
from wslocust.reporting.reports import ROW_COLUMNS, node_rows

if TYPE_CHECKING:
    from wslocust.reporting.live import Live

__all__ = ["CsvFiles", "final_rows", "write_forever"]


class CsvFiles:
    """
    The three files of one run.

    Args:
        prefix: Locust's ``--csv`` prefix; the history file is created (and
            its header written) at once.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.history: IO[str] = open(f"{prefix}_websocket_history.csv", "w", newline="")  # noqa: SIM115  closed at quit
        self.history_writer = csv.DictWriter(self.history, ("timestamp", *ROW_COLUMNS))
        self.history_writer.writeheader()

    def write(self, snapshot: dict[str, Any], final: bool = False) -> None:
        """
        Rewrite the per-node and error files from ``snapshot``, and append its ``All`` row to the history.

        Args:
            final: ``snapshot`` is the run's last, taken at quit (see :func:`final_rows`).
        """
        rows = final_rows(snapshot) if final else node_rows(snapshot)

        def write_nodes(f: IO[str]) -> None:
            writer = csv.DictWriter(f, ROW_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

        _rewrite(f"{self.prefix}_websocket.csv", write_nodes)
        errors = snapshot["aggregate"]["errors"]

        def write_errors(f: IO[str]) -> None:
            writer = csv.writer(f)
            writer.writerow(("category", "error", "count"))
            for category, count in sorted(errors.items(), key=lambda item: -item[1]):
                writer.writerow((category, category_label(category), count))

        _rewrite(f"{self.prefix}_websocket_errors.csv", write_errors)
        self.history_writer.writerow({"timestamp": int(time.time()), **rows[0]})
        self.history.flush()

    def close(self) -> None:
        """Close the history file (after the last :meth:`write`)."""
        self.history.close()


def final_rows(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """
    :func:`~wslocust.reporting.reports.node_rows` of the snapshot taken at quit: the ``All`` row's status
    is ``stopped`` (a master still says ``stopping`` then), and in a distributed run, whose workers have
    gone by then, its host, CPU and memory are their last ones added up, as their own rows show them.
    """
    rows = node_rows(snapshot)
    everything, workers = rows[0], rows[1:]
    everything["status"] = "stopped"
    if workers:
        everything["host"] = ", ".join(sorted({row["host"] for row in workers if row["host"]}))
        for column in ("cpu_percent", "rss_bytes"):
            values = [row[column] for row in workers if row[column] != ""]
            everything[column] = round(sum(values), 1) if values else ""
    return rows


def _rewrite(path: str, write: Callable[[IO[str]], Any]) -> None:
    with open(path, "w", newline="") as f:
        write(f)


def write_forever(files: CsvFiles, live: Live) -> None:
    """Write the files at Locust's CSV interval; runs in a greenlet until the end of the run."""
    while True:
        gevent.sleep(locust.stats.CSV_STATS_INTERVAL_SEC)
        snapshot = live.snapshot()
        gevent.sleep(0)  # in two slices: the event loop serves the connections in between
        files.write(snapshot)
