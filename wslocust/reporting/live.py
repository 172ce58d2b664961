"""
Live WebSocket metrics of a run: the one aggregation path behind the web UI
tab, ``GET /ws/stats``, ``/ws/metrics``, the terminal monitor, the headless
console lines, the CSV files and the thresholds.

Every generator process (a worker, or the single process of a local run) is
a *node* (:class:`~wslocust.reporting.nodes.Node`). Each node keeps:

* its :class:`~wslocust.run.counters.WsCounters`;
* its errors by category (:func:`~wslocust.reporting.errors.classify_error`),
  counted from Locust's own error table at each report, so that no request
  pays for it;
* the round-trip percentiles of the requests it logged since its last report,
  read from its Locust statistics just before Locust resets them;
* a :class:`~wslocust.reporting.system.SystemSample` of its process and host,
  with the lag of its event loop (:mod:`wslocust.run.loop_lag`).

A worker sends its counters and :meth:`Live.node_report` together, under the
one key :data:`~wslocust.run.state.REPORT_KEY` of each Locust worker report
(:func:`~wslocust.run.state.worker_report`); the master keeps the latest in
the worker's :class:`~wslocust.run.state.WorkerView` and hands the view to
:meth:`Live.receive`. Every count is a total since the process started, never
a delta, so a lost report loses nothing and a dead worker's history stays
counted. The master keeps each node's recent reports and derives per-second
rates from them with the node's own clock. Totals add up over every node
ever seen; gauges (open, connecting, ...) and rates only over the workers
that are still alive. Reset Stats, and each new test start, take a baseline
of every node's totals, which the figures subtract.

Aggregated latency comes from the master's Locust statistics (the same
histograms as Locust's tables), percentiles over a sliding window of about
ten seconds (:mod:`wslocust.reporting.latency`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from locust.runners import STATE_MISSING, MasterRunner

from wslocust.reporting.errors import ErrorHarvester, merge_counts
from wslocust.reporting.latency import latency
from wslocust.reporting.nodes import GAUGES, RATES, TOTALS, Node, loop_lag_view, per_1k, rounded, system_view
from wslocust.reporting.system import SAMPLE_INTERVAL, SystemSample, SystemSampler
from wslocust.run.counters import WsCounters
from wslocust.run.state import WorkerView, run_state

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["BENCH_HOUSEKEEPING", "BENCH_SAMPLING", "MAX_SAMPLES", "Live", "tick_forever"]

logger = logging.getLogger("wslocust")

MAX_SAMPLES = 100_000
"""Run samples kept for the steady-state figures; older ones are thinned out beyond this."""
BENCH_HOUSEKEEPING = "WSLOCUST_BENCH_HOUSEKEEPING"
"""Benchmarks only: ``off`` stops the once-a-second sampling and the console lines, to measure what they cost."""
BENCH_SAMPLING = "WSLOCUST_BENCH_SAMPLING"
"""Benchmarks only: ``loop`` reads ``/proc`` on the event loop rather than in gevent's thread pool."""


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

    Held by the run state (:attr:`wslocust.run.state.RunState.live`);
    ``snapshot()`` is what ``GET /ws/stats`` returns.
    """

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.nodes: dict[str, Node] = {}
        self.baseline: dict[str, dict[str, Any]] = {}
        """Per node: its totals and error counts when the figures were last reset."""
        self.housekeeping = os.environ.get(BENCH_HOUSEKEEPING) != "off"
        """False only in a benchmark that measures the loop lag without wslocust's periodic work."""
        self.sampler = SystemSampler(
            loop_lag=run_state(environment).loop_lag, off_loop=os.environ.get(BENCH_SAMPLING) != "loop"
        )
        self.samples: list[_RunSample] = []
        self._sample_stride = 1
        self._ticks = 0
        self.node_peaks: dict[str, int] = {}
        """Per worker: its exact peak of connections open at once since the last reset (a worker sends
        :attr:`~wslocust.run.counters.WsCounters.peak_open` of each report interval)."""
        self.started_at = time.time()
        """Wall time of the last test start or reset."""
        self._harvester = ErrorHarvester()

    # Node side -------------------------------------------------------------------

    def node_report(self) -> dict[str, Any]:
        """What this process adds to its worker report (see :func:`wslocust.run.state.worker_report`)."""
        runner = self.environment.runner
        assert runner is not None, "a node report comes from a process that runs"
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
            "peak_open": run_state(self.environment).counters.restart_peak(),  # of this report interval
        }

    # Master side -----------------------------------------------------------------

    def receive(self, view: WorkerView) -> None:
        """Take a worker's latest report, from its view in the run state (``worker_report`` event)."""
        node = self.nodes.get(view.id)
        if node is None:
            index = self._worker_index(view.id)
            node = self.nodes[view.id] = Node(view.id, f"worker {index + 1}", index)
        now = time.monotonic()
        report = view.live
        if "system" in report:
            node.system = SystemSample.from_dict(report["system"])
        node.round_trip = report.get("round_trip")
        node.users = int(report.get("users", node.users))
        self.node_peaks[view.id] = max(int(report.get("peak_open", 0)), self.node_peaks.get(view.id, 0))
        received_at = view.received_at if view.received_at is not None else now
        node.update(float(report.get("t", now)), view.counters, dict(report.get("errors") or {}), received_at)

    def _worker_index(self, client_id: str) -> int:
        runner = self.environment.runner
        if isinstance(runner, MasterRunner):
            index: int = runner.get_worker_index(client_id)  # type: ignore[no-untyped-call]
            return index
        return len(self.nodes)

    def tick(self) -> None:
        """
        Once a second in the master or local process: sample, and update the local node.

        In slices: the event loop serves the connections between them (at 10,000
        connections each took about a millisecond), and the sample's ``/proc``
        readings are taken off the loop (:meth:`SystemSampler.sample`).
        """
        self.sampler.sample()
        runner = self.environment.runner
        if runner is None:
            return
        if not isinstance(runner, MasterRunner):
            gevent.sleep(0)
            self._update_local()
        gevent.sleep(0)
        self._record_sample()

    def _update_local(self, round_trip: dict[str, Any] | None = None) -> None:
        """Refresh the node of a local run from this process's own figures (``round_trip``: if already known)."""
        runner = self.environment.runner
        assert runner is not None, "a local node is refreshed while its runner runs"
        node = self.nodes.get("local")
        if node is None:
            node = self.nodes["local"] = Node("local", "local")
        self._harvester.harvest(runner.stats)
        node.system = self.sampler.latest
        node.system.loop_lag = run_state(self.environment).loop_lag.figures()  # fresh between samples
        node.round_trip = round_trip if round_trip is not None else latency(runner.stats, window=True)[1]
        node.users = runner.user_count
        now = time.monotonic()
        counters = WsCounters().merge(run_state(self.environment).counters)
        node.update(now, counters, dict(self._harvester.categories), now)

    def exact_peak_open(self, open_now: int = 0) -> int:
        """Most connections open at once, raised at each open: exact in one process; with workers, the sum of
        their exact peaks (an upper bound: they need not have come at the same moment). At least ``open_now``."""
        return max(sum(self.node_peaks.values()) + run_state(self.environment).counters.peak_open, open_now)

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
        self.node_peaks = {}
        run_state(self.environment).counters.restart_peak()  # this process's own (none on a master)
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
        own_peak = run_state(self.environment).counters.peak_open if node.id == "local" else 0
        system = node.system
        return {
            "id": node.id,
            "name": node.name,
            "state": self._state(node),
            "host": system.host if system else "",
            "pid": system.pid if system else 0,
            "users": node.users,
            "connections": {**gauges, "closed": totals["closed"]},
            "peak_open": max(self.node_peaks.get(node.id, 0), gauges["open"], own_peak),
            "totals": totals,
            "rates": rounded(node.rates(now)) if alive else rounded(dict.fromkeys((*RATES, "errors"), 0.0)),
            "errors": errors,
            "round_trip": node.round_trip,
            "system": system_view(system, gauges["open"]),
            "saturated": bool(system and system.saturated),
            "lagging": bool(system and system.lagging),
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
        # The run's latency, computed once: in a local run the local node's is the same.
        names, round_trip = latency(runner.stats, window=True) if runner is not None else ({}, None)
        if runner is not None and not distributed:
            self._update_local(round_trip)
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
        requests = sum(entry["requests"] for entry in names.values())
        failures = sum(entry["failures"] for entry in names.values())
        saturated = [view["name"] for view in workers if view["saturated"] and view["id"] in alive_ids]
        lagging = [view["name"] for view in workers if view["lagging"] and view["id"] in alive_ids]
        aggregate = {
            "workers": len(alive) if distributed else 0,
            "users": runner.user_count if runner is not None else 0,
            "connections": {**gauges, "closed": totals_dict["closed"]},
            "peak_open": self.exact_peak_open(gauges["open"]),
            "totals": totals_dict,
            "rates": rounded(rates),
            "errors": errors,
            "error_rate": round(failures / requests, 6) if requests else 0.0,
            "latency": names,
            "round_trip": round_trip,
            "system": {
                "cpu": round(cpu, 1),
                "rss": sum(s.rss for s in systems),
                "cpu_per_1k": per_1k(cpu, gauges["open"]),
            },
            "saturated": bool(saturated),
            "saturated_workers": saturated,
            "loop_lag": loop_lag_view([n.system for n in self.nodes.values() if n.system is not None], systems),
            "lagging": bool(lagging),
            "lagging_workers": lagging,
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
            "master": system_view(master, 0) if master is not None else None,
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
        Whole-run figures for thresholds and the final summary: ``peak_open`` (:meth:`exact_peak_open`),
        and the rest over the steady state: the samples with at least 90 % of the most sampled open.
        """
        peak = max((s.open for s in self.samples), default=0)
        steady = [s for s in self.samples if peak and s.open >= 0.9 * peak]
        peak_cpu = max((n.system.peak_cpu for n in self.nodes.values() if n.system is not None), default=None)
        saturated_seconds = sum(n.system.saturated_seconds for n in self.nodes.values() if n.system is not None)

        def mean(values: list[float]) -> float | None:
            return sum(values) / len(values) if values else None

        return {
            "peak_open": self.exact_peak_open(self._gauges(self.alive_nodes())["open"]),
            "cpu_per_1k": mean([s.cpu / (s.open / 1000) for s in steady]),
            "mem_per_10k": mean([s.rss / (s.open / 10000) for s in steady]),
            "msg_rate": mean([s.messages_received for s in steady]),
            "send_rate": mean([s.messages_sent for s in steady]),
            "cpu_max": peak_cpu,
            "saturated_seconds": saturated_seconds,
        }


def tick_forever(live: Live) -> None:
    """Call :meth:`Live.tick` every :data:`~wslocust.reporting.system.SAMPLE_INTERVAL`; runs in a greenlet."""
    while live.housekeeping:
        gevent.sleep(SAMPLE_INTERVAL)
        try:
            live.tick()
        except Exception:  # a bad sample must not end the sampling
            logger.exception("wslocust: sampling failed")
