"""
The reference WebSocket server behind ``wslocust serve``.

It echoes every message back and counts exactly what it did, so that the load
tester's figures can be checked against it. One port serves:

- the WebSocket path (default ``/ws``): echo each text or binary message back
  unchanged, optionally after a delay, with optional faults (close after N
  messages, refuse a fraction of the upgrades) and periodic broadcasts;
- ``GET /stats``: the counters as JSON, plus ``uptime_s`` and ``pid``;
- ``GET /healthz``: ``200 ok``, for load balancers and Kubernetes probes;
- anything else: 404.

One module per job:

- :mod:`~wslocust.server.config`: :class:`ServerConfig` and the checks of its values;
- :mod:`~wslocust.server.counters`: :class:`ServerCounters`, the truth behind ``/stats``;
- :mod:`~wslocust.server.refusals`: which upgrades are refused with 503, and when;
- :mod:`~wslocust.server.gevent_websocket`: the HTTP upgrade and framing of
  gevent-websocket 0.10.1, with the Python 3 fixes it never received;
- :mod:`~wslocust.server.listener`: the listening socket and the accept loop;
- :mod:`~wslocust.server.connection`: one accepted connection and its outgoing queue;
- :mod:`~wslocust.server.reference`: :class:`ReferenceServer` (routes, echo,
  broadcasts, faults, drain) and :func:`create_server`;
- :mod:`~wslocust.server.faults`: making a reference server fail from the
  client's side (restart one in this process, ``POST /faults`` to another);
- :mod:`~wslocust.server.command`: the ``wslocust serve`` command line.

Each module imports only those above it in this list (and wslocust's
foundation and codec): none knows :class:`ReferenceServer` but the last three.
"""

from __future__ import annotations

from .command import SERVE_DESCRIPTION as SERVE_DESCRIPTION  # for the ``wslocust`` command list
from .command import add_arguments, build_parser, main, run
from .config import ServerConfig
from .counters import ServerCounters
from .reference import ReferenceServer, create_server

__all__ = [
    "ReferenceServer",
    "ServerConfig",
    "ServerCounters",
    "add_arguments",
    "build_parser",
    "create_server",
    "main",
    "run",
]
