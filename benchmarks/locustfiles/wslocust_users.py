"""
The wslocust users the benchmarks run, with full Locust statistics on.

- ``EchoUser``: closed loop, one ``self.echo()`` after another
  (``wait_time = constant(0)``).
- ``HoldUser``: no task: holds its connection and sends one message every
  ``--ws-message-interval`` ms on wslocust's open-loop schedule
  (``--ws-message-interval 0``: none).

``--bench-size`` sets ``message_size`` of both.
"""

import bench_probe
from locust import constant, events, task

from wslocust import WebSocketUser

__all__ = ["EchoUser", "HoldUser"]


class EchoUser(WebSocketUser):
    wait_time = constant(0)

    @task
    def echo_once(self):
        self.echo()


class HoldUser(WebSocketUser):
    pass


@events.init.add_listener
def _message_size(environment, **_):
    EchoUser.message_size = HoldUser.message_size = bench_probe.options(environment).bench_size
