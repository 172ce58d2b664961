"""The generator's own CPU, memory and network, and the saturation flag."""

from __future__ import annotations

import os

from wslocust.reporting import system
from wslocust.reporting.system import SATURATION_SECONDS, SystemSample, SystemSampler


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
