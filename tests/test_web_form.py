"""
wslocust's fields in the web UI's start form, and its errors about bad option values.

The form: every field has a short label; an empty field means the option is not
given; a test started by ``POST /swarm`` takes nothing from the test before it.
The errors: one line, ``wslocust: NAME: what is wrong; what is valid``, exit 2,
whatever wrote them (wslocust's checks, argparse, configargparse). The real
command line's matrix of bad values is ``tests/test_bad_input.py``; the form in a
real browser is ``tests/test_browser.py``.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request

import pytest
from helpers import run_server_process, wait_for
from locust import User, constant
from locust.argument_parser import LocustArgumentParser, parse_options, ui_extra_args_dict
from locust.env import Environment
from locust_process import LocustProcess

import wslocust.wiring  # noqa: F401  # registers the --ws-* options, as a locustfile's import of wslocust does
from wslocust.integration.options import add_options
from wslocust.integration.web_form import LABELS, set_up_web_form

FAST_MESSAGES = """
from wslocust import RampUp, WebSocketUser


class Chatter(WebSocketUser):
    pass


class Quick(RampUp):
    connections = 2
    ramp_up = 1.0
    duration = 60.0
    message_interval = 0.05
"""
"""Two connections, a message every 50 ms each; the light profile would send one every 10 s."""


class Idle(User):
    wait_time = constant(1)

    def on_start(self) -> None:
        self.stop()


def test_every_field_of_the_form_has_a_short_label(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["locust", "-f", "locustfiles/ten_k.py"])
    fields = {name for name in ui_extra_args_dict(["-f", "locustfiles/ten_k.py"]) if name.startswith("ws_")}
    assert fields == set(LABELS)
    # Locust labels a field "Ws Target Connections (LABEL)" on one line of a form about 700 px wide
    assert all(len(label) <= 40 for label in LABELS.values()), LABELS


def test_the_form_is_labelled_and_each_start_takes_the_command_lines_values(monkeypatch):
    # Locust's own WebUI in this process, its Flask app driven by a test client.
    argv = ["locust", "-f", "locustfiles/echo.py", "--ws-time-scale", "0.5"]
    monkeypatch.setattr(sys, "argv", argv)  # the web UI parses the command line for its extra options
    environment = Environment(user_classes=[Idle], host="ws://127.0.0.1:1/ws", parsed_options=parse_options(argv[1:]))
    environment.create_local_runner()
    web_ui = environment.create_web_ui("127.0.0.1", 0, delayed_start=True)
    set_up_web_form(environment, web_ui)
    client = web_ui.app.test_client()
    options = environment.parsed_options
    try:
        assert client.get("/").status_code == 200
        fields = web_ui.template_args["extra_options"]
        assert {name: fields[name]["help_text"] for name in LABELS} == LABELS
        assert fields["ws_profile"]["choices"][0] == "" and fields["ws_time_scale"]["default_value"] == "0.5"
        swarm = {"user_count": "0", "spawn_rate": "1", "host": "ws://127.0.0.1:1/ws"}
        assert client.post("/swarm", data={**swarm, "ws_profile": "light", "ws_time_scale": "2"}).get_json()["success"]
        assert (options.ws_profile, options.ws_time_scale) == ("light", "2")
        wait_for(lambda: environment.runner.state == "running", timeout=5)
        assert client.post("/swarm", data=swarm).get_json()["success"]  # an edit of the running test's users
        assert (options.ws_profile, options.ws_time_scale) == ("light", "2")
        environment.runner.stop()
        assert client.post("/swarm", data=swarm).get_json()["success"]  # a new test
        assert (options.ws_profile, options.ws_time_scale) == (None, "0.5")  # the launch values
    finally:
        environment.runner.quit()


def _bad(monkeypatch, capsys, args=(), **env) -> tuple[int, str]:
    for name in ("WS_PROFILE", "WS_THRESHOLDS_ABORT", "WORKERS", "TARGET_CONNECTIONS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = LocustArgumentParser(prog="locust")
    parser.add_argument("--other", type=int)
    with pytest.raises(SystemExit) as exit_:
        add_options(parser)
        parser.parse_args(list(args))
    return exit_.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (["--ws-profile", "huge"], {},
         "wslocust: WS_PROFILE / --ws-profile: 'huge' is not a profile (light, medium, heavy, extreme)\n"),
        (["--ws-profile"], {}, "wslocust: WS_PROFILE / --ws-profile: no value; give one\n"),
        ([], {"TARGET_CONNECTIONS": "x"},
         "wslocust: TARGET_CONNECTIONS / --ws-target-connections: 'x' is not a whole number of connections >= 1\n"),
        ([], {"WS_THRESHOLDS_ABORT": "maybe"},
         ("wslocust: WS_THRESHOLDS_ABORT / --ws-thresholds-abort: 'maybe' is not a yes/no value; "
          "use true, false, yes, no, on, off, 1 or 0\n")),
        ([], {"WORKERS": "two"},
         "wslocust: WORKERS / --processes: 'two' is not a whole number of worker processes >= 1\n"),
        (["--other", "x"], {}, "locust: error: argument --other: invalid int value: 'x'\n"),  # Locust's own: as it was
    ],
    ids=["choices", "no-value", "type-from-environment", "switch-from-environment", "workers", "locusts-option"],
)  # fmt: skip
def test_a_bad_value_is_one_line_naming_the_option_and_exits_2(monkeypatch, capsys, args, env, line):
    assert _bad(monkeypatch, capsys, args, **env) == (2, line)


def test_an_empty_profile_means_none_and_a_name_is_taken_in_any_case(monkeypatch):
    monkeypatch.delenv("WS_PROFILE", raising=False)
    parser = LocustArgumentParser(prog="locust")
    add_options(parser)
    assert parser.parse_args(["--ws-profile", ""]).ws_profile == ""
    assert parser.parse_args(["--ws-profile", " Heavy"]).ws_profile == "heavy"


@pytest.mark.slow
def test_a_swarm_without_a_field_takes_nothing_from_the_swarm_before(tmp_path):
    locustfile = tmp_path / "quick.py"
    locustfile.write_text(FAST_MESSAGES)
    with run_server_process() as server:
        process = LocustProcess("-f", str(locustfile), "--host", server.url, folder=tmp_path)
        try:
            wait_for(lambda: _answers(process.web_url), timeout=30, message="the web UI", processes=[process])

            def post(path: str, **form: str) -> dict:
                data = urllib.parse.urlencode(form).encode()
                with urllib.request.urlopen(f"{process.web_url}{path}", data=data, timeout=10) as response:
                    return json.load(response)

            def received_in_two_seconds(**form: str) -> int:
                assert post("/swarm", host=server.url, ws_target_connections="2", **form)["success"]
                wait_for(lambda: server.stats()["connections_open"] == 2, timeout=20, processes=[process])
                before = server.stats()["messages_received"]
                time.sleep(2)  # the window the rate is measured over, not a wait for a condition
                received = server.stats()["messages_received"] - before
                post("/stop")
                wait_for(lambda: server.stats()["connections_open"] == 0, timeout=20, processes=[process])
                return received

            light = received_in_two_seconds(ws_profile="light")  # a message every 10 s
            none = received_in_two_seconds()  # the locustfile's: every 50 ms
            empty = received_in_two_seconds(ws_profile="")  # the form's empty select
        finally:
            process.stop(timeout=30)
    assert light <= 4 and none >= 60 and empty >= 60, (light, none, empty)
    assert "Traceback" not in process.stderr, process.stderr[-3000:]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False
