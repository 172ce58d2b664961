"""
Where a benchmark's processes run and what they use: CPU pinning, and the
CPU-seconds and memory of a process tree.

- :func:`plan_pinning` puts generators on one CPU and servers on another with
  ``taskset``.
- :class:`ProcessTree` sums CPU-seconds and RSS over a process and all its
  descendants; :class:`TreeSampler` watches its peak RSS in a thread.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

__all__ = ["Pinning", "ProcessTree", "TreeSampler", "busy_seconds", "plan_pinning"]


# CPU pinning -----------------------------------------------------------------


@dataclass
class Pinning:
    generator: list[str]
    """Command prefix for generators: ``taskset -c N`` or nothing."""
    server: list[str]
    """Command prefix for servers."""
    description: str
    cpus: tuple[int, int] | None = None
    """(generator CPU, server CPU) when pinned."""
    available: tuple[int, ...] = ()
    """Every CPU this process may use."""


def plan_pinning() -> Pinning:
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    if len(cpus) < 2:
        return Pinning([], [], f"not pinned: only CPU {cpus} available (server and generator share it)", None, cpus)
    if shutil.which("taskset") is None:
        return Pinning([], [], "not pinned: taskset not found (install util-linux)", None, cpus)
    generator, server = cpus[0], cpus[1]
    return Pinning(
        ["taskset", "-c", str(generator)],
        ["taskset", "-c", str(server)],
        f"generator on CPU {generator}, server on CPU {server} (taskset); {len(cpus)} CPUs available",
        (generator, server),
        cpus,
    )


def busy_seconds() -> list[float]:
    """Per CPU, the seconds spent on anything but idle and I/O wait since boot."""
    return [t.user + t.nice + t.system + t.irq + t.softirq + t.steal for t in psutil.cpu_times(percpu=True)]


# Process trees ---------------------------------------------------------------


class ProcessTree:
    """
    A process and its descendants (Locust's forked workers, a ``taskset`` that
    exec'd), read with psutil. CPU-seconds of a member that exited keep their
    last value read, so call :meth:`cpu_seconds` at the edges of a window
    while every member lives.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._last_cpu: dict[int, float] = {}

    def members(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def read(self) -> tuple[float, int, dict[int, float]]:
        """(CPU-seconds of every member ever seen, summed RSS of the live members, CPU-seconds per live pid)."""
        rss = 0
        live: dict[int, float] = {}
        for member in self.members():
            try:
                with member.oneshot():
                    times = member.cpu_times()
                    memory = member.memory_info().rss
            except psutil.Error:
                continue
            live[member.pid] = times.user + times.system
            rss += memory
        self._last_cpu.update(live)
        return sum(self._last_cpu.values()), rss, live

    def cpu_seconds(self) -> float:
        return self.read()[0]

    def system_seconds(self) -> float:
        """CPU-seconds in the kernel of the live members (read at a window's edges, as :meth:`cpu_seconds`)."""
        return self.total(lambda member: member.cpu_times().system)

    def total(self, read: Callable[[psutil.Process], float]) -> float:
        """``read`` of every live member, summed (a member that exits meanwhile counts 0)."""
        total = 0.0
        for member in self.members():
            try:
                total += read(member)
            except psutil.Error:
                continue
        return total

    def rss(self) -> int:
        return self.read()[1]


class TreeSampler:
    """Samples a :class:`ProcessTree` every ``interval`` seconds in a thread: peak RSS, and RSS over time."""

    def __init__(self, tree: ProcessTree, interval: float = 0.25) -> None:
        self.tree = tree
        self.interval = interval
        self.peak_rss = 0
        self.samples: list[tuple[float, float, int]] = []
        """(monotonic time, CPU-seconds, RSS)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sampler-{tree.pid}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            cpu, rss, live = self.tree.read()
            if live:
                self.samples.append((started, cpu, rss))
                self.peak_rss = max(self.peak_rss, rss)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
