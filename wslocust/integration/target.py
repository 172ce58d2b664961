"""
The run's target: checked at start, else the embedded reference server.

A target comes from ``--host`` (Locust's), ``WS_SERVER_URL`` (the original
suite's) or a user class's ``host``; every one is checked when the run
starts, so that a typo stops the run with one line instead of failing each
user. Without any, the master (or the single process) starts the reference
server on ``127.0.0.1`` (``--ws-embedded-port``, 3003 by default) and points
the run at it; it stops at the end of the run.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import TYPE_CHECKING

from locust.runners import MasterRunner

from wslocust.codec.handshake import build_request, generate_key
from wslocust.codec.uri import parse_uri
from wslocust.exceptions import ConfigurationError
from wslocust.integration.connection_options import TLS_FILE_OPTIONS
from wslocust.integration.options import EMBEDDED_PORT
from wslocust.integration.startup import stop_at_start
from wslocust.redaction import conceal_uri
from wslocust.run.state import RunState
from wslocust.server import ServerConfig, create_server
from wslocust.transport.proxy import Proxy
from wslocust.transport.tls import TlsFileError, TlsFiles, ssl_context
from wslocust.user import WebSocketUser
from wslocust.user.connecting import compression_offer

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["EMBEDDED_HOST", "set_up_target", "stop_embedded_server", "warn_if_workers_cannot_reach"]

logger = logging.getLogger("wslocust")

EMBEDDED_HOST = "127.0.0.1"
"""The embedded reference server listens on loopback only."""


def set_up_target(environment: Environment, state: RunState) -> None:
    """
    Check the run's targets, and start the embedded server when there is none
    (on the master or the single process; the master sends the target to its
    workers with each spawn message).

    Exits with one line (:func:`~wslocust.integration.startup.stop_at_start`)
    on an invalid target or when the embedded server cannot start.
    """
    explicit = environment.host or os.environ.get("WS_SERVER_URL")
    _check_user_classes(environment, check_host=not explicit)
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
    _start_embedded_server(environment, state)


def _check_user_classes(environment: Environment, *, check_host: bool) -> None:
    """
    Stop at start, with one line, on a WebSocketUser's invalid ``host``, ``proxy``, ``headers``,
    ``subprotocols``, ``origin``, compression setting or TLS file, rather than fail every connection
    attempt of every user.
    """
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
        headers = user_class.headers or {}
        try:
            build_request(
                host="example.com",  # the request's own parts are checked with the target, above
                resource="/",
                key=generate_key(),
                subprotocols=list(user_class.subprotocols or ()),
                headers=list(headers.items() if isinstance(headers, dict) else headers),
                origin=user_class.origin,
            )
        except ConfigurationError as exc:
            stop_at_start(environment, f"wslocust: {user_class.__name__}: {exc}")
        try:
            compression_offer(user_class, environment.parsed_options)
        except ConfigurationError as exc:
            stop_at_start(environment, f"wslocust: {user_class.__name__}.{exc}")
        _check_tls_files(environment, user_class)


def _check_tls_files(environment: Environment, user_class: type[WebSocketUser]) -> None:
    """
    Stop at start on a TLS file that cannot work (missing, unreadable, not PEM, a key not the certificate's),
    naming where it was given: a ``--ws-tls-*`` option (which wins) or the class's setting. Checked whatever
    the target's scheme: a file given for nothing is a mistake too.
    """
    options = environment.parsed_options
    files: dict[str, str | None] = {}
    sources: dict[str, str] = {}
    for field in TlsFiles._fields:
        given = getattr(options, f"ws_{field}", None) if options is not None else None
        flag, env = TLS_FILE_OPTIONS[field]
        files[field], sources[field] = (
            (given, f"{env} / {flag}") if given else (getattr(user_class, field), f"{user_class.__name__}.{field}")
        )
    try:
        ssl_context(True, TlsFiles(**files))  # verified or not, the same files are read
    except TlsFileError as exc:
        stop_at_start(environment, f"wslocust: {sources[exc.field]}: {exc.path!r} {exc.problem}")


def _start_embedded_server(environment: Environment, state: RunState) -> None:
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
    state.embedded_server = server
    environment.host = server.url
    logger.info("No target given (--host / WS_SERVER_URL): started the embedded reference server at %s", server.url)


def stop_embedded_server(state: RunState) -> None:
    """Stop the embedded server, if it runs (at the end of the run)."""
    if state.embedded_server is not None:
        state.embedded_server.stop(timeout=1.0)


def warn_if_workers_cannot_reach(environment: Environment, state: RunState) -> None:
    """At a master's test start: warn when the embedded server serves workers on other hosts, which cannot reach it."""
    runner = environment.runner
    if not isinstance(runner, MasterRunner) or state.embedded_server is None:
        return
    # Worker ids start with their host name: --processes workers share the master's.
    local = socket.gethostname() + "_"
    if any(not client_id.startswith(local) for client_id in runner.clients):
        logger.warning(
            "wslocust: the embedded reference server listens on %s of the master only: workers on other "
            "hosts cannot reach it. Give the target with --host or WS_SERVER_URL.",
            state.embedded_server.url,
        )
