"""
The wslocust users the benchmarks run, with full Locust statistics on.

- ``EchoUser``: closed loop, one ``self.echo()`` after another
  (``wait_time = constant(0)``).
- ``WindowUser``: closed loop without a task: ``in_flight = 1`` sends the
  next echo as soon as the previous one is answered.
- ``HoldUser``: no task: holds its connection and sends one message every
  ``--ws-message-interval`` ms on wslocust's open-loop schedule
  (``--ws-message-interval 0``: none).

``--bench-size`` sets ``message_size`` of both.
"""

import bench_probe
from locust import constant, events, task

from wslocust import WebSocketUser

__all__ = ["EchoUser", "HoldUser", "WindowUser"]


class EchoUser(WebSocketUser):
    wait_time = constant(0)

    @task
    def echo_once(self):
        self.echo()


class WindowUser(WebSocketUser):
    in_flight = 1


class HoldUser(WebSocketUser):
    pass


@events.init.add_listener
def _message_size(environment, **_):
    size = bench_probe.options(environment).bench_size
    EchoUser.message_size = HoldUser.message_size = WindowUser.message_size = size
