"""
One connection attempt of :class:`~wslocust.user.websocket_user.WebSocketUser`: the headers its
``connect_headers`` hook gives for it (checked as the class's ``headers`` are at start), and the
opening itself, which a stopping user lets finish.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import gevent
from gevent import GreenletExit

from wslocust.codec.deflate import DeflateOffer
from wslocust.codec.handshake import build_request, generate_key
from wslocust.codec.uri import WsURI, parse_uri
from wslocust.exceptions import ConfigurationError, ConnectAborted
from wslocust.redaction import is_secret_header, register_secret
from wslocust.run import settings
from wslocust.run.state import run_state
from wslocust.transport.connection import Connection, Proxy
from wslocust.transport.tls import TlsFiles

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["ConnectionOpening", "aborted_at_stop", "checked_headers", "compression_offer"]

HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]] | None
"""What ``headers`` and ``connect_headers()`` may be: a dict, (name, value) pairs, or None."""


class ConnectionOpening:
    """Opening a user's connections (a mixin of :class:`~wslocust.user.keeper.ConnectionKeeper`)."""

    # From the rest of WebSocketUser.
    environment: Environment
    host: str | None
    headers: ClassVar[dict[str, str] | None]
    subprotocols: ClassVar[Sequence[str]]
    origin: str | None
    verify_tls: bool
    connect_timeout: float
    close_timeout: float
    _holding: bool
    _stopping: bool
    _session: gevent.Greenlet | None

    def connect_headers(self, attempt: int) -> HeaderItems:
        """
        Return the extra upgrade headers of a connection attempt. Called before every attempt: the
        first connect, each retry of a failed one and each reconnect, so that an expiring token can be
        renewed (``on_start`` runs once, after the first connect). The default returns ``headers``.

        It runs in the user's connecting greenlet and may block (fetch a token over HTTP, say); the
        connect is timed from its return. What it returns is checked as ``headers`` are at start: a
        header name or value the upgrade cannot carry fails that attempt, with one ``connect`` (or
        ``reconnect``) failure naming the header (a secret-looking value shown as ``***``). An
        exception it raises fails the attempt the same way, categorised by the exception's class;
        either way the user backs off and tries again, as after any failed attempt. The values of
        secret-looking headers (``Authorization``, ``Cookie``, ``*token*``...) are kept out of every
        output, as those of ``headers`` are.

        Args:
            attempt: 1 for the user's first connection attempt, 2 for the next, and so on (retries
                and reconnects alike).

        Returns:
            A dict of header names to values, (name, value) pairs, or None for none.
        """
        return self.headers

    def _target(self) -> WsURI:
        return parse_uri(self.host or settings.default_target(self.environment))

    def _attempt_headers(self, attempt: int) -> tuple[list[tuple[str, str]], Exception | None]:
        """The headers of attempt number ``attempt`` from the ``connect_headers`` hook, or why there are none."""
        try:
            if type(self).connect_headers is ConnectionOpening.connect_headers:
                return _items(self.headers), None  # the class's: checked at start
            return checked_headers(self.connect_headers(attempt), self.subprotocols, self.origin), None
        except Exception as exc:  # noqa: BLE001 - a failed attempt of its own, not a dead user
            return [], exc

    def _open_connection(self, connection: Connection, headers: list[tuple[str, str]], proxy: Proxy | None) -> None:
        options: dict[str, Any] = {
            "timeout": self.connect_timeout,
            "headers": headers,
            "subprotocols": self.subprotocols,
            "origin": self.origin,
            "verify_tls": self.verify_tls,
            "tls_files": self._tls_files(),
            "source_address": run_state(self.environment).next_source_address(),
            "proxy": proxy,
            "compression": compression_offer(type(self), self.environment.parsed_options),
        }
        if self._session is not gevent.getcurrent() or not self._holding:
            connection.open(**options)  # _shutdown lets an upgrade under way finish
            return
        # This greenlet is the user's own, which Locust may kill at any time. Killed half-way
        # through an upgrade, the server would count a connection that the user never did:
        # the upgrade runs in a greenlet of its own and is let finish.
        opener = gevent.spawn(_returning_errors, connection.open, options)
        try:
            opener.join()
        except GreenletExit:
            self._stopping = True
            opener.join(self.close_timeout)
            if not opener.ready():
                opener.kill()
        error = opener.value if opener.ready() else GreenletExit()
        if isinstance(error, GreenletExit):  # the upgrade did not finish in close_timeout: a failed attempt
            raise aborted_at_stop()
        if error is not None:
            raise error

    def _tls_files(self) -> TlsFiles:
        """The class's TLS files, each replaced by the run's ``--ws-tls-*`` option when that is given."""
        options = self.environment.parsed_options
        return TlsFiles(*(getattr(options, f"ws_{field}", None) or getattr(self, field) for field in TlsFiles._fields))


def compression_offer(user_class: type, options: Any) -> DeflateOffer | None:
    """
    What ``user_class`` offers in its upgrades: its ``compression`` settings, ``--ws-compression`` /
    ``WS_COMPRESSION`` over its ``compression``.

    Raises:
        ConfigurationError: ``compression`` is not ``"deflate"`` or None, or its window bits are not 9-15
            (checked at start, :mod:`wslocust.integration.target`).
    """
    chosen = getattr(options, "ws_compression", None) if options is not None else None
    if chosen is None:
        chosen = getattr(user_class, "compression", None)
        if chosen not in (None, "deflate"):
            raise ConfigurationError(f"compression {chosen!r} is not valid: use 'deflate' or None")
    if chosen in (None, "off"):
        return None
    return DeflateOffer(
        window_bits=user_class.compression_window_bits,  # type: ignore[attr-defined]
        context_takeover=bool(user_class.compression_context_takeover),  # type: ignore[attr-defined]
    )


def checked_headers(
    given: object, subprotocols: Sequence[str] = (), origin: str | None = None
) -> list[tuple[str, str]]:
    """
    The headers a ``connect_headers`` hook returned, as (name, value) pairs, checked as the upgrade will
    use them; the values of secret-looking ones are registered as secrets (kept out of every output).

    Raises:
        ConfigurationError: not a dict or pairs of strings, or a header the upgrade cannot carry
            (the message names it and never quotes a secret-looking value).
    """
    try:
        items = _items(given)  # type: ignore[arg-type]
        valid = all(isinstance(name, str) and isinstance(value, str) for name, value in items)
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigurationError(
            f"connect_headers returned a {type(given).__name__}: expected a dict of header names to "
            "values (str), (name, value) pairs, or None"
        )
    try:
        build_request(host="example.com", resource="/", key=generate_key(), subprotocols=list(subprotocols),
                      headers=items, origin=origin)  # fmt: skip
    except ConfigurationError as exc:
        raise ConfigurationError(f"connect_headers: {exc}") from None
    for name, value in items:
        if is_secret_header(name):
            register_secret(value)
    return items


def _items(headers: HeaderItems) -> list[tuple[str, str]]:
    if headers is None:
        return []
    if isinstance(headers, Mapping):
        return list(headers.items())
    if isinstance(headers, (str, bytes)):
        raise TypeError("a string is not a header list")
    return [(name, value) for name, value in headers]


def aborted_at_stop() -> ConnectAborted:
    """The failure of an attempt that the run's stop cut short."""
    # No duration in the message: Locust groups failures by message, and the attempt's
    # response time (from its start to its end) is the one duration it has.
    return ConnectAborted("the run stopped before the upgrade finished (connect aborted at stop)")


def _returning_errors(call: Any, options: dict[str, Any]) -> BaseException | None:
    """Run ``call(**options)`` in a greenlet and return its exception: gevent would print it."""
    try:
        call(**options)
    except Exception as exc:  # noqa: BLE001 - handed to the waiting greenlet, which raises it
        return exc
    return None
