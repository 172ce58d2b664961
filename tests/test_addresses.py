"""Source-address rotation: parsing, the rotation, the bound sockets, and what a server sees from real runs."""

from __future__ import annotations

import collections
import shutil
import socket
import subprocess
import sys

import locust
import psutil
import pytest
from helpers import run_server_process, wait_for
from locust.env import Environment
from locust_process import LocustProcess, run_locust

from wslocust import ConnectError, WebSocketUser
from wslocust.integration.startup import FORKED_WORKERS_WAIT
from wslocust.run.state import run_state
from wslocust.server import ServerConfig, create_server
from wslocust.transport.addresses import (
    IP_BIND_ADDRESS_NO_PORT,
    MAX_SOURCE_ADDRESSES,
    SourceAddresses,
    check_bindable,
    connect_from,
    parse_source_addresses,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.0/8 is all local on Linux only")
with_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="`ss` (iproute2) lists the server's connections")


# Parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.2", ["127.0.0.2"]),
        ("127.0.0.2-127.0.0.4", ["127.0.0.2", "127.0.0.3", "127.0.0.4"]),
        ("127.0.0.2-4", ["127.0.0.2", "127.0.0.3", "127.0.0.4"]),
        ("127.0.0.254-127.0.1.1", ["127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"]),
        ("127.0.1.0/30", ["127.0.1.1", "127.0.1.2"]),
        ("127.0.1.7/32", ["127.0.1.7"]),
        (" 127.0.0.2 , 127.0.0.5-6,127.0.0.2 ", ["127.0.0.2", "127.0.0.5", "127.0.0.6"]),
        ("fd00::1-fd00::3", ["fd00::1", "fd00::2", "fd00::3"]),
        ("::1", ["::1"]),
    ],
)
def test_addresses_ranges_and_blocks_expand_in_order_without_duplicates(text, expected):
    assert parse_source_addresses(text) == expected


@pytest.mark.parametrize(
    "text, message",
    [
        ("127.0.0.300", "'127.0.0.300' is not an IP address; use addresses, ranges (127.0.0.2-127.0.0.50) and CIDR"),
        ("localhost", "'localhost' is not an IP address; use"),
        ("127.0.0.9-127.0.0.2", "'127.0.0.9-127.0.0.2' is not an address range (the end comes before the start)"),
        ("127.0.0.2-x", "'127.0.0.2-x' is not an address range; use"),
        ("127.0.0.2-300", "'127.0.0.2-300' is not an address range: 300 is above 255"),
        ("127.0.0.0/33", "'127.0.0.0/33' is not a CIDR block; use"),
        ("127.0.0.0/8", f"'127.0.0.0/8' has more than {MAX_SOURCE_ADDRESSES} addresses; use a smaller block"),
        ("127.0.0.1-127.1.0.1", f"has more than {MAX_SOURCE_ADDRESSES} addresses; use a shorter range"),
        ("127.0.0.2,::1", "'127.0.0.2,::1' mixes IPv4 and IPv6 addresses; use the family of the target's address"),
        (" , ", "' , ' lists no address; use"),
    ],
)
def test_a_bad_list_is_named_with_what_is_valid(text, message):
    with pytest.raises(ValueError) as caught:
        parse_source_addresses(text)
    assert message in str(caught.value)


def test_the_rotation_is_round_robin_from_its_start_and_wraps():
    rotation = SourceAddresses(["a", "b", "c"], start=4)
    assert [rotation.next() for _ in range(4)] == [("b", 0), ("c", 0), ("a", 0), ("b", 0)]
    assert len(rotation) == 3
    with pytest.raises(ValueError):
        SourceAddresses([])


def test_without_source_addresses_the_kernel_chooses():
    environment = Environment(user_classes=[], events=locust.events)
    assert run_state(environment).next_source_address() is None
    run_state(environment).source_addresses = SourceAddresses(["127.0.0.2", "127.0.0.3"])
    assert [run_state(environment).next_source_address() for _ in range(3)] == [
        ("127.0.0.2", 0),
        ("127.0.0.3", 0),
        ("127.0.0.2", 0),
    ]


# Sockets ----------------------------------------------------------------------------------


@linux_only
def test_connect_from_binds_the_source_address_without_taking_a_port_at_bind_time():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        sock = connect_from("127.0.0.1", port, ("127.0.0.7", 0))
        try:
            peer, _ = listener.accept()
            with peer:
                assert peer.getpeername()[0] == "127.0.0.7"
            assert sock.getsockname()[0] == "127.0.0.7"
            assert sock.getsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT) == 1
        finally:
            sock.close()


@linux_only
def test_an_address_not_of_this_host_is_a_connect_error_naming_it():
    assert check_bindable("127.0.0.9") is None
    assert check_bindable("192.0.2.1") is not None  # TEST-NET-1: on no interface here
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with pytest.raises(ConnectError, match=r"^cannot bind the source address 192\.0\.2\.1: .*\(EADDRNOTAVAIL\)$"):
            connect_from("127.0.0.1", port, ("192.0.2.1", 0))
        with pytest.raises(ConnectError, match=r"^127\.0\.0\.1 has no IPv6 address, the family of the source"):
            connect_from("127.0.0.1", port, ("::1", 0))


@linux_only
def test_users_connect_from_each_address_in_turn_as_the_server_sees_it():
    server = create_server(ServerConfig(host="127.0.0.1", port=0))
    server.start()

    class Holder(WebSocketUser):
        message_interval = 0

    environment = Environment(user_classes=[Holder], events=locust.events, host=server.url)
    run_state(environment).source_addresses = SourceAddresses(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    runner = environment.create_local_runner()
    try:
        runner.start(9, spawn_rate=100)
        wait_for(lambda: server.counters.connections_open == 9, timeout=10)
        accepted = [
            c.raddr.ip
            for c in psutil.Process().net_connections("tcp")
            if c.laddr.port == server.port and c.status == psutil.CONN_ESTABLISHED
        ]
        assert collections.Counter(accepted) == {"127.0.0.2": 3, "127.0.0.3": 3, "127.0.0.4": 3}
    finally:
        runner.quit()
        server.stop(timeout=1)
    assert environment.stats.get("connect", "WS").num_failures == 0


# Real runs --------------------------------------------------------------------------------


def _peers(port: int) -> collections.Counter[str]:
    """Established connections to ``port`` on this machine, by client address: the server's kernel's view."""
    listed = subprocess.run(
        ["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    )
    return collections.Counter(line.split()[-1].rsplit(":", 1)[0] for line in listed.stdout.splitlines() if line)


@linux_only
@with_ss
@pytest.mark.slow
@pytest.mark.parametrize(
    "how, users, expected",
    [
        # One process: round robin over the three addresses.
        (["--ws-source-addresses", "127.0.0.2-4"], 6, {"127.0.0.2": 2, "127.0.0.3": 2, "127.0.0.4": 2}),
        # Two worker processes (WORKERS is --processes), from the environment: each starts at its
        # worker index, so one user each lands on two different addresses.
        ({"WORKERS": "2", "WS_SOURCE_ADDRESSES": "127.0.0.2-127.0.0.4"}, 2, {"127.0.0.2": 1, "127.0.0.3": 1}),
    ],
    ids=["option", "environment-and-workers"],
)
def test_a_run_rotates_its_connections_over_the_source_addresses(how, users, expected):
    options = how if isinstance(how, list) else []
    environment = how if isinstance(how, dict) else {}
    with (
        run_server_process() as server,
        LocustProcess(
            "-f", "locustfiles/echo.py", "--headless", "-u", str(users), "-r", str(users), "-t", "5s",
            "--host", server.url, "--ws-message-interval", "200", *options, env=environment,
        ) as run,
    ):  # fmt: skip

        def all_connected() -> collections.Counter[str] | None:
            peers = _peers(server.port)
            return peers if sum(peers.values()) == users else None

        seen = wait_for(all_connected, timeout=30, processes=[run])
        code = run.wait(40)
    stderr = run.stderr
    assert code == 0, stderr
    assert dict(seen) == expected
    assert "Connections of this process rotate over 3 source addresses (127.0.0.2 ... 127.0.0.4)" in stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "how, message",
    [
        (
            ["--ws-source-addresses", "127.0.0.300"],
            "WS_SOURCE_ADDRESSES / --ws-source-addresses: '127.0.0.300' is not an IP address; use addresses",
        ),
        (
            {"WS_SOURCE_ADDRESSES": "192.0.2.1"},
            (
                "wslocust: WS_SOURCE_ADDRESSES / --ws-source-addresses: '192.0.2.1' is not an address of this host "
                "(Cannot assign requested address); use addresses of this host's interfaces"
            ),
        ),
        (
            # Forked workers: the master checks too, tells them to quit, and does not wait for them.
            {"WS_SOURCE_ADDRESSES": "192.0.2.1", "WORKERS": "2"},
            "wslocust: WS_SOURCE_ADDRESSES / --ws-source-addresses: '192.0.2.1' is not an address of this host",
        ),
    ],
    ids=["syntax", "not-local", "not-local-with-workers"],
)
def test_bad_source_addresses_stop_the_run_with_one_line(how, message):
    options = how if isinstance(how, list) else []
    result = run_locust(
        "-f", "locustfiles/echo.py", "--headless", "-u", "1", "-t", "2s", "--host", "ws://127.0.0.1:1/ws", *options,
        env=how if isinstance(how, dict) else {}, timeout=20,
    )  # fmt: skip
    # Within 20 s, forked workers included: a run of 2 s that never starts.
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    # Forked workers that stop at start by themselves tell their master, which does not wait for their
    # last reports (10 s more: 11.3 s in all) once it has seen them all; it waits at most
    # FORKED_WORKERS_WAIT for one it has not seen yet (a worker whose "ready" it had not yet answered).
    assert "no last report" not in result.stderr, result.stderr
    assert result.elapsed < FORKED_WORKERS_WAIT + 3, f"the run took {result.elapsed:.1f} s to end"
