"""
The users' long-lived objects out of the garbage collector's full passes (``wslocust.gc_freeze``): real
users held against the reference server in this process, in Locust's LocalRunner.
"""

from __future__ import annotations

import gc
import weakref

import gevent
import locust
import pytest
from helpers import wait_for
from locust.env import Environment

from wslocust import WebSocketUser
from wslocust.gc_freeze import Freezer
from wslocust.run.state import run_state


@pytest.fixture
def thawed_after():
    yield
    gc.unfreeze()  # the collector as the other tests know it


def frozen(obj) -> bool:
    """In the permanent generation: no collection walks it (``gc.get_objects`` lists the other generations)."""
    return gc.is_tracked(obj) and not any(found is obj for found in gc.get_objects())


def test_users_that_came_are_frozen_and_thawed_for_a_full_collection_when_some_end(server, thawed_after):
    class Holder(WebSocketUser):
        message_interval = 0

    environment = Environment(user_classes=[Holder], events=locust.events, host=f"ws://127.0.0.1:{server.port}/ws")
    runner = environment.create_local_runner()
    freezer = gevent.spawn(Freezer().look_forever, "users", lambda: runner.user_count, gevent.sleep)
    counters = run_state(environment).counters
    try:
        runner.start(40, spawn_rate=1000)
        wait_for(lambda: counters.open == 40, timeout=10)
        users = [user_greenlet.args[0] for user_greenlet in runner.user_greenlets]
        wait_for(lambda: all(frozen(user) for user in users), timeout=5, message="every user frozen")

        runner.start(10, spawn_rate=1000)  # a ramp-down: 30 users end
        wait_for(lambda: counters.open == 10, timeout=10)
        ended = [weakref.ref(user) for user in users if user.greenlet not in runner.user_greenlets]
        users.clear()  # no reference left here
        wait_for(lambda: gc.get_freeze_count() == 0, timeout=5, message="thawed")
        gc.collect()  # what CPython's next full collection does
        assert len(ended) == 30 and not any(ref() for ref in ended), "ended users left frozen in reference cycles"
        # ... then what is left is frozen again.
        wait_for(lambda: gc.get_freeze_count() > 0, timeout=5, message="frozen again after the full collection")
        assert all(frozen(user_greenlet.args[0]) for user_greenlet in runner.user_greenlets)
    finally:
        freezer.kill()
        runner.quit()


def test_one_freezer_per_process_thaws_when_any_of_its_sources_ends_some_and_waits_for_a_full_collection(
    thawed_after,
):
    # A local run's users and its embedded server share the process's collector: a freeze for one freezes the
    # other's objects too, so an end in either must thaw.
    freezer = Freezer()
    freezer.look("users", 10)
    assert gc.get_freeze_count() > 0
    freezer.look("connections", 10)  # frozen with the users' freeze: nothing new
    freezer.look("connections", 9)
    assert gc.get_freeze_count() == 0, "an end among the connections left everything frozen"
    freezer.look("users", 11)
    assert gc.get_freeze_count() == 0, "frozen again before a full collection could collect what ended"
    gc.collect()
    freezer.look("users", 11)
    assert gc.get_freeze_count() > 0
