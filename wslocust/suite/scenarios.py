"""
The scenarios of ``wslocust suite``: the original suite's six load patterns, in the order it runs them,
with their default thresholds and the smallest time scale each one can run at.

Each scenario is a locustfile of ``locustfiles/`` (:func:`find_locustfiles`); the suite only runs it, so
its numbers stay in the locustfile. No Locust here: ``wslocust --help`` imports this module.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SCENARIOS", "SHAPE_TICK", "Scenario", "find_locustfiles", "scenario_names", "select"]

SHAPE_TICK = 1.0
"""Seconds between two calls of a shape by Locust (:data:`wslocust.integration.stages.TICK`)."""


@dataclass(frozen=True)
class Scenario:
    """One scenario of the suite."""

    name: str
    """Its name on the command line and in the tables; its locustfile is ``NAME.py``."""
    title: str
    """What it does, in a few words."""
    thresholds: str
    """Its default ``--ws-thresholds``: what passing means for this load pattern."""
    seconds: float
    """How long its locustfile's shape runs at time scale 1 (the run's deadline is computed from it)."""
    minimum_time_scale: float
    """The smallest ``--ws-time-scale`` it runs at: its phases must outlast Locust's 1 s shape tick."""
    needs_reference_server: bool = False
    """True when it makes the target fail through the reference server (``POST /faults``)."""

    @property
    def locustfile(self) -> str:
        """Its locustfile's file name."""
        return f"{self.name}.py"

    def time_scale(self, requested: float) -> float:
        """The time scale it runs at when ``requested`` is asked for: never below :attr:`minimum_time_scale`."""
        return max(requested, self.minimum_time_scale)


# Latency and errors are the original suite's targets (P95 under 100 ms, errors under 0.1 %); each pattern
# adds what shows that it happened: churn reconnects, and error recovery measures the connections' return.
SCENARIOS = (
    Scenario(
        "ramp_up",
        "gradual ramp-up",
        "echo.p95<100ms, error_rate<0.1%",
        seconds=60.0,
        minimum_time_scale=0.05,  # 60 s -> 3 s: a 1.5 s ramp
    ),
    Scenario(
        "spike",
        "all at once, then all dropped",
        "connect.p95<1s, echo.p95<100ms, error_rate<0.1%",
        seconds=10.0,
        minimum_time_scale=0.2,  # the spike lasts two ticks
    ),
    Scenario(
        "wave",
        "connect / disconnect cycles",
        "echo.p95<100ms, error_rate<0.1%",
        seconds=35.0,
        minimum_time_scale=0.5,  # its 2 s down phase must last a tick: the shape refuses less
    ),
    Scenario(
        "sustained",
        "sustained high load",
        "echo.p95<100ms, error_rate<0.1%",
        seconds=30.0,
        minimum_time_scale=0.05,  # 30 s -> 1.5 s
    ),
    Scenario(
        "churn",
        "constant connect / disconnect",
        "echo.p95<100ms, error_rate<0.1%, reconnect.count>0",
        seconds=30.0,
        minimum_time_scale=0.05,  # 30 s -> 1.5 s, each connection living 0.5 s
    ),
    Scenario(
        "error_recovery",
        "the target fails and comes back",
        # The fault's disconnects and refused reconnects are the point: errors are not a criterion here.
        "recovery_time<10s, echo.p95<100ms",
        seconds=20.0,
        minimum_time_scale=0.1,  # 20 s -> 2 s, the fault at 0.5 s for 0.3 s
        needs_reference_server=True,
    ),
)


def scenario_names() -> list[str]:
    """The scenarios' names, in the order the suite runs them."""
    return [scenario.name for scenario in SCENARIOS]


def select(text: str | None) -> list[Scenario]:
    """
    The scenarios named in ``text`` (comma-separated; ``-`` or ``_`` alike), in the suite's order; all when None.

    Raises:
        ValueError: a name is not a scenario's; the message lists them.
    """
    if text is None:
        return list(SCENARIOS)
    wanted = {name.strip().lower().replace("-", "_") for name in text.split(",") if name.strip()}
    unknown = sorted(wanted - set(scenario_names()))
    if unknown or not wanted:
        raise ValueError(f"{text!r} names no scenario of the suite ({', '.join(scenario_names())})")
    return [scenario for scenario in SCENARIOS if scenario.name in wanted]


def find_locustfiles(folder: str | None) -> Path:
    """
    The folder of the scenarios' locustfiles: ``folder`` when given, else ``./locustfiles``, else the
    ``locustfiles/`` of the checkout this package was installed from (an editable install).

    Raises:
        ValueError: the folder lacks one of the scenarios' locustfiles; the message says which and where.
    """
    candidates = (
        [Path(folder)]
        if folder is not None
        else [Path.cwd() / "locustfiles", Path(__file__).resolve().parents[2] / "locustfiles"]
    )
    missing = [
        [scenario.locustfile for scenario in SCENARIOS if not (c / scenario.locustfile).is_file()] for c in candidates
    ]
    for candidate, lacks in zip(candidates, missing):
        if not lacks:
            return candidate
    raise ValueError(
        f"no scenario locustfiles in {os.fspath(candidates[0])} (missing {', '.join(missing[0])}): run from the "
        "wslocust checkout or give --locustfiles DIR"
    )
