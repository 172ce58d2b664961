"""
Distributed runs: source-address rotation, and the master's view of its workers.

Locust's master/worker mode is the engine (``--processes N`` / ``WORKERS`` on
one host; ``--master`` and ``--worker --master-host`` across hosts). This
module adds what a WebSocket run needs on top of it:

- ``--ws-source-addresses`` / ``WS_SOURCE_ADDRESSES``: each process that runs
  users binds its connections to these local addresses in turn (see
  :mod:`wslocust.transport.addresses`), past the ~28,000 connections one source address
  can hold to one server address and port. It is a property of each host, so
  every process reads its own command line and environment; the master's
  value is not sent to the workers. Workers start the rotation at their
  worker index, so that they do not all begin with the same address.

- Workers that leave: a worker killed with SIGKILL stops sending heartbeats;
  after about 3 s Locust marks it ``missing`` and the run goes on with the
  others (with ``--enable-rebalancing`` its users are started again on them).
  Its last WebSocket counters stay in the totals, since workers send
  snapshots; this module notes when that happens, says so in the logs at
  that moment and at the end of the run, and lists every worker with
  :func:`worker_reports` for monitoring endpoints.

- Spawn messages: Locust's worker spends seconds of CPU on each (it rebuilds
  its argument parser once per option); cached here, so that busy workers
  keep sending heartbeats during a ramp.

- The end of a run: a quitting master waits for every worker's last report
  (Locust alone waits 0.5 s, less than WebSocket users may take to close),
  so that the totals printed at the end hold the whole run.

- A worker that loses its master (killed, or cut off by the network) stops
  its users and quits after :data:`MASTER_TIMEOUT` seconds without a
  heartbeat from it, instead of Locust's 60 s of load that nobody controls.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn

import gevent
from locust import events
from locust import runners as locust_runners
from locust.runners import STATE_MISSING, MasterRunner, WorkerRunner

from wslocust.run.counters import WsCounters
from wslocust.transport.addresses import SourceAddresses, check_bindable, parse_source_addresses

__all__ = [
    "FINAL_REPORT_TIMEOUT",
    "MASTER_TIMEOUT",
    "MISSING_CHECK_INTERVAL",
    "WorkerReport",
    "next_source_address",
    "source_addresses",
    "worker_reports",
]

logger = logging.getLogger("wslocust")

MISSING_CHECK_INTERVAL = 1.0
"""Seconds between the master's looks at its workers' states (Locust's heartbeat interval)."""

MASTER_TIMEOUT = 10
"""Seconds without a heartbeat from the master after which a worker stops its users and quits.
Locust waits 60 s, holding its connections and sending messages all along; the master has
declared such a worker missing after ~3 s (and, with --enable-rebalancing, started its users
elsewhere), so its load is no longer counted nor controlled. 10 s still rides out a short blip."""

_OPTION = "--ws-source-addresses"
_ENV = "WS_SOURCE_ADDRESSES"


# Source addresses -----------------------------------------------------------------


def _check_source_addresses(text: str) -> str:
    try:
        parse_source_addresses(text)
    except ValueError as exc:
        import argparse

        raise argparse.ArgumentTypeError(f"{_ENV} / {_OPTION}: {exc}") from None
    return text


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    # Added to a group, so not in the web UI: these are a host's own addresses, not a run parameter.
    group = _option_group(parser)
    group.add_argument(
        _OPTION,
        type=_check_source_addresses,
        env_var=_ENV,
        default=None,
        metavar="ADDRESSES",
        help="Bind each connection of this process to the next of these local addresses, e.g. "
        "127.0.0.2-127.0.0.50 or 10.0.0.5,10.0.0.6 or 10.0.1.0/28: each one holds about 28,000 connections "
        "to one server address and port. Read by each process from its own command line or environment. "
        "Default: the kernel chooses.",
    )


def _option_group(parser: Any) -> Any:
    # One "wslocust" group in --help, whichever module adds its options first.
    for group in parser._action_groups:
        if group.title == "wslocust":
            return group
    return parser.add_argument_group("wslocust", "WebSocket options (wslocust)")


def source_addresses(environment: Any) -> SourceAddresses | None:
    """This process's source-address rotation, or None when the kernel chooses."""
    return getattr(environment, "ws_source_addresses", None)


def next_source_address(environment: Any) -> tuple[str, int] | None:
    """The ``(address, 0)`` the next connection of this process binds to, or None."""
    rotation: SourceAddresses | None = getattr(environment, "ws_source_addresses", None)
    return rotation.next() if rotation is not None else None


def _source_addresses_of_this_host(environment: Any) -> list[str] | None:
    """The process's ``--ws-source-addresses``, checked; exits with one line if one cannot be bound."""
    options = environment.parsed_options
    text = getattr(options, "ws_source_addresses", None) if options is not None else None
    if text is None or str(text).strip() == "":
        return None
    try:
        addresses = parse_source_addresses(text)
    except ValueError as exc:  # set by hand, not through the command line
        _exit(environment, f"{_ENV} / {_OPTION}: {exc}")
    for address in addresses:
        error = check_bindable(address)
        if error is not None:
            _exit(
                environment,
                f"{_ENV} / {_OPTION}: {address!r} is not an address of this host ({error.strerror or error}); "
                f"use addresses of this host's interfaces (on Linux all of 127.0.0.0/8 is local)",
            )
    return addresses


def _set_up_source_addresses(environment: Any) -> None:
    addresses = _source_addresses_of_this_host(environment)
    if addresses is None:
        return
    start = getattr(environment.runner, "worker_index", 0) or 0
    environment.ws_source_addresses = SourceAddresses(addresses, start=start)
    shown = addresses[0] if len(addresses) == 1 else f"{addresses[0]} ... {addresses[-1]}"
    logger.info("Connections of this process rotate over %d source addresses (%s)", len(addresses), shown)


def _exit(environment: Any, message: str) -> NoReturn:
    from wslocust.integration.settings import stop_at_start

    stop_at_start(environment, f"wslocust: {message}")


# Workers, as the master sees them -----------------------------------------------------


@dataclass
class WorkerReport:
    """One worker as the master knows it: what it last reported, and whether it is still there."""

    id: str
    """Locust's client id: ``hostname_`` plus a random hex string."""
    index: int | None
    """Locust's worker index (0, 1, ...), stable while the master runs."""
    state: str
    """Locust's state (``ready``, ``spawning``, ``running``, ``stopped``), ``missing`` (no
    heartbeat: killed, hung or cut off) or ``disconnected`` (it quit)."""
    last_report: float | None
    """``time.time()`` of its last report, None if it never reported."""
    counters: WsCounters = field(default_factory=WsCounters)
    """Its last WebSocket counters, as included in the totals."""
    missing_since: float | None = None
    """``time.time()`` when the master first saw it missing, else None."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: for ``/ws/stats``-style endpoints."""
        return {
            "id": self.id,
            "index": self.index,
            "state": self.state,
            "last_report": self.last_report,
            "missing_since": self.missing_since,
            "counters": self.counters.as_dict(),
        }


def worker_reports(environment: Any) -> list[WorkerReport]:
    """
    Every worker that is connected or ever reported, by index.

    On a master only; an empty list elsewhere. The counters of a ``missing``
    or ``disconnected`` worker are its last report: they stay in the totals
    (:func:`wslocust.integration.plugin.aggregate_counters`).
    """
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return []
    snapshots: dict[str, WsCounters] = getattr(environment, "ws_worker_counters", {})
    report_times: dict[str, float] = getattr(environment, "ws_worker_report_times", {})
    missing: dict[str, float] = getattr(environment, "ws_missing_workers", {})
    reports = []
    for client_id in {**dict.fromkeys(runner.clients), **dict.fromkeys(snapshots)}:
        node = runner.clients.get(client_id)
        if client_id in missing and (node is None or node.state == STATE_MISSING):
            state = STATE_MISSING
        elif node is not None:
            state = node.state
        else:
            state = "disconnected"
        reports.append(
            WorkerReport(
                id=client_id,
                index=runner.worker_indexes.get(client_id),
                state=state,
                last_report=report_times.get(client_id),
                counters=snapshots.get(client_id) or WsCounters(),
                missing_since=missing.get(client_id) if state == STATE_MISSING else None,
            )
        )
    reports.sort(key=lambda report: (report.index is None, report.index or 0, report.id))
    return reports


@events.worker_report.add_listener
def _note_report_time(client_id: str, data: dict[str, Any], **_: Any) -> None:
    environment = _state.environment
    if environment is not None:
        if not hasattr(environment, "ws_worker_report_times"):
            environment.ws_worker_report_times = {}
        environment.ws_worker_report_times[client_id] = time.time()


def _watch_workers(environment: Any, runner: MasterRunner) -> None:
    # Locust has no event for a worker that goes missing: look at each heartbeat tick.
    missing: dict[str, float] = environment.ws_missing_workers
    while True:
        gevent.sleep(MISSING_CHECK_INTERVAL)
        try:
            _check_workers(environment, runner, missing)
        except Exception:  # never let monitoring end the run
            logger.exception("wslocust: checking the workers failed")


def _check_workers(environment: Any, runner: MasterRunner, missing: dict[str, float]) -> None:
    for node in list(runner.clients.values()):
        if node.state == STATE_MISSING and node.id not in missing:
            missing[node.id] = time.time()
            logger.warning("wslocust: %s", _describe_missing(environment, runner, node.id))
        elif node.state != STATE_MISSING and node.id in missing:
            del missing[node.id]
            logger.info(
                "wslocust: worker %s (index %s) is back; its next report replaces its last one",
                node.id,
                runner.worker_indexes.get(node.id),
            )


def _describe_missing(environment: Any, runner: MasterRunner, client_id: str) -> str:
    snapshot = getattr(environment, "ws_worker_counters", {}).get(client_id)
    reported = getattr(environment, "ws_worker_report_times", {}).get(client_id)
    who = f"worker {client_id} (index {runner.worker_indexes.get(client_id)})"
    if snapshot is None or reported is None:
        return f"{who} is missing (no heartbeat) and never reported WebSocket counters"
    return (
        f"{who} is missing (no heartbeat): its last report, from {_clock(reported)} "
        f"({snapshot.open} open, {snapshot.connects_succeeded} connects, {snapshot.messages_sent} messages sent), "
        f"stays in the totals"
    )


def _clock(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def _log_missing_workers() -> None:
    environment = _state.environment
    if environment is None or not isinstance(environment.runner, MasterRunner):
        return
    missing = [report for report in worker_reports(environment) if report.state == STATE_MISSING]
    if not missing:
        return
    described = "; ".join(
        f"{report.id} (index {report.index}, missing since {_clock(report.missing_since or 0)}, "
        f"last report {_clock(report.last_report) if report.last_report else 'never'})"
        for report in missing
    )
    logger.warning(
        "wslocust: the WebSocket totals include the last report of %d missing worker%s: %s",
        len(missing),
        "" if len(missing) == 1 else "s",
        described,
    )


# Workers: spawn messages in milliseconds, not seconds -----------------------------------


def _cache_default_args() -> None:
    """
    Compute Locust's ``argument_parser.default_args_dict()`` once per process.

    A Locust worker handling a "spawn" message calls it once for every option
    the master sent (``WorkerRunner.handle_message``), and each call builds and
    runs a complete argument parser: 10-30 ms, so a few seconds of CPU per
    message, in the thread that also sends heartbeats. Measured here during a
    ramp of 16,000 connections on four workers: every worker was in it most of
    the time, heartbeats came late, the master marked all four missing, and
    "the last worker went missing" stopped the run. The result depends only on
    Locust's own options and the environment, neither of which changes during
    a run. Callers only test membership; each gets its own copy anyway.
    """
    from locust import argument_parser

    compute = argument_parser.default_args_dict
    if getattr(compute, "wslocust_cached", False):
        return
    computed: list[dict[str, Any]] = []

    def default_args_dict() -> dict[str, Any]:
        if not computed:
            computed.append(compute())
        return dict(computed[0])

    default_args_dict.wslocust_cached = True  # type: ignore[attr-defined]
    argument_parser.default_args_dict = default_args_dict


# The end of a run: every worker's last report ------------------------------------------


FINAL_REPORT_TIMEOUT = 10.0
"""Seconds, on top of ``--stop-timeout``, that a quitting master waits for its workers' last reports."""


def _wait_for_final_reports(runner: MasterRunner) -> None:
    """
    Make ``runner.quit()`` wait until every worker has sent its last report.

    Locust's master sends "quit" to its workers, waits 0.5 s for their last
    statistics, and stops listening. A worker sends them only after its users
    have stopped, and a WebSocket user first waits for its in-flight replies
    and the close handshake (``close_timeout``), so on a loaded host the last
    seconds of a run went missing from the totals (locust issue #1426). A
    worker's "quit" message follows its last report on the same connection:
    wait for that, from every worker that is not missing, then let Locust
    quit as before.
    """
    locust_quit = runner.quit

    def quit() -> None:
        runner.stop(send_stop_to_client=False)  # what Locust's quit() does first; a no-op the second time
        waiting = {node.id for node in runner.clients.all if node.state != STATE_MISSING}
        for client_id in waiting:
            runner.send_message("quit", client_id=client_id)
        limit = (runner.environment.stop_timeout or 0.0) + FINAL_REPORT_TIMEOUT
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            # Gone once its "quit" came, after its last report. Not "missing": a worker closing
            # thousands of connections can miss heartbeats for seconds, and still report.
            left = [client_id for client_id in waiting if client_id in runner.clients]
            if not left:
                break
            gevent.sleep(0.05)
        else:
            logger.warning(
                "wslocust: no last report within %g s from %s: their previous reports stay in the totals",
                limit,
                ", ".join(sorted(left)),
            )
        locust_quit()

    runner.quit = quit  # type: ignore[method-assign]


@dataclass
class _State:
    environment: Any = None
    quit_listener_added: bool = False


_state = _State()


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    _state.environment = environment
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        environment.ws_missing_workers = {}
        environment.ws_worker_report_times = {}
        runner.greenlet.spawn(_watch_workers, environment, runner)
        _wait_for_final_reports(runner)
        if getattr(environment.parsed_options, "processes", None):
            # Its workers are forked on this host: a bad address stops the run here, once.
            _source_addresses_of_this_host(environment)
        if not _state.quit_listener_added:
            # Added now, after every module-level "quit" listener: this line
            # follows the WebSocket results that wslocust.reporting.reports prints.
            events.quit.add_listener(lambda **_: _log_missing_workers())
            _state.quit_listener_added = True
    elif runner is not None:  # a LocalRunner or a WorkerRunner: it runs users
        if isinstance(runner, WorkerRunner):
            _cache_default_args()
            # Read by WorkerRunner.heartbeat_timeout_checker at each check: a module global of Locust's.
            locust_runners.MASTER_HEARTBEAT_TIMEOUT = MASTER_TIMEOUT
            _no_master_timeout_while_stopping(runner)
        _set_up_source_addresses(environment)


def _no_master_timeout_while_stopping(runner: WorkerRunner) -> None:
    """
    Suspend the master timeout while the worker stops its users.

    A worker handles "stop" and "quit" in its message loop, which reads nothing else until
    every user is stopped: closing 12,500 connections took 16 s, the master's heartbeats
    waited unread, and after :data:`MASTER_TIMEOUT` the worker quit in the middle, its last
    report unsent. Stopping is bounded by itself (``--stop-timeout``, each user's
    ``close_timeout``), so no timeout is lost.
    """
    locust_stop = runner.stop

    def stop(*args: Any, **kwargs: Any) -> Any:
        locust_runners.MASTER_HEARTBEAT_TIMEOUT = math.inf
        try:
            return locust_stop(*args, **kwargs)
        finally:
            runner.last_heartbeat_timestamp = time.time()  # the heartbeats that waited are read next
            locust_runners.MASTER_HEARTBEAT_TIMEOUT = MASTER_TIMEOUT

    runner.stop = stop  # type: ignore[method-assign]


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner) or not getattr(environment, "ws_embedded_server", None):
        return
    # Worker ids start with their host name: --processes workers share the master's.
    local = socket.gethostname() + "_"
    if any(not client_id.startswith(local) for client_id in runner.clients):
        logger.warning(
            "wslocust: the embedded reference server listens on %s of the master only: workers on other "
            "hosts cannot reach it. Give the target with --host or WS_SERVER_URL.",
            environment.ws_embedded_server.url,
        )
