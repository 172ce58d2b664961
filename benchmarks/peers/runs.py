"""
One measured run of one tool against the echo server, the same way for every
tool: wslocust, the typical Locust user, Tsung, Artillery and the lean loop.

The tool is started pinned to the generator CPU, in a session of its own; its
whole process tree is sampled (every process and thread it starts: Locust,
Tsung's shell script, ``erl`` and its Erlang VM, Artillery's ``node`` and its
worker thread; the ``timeout`` wrapper too). Messages are counted by the
server alone (``GET /stats``), since the peers cannot be asked for theirs;
the run waits until the server holds every connection, then measures one
window. Tsung's Erlang port mapper (``epmd``) detaches itself from the tree:
when the run started it, it is stopped by its pid after the run (its CPU is
not counted; it does nothing after the start).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from ..generators import generator_environment, locust_command
from ..processes import Child, ProcessTree, TreeSampler, log, wait_until
from ..servers import Server
from . import artillery, tsung

__all__ = ["LEAN_LOOP", "Plan", "measure_run", "tool_command"]

LEAN_LOOP = Path(__file__).resolve().parents[1] / "lean_loop.py"
PEER_STOP_TIMEOUT = 5.0
"""Seconds a tool gets after SIGTERM (Artillery waits for its users' endless loops; the rest stop at once)."""


@dataclass
class Plan:
    """What one run does."""

    mode: str
    """``closed-loop`` or ``periodic``."""
    connections: int
    size: int
    spawn_rate: float
    interval: float
    """Seconds between a connection's echoes (``periodic``)."""
    settle: float
    """Seconds between every connection open and the window."""
    window: float
    """Measured seconds."""

    @property
    def bound(self) -> float:
        """Seconds after which the tool stops by itself, whatever happens."""
        return self.connections / self.spawn_rate + self.settle + self.window + 90


def tool_command(variant: str, plan: Plan, url: str, workdir: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of ``variant`` for ``plan`` (its configuration written into ``workdir``)."""
    bound = f"{plan.bound:.0f}"
    if variant in ("wslocust-user", "wslocust-window", "locust-websocket-client"):
        command = locust_command(
            variant, plan.mode, url, plan.connections, plan.spawn_rate, plan.bound,
            workdir / f"peers-{variant}.json", size=plan.size, interval=plan.interval,
        )  # fmt: skip
        return command, generator_environment()
    if variant == "lean-loop":
        command = [sys.executable, str(LEAN_LOOP), url, "--connections", str(plan.connections),
                   "--size", str(plan.size), "--max-seconds", bound]  # fmt: skip
        return command, generator_environment()
    wrapper = ["timeout", "-k", "5", bound]  # a bound even if this process dies without stopping it
    if variant == "tsung":
        config = workdir / f"tsung-{plan.mode}.xml"
        text = tsung.config(
            plan.mode, url, plan.connections, size=plan.size, spawn_rate=plan.spawn_rate, interval=plan.interval,
            seconds=plan.bound - 10,
        )  # fmt: skip
        config.write_text(text)
        logs = workdir / "tsung-logs"
        logs.mkdir(exist_ok=True)
        return [*wrapper, *tsung.command(config, logs)], tsung.environment()
    if variant == "artillery":
        config = workdir / f"artillery-{plan.mode}.yml"
        text = artillery.config(
            plan.mode, url, plan.connections, size=plan.size, spawn_rate=plan.spawn_rate, interval=plan.interval
        )
        config.write_text(text)
        return [*wrapper, *artillery.command(config)], artillery.environment()
    raise ValueError(f"{variant!r} is not a tool of the peers workload")


def _epmd_pids() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "epmd"}


WindowWatch = Callable[[int, float], Callable[[], None]]
"""Called with the tool's pid and the window's seconds as its window starts; what it returns, as it ends."""


def measure_run(
    variant: str, plan: Plan, server: Server, prefix: list[str], workdir: Path, watch: WindowWatch | None = None
) -> dict[str, Any]:
    """
    Run ``variant`` once and measure its window (``watch``, e.g. a profiler, watches the window).

    Returns:
        The run's figures: ``server_msgs_per_s``, ``msgs_per_generator_cpu_s``,
        ``generator_cpu_share``, ``generator_system_us_per_msg`` (its CPU in the kernel per echo),
        ``server_cpu_share``, ``server_cpu_us_per_msg``, ``server_wakeups_per_msg``,
        ``generator_peak_rss``, ``generator_idle_rss`` (before the first connection opened),
        ``connections_open``, ``ramp_s``...

    Raises:
        RuntimeError: the tool exited early, or did not open its connections in time.
    """
    command, env = tool_command(variant, plan, server.url, workdir)
    epmd_before = _epmd_pids() if variant == "tsung" else set()
    child = Child(variant, [*prefix, *command], env=env, cwd=workdir)
    sampler = TreeSampler(ProcessTree(child.pid))
    tree = sampler.tree
    first_connection = [float("inf")]  # when the server first counted one of the tool's connections
    try:
        ramp_bound = plan.connections / plan.spawn_rate + 60

        def connected() -> bool:
            if not child.alive:
                raise RuntimeError(f"{variant} exited early\n{child.output()}")
            stats = server.stats()
            if stats and stats.get("connections_open", 0) > 0:
                first_connection[0] = min(first_connection[0], time.monotonic())
            return bool(stats and stats.get("connections_open", 0) >= plan.connections)

        if wait_until(connected, ramp_bound, interval=0.05) is None:
            stats = server.stats() or {}
            raise RuntimeError(
                f"{variant}: {stats.get('connections_open')} of {plan.connections} connections open "
                f"after {ramp_bound:g} s\n{child.output()}"
            )
        ramp_s = time.monotonic() - child.started
        time.sleep(plan.settle)
        before = _edge(server, tree)
        finish = watch(child.pid, plan.window) if watch is not None else None
        time.sleep(plan.window)
        after = _edge(server, tree)
        if finish is not None:
            finish()
    finally:
        child.stop(PEER_STOP_TIMEOUT)
        sampler.stop()
        for pid in _epmd_pids() - epmd_before:  # the port mapper this run's Tsung started
            try:
                psutil.Process(pid).terminate()
            except psutil.Error:
                pass
    # The last sample a poll interval before the server saw a connection: the tool started, nothing open.
    idle = [rss for at, _cpu, rss in sampler.samples if at < first_connection[0] - 0.05]
    return _figures(variant, plan, before, after, ramp_s, sampler.peak_rss, idle[-1] if idle else None)


def _edge(server: Server, tree: ProcessTree) -> dict[str, Any]:
    stats = server.stats()
    if stats is None:
        raise RuntimeError("the server's /stats did not answer")
    return {
        "time": time.monotonic(),
        "stats": stats,
        "cpu": tree.cpu_seconds(),
        "system_cpu": tree.system_seconds(),
        "server_cpu": server.cpu_seconds(),
        "server_wakeups": server.wakeups(),
    }


def _figures(
    variant: str,
    plan: Plan,
    before: dict[str, Any],
    after: dict[str, Any],
    ramp_s: float,
    peak_rss: int,
    idle_rss: int | None,
) -> dict[str, Any]:
    window = after["time"] - before["time"]
    messages = after["stats"]["messages_sent"] - before["stats"]["messages_sent"]
    cpu = after["cpu"] - before["cpu"]
    server_cpu = after["server_cpu"] - before["server_cpu"]
    closed = after["stats"].get("connections_closed", 0) - before["stats"].get("connections_closed", 0)
    if closed:
        log(f"WARNING: {variant}: {closed} connections closed during the window")
    return {
        "variant": variant,
        "mode": plan.mode,
        "connections_open": after["stats"].get("connections_open"),
        "connections_closed_in_window": closed,
        "ramp_s": round(ramp_s, 2),
        "window_s": round(window, 3),
        "server_messages": messages,
        "server_msgs_per_s": round(messages / window, 1),
        "generator_cpu_s": round(cpu, 3),
        "generator_system_us_per_msg": round((after["system_cpu"] - before["system_cpu"]) / messages * 1e6, 1)
        if messages
        else None,
        "generator_cpu_share": round(cpu / window, 4),
        "msgs_per_generator_cpu_s": round(messages / cpu, 1) if cpu > 0 else None,
        "server_cpu_share": round(server_cpu / window, 4),
        "server_cpu_us_per_msg": round(server_cpu / messages * 1e6, 1) if messages else None,
        "server_wakeups_per_msg": round((after["server_wakeups"] - before["server_wakeups"]) / messages, 3)
        if messages
        else None,
        "generator_peak_rss": peak_rss,
        "generator_idle_rss": idle_rss,
    }
