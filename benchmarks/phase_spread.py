"""
How spread out in time the sends of a paced run are: the largest share of sends in any phase window.

Users paced at one message per period (``constant_pacing(1)``, a periodic message every second)
each send at a phase of that period, ``time.time() % period``. Users that send at the same phase
reach the server as one burst, and both sides' latency tails then measure the burst rather than
the service. :func:`largest_window_share` says how bad it is: the largest fraction of all sends
that fall within ``window`` seconds of each other, the window wrapping around the period (a
window from 0.98 s to 0.03 s is one window). Perfectly spread sends give ``window / period``
(5 % for 50 ms of a second); sends in lockstep give 100 %.

A locustfile records the phases, e.g. ``print(time.time() % 1, file=phases)`` at each send, and
the benchmark or test reads them back::

    from benchmarks.phase_spread import describe_phase_spread, read_phases
    print(describe_phase_spread(read_phases(path)))   # "1,600 sends: at most 6.2 % in any 50 ms"

Run on such a file: ``python -m benchmarks.phase_spread PHASES_FILE [--window-ms 50]``.
"""

from __future__ import annotations

import argparse
import bisect
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["describe_phase_spread", "largest_window_share", "main", "read_phases"]


def largest_window_share(phases: Iterable[float], window: float = 0.05, period: float = 1.0) -> float:
    """
    The largest fraction of ``phases`` that lie within one window of ``window`` seconds.

    Args:
        phases: each send's phase in seconds; taken modulo ``period``, so raw ``time.time()``
            values do as well.
        window: the window's width in seconds, less than ``period``.
        period: the pacing period the phases repeat with.

    Returns:
        A fraction from 0 to 1 (0 for no phases): the share of the most crowded window, windows
        wrapping around the period.

    Raises:
        ValueError: ``window`` or ``period`` out of range.
    """
    if not 0 < window < period:
        raise ValueError(f"the window ({window:g} s) must be more than 0 and less than the period ({period:g} s)")
    ordered = sorted(phase % period for phase in phases)
    if not ordered:
        return 0.0
    # Each window starting at a send: count the sends up to window later, across the wrap too.
    unrolled = ordered + [phase + period for phase in ordered]
    most = 0
    for start, phase in enumerate(ordered):
        end = bisect.bisect_left(unrolled, phase + window, lo=start)
        most = max(most, end - start)
    return most / len(ordered)


def describe_phase_spread(phases: Sequence[float], window: float = 0.05, period: float = 1.0) -> str:
    """One line for a benchmark's output, e.g. ``1,600 sends: at most 6.2 % in any 50 ms of 1 s (even: 5.0 %)``."""
    share = largest_window_share(phases, window, period)
    return (
        f"{len(phases):,} sends: at most {share:.1%} in any {window * 1000:g} ms of {period:g} s "
        f"(even: {window / period:.1%})"
    )


def read_phases(path: Path | str) -> list[float]:
    """Phases written one per line (blank lines skipped), as a locustfile appends them."""
    return [float(line) for line in Path(path).read_text().split()]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.phase_spread FILE [--window-ms W] [--period-s P]``: print the spread of FILE's phases."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phase_spread", description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, help="one phase (or time.time()) per line, in seconds")
    parser.add_argument("--window-ms", type=float, default=50.0, help="window width (default: %(default)g)")
    parser.add_argument("--period-s", type=float, default=1.0, help="the pacing period (default: %(default)g)")
    args = parser.parse_args(argv)
    print(describe_phase_spread(read_phases(args.file), args.window_ms / 1000, args.period_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
