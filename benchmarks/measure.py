"""
Figures over a measured window, shared by the workloads: what changed between
two :class:`~benchmarks.generators.Snapshot` s, and waiting for a server to
be idle between two generators.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .generators import Snapshot
from .processes import Pinning, log, wait_until
from .servers import Server

__all__ = ["Context", "cross_check", "wait_server_idle", "window_figures"]


@dataclass
class Context:
    """What every workload gets from the entry point."""

    pinning: Pinning
    workdir: Path
    """A temporary directory for locustfiles' outputs, removed at the end."""


def window_figures(before: Snapshot, after: Snapshot, pinning: Pinning) -> dict[str, Any]:
    """
    Messages, CPU-seconds and shares between two snapshots.

    ``server_messages`` are the echoes the server sent (its counters, the
    truth); ``generator_echoes`` the round trips the generator completed (a
    cross-check). Shares are CPU-seconds per second of the window (1.0 = one
    core); ``*_core_busy_share`` is how busy the pinned CPU was, other
    processes on this shared machine included.
    """
    window = after.time - before.time
    echoes = after.counts["echoes"] - before.counts["echoes"]
    failures = after.counts["failures"] - before.counts["failures"]
    generator_cpu = after.generator_cpu - before.generator_cpu
    server_cpu = after.server_cpu - before.server_cpu
    server_messages = None
    if before.server is not None and after.server is not None:
        server_messages = after.server["messages_sent"] - before.server["messages_sent"]
    messages = server_messages if server_messages is not None else echoes
    figures: dict[str, Any] = {
        "window_s": round(window, 3),
        "server_messages": server_messages,
        "server_msgs_per_s": round(server_messages / window, 1) if server_messages is not None else None,
        "generator_echoes": echoes,
        "generator_echoes_per_s": round(echoes / window, 1),
        "generator_failures": failures,
        "generator_cpu_s": round(generator_cpu, 3),
        "generator_cpu_share": round(generator_cpu / window, 4),
        "msgs_per_generator_cpu_s": round(messages / generator_cpu, 1) if generator_cpu > 0 else None,
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_share": round(server_cpu / window, 4),
        "counted_by": "server" if server_messages is not None else "generator",
    }
    if pinning.cpus is not None:
        for side, number in zip(("generator", "server"), pinning.cpus, strict=True):
            busy = after.cpus_busy[number] - before.cpus_busy[number]
            figures[f"{side}_core_busy_share"] = round(busy / window, 3)
    if failures:
        figures["first_error"] = after.counts.get("first_error")
    return figures


def cross_check(variant: str, figures: dict[str, Any], in_flight: int) -> None:
    """Warn when the generator's and the server's counts differ by more than the messages in flight."""
    server_messages = figures.get("server_messages")
    echoes = figures["generator_echoes"]
    if server_messages is None:
        return
    if abs(server_messages - echoes) > 2 * in_flight + server_messages // 200:
        log(f"WARNING: {variant}: the server echoed {server_messages} messages but the generator counted {echoes}")


def wait_server_idle(server: Server, timeout: float = 60.0) -> None:
    """Wait until the server holds no connection (the previous generator's are closed)."""
    if not server.alive:
        raise RuntimeError("the server exited\n" + "\n".join(child.output() for child in server.children))

    def idle() -> bool:
        stats = server.stats()
        return stats is None or stats.get("connections_open", 0) == 0

    if wait_until(idle, timeout, interval=0.1) is None:
        log(f"WARNING: the server still holds connections {timeout:g} s after the last generator stopped")
