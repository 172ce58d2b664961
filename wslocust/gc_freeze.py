"""
Long-lived objects kept out of the garbage collector's full passes.

A process holding thousands of connections holds millions of objects that live as long as the run, and
CPython's cyclic collector walks all of them in each full collection, which it runs whenever the objects
that survived younger collections grew by a quarter: during a ramp to 12,500 connections, every ~5 s, each
longer than the last (0.34 s at 10,000 held users, alone on a core). On a 2-core machine shared by 8 workers
and 8 servers holding 100,000 connections, those pauses, all at about the same time, stretched past the 10 s
a worker waits for its master's heartbeat: workers quit, and the master moved their users to the others.

So while they only come (users in a load generator, connections in the reference server),
:meth:`Freezer.look` moves what is alive into the collector's permanent generation (``gc.freeze``): no
later pass walks it, and reference counting still frees what dies (a retired connection has no reference
cycle). Only cycles among those objects would wait, so when some end (a ramp-down, the stop) everything is
unfrozen, and nothing is frozen again until CPython's next full collection has run: it collects the ended
ones' cycles when it would have anyway. A steady run freezes nothing more.

Pure: no gevent; :meth:`Freezer.look_forever` runs in a greenlet with gevent's sleep.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

__all__ = ["FREEZER", "LOOK_EVERY", "Freezer"]

LOOK_EVERY = 1.0
"""Seconds between two looks at how many there are."""


class Freezer:
    """
    Freezes the process's objects after more long-lived things came; thaws them once some ended. One per
    process (:data:`FREEZER`), as the collector is: a local run's users and its embedded server share it.
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._frozen_at: dict[str, int] = {}  # what each source held at the last freeze
        self._thawed_after: int | None = None  # full collections at the thaw: the next one collects the ended

    def look(self, source: str, alive: int) -> None:
        """Called about once a second with how many users (or connections) ``source`` holds now."""
        self._seen[source] = alive
        if alive < self._frozen_at.get(source, 0):
            gc.unfreeze()
            self._thawed_after = _full_collections()
            self._frozen_at.clear()
        if self._thawed_after is not None and _full_collections() > self._thawed_after:
            self._thawed_after = None
        if alive > self._frozen_at.get(source, 0) and self._thawed_after is None:
            gc.collect(1)  # the young generations' garbage, not to be frozen with the rest
            gc.freeze()
            self._frozen_at = dict(self._seen)  # every source's objects are frozen now, not only this one's

    def look_forever(self, source: str, alive: Callable[[], int], sleep: Callable[[float], object]) -> None:
        """:meth:`look` every :data:`LOOK_EVERY` seconds, forever: a greenlet, ``sleep`` gevent's."""
        while True:
            sleep(LOOK_EVERY)
            self.look(source, alive())


FREEZER = Freezer()


def _full_collections() -> int:
    return int(gc.get_stats()[-1]["collections"])
