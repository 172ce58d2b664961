"""
Live WebSocket metrics of a run: the one aggregation path behind the web UI
tab, ``GET /ws/stats``, ``/ws/metrics``, the terminal monitor, the headless
console lines, the CSV files and the thresholds.

Every generator process (a worker, or the single process of a local run) is
a *node*. Each node keeps:

* its :class:`~wslocust.run.counters.WsCounters` (``wslocust.integration.plugin`` ships them
  under :data:`~wslocust.run.counters.REPORT_KEY`);
* its errors by category (:func:`classify_error`), counted from Locust's own
  error table at each report, so that no request pays for it;
* the round-trip percentiles of the requests it logged since its last report,
  read from its Locust statistics just before Locust resets them;
* a :class:`~wslocust.reporting.system.SystemSample` of its process and host.

A worker sends all but the counters under :data:`NODE_KEY` in each Locust
worker report. Every count is a total since the process started, never a
delta, so a lost report loses nothing and a dead worker's history stays
counted. The master keeps each node's recent reports and derives per-second
rates from them with the node's own clock. Totals add up over every node
ever seen; gauges (open, connecting, ...) and rates only over the workers
that are still alive. Reset Stats, and each new test start, take a baseline
of every node's totals, which the figures subtract.

Aggregated latency comes from the master's Locust statistics (the same
histograms as Locust's tables), percentiles over a sliding window of about
ten seconds.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from dataclasses import dataclass, field, fields
from typing import Any

import gevent
from locust import events
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner
from locust.stats import (
    CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW,
    RequestStats,
    StatsEntry,
    calculate_response_time_percentile,
    diff_response_time_dicts,
)

from wslocust.exceptions import (
    ConnectError,
    ConnectionClosed,
    ConnectionRefused,
    ConnectTimeout,
    DNSError,
    HandshakeError,
    PingTimeout,
    ProtocolError,
    ReceiveTimeout,
    TLSError,
)
from wslocust.integration import plugin
from wslocust.reporting.system import SAMPLE_INTERVAL, SystemSample, SystemSampler
from wslocust.run.counters import REPORT_KEY, WsCounters

__all__ = [
    "GAUGES",
    "NODE_KEY",
    "NOT_ROUND_TRIPS",
    "RATES",
    "TOTALS",
    "Live",
    "Node",
    "classify_error",
    "current_environment",
    "get",
    "latency",
    "merge_counts",
]

logger = logging.getLogger("wslocust")

NODE_KEY = "wslocust_node"
"""Our second key in Locust's worker report (the counters travel under ``REPORT_KEY``)."""

GAUGES = ("open", "connecting", "reconnecting", "failed")
"""Counter fields that say how many users are in a state now."""
TOTALS = tuple(f.name for f in fields(WsCounters) if f.name not in GAUGES)
"""Counter fields that only grow."""
RATES = (
    "messages_sent",
    "messages_received",
    "unsolicited_received",
    "bytes_sent",
    "bytes_received",
    "connects_succeeded",
    "connects_failed",
    "disconnects",
)
"""Totals also shown per second."""

NOT_ROUND_TRIPS = frozenset({"connect", "reconnect", "disconnect", "send", "ping"})
"""Request names that are not message round trips; every other ``WS`` name is one."""

RATE_WINDOW = 3.0
"""Seconds over which per-second rates are taken (workers report every 3 s)."""
STALE_AFTER = 10.0
"""A node not heard from for this long counts no rate."""
MAX_SAMPLES = 100_000
"""Run samples kept for the steady-state figures; older ones are thinned out beyond this."""


# Error categories ---------------------------------------------------------------


def classify_error(error: object) -> str:
    """
    The category of a failed request's exception: ``refused``, ``dns``,
    ``tls``, ``connect``, ``connect_timeout``, ``handshake_<status>``,
    ``protocol``, ``reply_timeout``, ``ping_timeout``, ``closed_<code>``
    (``closed_1006``: lost without a close frame), else the exception's class
    name.
    """
    if isinstance(error, DNSError):
        return "dns"
    if isinstance(error, ConnectionRefused):
        return "refused"
    if isinstance(error, TLSError):
        return "tls"
    if isinstance(error, ConnectError):
        return "connect"
    if isinstance(error, ConnectTimeout):
        return "connect_timeout"
    if isinstance(error, HandshakeError):
        return f"handshake_{error.status}" if error.status else "handshake"
    if isinstance(error, ProtocolError):
        return "protocol"
    if isinstance(error, PingTimeout):
        return "ping_timeout"
    if isinstance(error, ReceiveTimeout):
        return "reply_timeout"
    if isinstance(error, ConnectionClosed):
        return f"closed_{error.code}"
    if isinstance(error, str):  # a master's copy of a worker's error
        return error.split("(", 1)[0] or "other"
    return type(error).__name__ if error is not None else "other"


def merge_counts(*counts: dict[str, int]) -> dict[str, int]:
    """Add category counts key by key (associative and commutative)."""
    total: Counter[str] = Counter()
    for count in counts:
        total.update(count)
    return dict(total)


class _ErrorHarvester:
    """Counts the errors of Locust's error table by category, each occurrence once."""

    def __init__(self) -> None:
        self.categories: Counter[str] = Counter()
        self._seen: dict[str, tuple[Any, int]] = {}

    def harvest(self, stats: RequestStats) -> None:
        seen = {}
        for key, error in list(stats.errors.items()):
            previous = self._seen.get(key)
            counted = previous[1] if previous is not None and previous[0] is error else 0
            if error.occurrences > counted:
                self.categories[classify_error(error.error)] += error.occurrences - counted
            seen[key] = (error, error.occurrences)
        # Locust empties the table after each worker report: forget what is gone.
        self._seen = seen


# Latency -------------------------------------------------------------------------


def _histogram(entry: StatsEntry, window: bool) -> tuple[dict[Any, int], int]:
    """The entry's response times: over Locust's sliding window when asked and available."""
    count = entry.num_requests - entry.num_none_requests
    cache = entry.response_times_cache if window and entry.use_response_times_cache else None
    if cache:
        # The same choice of cached second as StatsEntry.get_current_response_time_percentile.
        now = time.time()
        first = int(now) - CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW
        for ts in [first, *(first + sign * i for i in range(1, 9) for sign in (-1, 1))]:
            cached = cache.get(ts)
            if cached is not None:
                return (
                    diff_response_time_dicts(entry.response_times, cached.response_times),
                    count - (cached.num_requests - cached.num_none_requests),
                )
        # Locust caches a second only when requests come in: none cached in the window
        # means none came for a while (the window is empty), unless the entry is brand new.
        if (entry.last_request_timestamp or 0) < now - 2:
            return {}, 0
    return dict(entry.response_times), count


def _percentiles(histogram: dict[Any, int], count: int) -> dict[str, float | None]:
    if count <= 0:
        return {"p50": None, "p95": None, "p99": None}
    return {
        f"p{round(p * 100)}": _number(calculate_response_time_percentile(histogram, count, p))
        for p in (0.5, 0.95, 0.99)
    }


def latency(stats: RequestStats, window: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Per request name, and for all round trips together: count, percentiles, average, max."""
    names: dict[str, dict[str, Any]] = {}
    merged: Counter[Any] = Counter()
    merged_count = 0
    total_time = 0.0
    timed = 0
    peak = 0.0
    for entry in list(stats.entries.values()):
        if entry.method != "WS":
            continue
        histogram, count = _histogram(entry, window)
        names[entry.name] = {
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "rps": _number(entry.current_rps) if window else None,
            **_percentiles(histogram, count),
            "avg": _number(entry.avg_response_time),
            "max": _number(entry.max_response_time),
        }
        if entry.name not in NOT_ROUND_TRIPS:
            merged.update(histogram)
            merged_count += count
            total_time += entry.total_response_time
            timed += entry.num_requests - entry.num_none_requests
            peak = max(peak, entry.max_response_time)
    if not timed:
        return names, None
    round_trip = {
        "requests": timed,
        **_percentiles(merged, merged_count),
        "avg": _number(total_time / timed),
        "max": _number(peak),
    }
    return names, round_trip


def _number(value: float | None, digits: int = 3) -> float | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return round(value, digits) if math.isfinite(value) else None


# Nodes ---------------------------------------------------------------------------


@dataclass
class Node:
    """What the master knows of one generator process."""

    id: str
    name: str
    index: int = 0
    """Order among the workers (Locust's worker index)."""
    counters: WsCounters = field(default_factory=WsCounters)
    errors: dict[str, int] = field(default_factory=dict)
    system: SystemSample | None = None
    round_trip: dict[str, Any] | None = None
    """Latency of the round trips it logged in its last report interval."""
    users: int = 0
    received_at: float = 0.0
    """When the master got its last report (master's monotonic clock)."""
    history: deque[tuple[float, dict[str, int]]] = field(default_factory=lambda: deque(maxlen=32))
    """(node's clock, totals used for rates), oldest first."""

    def update(self, t: float, counters: WsCounters, errors: dict[str, int], received_at: float) -> None:
        self.counters = counters
        self.errors = errors
        self.received_at = received_at
        values = {name: getattr(counters, name) for name in RATES}
        values["errors"] = sum(errors.values())
        if self.history and t <= self.history[-1][0]:
            self.history.clear()  # the node restarted its clock: rates start over
        if len(self.history) >= 2 and t - self.history[-2][0] < 0.5:
            self.history[-1] = (t, values)  # frequent updates (a local run's snapshots) keep the window long
        else:
            self.history.append((t, values))

    def rates(self, now: float) -> dict[str, float]:
        """Per-second rates over about the last :data:`RATE_WINDOW` seconds (zero when stale)."""
        rates = dict.fromkeys((*RATES, "errors"), 0.0)
        if len(self.history) < 2 or now - self.received_at > STALE_AFTER:
            return rates
        last_t, last = self.history[-1]
        base_t, base = self.history[0]
        for t, values in self.history:
            if t > last_t - RATE_WINDOW * 0.9:
                break
            base_t, base = t, values
        elapsed = last_t - base_t
        if elapsed <= 0:
            return rates
        return {name: max(0.0, (last[name] - base.get(name, 0)) / elapsed) for name in rates}

    def totals(self) -> dict[str, int]:
        values = {name: getattr(self.counters, name) for name in TOTALS}
        values["errors"] = sum(self.errors.values())
        return values


@dataclass
class _RunSample:
    t: float
    open: int
    cpu: float
    rss: int
    messages_received: float
    messages_sent: float


class Live:
    """
    The live metrics of one Locust environment (master or local process).

    Get it with :func:`get`; ``snapshot()`` is what ``GET /ws/stats`` returns.
    """

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.nodes: dict[str, Node] = {}
        self.baseline: dict[str, dict[str, Any]] = {}
        """Per node: its totals and error counts when the figures were last reset."""
        self.sampler = SystemSampler()
        self.samples: list[_RunSample] = []
        self._sample_stride = 1
        self._ticks = 0
        self.peak_open = 0
        self.started_at = time.time()
        """Wall time of the last test start or reset."""
        self._harvester = _ErrorHarvester()

    # Node side -------------------------------------------------------------------

    def node_report(self) -> dict[str, Any]:
        """What this process adds to its worker report under :data:`NODE_KEY`."""
        runner = self.environment.runner
        stats = runner.stats
        self._harvester.harvest(stats)
        # Locust's own report listener resets these statistics after ours has run:
        # they hold exactly this report interval's requests.
        _, round_trip = latency(stats, window=False)
        return {
            "t": time.monotonic(),
            "system": self.sampler.latest.as_dict(),
            "errors": dict(self._harvester.categories),
            "round_trip": round_trip,
            "users": runner.user_count,
        }

    # Master side -----------------------------------------------------------------

    def receive(self, client_id: str, data: dict[str, Any]) -> None:
        """Take a worker's report (``worker_report`` event)."""
        if REPORT_KEY not in data and NODE_KEY not in data:
            return
        node = self.nodes.get(client_id)
        if node is None:
            index = self._worker_index(client_id)
            node = self.nodes[client_id] = Node(client_id, f"worker {index + 1}", index)
        now = time.monotonic()
        counters = WsCounters.from_dict(data.get(REPORT_KEY) or {})
        report = data.get(NODE_KEY) or {}
        if "system" in report:
            node.system = SystemSample.from_dict(report["system"])
        node.round_trip = report.get("round_trip")
        node.users = int(report.get("users", node.users))
        node.update(float(report.get("t", now)), counters, dict(report.get("errors") or {}), now)

    def _worker_index(self, client_id: str) -> int:
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            index: int = runner.get_worker_index(client_id)  # type: ignore[no-untyped-call]
            return index
        return len(self.nodes)

    def tick(self) -> None:
        """Once a second in the master or local process: sample, and update the local node."""
        self.sampler.sample()
        runner = self.environment.runner
        if runner is None:
            return
        if not isinstance(runner, MasterRunner):
            self._update_local()
        self._record_sample()

    def _update_local(self) -> None:
        """Refresh the node of a local run from this process's own figures."""
        runner = self.environment.runner
        node = self.nodes.get("local")
        if node is None:
            node = self.nodes["local"] = Node("local", "local")
        self._harvester.harvest(runner.stats)
        node.system = self.sampler.latest
        _, node.round_trip = latency(runner.stats, window=True)
        node.users = runner.user_count
        now = time.monotonic()
        counters = WsCounters().merge(plugin.counters(self.environment))
        node.update(now, counters, dict(self._harvester.categories), now)

    def _record_sample(self) -> None:
        self._ticks += 1
        if self._ticks % self._sample_stride:
            return
        now = time.monotonic()
        alive = self.alive_nodes()
        gauges = self._gauges(alive)
        rates = self._rates(alive, now)
        systems = [node.system for node in alive if node.system is not None]
        sample = _RunSample(
            t=now,
            open=gauges["open"],
            cpu=sum(s.cpu for s in systems),
            rss=sum(s.rss for s in systems),
            messages_received=rates["messages_received"],
            messages_sent=rates["messages_sent"],
        )
        self.peak_open = max(self.peak_open, sample.open)
        self.samples.append(sample)
        if len(self.samples) > MAX_SAMPLES:
            self.samples = self.samples[::2]
            self._sample_stride *= 2

    def reset(self) -> None:
        """Start the figures over (Reset Stats, a new test start): totals from zero, gauges as they are."""
        self.baseline = {
            node_id: {"totals": node.totals(), "errors": dict(node.errors)} for node_id, node in self.nodes.items()
        }
        self.samples = []
        self._sample_stride = 1
        self.peak_open = 0
        self.started_at = time.time()

    # Views -----------------------------------------------------------------------

    def _state(self, node: Node) -> str:
        runner = self.environment.runner
        if not isinstance(runner, MasterRunner):
            return runner.state if runner is not None else "init"
        client = runner.clients.get(node.id)
        return client.state if client is not None else "gone"

    def alive_nodes(self) -> list[Node]:
        """Nodes whose gauges and rates count: the local one, or workers the master still has."""
        return [node for node in self.nodes.values() if self._state(node) not in ("gone", STATE_MISSING)]

    @staticmethod
    def _gauges(nodes: list[Node]) -> dict[str, int]:
        return {name: sum(getattr(node.counters, name) for node in nodes) for name in GAUGES}

    @staticmethod
    def _rates(nodes: list[Node], now: float) -> dict[str, float]:
        total = dict.fromkeys((*RATES, "errors"), 0.0)
        for node in nodes:
            for name, value in node.rates(now).items():
                total[name] += value
        return total

    def _totals(self, node: Node) -> tuple[dict[str, int], dict[str, int]]:
        """A node's totals and errors since the last reset."""
        totals = node.totals()
        errors = dict(node.errors)
        base = self.baseline.get(node.id)
        if base is not None:
            totals = {name: value - base["totals"].get(name, 0) for name, value in totals.items()}
            errors = {k: v - base["errors"].get(k, 0) for k, v in errors.items() if v - base["errors"].get(k, 0)}
        return totals, errors

    def _node_view(self, node: Node, now: float, alive: bool) -> dict[str, Any]:
        totals, errors = self._totals(node)
        gauges = {name: getattr(node.counters, name) for name in GAUGES}
        system = node.system
        return {
            "id": node.id,
            "name": node.name,
            "state": self._state(node),
            "host": system.host if system else "",
            "pid": system.pid if system else 0,
            "users": node.users,
            "connections": {**gauges, "closed": totals["closed"]},
            "totals": totals,
            "rates": _rounded(node.rates(now)) if alive else _rounded(dict.fromkeys((*RATES, "errors"), 0.0)),
            "errors": errors,
            "round_trip": node.round_trip,
            "system": _system_view(system, gauges["open"]),
            "saturated": bool(system and system.saturated),
            "report_age": round(now - node.received_at, 1),
        }

    def snapshot(self) -> dict[str, Any]:
        """
        Everything, as plain data: ``aggregate`` (the run), ``workers`` (one
        entry per node ever seen), ``hosts``, ``master`` (this process's own
        system figures on a master), and the run ``state``.
        """
        environment = self.environment
        runner = environment.runner
        distributed = isinstance(runner, MasterRunner)
        if runner is not None and not distributed:
            self._update_local()
        now = time.monotonic()
        alive = self.alive_nodes()
        alive_ids = {node.id for node in alive}
        nodes = sorted(self.nodes.values(), key=lambda node: node.index)
        workers = [self._node_view(node, now, node.id in alive_ids) for node in nodes]

        totals: Counter[str] = Counter()
        for view in workers:
            totals.update(view["totals"])
        totals_dict = {name: totals.get(name, 0) for name in (*TOTALS, "errors")}
        errors = merge_counts(*(view["errors"] for view in workers))
        gauges = self._gauges(alive)
        rates = self._rates(alive, now)
        systems = [node.system for node in alive if node.system is not None]
        cpu = sum(s.cpu for s in systems)
        names, round_trip = latency(runner.stats, window=True) if runner is not None else ({}, None)
        requests = sum(entry["requests"] for entry in names.values())
        failures = sum(entry["failures"] for entry in names.values())
        saturated = [view["name"] for view in workers if view["saturated"] and view["id"] in alive_ids]
        aggregate = {
            "workers": len(alive) if distributed else 0,
            "users": runner.user_count if runner is not None else 0,
            "connections": {**gauges, "closed": totals_dict["closed"]},
            "peak_open": max(self.peak_open, gauges["open"]),
            "totals": totals_dict,
            "rates": _rounded(rates),
            "errors": errors,
            "error_rate": round(failures / requests, 6) if requests else 0.0,
            "latency": names,
            "round_trip": round_trip,
            "system": {
                "cpu": round(cpu, 1),
                "rss": sum(s.rss for s in systems),
                "cpu_per_1k": _per_1k(cpu, gauges["open"]),
            },
            "saturated": bool(saturated),
            "saturated_workers": saturated,
        }
        master = self.sampler.latest if distributed else None
        return {
            "version": 1,
            "time": round(time.time(), 3),
            "mode": "master" if distributed else "local",
            "state": runner.state if runner is not None else "init",
            "run_time": round(time.time() - self.started_at, 1),
            "host": environment.host or "",
            "aggregate": aggregate,
            "workers": workers,
            "hosts": self._hosts(alive, master),
            "master": _system_view(master, 0) if master is not None else None,
        }

    @staticmethod
    def _hosts(nodes: list[Node], master: SystemSample | None) -> list[dict[str, Any]]:
        hosts: dict[str, dict[str, Any]] = {}
        samples = [node.system for node in nodes if node.system is not None]
        for sample in [*samples, *([master] if master is not None else [])]:
            host = hosts.setdefault(sample.host, {"host": sample.host, "processes": 0, "generator_cpu": 0.0})
            host.update(
                cpu=round(sample.host_cpu, 1),
                cores=sample.host_cores,
                memory=round(sample.host_memory, 1),
                net_in=round(sample.net_in),
                net_out=round(sample.net_out),
            )
            if sample is not master:
                host["processes"] += 1
                host["generator_cpu"] = round(host["generator_cpu"] + sample.cpu, 1)
        return sorted(hosts.values(), key=lambda host: host["host"])

    def run_summary(self) -> dict[str, float | None]:
        """
        Whole-run figures for thresholds and the final summary, over the
        steady state: the samples taken while at least 90 % of the peak
        number of connections were open.
        """
        peak = max((s.open for s in self.samples), default=0)
        steady = [s for s in self.samples if peak and s.open >= 0.9 * peak]
        peak_cpu = max((n.system.peak_cpu for n in self.nodes.values() if n.system is not None), default=None)
        saturated_seconds = sum(n.system.saturated_seconds for n in self.nodes.values() if n.system is not None)

        def mean(values: list[float]) -> float | None:
            return sum(values) / len(values) if values else None

        return {
            "peak_open": peak,
            "cpu_per_1k": mean([s.cpu / (s.open / 1000) for s in steady]),
            "mem_per_10k": mean([s.rss / (s.open / 10000) for s in steady]),
            "msg_rate": mean([s.messages_received for s in steady]),
            "send_rate": mean([s.messages_sent for s in steady]),
            "cpu_max": peak_cpu,
            "saturated_seconds": saturated_seconds,
        }


def _per_1k(cpu: float, open_connections: int) -> float | None:
    return round(cpu / (open_connections / 1000), 2) if open_connections else None


def _system_view(system: SystemSample | None, open_connections: int) -> dict[str, Any] | None:
    if system is None:
        return None
    return {
        "cpu": round(system.cpu, 1),
        "peak_cpu": round(system.peak_cpu, 1),
        "rss": system.rss,
        "fds": system.fds,
        "cpu_per_1k": _per_1k(system.cpu, open_connections),
        "saturated": system.saturated,
        "saturated_seconds": round(system.saturated_seconds, 1),
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 2) for name, value in values.items()}


# Wiring --------------------------------------------------------------------------

_current: list[Any] = []
_ticker: list[gevent.Greenlet] = []


def get(environment: Any) -> Live:
    """The :class:`Live` of ``environment``, created on first use."""
    found: Live | None = getattr(environment, "ws_live", None)
    if found is None:
        found = environment.ws_live = Live(environment)
    return found


def current_environment() -> Any:
    """The environment of the running Locust process (the last one initialised), or None."""
    return _current[-1] if _current else None


def _tick_forever(live: Live) -> None:
    while True:
        gevent.sleep(SAMPLE_INTERVAL)
        try:
            live.tick()
        except Exception:  # a bad sample must not end the sampling
            logger.exception("wslocust: sampling failed")


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    _current.append(environment)
    live = get(environment)
    for greenlet in _ticker:
        greenlet.kill(block=False)
    _ticker[:] = [gevent.spawn(_tick_forever, live)]


def _master_or_local() -> Live | None:
    environment = current_environment()
    if environment is None or isinstance(environment.runner, WorkerRunner):
        return None
    return get(environment)


@events.reset_stats.add_listener
def _on_reset_stats(**_: Any) -> None:
    live = _master_or_local()
    if live is not None:
        live.reset()


@events.test_start.add_listener
def _on_test_start(**_: Any) -> None:
    # Locust clears its statistics at each new start; so do we.
    live = _master_or_local()
    if live is not None:
        live.reset()


@events.spawning_complete.add_listener
def _on_spawning_complete(**_: Any) -> None:
    live = _master_or_local()
    if live is not None and live.environment.reset_stats:  # --reset-stats, as Locust does
        live.reset()


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    environment = current_environment()
    if environment is not None and environment.runner is not None:
        data[NODE_KEY] = get(environment).node_report()


@events.worker_report.add_listener
def _receive(client_id: str, data: dict[str, Any], **_: Any) -> None:
    environment = current_environment()
    if environment is not None:
        get(environment).receive(client_id, data)


@events.quit.add_listener
def _on_quit(**_: Any) -> None:
    for greenlet in _ticker:
        greenlet.kill(block=False)
    _ticker.clear()
