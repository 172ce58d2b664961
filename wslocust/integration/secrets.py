"""
Keeping the run's credentials out of every output (see :mod:`wslocust.redaction`).

Targets are concealed where Locust keeps them, and may show them (the
environment's host, the parsed options, user classes, the web UI's start
form); header values and proxy credentials are registered as secrets; every
log handler and gevent's error stream redact them. A master sends its
concealed targets to its workers in the options of every spawn message.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeGuard

import gevent

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

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["CONCEALED_TARGETS_OPTION", "conceal_targets", "keep_secrets_out_of_output", "share_concealed_targets"]

CONCEALED_TARGETS_OPTION = "ws_concealed_targets"
"""The parsed option that carries the master's concealed targets to its workers, in every spawn message."""


def keep_secrets_out_of_output(environment: Environment) -> None:
    """
    Hide the run's credentials from every output: conceal the targets,
    register header values and proxy credentials as secrets, and make every
    log handler and gevent's error stream redact them.
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


def conceal_targets(environment: Environment) -> None:
    """Replace each WebSocket target Locust holds, and may show, by its concealed form."""
    if _is_websocket_url(environment.host):
        environment.host = conceal_uri(environment.host)
    options = environment.parsed_options
    if options is not None and _is_websocket_url(getattr(options, "host", None)):
        options.host = conceal_uri(options.host)
    classes: set[Any] = {*environment.user_classes, *(environment.available_user_classes or {}).values()}
    for user_class in classes:
        if _is_websocket_url(getattr(user_class, "host", None)):
            user_class.host = conceal_uri(user_class.host)


def _is_websocket_url(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.lstrip().lower().startswith(("ws://", "wss://"))


def share_concealed_targets(environment: Environment, *, worker: bool) -> None:
    """
    At test start: a master (or single process) conceals the targets, and puts
    them in the options its spawn messages carry; a worker takes them.

    Locust's ``test_start`` comes before any user is spawned, after a host typed
    in the web UI's start form was set. A worker's comes after the spawn
    message's options.
    """
    options = environment.parsed_options
    if worker:
        add_concealed_targets(getattr(options, CONCEALED_TARGETS_OPTION, None) or {})
        return
    conceal_targets(environment)
    if options is not None:
        setattr(options, CONCEALED_TARGETS_OPTION, concealed_targets())
