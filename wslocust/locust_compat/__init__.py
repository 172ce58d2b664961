"""
Locust's internals, behind one seam: every patch of Locust (and the one override of its ``@final``
``User.run``), as a function or class saying why, what it replaces and
which Locust versions it was read in (2.40.0, 2.43.4, 2.46.6, 2.47.0). :data:`PATCHED` lists every Locust name and
signature wslocust relies on; ``tests/test_locust_compat.py`` fails, naming the function, when one disappears;
CI runs it on the oldest Locust ``setup.cfg`` allows (2.46.6) and the newest 2.x. Not in 2.40.0:
``locust.stats.bucket_response_time`` (2.43.4) and ``CachedResponseTimes.num_none_requests`` (2.46.2).

It imports Locust (and Flask, gevent) only, nothing of wslocust's, so every layer that faces Locust
(the run's data, the user, the integration, the reporting) calls it rather than touching Locust itself.
"""

from wslocust.locust_compat.pages import add_to_web_ui_page, extend_html_report, locust_get_html_report
from wslocust.locust_compat.parser import name_option_errors
from wslocust.locust_compat.request_log import RequestLog
from wslocust.locust_compat.runners import (
    STOP_ALLOWANCE,
    accept_reports_without_user_counts,
    cache_default_args,
    dispatcher_spawn_rate,
    end_a_worker_that_quit_while_created,
    limit_master_heartbeat_timeout,
    listen_before_runner,
    name_stop_callers_from_frames,
    report_as_soon_as_stopped,
    say_when_the_master_is_not_there,
    wait_for_final_reports_on_quit,
    wrap_runner_start,
)
from wslocust.locust_compat.stats import (
    extend_print_stats,
    keep_stats_on_json_output,
    locust_bucket_response_time,
    locust_to_dict,
    patch_response_times,
    restore_response_times,
    write_csv_files_at_close,
)
from wslocust.locust_compat.table import PATCHED
from wslocust.locust_compat.user import SessionUser
from wslocust.locust_compat.web import (
    label_web_ui_fields,
    refuse_swarms,
    reset_fields_at_each_start,
    show_in_web_ui,
)

__all__ = [
    "PATCHED",
    "STOP_ALLOWANCE",
    "RequestLog",
    "SessionUser",
    "accept_reports_without_user_counts",
    "add_to_web_ui_page",
    "cache_default_args",
    "dispatcher_spawn_rate",
    "end_a_worker_that_quit_while_created",
    "extend_html_report",
    "extend_print_stats",
    "keep_stats_on_json_output",
    "label_web_ui_fields",
    "limit_master_heartbeat_timeout",
    "listen_before_runner",
    "locust_bucket_response_time",
    "locust_get_html_report",
    "locust_to_dict",
    "name_option_errors",
    "name_stop_callers_from_frames",
    "patch_response_times",
    "refuse_swarms",
    "report_as_soon_as_stopped",
    "reset_fields_at_each_start",
    "restore_response_times",
    "say_when_the_master_is_not_there",
    "show_in_web_ui",
    "wait_for_final_reports_on_quit",
    "wrap_runner_start",
    "write_csv_files_at_close",
]
