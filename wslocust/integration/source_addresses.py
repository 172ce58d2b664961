"""
``--ws-source-addresses`` / ``WS_SOURCE_ADDRESSES``: each process that runs
users binds its connections to these local addresses in turn (see
:mod:`wslocust.transport.addresses`), past the ~28,000 connections one
source address can hold to one server address and port.

It is a property of each host, so every process reads its own command line
and environment; the master's value is not sent to the workers. Workers start
the rotation at their worker index, so that they do not all begin with the
same address. A master whose workers are forked on its own host
(``--processes``) checks the addresses once, at start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from wslocust.integration.startup import stop_at_start
from wslocust.run.state import RunState
from wslocust.transport.addresses import SourceAddresses, check_bindable, parse_source_addresses

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["check_source_addresses", "set_up_source_addresses"]

logger = logging.getLogger("wslocust")

_NAMES = "WS_SOURCE_ADDRESSES / --ws-source-addresses"


def check_source_addresses(environment: Environment) -> list[str] | None:
    """The process's ``--ws-source-addresses``, checked; exits with one line if one cannot be bound."""
    options = environment.parsed_options
    text = getattr(options, "ws_source_addresses", None) if options is not None else None
    if text is None or str(text).strip() == "":
        return None
    try:
        addresses = parse_source_addresses(text)
    except ValueError as exc:  # set by hand, not through the command line
        stop_at_start(environment, f"wslocust: {_NAMES}: {exc}")
    for address in addresses:
        error = check_bindable(address)
        if error is not None:
            stop_at_start(
                environment,
                f"wslocust: {_NAMES}: {address!r} is not an address of this host ({error.strerror or error}); "
                f"use addresses of this host's interfaces (on Linux all of 127.0.0.0/8 is local)",
            )
    return addresses


def set_up_source_addresses(environment: Environment, state: RunState) -> None:
    """In a process that runs users: start its rotation over the checked addresses, if any."""
    addresses = check_source_addresses(environment)
    if addresses is None:
        return
    start = getattr(environment.runner, "worker_index", 0) or 0
    state.source_addresses = SourceAddresses(addresses, start=start)
    shown = addresses[0] if len(addresses) == 1 else f"{addresses[0]} ... {addresses[-1]}"
    logger.info("Connections of this process rotate over %d source addresses (%s)", len(addresses), shown)
