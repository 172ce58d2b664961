"""
Listening: bind the server socket and accept connections, even when out of file descriptors.

Nothing here knows the reference server: :class:`Listener` carries the
:class:`~wslocust.server.refusals.UpgradeGate` its handlers ask, and the WSGI
application it is given.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import gevent
from gevent.pywsgi import WSGIServer

from ..exceptions import ConfigurationError

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .refusals import UpgradeGate

__all__ = ["LISTEN_BACKLOG", "Listener", "listen", "raise_open_files_limit"]


# One logger for the whole server package, named as it was before the split.
logger = logging.getLogger("wslocust.server")

#: Listen backlog, so that a ramp of thousands of connects per second is not
#: refused before the accept loop runs (the kernel caps it at somaxconn).
LISTEN_BACKLOG = 4096


class Listener(WSGIServer):  # type: ignore[misc]
    """
    gevent's WSGIServer, quiet when out of descriptors, with the gate its handlers ask.

    Args:
        upgrade_gate: which upgrade requests are accepted, read by
            :class:`~wslocust.server.gevent_websocket.ServerHandler`.
        *args, **kwargs: as for ``gevent.pywsgi.WSGIServer``.
    """

    def __init__(self, *args: Any, upgrade_gate: UpgradeGate, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.upgrade_gate = upgrade_gate
        """Which upgrade requests the handlers accept."""
        self._next_fd_warning = 0.0

    def do_read(self) -> Any:
        try:
            return super().do_read()
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE):
                raise
        # Out of file descriptors: gevent would print a traceback per retry.
        # Pending connections wait in the listen backlog until some close.
        now = time.monotonic()
        if now >= self._next_fd_warning:
            self._next_fd_warning = now + 10.0
            logger.warning(
                "wslocust serve: out of file descriptors (%s per process); new "
                "connections wait until others close. Raise `ulimit -n`, or run "
                "more processes on the same port with --reuse-port.",
                _open_files_limit(),
            )
        self.stop_accepting()
        gevent.spawn_later(0.1, self._resume_accepting)
        return None

    def _resume_accepting(self) -> None:
        if self.started:
            self.start_accepting()


def listen(host: str, port: int, reuse_port: bool) -> gevent.socket.socket:
    """
    Return a non-blocking socket bound to ``host:port`` and listening.

    Raises:
        OSError: the address cannot be bound (in use, not local...).
        ConfigurationError: ``reuse_port`` is asked for where SO_REUSEPORT does not exist.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE
    )[0]
    sock = gevent.socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ConfigurationError(
                    "reuse_port: SO_REUSEPORT is not supported on this platform"
                )
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def raise_open_files_limit() -> None:
    """Raise this process's soft limit of open files to its hard limit, if allowed."""
    # Each connection is a file descriptor; the soft limit is often 1024 while
    # the hard limit allows far more.
    if resource is None:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def _open_files_limit() -> str:
    if resource is None:  # pragma: no cover - Windows
        return "unknown"
    return str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
