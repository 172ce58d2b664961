"""
Locust's internals that wslocust patches or relies on (wslocust.locust_compat).

The first test walks ``locust_compat.PATCHED`` in a fresh interpreter, where
nothing of wslocust has patched Locust yet, and fails naming the patch whose
Locust name, attribute or signature is gone. The others check what each
patch does, against a real Locust: CI runs this file on the newest Locust 2.x
and on the oldest that ``setup.cfg`` allows.
"""

from __future__ import annotations

import csv
import importlib
import inspect
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gevent
import gevent.event
import locust
import locust.runners
import locust.stats
import pytest
from helpers import wait_for
from locust import User, constant, task
from locust.argument_parser import get_empty_argument_parser
from locust.env import Environment
from locust.event import Events
from locust.exception import StopUser
from locust.stats import RequestStats, StatsCSV, setup_distributed_stats_event_listeners

from wslocust import locust_compat
from wslocust.locust_compat import RequestLog, SessionUser
from wslocust.reporting import bucketing
from wslocust.run.pacing import StartPacer

ROOT = Path(__file__).resolve().parents[1]
_SPEC = re.compile(r"(?P<module>[\w.]+):(?P<path>[\w.]+?)(?:\(\)\.(?P<attribute>\w+))?(?:\((?P<parameters>[^)]*)\))?")


def problem(spec: str) -> str | None:
    """What is wrong with one ``PATCHED`` entry in the Locust of this interpreter, or None."""
    found = _SPEC.fullmatch(spec)
    if found is None:
        return "not an entry of the form module:Name, module:Class().name or module:Name(parameters)"
    try:
        item = importlib.import_module(found["module"])
    except ImportError as exc:
        return f"cannot import {found['module']} ({exc})"
    for part in found["path"].split("."):
        if not hasattr(item, part):
            return f"{getattr(item, '__name__', item)} has no {part!r}"
        item = getattr(item, part)
    if found["attribute"] is not None:
        return _instance_attribute_problem(item, found["attribute"])
    if found["parameters"] is not None:
        expected = [name.strip() for name in found["parameters"].split(",") if name.strip()]
        actual = list(inspect.signature(item).parameters)
        if expected[-1:] == ["..."]:
            expected.pop()
            actual = actual[: len(expected)]
        if actual != expected:
            return f"its parameters are ({', '.join(actual)}), not ({', '.join(expected)})"
    return None


def _instance_attribute_problem(cls: type, attribute: str) -> str | None:
    # Set on instances: "self.name = ..." or "self.name: T = ..." in the class or one of its bases.
    assignment = re.compile(rf"\bself\.{attribute}\s*(?::[^=\n]+)?=(?!=)")
    for klass in cls.__mro__:
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        if assignment.search(source):
            return None
    return f"no {cls.__name__} (or base) sets self.{attribute}"


def all_problems() -> dict[str, list[str]]:
    """Each patch's problems in this interpreter's Locust."""
    return {
        patch: [f"{spec}: {trouble}" for spec in specs if (trouble := problem(spec)) is not None]
        for patch, specs in locust_compat.PATCHED.items()
    }


@pytest.fixture(scope="module")
def problems_in_a_fresh_locust() -> dict[str, list[str]]:
    # In this process earlier tests may have patched Locust, and a patch can create the very name it
    # replaces (locust.stats.print_stats, ...): look in an interpreter that only imported Locust.
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    run = subprocess.run(
        [sys.executable, __file__], cwd=ROOT, env={**os.environ, "PYTHONPATH": path},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.mark.parametrize("patch", sorted(locust_compat.PATCHED))
def test_locust_still_has_what_the_patch_relies_on(patch, problems_in_a_fresh_locust):
    found = problems_in_a_fresh_locust[patch]
    assert not found, f"Locust {locust.__version__} changed under {patch}: " + "; ".join(found)


def test_the_reader_of_the_table_sees_a_name_or_a_signature_that_changed():
    assert problem("locust.stats:no_such_function") == "locust.stats has no 'no_such_function'"
    assert problem("locust.stats:StatsEntry.to_string(self)") == "its parameters are (self, current), not (self)"
    assert problem("locust.stats:StatsEntry.to_string(self, ...)") is None
    assert problem("locust.runners:WorkerRunner().no_such_attribute") is not None
    assert problem("locust.runners:LocalRunner()._users_dispatcher") is None  # set in Runner, a base


# What each patch does -------------------------------------------------------------------------------


class _Idle(User):
    wait_time = constant(600)

    @task
    def nothing(self):
        pass


@pytest.fixture
def fine_buckets():
    installed_here = not bucketing.installed()
    bucketing.install()
    yield
    if installed_here:
        bucketing.uninstall()


def test_response_times_below_a_millisecond_are_kept_and_printed(fine_buckets):
    stats = RequestStats()
    for _ in range(3):
        stats.log_request("WS", "echo", 0.37, 0)
    entry = stats.get("echo", "WS")
    assert dict(entry.response_times) == {0.37: 3}
    assert " 0.37 " in entry.to_string(current=False)
    assert "0.37" in entry.percentile()
    assert entry.to_dict()["min_response_time"] == 0.37
    csv = StatsCSV(Environment(user_classes=[_Idle]), locust.stats.PERCENTILES_TO_REPORT)
    assert csv._percentile_fields(entry)[0] == 0.37


def test_locusts_own_response_times_come_back_when_restored():
    installed_before = bucketing.installed()
    bucketing.install()
    bucketing.uninstall()  # locust_compat.restore_response_times
    try:
        stats = RequestStats()
        stats.log_request("WS", "echo", 0.37, 0)
        assert dict(stats.get("echo", "WS").response_times) == {0: 1}
        assert stats.get("echo", "WS").to_string().split()[5] == "0"  # Locust's "%7d"
    finally:
        if installed_before:
            bucketing.install()


def test_the_console_tables_are_followed_and_json_output_leaves_the_statistics(monkeypatch, tmp_path, capsys):
    for name in ("print_stats", "print_stats_json", "save_stats_json"):
        monkeypatch.setattr(locust.stats, name, getattr(locust.stats, name))  # put back after the test
    followed = []
    locust_compat.extend_print_stats(lambda stats, current: followed.append((stats, current)))
    locust_compat.keep_stats_on_json_output()
    stats = RequestStats()
    for _ in range(3):
        stats.log_request("WS", "echo", 120, 0)
    locust.stats.print_stats(stats, current=False)
    assert followed == [(stats, False)]
    capsys.readouterr()
    locust.stats.print_stats_json(stats)
    printed = json.loads(capsys.readouterr().out)
    locust.stats.save_stats_json(stats, str(tmp_path / "stats"))
    assert json.loads((tmp_path / "stats.json").read_text()) == printed
    assert [row["num_requests"] for row in printed] == [3]
    assert stats.get("echo", "WS").num_requests == 3  # Locust's own would have reset it


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_csv_files_are_written_with_the_final_figures_when_locust_closes_them(monkeypatch, tmp_path):
    monkeypatch.setattr(locust.stats.StatsCSVFileWriter, "close_files", locust.stats.StatsCSVFileWriter.close_files)
    locust_compat.write_csv_files_at_close()
    environment = Environment(events=Events())
    environment.create_local_runner()
    prefix = str(tmp_path / "run")
    writer = locust.stats.StatsCSVFileWriter(environment, locust.stats.PERCENTILES_TO_REPORT, prefix)
    stats = environment.stats
    stats.log_request("WS", "echo", 1, 64)
    writing = gevent.spawn(writer.stats_writer)  # as main() runs it: a pass at once, then one a second
    wait_for(lambda: "echo" in Path(prefix + "_stats.csv").read_text(), timeout=5)
    # Recorded after the writer's last pass (while the users stopped), then Locust's shutdown closes the files.
    stats.log_request("WS", "echo", 2, 64)
    stats.log_request("WS", "connect", 1000, 0)
    stats.log_error("WS", "connect", "ConnectTimeout('no connection within 1 s')")
    writer.close_files()
    writing.kill()
    rows = {row["Name"]: (row["Request Count"], row["Failure Count"]) for row in read_csv(prefix + "_stats.csv")}
    assert rows == {"echo": ("2", "0"), "connect": ("1", "1"), "Aggregated": ("3", "1")}
    [failure] = read_csv(prefix + "_failures.csv")
    assert (failure["Name"], failure["Occurrences"]) == ("connect", "1")
    history = read_csv(prefix + "_stats_history.csv")
    assert [row["Total Request Count"] for row in history] == ["1", "3"]  # the writer's pass, then the last row
    assert writer.requests_csv_filehandle.closed
    writer.close_files()  # Locust's own close_files is harmless twice; so is the patch


def test_a_listener_put_before_the_runners_reads_the_statistics_before_they_are_reset():
    events, stats = Events(), RequestStats()
    setup_distributed_stats_event_listeners(events, stats)  # what a worker runner does when it is created
    stats.log_request("WS", "echo", 5, 0)
    seen = []
    locust_compat.listen_before_runner(events.report_to_master, lambda client_id, data: seen.append(data.copy()))
    data: dict = {}
    events.report_to_master.fire(client_id="worker", data=data)
    assert seen == [{}]  # before Locust's listener filled and reset
    assert data["stats_total"]["num_requests"] == 1
    assert stats.total.num_requests == 0


class _SetClock:
    """``time.time`` at a moment the test moves (both paths of a request read the same moment)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _logged_entries(environment: Environment) -> dict:
    """Every statistics entry and the total, with what Locust would send or print of them."""
    stats = environment.stats
    found = {}
    for key, entry in [*stats.entries.items(), ("total", stats.total)]:
        fields = entry.serialize()
        fields.pop("start_time")  # when the entry was made, not what was logged
        cache = {second: (dict(c.response_times), c.num_requests) for second, c in entry.response_times_cache.items()}
        found[key] = (fields, cache)
    return found


@pytest.mark.parametrize("wslocust_buckets", [False, True], ids=["locust buckets", "wslocust buckets"])
def test_a_direct_success_leaves_what_locusts_request_event_leaves(monkeypatch, wslocust_buckets):
    was_installed = bucketing.installed()
    if wslocust_buckets:
        bucketing.install()
    else:
        bucketing.uninstall()
    try:
        clock = _SetClock()
        monkeypatch.setattr(time, "time", clock)
        by_event, direct = Environment(user_classes=[_Idle]), Environment(user_classes=[_Idle])
        for environment in (by_event, direct):
            environment.create_local_runner()
        log = RequestLog(direct, "WS")
        assert log.direct
        rng = random.Random(7)
        for _ in range(600):  # 37 ms apart: over 22 seconds
            clock.now += 0.037
            name = rng.choice(["echo", "echo", "connect", "ping"])
            response_time = rng.choice([0.0, rng.uniform(0.01, 3.0), rng.uniform(3, 150), rng.uniform(150, 9000)])
            length = rng.randrange(0, 70_000)
            by_event.events.request.fire(
                request_type="WS", name=name, response_time=response_time, response_length=length, exception=None
            )
            log.success(name, response_time, length)
    finally:
        if was_installed:
            bucketing.install()
        else:
            bucketing.uninstall()
    assert by_event.stats.total.num_requests == 600
    assert len(by_event.stats.total.response_times_cache) > 5  # the seconds' cache was filled on both sides
    assert _logged_entries(direct) == _logged_entries(by_event)


def test_an_option_of_a_group_becomes_a_web_ui_field():
    parser = get_empty_argument_parser()
    action = parser.add_argument_group("wslocust").add_argument("--ws-example", default="1")
    assert "ws_example" not in parser.args_included_in_web_ui
    locust_compat.show_in_web_ui(action)
    assert "ws_example" in parser.args_included_in_web_ui  # what ui_extra_args_dict() reads
    assert "ws_example" not in {**parser.secret_args_included_in_web_ui, **parser.required_args_included_in_web_ui}


def test_runner_start_is_wrapped_once_guard_first_then_the_spawn_rate_then_locust():
    environment = Environment(user_classes=[_Idle])
    runner = environment.create_local_runner()
    calls = []

    def admit(users, rate):
        calls.append(("admit", users, rate))
        return users <= 2

    locust_compat.wrap_runner_start(runner, admit=admit, before_start=lambda *args: calls.append(("before", *args)))
    with pytest.raises(RuntimeError):
        locust_compat.wrap_runner_start(runner, admit=admit, before_start=lambda *_: None)
    try:
        assert runner.start(3, spawn_rate=100) is None
        assert calls == [("admit", 3, 100)] and runner.user_count == 0
        runner.start(2, spawn_rate=100)
        assert calls[1:] == [("admit", 2, 100), ("before", 2, 100)]
        wait_for(lambda: runner.user_count == 2)
    finally:
        runner.quit()


def test_a_single_process_start_pacer_reads_the_spawn_rate_of_locusts_dispatcher():
    environment = Environment(user_classes=[_Idle])
    runner = environment.create_local_runner()
    pacer = StartPacer(environment)
    try:
        runner.start(1, spawn_rate=37)
        wait_for(lambda: runner.user_count == 1)
        burst = None
        for _ in range(10):  # ten users started together, without yielding
            burst, _place = pacer.join()
        assert pacer.delay(burst, 5) == pytest.approx(10 / 37 * 5 / 10)
    finally:
        runner.quit()


def test_a_swarm_that_cannot_fit_is_refused_with_the_reason(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["locust"])  # the web UI parses the command line for its extra options
    environment = Environment(user_classes=[_Idle], host="ws://127.0.0.1:1/ws")
    environment.create_local_runner()
    web_ui = environment.create_web_ui("127.0.0.1", 0, delayed_start=True)
    asked = []
    locust_compat.refuse_swarms(web_ui, lambda users: asked.append(users) or "too many users")
    try:
        answer = web_ui.app.test_client().post("/swarm", data={"user_count": "50", "spawn_rate": "1"})
        assert answer.get_json() == {"success": False, "message": "too many users", "host": "ws://127.0.0.1:1/ws"}
        web_ui.app.test_client().get("/stats/requests")
        assert asked == [50]  # only swarms are asked about
    finally:
        environment.runner.quit()


def test_a_stopping_runner_names_its_caller_without_reading_source_files(monkeypatch, caplog):
    # inspect.stack() reads the source of every frame and resolves every module's path: ~25 ms of the
    # event loop at each stop. The debug line stays the same.
    monkeypatch.setattr(locust.runners, "inspect", inspect)

    def stop_a_runner() -> list[str]:
        runner = Environment(user_classes=[_Idle]).create_local_runner()
        caplog.clear()
        with caplog.at_level("DEBUG", logger="locust.runners"):
            runner.stop()
        runner.quit()
        return [record.getMessage() for record in caplog.records if "called from" in record.getMessage()]

    with_source = stop_a_runner()
    locust_compat.name_stop_callers_from_frames()
    locust_compat.name_stop_callers_from_frames()  # idempotent
    source_reads = []
    monkeypatch.setattr(inspect, "getmodule", lambda *args, **kwargs: source_reads.append(args))
    assert stop_a_runner() == with_source
    assert source_reads == []
    assert locust.runners.inspect.signature is inspect.signature  # anything else: the real module


# A master and a worker in this process ---------------------------------------------------------


@pytest.fixture
def master_and_worker(monkeypatch):
    monkeypatch.setattr(locust.runners, "MASTER_HEARTBEAT_TIMEOUT", locust.runners.MASTER_HEARTBEAT_TIMEOUT)
    master_environment = Environment(user_classes=[_Idle])
    master = master_environment.create_master_runner("127.0.0.1", 0)
    worker_environment = Environment(user_classes=[_Idle])
    worker = worker_environment.create_worker_runner("127.0.0.1", master.server.port)
    try:
        wait_for(lambda: master.worker_count == 1, message="the worker connects")
        yield master, worker
    finally:
        worker.greenlet.kill(block=True)
        master.greenlet.kill(block=True)
        worker.client.close()
        master.server.close(linger=0)


def test_a_worker_stopping_its_users_does_not_time_out_its_master(master_and_worker):
    master, worker = master_and_worker
    during_stop = []
    worker.environment.events.test_stop.add_listener(
        lambda **_: during_stop.append(locust.runners.MASTER_HEARTBEAT_TIMEOUT)
    )
    locust_compat.limit_master_heartbeat_timeout(worker, 7)
    assert locust.runners.MASTER_HEARTBEAT_TIMEOUT == 7  # read by Locust's checker at each check:
    assert "MASTER_HEARTBEAT_TIMEOUT" in inspect.getsource(locust.runners.WorkerRunner.heartbeat_timeout_checker)
    master.start(2, spawn_rate=100)
    wait_for(lambda: worker.user_count == 2)
    before = worker.last_heartbeat_timestamp or 0
    worker.stop()
    assert during_stop == [7 + (worker.environment.stop_timeout or 0) + locust_compat.STOP_ALLOWANCE]
    assert locust.runners.MASTER_HEARTBEAT_TIMEOUT == 7
    assert worker.last_heartbeat_timestamp >= before


def test_a_master_takes_a_report_without_user_counts_as_one_of_a_worker_without_users(master_and_worker):
    # A worker told to quit while its runner is still being created reports without them.
    master, worker = master_and_worker
    locust_compat.accept_reports_without_user_counts(master)
    master.environment.events.worker_report.fire(client_id=worker.client_id, data={})
    assert master.clients[worker.client_id].user_classes_count == {}


def test_a_worker_says_once_that_its_master_is_not_there(monkeypatch):
    # Locust's own connect_to_master, on a stand-in for a worker under construction (a real one
    # would keep its message greenlet after its constructor raised); tests/test_forked_workers.py
    # runs a real worker without a master.
    monkeypatch.setattr(locust.runners, "CONNECT_TIMEOUT", 0.2)
    monkeypatch.setattr(locust.runners, "CONNECT_RETRY_COUNT", 4)
    locusts = locust.runners.WorkerRunner.connect_to_master
    monkeypatch.setattr(locust.runners.WorkerRunner, "connect_to_master", getattr(locusts, "wslocust_wraps", locusts))
    said = []
    locust_compat.say_when_the_master_is_not_there(lambda *args: said.append(args))
    locust_compat.say_when_the_master_is_not_there(lambda *args: said.append(args))  # idempotent
    worker = SimpleNamespace(
        retry=0, client=SimpleNamespace(send=lambda message: None), connection_event=gevent.event.Event(),
        client_id="stand-in", master_host="127.0.0.1", master_port=5557, web_base_path="",
    )  # fmt: skip
    worker.connect_to_master = lambda: locust.runners.WorkerRunner.connect_to_master(worker)  # it retries so
    with pytest.raises(ConnectionError):  # Locust gives up after its retries
        worker.connect_to_master()
    [(host, port, seconds)] = said
    assert (host, port) == ("127.0.0.1", 5557)
    assert 0 < seconds <= 0.2 * 4


def test_a_quitting_master_waits_for_its_workers_last_report(master_and_worker):
    master, worker = master_and_worker
    reports, late = [], []
    master.environment.events.worker_report.add_listener(lambda client_id, data, **_: reports.append(data))
    locust_compat.wait_for_final_reports_on_quit(master, 10, late.append)
    master.start(2, spawn_rate=100)
    wait_for(lambda: worker.user_count == 2)

    def worker_process_ends():
        # What locust.main does when a worker's runner is done: "quitting", which tells the master.
        worker.greenlet.join()
        worker.environment.events.quitting.fire(environment=worker.environment, reverse=True)

    gevent.spawn(worker_process_ends)
    reports.clear()
    with gevent.Timeout(20):
        master.quit()
    assert late == [] and len(master.clients) == 0
    assert reports, "the worker's last report came before the master quit"


# The user's own greenlet (wslocust.locust_compat.user) --------------------------------------------------


def test_a_session_user_starts_in_the_spawning_loop_and_stops_at_once():
    log = []

    class Session(SessionUser):
        wait_time = constant(600)

        @task
        def nothing(self):
            pass

        def starting(self):
            log.append("starting")

        def session(self):
            log.append("session")
            self.stoppable_at_once()
            try:
                gevent.sleep(600)
            finally:
                log.append("ended")

    environment = Environment(user_classes=[Session], stop_timeout=60)
    runner = environment.create_local_runner()
    try:
        runner.start(3, spawn_rate=100)
        wait_for(lambda: log.count("session") == 3)
        assert log[:3] == ["starting"] * 3  # the burst's users all started before any greenlet ran
        with gevent.Timeout(10):  # not --stop-timeout's 60 s: a waiting user is killed at once
            runner.stop()
        assert log.count("ended") == 3
    finally:
        runner.quit()


def test_a_session_user_runs_locusts_task_loop_in_run_tasks():
    ran = []

    class Tasks(SessionUser):
        wait_time = constant(0)

        def on_start(self):
            ran.append("on_start")

        @task
        def once(self):
            ran.append("task")
            raise StopUser()

        def on_stop(self):
            ran.append("on_stop")

    environment = Environment(user_classes=[Tasks])
    runner = environment.create_local_runner()
    try:
        runner.start(1, spawn_rate=100)
        wait_for(lambda: "on_stop" in ran)
        assert ran == ["on_start", "task", "on_stop"]
    finally:
        runner.quit()


if __name__ == "__main__":  # the fresh interpreter of problems_in_a_fresh_locust
    print(json.dumps(all_problems()))
