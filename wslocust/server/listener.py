"""
Listening: bind the server socket and accept connections, even when out of file descriptors.

Nothing here knows the reference server: :class:`Listener` carries the
:class:`~wslocust.server.refusals.UpgradeGate` its handlers ask, the limits they
apply, the counters where they count what they refused, and the WSGI
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
    from .counters import ServerCounters
    from .refusals import UpgradeGate

__all__ = ["LISTEN_BACKLOG", "Listener", "listen", "raise_open_files_limit"]


# One logger for the whole server package, named as it was before the split.
logger = logging.getLogger("wslocust.server")

#: Listen backlog, so that a ramp of thousands of connects per second is not
#: refused before the accept loop runs (the kernel caps it at somaxconn).
LISTEN_BACKLOG = 4096


class Listener(WSGIServer):  # type: ignore[misc]
    """
    gevent's WSGIServer, quiet when out of descriptors, with what its handlers read.

    Args:
        upgrade_gate: which upgrade requests are accepted.
        counters: where the handlers count what they refused.
        max_message_size: largest message accepted, in payload bytes.
        handshake_timeout: seconds each connection has to finish its TLS
            handshake (wss) and to send each complete HTTP request.
        *args, **kwargs: as for ``gevent.pywsgi.WSGIServer``.

    The keyword arguments become attributes of the same names, read by
    :class:`~wslocust.server.gevent_websocket.ServerHandler`.
    """

    def __init__(
        self,
        *args: Any,
        upgrade_gate: UpgradeGate,
        counters: ServerCounters,
        max_message_size: int,
        handshake_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.upgrade_gate = upgrade_gate
        """Which upgrade requests the handlers accept."""
        self.counters = counters
        """Where the handlers count what they refused (timed-out requests)."""
        self.max_message_size = max_message_size
        """Largest message accepted, in payload bytes, all its fragments together."""
        self.handshake_timeout = handshake_timeout
        """Seconds each connection has to finish its TLS handshake and to send each complete request."""
        self._next_fd_warning = 0.0

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        # wss: the TLS handshake runs before any handler, so it gets its own deadline; a client
        # that connects and never says hello must not hold a descriptor forever. Wrapped first,
        # then the handshake: a handshake interrupted inside the wrap would leave the descriptor
        # to a half-made TLS socket that nothing closes.
        tls_socket = self.wrap_socket(client_socket, do_handshake_on_connect=False, **self.ssl_args)
        timer = gevent.Timeout(self.handshake_timeout)
        timer.start()
        try:
            tls_socket.do_handshake()
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self.counters.handshakes_timed_out += 1
            tls_socket.close()
            return None
        except OSError:  # not TLS, or a reset: the client's problem, not worth a traceback
            tls_socket.close()
            return None
        finally:
            timer.close()
        try:
            return self.handle(tls_socket, address)
        finally:
            tls_socket.close()

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
    family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
    sock = gevent.socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ConfigurationError("reuse_port: SO_REUSEPORT is not supported on this platform")
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
