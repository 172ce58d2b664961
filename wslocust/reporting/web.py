"""
The WebSocket figures in Locust's web UI, on the web UI's own port:

* three extra tabs, **WebSocket** (connections, messages, latency, CPU and
  event-loop lag of the run and of each worker), **WebSocket system** (CPU, memory, open files
  and network of each worker process and its host) and **WebSocket errors**
  (errors by category), through the ``extended_tabs`` / ``extended_tables``
  template arguments and the ``extended_stats`` of ``/stats/requests`` that
  Locust's UI polls;
* ``GET /ws/stats``: the same data as JSON (:meth:`wslocust.reporting.live.Live.snapshot`);
* ``GET /ws/stats/csv``: the per-node table as CSV (also on the Download Data tab);
* ``GET /ws/metrics``: Prometheus text format, for Grafana and friends.

Nothing here runs on workers or in headless runs (no web UI there).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from wslocust.formatting import category_label
from wslocust.integration.secrets import conceal_targets
from wslocust.reporting import reports, thresholds
from wslocust.reporting.live import Live
from wslocust.reporting.nodes import GAUGES, PER_1K_MINIMUM, TOTALS

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["GROUPED", "NO_ERRORS", "TABLES", "TABS", "install", "prometheus_text", "tab_rows"]

TABS = [
    {"title": "WebSocket", "key": "websocket"},
    {"title": "WebSocket system", "key": "websocket-system"},
    {"title": "WebSocket errors", "key": "websocket-errors"},
]
"""The extra tabs, in Locust's ``extended_tabs`` format."""


def _columns(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"key": key, "title": title} for key, title in pairs]


TABLES = [
    {
        "key": "websocket",
        "structure": _columns(
            ("node", "Node"),
            ("status", "Status"),
            ("users", "Users"),
            ("open", "Open"),
            ("pending", "Connecting · reconnecting · failed"),
            ("closed", "Closed"),
            ("per_s", "Messages/s sent · received"),
            ("messages", "Messages sent · received"),
            ("errors", "Errors"),
            # replies timed out, lost on close, late, duplicated, out of order (README, "What is reported")
            ("replies", "Replies timed out · lost · late · dup · reordered"),
            ("round_trip", "Round trip p50 · p95 · p99 (ms)"),
            ("cpu", "CPU %"),
            # the generator's own event loop over the last seconds (wslocust.run.loop_lag)
            ("loop_lag", "Loop lag p99 · max (ms)"),
        ),
    },
    {
        "key": "websocket-system",
        "structure": _columns(
            ("node", "Node"),
            ("process", "Host · PID"),
            ("cpu", "CPU % now · peak"),
            ("cpu_per_1k", f"CPU % per 1K open (from {PER_1K_MINIMUM:,} open)"),
            ("rss_mb", "Memory (MB)"),
            ("fds", "Open files"),
            ("saturated_s", "Saturated (s)"),
            ("payload", "Payload out · in (KB/s)"),
            # the whole machine's, every process and interface (loopback too): not this test's alone
            ("host_cpu", "Host-wide CPU %"),
            ("host_net", "Host-wide net in · out (MB/s)"),
        ),
    },
    {
        "key": "websocket-errors",
        "structure": _columns(
            ("error", "Error"), ("category", "Category"), ("count", "Count"), ("share", "% of errors")
        ),
    },
]
"""Their tables, in Locust's ``extended_tables`` format: grouped columns (``a · b``) that fit 1,280 px."""

NO_ERRORS = {"error": "no errors", "category": "", "count": "", "share": ""}
"""The errors tab's one row when there are none (rather than a header alone)."""


def tab_rows(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Locust's ``extended_stats``: the rows of each tab, from a snapshot."""
    nodes = reports.node_rows(snapshot)
    hosts = {host["host"]: host for host in snapshot["hosts"]}
    # A single process's one row is the run's: it has its host's figures too, as a worker's row has.
    local_host = snapshot["workers"][0]["host"] if snapshot["mode"] == "local" and snapshot["workers"] else ""
    main, system = [], []
    for row in nodes:
        main.append(
            {
                "node": row["node"],
                "status": row["status"],
                "users": row["users"],
                "open": row["open"],
                "pending": _group(row["connecting"], row["reconnecting"], row["failed"]),
                "closed": row["closed"],
                "per_s": _group(_rate(row["messages_sent_per_s"]), _rate(row["messages_received_per_s"])),
                "messages": _group(row["messages_sent"], row["messages_received"]),
                "errors": row["errors"],
                "replies": _group(
                    row["replies_timed_out"],
                    row["replies_lost"],
                    row["replies_late"],
                    row["replies_duplicated"],
                    row["replies_out_of_order"],
                ),
                "round_trip": _group(row["round_trip_p50_ms"], row["round_trip_p95_ms"], row["round_trip_p99_ms"]),
                "cpu": row["cpu_percent"],
                "loop_lag": _group(_ms(row["loop_lag_p99_ms"]), _ms(row["loop_lag_max_ms"])),
            }
        )
        host_name = row["host"] or local_host
        host = hosts.get(host_name, {})
        system.append(
            {
                "node": row["node"],
                "process": _group(host_name, str(row["pid"])) if row["pid"] else host_name,
                "cpu": _group(row["cpu_percent"], row["peak_cpu_percent"]),
                "cpu_per_1k": row["cpu_percent_per_1k_open"],
                "rss_mb": _mb(row["rss_bytes"]),
                "fds": row["open_files"],
                "saturated_s": row["saturated_seconds"],
                "payload": _group(_kb(row["bytes_sent_per_s"]), _kb(row["bytes_received_per_s"])),
                "host_cpu": host.get("cpu", ""),
                "host_net": _group(_mb(host.get("net_in"), 2), _mb(host.get("net_out"), 2)) if host else "",
            }
        )
    errors = snapshot["aggregate"]["errors"]
    total = sum(errors.values())
    error_rows = [
        {
            "error": category_label(category),
            "category": category,
            "count": count,
            "share": round(100 * count / total, 1) if total else 0,
        }
        for category, count in sorted(errors.items(), key=lambda item: -item[1])
    ]
    return [
        {"key": "websocket", "data": main},
        {"key": "websocket-system", "data": system},
        {"key": "websocket-errors", "data": error_rows or [NO_ERRORS]},
    ]


GROUPED = "\u00a0· "
"""Between the figures of one cell (``a · b``): a narrow table wraps the cell after a dot, never before one."""


def _group(*values: Any) -> str:
    """Several figures in one cell, ``a · b · c`` (a missing one as ``-``), as the column's title names them."""
    return GROUPED.join(_cell(value) for value in values)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _rate(value: float) -> float:
    return round(value) if value >= 100 else round(value, 1)


def _ms(value: Any) -> Any:
    return round(value, 2 if value < 10 else 1) if isinstance(value, float) else value


def _kb(value: float) -> float:
    return round(value / 1000, 1)


def _mb(value: Any, digits: int = 1) -> float | str:
    return round(value / 1e6, digits) if isinstance(value, (int, float)) else ""


# Prometheus ------------------------------------------------------------------


class _Collector:
    """Reads the live metrics at each scrape; raw totals per worker, so counters never go down."""

    def __init__(self, live: Live) -> None:
        self.live = live

    def collect(self) -> Iterator[Any]:
        live = self.live
        snapshot = live.snapshot()
        alive = {node.id for node in live.alive_nodes()}
        nodes = list(live.nodes.values())

        users = GaugeMetricFamily("wslocust_users", "Locust users running", labels=["worker"])
        connections = GaugeMetricFamily(
            "wslocust_connections", "Users whose connection is in this state now", labels=["worker", "state"]
        )
        totals = {
            name: CounterMetricFamily(f"wslocust_{name}", f"WebSocket counter {name}", labels=["worker"])
            for name in TOTALS
        }
        errors = CounterMetricFamily("wslocust_errors", "Failed requests by category", labels=["worker", "category"])
        cpu = GaugeMetricFamily("wslocust_process_cpu_percent", "Generator process CPU %", labels=["worker"])
        rss = GaugeMetricFamily("wslocust_process_resident_memory_bytes", "Generator RSS", labels=["worker"])
        fds = GaugeMetricFamily("wslocust_process_open_fds", "Generator open files", labels=["worker"])
        saturated = GaugeMetricFamily(
            "wslocust_saturated", "1 when the generator's CPU stayed above 90 %", labels=["worker"]
        )
        lag_p99 = GaugeMetricFamily(
            "wslocust_loop_lag_p99_milliseconds",
            "Event-loop lag p99 of the generator, worst one-second window of the last 5 s",
            labels=["worker"],
        )
        lag_max = GaugeMetricFamily(
            "wslocust_loop_lag_max_milliseconds",
            "Longest event-loop stall of the generator in the last 5 s",
            labels=["worker"],
        )
        lag_busy = GaugeMetricFamily(
            "wslocust_loop_busy_percent",
            "Share of the last 5 s the generator's event loop was busy",
            labels=["worker"],
        )
        lagged = GaugeMetricFamily(  # a gauge: it starts over with each test
            "wslocust_loop_lagged_windows",
            "One-second windows of the current test with an event-loop lag p99 above 5 ms",
            labels=["worker"],
        )
        for node in nodes:
            name = node.name
            if node.id in alive:
                users.add_metric([name], node.users)
                for state in GAUGES:
                    connections.add_metric([name, state], getattr(node.counters, state))
                if node.system is not None:
                    cpu.add_metric([name], node.system.cpu)
                    rss.add_metric([name], node.system.rss)
                    fds.add_metric([name], node.system.fds)
                    saturated.add_metric([name], 1 if node.system.saturated else 0)
                    lag = node.system.loop_lag
                    lag_p99.add_metric([name], lag.recent_p99)
                    lag_max.add_metric([name], lag.recent_max)
                    lag_busy.add_metric([name], lag.recent_busy)
                    lagged.add_metric([name], lag.lagged_windows)
            for total_name, family in totals.items():
                family.add_metric([name], getattr(node.counters, total_name))
            for category, count in node.errors.items():
                errors.add_metric([name, category], count)
        yield from (users, connections, *totals.values(), errors, cpu, rss, fds, saturated)
        yield from (lag_p99, lag_max, lag_busy, lagged)

        host_cpu = GaugeMetricFamily("wslocust_host_cpu_percent", "Host CPU % (all cores)", labels=["host"])
        net_in = GaugeMetricFamily("wslocust_host_network_receive_bytes_per_second", "Host receive", labels=["host"])
        net_out = GaugeMetricFamily("wslocust_host_network_transmit_bytes_per_second", "Host send", labels=["host"])
        for host in snapshot["hosts"]:
            host_cpu.add_metric([host["host"]], host["cpu"])
            net_in.add_metric([host["host"]], host["net_in"])
            net_out.add_metric([host["host"]], host["net_out"])
        yield from (host_cpu, net_in, net_out)

        latency = GaugeMetricFamily(
            "wslocust_latency_milliseconds",
            "Response time percentiles over the last ~10 s (connect, echo, ping, ...)",
            labels=["name", "quantile"],
        )
        requests = CounterMetricFamily("wslocust_requests", "WebSocket requests (Locust statistics)", labels=["name"])
        failures = CounterMetricFamily("wslocust_request_failures", "Failed WebSocket requests", labels=["name"])
        for request_name, entry in snapshot["aggregate"]["latency"].items():
            for quantile in ("p50", "p95", "p99"):
                if entry[quantile] is not None:
                    latency.add_metric([request_name, f"0.{quantile[1:]}"], entry[quantile])
            requests.add_metric([request_name], entry["requests"])
            failures.add_metric([request_name], entry["failures"])
        yield from (latency, requests, failures)


def prometheus_text(live: Live) -> bytes:
    """The live metrics in Prometheus text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(live))
    return generate_latest(registry)


# The web UI ----------------------------------------------------------------------


def install(environment: Environment, web_ui: Any, live: Live) -> None:
    """Add the routes, the tabs and the CSV download to Locust's web UI (at ``init``, when there is one)."""
    options = environment.parsed_options
    blueprint = Blueprint("wslocust", __name__, url_prefix=getattr(options, "web_base_path", None) or None)
    auth = web_ui.auth_required_if_enabled

    @blueprint.route("/ws/stats")
    @auth
    def ws_stats() -> Response:
        snapshot = live.snapshot()
        snapshot["thresholds"] = thresholds.current(environment)
        return jsonify(snapshot)

    @blueprint.route("/ws/stats/csv")
    @auth
    def ws_stats_csv() -> Response:
        response = Response(reports.nodes_csv(live.snapshot()), mimetype="text/csv")
        response.headers["Content-Disposition"] = "attachment;filename=wslocust_websocket.csv"
        return response

    @blueprint.route("/ws/metrics")
    @auth
    def ws_metrics() -> Response:
        return Response(prometheus_text(live), mimetype=CONTENT_TYPE_LATEST)

    web_ui.app.register_blueprint(blueprint)

    @web_ui.app.after_request
    def add_tab_rows(response: Response) -> Response:
        # Locust's UI polls /stats/requests and shows each tab's rows from its extended_stats.
        if not request.path.endswith("/stats/requests") or response.status_code != 200:
            return response
        try:
            payload = json.loads(response.get_data())
        except ValueError:
            return response
        payload["extended_stats"] = tab_rows(live.snapshot())
        response.set_data(json.dumps(payload))
        return response

    @web_ui.app.after_request
    def conceal_started_host(response: Response) -> Response:
        # Locust's POST /swarm sets environment.host from the start form and answers
        # with it: conceal it before the answer leaves and before any user starts.
        if not request.path.endswith("/swarm") or request.method != "POST":
            return response
        conceal_targets(environment)
        try:
            payload = json.loads(response.get_data())
        except ValueError:
            return response
        if isinstance(payload, dict) and payload.get("host"):
            payload["host"] = environment.host
            response.set_data(json.dumps(payload))
        return response

    web_ui.template_args["extended_tabs"] = TABS
    web_ui.template_args["extended_tables"] = TABLES
    web_ui.template_args["extended_csv_files"] = [
        {"href": "./ws/stats/csv", "title": "Download WebSocket statistics CSV"}
    ]
