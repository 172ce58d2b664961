"""
``wslocust monitor [URL]``: a live full-screen dashboard of a running test.

It polls ``GET /ws/stats`` on the web UI port of a Locust master (or of a
single-process run with the web UI) every second, and shows connections by
state, message throughput, latency percentiles, CPU and memory per worker,
network I/O per host, errors by category, thresholds and the saturation
flag. When the master goes away it keeps the last figures on screen, says
so, and picks up again as soon as a master answers at that URL. Ctrl-C
quits with exit code 0.

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

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from wslocust.formatting import category_label, format_bytes, format_count, format_ms

__all__ = ["DEFAULT_URL", "MONITOR_DESCRIPTION", "Monitor", "MonitorError", "add_arguments", "fetch", "render", "run"]

DEFAULT_URL = "http://127.0.0.1:8089"
BUSY_HOST_CPU_PERCENT = 90.0
"""A host this busy delays every process on it, even a generator whose own CPU is low."""
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


# Rendering -------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else format_ms(value)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _pairs(title: str, rows: list[tuple[str, str]], style: str = "cyan") -> Panel:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, value in rows:
        table.add_row(label, value)
    return Panel(table, title=title, border_style=style, expand=True)


def _header(snapshot: dict[str, Any] | None, url: str, error: str | None, now: float) -> RenderableType:
    line = Text()
    line.append("wslocust monitor ", style="bold")
    line.append(url, style="dim")
    if snapshot is not None:
        aggregate = snapshot["aggregate"]
        state = snapshot["state"].upper()
        line.append("   ")
        line.append(state, style="bold green" if state in ("RUNNING", "SPAWNING") else "bold yellow")
        line.append(f"   target {snapshot['host'] or '-'}")
        line.append(f"   users {aggregate['users']:,}")
        if snapshot["mode"] == "master":
            line.append(f"   workers {aggregate['workers']}")
        line.append(f"   run time {_duration(snapshot['run_time'])}")
        age = now - snapshot["time"]
        line.append(f"   updated {time.strftime('%H:%M:%S', time.localtime(snapshot['time']))}", style="dim")
        if age > 5:
            line.append(f" ({age:.0f} s ago)", style="yellow")
    parts: list[RenderableType] = [line]
    if error is not None:
        parts.append(Text(f"master unreachable: {error}; retrying", style="bold red"))
    for host in snapshot["hosts"] if snapshot is not None else []:
        if host["cpu"] >= BUSY_HOST_CPU_PERCENT:
            parts.append(
                Text(
                    f"host {host['host']} CPU at {host['cpu']:.0f} % of all cores: every process on it waits for "
                    "CPU, latency figures are suspect",
                    style="bold yellow",
                )
            )
    if snapshot is not None and snapshot["aggregate"]["saturated"]:
        names = ", ".join(snapshot["aggregate"]["saturated_workers"])
        parts.append(
            Text(
                f"SATURATED: {names} at >= 90 % CPU: latency figures are not trustworthy, add workers",
                style="bold white on red",
            )
        )
    return Group(*parts)


def _connections(aggregate: dict[str, Any]) -> Panel:
    c, t = aggregate["connections"], aggregate["totals"]
    return _pairs(
        "Connections",
        [
            ("open", f"{c['open']:,}"),
            ("connecting", f"{c['connecting']:,}"),
            ("reconnecting", f"{c['reconnecting']:,}"),
            ("failed (gave up)", f"{c['failed']:,}"),
            ("closed", f"{c['closed']:,}"),
            ("peak open", f"{aggregate['peak_open']:,}"),
            ("attempts", f"{t['connect_attempts']:,}"),
            ("succeeded / failed", f"{t['connects_succeeded']:,} / {t['connects_failed']:,}"),
            ("reconnects / lost", f"{t['reconnects']:,} / {t['disconnects']:,}"),
        ],
    )


def _messages(aggregate: dict[str, Any]) -> Panel:
    r, t = aggregate["rates"], aggregate["totals"]
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right", header_style="dim")
    table.add_column(justify="right")
    table.add_row("", Text("per second", style="dim"), Text("total", style="dim"))
    table.add_row("sent", format_count(r["messages_sent"]), f"{t['messages_sent']:,}")
    table.add_row("received", format_count(r["messages_received"]), f"{t['messages_received']:,}")
    table.add_row("pushed by server", format_count(r["unsolicited_received"]), f"{t['unsolicited_received']:,}")
    table.add_row("payload out", format_bytes(r["bytes_sent"]), format_bytes(t["bytes_sent"]))
    table.add_row("payload in", format_bytes(r["bytes_received"]), format_bytes(t["bytes_received"]))
    table.add_row("replies timed out", "", f"{t['replies_timed_out']:,}")
    table.add_row("replies lost", "", f"{t['replies_lost']:,}")
    table.add_row("late / dup / reordered", "",
                  f"{t['replies_late']:,} / {t['replies_duplicated']:,} / {t['replies_out_of_order']:,}")  # fmt: skip
    return Panel(table, title="Messages", border_style="cyan", expand=True)


def _errors(aggregate: dict[str, Any]) -> Panel:
    errors = aggregate["errors"]
    rows = [
        ("per second", format_count(aggregate["rates"]["errors"])),
        ("total", f"{aggregate['totals']['errors']:,}"),
        ("error rate", f"{aggregate['error_rate']:.3%}"),
    ]
    for category, count in sorted(errors.items(), key=lambda item: -item[1])[:5]:
        rows.append((category_label(category), f"{count:,}"))
    return _pairs("Errors", rows, style="red" if errors else "cyan")


def _latency_cells(entry: dict[str, Any]) -> list[str]:
    return [_ms(entry[key]) for key in ("p50", "p95", "p99", "avg", "max")]


def _latency(aggregate: dict[str, Any]) -> Panel:
    table = Table(expand=True, box=None, header_style="bold")
    for title in ("request", "requests", "fails", "req/s", "p50", "p95", "p99", "avg", "max"):
        table.add_column(title, justify="left" if title == "request" else "right")
    rows = sorted(aggregate["latency"].items())
    round_trip = aggregate.get("round_trip")
    for name, entry in rows:
        failures = Text(f"{entry['failures']:,}", style="red" if entry["failures"] else "")
        table.add_row(name, f"{entry['requests']:,}", failures, format_count(entry["rps"] or 0), *_latency_cells(entry))
    if round_trip and len([name for name in aggregate["latency"] if name not in _NOT_ROUND_TRIPS]) > 1:
        total = Text("all round trips", style="bold")
        table.add_row(total, f"{round_trip['requests']:,}", "", "", *_latency_cells(round_trip))
    if not rows:
        table.add_row(Text("no requests yet", style="dim"))
    return Panel(table, title="Latency, ms (percentiles over the last ~10 s)", border_style="cyan")


_NOT_ROUND_TRIPS = {"connect", "reconnect", "disconnect", "send", "ping"}


def _workers(snapshot: dict[str, Any]) -> Panel:
    table = Table(expand=True, box=None, header_style="bold")
    columns = ("worker", "host", "pid", "state", "users", "open", "sent/s", "recv/s", "errors",
               "rt p50", "rt p95", "rt p99", "CPU %", "CPU %/1K", "memory", "")  # fmt: skip
    for title in columns:
        table.add_column(title, justify="left" if title in ("worker", "host", "state", "") else "right")
    for view in snapshot["workers"]:
        system = view["system"] or {}
        round_trip = view["round_trip"] or {}
        cpu = system.get("cpu")
        flag = Text("SATURATED", style="bold white on red") if view["saturated"] else Text("")
        gone = view["state"] in ("gone", "missing")
        table.add_row(
            view["name"],
            view["host"],
            str(view["pid"] or ""),
            Text(view["state"], style="yellow" if gone else ""),
            f"{view['users']:,}",
            f"{view['connections']['open']:,}",
            format_count(view["rates"]["messages_sent"]),
            format_count(view["rates"]["messages_received"]),
            f"{view['totals']['errors']:,}",
            _ms(round_trip.get("p50")),
            _ms(round_trip.get("p95")),
            _ms(round_trip.get("p99")),
            Text("-" if cpu is None else f"{cpu:.0f}", style="red" if cpu is not None and cpu >= 90 else ""),
            "-" if system.get("cpu_per_1k") is None else f"{system['cpu_per_1k']:.1f}",
            format_bytes(system.get("rss")),
            flag,
            style="dim" if gone else "",
        )
    title = "Workers" if snapshot["mode"] == "master" else "Generator process"
    return Panel(table, title=f"{title} (round trips: last report, ~3 s)", border_style="cyan")


def _hosts(snapshot: dict[str, Any]) -> Panel:
    table = Table(expand=True, box=None, header_style="bold")
    for title in ("host", "CPU % (all cores)", "cores", "memory %", "net in", "net out", "generator processes"):
        table.add_column(title, justify="left" if title == "host" else "right")
    for host in snapshot["hosts"]:
        table.add_row(
            host["host"],
            Text(f"{host['cpu']:.0f}", style="bold yellow" if host["cpu"] >= BUSY_HOST_CPU_PERCENT else ""),
            str(host["cores"]),
            f"{host['memory']:.0f}",
            format_bytes(host["net_in"], per_second=True),
            format_bytes(host["net_out"], per_second=True),
            str(host["processes"]),
        )
    return Panel(table, title="Hosts (network: all interfaces, loopback included)", border_style="cyan")


def _thresholds(results: list[dict[str, Any]]) -> Panel:
    table = Table(expand=True, box=None, header_style="bold")
    for title in ("threshold", "now", "result"):
        table.add_column(title, justify="left" if title == "threshold" else "right")
    for result in results:
        verdict = Text("pass", style="green") if result["ok"] else Text("FAIL", style="bold red")
        table.add_row(result["threshold"], result["display"], verdict)
    return Panel(table, title="Thresholds (so far)", border_style="cyan")


def render(
    snapshot: dict[str, Any] | None, url: str, error: str | None = None, now: float | None = None
) -> RenderableType:
    """The dashboard for one snapshot (None: nothing received yet) and the last fetch error, if any."""
    now = time.time() if now is None else now
    parts: list[RenderableType] = [_header(snapshot, url, error, now)]
    if snapshot is None:
        parts.append(Text(f"waiting for a wslocust master at {url} ...", style="yellow"))
        return Group(*parts)
    aggregate = snapshot["aggregate"]
    top = Table.grid(expand=True, padding=(0, 1))
    for _ in range(3):
        top.add_column(ratio=1)
    top.add_row(_connections(aggregate), _messages(aggregate), _errors(aggregate))
    parts += [top, _latency(aggregate), _workers(snapshot), _hosts(snapshot)]
    if snapshot.get("thresholds"):
        parts.append(_thresholds(snapshot["thresholds"]))
    parts.append(Text("Ctrl-C to quit", style="dim"))
    return Group(*parts)


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

    def render(self) -> RenderableType:
        return render(self.snapshot, self.url, self.error)


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
            live.update(monitor.render(), refresh=True)
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
