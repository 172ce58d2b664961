"""
Optional py-spy sampling of a generator during its measured window
(``throughput --profile DIR``): the stacks go to ``DIR/<variant>.txt`` and the
top functions by own time are printed. The profiled figures are perturbed.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .processes import Pinning, log

__all__ = ["describe_layers", "finish_profiler", "layer_shares", "start_profiler", "top_functions"]


def start_profiler(
    variant: str, pid: int, directory: Path, duration: float, pinning: Pinning
) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        log("--profile needs py-spy: .venv/bin/pip install py-spy")
        return None
    directory.mkdir(parents=True, exist_ok=True)
    output = directory / f"{variant}.txt"
    # On the server's CPU, so that sampling does not take the generator's. py-spy pauses the
    # generator for each sample (about 1% at 200 Hz): unpaused, a third of the stacks come out torn.
    command = [
        *pinning.server, py_spy, "record", "--pid", str(pid), "--duration", str(max(1, int(duration))),
        "--rate", "200", "--format", "raw", "--function", "--subprocesses", "--output", str(output),
    ]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_profiler(
    variant: str, profiler: subprocess.Popen[bytes], directory: Path, duration: float, quiet: bool = False
) -> str | None:
    """Wait for py-spy; print the top functions (unless ``quiet``) and return the collapsed stacks, or None."""
    try:
        _, stderr = profiler.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()
        log(f"py-spy on {variant} did not finish")
        return None
    output = directory / f"{variant}.txt"
    if not output.exists():
        log(f"py-spy on {variant} wrote nothing: {stderr.decode(errors='replace').strip()[-500:]}")
        return None
    collapsed = output.read_text()
    if not quiet:
        print(f"\npy-spy {variant}: top 10 functions by own time (whole stacks in {output})")
        print(top_functions(collapsed, 10))
    return collapsed


LAYERS = (
    ("wslocust/codec/", "codec"),
    ("wslocust/transport/", "sockets and frames (system calls included)"),
    ("wslocust/user/", "wslocust's user"),
    ("wslocust/", "wslocust's statistics and run"),
    ("locust/", "Locust"),
    ("gevent/", "gevent"),
)
"""Where a frame's file is (its path, as py-spy names it) and the layer of wslocust it counts for."""


def _busy_stacks(collapsed: str) -> tuple[list[tuple[list[str], int]], int]:
    """The stacks of py-spy's raw output that did work, and the count of samples in the idle event loop."""
    stacks = []
    idle = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        if not frames or any("gevent/threadpool.py" in frame for frame in frames[:1]):
            continue  # an idle thread of gevent's DNS resolver pool, not the generator's work
        if frames[-1].startswith("Hub.run ("):
            # The event loop itself, mostly waiting in epoll (it holds the GIL, so py-spy
            # counts it as busy): left out, so that the shares are of the work done.
            idle += int(count_text)
            continue
        stacks.append((frames, int(count_text)))
    return stacks, idle


def layer_shares(collapsed: str) -> list[tuple[str, float]]:
    """
    The share of the busy samples of py-spy's raw output spent in each layer (own time: the function
    at the top of the stack), largest first; functions of no layer (the locustfile, the standard
    library) count as ``other``.
    """
    counts: collections.Counter[str] = collections.Counter()
    stacks, _ = _busy_stacks(collapsed)
    for frames, count in stacks:
        top = _short(frames[-1])
        layer = next((name for path, name in LAYERS if f"({path}" in top), "other")
        counts[layer] += count
    total = sum(counts.values())
    return [(layer, count / total) for layer, count in counts.most_common()] if total else []


def describe_layers(shares: list[tuple[str, float]]) -> str:
    """``wslocust's user 31 %, Locust 22 %, ...`` (or ``no samples``)."""
    return ", ".join(f"{layer} {share:.0%}" for layer, share in shares) or "no samples"


def top_functions(collapsed: str, limit: int) -> str:
    """
    The ``limit`` functions with the most samples at the top of the stack, from py-spy's raw
    output, with their share of the samples outside the event loop's own frame (own, and
    anywhere in the stack).
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    stacks, idle = _busy_stacks(collapsed)
    for frames, count in stacks:
        total += count
        own[_short(frames[-1])] += count
        for frame in set(map(_short, frames)):
            inclusive[frame] += count
    if not total:
        return "  (no samples)"
    lines = [
        (
            f"  {idle / (idle + total):.0%} of the samples were in the event loop itself (Hub.run, mostly "
            "waiting); the shares below are of the others"
        ),
        f"  {'own %':>6} {'incl %':>6}  function",
    ]
    for frame, count in own.most_common(limit):
        lines.append(f"  {100 * count / total:6.1f} {100 * inclusive[frame] / total:6.1f}  {frame}")
    return "\n".join(lines)


REPOSITORY = Path(__file__).resolve().parents[1]


def _short(frame: str) -> str:
    # "send_text (wslocust/transport/connection.py:230)": paths from the repository or site-packages.
    frame = frame.replace(f"({REPOSITORY}/", "(")
    return re.sub(r"\(\S*(?:site-packages|lib/python3\.\d+)/", "(", frame)
