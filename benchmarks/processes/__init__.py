"""
Processes, for the benchmarks and the tests: starting, waiting, pinning,
sampling and stopping them.

- :mod:`.sessions`, shared with the tests: a command in a session of its own
  (:func:`start_in_session`) so that :func:`stop_process_group` ends it with
  everything it forked; :class:`CapturedProcess`, such a process with its
  output in files; :func:`wait_until`, a condition with a deadline.
- :mod:`.children`: a benchmark's :class:`Child` processes, their stdout
  markers, :func:`stop_all_children`.
- :mod:`.trees`: :func:`plan_pinning` (``taskset``), and the CPU-seconds and
  RSS of a :class:`ProcessTree`, sampled by a :class:`TreeSampler`.
"""

from .children import (
    COUNT_TIMEOUT,
    HOST,
    STOP_TIMEOUT,
    Child,
    log,
    raise_open_files_limit,
    set_logs_directory,
    stop_all_children,
)
from .sessions import (
    CapturedProcess,
    free_port,
    group_members,
    json_documents,
    kill_process_group,
    start_in_session,
    stop_process_group,
    wait_for_group,
    wait_until,
)
from .trees import Pinning, ProcessTree, TreeSampler, busy_seconds, plan_pinning

__all__ = [
    "COUNT_TIMEOUT",
    "HOST",
    "STOP_TIMEOUT",
    "CapturedProcess",
    "Child",
    "Pinning",
    "ProcessTree",
    "TreeSampler",
    "busy_seconds",
    "free_port",
    "group_members",
    "json_documents",
    "kill_process_group",
    "log",
    "plan_pinning",
    "raise_open_files_limit",
    "set_logs_directory",
    "start_in_session",
    "stop_all_children",
    "stop_process_group",
    "wait_for_group",
    "wait_until",
]
