"""
A master and worker processes on loopback, driven through Locust's REST API
(the original suite's ``curl -X POST /start``): start with parameters, read
the statistics and the WebSocket statistics, reset, stop; a worker killed
with SIGKILL on the way.
"""

from __future__ import annotations

import json
import signal
import urllib.parse
import urllib.request

import pytest
from helpers import run_server_process, wait_for
from locust_process import master_and_workers

pytestmark = pytest.mark.slow


class Api:
    """The master's web API, as ``curl`` would use it."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return json.load(response)

    def post(self, path: str, **form: object) -> bytes:
        data = urllib.parse.urlencode({k: str(v) for k, v in form.items()}).encode()
        with urllib.request.urlopen(urllib.request.Request(self.base + path, data=data), timeout=30) as response:
            return response.read()

    def entry(self, name: str) -> dict:
        return next((e for e in self.get("/stats/requests")["stats"] if e["name"] == name), {"num_requests": 0})


def test_the_rest_api_controls_a_distributed_run_that_survives_a_killed_worker():
    with (
        run_server_process() as server,
        master_and_workers("--enable-rebalancing", "--host", server.url, locustfile="locustfiles/echo.py") as (
            master,
            workers,
        ),
    ):
        api = Api(master.web_port)
        everyone = [master, *workers]
        wait_for(lambda: _quietly(lambda: api.get("/worker-count")["worker_count"] == 2), 30, processes=everyone)

        # Start: POST /swarm with the run's parameters, wslocust's options included.
        started = json.loads(api.post("/swarm", user_count=10, spawn_rate=10, host=server.url, ws_message_interval=100))
        assert started["success"] is True and started["host"] == server.url
        wait_for(lambda: api.entry("connect")["num_requests"] == 10, timeout=20)
        requests = api.get("/stats/requests")
        assert requests["state"] == "running" and requests["user_count"] == 10
        assert sorted(worker["user_count"] for worker in requests["workers"]) == [5, 5]

        # The WebSocket statistics, per worker and in all.
        ws = wait_for(lambda: (s := api.get("/ws/stats"))["aggregate"]["connections"]["open"] == 10 and s)
        assert len(ws["workers"]) == 2 and ws["aggregate"]["totals"]["connects_succeeded"] == 10

        # A worker dies: the master marks it missing, the other takes over its users.
        workers[0].kill()
        wait_for(lambda: "missing" in {w["state"] for w in api.get("/stats/requests")["workers"]}, timeout=20)
        wait_for(lambda: server.stats()["connections_accepted"] == 15, timeout=20)
        assert server.stats()["connections_open"] == 10
        # The killed worker's 5 connects are still counted, once: the server accepted 15.
        ws = wait_for(
            lambda: (s := api.get("/ws/stats"))["aggregate"]["totals"]["connects_succeeded"] == 15 and s,
            timeout=10,
        )
        assert sorted(worker["state"] for worker in ws["workers"]) == ["missing", "running"]
        wait_for(lambda: api.entry("connect")["num_requests"] == 15, timeout=10)

        # Reset: the figures start over while the run goes on.
        assert api.post("/stats/reset") == b"ok"
        wait_for(lambda: api.entry("connect")["num_requests"] == 0, timeout=10)
        wait_for(lambda: api.get("/ws/stats")["aggregate"]["totals"]["connects_succeeded"] == 0, timeout=10)
        wait_for(lambda: api.entry("echo")["num_requests"] > 0, timeout=10)

        # Stop: every connection closes; the master keeps running for the next start.
        assert json.loads(api.post("/stop"))["success"] is True
        wait_for(lambda: api.get("/stats/requests")["state"] == "stopped", timeout=20)
        wait_for(lambda: server.stats()["connections_open"] == 0, timeout=20)
        master.popen.send_signal(signal.SIGTERM)
        master_code = master.wait(30)
        survivor_code = workers[1].wait(30)
    stderr = master.stderr
    assert "is missing (no heartbeat): its last report" in stderr, stderr[-3000:]
    assert "the WebSocket totals include the last report of 1 missing worker" in stderr
    # No crash and no traceback on either side of the kill (issue 7).
    assert master_code == 0 and survivor_code == 0, stderr[-3000:]
    assert "Traceback" not in stderr


def _quietly(call):
    try:
        return call()
    except OSError:
        return None


def test_a_worker_computes_locusts_default_options_once_not_once_per_option_of_each_spawn_message(monkeypatch):
    # Locust's worker calls default_args_dict() for every option of every spawn message; each
    # call builds a whole argument parser. wslocust computes it once (see wslocust.locust_compat).
    from locust import argument_parser

    from wslocust import locust_compat

    built = []
    original_parser = argument_parser.get_empty_argument_parser

    def counting_parser(*args, **kwargs):
        built.append(1)
        return original_parser(*args, **kwargs)

    if getattr(argument_parser.default_args_dict, "wslocust_cached", False):
        pytest.skip("already cached in this process by an earlier worker init")
    monkeypatch.setattr(argument_parser, "default_args_dict", argument_parser.default_args_dict)  # restored after
    monkeypatch.setattr(argument_parser, "get_empty_argument_parser", counting_parser)
    expected = argument_parser.default_args_dict()
    assert len(built) == 1
    locust_compat.cache_default_args()
    answers = [argument_parser.default_args_dict() for _ in range(50)]
    assert len(built) == 2  # once more, then never again
    assert all(answer == expected for answer in answers)
    answers[0]["num_users"] = "changed"  # each caller gets its own copy
    assert argument_parser.default_args_dict() == expected
