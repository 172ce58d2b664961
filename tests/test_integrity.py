"""Message integrity: late, duplicated and out-of-order echoes are told apart and counted (a real Locust run)."""

from __future__ import annotations

import locust
from fault_servers import FaultServer
from helpers import wait_for
from locust.env import Environment

from wslocust import WebSocketUser
from wslocust.run.state import run_state


def test_late_duplicated_reordered_and_missing_echoes_are_counted_as_the_server_sent_them():
    server = FaultServer().start()

    class Checked(WebSocketUser):
        message_interval = 0.01
        reply_timeout = 0.2
        reconnect = False

    environment = Environment(user_classes=[Checked], events=locust.events, host=server.url("/disorder?delay=0.5"))
    runner = environment.create_local_runner()
    try:
        runner.start(2, spawn_rate=1000)
        # several rounds of ten messages, and late echoes that came back after their timeout
        wait_for(lambda: server.total("late_sent") >= 4 and server.total("messages_received") >= 200, timeout=20)
        runner.quit()
        assert server.wait_idle(10)
    finally:
        server.stop()

    totals = run_state(environment).counters
    echo = environment.stats.get("echo", "WS")
    users = 2
    # A late echo is late once its request timed out. One message in ten comes late, one every
    # 100 ms, and a request times out after 200 ms: up to two of each user's may still be awaited
    # when it stops, and are then answered while it drains, after later ones.
    late_sent = server.total("late_sent")
    assert late_sent - 2 * users <= totals.replies_late <= late_sent and totals.replies_late > 0
    drained_late = late_sent - totals.replies_late
    # Duplicates and reorderings are sent at once, before the server reads the client's close.
    assert totals.replies_duplicated == server.total("duplicates_sent") > 0
    assert totals.replies_out_of_order == server.total("reordered_sent") + drained_late > 0
    # every echo that answered a waiting request once is a successful "echo"
    answered = server.total("messages_sent") + server.total("reordered_sent") + drained_late
    assert echo.num_requests - echo.num_failures == answered
    assert echo.num_failures == totals.replies_timed_out
    assert totals.unsolicited_received == 0  # none of these was taken for a server push
    assert totals.messages_sent == server.total("messages_received")
