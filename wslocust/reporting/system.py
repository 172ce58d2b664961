"""
What the load generator's own machine is doing: CPU, memory and network of
this process and of its host, sampled with psutil once a second, and the lag
of its event loop (:mod:`wslocust.run.loop_lag`).

A generator whose CPU stays pinned measures its own queueing, not the
server's latency: :class:`SystemSampler` flags a process as *saturated* once
its CPU has stayed at or above :data:`SATURATION_CPU_PERCENT` for
:data:`SATURATION_SECONDS` in a row, and counts how long it stayed so. A
process whose event loop stalls delays the replies that arrive meanwhile,
whatever its CPU: a one-second window with a loop-lag p99 above
:data:`~wslocust.run.loop_lag.LAG_WARNING_MS` makes it *lagging*
(:attr:`SystemSample.lagging`), the other half of the saturation signal.

The readings of ``/proc`` are taken in gevent's thread pool, off the event
loop (see :meth:`SystemSampler.sample`).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gevent
import psutil

from wslocust.run.loop_lag import LAG_WARNING_MS, LagFigures, LoopLag

__all__ = [
    "SAMPLE_INTERVAL",
    "SATURATION_CPU_PERCENT",
    "SATURATION_SECONDS",
    "SystemSample",
    "SystemSampler",
]

SATURATION_CPU_PERCENT = 90.0
"""CPU % of one generator process (100 = one core) above which its latency is suspect."""
SATURATION_SECONDS = 5.0
"""How long the CPU must stay above the threshold before the process counts as saturated."""
SAMPLE_INTERVAL = 1.0
"""Seconds between samples."""


@dataclass
class SystemSample:
    """One reading of a generator process and its host. Sent to the master in each worker report."""

    host: str = ""
    """The host name, which groups processes of one machine."""
    pid: int = 0
    cpu: float = 0.0
    """CPU % of this process over the last interval (100 = one core busy)."""
    rss: int = 0
    """Resident memory of this process, bytes."""
    fds: int = 0
    """Open file descriptors of this process (one per connection, plus a few)."""
    host_cpu: float = 0.0
    """CPU % of the whole host, averaged over its cores (100 = every core busy)."""
    host_cores: int = 0
    host_memory: float = 0.0
    """Memory in use on the host, %."""
    net_in: float = 0.0
    """Bytes per second received by the host, all interfaces (loopback included)."""
    net_out: float = 0.0
    """Bytes per second sent by the host, all interfaces (loopback included)."""
    saturated: bool = False
    """CPU has been >= SATURATION_CPU_PERCENT for at least SATURATION_SECONDS, up to now."""
    saturated_seconds: float = 0.0
    """Total time spent saturated since the process started."""
    peak_cpu: float = 0.0
    """Highest ``cpu`` sampled since the process started."""
    loop_lag: LagFigures = field(default_factory=LagFigures)
    """Its event loop's lag, recent and over the run (:class:`~wslocust.run.loop_lag.LagFigures`, ms)."""

    @property
    def lagging(self) -> bool:
        """A window of the last few seconds had a loop-lag p99 above :data:`~wslocust.run.loop_lag.LAG_WARNING_MS`."""
        return self.loop_lag.recent_p99 > LAG_WARNING_MS

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SystemSample:
        """Build from :meth:`as_dict`; unknown keys (a newer worker) are ignored."""
        known = cls.__dataclass_fields__
        values = {key: value for key, value in data.items() if key in known}
        lag = values.get("loop_lag")
        if isinstance(lag, dict):
            fields = LagFigures.__dataclass_fields__
            values["loop_lag"] = LagFigures(**{key: value for key, value in lag.items() if key in fields})
        return cls(**values)


FD_SAMPLE_EVERY = 10
"""Where the kernel cannot count open descriptors in O(1), they are listed on every 10th sample only."""


class SystemSampler:
    """
    Takes :class:`SystemSample` readings of this process; call :meth:`sample`
    about once a second (``wslocust.reporting.live`` runs it in a greenlet).

    Args:
        clock: the clock of the saturation streaks.
        loop_lag: the process's loop-lag probe, whose figures each sample carries.
        off_loop: read ``/proc`` in gevent's thread pool (True), or in the calling greenlet.
    """

    def __init__(self, clock: Any = time.monotonic, loop_lag: LoopLag | None = None, off_loop: bool = True) -> None:
        self._clock = clock
        self._loop_lag = loop_lag
        self.off_loop = off_loop
        """Read ``/proc`` in gevent's thread pool rather than on the event loop."""
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement
        psutil.cpu_percent(None)
        self._last_time = clock()
        self._last_net = _net_counters()
        self._hot_since: float | None = None
        self._samples = 0
        self.latest = SystemSample(host=socket.gethostname(), pid=os.getpid(), host_cores=psutil.cpu_count() or 1)

    def sample(self) -> SystemSample:
        """
        Take a reading now and return it (also kept as :attr:`latest`).

        With :attr:`off_loop`, the calling greenlet waits while a thread of
        gevent's pool reads ``/proc``; the event loop serves the connections
        meanwhile, but for the moments that thread holds the GIL.
        """
        if self.off_loop:
            readings = gevent.get_hub().threadpool.apply(self._read)
        else:
            readings = self._read()
        now = self._clock()
        elapsed = max(now - self._last_time, 1e-6)
        cpu, rss, fds, host_cpu, host_memory, net = readings
        sample = self.latest
        sample.cpu = cpu
        sample.rss = rss if rss is not None else sample.rss
        sample.fds = fds if fds is not None else sample.fds
        sample.host_cpu = host_cpu
        sample.host_memory = host_memory
        sample.net_in = max(0.0, (net[1] - self._last_net[1]) / elapsed)
        sample.net_out = max(0.0, (net[0] - self._last_net[0]) / elapsed)
        sample.peak_cpu = max(sample.peak_cpu, sample.cpu)
        if self._loop_lag is not None:
            sample.loop_lag = self._loop_lag.figures()
        self._track_saturation(sample, now, elapsed)
        self._last_time, self._last_net = now, net
        return sample

    def _read(self) -> tuple[float, int | None, int | None, float, float, tuple[int, int]]:
        """The raw readings: (cpu, rss, fds, host cpu, host memory, (bytes sent, received))."""
        rss = fds = None
        cpu = self._process.cpu_percent(None)
        try:
            rss = self._process.memory_info().rss
            fds = _count_fds()
            # Without the kernel's count, listing /proc/self/fd at 10K connections every
            # second took ~10 % of a worker's CPU: it is listed every 10th time only.
            if fds is None and self._samples % FD_SAMPLE_EVERY == 0:
                fds = self._process.num_fds()
        except (psutil.Error, AttributeError):  # pragma: no cover - num_fds is POSIX only
            pass
        self._samples += 1
        return cpu, rss, fds, psutil.cpu_percent(None), psutil.virtual_memory().percent, _net_counters()

    def _track_saturation(self, sample: SystemSample, now: float, elapsed: float) -> None:
        if sample.cpu < SATURATION_CPU_PERCENT:
            self._hot_since = None
            sample.saturated = False
            return
        if self._hot_since is None:
            self._hot_since = now - elapsed
        hot_for = now - self._hot_since
        if hot_for >= SATURATION_SECONDS:
            # The streak counts from its start once it qualifies, then each interval.
            sample.saturated_seconds += hot_for if not sample.saturated else elapsed
            sample.saturated = True


def _count_fds() -> int | None:
    """Open descriptors, as Linux (6.2 and later) counts them in the size of /proc/self/fd; None elsewhere."""
    try:
        count = os.stat("/proc/self/fd").st_size
    except OSError:  # pragma: no cover - no /proc
        return None
    return count or None  # older kernels say 0


def _net_counters() -> tuple[int, int]:
    counters = psutil.net_io_counters()
    if counters is None:  # pragma: no cover - no network interface at all
        return (0, 0)
    return (counters.bytes_sent, counters.bytes_recv)
