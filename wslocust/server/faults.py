"""
Making a reference server fail on purpose, from the client's side.

Two ways, for the two places a reference server runs:

- :func:`restart_server`: a :class:`~wslocust.server.reference.ReferenceServer`
  in this process is stopped (every connection closed with 1001, new connects
  refused) and started again on the same port a given time later;
- :func:`faults_url` and :func:`request_fault`: a reference server in another
  process is asked ``POST /faults?drop=1&refuse_ms=N``: it drops every
  connection without a close frame, as a crash would, and answers upgrades with
  503 for N ms (see :meth:`~wslocust.server.reference.ReferenceServer.inject_fault`).
  A server with a control token (every one listening beyond loopback) requires
  it: pass it as ``token``.
"""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
import urllib.request

import gevent

from ..codec.uri import parse_uri
from .config import FAULTS_PATH
from .reference import ReferenceServer, create_server

__all__ = ["faults_url", "request_fault", "restart_server"]

#: Seconds between two attempts to listen again while the old socket is not released yet.
RETRY_INTERVAL = 0.05


def restart_server(server: ReferenceServer, down_for: float, *, start_timeout: float = 5.0) -> ReferenceServer:
    """
    Stop ``server`` and start a replacement on the same address ``down_for`` seconds later.

    Blocks the calling greenlet meanwhile: spawn it to go on. The replacement
    has the same configuration, on the port ``server`` actually listened on (so
    a server started on port 0 comes back where its clients reconnect).

    Args:
        server: a started server.
        down_for: seconds from the stop to the restart; the drain takes at most
            one second of them.
        start_timeout: how long to retry listening after ``down_for``, while
            the old socket is released.

    Returns:
        The replacement, started; its counters start from zero.

    Raises:
        OSError: still unable to listen ``start_timeout`` seconds after the downtime.
        RuntimeError: ``server`` was never started.
    """
    config = dataclasses.replace(server.config, port=server.port)
    stopped_at = time.perf_counter()
    server.stop(timeout=min(1.0, down_for))
    gevent.sleep(max(0.0, down_for - (time.perf_counter() - stopped_at)))
    replacement = create_server(config)
    deadline = time.perf_counter() + start_timeout
    while True:
        try:
            replacement.start()
            return replacement
        except OSError:
            if time.perf_counter() > deadline:
                raise
            gevent.sleep(RETRY_INTERVAL)


def faults_url(target: str, *, drop: bool = True, refuse_ms: float = 0) -> str:
    """
    Return the ``POST /faults`` URL of the reference server behind a WebSocket URL.

    Args:
        target: the WebSocket URL (``ws://`` or ``wss://``), or its concealed form
            (:func:`wslocust.redaction.conceal_uri`); its path does not matter,
            the fault endpoint is on the same port.
        drop: drop every open connection.
        refuse_ms: refuse every upgrade for this many milliseconds (rounded); the server
            accepts 0 to :data:`~wslocust.server.config.MAX_FAULT_MS`.

    Raises:
        ConfigurationError: ``target`` is not a valid WebSocket URL, or a
            concealed one this process does not know.
    """
    uri = parse_uri(target)  # the target may be concealed (wslocust.redaction): never split it by hand
    scheme = "https" if uri.secure else "http"
    query = urllib.parse.urlencode({"drop": int(drop), "refuse_ms": round(refuse_ms)})
    return f"{scheme}://{uri.host_header}{FAULTS_PATH}?{query}"


def request_fault(url: str, *, token: str | None = None, timeout: float = 5.0) -> int:
    """
    Send ``POST url`` (a :func:`faults_url`) and return the HTTP status of the answer.

    Args:
        url: the ``POST /faults`` URL.
        token: the server's control token, sent as ``Authorization: Bearer <token>``;
            None sends none (a server on loopback without a configured token needs none).
        timeout: seconds to wait for the answer.

    Raises:
        OSError: no answer in ``timeout`` seconds, or an error status
            (``urllib.error.HTTPError`` and ``URLError`` are ``OSError``): 401 for a
            missing or wrong token, 400 for a bad parameter.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, method="POST", headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status)
