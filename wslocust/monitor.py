"""
``wslocust monitor [URL]``: a live full-screen dashboard of a running test.

It polls ``GET /ws/stats`` on the web UI port of a Locust master (or of a
single-process run with the web UI) every second, and shows connections by
state, message throughput, latency percentiles, CPU and memory per worker,
network I/O per host, errors by category, thresholds, and the saturated and
lagging workers, laid out for the terminal's size (down to 80x24: see
:mod:`wslocust.monitor_screen`). When the master goes away it keeps the last
figures on screen, says so, and picks up again as soon as a master answers at
that URL. Ctrl-C quits with exit code 0.

``--once`` prints one snapshot as text (``--json``: as JSON) and exits, 1 if
nothing answered: for scripts.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, RenderableType

from wslocust.monitor_screen import render

__all__ = ["DEFAULT_URL", "MONITOR_DESCRIPTION", "Monitor", "MonitorError", "add_arguments", "fetch", "render", "run"]

DEFAULT_URL = "http://127.0.0.1:8089"
MONITOR_DESCRIPTION = "Live terminal dashboard of a running wslocust test (polls the master's /ws/stats)."


class MonitorError(Exception):
    """The master could not be reached or did not answer with wslocust figures; one line."""


def fetch(url: str, timeout: float = 5.0) -> dict[str, Any]:
    """
    ``GET URL/ws/stats``, decoded.

    Raises:
        MonitorError: nothing answered, or not with wslocust's JSON.
    """
    endpoint = url.rstrip("/") + "/ws/stats"
    try:
        with urllib.request.urlopen(endpoint, timeout=timeout) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        raise MonitorError(f"{endpoint} answered HTTP {exc.code} (is wslocust imported by the locustfile?)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MonitorError(f"no answer from {endpoint} ({reason})") from None
    except ValueError:
        raise MonitorError(f"{endpoint} did not answer with JSON") from None
    if not isinstance(data, dict) or "aggregate" not in data:
        raise MonitorError(f"{endpoint} did not answer with wslocust figures")
    return data


# Running ---------------------------------------------------------------------------


class Monitor:
    """Polls one master and keeps its last snapshot and error."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.snapshot: dict[str, Any] | None = None
        self.error: str | None = None

    def poll(self) -> bool:
        """Fetch once; True if it worked. On failure the last snapshot stays, with the error beside it."""
        try:
            self.snapshot = fetch(self.url, self.timeout)
        except MonitorError as exc:
            self.error = str(exc)
            return False
        self.error = None
        return True

    def render(self, height: int | None = None) -> RenderableType:
        """The dashboard of the last snapshot, fitting ``height`` lines if given."""
        return render(self.snapshot, self.url, self.error, height=height)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"the web UI of the Locust master (or single process), default {DEFAULT_URL}",
    )
    parser.add_argument(
        "--interval", type=_positive("--interval"), default=1.0, metavar="SECONDS", help="refresh period (default 1)"
    )
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit (1 if nothing answers)")
    parser.add_argument("--json", action="store_true", help="with --once: print the raw /ws/stats JSON")
    parser.add_argument(
        "--timeout", type=_positive("--timeout"), default=5.0, metavar="SECONDS", help="HTTP timeout (default 5)"
    )


def _positive(option: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = 0.0
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{option}: {text!r} is not a number of seconds > 0")
        return value

    return parse


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    """Run the monitor; return the exit code."""
    console = console or Console()
    monitor = Monitor(args.url, args.timeout)
    if args.once:
        if not monitor.poll():
            console.file.write(f"wslocust monitor: {monitor.error}\n")
            return 1
        if args.json:
            console.file.write(json.dumps(monitor.snapshot, indent=2) + "\n")
        else:
            console.print(monitor.render())
        return 0
    try:
        _run_live(monitor, args.interval, console)
    except KeyboardInterrupt:
        pass
    return 0


def _run_live(monitor: Monitor, interval: float, console: Console) -> None:
    from rich.live import Live

    with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False) as live:
        while True:
            started = time.monotonic()
            monitor.poll()
            live.update(monitor.render(height=console.size.height), refresh=True)  # read each time: resizes
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
