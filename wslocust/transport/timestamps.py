"""
Kernel receive timestamps: when the bytes of a reply reached this host, however late the event loop reads them.

A reply's latency is measured up to the moment it arrived. Timed when the receiving greenlet gets round to
reading it, every stall of the event loop (another greenlet's work, a garbage collection, a busy CPU) would
be added to it. Linux stamps every incoming segment as it is received; with ``SO_TIMESTAMPNS`` set on a
socket, each ``recvmsg()`` returns the stamp of the last segment it read as ancillary data (``SCM_TIMESTAMPNS``,
a ``struct timespec``). :func:`enable_receive_timestamps` sets the option, :func:`kernel_time` reads the stamp
out of ``recvmsg()``'s ancillary data, and :class:`ClockMap` converts it to the clock send times are taken
with, :func:`time.perf_counter`.

Why these choices:

- Python has no ``socket.SO_TIMESTAMPNS``, and its value depends on the architecture (:data:`OPTIONS`). We ask
  for ``SO_TIMESTAMPNS_NEW`` first (Linux 5.1+): its stamp is a ``struct __kernel_timespec``, two 64-bit
  integers on every architecture. Older kernels refuse it, and get ``SO_TIMESTAMPNS_OLD``, whose stamp is the
  architecture's own ``struct timespec``, two native ``long`` (16 bytes on 64-bit, 8 on 32-bit). The stamp is
  parsed by the type of the message the kernel sent, so the two never get mixed up.
- The stamp is CLOCK_REALTIME, the send times are CLOCK_MONOTONIC (``perf_counter``). On Linux, both run at the
  same rate (NTP's frequency corrections slew both), so their difference changes only when the wall clock is
  stepped (NTP step, ``settimeofday``, a leap second). :class:`ClockMap` measures that difference again every
  :attr:`ClockMap.refresh` seconds, lazily at a read (about a microsecond each time: a check at every read
  would cost more than that per read), and counts a change of more than :attr:`ClockMap.step` as a step,
  rather than trusting one offset for a whole run. A stamp that maps to after its read (a step forwards)
  has the offset measured at once.
- Where a stamp cannot be trusted (later than the read, absurdly old, or possibly taken before a step that was
  found since), the read time is used instead: a reply timed late is better than one timed wrong.
"""

from __future__ import annotations

import platform
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "ANCILLARY_SIZE",
    "LAYOUTS",
    "OPTIONS",
    "ClockMap",
    "ReceiveTiming",
    "TimingCounts",
    "enable_receive_timestamps",
    "kernel_time",
    "shared_clock_map",
    "timestamp_options",
]

SOL_SOCKET = socket.SOL_SOCKET


class TimingCounts(Protocol):
    """Where a connection counts how it timed what it received (:class:`wslocust.run.counters.WsCounters` is one)."""

    received_timed_by_kernel: int
    """Messages and pongs timed from the kernel's receive time (upgrade responses included)."""
    received_timed_at_read: int
    """Messages and pongs timed when they were read: the kernel gave no usable stamp."""


class ReceiveTiming:
    """A connection's own :class:`TimingCounts`, when it is given none to share."""

    def __init__(self) -> None:
        self.received_timed_by_kernel = 0
        """Messages and pongs timed from the kernel's receive time (upgrade responses included)."""
        self.received_timed_at_read = 0
        """Messages and pongs timed when they were read: the kernel gave no usable stamp."""


def timestamp_options(machine: str) -> tuple[int, int]:
    """
    Return (``SO_TIMESTAMPNS_NEW``, ``SO_TIMESTAMPNS_OLD``) for a ``platform.machine()`` name.

    The values of Linux's ``arch/*/include/uapi/asm/socket.h``: most architectures (x86, arm, aarch64,
    powerpc, s390, riscv, mips, alpha) share ``asm-generic``'s 64 and 35; parisc and sparc number their
    socket options their own way.
    """
    if machine.startswith("parisc"):
        return 0x4039, 0x4013
    if machine.startswith("sparc"):
        return 0x42, 0x21
    return 64, 35


OPTIONS = timestamp_options(platform.machine())
"""This machine's (``SO_TIMESTAMPNS_NEW``, ``SO_TIMESTAMPNS_OLD``), tried in that order."""

LAYOUTS = {
    OPTIONS[0]: struct.Struct("=qq"),  # struct __kernel_timespec: 64-bit seconds and nanoseconds everywhere
    OPTIONS[1]: struct.Struct("@ll"),  # struct timespec: the architecture's long, 32 bits on 32-bit ones
}
"""The stamp's layout by the message type the kernel sends it with (the option's number)."""

ANCILLARY_SIZE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 0
"""Room for one timestamp message: the ``ancbufsize`` to pass to ``recvmsg()``."""


def enable_receive_timestamps(sock: socket.socket) -> bool:
    """
    Ask the kernel to stamp what ``sock`` receives (``SO_TIMESTAMPNS``).

    Set it before the data to time is sent for: a segment queued before the option took effect carries no
    stamp (those reads fall back to their read time).

    Returns:
        True if the option is set; False on another system than Linux, or where the kernel refuses both
        variants (then :func:`kernel_time` finds nothing and reads are timed when they happen).
    """
    if not sys.platform.startswith("linux") or not ANCILLARY_SIZE:
        return False
    for option in OPTIONS:
        try:
            sock.setsockopt(SOL_SOCKET, option, 1)
        except OSError:  # ENOPROTOOPT: a kernel older than the variant
            continue
        return True
    return False


def kernel_time(ancdata: list[tuple[int, int, bytes]]) -> float | None:
    """
    The receive time in ``recvmsg()``'s ancillary data, in CLOCK_REALTIME seconds (``time.time()``'s clock).

    Args:
        ancdata: the second item ``socket.recvmsg()`` returns.

    Returns:
        The kernel's stamp of the last segment read, or None when the kernel gave none (option off, or the
        segment arrived before it was set).
    """
    for level, kind, data in ancdata:
        layout = LAYOUTS.get(kind)
        if level == SOL_SOCKET and layout is not None and len(data) >= layout.size:
            seconds, nanoseconds = layout.unpack_from(data)
            if seconds or nanoseconds:
                return seconds + nanoseconds * 1e-9
    return None


class ClockMap:
    """
    Converts CLOCK_REALTIME times (kernel stamps) to ``perf_counter()`` times, one process-wide instance
    (:data:`clock_map`) shared by every connection.

    The offset between the two clocks is measured by bracketing: ``perf``, ``realtime``, ``perf`` again, the
    realtime reading taken as the middle of the two others, the tightest of :attr:`samples` tries kept (a try
    that the OS interrupted is wide and loses). Its error is half that width, a fraction of a microsecond.

    Args:
        realtime: the wall clock, seconds (``time.time``); tests pass a fake one that steps.
        perf: the clock send times use, seconds (``time.perf_counter``).
    """

    step = 0.001
    """Seconds the offset may move before it counts as a clock step: far above the measuring error (under a
    microsecond), far below a latency that matters."""
    refresh = 0.05
    """Seconds after which the offset is measured again: how long a step backwards may go unseen (replies
    read meanwhile are timed late by the step). Each measurement costs about a microsecond."""
    max_age = 60.0
    """A stamp older than this many seconds before its read is not believed (a garbled stamp, or a step back
    that went unseen): longer than any reply waits."""
    samples = 5
    """Bracketing tries per measurement."""

    def __init__(
        self,
        realtime: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._realtime = realtime
        self._perf = perf
        self.offset = 0.0
        """CLOCK_REALTIME minus ``perf_counter()``, seconds."""
        self.steps = 0
        """Clock steps found so far."""
        self.stepped_at = float("-inf")
        """``perf_counter()`` time when the latest step was found: a stamp read after it on a connection that
        last read before it may have been taken before the step, in the old wall clock."""
        self._next_refresh = float("-inf")
        self.measure()

    def measure(self) -> float:
        """Measure the offset now; count a step if it moved by more than :attr:`step`. Returns the offset."""
        perf, realtime = self._perf, self._realtime
        best_width = float("inf")
        offset = self.offset
        for _ in range(self.samples):
            before = perf()
            wall = realtime()
            after = perf()
            if after - before < best_width:
                best_width = after - before
                offset = wall - (before + after) / 2
        if self._next_refresh != float("-inf") and abs(offset - self.offset) > self.step:
            self.steps += 1
            self.stepped_at = self._perf()
        self.offset = offset
        self._next_refresh = self._perf() + self.refresh
        return offset

    def to_perf(self, stamp: float, read_at: float, previous_read_at: float) -> float | None:
        """
        Convert a kernel stamp to ``perf_counter()`` time.

        Args:
            stamp: the kernel's receive time (CLOCK_REALTIME seconds, :func:`kernel_time`).
            read_at: ``perf_counter()`` right after the read that returned it.
            previous_read_at: ``perf_counter()`` after the previous read on the same socket.

        Returns:
            When the bytes arrived, on ``perf_counter()``'s clock; None when the stamp cannot be trusted
            (the caller times the read instead).
        """
        received_at = stamp - self.offset
        if read_at < self._next_refresh and previous_read_at >= self.stepped_at and received_at <= read_at:
            if read_at - received_at <= self.max_age:
                return received_at  # the hot path: a handful of comparisons
            return None
        if read_at >= self._next_refresh or received_at > read_at:
            received_at = stamp - self.measure()
        if previous_read_at < self.stepped_at:
            return None  # the wall clock stepped since this socket's last read: the stamp may predate it
        if received_at > read_at:
            # Stamped "after" the read: within the measuring error, the read is the arrival; far beyond,
            # the stamp is wrong.
            return read_at if received_at - read_at < self.step else None
        if read_at - received_at > self.max_age:
            return None
        return received_at


clock_map: ClockMap | None = None


def shared_clock_map() -> ClockMap:
    """The process's :class:`ClockMap`, made on first use (no clock reading at import time)."""
    global clock_map
    if clock_map is None:
        clock_map = ClockMap()
    return clock_map
