"""
Network and host faults (issue 7): partitions between simulated hosts, and a
master stopped under its workers.

The hosts are network namespaces on one bridge, the switch
(``tests/netns.py``). A partition isolates two of its ports: the
switch silently drops every frame between those two hosts, both ways, while
each keeps its link up and still reaches the others. That is what a broken
path between two machines looks like to them: no error, no reset, TCP just
stops hearing from the other side, and only timeouts can tell (the users'
pings and echoes, Locust's heartbeats). ``ip link set down`` on a host's own
interface would be another fault: the kernel knows at once (its routes go,
sends fail with "network unreachable") and the host loses every peer, the
master included. (This kernel has no tc drop actions, netem or iptables;
bridge port isolation needs only iproute2.)

Every run is a real Locust master and real workers against the reference
server; the server's ``/stats`` and the kernels' socket tables are the truth
the master's figures are checked against.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import run_server_process, wait_for
from locust_process import LocustProcess, master_and_workers
from netns import Cluster, Host, namespaces_or_skip

from benchmarks.processes import CapturedProcess
from wslocust.integration.distributed import MASTER_TIMEOUT

pytestmark = pytest.mark.slow

PYTHON = sys.executable
SERVER_PORT = 3003  # inside the namespaces: a private network stack, no one else's port
USERS = 20
STOP_TIMEOUT = 2

LOCUSTFILE = """
from wslocust import WebSocketUser


class PartitionedUser(WebSocketUser):
    message_interval = 0.2
    reply_timeout = 1.0
    ping_interval = 0.5     # a dead connection is noticed within ping_interval + ping_timeout
    ping_timeout = 1.0
    connect_timeout = 2.0
    reconnect_delay = 0.5
    reconnect_max_delay = 1.0
    max_reconnect_attempts = 30
    close_timeout = 1.0
"""

_TABLE_CONNECTS = re.compile(r"^\s*WS\s+connect\s+(\d+)\s")
_TABLE_RECONNECT_FAILURES = re.compile(r"^\s*WS\s+reconnect\s+\d+\s+(\d+)\(")


@pytest.fixture
def locustfile(tmp_path: Path) -> Path:
    path = tmp_path / "partitioned.py"
    path.write_text(LOCUSTFILE)
    return path


# Helpers ---------------------------------------------------------------------------------


def wait_until(condition: Callable[[], Any], timeout: float, what: str, processes: list[CapturedProcess]) -> Any:
    """Poll ``condition`` until true; fail at once, with their output, if one of ``processes`` exits first."""
    return wait_for(condition, timeout, 0.1, what, processes)


def locust(cluster: Cluster, host: Host, name: str, locustfile: Path, *args: str) -> LocustProcess:
    """``locust -f LOCUSTFILE ARGS`` on ``host``, on Locust's default ports: each host's network is its own."""
    return cluster.locust(host, name, "-f", str(locustfile), *args)


def sockets(cluster: Cluster, host: Host, state: str) -> list[str]:
    """Local addresses of ``host``'s TCP sockets to the server port in ``state`` (the kernel's view)."""
    result = cluster.execute(host, ["ss", "-Htn", "state", state, f"( dport = :{SERVER_PORT} )"])
    return [line.split()[-2] for line in result.stdout.splitlines() if line.strip()]


def reported_connects(master: LocustProcess) -> int:
    """The connects in the master's latest statistics table (from the workers' reports)."""
    counts = [int(match[1]) for match in map(_TABLE_CONNECTS.match, master.lines("stderr")) if match]
    return counts[-1] if counts else 0


def reported_reconnect_failures(master: LocustProcess) -> int:
    """The failed reconnects in the master's latest statistics table."""
    counts = [int(match[1]) for match in map(_TABLE_RECONNECT_FAILURES.match, master.lines("stderr")) if match]
    return counts[-1] if counts else 0


def failures(prefix: Path) -> dict[tuple[str, str], int]:
    """Locust's ``PREFIX_failures.csv``: (request name, error class) -> occurrences; each message must be readable."""
    found: dict[tuple[str, str], int] = {}
    with open(f"{prefix}_failures.csv") as file:
        for row in csv.DictReader(file):
            kind, _, message = row["Error"].partition("(")
            assert len(message) > 10 and "Traceback" not in message, row  # e.g. PingTimeout('no pong within 1 s')
            found[row["Name"], kind] = found.get((row["Name"], kind), 0) + int(row["Occurrences"])
    return found


def websocket_rows(prefix: Path) -> dict[str, dict[str, str]]:
    """wslocust's ``PREFIX_websocket.csv`` by node: ``All (N workers)`` holds the totals."""
    with open(f"{prefix}_websocket.csv") as file:
        return {row["node"]: row for row in csv.DictReader(file)}


def totals(prefix: Path) -> dict[str, int]:
    row = next(row for node, row in websocket_rows(prefix).items() if node.startswith("All"))
    return {key: int(value) for key, value in row.items() if value.isdigit()}


def no_traceback(*processes: CapturedProcess) -> None:
    for process in processes:
        assert "Traceback" not in process.stdout + process.stderr, process.output(tail=200)


# Simulated hosts ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    namespaces_or_skip("the partition tests")
    with Cluster(prefix=f"wsl-{os.getpid()}") as built:
        built.add_host("srv", 10)
        built.add_host("master", 11)
        built.add_host("w0", 21)
        built.add_host("w1", 22)
        yield built


@pytest.fixture
def hosts(cluster: Cluster) -> Iterator[dict[str, Host]]:
    """The module's hosts, every partition healed and every process stopped after each test."""
    started = len(cluster.processes)
    yield cluster.hosts
    for process in cluster.processes[started:]:
        process.stop(timeout=5)
    del cluster.processes[started:]
    cluster.heal()


def start_server(cluster: Cluster, host: Host) -> CapturedProcess:
    server = cluster.run(
        host, "server", [PYTHON, "-m", "wslocust", "serve", "--host", host.address, "--port", str(SERVER_PORT)]
    )
    wait_until(lambda: server.find(r"listening on", "stdout"), 30, "the server listening", [server])
    return server


def server_stats(cluster: Cluster, host: Host, server_host: Host) -> dict[str, Any]:
    """The reference server's ``/stats``, fetched from ``host``."""
    status, body = cluster.http_get(host, f"http://{server_host.address}:{SERVER_PORT}/stats")
    assert status == 200, (status, body)
    return json.loads(body)


# (a) A worker cut off from the server -------------------------------------------------------


def test_a_partition_between_a_worker_and_the_server_is_detected_counted_and_recovered(
    cluster, hosts, locustfile, tmp_path
):
    srv, master_host, w0 = hosts["srv"], hosts["master"], hosts["w0"]
    server = start_server(cluster, srv)
    prefix = tmp_path / "run"
    master = locust(
        cluster, master_host, "master", locustfile, "--master", "--headless", "--expect-workers", "1",
        "-u", str(USERS), "-r", str(USERS), "-t", "60s", "--host", f"ws://{srv.address}:{SERVER_PORT}/ws",
        "--master-bind-host", master_host.address, "--stop-timeout", str(STOP_TIMEOUT), "--csv", str(prefix),
    )  # fmt: skip
    worker = locust(cluster, w0, "worker", locustfile, "--worker", "--master-host", master_host.address)
    everyone = [server, master, worker]

    wait_until(lambda: len(sockets(cluster, w0, "established")) == USERS, 30, f"{USERS} connections", everyone)
    cluster.partition(w0, srv)
    # Pings go unanswered: each connection is declared dead and dropped by its user.
    wait_until(lambda: not sockets(cluster, w0, "established"), 10, "every connection declared dead", everyone)
    # Reconnects run into the partition (SYN_SENT, unanswered): wait until one has timed out, as reported. Not
    # by its socket leaving SYN_SENT: the kernel may give the next attempt the same local port at once.
    wait_until(lambda: sockets(cluster, w0, "syn-sent"), 10, "a reconnect attempt", everyone)
    wait_until(lambda: reported_reconnect_failures(master) > 0, 15, "a reconnect timing out", everyone)
    cluster.heal(w0, srv)
    # The population back: the kernel's TCP handshakes, and the server's upgrades (a user counts its reconnect
    # at the 101 response; an upgrade may still be under way after its handshake).
    wait_until(
        lambda: (
            len(sockets(cluster, w0, "established")) == USERS
            and server_stats(cluster, master_host, srv)["connections_accepted"] >= 2 * USERS
        ),
        15,
        "the population back",
        everyone,
    )
    # ... and echoing again: the server receives messages after the heal.
    received = server_stats(cluster, master_host, srv)["messages_received"]
    wait_until(
        lambda: server_stats(cluster, master_host, srv)["messages_received"] >= received + USERS,
        10,
        "echoes after the heal",
        everyone,
    )

    # The master's end: it tells the worker to quit and waits for its last report.
    master.popen.send_signal(signal.SIGTERM)
    master_code = master.wait(STOP_TIMEOUT + 20)
    worker_code = worker.wait(15)
    truth = server_stats(cluster, master_host, srv)

    assert master_code == 1, master.output()  # failures were recorded
    assert worker_code == 0, worker.output()
    no_traceback(master, worker, server)

    # Every failure is categorised, and each kind is what this fault causes.
    seen = failures(prefix)
    expected_kinds = {
        ("ping", "PingTimeout"),  # the pong did not come: the connection is declared dead
        ("disconnect", "ConnectionClosedError"),  # ... and dropped (1006, no close frame)
        ("reconnect", "ConnectTimeout"),  # attempts during the partition
        ("echo", "ReceiveTimeout"),  # replies overdue before the drop
        ("echo", "ConnectionClosedError"),  # replies lost with their connection
    }
    assert set(seen) <= expected_kinds, seen
    # Each connection was noticed dead once, by its ping, and came back once.
    assert seen["ping", "PingTimeout"] == seen["disconnect", "ConnectionClosedError"] == USERS
    assert seen["reconnect", "ConnectTimeout"] >= 1

    total = totals(prefix)
    assert total["disconnects"] == USERS and total["reconnects"] == USERS
    assert total["connects_failed"] == seen["reconnect", "ConnectTimeout"]
    # The server's truth: it accepted exactly the connections counted as made.
    assert truth["connections_accepted"] == total["connects_succeeded"] == 2 * USERS
    # The run's end closed every connection made after the heal. Those the users dropped during the
    # partition may still be open on the server: their reset crosses the network only when the
    # worker's kernel retransmits after the heal, and the reference server does not ping its clients.
    assert truth["connections_open"] + truth["connections_closed"] == truth["connections_accepted"]
    assert truth["connections_open"] <= USERS
    # Every message sent is accounted for: echoed, timed out, lost with its connection, or in flight at stop.
    sent = total["messages_sent"]
    assert sent == (
        total["messages_received"]
        + total["replies_timed_out"]
        + total["replies_lost"]
        + total["replies_in_flight_at_stop"]
    )
    echo_failures = sum(count for (name, _), count in seen.items() if name == "echo")
    assert echo_failures == total["replies_timed_out"] + total["replies_lost"] > 0
    # What the server echoed is at least what came back; what it received at most what was sent.
    assert total["messages_received"] <= truth["messages_sent"] <= truth["messages_received"] <= sent


# (b) A worker cut off from the master -------------------------------------------------------


def test_a_partition_between_a_worker_and_the_master_marks_the_totals_and_the_worker_quits(
    cluster, hosts, locustfile, tmp_path
):
    srv, master_host, w0, w1 = hosts["srv"], hosts["master"], hosts["w0"], hosts["w1"]
    server = start_server(cluster, srv)
    prefix = tmp_path / "run"
    run_time = 12
    started = time.monotonic()
    master = locust(
        cluster, master_host, "master", locustfile, "--master", "--headless", "--expect-workers", "2",
        "-u", str(USERS), "-r", str(USERS), "-t", f"{run_time}s", "--host", f"ws://{srv.address}:{SERVER_PORT}/ws",
        "--master-bind-host", master_host.address, "--stop-timeout", str(STOP_TIMEOUT), "--csv", str(prefix),
    )  # fmt: skip
    # One after the other, so that the one cut off is index 0.
    cut_off = locust(cluster, w0, "worker", locustfile, "--worker", "--master-host", master_host.address)
    wait_until(lambda: master.find(r"\(index 0\) reported as ready"), 30, "the first worker ready", [master, cut_off])
    other = locust(cluster, w1, "worker", locustfile, "--worker", "--master-host", master_host.address)
    everyone = [server, master, cut_off, other]

    wait_until(lambda: reported_connects(master) == USERS, 30, "the master's table counting every connect", everyone)
    cluster.partition(w0, master_host)
    partitioned_at = time.monotonic()
    wait_until(lambda: master.find(r"wslocust: worker .*\(index 0\) is missing"), 15, "the master noticing", everyone)

    # The run ends on time without it; the other worker gets "quit" and ends too.
    master_code = master.wait(run_time + STOP_TIMEOUT + 30 - (time.monotonic() - started))
    assert time.monotonic() - started < run_time + STOP_TIMEOUT + 20
    assert other.wait(15) == 0, other.output()
    # The one cut off hears no heartbeat from its master, stops its users and quits by itself.
    cut_off_code = cut_off.wait(MASTER_TIMEOUT + 20 - (time.monotonic() - partitioned_at))
    assert time.monotonic() - partitioned_at < MASTER_TIMEOUT + 10
    assert cut_off_code == 0, cut_off.output()
    assert cut_off.find(rf"Didn't get heartbeat from master in over {MASTER_TIMEOUT}s")
    truth = server_stats(cluster, w1, srv)
    no_traceback(master, cut_off, other, server)
    assert master_code == 0, master.output()

    # Its connections were closed by its users, not left behind.
    assert truth["connections_open"] == 0 and truth["connections_closed"] == truth["connections_accepted"] == USERS
    # The totals are marked: the cut-off worker's last report is in them, said so at the end and in the CSV.
    log = master.stderr
    assert "the WebSocket totals include the last report of 1 missing worker" in log, log[-3000:]
    rows = websocket_rows(prefix)
    assert sorted(row["status"] for node, row in rows.items() if not node.startswith("All")) == ["gone", "missing"]
    total = totals(prefix)
    assert total["connects_succeeded"] == USERS == truth["connections_accepted"]  # reported before the cut
    # What it sent after its last report reached the server but not the totals: incomplete, and marked so.
    assert total["messages_sent"] < truth["messages_received"]


# (c) The master stopped under its workers (loopback, no namespaces) ----------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_stop_cleanly_by_themselves_when_the_master_is_stopped(signum, locustfile):
    with (
        run_server_process() as server,
        master_and_workers(
            "--headless", "--expect-workers", "2", "-u", str(USERS), "-r", str(USERS), "-t", "60s",
            "--host", server.url, "--stop-timeout", str(STOP_TIMEOUT), locustfile=locustfile,
        ) as (master, workers),
    ):  # fmt: skip
        everyone = [master, *workers]
        wait_until(lambda: server.stats()["connections_open"] == USERS, 30, f"{USERS} connections", everyone)
        stopped_at = time.monotonic()
        master.popen.send_signal(signum)
        master_code = master.wait(STOP_TIMEOUT + 15)
        # SIGTERM: the master tells them to quit. SIGKILL: they notice its heartbeats stopped.
        deadline = STOP_TIMEOUT + 10 if signum == signal.SIGTERM else MASTER_TIMEOUT + 10
        codes = [worker.wait(deadline - (time.monotonic() - stopped_at)) for worker in workers]
        truth = server.stats()
    assert codes == [0, 0], "\n".join(worker.output() for worker in workers)
    assert master_code == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
    no_traceback(*everyone)
    # Every connection was closed by its user, none left open or cut.
    assert truth["connections_open"] == 0 and truth["connections_closed"] == truth["connections_accepted"] == USERS
    for worker in workers:
        errors = [line for line in worker.lines("stderr") if "/ERROR/" in line]
        if signum == signal.SIGKILL:
            # One line says why it quit; nothing else complains while it waits.
            assert [line.split(": ", 1)[1] for line in errors] == [
                f"Didn't get heartbeat from master in over {MASTER_TIMEOUT}s"
            ], worker.output()
        else:
            assert errors == [], worker.output()
    if signum == signal.SIGTERM:
        assert re.search(rf"WebSocket summary: {USERS} connects \(0 failed", master.stderr), master.output()
