"""
Successes written straight into Locust's statistics (``wslocust.locust_compat.request_log``) leave
exactly what Locust's ``events.request`` would have, and the event still fires for any other listener.
"""

from __future__ import annotations

import json
import random
import textwrap
import time

import pytest
from helpers import run_server_process
from locust import User
from locust.env import Environment
from locust_process import run_locust

from wslocust.locust_compat import RequestLog
from wslocust.reporting import bucketing


class _Idle(User):
    abstract = False


class _Clock:
    """``time.time`` at a moment the test moves (both paths of a request read the same moment)."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _entries(environment: Environment) -> dict:
    """Every statistics entry and the total, with what Locust would send or print of them."""
    stats = environment.stats
    found = {}
    for key, entry in [*stats.entries.items(), ("total", stats.total)]:
        fields = entry.serialize()
        fields.pop("start_time")  # when the entry was made, not what was logged
        cache = {second: (dict(c.response_times), c.num_requests) for second, c in entry.response_times_cache.items()}
        found[key] = (fields, cache)
    return found


@pytest.mark.parametrize("fine_buckets", [False, True], ids=["locust buckets", "wslocust buckets"])
def test_a_direct_success_leaves_what_locusts_request_event_leaves(monkeypatch, fine_buckets):
    was_installed = bucketing.installed()
    if fine_buckets:
        bucketing.install()
    else:
        bucketing.uninstall()
    try:
        clock = _Clock()
        monkeypatch.setattr(time, "time", clock)
        by_event, direct = Environment(user_classes=[_Idle]), Environment(user_classes=[_Idle])
        for environment in (by_event, direct):
            environment.create_local_runner()
        log = RequestLog(direct, "WS")
        assert log.direct
        rng = random.Random(7)
        for _ in range(600):  # 37 ms apart: over 22 seconds
            clock.now += 0.037
            name = rng.choice(["echo", "echo", "connect", "ping"])
            response_time = rng.choice([0.0, rng.uniform(0.01, 3.0), rng.uniform(3, 150), rng.uniform(150, 9000)])
            length = rng.randrange(0, 70_000)
            by_event.events.request.fire(
                request_type="WS", name=name, response_time=response_time, response_length=length, exception=None
            )
            log.success(name, response_time, length)
    finally:
        if was_installed:
            bucketing.install()
        else:
            bucketing.uninstall()
    assert by_event.stats.total.num_requests == 600
    assert len(by_event.stats.total.response_times_cache) > 5  # the seconds' cache was filled on both sides
    assert _entries(direct) == _entries(by_event)


def test_with_another_request_listener_the_event_fires_for_each_success():
    environment = Environment(user_classes=[_Idle])
    environment.create_local_runner()
    log = RequestLog(environment, "WS")
    heard = []
    environment.events.request.add_listener(lambda name, response_time, **_: heard.append((name, response_time)))
    assert not log.direct
    log.success("echo", 0.25, 64)
    log.success("push", 1.5, 10)
    assert heard == [("echo", 0.25), ("push", 1.5)]
    assert environment.stats.get("echo", "WS").num_requests == 1
    assert environment.stats.total.num_requests == 2


def test_without_locusts_own_listener_nothing_is_written_behind_the_events_back():
    environment = Environment(user_classes=[_Idle])  # no runner: no statistics listener
    log = RequestLog(environment, "WS")
    assert not log.direct
    log.success("echo", 0.25, 64)
    assert environment.stats.total.num_requests == 0


LISTENING_LOCUSTFILE = """
    import json, sys
    from locust import events
    from wslocust import WebSocketUser

    heard = {}

    @events.request.add_listener
    def count(name, exception, **_):
        if exception is None:
            heard[name] = heard.get(name, 0) + 1

    @events.quitting.add_listener
    def tell(environment, **_):
        print("HEARD " + json.dumps(heard), file=sys.stderr)

    class Echo(WebSocketUser):
        message_interval = 0.05
"""


def test_a_locustfiles_request_listener_hears_every_success_of_a_real_run(tmp_path):
    locustfile = tmp_path / "listening.py"
    locustfile.write_text(textwrap.dedent(LISTENING_LOCUSTFILE))
    with run_server_process() as server:
        result = run_locust(
            "-f", str(locustfile), "--headless", "-u", "10", "-r", "10", "-t", "3s", "--host", server.url, "--json",
        )  # fmt: skip
        truth = server.stats()
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("HEARD ")]
    heard = json.loads(line.removeprefix("HEARD "))
    stats = result.stats
    assert heard["connect"] == stats["connect"]["num_requests"] == 10
    assert heard["echo"] == stats["echo"]["num_requests"] == truth["messages_sent"] > 100
