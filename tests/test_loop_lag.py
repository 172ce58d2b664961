"""
The event-loop lag probe (wslocust.run.loop_lag): its arithmetic, what it sees
in this process (a stalling greenlet, a thread holding the GIL, an idle loop),
and its figures in real Locust runs: the results block and its warning, an
idle run's sub-millisecond p99, ``/ws/stats``, ``/ws/metrics`` and the
WebSocket tab of a master whose workers report theirs.
"""

from __future__ import annotations

import json
import random
import re
import signal
import textwrap
import time
import urllib.request
from bisect import bisect_right

import gevent
import pytest
from helpers import run_server_process, wait_for
from locust_process import LocustProcess, master_and_workers

from wslocust.reporting.system import SystemSample
from wslocust.run.loop_lag import BOUNDS, LAG_WARNING_MS, LagFigures, LoopLag, figures_between, lag_percentile

# The arithmetic ---------------------------------------------------------------------------


def histogram(intervals: list[float]) -> tuple[list[int], list[float]]:
    counts, sums = [0] * len(BOUNDS), [0.0] * len(BOUNDS)
    for busy in intervals:
        k = bisect_right(BOUNDS, busy) - 1
        counts[k] += 1
        sums[k] += busy
    return counts, sums


def exact_percentile(intervals: list[float], seconds: float, quantile: float = 0.99) -> float:
    """The x for which the lag exceeded x for 1 - quantile of the time, by bisection over the raw intervals."""
    budget = (1 - quantile) * seconds
    if sum(intervals) <= budget:
        return 0.0
    low, high = 0.0, max(intervals)
    for _ in range(60):
        middle = (low + high) / 2
        if sum(max(0.0, busy - middle) for busy in intervals) > budget:
            low = middle
        else:
            high = middle
    return high


@pytest.mark.parametrize(
    "intervals, expected",
    [
        ([0.020], 0.010),  # one 20 ms stall in a second: the lag exceeded 10 ms for 10 ms, 1 % of it
        ([0.020, 0.020], 0.015),
        ([0.004] * 2, 0.0),  # busy 8 ms of 1 s: 99 % of the time nothing waited
        ([0.003] * 10, 0.002),
        ([5e-5] * 10_000, 4.9e-5),  # 50 % busy in 50 µs slices
    ],
)
def test_the_p99_is_the_lag_exceeded_for_1_percent_of_the_time(intervals, expected):
    counts, sums = histogram(intervals)
    assert lag_percentile(counts, sums, 1.0) == pytest.approx(expected, rel=0.01, abs=1e-7)
    assert exact_percentile(intervals, 1.0) == pytest.approx(expected, rel=0.01, abs=1e-7)


def test_the_histograms_p99_follows_the_exact_one_within_a_bucket():
    rng = random.Random(12)
    for _ in range(20):
        intervals = [rng.expovariate(1 / rng.choice((5e-5, 2e-4, 1e-3))) for _ in range(rng.randint(10, 3000))]
        intervals += [rng.uniform(0.001, 0.03) for _ in range(rng.randint(0, 5))]
        counts, sums = histogram(intervals)
        exact = exact_percentile(intervals, 1.0)
        assert lag_percentile(counts, sums, 1.0) == pytest.approx(exact, rel=0.13, abs=2e-6)


def test_two_readings_give_the_figures_between_them():
    def totals(t: float, seconds: float, intervals: list[float], history: list[list[float]]) -> dict:
        counts, sums = histogram(intervals)
        buckets = {k: [count, sums[k]] for k, count in enumerate(counts) if count}
        return {"t": t, "seconds": seconds, "busy": sum(intervals), "buckets": buckets, "history": history}

    early = [0.001] * 50
    before = totals(100.0, 10.0, early, [[100.0, 0.1, 1.0, 0.005]])
    history = [[100.0, 0.1, 1.0, 0.005], [101.0, 10.0, 20.0, 0.02], [102.0, 0.0, 0.5, 0.001]]
    after = totals(102.0, 12.0, [*early, 0.020, 0.0005], history)
    lag = figures_between(before, after)
    assert lag["seconds"] == 2.0 and lag["windows"] == 2 and lag["lagged_windows"] == 1
    assert lag["max"] == 20.0 and lag["worst_p99"] == 10.0
    assert lag["busy"] == pytest.approx(100 * 0.0205 / 2, abs=0.01)
    # 20.5 ms busy in 2 s: the lag exceeded x for 20.5 - 2x ms, 1 % of 2 s at x = 0.25 ms.
    assert lag["p99"] == pytest.approx(0.25, abs=0.005)


def test_a_sample_carries_the_figures_to_the_master_and_back():
    lag = LagFigures(recent_p99=12.5, recent_max=20.1, p99=3.0, max=20.1, windows=4, lagged_windows=1)
    sample = SystemSample(host="gen", pid=7, loop_lag=lag)
    data = json.loads(json.dumps(sample.as_dict()))
    data["loop_lag"]["from_a_newer_worker"] = 1
    again = SystemSample.from_dict(data)
    assert again == sample and again.lagging and not SystemSample().lagging
    assert LAG_WARNING_MS == 5.0


# In this process -----------------------------------------------------------------------------


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def probe():
    probe = LoopLag()
    probe.start()
    yield probe
    probe.stop()


def windows_after(probe: LoopLag, count: int) -> LagFigures:
    closed = probe.figures().windows + count
    return wait_for(lambda: (f := probe.figures()).windows >= closed and f, timeout=10, interval=0.05)


def test_a_greenlet_that_busy_waits_20_ms_is_a_20_ms_stall(probe):
    windows_after(probe, 1)
    gevent.spawn(spin, 0.020)
    figures = windows_after(probe, 2)
    assert figures.max >= 19.5 and figures.recent_max >= 19.5
    assert figures.worst_p99 > LAG_WARNING_MS and figures.lagged_windows >= 1
    probe.reset()
    assert probe.figures().windows == 0 and probe.figures().max == 0.0


def test_an_idle_loop_lags_well_under_a_millisecond(probe):
    figures = windows_after(probe, 2)
    assert figures.p99 < 1.0 and figures.recent_p99 < 1.0 and figures.busy < 5.0
    assert figures.lagged_windows == 0


def test_a_thread_holding_the_gil_delays_the_loop_and_the_probe_sees_it(probe):
    # A reply that arrives while another thread holds the GIL waits for it, although libev
    # returned from its poll at once: the probe counts from the poll's return.
    windows_after(probe, 1)
    gevent.get_hub().threadpool.spawn(spin, 0.2)
    figures = windows_after(probe, 2)
    assert figures.recent_max >= 3.0  # the interpreter switches threads every 5 ms


# Real Locust runs ------------------------------------------------------------------------------

STALLING = textwrap.dedent(
    """
    import time

    import gevent
    from locust import events
    from locust.runners import MasterRunner

    from wslocust import WebSocketUser


    class Echo(WebSocketUser):
        pass


    def stall_forever():
        # 20 ms of CPU work on the event loop three times a second, as a heavy listener would.
        while True:
            gevent.sleep(0.3)
            end = time.perf_counter() + 0.020
            while time.perf_counter() < end:
                pass


    @events.test_start.add_listener
    def _stall(environment, **_):
        if not isinstance(environment.runner, MasterRunner):  # the processes that run users
            gevent.spawn(stall_forever)
    """
)

EVENT_LOOP = re.compile(r"  event loop   lag p99 ([\d.]+) (ms|µs), max ([\d.]+) (ms|µs)")


def event_loop_line(stderr: str) -> tuple[float, float]:
    match = EVENT_LOOP.search(stderr)
    assert match, stderr[-3000:]
    p99, p99_unit, worst, worst_unit = match.groups()
    return float(p99) / (1000 if p99_unit == "µs" else 1), float(worst) / (1000 if worst_unit == "µs" else 1)


@pytest.mark.slow
def test_the_results_block_shows_the_lag_and_warns_of_a_stalling_generator_and_not_of_an_idle_one(tmp_path):
    locustfile = tmp_path / "stalling.py"
    locustfile.write_text(STALLING)
    common = ("--headless", "-u", "5", "-r", "5", "-t", "4s", "--ws-message-interval", "100")
    with run_server_process() as server:
        # One after the other: on a machine of two cores, each would stall the other.
        idle = LocustProcess("-f", "locustfiles/echo.py", *common, "--host", server.url, name="idle")
        assert idle.wait() == 0, idle.stderr[-3000:]
        stalling = LocustProcess("-f", str(locustfile), *common, "--host", server.url, name="stalling")
        assert stalling.wait() == 0, stalling.stderr[-3000:]

    p99, worst = event_loop_line(stalling.stderr)
    assert worst >= 19.0 and p99 > LAG_WARNING_MS
    assert "WebSocket  LAGGING: local " in stalling.stderr  # the console lines under the periodic table
    warning = re.search(r"its event loop lagged, loop-lag p99 above 5 ms in (\d+) one-second window", stalling.stderr)
    assert warning and int(warning[1]) >= 2, stalling.stderr[-3000:]

    # The bar is the one the product calls lagging, not a tighter one: the idle run's p99 is 0.03-0.1 ms
    # on a quiet machine and above 1 ms on a busy one (the CI's, beside a demo), which is no stall.
    # (Locust's own stop may stall the loop once, in the last window: only the run's p99 is asserted.)
    p99, worst = event_loop_line(idle.stderr)
    assert p99 < LAG_WARNING_MS, idle.stderr[-3000:]


@pytest.mark.slow
def test_workers_report_their_lag_to_the_master_which_shows_it_in_ws_stats_metrics_and_the_tab(tmp_path):
    locustfile = tmp_path / "stalling.py"
    locustfile.write_text(STALLING)
    with (
        run_server_process() as server,
        master_and_workers(
            "--expect-workers", "2", "--autostart", "--autoquit", "60", "-u", "4", "-r", "4", "-t", "30s",
            "--host", server.url, locustfile=locustfile, common=["--ws-message-interval", "100"], folder=tmp_path,
        ) as (master, workers),
    ):  # fmt: skip
        web = master.web_url

        def lagging_workers() -> dict | None:
            try:
                snapshot = json.loads(_get(f"{web}/ws/stats"))
            except OSError:
                return None
            views = snapshot["workers"]
            return snapshot if len(views) == 2 and all(view["lagging"] for view in views) else None

        snapshot = wait_for(lagging_workers, timeout=40, interval=0.3, processes=[master, *workers])
        for view in snapshot["workers"]:
            lag = view["system"]["loop_lag"]
            assert lag["recent_max"] >= 19.0 and lag["recent_p99"] > LAG_WARNING_MS
        aggregate = snapshot["aggregate"]
        assert aggregate["lagging"] and len(aggregate["lagging_workers"]) == 2
        assert aggregate["loop_lag"]["recent_max"] >= 19.0
        assert snapshot["master"]["loop_lag"]["recent_max"] < 19.0  # the master does not stall

        metrics = _get(f"{web}/ws/metrics").decode()
        value = re.search(r'wslocust_loop_lag_max_milliseconds\{worker="worker 1"\} ([\d.]+)', metrics)
        assert value and float(value[1]) >= 19.0, metrics
        tabs = json.loads(_get(f"{web}/stats/requests"))["extended_stats"]
        rows = next(tab["data"] for tab in tabs if tab["key"] == "websocket")
        assert [row["status"] for row in rows[1:]] == ["LAGGING", "LAGGING"]
        assert all(float(row["loop_lag"].split("·")[1]) >= 19.0 for row in rows)  # "p99 · max"

        master.popen.send_signal(signal.SIGTERM)
        assert master.wait() == 0, master.stderr[-3000:]
        for worker in workers:
            worker.wait(30)
    stderr = master.stderr
    assert re.search(r"  worker 1 .* loop lag p99 [\d.]+ ms, max (19|2\d)[\d.]* ms", stderr), stderr[-3000:]
    assert "(worst worker)" in stderr
    assert len(re.findall(r"worker \d \(.*\): its event loop lagged", stderr)) == 2


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()
