"""
Figures over a measured window, shared by the workloads: what changed between
two :class:`~benchmarks.generators.Snapshot` s, waiting for a server to be
idle between two generators, and running the variants in turn so that one's
failure becomes a row of the table rather than the end of the workload.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .generators import Snapshot
from .processes import Pinning, log, wait_until
from .servers import Server

__all__ = ["Context", "attempt", "cross_check", "run_variants", "wait_server_idle", "window_figures"]


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


def attempt(variant: str, run: Callable[..., dict[str, Any]], *arguments: Any) -> dict[str, Any]:
    """
    Run one variant of a workload: ``run(*arguments)``.

    Returns:
        Its result, or ``{"variant", "error"}`` when it raised a
        :class:`RuntimeError` (a generator or server that did not start, or
        exited early), so that the other variants still run and the table
        prints the failure in its row.
    """
    try:
        return run(*arguments)
    except RuntimeError as exc:
        log(f"{variant} FAILED: {exc}")
        return {"variant": variant, "error": str(exc)}


def run_variants(
    workload: str,
    detail: str,
    server: Server,
    run_variant: Callable[..., dict[str, Any]],
    args: Any,
    context: Context,
    *,
    idle_timeout: float = 60.0,
    reset_latency: bool = False,
) -> list[dict[str, Any]]:
    """
    Run ``run_variant(variant, server, args, context)`` for each of ``args.variants``, then stop the server.

    Args:
        workload: its name, and ``detail`` what each run does, for the progress line.
        idle_timeout: seconds the server gets to close the previous variant's connections.
        reset_latency: forget the server's recorded times before each variant (the Node.js server).

    Returns:
        One result per variant, in order; a variant that failed has an ``error`` (see :func:`attempt`).
    """
    results = []
    try:
        for variant in args.variants:
            log(f"{workload}, {variant}: {detail}")
            wait_server_idle(server, idle_timeout)
            if reset_latency:
                server.reset_latency()
            results.append(attempt(variant, run_variant, variant, server, args, context))
    finally:
        server.stop()
    return results
