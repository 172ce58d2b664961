"""Shapes tick by tick with a stubbed clock; run options, profiles and the time scale; the schedule."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import REPO_ROOT
from locust.util.load_locustfile import load_locustfile

from wslocust import AT_ONCE, Churn, ConfigurationError, RampUp, Spike, Stage, Stages, Sustained, Wave
from wslocust.integration import shapes as shapes_module
from wslocust.integration.options import scenario_option
from wslocust.integration.stages import AT_ONCE_RATE_FACTOR as ONCE
from wslocust.run.schedule import PROFILES, Schedule
from wslocust.run.settings import time_scale
from wslocust.run.state import run_state


def run_with(**options):
    """A stand-in for ``shape.runner``: an environment whose parsed options are ``options`` (as strings)."""
    names = ["ws_target_connections", "ws_ramp_up_time", "ws_test_duration", "ws_profile", "ws_time_scale"]
    parsed = argparse.Namespace(**{name: None for name in names}, ws_message_interval=None)
    for name, value in options.items():
        setattr(parsed, name, value)
    environment = SimpleNamespace(parsed_options=parsed, runner=None, host=None)
    return SimpleNamespace(environment=environment)


def ticks(shape, times, runner=None):
    """``shape.tick()`` at each run time in ``times``."""
    shape.runner = runner
    clock = {"now": 0.0}
    shape.get_run_time = lambda: clock["now"]
    results = []
    for now in times:
        clock["now"] = now
        results.append(shape.tick())
    return results


# The suite's shapes, tick by tick


class GradualRampUp(RampUp):
    connections = 1000
    ramp_up = 30.0
    duration = 30.0
    message_interval = 1.0


def test_ramp_up_ramps_evenly_then_holds_then_stops():
    rate = 1000 / 30
    assert ticks(GradualRampUp(), [0, 15, 29.999, 30, 59.999, 60, 61]) == [
        (1000, rate), (1000, rate), (1000, rate), (1000, rate), (1000, rate), None, None,
    ]  # fmt: skip


def test_ramp_up_of_zero_opens_every_connection_at_once():
    class AllAtOnce(GradualRampUp):
        ramp_up = 0

    assert ticks(AllAtOnce(), [0, 29.9, 30]) == [(1000, 1000.0 * ONCE), (1000, 1000.0 * ONCE), None]


def test_the_10k_test_holds_messages_until_the_ramp_is_done():
    class TenK(RampUp):
        connections = 10_000
        ramp_up = 30.0
        duration = 120.0
        message_interval = 5.0
        messages_during_ramp = False

    plan = TenK().plan()
    assert plan.ends == [30.0, 150.0]
    assert plan.intervals == [0, 5.0]
    assert plan.ticks == [(10_000, 10_000 / 30)] * 2


def test_time_scale_compresses_durations_and_intervals_and_speeds_up_spawning():
    runner = run_with(ws_time_scale="0.02")
    shape = GradualRampUp()
    assert ticks(shape, [0, 0.599, 0.6, 1.199, 1.2], runner) == [
        (1000, 1000 / 0.6), (1000, 1000 / 0.6), (1000, 1000 / 0.6), (1000, 1000 / 0.6), None,
    ]  # fmt: skip
    assert shape.plan().intervals == [1.0] * 2  # by default each connection keeps its real message rate
    assert shape.total_duration == pytest.approx(1.2)
    shape.runner = run_with(ws_time_scale="0.02", ws_time_scale_messages="scaled")
    assert shape.plan().intervals == [pytest.approx(0.02)] * 2


def test_spike_opens_everything_in_one_step_and_drops_at_the_end():
    class FiveHundred(Spike):
        connections = 500
        duration = 10.0

    assert ticks(FiveHundred(), [0, 9.99, 10]) == [(500, 500.0 * ONCE), (500, 500.0 * ONCE), None]

    class WithBaseline(FiveHundred):
        before = 2.0
        after = 3.0

    assert ticks(WithBaseline(), [0, 2, 11.99, 12, 14.99, 15]) == [
        (0, 1.0 * ONCE), (500, 500.0 * ONCE), (500, 500.0 * ONCE), (0, 500.0 * ONCE), (0, 500.0 * ONCE), None,
    ]  # fmt: skip


def test_wave_alternates_up_and_down_for_each_cycle():
    class Waves(Wave):
        connections = 200
        up = 5.0
        down = 2.0
        cycles = 2

    times = [0, 4.99, 5, 6.99, 7, 11.99, 12, 13.99, 14]
    assert ticks(Waves(), times) == [
        (200, 200.0 * ONCE), (200, 200.0 * ONCE), (0, 200.0 * ONCE), (0, 200.0 * ONCE), (200, 200.0 * ONCE), (200, 200.0 * ONCE), (0, 200.0 * ONCE), (0, 200.0 * ONCE), None,
    ]  # fmt: skip
    assert Waves().plan().intervals == [0.1] * 4


def test_a_wave_phase_shorter_than_the_tick_is_rejected_with_the_reason():
    class Waves(Wave):
        up = 5.0
        down = 2.0

    shape = Waves()
    shape.runner = run_with(ws_time_scale="0.3")
    with pytest.raises(ConfigurationError) as error:
        shape.plan()
    assert str(error.value) == (
        "Waves.down: 2 s is 0.6 s at time scale 0.3, less than Locust's 1 s shape tick: "
        "each phase must last at least one tick (use a larger --ws-time-scale)"
    )
    # the same table at half speed is fine: every phase is at least one tick
    shape.runner = run_with(ws_time_scale="0.5")
    assert shape.plan().ends[:2] == [2.5, 3.5]


def test_a_run_shorter_than_one_tick_is_rejected_with_the_reason():
    # Its first stage alone may change the user count (from 0, at the first tick), but nothing would run.
    class TenK(RampUp):
        connections = 10_000
        ramp_up = 30.0
        duration = 120.0

    shape = TenK()
    shape.runner = run_with(ws_time_scale="1e-6")
    with pytest.raises(ConfigurationError) as error:
        shape.plan()
    assert str(error.value) == (
        "TenK: the whole run lasts 0.00015 s at time scale 1e-06, less than Locust's 1 s shape tick, "
        "so nothing would run: lengthen it or use a larger --ws-time-scale"
    )
    shape.runner = run_with(ws_time_scale="0.01")
    assert shape.plan().ends == [pytest.approx(0.3), pytest.approx(1.5)]


def test_sustained_and_churn_hold_their_connections_for_the_duration():
    class HighLoad(Sustained):
        pass

    assert ticks(HighLoad(), [0, 29.9, 30]) == [(2000, 2000.0 * ONCE), (2000, 2000.0 * ONCE), None]
    assert HighLoad().plan().intervals == [0.01]

    class ConstantChurn(Churn):
        pass

    shape = ConstantChurn()
    shape.runner = run_with(ws_time_scale="0.1")
    plan = shape.plan()
    assert plan.lifetime == pytest.approx(1.0)
    assert plan.ticks == [(100, 100.0 * ONCE)]
    assert plan.ends == [pytest.approx(3.0)]


# The generic table


class Steps(Stages):
    stages = (
        Stage(duration=10, users=100),
        Stage(duration=60, users=100, message_interval=1),
        Stage(duration=5, users=500, spawn_rate=AT_ONCE),
        Stage(duration=30, users=0, spawn_rate=20),
    )


def test_stages_compute_the_spawn_rate_that_reaches_each_stage_by_its_end():
    assert Steps().plan().ticks == [(100, 10.0), (100, 10.0), (500, 400.0 * ONCE), (0, 20.0)]
    assert Steps().plan().ends == [10, 70, 75, 105]
    assert Steps().plan().intervals == [None, 1, None, None]
    assert ticks(Steps(), [0, 10, 70, 75, 104.9, 105]) == [
        (100, 10.0), (100, 10.0), (500, 400.0 * ONCE), (0, 20.0), (0, 20.0), None,
    ]  # fmt: skip


def test_an_explicit_spawn_rate_is_divided_by_the_time_scale():
    shape = Steps()
    shape.runner = run_with(ws_time_scale="0.5")
    assert shape.plan().ticks[3] == (0, 40.0)  # explicit: 20 / 0.5
    assert shape.plan().ticks[0] == (100, 20.0)  # computed: 100 users in 10 * 0.5 s


def test_a_stage_that_changes_users_and_is_shorter_than_a_tick_is_rejected():
    shape = Steps()
    shape.runner = run_with(ws_time_scale="0.1")  # stage 3 lasts 0.5 s
    with pytest.raises(ConfigurationError, match=r"^Steps: stage 3 \(500 users\) lasts 0.5 s at time scale 0.1, less"):
        shape.plan()

    class ShortFirstStage(Stages):  # the first stage always gets the first tick
        stages = (Stage(0.2, 10), Stage(5, 10))

    assert ShortFirstStage().plan().ticks == [(10, 50.0), (10, 50.0)]


@pytest.mark.parametrize(
    "stage, message",
    [
        (Stage(0, 10), "Bad: stage 1: duration 0 must be > 0 seconds"),
        (Stage(5, -1), "Bad: stage 1: users -1 must be a whole number >= 0"),
        (Stage(5, 2.5), "Bad: stage 1: users 2.5 must be a whole number >= 0"),
        (Stage(5, 10, spawn_rate=0), "Bad: stage 1: spawn_rate 0 must be > 0"),
        (Stage(5, 10, message_interval=-1), "Bad: stage 1: message_interval -1 must be >= 0"),
    ],
)
def test_invalid_stages_are_named(stage, message):
    class Bad(Stages):
        stages = (stage,)

    with pytest.raises(ConfigurationError) as error:
        Bad().plan()
    assert str(error.value) == message


def test_an_invalid_table_stops_the_shape_with_a_logged_error(caplog):
    class Empty(Stages):
        pass

    assert ticks(Empty(), [0]) == [None]
    assert "wslocust: Empty: no stages" in caplog.text


# Run options and profiles


def test_run_options_override_the_class_attributes_and_the_profile_gives_defaults():
    shape = GradualRampUp()
    shape.runner = run_with(ws_target_connections="50", ws_ramp_up_time="2000", ws_test_duration="3000")
    plan = shape.plan()
    assert plan.ticks == [(50, 25.0), (50, 25.0)] and plan.ends == [2.0, 5.0]

    shape.runner = run_with(ws_profile="heavy")
    plan = shape.plan()
    heavy = PROFILES["heavy"]
    assert plan.ticks[0][0] == heavy.connections == 10_000
    assert plan.ends == [30.0, 30.0 + heavy.duration]
    assert plan.intervals == [heavy.message_interval] * 2 == [1.0, 1.0]

    # explicit values win over the profile
    shape.runner = run_with(ws_profile="heavy", ws_target_connections="20", ws_message_interval=250.0)
    plan = shape.plan()
    assert plan.ticks[0][0] == 20 and plan.intervals == [0.25, 0.25] and plan.ends[-1] == 330.0


def test_message_interval_replaces_every_interval_but_zero():
    shape = Steps()
    shape.runner = run_with(ws_message_interval=200.0)
    assert shape.plan().intervals == [0.2, 0.2, 0.2, 0.2]

    class Silent(Stages):
        stages = (Stage(5, 10, message_interval=0), Stage(5, 10, message_interval=2))

    shape = Silent()
    shape.runner = run_with(ws_message_interval=200.0, ws_time_scale="0.5", ws_time_scale_messages="scaled")
    assert shape.plan().intervals == [0, pytest.approx(0.1)]
    shape.runner = run_with(ws_message_interval=200.0, ws_time_scale="0.5")
    assert shape.plan().intervals == [0, pytest.approx(0.2)]


def test_options_from_the_web_ui_arrive_as_strings_and_bad_ones_are_named():
    environment = run_with(ws_target_connections=" 40 ", ws_time_scale="abc").environment
    assert scenario_option(environment, "connections") == 40
    with pytest.raises(ConfigurationError) as error:
        scenario_option(environment, "time_scale")
    assert str(error.value) == (
        "WS_TIME_SCALE / --ws-time-scale: 'abc' is not a time scale > 0 (1 = real time, 0.01 = 100 times faster)"
    )
    assert time_scale(environment) == 1.0  # users keep running; the shape reports the error
    assert scenario_option(None, "connections") is None


def test_the_profiles_are_the_suites():
    assert {name: tuple(profile.__dict__.values()) for name, profile in PROFILES.items()} == {
        "light": (1000, 10.0, 60.0),
        "medium": (5000, 5.0, 120.0),
        "heavy": (10000, 1.0, 300.0),
        "extreme": (50000, 0.5, 600.0),
    }


# The schedule sent to users


def test_each_tick_publishes_the_schedule_with_the_shapes_clock():
    class TenK(GradualRampUp):
        messages_during_ramp = False

    runner = run_with(ws_time_scale="0.1")
    shape = TenK()
    ticks(shape, [0.0], runner)
    published = run_state(runner.environment).schedule
    assert published.origin == shape.start_time
    assert published.at(shape.start_time) == (0, pytest.approx(shape.start_time + 3.0))
    assert published.at(shape.start_time + 3.0) == (1.0, pytest.approx(shape.start_time + 6.0))  # the real rate
    assert published.at(shape.start_time + 100) == (1.0, math.inf)


def test_a_schedule_survives_the_trip_to_a_worker_on_that_workers_clock():
    origin = time.perf_counter() - 2.5  # the shape started 2.5 s ago
    sent = Schedule([3.0, 6.0], [0, 0.5], 1.5, origin)
    received = Schedule.from_message(sent.as_message())
    assert received.origin == pytest.approx(origin, abs=0.01)
    assert received.lifetime == 1.5
    assert received.at(origin + 1)[0] == 0 and received.at(origin + 4)[0] == 0.5
    assert Schedule([], [], None, origin).at(origin) == (None, math.inf)


# Locust picks only the locustfile's own shape


@pytest.mark.parametrize("path", sorted((REPO_ROOT / "locustfiles").glob("*.py")), ids=lambda path: path.name)
def test_each_locustfile_has_one_user_class_and_at_most_one_shape_its_own(path: Path):
    users, shapes = load_locustfile(str(path))
    assert len(users) == 1
    if path.name != "echo.py":
        [shape] = shapes
        assert type(shape).__module__ != shapes_module.__name__
        assert type(shape).abstract is False
        assert isinstance(shape, Stages)
        shape.plan()  # valid with the suite's numbers


def test_every_library_shape_is_abstract_and_a_subclass_is_not():
    for name in shapes_module.__all__:
        item = getattr(shapes_module, name)
        if isinstance(item, type) and issubclass(item, Stages):
            assert item.__dict__["abstract"] is True, name

    class Mine(Spike):
        pass

    assert Mine.abstract is False
