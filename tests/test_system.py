"""The generator's own CPU, memory and network, the saturation flag, and the loop lag each sample carries."""

from __future__ import annotations

import os

from wslocust.reporting import system
from wslocust.reporting.system import SATURATION_SECONDS, SystemSample, SystemSampler
from wslocust.run.loop_lag import LoopLag


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_reading_of_this_process_and_its_host():
    sample = SystemSampler().sample()
    assert sample.pid == os.getpid() and sample.host
    assert sample.rss > 10_000_000 and sample.fds > 2 and sample.host_cores >= 1
    assert sample.net_in >= 0 and sample.net_out >= 0
    assert SystemSample.from_dict({**sample.as_dict(), "from_a_newer_worker": 1}) == sample


def test_saturated_once_the_cpu_stays_above_90_percent_for_5_seconds(monkeypatch):
    clock = Clock()
    sampler = SystemSampler(clock=clock)
    cpu = iter([95.0] * 7 + [40.0] + [99.0] * 2)
    monkeypatch.setattr(sampler._process, "cpu_percent", lambda interval=None: next(cpu))
    seen = []
    for _ in range(10):
        clock.now += 1.0
        sample = sampler.sample()
        seen.append((sample.saturated, sample.saturated_seconds))
    assert SATURATION_SECONDS == 5.0
    # Hot from t=0: not yet after 4 s; at 5 s the whole streak counts; one more second each.
    assert [flag for flag, _ in seen] == [False] * 4 + [True] * 3 + [False] * 3
    assert seen[4][1] == 5.0 and seen[6][1] == 7.0
    assert seen[-1] == (False, 7.0)  # a short burst afterwards is not saturation
    assert sampler.latest.peak_cpu == 99.0
    assert system.SATURATION_CPU_PERCENT == 90.0


def test_readings_off_the_loop_equal_those_on_it_and_carry_the_loop_lag():
    probe = LoopLag()
    on_loop = SystemSampler(loop_lag=probe, off_loop=False).sample()
    off_loop = SystemSampler(loop_lag=probe, off_loop=True).sample()
    for sample in (on_loop, off_loop):
        assert sample.rss > 10_000_000 and sample.fds > 2 and sample.host_cores >= 1
        assert sample.loop_lag == probe.figures() and not sample.lagging
    assert abs(on_loop.fds - off_loop.fds) < 20


def test_open_files_are_counted_at_every_sample_where_the_kernel_counts_them(tmp_path):
    sampler = SystemSampler(off_loop=False)
    before = sampler.sample().fds
    files = [open(tmp_path / f"f{i}", "w") for i in range(50)]  # noqa: SIM115  closed below
    try:
        after = sampler.sample().fds  # the second sample: not one of every 10th
    finally:
        for f in files:
            f.close()
    if system._count_fds() is None:  # pragma: no cover - a kernel before Linux 6.2
        assert after == before
    else:
        assert after - before >= 50
