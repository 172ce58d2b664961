"""
Request correlation of one user: which reply answers which request, and what came back wrong.

Sans-I/O, like the codec: no gevent, no socket, no Locust. The time is always an argument (the
caller's clock), so that the tests can drive it with plain numbers. The user layer
(:mod:`wslocust.user.websocket_user`) sends, sleeps, wakes and fires Locust's events; this module
only keeps the books:

- the requests waiting for a reply, in two tables answered oldest first, several possibly waiting on
  one key: echoes by their payload (an echo's reply is its payload back, whatever ``reply_key``
  does), the :meth:`~wslocust.user.websocket_user.WebSocketUser.request` calls by their ``match``,
  which the received message's ``reply_key`` must equal. A message answers an echo first; only a
  message that answers no echo is asked its ``reply_key``;
- the numbered default payloads (``"<sequence>:xxx..."``) and their integrity on one connection:
  replies out of order, late (their request had already timed out) or duplicated;
- every ``replies_*`` counter of :class:`~wslocust.run.counters.WsCounters`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wslocust.run.counters import WsCounters

__all__ = ["TIMED_OUT_REMEMBERED", "Correlator", "Pending"]

TIMED_OUT_REMEMBERED = 10_000
"""Timed-out echoes per connection whose late reply is still recognised as late (not duplicated)."""


class Pending:
    """A request waiting for its reply."""

    __slots__ = ("blocking", "done", "echo", "key", "later", "name", "reply", "scheduled_at", "sequence", "waiter")

    def __init__(
        self, key: Hashable, name: str, scheduled_at: float, blocking: bool, sequence: int, echo: bool = False
    ) -> None:
        self.key = key
        """The correlation key its reply must have: an echo's payload, or a request's ``match``."""
        self.echo = echo
        """An echo (answered by its payload coming back), not a request (answered by ``reply_key``)."""
        self.name = name
        """The request's name in Locust's statistics."""
        self.scheduled_at = scheduled_at
        """When it was due: its round trip is timed from then."""
        self.blocking = blocking
        """A :meth:`WebSocketUser.request` call waits for it (and times it out itself)."""
        self.sequence = sequence
        """The user's sequence number in the payload (default echo payloads), else 0."""
        self.done = False
        """Answered, or failed because the connection closed."""
        self.waiter: Any = None
        """Whoever waits for ``done`` (the user's blocked greenlet); opaque here."""
        self.reply: Any = None
        """The message that answered it."""
        self.later: Pending | None = None
        """The next request waiting on the same key."""


class Correlator:
    """
    The pending requests of one user and the integrity of the replies to its numbered payloads.

    Args:
        counters: where the ``replies_*`` counters are kept.
        remembered: how many timed-out sequence numbers a connection remembers, to tell a late
            reply from a duplicated one; the oldest are forgotten first.
    """

    def __init__(self, counters: WsCounters, remembered: int = TIMED_OUT_REMEMBERED) -> None:
        self.counters = counters
        self.echoes: dict[Hashable, Pending] = {}
        """The oldest echo waiting on each payload (the others follow its ``later`` chain), in the
        order the payloads started waiting: the first one is the oldest echo still waiting."""
        self.requests: dict[Hashable, Pending] = {}
        """The same for the requests, by their ``match``."""
        self.sequence = 0
        """The number of the last default payload (:meth:`next_payload`)."""
        self._remembered = remembered
        # Message integrity of the default payloads, per connection.
        self._highest_replied = 0
        self._timed_out: dict[int, bool] = {}  # insertion-ordered: the oldest go first

    # Payloads ----------------------------------------------------------------

    def next_payload(self, size: int) -> str:
        """Return the next default payload: its sequence number, ``:``, then ``x`` up to ``size`` characters."""
        self.sequence += 1
        prefix = f"{self.sequence}:"
        return prefix + "x" * max(0, size - len(prefix))

    # Requests ----------------------------------------------------------------

    def add(
        self, key: Hashable, name: str, scheduled_at: float, blocking: bool, sequence: int = 0, echo: bool = False
    ) -> Pending:
        """
        Start waiting for the reply to a request, after the requests of its kind already waiting on ``key``.

        Args:
            key: an echo's payload, or a request's ``match``.
            echo: an echo (see :meth:`match_echo`), else a request (see :meth:`match`).

        Raises:
            TypeError: ``key`` is not hashable.
        """
        pending = Pending(key, name, scheduled_at, blocking, sequence, echo)
        pendings = self.echoes if echo else self.requests
        first = pendings.get(key)
        if first is None:
            pendings[key] = pending
        else:
            while first.later is not None:
                first = first.later
            first.later = pending
        return pending

    def forget(self, pending: Pending) -> bool:
        """Stop waiting for ``pending`` without counting it; False if it was already answered or failed."""
        pendings = self.echoes if pending.echo else self.requests
        first = pendings.get(pending.key)
        if first is None:
            return False
        if first is pending:
            if pending.later is None:
                del pendings[pending.key]
            else:
                pendings[pending.key] = pending.later
            return True
        while first.later is not None:
            if first.later is pending:
                first.later = pending.later
                return True
            first = first.later
        return False

    def time_out(self, pending: Pending) -> bool:
        """
        Give up on ``pending``: count it as timed out and remember its sequence number, so that a
        reply that still comes is counted as late.

        Returns:
            False, counting nothing, if it was answered or failed meanwhile.
        """
        if not self.forget(pending):
            return False
        self.counters.replies_timed_out += 1
        if pending.sequence:
            timed_out = self._timed_out
            timed_out[pending.sequence] = True
            if len(timed_out) > self._remembered:
                del timed_out[next(iter(timed_out))]
        return True

    def expire(self, now: float, timeout: float) -> list[Pending]:
        """
        Time out the requests nobody waits for that are ``timeout`` seconds overdue at ``now``.

        Echoes, then requests, each oldest first, stopping at the first one that is not overdue or
        that a caller waits for (it times itself out). Returns those timed out, for the caller to
        record as failures.
        """
        expired = []
        for pendings in (self.echoes, self.requests):
            while pendings:
                oldest = next(iter(pendings.values()))
                if now - oldest.scheduled_at < timeout or oldest.blocking:
                    break
                self.time_out(oldest)
                expired.append(oldest)
        return expired

    def waiting(self) -> bool:
        """True while an echo or a request waits for its reply."""
        return bool(self.echoes or self.requests)

    # Replies -----------------------------------------------------------------

    def match_echo(self, message: str | bytes) -> Pending | None:
        """
        Answer the oldest echo of ``message`` with it; None if no echo of it waits.

        Counts the reply as out of order when a later numbered payload was answered before it.
        """
        return self._answer(self.echoes, message, message)

    def match(self, key: Hashable, reply: Any) -> Pending | None:
        """
        Answer the oldest request waiting on ``key`` (the ``reply_key`` of ``reply``) with ``reply``;
        None if none waits. Echoes are not looked at: see :meth:`match_echo`.

        Raises:
            TypeError: ``key`` is not hashable.
        """
        return self._answer(self.requests, key, reply)

    def _answer(self, pendings: dict[Hashable, Pending], key: Hashable, reply: Any) -> Pending | None:
        pending = pendings.pop(key, None)
        if pending is None:
            return None
        if pending.later is not None:
            pendings[key] = pending.later
        sequence = pending.sequence
        if sequence:
            if sequence < self._highest_replied:
                self.counters.replies_out_of_order += 1
            else:
                self._highest_replied = sequence
        pending.reply = reply
        pending.done = True
        return pending

    def count_late_or_duplicate(self, message: str | bytes, size: int) -> bool:
        """
        Count a message that answered no pending request if it is the echo of one of our default
        payloads of ``size``: late when its request timed out, else duplicated.

        Returns:
            True if it was one (counted), False for anything else (a server push).
        """
        if type(message) is not str or not message[:1].isdigit():
            return False
        head, colon, padding = message.partition(":")
        if not colon or not head.isdigit() or padding.strip("x"):
            return False
        sequence = int(head)
        if not 0 < sequence <= self.sequence or len(message) != max(size, len(head) + 1):
            return False
        if self._timed_out.pop(sequence, False):
            self.counters.replies_late += 1
        else:
            self.counters.replies_duplicated += 1
        return True

    # The connection ----------------------------------------------------------

    def new_connection(self) -> None:
        """Start the integrity checks afresh: replies to a closed connection's requests cannot come on a new one."""
        self._highest_replied = 0
        self._timed_out.clear()

    def fail_all(self) -> list[Pending]:
        """
        The connection closed: every pending request is lost (counted in ``replies_lost``) and done.

        Returns them, oldest first on each key, for the caller to record and wake.
        """
        lost = list(self)
        self.echoes, self.requests = {}, {}
        self.counters.replies_lost += len(lost)
        for pending in lost:
            pending.done = True
        return lost

    def discard_all(self) -> int:
        """The user stopped: forget every pending request, counted in ``replies_in_flight_at_stop``; return how many."""
        in_flight = sum(1 for _ in self)
        self.echoes, self.requests = {}, {}
        self.counters.replies_in_flight_at_stop += in_flight
        return in_flight

    def __iter__(self) -> Iterator[Pending]:
        """Every pending echo, then every pending request, key by key, oldest first on each key."""
        for pendings in (self.echoes, self.requests):
            for first in pendings.values():
                pending: Pending | None = first
                while pending is not None:
                    yield pending
                    pending = pending.later
