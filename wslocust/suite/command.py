"""
``wslocust suite``: the original suite's scenarios in sequence against one target, one exit code.

Each scenario is a real ``locust --headless`` run of its locustfile (:mod:`wslocust.suite.runs`) with its own
thresholds (:data:`wslocust.suite.scenarios.SCENARIOS`); a results table follows each one, and a summary
table ends the suite. The exit code: 0 when every scenario run passed, 1 when one failed (a threshold, an
error, a run past its deadline), 2 for bad input (the suite's options, or a run refused at start).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from wslocust.suite.runs import Outcome, Settings, figures_summary, locust_command, run_scenario
from wslocust.suite.scenarios import SCENARIOS, Scenario, find_locustfiles, scenario_names, select
from wslocust.suite.tables import PASSED, SKIPPED, Verdict, scenario_table, summary_table

__all__ = ["STARTUP_SECONDS", "SUITE_DESCRIPTION", "add_arguments", "run"]

SUITE_DESCRIPTION = (
    "Run the original suite's scenarios in sequence (ramp_up, spike, wave, sustained, churn, error_recovery), "
    "each a headless Locust run with its thresholds; print a table per scenario and a summary. Exit code 0: all "
    "passed; 1: one failed; 2: bad input."
)

STARTUP_SECONDS = 60.0
"""Seconds a run is given beyond its scenario's own time before it is stopped (start, stop, reports)."""

_SCENARIO_PREFIX = re.compile(r"^\s*(?P<name>[A-Za-z_-]+)\s*:(?P<expressions>.*)$", re.DOTALL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default=None,
        metavar="URL",
        help="the target, a ws:// or wss:// URL (default: $LOCUST_HOST, then $WS_SERVER_URL, else each scenario "
        "starts the embedded reference server on a free port); error_recovery is skipped against another target",
    )
    parser.add_argument(
        "--reference-server",
        action="store_true",
        help="the --host target is a wslocust reference server (wslocust serve): run error_recovery against it "
        "too, through its POST /faults (give its control token as WS_CONTROL_TOKEN)",
    )
    parser.add_argument(
        "--time-scale",
        type=_positive(float, "--time-scale", "a number > 0"),
        default=1.0,
        metavar="F",
        help="--ws-time-scale of every run: 0.02 runs the suite in about a minute; a scenario whose phases "
        "would be shorter than Locust's 1 s shape tick runs at the smallest scale it allows (default 1)",
    )
    parser.add_argument(
        "--processes",
        type=_positive(int, "--processes", "a whole number >= 1"),
        default=None,
        metavar="N",
        help="Locust worker processes of every run (Locust's --processes; default: one process)",
    )
    parser.add_argument(
        "--connections",
        type=_positive(int, "--connections", "a whole number >= 1"),
        default=None,
        metavar="N",
        help="--ws-target-connections of every run (default: each locustfile's, the original suite's numbers)",
    )
    parser.add_argument(
        "--scenarios",
        default=None,
        metavar="NAMES",
        help=f"the scenarios to run, comma-separated (default: all, in this order: {', '.join(scenario_names())})",
    )
    parser.add_argument(
        "--thresholds",
        action="append",
        default=[],
        metavar="[SCENARIO:]EXPRESSIONS",
        help="--ws-thresholds instead of the defaults, for every scenario or, prefixed with 'SCENARIO:', for one; "
        "may be repeated (e.g. 'spike: echo.p95<50ms, error_rate<0.1%%')",
    )
    parser.add_argument(
        "--report-dir",
        default=None,
        metavar="DIR",
        help="keep each run's log, --json, --csv and --html files and the summary here (default: a temporary "
        "folder, kept only when a scenario did not pass)",
    )
    parser.add_argument(
        "--locustfiles",
        default=None,
        metavar="DIR",
        help="the folder of the scenarios' locustfiles (default: ./locustfiles, else the checkout's)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive(float, "--timeout", "a number of seconds > 0"),
        default=None,
        metavar="SECONDS",
        help=f"stop a run still going after this long (default: its scenario's time, scaled, + {STARTUP_SECONDS:g})",
    )
    parser.add_argument(
        "locust_args",
        nargs=argparse.REMAINDER,
        metavar="-- LOCUST_ARGS",
        help="more arguments for every Locust run, after --, e.g. -- --ws-message-interval 500",
    )


def _positive(kind: type, option: str, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{option}: {text!r} is not {what}")
        return value

    return parse


class _BadInput(Exception):
    """An option of the suite that cannot work: the message says which and why."""


def run(args: argparse.Namespace) -> int:
    """Run the suite; the exit code (0 all passed, 1 a scenario failed, 2 bad input)."""
    try:
        scenarios, skipped, thresholds, host, locustfiles = _check(args)
    except _BadInput as exc:
        print(f"wslocust suite: error: {exc}", file=sys.stderr)
        return 2
    report_dir = Path(args.report_dir) if args.report_dir else Path(tempfile.mkdtemp(prefix="wslocust-suite-"))
    report_dir.mkdir(parents=True, exist_ok=True)
    extra = tuple(args.locust_args[1:] if args.locust_args[:1] == ["--"] else args.locust_args)
    settings = Settings(locustfiles, report_dir, host, args.time_scale, args.processes, args.connections, extra)
    target = "the embedded reference server" if host is None else _shown(host)
    _say(f"wslocust suite: {len(scenarios) - len(skipped)} scenarios against {target}; reports in {report_dir}\n")
    previous = signal.signal(signal.SIGTERM, _terminate)  # a cancelled CI job: stop the run's group first
    try:
        verdicts = _run_all(scenarios, skipped, thresholds, settings, args.timeout)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if any(v.result == "bad input" for v in verdicts):
        code = 2
    else:
        code = 0 if all(v.result in (PASSED, SKIPPED) for v in verdicts) else 1
    summary = summary_table(verdicts, target, args.time_scale, code)
    _say("\n".join(summary))
    _write_summary(report_dir, summary, verdicts, target, args.time_scale, code)
    if args.report_dir is None:
        if code == 0:
            shutil.rmtree(report_dir, ignore_errors=True)
        else:
            _say(f"  logs and reports kept in {report_dir}")
    return code


def _check(args: argparse.Namespace) -> tuple[list[Scenario], dict[str, str], dict[str, str], str | None, Path]:
    from wslocust.codec.uri import parse_uri
    from wslocust.exceptions import ConfigurationError
    from wslocust.reporting.thresholds import parse_thresholds  # imports Locust: only when the suite runs

    try:
        scenarios = select(args.scenarios)
    except ValueError as exc:
        raise _BadInput(f"--scenarios: {exc}") from None
    try:
        locustfiles = find_locustfiles(args.locustfiles)
    except ValueError as exc:
        raise _BadInput(f"--locustfiles: {exc}") from None
    host = args.host or os.environ.get("LOCUST_HOST") or os.environ.get("WS_SERVER_URL") or None
    if host is not None:
        try:
            parse_uri(host)
        except ConfigurationError as exc:
            raise _BadInput(f"--host: {exc}") from None
    elif args.reference_server:
        raise _BadInput("--reference-server: it says what the --host target is, and no --host is given")
    skipped = {
        s.name: f"needs the reference server's POST /faults; the target {_shown(host)} may not have it "
        "(--reference-server if it does)"
        for s in scenarios
        if s.needs_reference_server and host is not None and not args.reference_server
    }
    if len(skipped) == len(scenarios):
        raise _BadInput(f"--scenarios: nothing to run: {', '.join(skipped)} {next(iter(skipped.values()))}")
    thresholds = {scenario.name: scenario.thresholds for scenario in SCENARIOS}
    # Values for every scenario first, in order, then those for one: "spike: ..." wins over a value for all.
    values = [(_scenario_of(value), value) for value in args.thresholds]
    for name, value in sorted(values, key=lambda item: item[0] is not None):
        expressions = value if name is None else value.partition(":")[2]
        try:
            parse_thresholds(expressions)
        except ConfigurationError as exc:
            raise _BadInput(f"--thresholds: {exc}") from None
        for scenario in thresholds if name is None else [name]:
            thresholds[scenario] = expressions.strip()
    return scenarios, skipped, thresholds, host, locustfiles


def _scenario_of(value: str) -> str | None:
    """The scenario a ``--thresholds SCENARIO:EXPRESSIONS`` value is for; None for every scenario."""
    match = _SCENARIO_PREFIX.match(value)
    if match is None:
        return None
    name = match["name"].lower().replace("-", "_")
    if name not in scenario_names():
        raise _BadInput(f"--thresholds: {value!r}: {match['name']!r} is not a scenario ({', '.join(scenario_names())})")
    return name


def _run_all(
    scenarios: list[Scenario],
    skipped: dict[str, str],
    thresholds: dict[str, str],
    settings: Settings,
    timeout: float | None,
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    refused = False
    for scenario in scenarios:
        scale = scenario.time_scale(settings.time_scale)
        if scenario.name in skipped or refused:
            note = skipped.get(scenario.name, "not run: an earlier run's input was refused")
            verdicts.append(Verdict(scenario, SKIPPED, scale, None, note))
            _say("\n".join(scenario_table(verdicts[-1])))
            continue
        note = "" if scale == settings.time_scale else f"at time scale {scale:g}, the smallest it runs at"
        _say(f"{scenario.name}: {scenario.title}, running {scenario.seconds * scale:.1f} s of load{_brackets(note)}")
        command = locust_command(
            settings.locustfiles / scenario.locustfile, scenario.name, settings, scale, thresholds[scenario.name]
        )
        deadline = timeout if timeout is not None else scenario.seconds * scale + STARTUP_SECONDS
        outcome = run_scenario(command, scenario.name, settings.report_dir, deadline)
        verdict = Verdict(scenario, _result(outcome), scale, outcome, note)
        if verdict.result == "timed out":
            verdict.note = f"stopped after {deadline:g} s"
        verdicts.append(verdict)
        refused = verdict.result == "bad input"
        _say("\n".join(scenario_table(verdict)))
    return verdicts


def _result(outcome: Outcome) -> str:
    code = outcome.exit_code
    if code is None:
        return "timed out"
    if code == 0:
        return PASSED
    if code == 2 and not outcome.started:
        return "bad input"  # refused at start, as a bad option or value is
    return "FAIL" if code == 3 or outcome.thresholds else f"error (exit {code})"


def _brackets(note: str) -> str:
    return f" ({note})" if note else ""


def _shown(host: str | None) -> str:
    from wslocust.codec.uri import redact_uri

    return redact_uri(host) if host else "the embedded reference server"


def _say(text: str) -> None:
    print(text, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through run_scenario, which stops the run's process group


def _write_summary(
    report_dir: Path, summary: list[str], verdicts: list[Verdict], target: str, time_scale: float, code: int
) -> None:
    (report_dir / "summary.txt").write_text("\n".join(summary) + "\n")
    document = {
        "target": target,
        "time_scale": time_scale,
        "exit_code": code,
        "scenarios": [
            {
                "name": v.scenario.name,
                "result": v.result,
                "time_scale": v.time_scale,
                "note": v.note,
                "exit_code": v.outcome.exit_code if v.outcome else None,
                "seconds": round(v.outcome.seconds, 2) if v.outcome else None,
                **(figures_summary(v.outcome) if v.outcome else {}),
            }
            for v in verdicts
        ],
    }
    (report_dir / "summary.json").write_text(json.dumps(document, indent=2) + "\n")
