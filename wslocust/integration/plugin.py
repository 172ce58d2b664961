"""
How wslocust plugs into a Locust run: its command-line options, the target
default (``WS_SERVER_URL``, else the embedded reference server), the
open-files limit, and the WebSocket counters shipped from workers to the
master.

Importing :mod:`wslocust` registers these listeners on ``locust.events``
once; Locust has no plugin discovery, an extension works by being imported.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
from typing import Any

import gevent
from locust import events
from locust.runners import WorkerRunner

from wslocust.codec.uri import parse_uri
from wslocust.exceptions import ConfigurationError
from wslocust.integration import distributed
from wslocust.integration.settings import stop_at_start
from wslocust.redaction import (
    RedactedStderr,
    RedactSecrets,
    add_concealed_targets,
    conceal_uri,
    concealed_targets,
    is_secret_header,
    register_secret,
    register_uri_secrets,
)
from wslocust.run.counters import REPORT_KEY, WsCounters

__all__ = [
    "DEFAULT_MESSAGE_INTERVAL_MS",
    "DEFAULT_TARGET",
    "aggregate_counters",
    "conceal_targets",
    "counters",
    "default_target",
    "message_interval",
    "next_source_address",
]

logger = logging.getLogger("wslocust")

DEFAULT_TARGET = "ws://localhost:3003/ws"
"""The original suite's default ``WS_SERVER_URL``."""
EMBEDDED_HOST = "127.0.0.1"
EMBEDDED_PORT = 3003
DEFAULT_MESSAGE_INTERVAL_MS = 5000.0


# Options ---------------------------------------------------------------------


def _milliseconds(option: str, env: str) -> Any:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value >= 0 or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{env} / {option}: {text!r} is not a number of milliseconds >= 0")
        return value

    return parse


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    from wslocust.integration.settings import show_in_web_ui

    group = parser.add_argument_group("wslocust", "WebSocket options (wslocust)")
    action = group.add_argument(
        "--ws-message-interval",
        type=_milliseconds("--ws-message-interval", "MESSAGE_INTERVAL"),
        env_var="MESSAGE_INTERVAL",
        default=None,
        metavar="MS",
        help="Milliseconds between the periodic messages of each connection (users without tasks); "
        "0 sends none. Overrides the locustfile's message_interval. Default: the locustfile's, else 5000.",
    )
    show_in_web_ui(action)
    group.add_argument(
        "--ws-embedded-port",
        type=_port,
        env_var="WS_EMBEDDED_PORT",
        default=EMBEDDED_PORT,
        metavar="PORT",
        help=f"Port of the embedded reference server, started when no target is given (--host / WS_SERVER_URL); "
        f"0 takes any free port. Default: {EMBEDDED_PORT}.",
    )


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"WS_EMBEDDED_PORT / --ws-embedded-port: {text!r} is not a port (0-65535)")
    return value


def message_interval(environment: Any) -> float | None:
    """The run's ``--ws-message-interval`` in seconds, or None when not given."""
    options = environment.parsed_options
    value = getattr(options, "ws_message_interval", None) if options is not None else None
    if value is None or value == "":
        return None
    # The web UI hands custom options back as strings.
    return float(value) / 1000


def default_target(environment: Any) -> str:
    """The target when neither the user class nor ``--host`` names one."""
    return environment.host or os.environ.get("WS_SERVER_URL") or DEFAULT_TARGET


def next_source_address(environment: Any) -> tuple[str, int] | None:
    """The local address the next connection binds to (``--ws-source-addresses``); None lets the kernel choose."""
    return distributed.next_source_address(environment)


# Counters --------------------------------------------------------------------


def counters(environment: Any) -> WsCounters:
    """This process's WebSocket counters, created on first use."""
    found: WsCounters | None = getattr(environment, "ws_counters", None)
    if found is None:
        found = environment.ws_counters = WsCounters()
    return found


def aggregate_counters(environment: Any) -> WsCounters:
    """The run's counters: this process's, plus the last report of every worker on a master."""
    total = WsCounters().merge(counters(environment))
    for snapshot in getattr(environment, "ws_worker_counters", {}).values():
        total.merge(snapshot)
    return total


@events.report_to_master.add_listener
def _report_counters(client_id: str, data: dict[str, Any], **_: Any) -> None:
    # Snapshots, not deltas: the master keeps each worker's latest, so a
    # report lost or a worker killed never double-counts or drops history.
    environment = _environment()
    if environment is not None:
        data[REPORT_KEY] = counters(environment).as_dict()


@events.worker_report.add_listener
def _receive_counters(client_id: str, data: dict[str, Any], **_: Any) -> None:
    environment = _environment()
    if environment is not None and REPORT_KEY in data:
        if not hasattr(environment, "ws_worker_counters"):
            environment.ws_worker_counters = {}
        environment.ws_worker_counters[client_id] = WsCounters.from_dict(data[REPORT_KEY])


_environments: list[Any] = []


def _environment() -> Any:
    return _environments[-1] if _environments else None


# Run setup -------------------------------------------------------------------


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    _environments.append(environment)
    counters(environment)
    _raise_open_files_limit()
    _keep_secrets_out_of_output(environment)
    if isinstance(environment.runner, WorkerRunner):
        return  # the master decides the target and sends it with each spawn message
    explicit = environment.host or os.environ.get("WS_SERVER_URL")
    _check_user_class_urls(environment, check_host=not explicit)
    if not explicit and any(getattr(cls, "host", None) for cls in environment.user_classes):
        return
    if explicit:
        try:
            parse_uri(explicit)
        except ConfigurationError as exc:
            source = "--host" if environment.host else "WS_SERVER_URL"
            stop_at_start(environment, f"wslocust: {source}: {exc}")
        environment.host = conceal_uri(explicit)
        return
    _start_embedded_server(environment)


# Secrets ---------------------------------------------------------------------

_CONCEALED_TARGETS = "ws_concealed_targets"
"""The parsed option that carries the master's concealed targets to its workers, in every spawn message."""


def _keep_secrets_out_of_output(environment: Any) -> None:
    """
    Hide the run's credentials from every output (see :mod:`wslocust.redaction`):
    targets are concealed where Locust keeps them, header values and proxy
    credentials are registered as secrets, and every log handler redacts them.
    """
    conceal_targets(environment)
    for user_class in environment.user_classes:
        headers = getattr(user_class, "headers", None) or {}
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            if is_secret_header(str(name)):
                register_secret(str(value))
        proxy = getattr(user_class, "proxy", None)
        if isinstance(proxy, str):
            register_uri_secrets(proxy)
    handlers = list(logging.getLogger().handlers)
    for known in list(logging.Logger.manager.loggerDict.values()):
        handlers.extend(getattr(known, "handlers", ()))
    for handler in handlers:
        if not any(isinstance(existing, RedactSecrets) for existing in handler.filters):
            handler.addFilter(RedactSecrets())
    hub = gevent.get_hub()
    if not isinstance(hub.exception_stream, RedactedStderr):
        hub.exception_stream = RedactedStderr()


def conceal_targets(environment: Any) -> None:
    """Replace each WebSocket target Locust holds, and may show, by its concealed form."""
    if _is_websocket_url(environment.host):
        environment.host = conceal_uri(environment.host)
    options = environment.parsed_options
    if options is not None and _is_websocket_url(getattr(options, "host", None)):
        options.host = conceal_uri(options.host)
    classes = {*environment.user_classes, *(environment.available_user_classes or {}).values()}
    for user_class in classes:
        if _is_websocket_url(getattr(user_class, "host", None)):
            user_class.host = conceal_uri(user_class.host)


def _is_websocket_url(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().lower().startswith(("ws://", "wss://"))


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    # Locust's test_start comes before any user is spawned, after a host typed in the
    # web UI's start form was set. A worker's comes after the spawn message's options.
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner):
        add_concealed_targets(getattr(options, _CONCEALED_TARGETS, None) or {})
        return
    conceal_targets(environment)
    if options is not None:
        setattr(options, _CONCEALED_TARGETS, concealed_targets())


def _check_user_class_urls(environment: Any, *, check_host: bool) -> None:
    """Stop at start, with one line, on a WebSocketUser's invalid ``host`` or ``proxy``, rather than fail each user."""
    from wslocust.transport.connection import Proxy
    from wslocust.user.websocket_user import WebSocketUser

    for user_class in environment.user_classes:
        if not (isinstance(user_class, type) and issubclass(user_class, WebSocketUser)):
            continue
        for attribute, check in (("host", parse_uri), ("proxy", Proxy.from_url)):
            value = getattr(user_class, attribute, None)
            if not value or (attribute == "host" and not check_host):
                continue
            try:
                check(value)
            except ConfigurationError as exc:
                stop_at_start(environment, f"wslocust: {user_class.__name__}.{attribute}: {exc}")


def _start_embedded_server(environment: Any) -> None:
    from wslocust.server import ServerConfig, create_server

    options = environment.parsed_options
    port = getattr(options, "ws_embedded_port", EMBEDDED_PORT) if options is not None else EMBEDDED_PORT
    server = create_server(ServerConfig(host=EMBEDDED_HOST, port=int(port), path="/ws"))
    try:
        server.start()
    except OSError as exc:
        stop_at_start(
            environment,
            f"wslocust: cannot start the embedded reference server on {EMBEDDED_HOST}:{port} "
            f"({exc.strerror}); pass --host ws://{EMBEDDED_HOST}:{port}/ws to target what runs there, "
            "or --ws-embedded-port 0 for any free port",
        )
    environment.ws_embedded_server = server
    environment.host = server.url
    logger.info("No target given (--host / WS_SERVER_URL): started the embedded reference server at %s", server.url)


@events.quit.add_listener
def _on_quit(**_: Any) -> None:
    # "quit" comes after the runner stopped every user ("quitting" may come before).
    environment = _environment()
    if environment is None or isinstance(environment.runner, WorkerRunner):
        return
    # One greppable line with every counter since the start (Reset Stats does not
    # touch it), for scripts; the readable block comes from wslocust.reporting.reports.
    total = aggregate_counters(environment)
    logger.info(
        "WebSocket summary: %d connects (%d failed, %d reconnects, %d disconnects), "
        "%d messages sent, %d received (%d unsolicited), %d bytes sent, %d received, "
        "%d replies timed out, %d lost, %d in flight at stop, %d late, %d duplicated, %d out of order",
        total.connects_succeeded,
        total.connects_failed,
        total.reconnects,
        total.disconnects,
        total.messages_sent,
        total.messages_received,
        total.unsolicited_received,
        total.bytes_sent,
        total.bytes_received,
        total.replies_timed_out,
        total.replies_lost,
        total.replies_in_flight_at_stop,
        total.replies_late,
        total.replies_duplicated,
        total.replies_out_of_order,
    )
    server = getattr(environment, "ws_embedded_server", None)
    if server is not None:
        server.stop(timeout=1.0)


def _raise_open_files_limit() -> None:
    # Locust raises the soft limit only to 10,000; a WebSocket run needs one
    # descriptor per connection, so take everything the hard limit allows.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            logger.warning("could not raise the open-files limit from %d to %d", soft, hard)


# Live metrics, web UI tabs, console and CSV reports, thresholds (each registers its own listeners).
from wslocust.reporting import bucketing  # noqa: F401  isort:skip
from wslocust.integration import limits  # noqa: F401  isort:skip
from wslocust.reporting import live  # noqa: F401  isort:skip
from wslocust.reporting import reports  # noqa: F401  isort:skip
from wslocust.reporting import thresholds  # noqa: F401  isort:skip
from wslocust.reporting import web  # noqa: F401  isort:skip
