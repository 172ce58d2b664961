"""Every Locust name and signature wslocust relies on beyond Locust's documented API."""

from __future__ import annotations

__all__ = ["PATCHED"]


def _each(prefix: str, names: str, suffix: str = "") -> tuple[str, ...]:
    return tuple(prefix + name + suffix for name in names.split())


PATCHED: dict[str, tuple[str, ...]] = {
    "patch_response_times": (
        "locust.stats:bucket_response_time(response_time)",
        "locust.stats:StatsEntry.to_string(self, current)",
        "locust.stats:StatsEntry.percentile(self)",
        "locust.stats:StatsEntry.to_dict(self, escape_string_values)",
        "locust.stats:StatsCSV._percentile_fields(self, stats_entry, use_current)",
        "locust.stats:StatsEntry.get_response_time_percentile(self, percent, ...)",
        "locust.stats:StatsEntry.get_current_response_time_percentile(self, percent, ...)",
        *_each("locust.stats:", "STATS_TYPE_WIDTH STATS_NAME_WIDTH PERCENTILES_TO_REPORT"),
        *_each("locust.stats:StatsEntry.", "current_rps current_fail_per_sec total_rps total_fail_per_sec fail_ratio"),
        *_each("locust.stats:StatsEntry.", "avg_response_time median_response_time"),
        *_each("locust.stats:StatsEntry().", "method name num_requests num_failures min_response_time"),
        *_each("locust.stats:StatsEntry().", "max_response_time use_response_times_cache"),
        *_each("locust.stats:StatsCSV().", "percentiles_to_report percentiles_na"),
    ),
    "extend_print_stats": ("locust.stats:print_stats(stats, current)",),
    "keep_stats_on_json_output": (
        "locust.stats:print_stats_json(stats)",
        "locust.stats:save_stats_json(stats, filename)",
        "locust.stats:StatsEntry.serialize(self)",
        "locust.stats:RequestStats().entries",
    ),
    "write_csv_files_at_close": (
        "locust.stats:StatsCSVFileWriter.close_files(self)",
        "locust.stats:StatsCSVFileWriter._stats_history_data_rows(self, csv_writer, now)",
        *_each("locust.stats:StatsCSV.", "requests_csv failures_csv exceptions_csv", "(self, csv_writer)"),
        *_each("locust.stats:StatsCSVFileWriter().", "stats_history_csv_columns stats_history_csv_filehandle"),
        *_each("locust.stats:StatsCSVFileWriter().", "stats_history_csv_writer requests_csv_filehandle"),
        *_each("locust.stats:StatsCSVFileWriter().", "requests_csv_writer failures_csv_filehandle failures_csv_writer"),
        *_each("locust.stats:StatsCSVFileWriter().", "exceptions_csv_filehandle exceptions_csv_writer"),
    ),
    "cache_default_args": ("locust.argument_parser:default_args_dict()",),
    "limit_master_heartbeat_timeout": (
        "locust.runners:MASTER_HEARTBEAT_TIMEOUT",
        "locust.runners:WorkerRunner.heartbeat_timeout_checker(self)",
        "locust.runners:WorkerRunner.stop(self, ...)",
        "locust.runners:WorkerRunner().last_heartbeat_timestamp",
    ),
    "wait_for_final_reports_on_quit": (
        "locust.runners:MasterRunner.quit(self)",
        "locust.runners:MasterRunner.stop(self, send_stop_to_client, ...)",
        "locust.runners:MasterRunner.send_message(self, msg_type, data, client_id, ...)",
        "locust.runners:MasterRunner().clients",
        "locust.runners:WorkerNodes.all",
        "locust.runners:STATE_MISSING",
        "locust.env:Environment().stop_timeout",
    ),
    "wrap_runner_start": _each(
        "locust.runners:", "Runner LocalRunner MasterRunner", ".start(self, user_count, spawn_rate, ...)"
    ),
    "end_a_worker_that_quit_while_created": (
        "locust.runners:WorkerRunner.worker(self)",
        "locust.runners:WorkerRunner().greenlet",
    ),
    "report_as_soon_as_stopped": (
        "locust.runners:WorkerRunner._send_stats(self)",
        "locust.runners:WorkerRunner().environment",
    ),
    "accept_reports_without_user_counts": (
        "locust.runners:MasterRunner().environment",
        "locust.runners:MasterRunner().clients",
    ),
    "name_stop_callers_from_frames": ("locust.runners:inspect", "locust.runners:Runner.stop(self)"),
    "say_when_the_master_is_not_there": (
        "locust.runners:WorkerRunner.connect_to_master(self)",
        *_each("locust.runners:", "CONNECT_TIMEOUT CONNECT_RETRY_COUNT"),
    ),
    "listen_before_runner": (
        "locust.event:EventHook()._handlers",
        "locust.stats:setup_distributed_stats_event_listeners(events, stats)",
    ),
    "RequestLog": (
        "locust.event:EventHook()._handlers",
        "locust.env:Environment().stats",
        "locust.runners:Runner.stats",
        "locust.stats:bucket_response_time(response_time)",
        "locust.stats:RequestStats().total",
        "locust.stats:RequestStats().entries",
        "locust.stats:StatsEntry.log(self, response_time, content_length)",
        "locust.stats:StatsEntry._cache_response_times(self, t)",
        *_each("locust.stats:StatsEntry().", "num_requests num_reqs_per_sec last_request_timestamp"),
        *_each("locust.stats:StatsEntry().", "total_response_time min_response_time max_response_time"),
        *_each("locust.stats:StatsEntry().", "response_times total_content_length use_response_times_cache"),
    ),
    "show_in_web_ui": (
        "locust.argument_parser:ui_extra_args_dict(args, ...)",
        "locust.argument_parser:LocustArgumentParser.args_included_in_web_ui",
        "locust.argument_parser:LocustArgumentParser.secret_args_included_in_web_ui",
        "locust.argument_parser:LocustArgumentParser.required_args_included_in_web_ui",
    ),
    "refuse_swarms": ("locust.web:WebUI().app", "locust.web:WebUI().environment"),
    "add_to_web_ui_page": ("locust.web:WebUI().app",),
    "extend_html_report": (
        "locust.html:get_html_report(environment, show_download_link, theme)",
        "locust.main:get_html_report",
        "locust.web:get_html_report",
    ),
    "label_web_ui_fields": ("locust.web:WebUI.update_template_args(self)", "locust.web:WebUI().template_args"),
    "reset_fields_at_each_start": ("locust.web:WebUI().app", "locust.web:WebUI().environment"),
    "name_option_errors": ("locust.argument_parser:LocustArgumentParser.error(self, message)",),
    "dispatcher_spawn_rate": (
        "locust.runners:LocalRunner()._users_dispatcher",
        "locust.dispatch:UsersDispatcher()._spawn_rate",
    ),
    "SessionUser": (
        "locust.user.users:User.start(self, group)",
        "locust.user.users:User.run(self)",
        "locust.user.users:User()._state",
        "locust.user.users:User()._cp_last_run",
        "locust.user.users:User()._cp_last_wait_time",
        "locust.user.task:LOCUST_STATE_WAITING",
        "locust.user.users:User.stop(self, force)",
        "locust.user.users:User()._group",
        "locust.user.users:User()._greenlet",
        "locust.runners:STATE_CLEANUP",
        "locust.runners:Runner().user_greenlets",
        "locust.runners:Runner().state",
        "locust.runners:Runner.stop_users(self, user_classes_stop_count)",
    ),
    # Read, not patched, by the reporting modules:
    "wslocust.reporting.latency": (
        "locust.stats:calculate_response_time_percentile(response_times, num_requests, percent)",
        "locust.stats:diff_response_time_dicts(latest, old)",
        "locust.stats:CURRENT_RESPONSE_TIME_PERCENTILE_WINDOW",
        *_each("locust.stats:CachedResponseTimes.", "response_times num_requests num_none_requests"),
        *_each("locust.stats:StatsEntry().", "response_times response_times_cache num_none_requests"),
        "locust.stats:StatsEntry().last_request_timestamp",
    ),
    "wslocust.reporting.verdict": ("locust.log:unhandled_greenlet_exception", "locust.runners:Runner().exceptions"),
}
"""
Every Locust name wslocust relies on beyond Locust's documented API, by the function or class of
:mod:`wslocust.locust_compat` (or the module elsewhere) relying on it. ``module:Name`` must exist; ``module:Class().name`` is set on instances
(``self.name =`` in the class or a base); ``(a, b)`` are its exact parameters (wslocust installs its own
function there), ``(a, b, ...)`` the first ones. ``tests/test_locust_compat.py`` checks each.
"""
