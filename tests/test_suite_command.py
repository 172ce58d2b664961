"""
``wslocust suite``: the six scenarios in sequence as real Locust processes, one summary, one exit code;
and the example CI workflow that runs it, validated offline against GitHub's workflow schema.

The runs are compressed (``--time-scale 0.02``, 10 connections), every process is bounded by a deadline,
and each scenario's run takes free ports (the embedded server's ``--ws-embedded-port 0``).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import yaml
from helpers import REPO_ROOT, ServerProcess, subprocess_environment

from benchmarks.processes import CapturedProcess
from wslocust import cli
from wslocust.integration.stages import TICK
from wslocust.reporting.thresholds import evaluate, parse_thresholds
from wslocust.run.state import Recovery, run_state
from wslocust.suite.scenarios import SCENARIOS, SHAPE_TICK, scenario_names, select

WORKFLOW = REPO_ROOT / "examples" / "ci" / "load-test.yml"
# Thresholds that a loaded, shared CI machine meets at 10 connections; the defaults' 100 ms P95 is for a target.
LENIENT = ["--thresholds", "echo.p95<2s, error_rate<1%"]


def run_suite(*args: str, folder: Path, timeout: float) -> tuple[int, str, str]:
    """``wslocust suite ARGS`` in a session of its own; (exit code, stdout, stderr). Stopped (SIGTERM, which it
    passes on to its run, then SIGKILL) and failed if it outlasts ``timeout``."""
    command = [sys.executable, "-m", "wslocust", "suite", *args]
    process = CapturedProcess("suite", command, env=subprocess_environment(), cwd=REPO_ROOT, folder=folder)
    try:
        code = process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.stop(10.0)
        raise AssertionError(f"wslocust suite outlasted {timeout:g} s\n{process.output(40)}") from None
    finally:
        process.kill()
    return code, process.stdout, process.stderr


def summary_rows(stdout: str) -> dict[str, list[str]]:
    """The summary table's rows by scenario: (result, time, connects, fails, echo p95, thresholds, note...)."""
    lines = stdout[stdout.index("Suite summary:") :].splitlines()
    return {
        line.split()[0]: line.split()[1:] for line in lines[3:] if line.split() and line.split()[0] in scenario_names()
    }


def leftover_runs(report_dir: Path) -> list[int]:
    """Processes still running whose command line names ``report_dir``: a run the suite did not stop."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(report_dir) in " ".join(process.info["cmdline"] or []):
            found.append(process.pid)
    return found


# The whole suite ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_suite_runs_the_six_scenarios_in_order_against_the_embedded_server(tmp_path):
    reports = tmp_path / "reports"
    code, stdout, stderr = run_suite(
        "--time-scale", "0.02", "--connections", "10", "--report-dir", str(reports), *LENIENT,
        "--thresholds", "churn: echo.p95<2s, error_rate<1%, reconnect.count>0",
        "--thresholds", "error_recovery: recovery_time<10s",
        folder=tmp_path, timeout=150,
    )  # fmt: skip
    assert code == 0, stdout + stderr
    # In the original suite's order, each with its table, then the summary.
    starts = [stdout.index(f"\n{name}: ") for name in scenario_names()]
    assert starts == sorted(starts), stdout
    rows = summary_rows(stdout)
    assert list(rows) == scenario_names(), stdout
    assert all(row[0] == "pass" for row in rows.values()), stdout
    assert "6 passed, 0 failed, 0 skipped: exit code 0" in stdout
    # A scenario whose phases would be shorter than Locust's tick runs at the smallest scale it allows.
    assert "wave: connect / disconnect cycles, running 17.5 s of load (at time scale 0.5" in stdout

    summary = json.loads((reports / "summary.json").read_text())
    assert summary["exit_code"] == 0
    scenarios = {s["name"]: s for s in summary["scenarios"]}
    assert [s["name"] for s in summary["scenarios"]] == scenario_names()
    assert scenarios["spike"]["requests"]["connect"]["count"] == 10  # --connections reached every run
    assert scenarios["churn"]["requests"]["reconnect"]["count"] > 0
    assert scenarios["error_recovery"]["recovery"] is not None
    assert {t["threshold"] for t in scenarios["error_recovery"]["thresholds"]} == {"recovery_time < 10s"}
    for name in scenario_names():  # each run's outputs, kept for the CI artifact
        for suffix in (".log", ".json", ".html", "_stats.csv", "_websocket.csv"):
            assert (reports / f"{name}{suffix}").stat().st_size > 0, f"{name}{suffix}"
    assert (reports / "summary.txt").read_text().startswith("Suite summary:")


@pytest.mark.slow
def test_against_another_target_error_recovery_is_skipped_and_a_failed_threshold_fails_the_suite(tmp_path):
    server = ServerProcess(["--host", "127.0.0.1", "--port", "0"])
    try:
        server.wait_listening()
        code, stdout, stderr = run_suite(
            "--host", server.url, "--scenarios", "error_recovery,spike", "--time-scale", "0.02",
            "--connections", "10", "--report-dir", str(tmp_path / "reports"),
            "--thresholds", "spike: echo.count<0, error_rate<1%",
            folder=tmp_path, timeout=60,
        )  # fmt: skip
        accepted = server.stats()["connections_accepted"]
    finally:
        server.stop()
    assert code == 1, stdout + stderr
    rows = summary_rows(stdout)
    assert list(rows) == ["spike", "error_recovery"]  # the suite's order, whatever the order asked
    assert rows["spike"][0] == "FAIL"
    assert rows["error_recovery"][0] == "skipped"
    assert "error_recovery: skipped: needs the reference server's POST /faults" in stdout
    assert "0 passed, 1 failed, 1 skipped: exit code 1" in stdout
    assert re.search(r"echo\.count < 0 +\d[\d,]* +FAIL", stdout), stdout
    assert accepted >= 10  # the spike's connections went to the given target


@pytest.mark.slow
def test_a_run_past_its_deadline_is_stopped_with_everything_it_started(tmp_path):
    reports = tmp_path / "reports"
    code, stdout, _ = run_suite(
        "--scenarios", "spike", "--timeout", "1", "--report-dir", str(reports), folder=tmp_path, timeout=40
    )
    assert code == 1, stdout
    assert summary_rows(stdout)["spike"][0:2] == ["timed", "out"]
    assert "stopped after 1 s" in stdout
    assert leftover_runs(reports) == []


# Bad input: exit code 2 before any run ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenarios", "spike,nope"], "--scenarios: 'spike,nope' names no scenario of the suite"),
        (["--thresholds", "spike: echo.p95<"], "--thresholds: 'echo.p95<' is not METRIC<VALUE"),
        (["--thresholds", "spikes: echo.p95<1s"], "--thresholds: 'spikes: echo.p95<1s': 'spikes' is not a scenario"),
        (["--host", "http://127.0.0.1:1/"], "--host: "),
        (["--reference-server"], "--reference-server: it says what the --host target is"),
        (["--host", "ws://127.0.0.1:1/ws", "--scenarios", "error_recovery"], "--scenarios: nothing to run"),
        (["--locustfiles", "/nonexistent"], "--locustfiles: no scenario locustfiles in /nonexistent"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2_before_any_run(argv, message, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("WS_SERVER_URL", raising=False)
    monkeypatch.delenv("LOCUST_HOST", raising=False)
    assert cli.main(["suite", "--report-dir", str(tmp_path / "reports"), *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"wslocust suite: error: {message}"), error
    assert error.count("\n") == 1
    assert not (tmp_path / "reports").exists()  # nothing ran


@pytest.mark.parametrize("argv", [["--time-scale", "0"], ["--connections", "1.5"], ["--processes", "-1"]])
def test_a_bad_number_is_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["suite", *argv])
    assert exited.value.code == 2
    assert capsys.readouterr().err.startswith(f"wslocust suite: error: {argv[0]}: ")


# The scenarios ---------------------------------------------------------------------------------------------


def test_the_scenarios_are_the_original_suites_six_each_with_its_locustfile():
    assert scenario_names() == ["ramp_up", "spike", "wave", "sustained", "churn", "error_recovery"]
    for scenario in SCENARIOS:
        assert (REPO_ROOT / "locustfiles" / scenario.locustfile).is_file()
        assert parse_thresholds(scenario.thresholds)
    assert [s.name for s in SCENARIOS if s.needs_reference_server] == ["error_recovery"]
    assert SHAPE_TICK == TICK
    assert [s.name for s in select("Error-Recovery, spike")] == ["spike", "error_recovery"]


def test_each_scenario_runs_at_the_asked_time_scale_or_its_smallest():
    wave = select("wave")[0]
    assert wave.time_scale(0.02) == 0.5 and wave.time_scale(1) == 1
    for scenario in SCENARIOS:
        # Its whole run lasts at least one tick at its smallest scale (the shapes refuse less).
        assert scenario.seconds * scenario.minimum_time_scale >= TICK, scenario.name


def test_recovery_time_is_a_threshold_without_data_until_the_connections_are_back():
    environment = SimpleNamespace(stats=SimpleNamespace(entries={}), runner=None)
    run_state(environment).live = None
    [threshold] = parse_thresholds("recovery_time<2s")
    [result] = evaluate([threshold], environment)
    assert (result.value, result.ok) == (None, False)
    run_state(environment).recovery = Recovery(connections=10, recovered=10, lowest=0, seconds=0.4)
    [result] = evaluate([threshold], environment)
    assert (result.value, result.ok) == (pytest.approx(400.0), True)


# The example CI workflow ---------------------------------------------------------------------------------


def test_the_ci_workflow_is_valid_against_githubs_workflow_schema(tmp_path):
    # check-jsonschema's bundled copy of the schema (schemastore's github-workflow.json): no network.
    command = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
    checked = subprocess.run([*command, str(WORKFLOW)], check=False, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("    steps:", "    stepz:", 1))
    broken_jobs = tmp_path / "broken-jobs.yml"
    broken_jobs.write_text(WORKFLOW.read_text().replace("timeout-minutes: 30", "timeout-minutes: soon", 1))
    for path in (broken, broken_jobs):  # the check can fail
        assert subprocess.run([*command, str(path)], check=False, capture_output=True, timeout=60).returncode


def test_the_ci_workflow_runs_nightly_and_on_demand_and_keeps_the_reports():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert triggers["schedule"][0]["cron"] and "workflow_dispatch" in triggers
    jobs = workflow["jobs"]
    assert "services" in jobs["service"]
    for job in jobs.values():
        steps = job["steps"]
        [suite] = [step for step in steps if "wslocust suite" in step.get("run", "")]
        upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact"))
        assert upload["if"] == "always()" and upload["with"]["path"] == "load-test-report/"
        # The suite's command line, with the shell's variables filled in, is one the suite accepts.
        text = suite["run"].replace("\\\n", " ").splitlines()[-1]
        text = re.sub(r"\$\{CONNECTIONS:\+([^}]*)\}", r"\1", text)
        text = text.replace('"$TIME_SCALE"', "1").replace('"$CONNECTIONS"', "100")
        text = text.replace('"$WS_SERVER_URL"', "ws://localhost:8080/ws")
        arguments = shlex.split(text)
        args = cli.build_parser().parse_args(arguments[1:])
        assert args.report_dir == "load-test-report" and args.time_scale == 1


def test_check_jsonschema_is_a_test_dependency():
    assert "check-jsonschema" in (REPO_ROOT / "setup.cfg").read_text()
