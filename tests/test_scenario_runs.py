"""
Every scenario locustfile as a real headless ``locust`` run, in compressed time,
checked against the reference server's own open-connection timeline.

A sampler polls the server's ``/stats`` every 100 ms. The intended curve comes
from the locustfile's shape (its plan, with the same options), and starts at
the "Shape test starting" log line. Locust ticks a shape once a second and
spawns a second's worth of users at the start of each second, so a sample may
be up to :data:`LAG` behind or :data:`LEAD` ahead of the curve, and
:data:`SLACK` connections off (connects and closes in flight).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import urllib.request
from argparse import Namespace
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace

import pytest
from helpers import REPO_ROOT, free_port, run_server_process, wait_for
from locust.util.load_locustfile import load_locustfile
from locust_process import LocustResult, run_locust

pytestmark = pytest.mark.slow

LAG = 1.2
"""Seconds a sample may trail the intended curve: one tick, plus connect and sampling time."""
LEAD = 1.0
"""Seconds a sample may be ahead: Locust starts a second's worth of users at the start of the second."""
SLACK = 2
"""Connections a sample may be off the curve."""
CHURN_SLACK = 0.2
"""The part of a churning population that may be between two connections at a sample (40 reconnects
a second on a loaded 2-CPU machine measured up to 7 of 40)."""

SCALED_MESSAGES = ("--ws-time-scale-messages", "scaled")
"""Message intervals shrink with the time scale too (by default each connection keeps its real rate)."""

# Running and sampling


class Sampler:
    """
    Polls a ``/stats`` URL every ``interval`` seconds, in a thread, while used
    as a context manager: ``samples`` is (wall time, stats or None while unreachable).
    """

    def __init__(self, stats_url: str, interval: float = 0.1) -> None:
        self.stats_url = stats_url
        self.interval = interval
        self.samples: list[tuple[float, dict | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _poll(self) -> None:
        while not self._stop.is_set():
            taken = time.time()
            try:
                with urllib.request.urlopen(self.stats_url, timeout=1) as response:
                    self.samples.append((taken, json.load(response)))
            except OSError:
                self.samples.append((taken, None))
            self._stop.wait(self.interval)

    def shows_closed(self, since: float) -> bool:
        """True once a sample taken after ``since`` (wall time) has every connection closed."""
        return any(taken >= since and stats and stats["connections_open"] == 0 for taken, stats in self.samples)

    def open_connections(self, since: float) -> list[tuple[float, int]]:
        """(seconds since ``since``, connections_open) of every sample the server answered."""
        return [(taken - since, stats["connections_open"]) for taken, stats in self.samples if stats is not None]


@dataclass
class Run:
    result: LocustResult
    samples: Sampler | None = None
    server: dict = field(default_factory=dict)
    """The server's final /stats."""

    @property
    def stats(self) -> dict[str, dict]:
        return self.result.stats

    @property
    def shape_started(self) -> float:
        """Wall time of the "Shape test starting." log line."""
        return _log_time(self.result.stderr, "Shape test starting.")

    @property
    def shape_stopped(self) -> float:
        return _log_time(self.result.stderr, "Shape test stopping")


def _log_time(log: str, text: str) -> float:
    for line in log.splitlines():
        if text in line:
            stamp = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]", line)
            assert stamp, line
            return datetime.strptime(stamp[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise AssertionError(f"no {text!r} in the log:\n{log}")


def locust(locustfile: str, *args: str, timeout: float = 60, **options) -> LocustResult:
    """``locust -f locustfiles/LOCUSTFILE --headless --json ARGS``: :func:`~locust_process.run_locust`."""
    return run_locust("-f", f"locustfiles/{locustfile}", "--headless", "--json", *args, timeout=timeout, **options)


def run_sampled(locustfile: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Run:
    """Run ``locustfile`` against a fresh ``wslocust serve`` process while sampling its /stats."""
    with run_server_process() as server:
        with Sampler(server.stats_url) as sampler:
            result = locust(locustfile, "--host", server.url, *args, env=env, timeout=timeout)
            ended = time.time()
            wait_for(lambda: sampler.shows_closed(since=ended), 5, 0.05, "a sample of the drop to 0")
        return Run(result, sampler, server.stats())


def assert_connects_and_echoes(run: Run, connections: int) -> None:
    assert run.result.returncode == 0, run.result.stderr
    stats = run.stats
    assert stats["connect"]["num_requests"] == connections and stats["connect"]["num_failures"] == 0
    assert stats["echo"]["num_requests"] > 0 and stats["echo"]["num_failures"] == 0


# The intended curve


def shape_of(locustfile: str, **options: str):
    """The locustfile's shape, seeing the run's options as Locust would parse them."""
    _, [shape] = load_locustfile(str(REPO_ROOT / "locustfiles" / locustfile))
    parsed = Namespace(ws_message_interval=None, ws_target_connections=None, ws_ramp_up_time=None,
                       ws_test_duration=None, ws_profile=None, ws_time_scale=None)  # fmt: skip
    vars(parsed).update(options)
    shape.runner = SimpleNamespace(environment=SimpleNamespace(parsed_options=parsed))
    return shape


def intended_curve(shape):
    """Connections at each time since the start, as the shape's stages and spawn rates intend."""
    plan = shape.plan()
    points = [(0.0, 0.0)]  # (time, users) corners of a piecewise-linear curve
    start, users = 0.0, 0
    for end, (target, rate) in zip(plan.ends, plan.ticks):
        change = abs(target - users)
        reached = start + (change / rate if change > rate else 0.0)  # one step when a second's worth
        points += [(start, users), (min(reached, end), target), (end, target)]
        start, users = end, target
    points.append((start, 0))  # the run stops all users

    def curve(t: float) -> float:
        if t < 0 or t >= points[-1][0]:
            return 0.0
        for (t0, n0), (t1, n1) in itertools.pairwise(points):
            if t0 <= t < t1:
                return n0 + (n1 - n0) * (t - t0) / (t1 - t0)
        return float(points[-1][1])

    return curve


def worst_offsets(samples: list[tuple[float, int]], curve, slack: float = SLACK) -> tuple[float, float]:
    """
    For each sample, how far back (lag) or ahead (lead) on the time axis the
    curve must be taken to pass within ``slack`` connections of it (a sample taken
    while a step is under way may be anywhere between its two levels); the
    worst lag and the worst lead.
    """
    step = 0.02
    worst_lag = worst_lead = 0.0
    for t, n in samples:
        offsets = {}
        for direction in (-1, 1):
            seen = [curve(t)]
            for k in range(int(3 / step) + 1):
                seen.append(curve(t + direction * k * step))
                if min(seen) - slack <= n <= max(seen) + slack:
                    offsets[direction] = k * step
                    break
        lag, lead = offsets.get(-1, 99.0), offsets.get(1, 99.0)
        if lag <= lead:
            worst_lag = max(worst_lag, lag)
        else:
            worst_lead = max(worst_lead, lead)
    return worst_lag, worst_lead


def assert_follows(run: Run, curve, slack: float = SLACK) -> tuple[float, float]:
    samples = run.samples.open_connections(since=run.shape_started)
    lag, lead = worst_offsets(samples, curve, slack)
    timeline = " ".join(f"{t:.1f}:{n}" for t, n in samples if t > -0.5)
    print(f"worst lag {lag:.2f} s, worst lead {lead:.2f} s over {len(samples)} samples")  # shown with -s
    assert lag <= LAG and lead <= LEAD, f"lag {lag:.2f} s, lead {lead:.2f} s; server timeline: {timeline}"
    return lag, lead


# Shapes, seen from the server


def test_ramp_up_reaches_its_connections_evenly_then_holds_them():
    options = {"ws_time_scale": "0.1", "ws_target_connections": "50"}
    run = run_sampled("ramp_up.py", "--ws-time-scale", "0.1", "--ws-target-connections", "50")
    assert_connects_and_echoes(run, 50)
    assert_follows(run, intended_curve(shape_of("ramp_up.py", **options)))
    # a ramp, not a jump: the server saw several intermediate counts
    counts = {n for _, n in run.samples.open_connections(run.shape_started)}
    assert len(counts & set(range(1, 50))) >= 2, counts


def test_spike_opens_every_connection_at_once_and_drops_them_at_once():
    # Its bursts come every 2 s (time_scaled(constant(2))): 0.4 s when the time scale applies to messages.
    run = run_sampled("spike.py", "--ws-time-scale", "0.2", "--ws-target-connections", "50", *SCALED_MESSAGES)
    assert_connects_and_echoes(run, 50)
    assert_follows(run, intended_curve(shape_of("spike.py", ws_time_scale="0.2", ws_target_connections="50")))
    samples = run.samples.open_connections(run.shape_started)
    rise = next(t for t, n in samples if n == 50) - next(t for t, n in samples if n > 0)
    fall = next(t for t, n in samples if t > 1 and n == 0) - [t for t, n in samples if n == 50][-1]
    assert rise <= 0.5 and fall <= 0.5, (rise, fall)  # one step each way, not a 1-per-second ramp
    # about five bursts of ten echoes per connection (one every 0.4 s + the burst) in the 2 s spike
    assert 50 * 10 * 2.5 <= run.stats["echo"]["num_requests"] <= 50 * 10 * 6


def test_wave_opens_and_closes_its_connections_once_per_cycle():
    run = run_sampled("wave.py", "--ws-time-scale", "0.5", "--ws-target-connections", "30")
    assert_connects_and_echoes(run, 5 * 30)  # new users, so new connects, at each wave
    assert_follows(run, intended_curve(shape_of("wave.py", ws_time_scale="0.5", ws_target_connections="30")))
    samples = run.samples.open_connections(run.shape_started)
    levels = [n for _, n in samples if n in (0, 30)]
    phases = [level for index, level in enumerate(levels) if index == 0 or level != levels[index - 1]]
    assert phases == [0, 30] * 5 + [0], phases
    assert run.server["connections_accepted"] == 5 * 30


def test_churn_keeps_its_connections_while_replacing_them_and_both_sides_count_the_reconnects():
    # Two worker processes: the connection lifetime travels from the master's shape to them.
    run = run_sampled("churn.py", "--ws-time-scale", "0.1", "--ws-target-connections", "40", env={"WORKERS": "2"})
    assert_connects_and_echoes(run, 40)
    assert "to 2 ready workers" in run.result.stderr
    curve = intended_curve(shape_of("churn.py", ws_time_scale="0.1", ws_target_connections="40"))
    assert_follows(run, curve, slack=CHURN_SLACK * 40)
    reconnects = run.stats["reconnect"]
    assert reconnects["num_failures"] == 0
    assert run.server["connections_accepted"] - 40 == reconnects["num_requests"]
    assert f", {reconnects['num_requests']} reconnects, 0 disconnects)" in run.result.stderr
    # 40 connections living 1 s each: about 40 reconnects a second for the 3 s run
    held = run.shape_stopped - run.shape_started
    assert 0.6 * 40 * held <= reconnects["num_requests"] <= 1.3 * 40 * held, (reconnects["num_requests"], held)


@pytest.mark.parametrize("workers", [None, "2"], ids=["one process", "two workers"])
def test_error_recovery_restarts_the_embedded_server_and_times_the_return_of_every_connection(workers):
    # With workers, each sends its open connections every 0.2 s: the timing holds there too.
    port = free_port()  # the embedded server's, known in advance to sample it from the start
    with Sampler(f"http://127.0.0.1:{port}/stats", interval=0.05) as sampler:
        result = locust(
            "error_recovery.py", "--ws-time-scale", "0.1", "--ws-target-connections", "30", "--ws-test-duration", "30000",
            env={"WORKERS": workers} if workers else None, embedded_port=port,
        )  # fmt: skip
    run = Run(result, sampler)
    assert result.returncode == 1, result.stderr  # the fault's disconnects are failures
    assert "started the embedded reference server" in result.stderr
    recovered = re.search(
        r"error recovery: 30 of 30 connections back (\d+\.\d+) s after the server came back", result.stderr
    )
    assert recovered, result.stderr
    # down 0.3 s (timed from its end), then reconnect delays of 0.05 s doubling: back well within a second
    assert 0 <= float(recovered[1]) <= 0.7
    # the server's view: 30 open, unreachable for 0.3 s, 30 open again
    fault = _log_time(result.stderr, "error recovery: injecting a fault")
    assert 0.5 <= fault - run.shape_started <= 1.2  # at 0.5 s, or once the workers' users are all connected
    before = [s for t, s in sampler.samples if s and fault - 0.5 < t < fault]
    down = [s for t, s in sampler.samples if fault + 0.05 < t < fault + 0.25]
    done = _log_time(result.stderr, "error recovery: 30 of 30 connections back")
    after = [s for t, s in sampler.samples if s and done + 0.05 < t < run.shape_stopped]
    assert before and max(s["connections_open"] for s in before) == 30
    summary = re.search(r"WebSocket summary: .*", result.stderr)
    assert summary and re.match(
        r"WebSocket summary: 60 connects \(\d+ failed, 30 reconnects, 30 disconnects\)", summary[0]
    ), summary
    assert down and all(s is None for s in down)
    assert after and all(s["connections_open"] == 30 for s in after)


# Every locustfile starts, echoes and ends by itself

NAMED_SCENARIOS = {
    # locustfile: (connections, options); message intervals raised where compression would flood the test,
    # scaled with the time where each connection's real rate would send next to nothing in the short run
    "ten_k.py": (20, ["--ws-time-scale", "0.01", *SCALED_MESSAGES]),
    "sustained.py": (10, ["--ws-time-scale", "0.05", "--ws-message-interval", "100"]),
    "flash_sale.py": (10, ["--ws-time-scale", "0.005", "--ws-message-interval", "1000"]),
    "live_event.py": (10, ["--ws-time-scale", "0.0002", *SCALED_MESSAGES]),
    "iot_network.py": (10, ["--ws-time-scale", "0.00002", "--ws-message-interval", "300000", *SCALED_MESSAGES]),
}


@pytest.fixture(scope="module")
def named_runs() -> dict[str, Run]:
    """All the named scenarios, run at the same time (each against its own server) to save wall time."""
    with ThreadPoolExecutor(len(NAMED_SCENARIOS)) as pool:
        futures = {
            name: pool.submit(run_sampled, name, "--ws-target-connections", str(connections), *args)
            for name, (connections, args) in NAMED_SCENARIOS.items()
        }
        return {name: future.result() for name, future in futures.items()}


@pytest.mark.parametrize("locustfile", NAMED_SCENARIOS)
def test_each_named_scenario_runs_by_itself_in_compressed_time(named_runs, locustfile):
    connections, args = NAMED_SCENARIOS[locustfile]
    run = named_runs[locustfile]
    assert_connects_and_echoes(run, connections)
    assert run.server["connections_accepted"] == connections
    assert run.stats["echo"]["num_requests"] == run.server["messages_received"]
    scheduled = shape_of(locustfile, ws_time_scale=args[1]).total_duration
    assert run.shape_stopped - run.shape_started <= scheduled + 1.5  # ends at the first tick after its end
