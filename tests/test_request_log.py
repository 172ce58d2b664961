"""
Successes written straight into Locust's statistics (``wslocust.locust_compat.request_log``): the event still
fires for any other listener, in a real run too. That they leave exactly what the event would have is checked
in ``tests/test_locust_compat.py``, on the oldest and the newest Locust.
"""

from __future__ import annotations

import json
import textwrap

from helpers import run_server_process
from locust import User
from locust.env import Environment
from locust_process import run_locust

from wslocust.locust_compat import RequestLog


class _Idle(User):
    abstract = False


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
