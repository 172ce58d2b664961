"""
How wslocust plugs into a Locust run: the one module that registers Locust
event listeners and message handlers. Every other module is plain functions
and classes that the listeners below call.

Locust has no plugin discovery: an extension works by being imported.
Importing this module (which ``from wslocust import WebSocketUser`` does)
makes the workers Locust will fork end with their parent
(:mod:`wslocust.integration.forked_workers`), makes a worker say when its master
is not there (Locust's constructor of a worker waits for it before any
event), and registers three listeners on ``locust.events``:

- ``init_command_line_parser``: every ``--ws-*`` option
  (:func:`wslocust.integration.options.add_options`);
- ``init``: :func:`_on_init`, below;
- ``quitting``: the thresholds' verdict. Registered now, before Locust's
  runner adds its own ``quitting`` listener: Locust fires ``quitting`` in
  reverse order, so the verdict comes after a master's quit, which waits for
  the workers' last reports, and sees the final figures.

At ``init``, the run's :class:`~wslocust.run.state.RunState` is attached to
the environment (``environment.wslocust``), and this process is set up, in
this order:

1. The open-files soft limit is raised to the hard limit: before anything
   opens descriptors, and before step 7 checks what fits in it. gevent stops
   keeping each greenlet's spawning stack (a kilobyte per user).
2. Secrets are kept out of every output: before any line below could show a
   target or a header.
3. Locust's response-time buckets keep sub-millisecond figures: before the
   first request is logged (workers make the histogram keys).
4. Distribution. A master registers its message handlers (first: forked
   workers may report while this init runs) and takes a report without
   user counts, watches for missing workers, makes its ``quit``
   wait for their last reports, and, when it forked its workers
   (``--processes``), checks their source addresses once (they share its
   host). A worker caches Locust's default options (spawn messages) and stops
   after :data:`~wslocust.integration.distributed.MASTER_TIMEOUT` without its
   master. A process that runs users starts its source-address rotation.
5. The scenario: a worker takes the schedule its master sends and reports its
   open connections while a shape watches them; a master takes those reports;
   a master or single process checks its shape's settings (or warns about
   scenario options without a shape).
6. The target (master or single process): checked, else the embedded
   reference server starts; before step 7, which counts two descriptors per
   user when the server runs in the same process.
7. Open-files limits: a worker tells its master its limit; a master notes
   when each worker connects and takes their limits; a master or single
   process refuses a headless run that cannot fit, then wraps
   ``runner.start`` once (every later start is checked; a master also tells
   its workers their share of the spawn rate, for
   :mod:`wslocust.run.pacing`), and refuses web UI swarms that cannot fit.
8. Live metrics: the event-loop lag probe starts, then every process samples
   itself once a second (a worker for its reports); a master or single process
   records the dashboard's series once a second (:mod:`wslocust.reporting.series`).
9. Text outputs (master or single process): the WebSocket lines under each
   console table, ``--json`` that leaves the statistics intact, and the
   ``--csv`` files (Locust's written once more when it closes them, after
   the users have stopped; ours at ``quit``), and the WebSocket section of
   the ``--html`` report (:mod:`wslocust.reporting.html_report`).
10. Thresholds (master or single process): parsed, and watched with
    ``--ws-thresholds-abort``.
11. The web UI, when there is one: routes, tabs, and the concealed host in
    the start form's answer; the form's wslocust fields (:mod:`wslocust.integration.web_form`);
    the dashboard's page and its link (:mod:`wslocust.reporting.dashboard`).

Listeners added to ``environment.events`` at ``init``, closures over the
environment and its state, each list in the order it fires:

- ``report_to_master`` (worker): the counters and the live-metrics report,
  under one key. Put *before* Locust's own listener (which the runner added
  before ``init``): that one empties the error table and resets the
  statistics that the report reads.
- ``worker_report`` (master): the report into the worker's view, then into
  the live metrics.
- ``worker_connect`` (master): when the worker connected (step 7 waits
  briefly for a new worker's limit).
- ``test_start``: the loop-lag run figures start over; on a master, a warning when the embedded server cannot
  serve workers on other hosts; the concealed targets shared with the
  workers (a worker takes them); the live figures and the dashboard's series start over; with an
  :class:`~wslocust.integration.shapes.ErrorRecovery` shape, the fault
  experiment starts (:mod:`wslocust.integration.recovery`).
- ``reset_stats``, ``spawning_complete`` (with ``--reset-stats``): the live
  figures start over, as Locust's do.
- ``quit`` (after Locust's final tables): the greppable summary line and the
  embedded server's stop; the background greenlets' end; the results block
  and the last CSV rows; the thresholds' table; on a master, the line naming
  missing workers whose last report is in the totals, last, so that it
  follows the results it qualifies.

Message handlers (Locust custom messages): ``wslocust_schedule`` (worker),
``wslocust_connections`` and ``wslocust_open_files`` (master).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import gevent
from locust import events
from locust.runners import MasterRunner, WorkerRunner

from wslocust import locust_compat
from wslocust.gc_freeze import FREEZER
from wslocust.integration import distributed, forked_workers, limits, options, recovery, scenario, secrets, target
from wslocust.integration.shapes import ErrorRecovery
from wslocust.integration.source_addresses import check_source_addresses, set_up_source_addresses
from wslocust.integration.stages import Stages
from wslocust.integration.web_form import set_up_web_form
from wslocust.reporting import bucketing, csv_files, dashboard, reports, verdict, web
from wslocust.reporting.html_report import report_section
from wslocust.reporting.live import Live, tick_forever
from wslocust.reporting.series import Series, record_forever
from wslocust.run.pacing import tell_workers_their_rate
from wslocust.run.state import REPORT_KEY, RunState, run_state, worker_report

if TYPE_CHECKING:
    from locust.env import Environment

__all__: list[str] = []


def _forget_greenlet_spawn_stacks() -> None:
    """
    gevent keeps, with every greenlet, the stack that spawned it (a debugging aid that Locust does not
    use): about a kilobyte per held connection. Left on when the user asks for it
    (``GEVENT_TRACK_GREENLET_TREE``).
    """
    if "GEVENT_TRACK_GREENLET_TREE" not in os.environ:
        gevent.config.track_greenlet_tree = False


def _on_init(environment: Environment, runner: Any = None, web_ui: Any = None, **_: Any) -> None:
    runner = environment.runner
    state = run_state(environment)
    is_worker = isinstance(runner, WorkerRunner)
    is_master = isinstance(runner, MasterRunner)
    # 1-3. Before anything opens a descriptor, prints a target or logs a request.
    limits.raise_open_files_limit()
    _forget_greenlet_spawn_stacks()
    secrets.keep_secrets_out_of_output(environment)
    bucketing.install()
    # 4. Distribution.
    if is_master:
        _register_master_messages(environment, runner, state)
        runner.greenlet.spawn(distributed.watch_workers, state, runner)
        locust_compat.wait_for_final_reports_on_quit(
            runner, distributed.FINAL_REPORT_TIMEOUT, lambda late: distributed.log_late_workers(environment, late)
        )
        if getattr(environment.parsed_options, "processes", None):
            check_source_addresses(environment)  # its workers are forked on this host: a bad address stops here, once
    elif runner is not None:  # a LocalRunner or a WorkerRunner: it runs users
        if is_worker:
            locust_compat.cache_default_args()
            locust_compat.limit_master_heartbeat_timeout(runner, distributed.MASTER_TIMEOUT)
            locust_compat.report_as_soon_as_stopped(runner)
        set_up_source_addresses(environment, state)
        # The users' long-lived objects out of the collector's full passes while users come (wslocust.gc_freeze).
        state.greenlets.append(gevent.spawn(FREEZER.look_forever, "users", lambda: runner.user_count, gevent.sleep))
    # 5. The scenario.
    if is_worker:
        runner.register_message(scenario.SCHEDULE_MESSAGE, lambda msg, **_: scenario.receive_schedule(state, msg.data))
        runner.greenlet.spawn(scenario.send_connections_forever, state, runner)
        locust_compat.end_a_worker_that_quit_while_created(runner)  # after the last spawn into its group
    if not is_worker and environment.parsed_options is not None:
        if isinstance(environment.shape_class, Stages):
            environment.shape_class.check_settings()
        else:
            scenario.warn_ignored_options(environment)
    # 6. The target.
    if not is_worker:
        target.set_up_target(environment, state)
    # 7. Open-files limits.
    if is_worker:
        runner.send_message(limits.OPEN_FILES_MESSAGE, limits.open_files_report())
    elif runner is not None:
        _guard_open_files(environment, runner, state, web_ui)
    # 8. Live metrics, with the loop-lag figures they carry.
    state.loop_lag.start()
    live = state.live = Live(environment)
    state.greenlets.append(gevent.spawn(tick_forever, live))
    series = None if is_worker else Series()
    if series is not None:
        state.greenlets.append(gevent.spawn(record_forever, series, live))
    # 9-11. What a master or single process shows.
    if series is not None:
        _set_up_outputs(environment, state, live, series)
        if verdict.set_up_thresholds(environment, state):
            state.abort_checker = gevent.spawn(verdict.abort_on_breach, environment, state)
        if web_ui is not None:
            web.install(environment, web_ui, live)
            set_up_web_form(environment, web_ui)
            dashboard.install(environment, web_ui, series)
    _add_listeners(environment, state, live, series)


def _register_master_messages(environment: Environment, runner: MasterRunner, state: RunState) -> None:
    # First of all: forked workers connect while the master's init runs (and may stop the run), and
    # a message without its handler is logged as unknown.
    runner.register_message(
        scenario.CONNECTIONS_MESSAGE, lambda msg, **_: scenario.receive_connections(state, msg.node_id, msg.data)
    )
    runner.register_message(
        limits.OPEN_FILES_MESSAGE, lambda msg, **_: limits.receive_open_files(state, msg.node_id, msg.data)
    )
    locust_compat.accept_reports_without_user_counts(runner)


def _guard_open_files(environment: Environment, runner: Any, state: RunState, web_ui: Any) -> None:
    if isinstance(runner, MasterRunner):
        environment.events.worker_connect.add_listener(
            lambda client_id, **_: setattr(state.worker(client_id), "connected_at", time.monotonic())
        )
    if environment.parsed_options is not None:
        limits.check_at_start(environment)
    master = isinstance(runner, MasterRunner) and environment.parsed_options is not None
    locust_compat.wrap_runner_start(
        runner,
        admit=limits.StartGuard(environment, runner).admit,
        before_start=lambda _, spawn_rate: tell_workers_their_rate(environment, runner, spawn_rate) if master else None,
    )
    if web_ui is not None:
        locust_compat.refuse_swarms(web_ui, limits.swarm_refusal(environment))


def _set_up_outputs(environment: Environment, state: RunState, live: Live, series: Series) -> None:
    locust_compat.extend_print_stats(lambda stats, current: reports.print_console_lines(live, stats, current))
    locust_compat.keep_stats_on_json_output()
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix:
        locust_compat.write_csv_files_at_close()  # Locust's files too end with the final figures
        files = state.csv_files = csv_files.CsvFiles(prefix)
        state.greenlets.append(gevent.spawn(csv_files.write_forever, files, live))
    # Locust writes --html before the quit event (the series are still there), and on the web UI's Download.
    locust_compat.extend_html_report(lambda env: report_section(live, series) if env is environment else "")


def _add_listeners(environment: Environment, state: RunState, live: Live, series: Series | None) -> None:
    runner = environment.runner
    is_worker = isinstance(runner, WorkerRunner)
    is_master = isinstance(runner, MasterRunner)
    hooks = environment.events

    def on_report_to_master(client_id: str, data: dict[str, Any], **_: Any) -> None:
        # Snapshots, not deltas: the master keeps each worker's latest, so a
        # report lost or a worker killed never double-counts or drops history.
        data[REPORT_KEY] = worker_report(state.counters, live.node_report() if environment.runner is not None else None)

    def on_worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
        view = state.receive_worker_report(client_id, data)
        if view is not None:
            live.receive(view)

    def on_test_start(**_: Any) -> None:
        # Locust's test_start comes before any user is spawned, after a host typed in the
        # web UI's start form was set. A worker's comes after the spawn message's options.
        state.loop_lag.reset()  # the run's loop-lag figures count from the start, in every process
        target.warn_if_workers_cannot_reach(environment, state)
        secrets.share_concealed_targets(environment, worker=is_worker)
        if series is not None:  # not a worker
            live.reset()  # Locust clears its statistics at each new start; so do we.
            series.clear()
            if isinstance(environment.shape_class, ErrorRecovery):
                recovery.start(environment, environment.shape_class)

    def on_reset_stats(**_: Any) -> None:
        if not is_worker:
            live.reset()

    def on_spawning_complete(**_: Any) -> None:
        if not is_worker and environment.reset_stats:  # --reset-stats, as Locust does
            live.reset()

    def on_quit(**_: Any) -> None:
        # "quit" comes after the runner stopped every user ("quitting" may come before).
        if not is_worker:
            reports.log_summary(state.total_counters())
            target.stop_embedded_server(state)
        state.kill_greenlets()
        if not is_worker and environment.runner is not None:
            snapshot = reports.print_results(live)
            if state.csv_files is not None:
                state.csv_files.write(snapshot, final=True)
                state.csv_files.close()
                state.csv_files = None
        verdict.print_table(state)
        if is_master:
            distributed.log_missing_workers(environment)

    locust_compat.listen_before_runner(hooks.report_to_master, on_report_to_master)
    hooks.worker_report.add_listener(on_worker_report)
    hooks.test_start.add_listener(on_test_start)
    hooks.reset_stats.add_listener(on_reset_stats)
    hooks.spawning_complete.add_listener(on_spawning_complete)
    hooks.quit.add_listener(on_quit)


def _on_quitting(environment: Environment, **_: Any) -> None:
    # After the master's own "quitting" listener (fired in reverse order), which
    # waits for the workers' final reports: the figures are final.
    state = run_state(environment)
    if state.abort_checker is not None:
        state.abort_checker.kill(block=False)
        state.abort_checker = None
    verdict.decide_exit_code(environment, state)


forked_workers.end_forked_workers_with_their_parent()
locust_compat.say_when_the_master_is_not_there(distributed.log_no_master)
locust_compat.name_stop_callers_from_frames()
events.init_command_line_parser.add_listener(options.add_options)
events.init.add_listener(_on_init)
events.quitting.add_listener(_on_quitting)
