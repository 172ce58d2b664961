"""
The Kubernetes demonstration: the manifests' reference server, headless
master (Job) and workers (Deployment), each on a simulated host of
:class:`~netns.Cluster`; a worker killed with SIGKILL during the run and
another one joining. :func:`run_demo` returns what it saw; tests/test_k8s.py
checks it, and ``scripts/netns_cluster.py`` prints it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from helpers import wait_for
from k8s_pods import Manifests, pod_spec, read_dockerfile, run_pod, wait_ready
from netns import Cluster

__all__ = ["DemoResult", "run_demo"]


@dataclass
class DemoResult:
    """What the demonstration observed; :func:`run_demo` checks nothing itself."""

    users: int
    workers: dict[str, str] = field(default_factory=dict)
    """Simulated host name -> address, for every worker that ran."""
    spread_before_kill: dict[str, int] = field(default_factory=dict)
    """Established connections on the server by worker host, once all users were spawned."""
    spread_after_kill: dict[str, int] = field(default_factory=dict)
    spread_after_join: dict[str, int] = field(default_factory=dict)
    killed: str | None = None
    killed_users: int = 0
    master_exit_code: int | None = None
    master_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Locust's --json output by request name."""
    websocket: dict[str, dict[str, str]] = field(default_factory=dict)
    """results/wslocust_websocket.csv by node: ``All (N workers)`` (the totals) and each worker."""
    csv_stats: dict[str, dict[str, str]] = field(default_factory=dict)
    """results/wslocust_stats.csv, by name, as written to the Job's results volume."""
    server: dict[str, float] = field(default_factory=dict)
    """The reference server's /stats after the run."""
    routes: dict[str, str] = field(default_factory=dict)
    master_log: list[str] = field(default_factory=list)
    message_interval_ms: float = 0.0

    @property
    def totals(self) -> dict[str, int]:
        """The master's WebSocket totals (the ``All`` row of the results volume's CSV), as numbers."""
        row = next((row for node, row in self.websocket.items() if node.startswith("All")), {})
        return {key: int(float(value)) for key, value in row.items() if value.replace(".", "", 1).isdigit()}


_TABLE_CONNECTS = re.compile(r"^\s*WS\s+connect\s+(\d+)\s")


def run_demo(
    *,
    workers: int | None = None,
    users: int = 40,
    run_time: float = 40.0,
    message_interval_ms: float = 200.0,
    kill: bool = True,
    join: bool = True,
    prefix: str | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> DemoResult:
    """
    Start the reference server, the headless master (Job) and the workers
    (Deployment) of ``k8s/`` on simulated hosts; once every user is connected
    and reported, SIGKILL the first worker, then start one more worker; wait
    for the master to end the run, and return what was seen.

    Only the run's size is changed from the manifests (users, spawn rate, run
    time, workers expected, stop timeout and message interval), through the
    environment variables the manifests themselves set.
    """
    manifests = Manifests()
    image = read_dockerfile()
    server_spec = pod_spec(manifests, image, "Deployment", "wslocust-reference-server")
    master_spec = pod_spec(manifests, image, "Job", "wslocust-headless")
    worker_spec = pod_spec(manifests, image, "Deployment", "wslocust-worker")
    workers = workers or worker_spec.replicas
    result = DemoResult(users=users, message_interval_ms=message_interval_ms)
    with Cluster(prefix, log=log) as cluster:
        server_host = cluster.add_host("srv", 10, aliases=["wslocust-reference-server"])
        master_host = cluster.add_host("master", 11, aliases=["wslocust-master"])
        worker_hosts = [cluster.add_host(f"w{n}", 21 + n) for n in range(workers + (1 if join else 0))]
        for host in cluster.hosts.values():
            result.routes[host.name] = cluster.routes(host)

        server = run_pod(cluster, server_host, server_spec)
        wait_ready(cluster, server_host, server_spec, server)
        overrides = {
            "LOCUST_USERS": str(users),
            "LOCUST_SPAWN_RATE": str(users),
            "LOCUST_RUN_TIME": f"{run_time:g}s",
            "LOCUST_EXPECT_WORKERS": str(workers),
            "LOCUST_EXPECT_WORKERS_MAX_WAIT": "60",
            "LOCUST_STOP_TIMEOUT": "5",
            "MESSAGE_INTERVAL": f"{message_interval_ms:g}",
        }
        master = run_pod(cluster, master_host, master_spec, overrides)
        wait_ready(cluster, master_host, master_spec, master)
        running = [run_pod(cluster, host, worker_spec) for host in worker_hosts[:workers]]
        for host in worker_hosts[:workers]:
            result.workers[host.name] = host.address
        address_to_host = {host.address: host.name for host in worker_hosts}
        server_port = int(server_spec.ports["ws"])

        def spread() -> dict[str, int]:
            peers = cluster.established_peers(server_host, server_port)
            return {address_to_host.get(address, address): count for address, count in sorted(peers.items())}

        everyone = [server, master, *running]
        wait_for(lambda: master.find(r"All users spawned"), 30, 0.2, "every user spawned", everyone)
        wait_for(lambda: sum(spread().values()) == users, 30, 0.2, f"{users} connections on the server", everyone)
        result.spread_before_kill = spread()
        log(f"connections on the server by worker: {result.spread_before_kill}")

        if kill:
            # Each worker reports every 3 s: wait until the master's table counts every connect,
            # so that the killed worker's last report holds all its connections.
            def reported_connects() -> int:
                counts = [int(m[1]) for m in map(_TABLE_CONNECTS.match, master.lines("stderr")) if m]
                return counts[-1] if counts else 0

            wait_for(
                lambda: reported_connects() >= users, 20, 0.2, "the master's table counting every connect", everyone
            )
            victim, victim_host = running[0], worker_hosts[0]
            result.killed = victim_host.name
            result.killed_users = result.spread_before_kill.get(victim_host.name, 0)
            victim.kill()
            log(f"killed the worker on {victim_host.name} (pid {victim.pid}) with SIGKILL")
            survivors = [process for process in everyone if process is not victim]
            wait_for(lambda: master.find(r"wslocust: worker .* is missing"), 20, 0.2, "the master noticing", survivors)
            # --enable-rebalancing: the survivors take over the killed worker's users.
            wait_for(
                lambda: (s := spread()).get(victim_host.name, 0) == 0 and sum(s.values()) == users,
                30,
                0.2,
                f"{users} connections again, none from {victim_host.name}",
                survivors,
            )
            result.spread_after_kill = spread()
            log(f"after the kill: {result.spread_after_kill}")
            everyone = survivors

        if join:
            newcomer_host = worker_hosts[workers]
            newcomer = run_pod(cluster, newcomer_host, worker_spec)
            result.workers[newcomer_host.name] = newcomer_host.address
            everyone = [*everyone, newcomer]
            wait_for(
                lambda: (s := spread()).get(newcomer_host.name, 0) > 0 and sum(s.values()) == users,
                30,
                0.2,
                f"connections from the worker that joined ({newcomer_host.name})",
                everyone,
            )
            result.spread_after_join = spread()
            log(f"after a worker joined: {result.spread_after_join}")

        result.master_exit_code = master.wait(timeout=run_time + 60)
        result.master_log = master.lines("stderr")
        stdout = master.lines("stdout")
        start = next((i for i, line in enumerate(stdout) if line.startswith("[")), None)
        if start is not None:
            result.master_stats = {entry["name"]: entry for entry in json.loads("\n".join(stdout[start:]))}
        results = master_host.root / master_spec.workdir.lstrip("/") / "results"
        for path, key, target in (
            (results / "wslocust_stats.csv", "Name", result.csv_stats),
            (results / "wslocust_websocket.csv", "node", result.websocket),
        ):
            if path.exists():
                with path.open() as file:
                    target.update({row[key]: row for row in csv.DictReader(file)})
        # Workers get "quit" from the master and exit; the server's counters are final once they have.
        for process in everyone:
            if process is not server and process is not master:
                process.wait(timeout=30)
        status, body = cluster.http_get(server_host, f"http://{server_host.address}:{server_port}/stats")
        if status == 200:
            result.server = json.loads(body)
    return result
