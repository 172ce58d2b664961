"""
Closed-loop echo throughput of the load generator, per CPU-second.

Runs ``--connections`` connections (default 100) in closed loop (send a text
message of ``--size`` bytes, wait for its echo, repeat) against an echo server
that is not the bottleneck, for each generator variant in turn, all in one
invocation so that their ratios are comparable on a shared, noisy machine:

- ``websocket-client``: websocket-client's framing and blocking ``recv()``
  under gevent, one greenlet per connection (the baseline);
- ``wslocust-connection``: :class:`wslocust.connection.Connection`, no Locust;
- ``wslocust-user``: a real headless ``locust`` run of a ``WebSocketUser``
  whose only task is ``self.echo()``, with ``wait_time = constant(0)`` and
  Locust's statistics on.

The server is ``node_echo_server.js`` (Node.js and the ``ws`` package, which
is installed with npm into ``benchmarks/.node/`` the first time). Without
Node.js, or with ``--server reference``, it is ``python -m wslocust serve``,
which may itself be the bottleneck: the server's CPU-seconds are printed so
that a reader can tell which side limited a run.

With two CPUs or more, each generator runs under ``taskset`` on the first CPU
this process may use and the server on the second. Each variant warms up for
``--warmup`` seconds, then a window of ``--duration`` seconds is measured:
messages the server echoed (its ``/stats`` counters), completions the
generator counted (a cross-check), and the user+system CPU-seconds of the
generator's whole process tree and of the server (psutil).

Prints a table and one ``RESULT {json}`` line per variant. Every child process
is stopped at the end, on Ctrl-C and on errors too.

Run: ``.venv/bin/python benchmarks/echo_throughput.py [--duration 20]``.
Add ``--profile DIR`` to sample each Python generator with py-spy during its
window (the profiled figures are then perturbed; compare runs without it).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

__all__ = ["VARIANTS", "main"]

BENCHMARKS = Path(__file__).resolve().parent
NODE_DIR = BENCHMARKS / ".node"
NODE_SERVER = BENCHMARKS / "node_echo_server.js"
ECHO_CLIENTS = BENCHMARKS / "echo_clients.py"
WS_PACKAGE = "ws@^8"

VARIANTS = ("websocket-client", "wslocust-connection", "wslocust-user")
BASELINE = "websocket-client"

HOST = "127.0.0.1"
SERVER_START_TIMEOUT = 15.0
NPM_TIMEOUT = 300.0
READY_TIMEOUT = 60.0
"""Seconds a generator may take to open every connection."""
COUNT_TIMEOUT = 5.0
STOP_TIMEOUT = 15.0
"""Seconds a child gets to exit after SIGTERM before SIGKILL (Locust drains its users)."""

_URL_OR_PORT = re.compile(r"^listening (\d+)$|(ws://[^\s/]+:(\d+)\S*)")
_children: list[Child] = []


def log(message: str) -> None:
    """Progress and warnings go to stderr; the results go to stdout."""
    sys.stderr.write(f"echo_throughput: {message}\n")
    sys.stderr.flush()


# Child processes -------------------------------------------------------------


class Child:
    """
    A child process in its own session, with its stdout read by a thread.

    Lines that start with ``READY`` or ``COUNT`` and the server's listening
    line go to a queue; the others are kept (last 40) for error reports.
    """

    MARKERS = ("READY", "COUNT")

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name = name
        self.command = command
        self._stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115  lives as long as the child
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=cwd,
            text=True,
            bufsize=1,
            # Its own session: a terminal's Ctrl-C reaches only us, and we stop it in order.
            start_new_session=True,
        )
        _children.append(self)
        self.pid = self.process.pid
        self._events: queue.Queue[tuple[str, str]] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            tag, _, rest = line.partition(" ")
            if tag in self.MARKERS:
                self._events.put((tag, rest))
                continue
            match = _URL_OR_PORT.search(line)
            if match:
                self._events.put(("LISTENING", match.group(2) or f"ws://{HOST}:{match.group(1)}/"))
            self._tail.append(line)
        self._events.put(("EOF", ""))

    def wait_for(self, tag: str, timeout: float) -> str | None:
        """The rest of the next ``tag`` line, or None on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                got, rest = self._events.get(timeout=remaining)
            except queue.Empty:
                return None
            if got == "EOF":
                self._events.put((got, rest))  # later waits fail fast too
                return None
            if got == tag:
                return rest

    def count(self) -> dict[str, Any] | None:
        """Ask the generator for its cumulative counts (SIGUSR1) and return them."""
        if not self.alive:
            return None
        os.kill(self.pid, signal.SIGUSR1)
        rest = self.wait_for("COUNT", COUNT_TIMEOUT)
        return json.loads(rest) if rest is not None else None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def cpu_seconds(self) -> float | None:
        """User + system CPU-seconds of the process and of its live descendants."""
        try:
            process = psutil.Process(self.pid)
            total = 0.0
            for member in [process, *process.children(recursive=True)]:
                try:
                    times = member.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += times.user + times.system
            return total
        except psutil.NoSuchProcess:
            return None

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def output(self) -> str:
        """The last lines of stdout and stderr, for error reports."""
        stderr = self.stderr().splitlines()[-40:]
        return "\n".join(["--- stdout (last lines):", *self._tail, "--- stderr (last lines):", *stderr])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL to its whole process group if it lingers."""
        if self.alive:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.process.wait(STOP_TIMEOUT)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            # The group is the session this child leads: only what we started.
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            log(f"{self.name} (pid {self.pid}) did not exit after SIGKILL")
        if self in _children:
            _children.remove(self)


def stop_all_children() -> None:
    for child in reversed(list(_children)):
        child.stop()


# CPU pinning -----------------------------------------------------------------


@dataclass
class Pinning:
    generator: list[str]
    """Command prefix for generators: ``taskset -c N`` or nothing."""
    server: list[str]
    description: str
    cpus: tuple[int, int] | None = None
    """(generator CPU, server CPU) when pinned."""


def plan_pinning() -> Pinning:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Pinning([], [], f"not pinned: only CPU {cpus} available (server and generator share it)")
    if shutil.which("taskset") is None:
        return Pinning([], [], "not pinned: taskset not found (install util-linux)")
    generator, server = cpus[0], cpus[1]
    return Pinning(
        ["taskset", "-c", str(generator)],
        ["taskset", "-c", str(server)],
        f"generator on CPU {generator}, server on CPU {server} (taskset); {len(cpus)} CPUs available",
        (generator, server),
    )


def busy_seconds() -> list[float]:
    """Per CPU, the seconds spent on anything but idle and I/O wait since boot."""
    return [t.user + t.nice + t.system + t.irq + t.softirq + t.steal for t in psutil.cpu_times(percpu=True)]


# The server ------------------------------------------------------------------


@dataclass
class Server:
    child: Child
    kind: str
    """``node-ws <version>`` or ``wslocust reference``."""
    url: str
    stats_url: str

    def stats(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.stats_url, timeout=5) as response:
                return json.load(response)  # type: ignore[no-any-return]
        except (urllib.error.URLError, OSError, ValueError):
            return None


def ensure_ws_package(npm: str) -> str | None:
    """The installed ``ws`` version, installing it into benchmarks/.node/ on first use."""
    manifest = NODE_DIR / "node_modules" / "ws" / "package.json"
    if not manifest.exists():
        log(f"first run: installing the Node.js package {WS_PACKAGE} with npm into {NODE_DIR} (gitignored)")
        NODE_DIR.mkdir(exist_ok=True)
        try:
            subprocess.run(
                [npm, "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--loglevel=error", WS_PACKAGE],
                check=True,
                timeout=NPM_TIMEOUT,
                stdin=subprocess.DEVNULL,
                stdout=sys.stderr,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            log(f"npm install {WS_PACKAGE} failed: {exc}")
            return None
    try:
        return str(json.loads(manifest.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def start_server(kind: str, pinning: Pinning) -> Server:
    node, npm = shutil.which("node"), shutil.which("npm")
    if kind == "node":
        version = ensure_ws_package(npm) if node and npm else None
        if node and version is not None:
            env = {**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")}
            command = [*pinning.server, node, str(NODE_SERVER), "--host", HOST, "--port", "0"]
            server = _launch("node-server", command, env, f"node-ws {version}")
            if server is not None:
                return server
        log(
            "WARNING: Node.js, npm or the ws package is unavailable; falling back to the reference "
            "server (python -m wslocust serve), which may be the bottleneck: compare the server's CPU-seconds"
        )
    reference = [*pinning.server, sys.executable, "-m", "wslocust", "serve", "--host", HOST, "--port", "0"]
    server = _launch("reference-server", reference, None, "wslocust reference")
    if server is None:
        raise RuntimeError("no echo server could be started")
    return server


def _launch(name: str, command: list[str], env: dict[str, str] | None, kind: str) -> Server | None:
    child = Child(name, command, env=env)
    url = child.wait_for("LISTENING", SERVER_START_TIMEOUT)
    if url is None:
        log(f"{name} did not announce its port within {SERVER_START_TIMEOUT:g} s:\n{child.output()}")
        child.stop()
        return None
    port = re.search(r":(\d+)", url.split("//", 1)[1]).group(1)  # type: ignore[union-attr]
    server = Server(child, kind, url, f"http://{HOST}:{port}/stats")
    if server.stats() is None:
        log(f"WARNING: {server.stats_url} does not answer: throughput is counted by the generators only")
    return server


# Generators ------------------------------------------------------------------

LOCUSTFILE = '''\
"""Generated by benchmarks/echo_throughput.py: closed-loop echo, one WebSocketUser per connection."""

import json
import signal
import sys

import gevent
from locust import constant, events, task

from wslocust import WebSocketUser
from wslocust.plugin import counters


class EchoUser(WebSocketUser):
    wait_time = constant(0)
    message_size = {size}

    @task
    def echo_once(self):
        self.echo()


def _emit(tag, data):
    sys.stdout.write(tag + " " + json.dumps(data) + "\\n")
    sys.stdout.flush()


@events.init.add_listener
def _instrument(environment, **_):
    def report():
        entry = environment.stats.get("echo", "WS")
        errors = [str(error.error) for error in environment.stats.errors.values()]
        _emit("COUNT", {{"echoes": entry.num_requests - entry.num_failures, "failures": entry.num_failures,
                        "first_error": errors[0] if errors else None}})

    def ready_when_open(user_count):
        ws = counters(environment)
        with gevent.Timeout({ready_timeout}, False):
            while ws.open + ws.failed < user_count:
                gevent.sleep(0.05)
        _emit("READY", {{"connections": ws.open, "failed": ws.failed}})

    gevent.signal_handler(signal.SIGUSR1, report)
    environment.events.spawning_complete.add_listener(
        lambda user_count, **_: gevent.spawn(ready_when_open, user_count)
    )
'''


def generator_command(variant: str, server: Server, args: argparse.Namespace, workdir: Path) -> list[str]:
    bound = READY_TIMEOUT + args.warmup + args.duration + 30  # the generator stops by itself after this
    if variant == "wslocust-user":
        locustfile = workdir / "echo_user_locustfile.py"
        locustfile.write_text(LOCUSTFILE.format(size=args.size, ready_timeout=READY_TIMEOUT))
        return [
            sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
            "-u", str(args.connections), "-r", str(args.connections), "-t", f"{int(bound)}s",
            "--host", server.url, "--exit-code-on-error", "0",
        ]  # fmt: skip
    return [
        sys.executable, str(ECHO_CLIENTS), variant, server.url,
        "--connections", str(args.connections), "--size", str(args.size), "--max-seconds", str(bound),
    ]  # fmt: skip


@dataclass
class Snapshot:
    time: float
    generator: dict[str, Any]
    generator_cpu: float
    server: dict[str, Any] | None
    server_cpu: float | None
    cpus_busy: list[float]


def snapshot(generator: Child, server: Server) -> Snapshot:
    counted = generator.count()
    if counted is None:
        raise RuntimeError(f"{generator.name} did not report its counts\n{generator.output()}")
    now = time.monotonic()
    generator_cpu = generator.cpu_seconds()
    if generator_cpu is None:
        raise RuntimeError(f"{generator.name} exited\n{generator.output()}")
    return Snapshot(now, counted, generator_cpu, server.stats(), server.child.cpu_seconds(), busy_seconds())


def run_variant(
    variant: str, server: Server, args: argparse.Namespace, pinning: Pinning, workdir: Path
) -> dict[str, Any]:
    command = [*pinning.generator, *generator_command(variant, server, args, workdir)]
    generator = Child(variant, command, cwd=workdir)
    profiler: subprocess.Popen[bytes] | None = None
    try:
        ready = generator.wait_for("READY", READY_TIMEOUT)
        if ready is None:
            raise RuntimeError(f"{variant}: connections not open within {READY_TIMEOUT:g} s\n{generator.output()}")
        opened = json.loads(ready)
        if opened.get("failed"):
            log(f"{variant}: {opened['failed']} of {args.connections} connections failed: {opened.get('first_error')}")
        time.sleep(args.warmup)
        if args.profile:
            profiler = start_profiler(variant, generator.pid, args, pinning)
        before = snapshot(generator, server)
        time.sleep(args.duration)
        after = snapshot(generator, server)
    finally:
        if profiler is not None:
            finish_profiler(variant, profiler, args)  # py-spy stops at the end of the window
        generator.stop()
    # A run can succeed while the generator logs errors (a failed listener, a dead greenlet).
    stderr = generator.stderr()
    if "Traceback" in stderr:
        first = stderr[stderr.index("Traceback") :].splitlines()[:30]
        log(f"WARNING: {variant} logged a traceback (the first one follows)\n" + "\n".join(first))
    return measure(variant, before, after, opened, server, args, pinning)


def measure(
    variant: str,
    before: Snapshot,
    after: Snapshot,
    opened: dict[str, Any],
    server: Server,
    args: argparse.Namespace,
    pinning: Pinning,
) -> dict[str, Any]:
    window = after.time - before.time
    echoes = after.generator["echoes"] - before.generator["echoes"]
    failures = after.generator["failures"] - before.generator["failures"]
    generator_cpu = after.generator_cpu - before.generator_cpu
    server_messages = None
    if before.server is not None and after.server is not None:
        server_messages = after.server["messages_sent"] - before.server["messages_sent"]
    server_cpu = None
    if before.server_cpu is not None and after.server_cpu is not None:
        server_cpu = after.server_cpu - before.server_cpu
    messages = server_messages if server_messages is not None else echoes
    result: dict[str, Any] = {
        "variant": variant,
        "server": server.kind,
        "connections": opened.get("connections"),
        "size": args.size,
        "window_s": round(window, 3),
        "server_messages": server_messages,
        "server_msgs_per_s": round(server_messages / window, 1) if server_messages is not None else None,
        "generator_echoes": echoes,
        "generator_echoes_per_s": round(echoes / window, 1),
        "generator_failures": failures,
        "generator_cpu_s": round(generator_cpu, 3),
        "generator_cpu_share": round(generator_cpu / window, 3),
        "msgs_per_generator_cpu_s": round(messages / generator_cpu, 1) if generator_cpu > 0 else None,
        "server_cpu_s": round(server_cpu, 3) if server_cpu is not None else None,
        "server_cpu_share": round(server_cpu / window, 3) if server_cpu is not None else None,
        "counted_by": "server" if server_messages is not None else "generator",
    }
    if pinning.cpus is not None:
        # The machine is shared: how busy each pinned CPU was, whoever used it.
        generator_cpu_number, server_cpu_number = pinning.cpus
        for side, number in (("generator", generator_cpu_number), ("server", server_cpu_number)):
            busy = after.cpus_busy[number] - before.cpus_busy[number]
            result[f"{side}_core_busy_share"] = round(busy / window, 3)
    if failures:
        result["first_error"] = after.generator.get("first_error")
    # Up to one message per connection is in flight at each edge of the window.
    if server_messages is not None and abs(server_messages - echoes) > 2 * args.connections + server_messages // 200:
        log(f"WARNING: {variant}: the server echoed {server_messages} messages but the generator counted {echoes}")
    return result


# Profiling (optional) --------------------------------------------------------


def start_profiler(
    variant: str, pid: int, args: argparse.Namespace, pinning: Pinning
) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        log("--profile needs py-spy: .venv/bin/pip install py-spy")
        return None
    args.profile.mkdir(parents=True, exist_ok=True)
    output = args.profile / f"{variant}.txt"
    # On the server's CPU, so that sampling does not take the generator's. py-spy pauses the
    # generator for each sample (about 1% at 200 Hz): unpaused, a third of the stacks come out torn.
    command = [
        *pinning.server, py_spy, "record", "--pid", str(pid), "--duration", str(int(args.duration)),
        "--rate", "200", "--format", "raw", "--function", "--output", str(output),
    ]  # fmt: skip
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish_profiler(variant: str, profiler: subprocess.Popen[bytes], args: argparse.Namespace) -> None:
    try:
        _, stderr = profiler.communicate(timeout=args.duration + 30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()
        log(f"py-spy on {variant} did not finish")
        return
    output = args.profile / f"{variant}.txt"
    if not output.exists():
        log(f"py-spy on {variant} wrote nothing: {stderr.decode(errors='replace').strip()[-500:]}")
        return
    print(f"\npy-spy {variant}: top 10 functions by own time (whole stacks in {output})")
    print(top_functions(output.read_text(), 10))


def top_functions(collapsed: str, limit: int) -> str:
    """
    The ``limit`` functions with the most samples at the top of the stack, from py-spy's raw
    output, with their share of the samples of the generator's own (main) thread.
    """
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if "gevent/threadpool.py" in frames[0]:
            continue  # an idle thread of gevent's DNS resolver pool, not the generator's work
        count = int(count_text)
        total += count
        own[_short(frames[-1])] += count
        for frame in set(map(_short, frames)):
            inclusive[frame] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {'own %':>6} {'incl %':>6}  function"]
    for frame, count in own.most_common(limit):
        lines.append(f"  {100 * count / total:6.1f} {100 * inclusive[frame] / total:6.1f}  {frame}")
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "send_text (wslocust/connection.py:230)" with the site-packages prefix removed.
    return re.sub(r"\(\S*?(?:site-packages|lib/python3\.\d+|/work/main)/", "(", frame)


# Report ----------------------------------------------------------------------


def add_ratios(results: list[dict[str, Any]]) -> None:
    baseline = next((r for r in results if r["variant"] == BASELINE and "error" not in r), None)
    for result in results:
        if baseline is None or "error" in result:
            continue
        efficiency, base_efficiency = result["msgs_per_generator_cpu_s"], baseline["msgs_per_generator_cpu_s"]
        if efficiency and base_efficiency:
            result["efficiency_vs_websocket_client"] = round(efficiency / base_efficiency, 2)
        rate = result["server_msgs_per_s"] or result["generator_echoes_per_s"]
        base_rate = baseline["server_msgs_per_s"] or baseline["generator_echoes_per_s"]
        if rate and base_rate:
            result["throughput_vs_websocket_client"] = round(rate / base_rate, 2)


def summarize(results: list[dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    """One row per variant: the median of each figure over the rounds that succeeded."""
    rows = []
    for variant in variants:
        runs = [r for r in results if r["variant"] == variant and "error" not in r]
        if not runs:
            failed = next(r for r in results if r["variant"] == variant)
            rows.append({"variant": variant, "error": failed["error"]})
            continue
        row: dict[str, Any] = {"variant": variant, "rounds": len(runs)}
        for key, value in runs[0].items():
            if isinstance(value, (int, float)) and key != "round":
                values = [r.get(key) for r in runs]
                row[key] = None if None in values else statistics.median(v for v in values if v is not None)
        efficiency = [r["msgs_per_generator_cpu_s"] for r in runs if r["msgs_per_generator_cpu_s"]]
        row["efficiency_range"] = (min(efficiency), max(efficiency)) if efficiency else None
        rows.append(row)
    return rows


def print_table(results: list[dict[str, Any]]) -> None:
    def number(value: Any, digits: int = 0) -> str:
        return "-" if value is None else f"{value:,.{digits}f}"

    def percent(share: float | None) -> float | None:
        return None if share is None else 100 * share

    header = (
        f"{'variant':<20} {'msgs/s':>8} {'echoes/s':>8} {'gen CPU-s':>9} {'gen %':>5} {'core %':>6} "
        f"{'msgs/gen CPU-s':>14} {'srv CPU-s':>9} {'srv %':>5} {'core %':>6} {'x msgs/s':>8} {'x msgs/CPU-s':>12}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['variant']:<20} FAILED: {r['error'].splitlines()[0]}")
            continue
        low_high = r.get("efficiency_range")
        print(
            f"{r['variant']:<20} {number(r['server_msgs_per_s']):>8} {number(r['generator_echoes_per_s']):>8} "
            f"{number(r['generator_cpu_s'], 2):>9} {number(percent(r['generator_cpu_share'])):>5} "
            f"{number(percent(r.get('generator_core_busy_share'))):>6} "
            f"{number(r['msgs_per_generator_cpu_s']):>14} {number(r['server_cpu_s'], 2):>9} "
            f"{number(percent(r['server_cpu_share'])):>5} {number(percent(r.get('server_core_busy_share'))):>6} "
            f"{number(r.get('throughput_vs_websocket_client'), 2):>8} "
            f"{number(r.get('efficiency_vs_websocket_client'), 2):>12}"
            + (
                f"  (msgs/gen CPU-s {low_high[0]:,.0f}-{low_high[1]:,.0f})"
                if r.get("rounds", 1) > 1 and low_high
                else ""
            )
        )
    print(
        textwrap.dedent(
            """\
            msgs/s: messages the server echoed per second; echoes/s: round trips the generator completed
            (cross-check). gen % / srv %: the process's CPU-seconds per second of the window (100 = one
            core); core %: how busy its CPU was, other processes included (the machine is shared).
            x: ratio to websocket-client, in the same round. A run is generator-bound when the generator's
            core is near 100%."""
        )
    )


def versions(server: Server) -> str:
    # From the metadata: importing locust here would monkey-patch this process.
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    packages = ", ".join(f"{name} {installed(name)}" for name in ("locust", "gevent", "websocket-client", "wslocust"))
    return f"python {sys.version.split()[0]}, {packages}, server {server.kind}"


# Main ------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Closed-loop echo throughput per generator CPU-second, for each generator variant."
    )
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per variant (default: 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before the window (default: 2)")
    parser.add_argument("--connections", type=int, default=100, help="concurrent connections (default: 100)")
    parser.add_argument("--size", type=int, default=64, help="message size in bytes (default: 64)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated, run in this order (default: {','.join(VARIANTS)})",
    )
    parser.add_argument(
        "--server", choices=("node", "reference"), default="node", help="echo server (default: node, the fast one)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every variant this many times, interleaved; report medians"
    )
    parser.add_argument("--profile", type=Path, metavar="DIR", help="sample each generator with py-spy into DIR")
    args = parser.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown or not args.variants:
        parser.error(f"--variants: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(VARIANTS)}")
    if args.duration <= 0 or args.warmup < 0 or args.connections < 1 or args.size < 1 or args.rounds < 1:
        parser.error("--duration, --connections, --size and --rounds must be positive, --warmup >= 0")
    return args


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    pinning = plan_pinning()
    workdir = Path(tempfile.mkdtemp(prefix="echo_throughput-"))
    results: list[dict[str, Any]] = []
    try:
        server = start_server(args.server, pinning)
        log(f"server {server.kind} at {server.url}; {pinning.description}")
        for round_number in range(1, args.rounds + 1):
            # Every other round in reverse order, so that a drift in the machine's load
            # does not always favour the same variant.
            order = args.variants if round_number % 2 else args.variants[::-1]
            round_results = []
            for variant in order:
                log(f"round {round_number}/{args.rounds}, {variant}: {args.connections} connections, "
                    f"{args.size}-byte messages, {args.warmup:g} s warm-up + {args.duration:g} s window")  # fmt: skip
                if not server.child.alive:
                    raise RuntimeError(f"the server exited\n{server.child.output()}")
                try:
                    result = run_variant(variant, server, args, pinning, workdir)
                except RuntimeError as exc:
                    log(f"{variant} FAILED: {exc}")
                    result = {"variant": variant, "error": str(exc)}
                result["round"] = round_number
                round_results.append(result)
                time.sleep(1.0)  # let the server close the previous connections
            add_ratios(round_results)
            results.extend(round_results)
        rounds = f", median of {args.rounds} rounds" if args.rounds > 1 else ""
        print(f"\nclosed-loop echo, {args.connections} connections, {args.size}-byte text messages, "
              f"{args.duration:g} s window{rounds}; {pinning.description}\n{versions(server)}\n")  # fmt: skip
        print_table(summarize(results, args.variants))
        for result in results:
            print("RESULT " + json.dumps(result))
        if server.kind.startswith("wslocust"):
            log("WARNING: the reference server may have been the bottleneck (see srv %CPU)")
    except KeyboardInterrupt:
        log("interrupted: stopping every child process")
        return 130
    finally:
        stop_all_children()
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
