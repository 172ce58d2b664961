"""
What ``wslocust monitor`` draws from one ``/ws/stats`` snapshot, in two layouts.

The wide layout (a terminal at least :data:`WIDE_MIN_WIDTH` columns wide and tall enough
for it) puts each section in a panel with every column. The compact one titles each
section with a rule, uses the shorter labels, leaves out the columns a glance can do
without, and sets hosts and thresholds side by side: one host with two workers and a few
thresholds fit 80x24. When even that is too tall, the rows that count what went wrong
give way while they are 0, then the workers that need no attention. No label is ever cut:
a description too long for its column gives way to its short name.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from wslocust.formatting import category_label, format_bytes, format_count, format_ms, node_status

__all__ = ["BUSY_HOST_CPU_PERCENT", "WIDE_MIN_WIDTH", "Dashboard", "render"]

BUSY_HOST_CPU_PERCENT = 90.0
"""A host this busy delays every process on it, even a generator whose own CPU is low."""
WIDE_MIN_WIDTH = 130
"""Narrower than this, the wide layout's three top panels cut their labels: the compact layout instead."""
_COMPACT_SHARES = (8, 10, 7)
"""How the compact layout shares its width out among connections, messages and errors (gaps of 2)."""


def _ms(value: float | None) -> str:
    return "-" if value is None else format_ms(value)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _flow(items: list[Text], width: int, gap: int) -> Text:
    """The items on as few lines as fit ``width``, each whole: a label is never parted from its value."""
    line = Text()
    for item in items:
        if line.plain and len(line.plain.rpartition("\n")[2]) + gap + len(item) > width:
            line.append("\n")
        elif line.plain:
            line.append(" " * gap)
        line.append_text(item)
    return line


def _pairs(rows: list[tuple[str, str]], compact: bool) -> Table:
    table = Table.grid(padding=(0, 1 if compact else 2), expand=True)
    table.add_column(style="bold", overflow="fold")  # a label too long for its column is wrapped, never cut
    table.add_column(justify="right")
    for label, value in rows:
        table.add_row(label, value)
    return table


class _Layout:
    """
    Builds the sections of one snapshot in one of two layouts.

    The wide one puts each section in a panel, with every column; the compact one (a terminal
    narrower than :data:`WIDE_MIN_WIDTH`, or too short for the wide one) titles each section with a
    rule, shortens the labels that have a shorter form and leaves out the columns a glance can do
    without (host, pid, users, CPU per 1K), so that a run on one host with two workers fits 80x24.
    """

    def __init__(
        self, snapshot: dict[str, Any], compact: bool, width: int, tight: bool = False, max_workers: int | None = None
    ) -> None:
        self.snapshot = snapshot
        self.compact = compact
        self.width = width
        self.tight = tight
        """Leave out the rows that count what went wrong while they are 0: a short terminal."""
        self.max_workers = max_workers
        """Show this many workers at most, those that need attention first: a shorter terminal still."""

    def problems(self, rows: list[tuple[str, str, int]]) -> list[tuple[str, str]]:
        return [(label, text) for label, text, count in rows if count or not self.tight]

    def section(self, title: str, body: RenderableType, style: str = "cyan") -> RenderableType:
        if self.compact:
            return Group(Rule(Text(title, style=f"bold {style}"), align="left", style=style), body)
        return Panel(body, title=title, border_style=style, expand=True)

    def table(self, columns: tuple[str, ...], left: tuple[str, ...]) -> Table:
        compact = {"padding": (0, 1), "pad_edge": False, "collapse_padding": True} if self.compact else {}
        table = Table(expand=True, box=None, header_style="bold", **compact)  # type: ignore[arg-type]
        for title in columns:
            table.add_column(title, justify="left" if title in left else "right")
        return table

    def header(self, url: str, now: float) -> Text:
        snapshot, aggregate = self.snapshot, self.snapshot["aggregate"]
        state = snapshot["state"].upper()
        updated = Text(f"updated {time.strftime('%H:%M:%S', time.localtime(snapshot['time']))}", style="dim")
        if now - snapshot["time"] > 5:
            updated.append(f" ({now - snapshot['time']:.0f} s ago)", style="yellow")
        items = [
            Text(state, style="bold green" if state in ("RUNNING", "SPAWNING") else "bold yellow"),
            Text(("" if self.compact else "run time ") + _duration(snapshot["run_time"])),
            Text(f"users {aggregate['users']:,}"),
            *([Text(f"workers {aggregate['workers']}")] if snapshot["mode"] == "master" else []),
            Text(snapshot["host"] or "-", style="bold") if self.compact else Text(f"target {snapshot['host'] or '-'}"),
            updated,
        ]
        if not self.compact:
            items.insert(0, Text.assemble(("wslocust monitor ", "bold"), (url, "dim")))
        return _flow(items, self.width, 2 if self.compact else 3)

    def connections(self) -> RenderableType:
        aggregate = self.snapshot["aggregate"]
        c, t = aggregate["connections"], aggregate["totals"]
        rows = [("open", f"{c['open']:,}"), ("connecting", f"{c['connecting']:,}"),
                ("reconnecting", f"{c['reconnecting']:,}"), ("failed (gave up)", f"{c['failed']:,}"),
                ("closed", f"{c['closed']:,}"), ("peak open", f"{aggregate['peak_open']:,}"),
                ("attempts", f"{t['connect_attempts']:,}")]  # fmt: skip
        if self.compact:
            rows += self.problems([("connects failed", f"{t['connects_failed']:,}", t["connects_failed"]),
                                   ("reconnects", f"{t['reconnects']:,}", t["reconnects"]),
                                   ("lost", f"{t['disconnects']:,}", t["disconnects"])])  # fmt: skip
        else:
            rows += [("succeeded / failed", f"{t['connects_succeeded']:,} / {t['connects_failed']:,}"),
                     ("reconnects / lost", f"{t['reconnects']:,} / {t['disconnects']:,}")]  # fmt: skip
        return self.section("Connections", _pairs(rows, self.compact))

    def messages(self) -> RenderableType:
        r, t = self.snapshot["aggregate"]["rates"], self.snapshot["aggregate"]["totals"]
        rates = Table.grid(padding=(0, 1 if self.compact else 2), expand=True)
        rates.add_column(style="bold")
        rates.add_column(justify="right")
        rates.add_column(justify="right")
        rates.add_row("", Text("/s" if self.compact else "per second", style="dim"), Text("total", style="dim"))
        payload = "bytes" if self.compact else "payload"
        for label, rate, total in (
            ("sent", format_count(r["messages_sent"]), f"{t['messages_sent']:,}"),
            ("received", format_count(r["messages_received"]), f"{t['messages_received']:,}"),
            ("pushed" if self.compact else "pushed by server", format_count(r["unsolicited_received"]),
             f"{t['unsolicited_received']:,}"),
            (f"{payload} out", format_bytes(r["bytes_sent"]), format_bytes(t["bytes_sent"])),
            (f"{payload} in", format_bytes(r["bytes_received"]), format_bytes(t["bytes_received"])),
        ):  # fmt: skip
            rates.add_row(label, rate, total)
        late = f"{t['replies_late']:,} / {t['replies_duplicated']:,} / {t['replies_out_of_order']:,}"
        rows = self.problems([
            ("replies timed out", f"{t['replies_timed_out']:,}", t["replies_timed_out"]),
            ("replies lost", f"{t['replies_lost']:,}", t["replies_lost"]),
            ("late/dup/reordered" if self.compact else "late / dup / reordered", late,
             t["replies_late"] + t["replies_duplicated"] + t["replies_out_of_order"]),
        ])  # fmt: skip
        replies = _pairs(rows, self.compact)
        return self.section("Messages", Group(rates, replies))

    def errors(self) -> RenderableType:
        aggregate = self.snapshot["aggregate"]
        errors = aggregate["errors"]
        rows = [
            ("per second", format_count(aggregate["rates"]["errors"])),
            ("total", f"{aggregate['totals']['errors']:,}"),
            ("error rate", f"{aggregate['error_rate']:.3%}"),
        ]
        # The column's width, as the top row shares it out: a description too long for it gives way to
        # the category's name (``closed_1011``), as the CSV files and /ws/metrics name it.
        if self.compact:
            column = (self.width - 4) * _COMPACT_SHARES[2] // sum(_COMPACT_SHARES) - 1
        else:
            column = (self.width - 2) // 3 - 4  # two gaps of 1; borders and padding of 2 each side
        shown = [(category, f"{count:,}") for category, count in sorted(errors.items(), key=lambda item: -item[1])]
        shown = shown[: 7 if self.compact else 5]
        room = column - (1 if self.compact else 2) - max(len(value) for _, value in rows + shown)
        for category, value in shown:
            label = category_label(category)
            rows.append((label if len(label) <= room else category, value))
        return self.section("Errors", _pairs(rows, self.compact), style="red" if errors else "cyan")

    def latency(self) -> RenderableType:
        aggregate = self.snapshot["aggregate"]
        table = self.table(("request", "requests", "fails", "req/s", "p50", "p95", "p99", "avg", "max"), ("request",))
        rows = sorted(aggregate["latency"].items())
        for name, entry in rows:
            failures = Text(f"{entry['failures']:,}", style="red" if entry["failures"] else "")
            table.add_row(
                name, f"{entry['requests']:,}", failures, format_count(entry["rps"] or 0), *_latency_cells(entry)
            )
        round_trip = aggregate.get("round_trip")
        if round_trip and len([name for name in aggregate["latency"] if name not in _NOT_ROUND_TRIPS]) > 1:
            table.add_row(Text("all round trips", style="bold"), f"{round_trip['requests']:,}", "", "",
                          *_latency_cells(round_trip))  # fmt: skip
        if not rows:
            table.add_row(Text("no requests yet", style="dim"))
        window = "last ~10 s" if self.compact else "percentiles over the last ~10 s"
        return self.section(f"Latency, ms ({window})", table)

    def workers(self) -> RenderableType:
        snapshot = self.snapshot
        columns: tuple[str, ...]
        if self.compact:
            columns = ("worker", "state", "open", "sent/s", "recv/s", "errors", "p50", "p95", "p99", "CPU %", "memory")
        else:
            columns = ("worker", "host", "pid", "state", "users", "open", "sent/s", "recv/s", "errors",
                       "rt p50", "rt p95", "rt p99", "CPU %", "CPU %/1K", "memory", "")  # fmt: skip
        table = self.table(columns, ("worker", "host", "state", ""))
        views = snapshot["workers"]
        if self.max_workers is not None and len(views) > self.max_workers:
            # The workers that need attention first; the rest are counted.
            views = sorted(views, key=lambda view: not (view["saturated"] or view.get("lagging")
                                                       or view["state"] in ("gone", "missing")))  # fmt: skip
            views = views[: self.max_workers]
        for view in views:
            table.add_row(*self._worker_cells(view), style="dim" if view["state"] in ("gone", "missing") else "")
        hidden = len(snapshot["workers"]) - len(views)
        note = [Text(f"and {hidden} more workers: a taller terminal shows them", style="dim")] if hidden else []
        title = "Workers" if snapshot["mode"] == "master" else "Generator process"
        detail = "round trips: last report" if self.compact else "round trips: last report, ~3 s"
        return self.section(f"{title} ({detail})", Group(table, *note))

    def _worker_cells(self, view: dict[str, Any]) -> list[RenderableType]:
        system, round_trip = view["system"] or {}, view["round_trip"] or {}
        cpu = system.get("cpu")
        gone = view["state"] in ("gone", "missing")
        rt = [_ms(round_trip.get(key)) for key in ("p50", "p95", "p99")]
        cpu_text = Text("-" if cpu is None else f"{cpu:.0f}", style="red" if cpu is not None and cpu >= 90 else "")
        rates = [format_count(view["rates"]["messages_sent"]), format_count(view["rates"]["messages_received"])]
        if self.compact:
            flag = node_status(view, view["state"])
            state = Text(flag, style="bold red" if flag != view["state"] else "yellow" if gone else "")
            return [view["name"], state, f"{view['connections']['open']:,}", *rates, f"{view['totals']['errors']:,}",
                    *rt, cpu_text, format_bytes(system.get("rss"))]  # fmt: skip
        per_1k = "-" if system.get("cpu_per_1k") is None else f"{system['cpu_per_1k']:.1f}"
        return [view["name"], view["host"], str(view["pid"] or ""), Text(view["state"], style="yellow" if gone else ""),
                f"{view['users']:,}", f"{view['connections']['open']:,}", *rates, f"{view['totals']['errors']:,}",
                *rt, cpu_text, per_1k, format_bytes(system.get("rss")),
                Text("SATURATED", style="bold white on red") if view["saturated"] else Text("")]  # fmt: skip

    def hosts(self) -> RenderableType:
        if self.compact:
            table = self.table(("host", "CPU %", "mem %", "net in/s", "net out/s"), ("host",))
        else:
            table = self.table(("host", "CPU % (all cores)", "cores", "memory %", "net in", "net out",
                                "generator processes"), ("host",))  # fmt: skip
        for host in self.snapshot["hosts"]:
            cpu = Text(f"{host['cpu']:.0f}", style="bold yellow" if host["cpu"] >= BUSY_HOST_CPU_PERCENT else "")
            net = [format_bytes(host["net_in"], per_second=not self.compact),
                   format_bytes(host["net_out"], per_second=not self.compact)]  # fmt: skip
            if self.compact:
                table.add_row(host["host"], cpu, f"{host['memory']:.0f}", *net)
            else:
                table.add_row(
                    host["host"], cpu, str(host["cores"]), f"{host['memory']:.0f}", *net, str(host["processes"])
                )
        title = (
            "Hosts (all cores, all interfaces)"
            if self.compact
            else "Hosts (network: all interfaces, loopback included)"
        )
        return self.section(title, table)

    def thresholds(self) -> RenderableType:
        table = self.table(("threshold", "now", "result"), ("threshold",))
        table.show_header = not self.compact
        for result in self.snapshot["thresholds"]:
            verdict = Text("pass", style="green") if result["ok"] else Text("FAIL", style="bold red")
            table.add_row(result["threshold"], result["display"], verdict)
        return self.section("Thresholds (so far)", table)

    def banners(self, error: str | None) -> list[RenderableType]:
        """The red and yellow lines: master unreachable, a busy host, saturated or lagging workers."""
        aggregate, compact = self.snapshot["aggregate"], self.compact
        warnings: list[Text] = []
        for host in self.snapshot["hosts"]:
            if host["cpu"] >= BUSY_HOST_CPU_PERCENT:
                warnings.append(Text(f"host {host['host']} at {host['cpu']:.0f} % CPU" if compact else
                    f"host {host['host']} CPU at {host['cpu']:.0f} % of all cores: every process on it waits for "
                    "CPU, latency figures are suspect", style="bold yellow"))  # fmt: skip
        if aggregate["saturated"]:
            names = ", ".join(aggregate["saturated_workers"])
            warnings.append(Text(f"SATURATED: {names} at >= 90 % CPU" + ("" if compact else
                ": latency figures are not trustworthy, add workers"), style="bold white on red"))  # fmt: skip
        if aggregate.get("lagging"):
            names = aggregate["lagging_workers"]
            lags = [((view["system"] or {}).get("loop_lag") or {}).get("recent_p99") for view in self.snapshot["workers"]
                    if view["name"] in names]  # fmt: skip
            worst = max((lag for lag in lags if lag is not None), default=None)
            lag = "" if worst is None else f" up to {format_ms(worst)} ms"
            warnings.append(Text(f"LAGGING: {', '.join(names)}, event-loop lag p99{lag}" + ("" if compact else
                ": the latencies include the generator's own delay"), style="bold yellow"))  # fmt: skip
        if compact and warnings:  # one flowing line or two, not a line each
            verdict = "not trustworthy" if aggregate["saturated"] else "suspect"
            warnings = [_flow([*warnings, Text(f"latency figures are {verdict}", style="bold")], self.width, 2)]
        unreachable = [Text(f"master unreachable: {error}; retrying", style="bold red")] if error is not None else []
        return [*unreachable, *warnings]

    def screen(self, url: str, error: str | None, now: float) -> RenderableType:
        top = Table.grid(expand=True, padding=(0, 2 if self.compact else 1))
        for ratio in _COMPACT_SHARES if self.compact else (1, 1, 1):
            top.add_column(ratio=ratio)
        top.add_row(self.connections(), self.messages(), self.errors())
        parts = [self.header(url, now), *self.banners(error), top, self.latency(), self.workers()]
        if not self.snapshot.get("thresholds"):
            parts.append(self.hosts())
        elif self.compact:
            bottom = Table.grid(expand=True, padding=(0, 2))
            bottom.add_column(ratio=1)
            bottom.add_column(ratio=1)
            bottom.add_row(self.hosts(), self.thresholds())
            parts.append(bottom)
        else:
            parts += [self.hosts(), self.thresholds()]
        if not self.compact:
            parts.append(Text("Ctrl-C to quit", style="dim"))
        return Group(*parts)


def _latency_cells(entry: dict[str, Any]) -> list[str]:
    return [_ms(entry[key]) for key in ("p50", "p95", "p99", "avg", "max")]


_NOT_ROUND_TRIPS = {"connect", "reconnect", "disconnect", "send", "ping"}


class Dashboard:
    """
    The monitor's screen for one snapshot, laid out for the console it is drawn on: the wide
    layout when the console is at least :data:`WIDE_MIN_WIDTH` wide and, given a height, tall
    enough for it; else the compact one, with rows giving way while it is too tall.

    Attributes:
        height: the lines it must fit in (the terminal's, full screen); None: as many as it takes.
    """

    def __init__(
        self, snapshot: dict[str, Any] | None, url: str, error: str | None, now: float, height: int | None = None
    ) -> None:
        self.snapshot = snapshot
        self.url = url
        self.error = error
        self.now = now
        self.height = height

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # rich drops the height of what a Group or a Screen holds: it is passed in, or printed with one.
        width, height = options.max_width, self.height if self.height is not None else options.height
        options = options.reset_height()
        if self.snapshot is None:
            yield Text(f"wslocust monitor {self.url}", style="bold")
            if self.error is not None:
                yield Text(f"master unreachable: {self.error}; retrying", style="bold red")
            yield Text(f"waiting for a wslocust master at {self.url} ...", style="yellow")
            return
        if width >= WIDE_MIN_WIDTH:
            wide = _Layout(self.snapshot, False, width).screen(self.url, self.error, self.now)
            if height is None or len(console.render_lines(wide, options, pad=False)) <= height:
                yield wide
                return
        compact = self._compact(width)
        if height is None:
            yield compact
            return
        overflow = len(console.render_lines(compact, options, pad=False)) - height
        if overflow > 0:
            compact = self._compact(width, tight=True)
            overflow = len(console.render_lines(compact, options, pad=False)) - height
        workers = len(self.snapshot["workers"])
        if overflow > 0 and workers > 2:  # one line says how many are left out: it takes two to gain one
            compact = self._compact(width, tight=True, max_workers=max(1, workers - overflow - 1))
        yield compact

    def _compact(self, width: int, tight: bool = False, max_workers: int | None = None) -> RenderableType:
        assert self.snapshot is not None
        return _Layout(self.snapshot, True, width, tight, max_workers).screen(self.url, self.error, self.now)


def render(
    snapshot: dict[str, Any] | None,
    url: str,
    error: str | None = None,
    now: float | None = None,
    height: int | None = None,
) -> RenderableType:
    """
    The dashboard for one snapshot (None: nothing received yet) and the last fetch error, if any.

    Args:
        height: the terminal's lines, for the full screen: the layout fits them. None: any height.
    """
    return Dashboard(snapshot, url, error, time.time() if now is None else now, height)
