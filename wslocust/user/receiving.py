"""
Waiting for a particular server message: :meth:`Receiving.receive`, a mixin of
:class:`~wslocust.user.websocket_user.WebSocketUser`.

A task that waits for a message it did not ask for by request (a subscription's confirmation, the next
game tick, a chat message from another user) registers a predicate; the receiving greenlet offers it
each message that answered no echo or request, and the first one it accepts is taken: timed as a
request named after the call, from the call to that message's arrival (the kernel's receive time,
as every reply is timed), and neither counted as a server push nor handed to ``on_message``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent.event

from wslocust.exceptions import ConnectionClosed, ReceiveTimeout

__all__ = ["Receiving", "WaitingReceive"]

perf_counter = time.perf_counter


class WaitingReceive:
    """One :meth:`Receiving.receive` call waiting for its message."""

    __slots__ = ("error", "message", "name", "predicate", "started_at", "woken")

    def __init__(self, predicate: Callable[[Any], object], name: str, started_at: float) -> None:
        self.predicate = predicate
        """The caller's test of a message."""
        self.name = name
        """The request's name in Locust's statistics."""
        self.started_at = started_at
        """When the call began (``perf_counter``): the wait is timed from then."""
        self.message: Any = None
        """The message taken, once one matched."""
        self.error: BaseException | None = None
        """Why the wait ended without a message: the predicate's exception (raised to the caller)."""
        self.woken = gevent.event.Event()
        """Set when the wait is over: a message, an error, the connection's end or the user's stop."""


class Receiving:
    """The ``receive()`` calls of one user and the messages they take."""

    # From the rest of WebSocketUser.
    reply_timeout: float
    _succeed: Callable[[str, float, int], None]
    _receivers: list[WaitingReceive]
    """The calls waiting, oldest first; a message goes to the first one whose predicate accepts it."""

    if TYPE_CHECKING:

        def _fail(self, name: str, exception: Exception, response_time: float | None = None) -> None: ...

    def receive(self, predicate: Callable[[Any], object], timeout: float | None = None, name: str = "receive") -> Any:
        """
        Wait for the next server message for which ``predicate(message)`` is true, and return it.

        Only messages that arrive after the call and answer no pending :meth:`echo` or :meth:`request`
        are offered, oldest call first; the first call whose predicate accepts a message takes it. The
        wait is timed as a request ``name``, from the call to the arrival of the message (its kernel
        receive time, as every reply). A message taken is counted in ``messages_received`` and as that
        request, not as a server push: :meth:`on_message` and :meth:`push_sent_at` do not see it.

        Call it right after the :meth:`send` that provokes the message: ``send()`` returns without
        letting the receiving greenlet run (unless the socket's buffer is full), so the answer cannot
        slip past. A message that arrived before the call is not looked at again.

        Args:
            predicate: called with each message offered (``str`` or ``bytes``) in the receiving
                greenlet: keep it cheap, never block. An exception it raises ends the wait and is
                raised here, in the task, where Locust reports it as the task's error.
            timeout: seconds to wait; default ``reply_timeout``.
            name: the name in Locust's statistics.

        Returns:
            The message, or None if none matched in time (a ``name`` failure, "no matching message
            within T s"), or the connection ended meanwhile (a ``name`` failure with its close, as for
            a request), or the user is stopping (nothing recorded).
        """
        limit = self.reply_timeout if timeout is None else timeout
        receiver = WaitingReceive(predicate, name, perf_counter())
        self._receivers.append(receiver)
        try:
            woken = receiver.woken.wait(limit)
        finally:
            if receiver in self._receivers:
                self._receivers.remove(receiver)
        if receiver.error is not None:
            raise receiver.error
        if not woken:
            self._fail(name, ReceiveTimeout(f"no matching message within {limit:g} s"), response_time=limit * 1000)
        return receiver.message

    def _offer_to_receivers(self, message: str | bytes, received_at: float, size: int) -> bool:
        """
        Hand ``message`` (which answered no echo nor request) to the oldest waiting call that accepts it.

        Runs in the receiving greenlet. Returns True if it was taken (recorded as that call's request).
        """
        for receiver in list(self._receivers):
            try:
                accepted = receiver.predicate(message)
            except Exception as exc:  # noqa: BLE001 - the caller raises it, in its task
                receiver.error = exc
                self._receivers.remove(receiver)
                receiver.woken.set()
                continue
            if not accepted:
                continue
            self._receivers.remove(receiver)
            receiver.message = message
            receiver.woken.set()
            # A message read after the call whose bytes reached the host just before it: 0, not negative.
            self._succeed(receiver.name, max(0.0, received_at - receiver.started_at) * 1000, size)
            return True
        return False

    def _end_receives(self, closed: ConnectionClosed | None) -> None:
        """
        The connection ended (``closed``: each waiting call fails with it) or the user is stopping
        (None: they end with nothing recorded).
        """
        receivers, self._receivers = self._receivers, []
        for receiver in receivers:
            if closed is not None:
                self._fail(receiver.name, closed)
            receiver.woken.set()
