"""
The README's table of the original suite's environment variables, checked row
by row: each bad value gives the documented one-line error, each default is the
documented one, and each variable changes a real run as documented.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import urllib.parse
import urllib.request

import pytest
from helpers import REPO_ROOT, run_server_process, wait_for
from locust.argument_parser import parse_options, ui_extra_args_dict
from locust.util.load_locustfile import load_locustfile
from locust_process import LocustProcess
from test_scenario_runs import Run, Sampler, assert_follows, intended_curve, locust, shape_of

import wslocust.wiring  # noqa: F401  # registers the --ws-* options, as a locustfile's import of wslocust does
from wslocust.run.schedule import PROFILES

README = (REPO_ROOT / "README.md").read_text()


def readme_table(heading: str) -> list[dict[str, str]]:
    """The rows of the first table under ``heading``, as dicts by column name, backquotes removed."""
    section = README.split(heading + "\n", 1)[1].splitlines()
    first = next(index for index, line in enumerate(section) if line.startswith("|"))
    lines = []
    for line in section[first:]:
        if not line.startswith("|"):
            break
        lines.append(line)
    columns = [cell.strip().replace("`", "") for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip().replace("`", "") for cell in line.strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(columns, row)) for row in rows]


VARIABLES = {row["variable"]: row for row in readme_table("### Environment variables")}

BAD_VALUES = {
    # variable: (bad value, the error line's text after "VARIABLE / --option: 'value' ")
    "WORKERS": ("0", "is not a whole number of worker processes >= 1"),
    "TARGET_CONNECTIONS": ("0", "is not a whole number of connections >= 1"),
    "RAMP_UP_TIME": ("-1", "is not a number of milliseconds >= 0"),
    "TEST_DURATION": ("0", "is not a number of milliseconds > 0"),
    "MESSAGE_INTERVAL": ("soon", "is not a number of milliseconds >= 0"),
    "WS_PROFILE": ("huge", "is not a profile (light, medium, heavy, extreme)"),
    "WS_TIME_SCALE": ("0", "is not a time scale > 0 (1 = real time, 0.01 = 100 times faster)"),
    "WS_TIME_SCALE_MESSAGES": (
        "fast",
        (
            "is not real (each connection sends at the scenario's real rate) or scaled (message intervals "
            "shrink with the time scale too)"
        ),
    ),
}


def parse(monkeypatch, args=(), **env):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("LOCUST_PROCESSES", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["locust", "-f", "locustfiles/ten_k.py", *args])
    return parse_options(args=["-f", "locustfiles/ten_k.py", *args])


def test_the_readme_documents_every_variable_of_the_suite():
    assert list(VARIABLES) == [
        "WS_SERVER_URL", "WORKERS", "TARGET_CONNECTIONS", "RAMP_UP_TIME", "TEST_DURATION", "MESSAGE_INTERVAL",
        "WS_PROFILE", "WS_TIME_SCALE", "WS_TIME_SCALE_MESSAGES",
    ]  # fmt: skip
    assert set(BAD_VALUES) == set(VARIABLES) - {"WS_SERVER_URL"}  # tested in test_locust_runs.py


@pytest.mark.parametrize("variable", BAD_VALUES)
def test_a_bad_value_stops_at_start_with_one_line_naming_the_variable_the_value_and_what_is_valid(
    monkeypatch, capsys, variable
):
    value, message = BAD_VALUES[variable]
    with pytest.raises(SystemExit) as exit:
        parse(monkeypatch, **{variable: value})
    assert exit.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    option = VARIABLES[variable]["option"]
    assert len(errors) == 1 and errors[0].endswith(f"{variable} / {option}: {value!r} {message}"), errors


@pytest.mark.parametrize("variable", ["TARGET_CONNECTIONS", "RAMP_UP_TIME", "TEST_DURATION", "MESSAGE_INTERVAL"])
def test_the_documented_defaults_are_the_10k_tests(variable):
    _, [ten_k] = load_locustfile(str(REPO_ROOT / "locustfiles" / "ten_k.py"))
    attribute = {"TARGET_CONNECTIONS": "connections", "RAMP_UP_TIME": "ramp_up", "TEST_DURATION": "duration",
                 "MESSAGE_INTERVAL": "message_interval"}[variable]  # fmt: skip
    value = getattr(ten_k, attribute)
    documented = float(VARIABLES[variable]["default"])
    assert documented == (value if variable == "TARGET_CONNECTIONS" else value * 1000)


def test_the_documented_profiles_are_the_code_s():
    rows = readme_table("### Profiles")
    assert [row["--ws-profile / WS_PROFILE"] for row in rows] == list(PROFILES)
    for row in rows:
        profile = PROFILES[row["--ws-profile / WS_PROFILE"]]
        assert int(row["connections"].replace(",", "")) == profile.connections
        interval = row["message interval"]
        seconds = float(interval[:-3]) / 1000 if interval.endswith(" ms") else float(interval[:-2])
        assert seconds == profile.message_interval
        assert float(row["duration"][:-2]) == profile.duration


def test_workers_is_locusts_processes_and_loses_to_it(monkeypatch):
    assert parse(monkeypatch).processes is None  # one process by default
    assert parse(monkeypatch, WORKERS="3").processes == 3
    assert parse(monkeypatch, WORKERS="3", LOCUST_PROCESSES="2").processes == 2
    assert parse(monkeypatch, ["--processes", "4"], WORKERS="3").processes == 4
    assert parse(monkeypatch, ["--master"], WORKERS="3").processes is None  # Locust refuses both


def test_the_options_are_fields_of_the_web_ui(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["locust", "-f", "locustfiles/ten_k.py"])
    fields = ui_extra_args_dict(["-f", "locustfiles/ten_k.py"])
    for option in ("ws_target_connections", "ws_ramp_up_time", "ws_test_duration", "ws_message_interval",
                   "ws_profile", "ws_time_scale", "ws_time_scale_messages"):  # fmt: skip
        assert option in fields and fields[option]["help_text"], option
    assert fields["ws_profile"]["choices"] == ["", *PROFILES]  # empty first: Locust preselects the first


# Each variable changes a real run as documented


@pytest.mark.slow
def test_the_variables_change_the_10k_test_as_documented():
    with run_server_process() as server:
        with Sampler(server.stats_url) as sampler:
            result = locust("ten_k.py", env={
                "WS_SERVER_URL": server.url,  # the target
                "WORKERS": "2",  # two worker processes
                "TARGET_CONNECTIONS": "30",
                "RAMP_UP_TIME": "3000",  # 10 connections a second
                "TEST_DURATION": "2000",
                "MESSAGE_INTERVAL": "100",  # from the end of the ramp-up
            })  # fmt: skip
        truth = server.stats()
    run = Run(result, sampler, truth)
    assert result.returncode == 0, result.stderr
    assert "embedded" not in result.stderr and truth["connections_accepted"] == 30
    assert "Sending spawn jobs of 30 users at 10.00 spawn rate to 2 ready workers" in result.stderr
    options = {"ws_target_connections": "30", "ws_ramp_up_time": "3000", "ws_test_duration": "2000"}
    assert_follows(run, intended_curve(shape_of("ten_k.py", **options)))
    # 10 a second: Locust hands each worker its 5 of every second at once, and wslocust.run.pacing
    # spreads their connects over the second, so the server sees an even rise (one a tenth of a
    # second from each worker), not steps of 10
    counts = [n for _, n in sampler.open_connections(since=run.shape_started)]
    rises = [b - a for a, b in itertools.pairwise(counts) if b > a]
    assert max(counts) == 30 and max(rises) <= 4 and len(rises) >= 8, counts
    held = run.shape_stopped - run.shape_started
    assert 5.0 <= held <= 6.2  # 3 s + 2 s, ended at the next tick
    messages = [(taken - run.shape_started, stats["messages_received"]) for taken, stats in sampler.samples if stats]
    assert all(count == 0 for t, count in messages if t < 2.9)  # none during the ramp-up
    # 30 connections x 10 messages a second for the 2 s hold, plus the wait for the next tick
    assert 30 * 10 * 1.8 <= run.stats["echo"]["num_requests"] <= 30 * 10 * 3.3


@pytest.mark.slow
def test_a_profile_sets_connections_interval_and_duration_but_an_explicit_variable_wins():
    with run_server_process() as server:
        result = locust("ten_k.py", env={
            "WS_SERVER_URL": server.url,
            "WS_PROFILE": "heavy",  # 10,000 connections, a message every 1 s, for 300 s
            "TARGET_CONNECTIONS": "20",  # wins over the profile's 10,000
            "WS_TIME_SCALE": "0.01",  # 1 s -> 10 ms, 300 s -> 3 s, the 30 s ramp-up -> 0.3 s
            "WS_TIME_SCALE_MESSAGES": "scaled",  # the message interval too
        })  # fmt: skip
        truth = server.stats()
    run = Run(result, None, truth)
    assert result.returncode == 0, result.stderr
    assert truth["connections_accepted"] == 20
    assert 3.3 <= run.shape_stopped - run.shape_started <= 4.5
    # 20 connections x 100 messages a second for about 3 s (ten_k.py alone: a message every 50 ms, 1.2 s)
    assert 20 * 100 * 2.5 <= run.stats["echo"]["num_requests"] <= 20 * 100 * 4.5


@pytest.mark.slow
def test_a_shape_too_fast_for_locusts_tick_is_refused_at_start_with_one_line():
    # With forked workers, which must not outlive the master (they would hold the output pipes for a minute).
    result = locust("wave.py", "--host", "ws://127.0.0.1:1/ws", env={"WS_TIME_SCALE": "0.1", "WORKERS": "2"}, timeout=20)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("wslocust:")]
    assert errors == [
        (
            "wslocust: FiveWaves.up: 5 s is 0.5 s at time scale 0.1, less than Locust's 1 s shape tick: "
            "each phase must last at least one tick (use a larger --ws-time-scale)"
        )
    ], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_bad_value_on_the_real_command_line_exits_2_without_a_traceback():
    result = locust("ten_k.py", env={"WORKERS": "-2"})
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1]
        == "wslocust: WORKERS / --processes: '-2' is not a whole number of worker processes >= 1"
    )
    assert re.search("Traceback", result.stderr) is None


@pytest.mark.slow
def test_a_scenario_started_from_the_web_ui_takes_the_fields_as_strings_and_names_a_bad_one():
    bad = (
        "wslocust: WS_TIME_SCALE / --ws-time-scale: 'fast' is not a time scale > 0 "
        "(1 = real time, 0.01 = 100 times faster)"
    )
    with (
        run_server_process() as server,
        LocustProcess("-f", "locustfiles/spike.py", "--host", server.url) as process,
    ):
        ui = process.web_url
        wait_for(lambda: _get(ui), timeout=20, message="the web UI", processes=[process])

        def swarm(**fields: str) -> dict:
            form = urllib.parse.urlencode({"host": server.url, **fields}).encode()
            with urllib.request.urlopen(f"{ui}/swarm", data=form, timeout=5) as response:
                return json.load(response)

        assert swarm(ws_time_scale="0.2", ws_target_connections="7")["success"]
        wait_for(lambda: server.stats()["connections_accepted"] == 7, timeout=10)
        wait_for(lambda: server.stats()["connections_open"] == 0, timeout=10)  # the spike's end
        assert swarm(ws_time_scale="fast", ws_target_connections="7")["success"]
        wait_for(lambda: bad in process.stderr, timeout=10, message="the error line")
        truth = server.stats()
        process.stop(timeout=20)
    assert truth["connections_accepted"] == 7  # the bad run started nothing
    assert "Traceback" not in process.stderr, process.stderr[-3000:]


def _get(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
