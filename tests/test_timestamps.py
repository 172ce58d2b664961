"""
Kernel receive timestamps: replies are timed from when the kernel received them, not when the event loop read them.

Real sockets on 127.0.0.1 and real servers (in this process where the event loop may be blocked, in a
subprocess where it must answer while this process is stalled). Stalls are busy waits that hold the event loop,
as a CPU-heavy greenlet would.
"""

from __future__ import annotations

import socket
import struct
import time

import gevent
import gevent.server
import pytest
from helpers import run_server_process, wait_for

from wslocust.codec.uri import parse_uri
from wslocust.transport import timestamps
from wslocust.transport.connection import Connection
from wslocust.transport.streams import TlsStream
from wslocust.transport.timestamps import (
    ANCILLARY_SIZE,
    ClockMap,
    enable_receive_timestamps,
    kernel_time,
    timestamp_options,
)


def _supported() -> bool:
    with socket.socket() as probe:
        return enable_receive_timestamps(probe)


pytestmark = pytest.mark.skipif(not _supported(), reason="Linux SO_TIMESTAMPNS only")

STALL = 0.050
TRUE_ROUND_TRIP_BOUND = STALL * 1000 / 2
"""A loopback echo from another process takes well under a millisecond, a few on a busy host; the stall would
add 50 ms: the figures timed from kernel stamps must stay under this, those timed at read above the stall."""


def busy_wait(seconds: float) -> None:
    """Hold the event loop (no greenlet switch), as a CPU-bound greenlet would."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


def socket_pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return client, server


@pytest.fixture(scope="module", autouse=True)
def stamping_on():
    """
    Keep the kernel stamping. Linux switches receive stamping on for the whole host when a first socket asks,
    a little later (from a work queue), and off when the last one closes: a socket that keeps asking, and a
    probe that gets a stamp, make the tests independent of that delay.
    """
    client, server = socket_pair()
    assert enable_receive_timestamps(client)

    def stamped() -> bool:
        server.send(b"x")
        _, ancdata, _, _ = client.recvmsg(16, ANCILLARY_SIZE)
        return kernel_time(ancdata) is not None

    wait_for(stamped, 5, message="the kernel to stamp received segments")
    yield
    client.close()
    server.close()


# The option and the stamp ---------------------------------------------------------------------------------


def test_the_option_is_set_and_reads_carry_the_kernels_receive_time():
    client, server = socket_pair()
    with client, server:
        assert enable_receive_timestamps(client)
        before = time.time()
        server.send(b"hello")
        data, ancdata, _, _ = client.recvmsg(100, ANCILLARY_SIZE)
        after = time.time()
        assert data == b"hello"
        stamp = kernel_time(ancdata)
        assert stamp is not None and before - 0.001 <= stamp <= after


def test_a_reader_50_ms_late_still_gets_the_arrival_time():
    client, server = socket_pair()
    clock = ClockMap()
    with client, server:
        enable_receive_timestamps(client)
        sent_at = time.perf_counter()
        server.send(b"late")
        busy_wait(0.050)
        previous = time.perf_counter()
        _, ancdata, _, _ = client.recvmsg(100, ANCILLARY_SIZE)
        read_at = time.perf_counter()
        received_at = clock.to_perf(kernel_time(ancdata), read_at, previous - 1)
        assert read_at - sent_at >= 0.050
        assert received_at is not None and 0 <= received_at - sent_at < 0.001


def test_a_socket_without_the_option_gets_no_stamp():
    client, server = socket_pair()
    with client, server:
        server.send(b"x")
        _, ancdata, _, _ = client.recvmsg(100, ANCILLARY_SIZE)
        assert ancdata == [] and kernel_time(ancdata) is None


def test_the_option_numbers_and_stamp_layouts_per_architecture():
    assert timestamp_options("x86_64") == timestamp_options("aarch64") == timestamp_options("mips") == (64, 35)
    assert timestamp_options("parisc64") == (0x4039, 0x4013)
    assert timestamp_options("sparc64") == (0x42, 0x21)
    new, old = timestamps.OPTIONS
    assert kernel_time([(socket.SOL_SOCKET, new, struct.pack("=qq", 1_700_000_000, 250_000_000))]) == 1_700_000_000.25
    assert kernel_time([(socket.SOL_SOCKET, old, struct.pack("@ll", 1_700_000_000, 500_000_000))]) == 1_700_000_000.5
    assert kernel_time([(socket.SOL_SOCKET, new, bytes(16))]) is None  # no stamp on the segment
    assert kernel_time([(socket.SOL_SOCKET, 1234, bytes(16))]) is None  # another message type


# The clock mapping -------------------------------------------------------------------------------------


class FakeClocks:
    """A perf clock the test moves, and a wall clock at an offset from it that the test can step."""

    def __init__(self, offset: float) -> None:
        self.now = 1000.0
        self.offset = offset

    def perf(self) -> float:
        return self.now

    def realtime(self) -> float:
        return self.now + self.offset


def test_the_clock_map_measures_the_offset_and_maps_stamps():
    clocks = FakeClocks(offset=1_700_000_000.0)
    clock = ClockMap(clocks.realtime, clocks.perf)
    assert clock.offset == 1_700_000_000.0
    clocks.now = 1010.0
    stamp = 1_700_000_000.0 + 1009.990  # arrived 10 ms before the read
    assert clock.to_perf(stamp, read_at=1010.0, previous_read_at=1009.5) == pytest.approx(1009.990)
    assert clock.steps == 0


def test_the_clock_map_detects_a_wall_clock_step_and_distrusts_stamps_that_may_predate_it():
    clocks = FakeClocks(offset=1_700_000_000.0)
    clock = ClockMap(clocks.realtime, clocks.perf)
    clocks.now = 1000.2
    clocks.offset -= 5.0  # settimeofday: the wall clock goes 5 s back
    old_stamp = 1_700_000_000.0 + 1000.1  # taken before the step
    assert clock.to_perf(old_stamp, read_at=1000.2, previous_read_at=1000.0) is None
    assert clock.steps == 1 and clock.offset == 1_700_000_000.0 - 5.0
    # A later read on a socket whose last read also came after the step is trusted again, with the new offset.
    clocks.now = 1000.4
    new_stamp = clocks.offset + 1000.39
    assert clock.to_perf(new_stamp, read_at=1000.4, previous_read_at=1000.3) == pytest.approx(1000.39)
    # A small difference (under ClockMap.step) is measuring noise, not a step.
    clocks.offset += 0.0002
    clocks.now = 1002.0  # past ClockMap.refresh: measured again
    assert clock.to_perf(clocks.offset + 1001.999, read_at=1002.0, previous_read_at=1001.0) is not None
    assert clock.steps == 1


def test_stamps_from_the_future_or_absurdly_old_fall_back_to_the_read_time():
    clocks = FakeClocks(offset=100.0)
    clock = ClockMap(clocks.realtime, clocks.perf)
    assert clock.to_perf(100.0 + 1000.5, read_at=1000.0, previous_read_at=999.0) is None  # 500 ms ahead
    assert clock.to_perf(100.0 + 1000.0002, read_at=1000.0, previous_read_at=999.0) == 1000.0  # measuring error
    assert clock.to_perf(100.0 + 1000.0 - 2 * ClockMap.max_age, read_at=1000.0, previous_read_at=999.0) is None
    assert clock.steps == 0


# Connections -------------------------------------------------------------------------------------------


def echo_round_trips(
    url: str, *, kernel_timestamps: bool, burst: int, stall: float, **options
) -> tuple[list, Connection]:
    """Send ``burst`` messages, hold the event loop ``stall`` seconds, then let the echoes be read."""
    received: dict[str, float] = {}
    connection = Connection(
        parse_uri(url),
        on_message=lambda message, at: received.__setitem__(message, at),
        kernel_timestamps=kernel_timestamps,
    )
    connection.open(timeout=10, **options)
    receiver = gevent.spawn(connection.receive_forever)
    try:
        sent = {}
        for index in range(burst):
            sent[f"m{index}"] = time.perf_counter()
            connection.send_text(f"m{index}")
        busy_wait(stall)
        wait_for(lambda: len(received) == burst, 10)
        return [(received[key] - sent_at) * 1000 for key, sent_at in sent.items()], connection
    finally:
        connection.close(timeout=2)
        receiver.kill()


@pytest.fixture(scope="module")
def echo_process():
    """The reference server in a process of its own: it answers while this one is stalled."""
    with run_server_process() as server:
        yield server


def test_a_stalled_event_loop_does_not_inflate_the_round_trip(echo_process):
    kernel, on = echo_round_trips(echo_process.url, kernel_timestamps=True, burst=1, stall=STALL)
    read, off = echo_round_trips(echo_process.url, kernel_timestamps=False, burst=1, stall=STALL)
    print(f"round trip under a {STALL * 1000:.0f} ms stall: kernel {kernel[0]:.3f} ms, read time {read[0]:.3f} ms")
    assert read[0] >= STALL * 1000  # the read-time path shows the stall
    assert kernel[0] < TRUE_ROUND_TRIP_BOUND
    assert (on.timing.received_timed_by_kernel, on.timing.received_timed_at_read) == (2, 0)  # the 101 and the echo
    assert (off.timing.received_timed_by_kernel, off.timing.received_timed_at_read) == (0, 2)


def test_replies_in_flight_together_under_a_stall_share_the_last_arrival(echo_process):
    kernel, on = echo_round_trips(echo_process.url, kernel_timestamps=True, burst=5, stall=STALL)
    read, _ = echo_round_trips(echo_process.url, kernel_timestamps=False, burst=5, stall=STALL)
    print(f"5 in flight under a {STALL * 1000:.0f} ms stall: kernel {kernel} ms, read time {read} ms")
    assert min(read) >= STALL * 1000
    # One read, one stamp: the last segment's. Every echo arrived by then, so none is under-reported, and
    # the five arrived within the same fraction of a millisecond.
    assert max(kernel) < TRUE_ROUND_TRIP_BOUND
    assert on.timing.received_timed_at_read == 0


def test_replies_spread_over_a_stall_are_bounded_by_the_last_arrival(echo_process):
    """The edge: echoes that arrived at different times during one stall are read at once, with one stamp."""
    received: dict[str, float] = {}
    connection = Connection(parse_uri(echo_process.url), on_message=lambda m, at: received.__setitem__(m, at))
    connection.open(timeout=10)
    receiver = gevent.spawn(connection.receive_forever)
    try:
        first_sent = time.perf_counter()
        connection.send_text("first")
        busy_wait(0.010)
        last_sent = time.perf_counter()
        connection.send_text("last")
        busy_wait(STALL)
        read_after = time.perf_counter()
        wait_for(lambda: len(received) == 2, 10)
    finally:
        connection.close(timeout=2)
        receiver.kill()
    # The last echo is timed right; the first at the last one's arrival: late by the 10 ms between them, an
    # upper bound of its arrival, still earlier than the read.
    assert (received["last"] - last_sent) * 1000 < TRUE_ROUND_TRIP_BOUND
    assert received["first"] == received["last"] < read_after
    assert received["first"] - first_sent >= 0.010


def test_the_upgrade_response_is_timed_from_its_kernel_timestamp(echo_process):
    connection = Connection(parse_uri(echo_process.url), on_message=lambda m, at: None)
    started = time.perf_counter()
    connection.open(timeout=10)
    try:
        assert connection.opened_by_kernel and started < connection.opened_at < time.perf_counter()
        assert connection.timing.received_timed_by_kernel == 1
    finally:
        connection.abort()


def test_a_connection_with_timestamps_off_counts_its_fallbacks(server):
    received = []
    connection = Connection(parse_uri(server.url), on_message=lambda m, at: received.append(m), kernel_timestamps=False)
    connection.open(timeout=5)
    gevent.spawn(connection.receive_forever)
    connection.send_text("a")
    connection.send_ping(b"p")
    wait_for(lambda: received == ["a"] and connection.timing.received_timed_at_read == 3)
    connection.close()
    assert connection.timing.received_timed_by_kernel == 0  # the 101, the echo and the pong: all at read


# wss:// ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_echo_process(self_signed_cert):
    cert, key = self_signed_cert
    with run_server_process("--certfile", cert, "--keyfile", key) as server:
        assert server.url.startswith("wss://")
        yield server


def test_wss_runs_tls_in_memory_and_is_timed_from_kernel_timestamps(tls_echo_process):
    kernel, on = echo_round_trips(tls_echo_process.url, kernel_timestamps=True, burst=3, stall=STALL, verify_tls=False)
    read, off = echo_round_trips(tls_echo_process.url, kernel_timestamps=False, burst=3, stall=STALL, verify_tls=False)
    print(f"wss, 3 in flight under a {STALL * 1000:.0f} ms stall: kernel {kernel} ms, read time {read} ms")
    assert isinstance(on._stream, TlsStream) and not isinstance(off._stream, TlsStream)
    assert max(kernel) < TRUE_ROUND_TRIP_BOUND and min(read) >= STALL * 1000
    assert on.timing.received_timed_at_read == 0 and on.timing.received_timed_by_kernel == 4


def test_wss_keeps_records_in_order_across_greenlets_and_reads(tls_echo_process):
    """Large messages span TLS records and reads; writers in several greenlets, some not waiting, interleave."""
    received: list = []
    connection = Connection(
        parse_uri(tls_echo_process.url), on_message=lambda m, at: received.append(m), max_message_size=None
    )
    connection.open(timeout=10, verify_tls=False)
    receiver = gevent.spawn(connection.receive_forever)
    try:
        big = "x" * 300_000  # about 19 records; the socket buffer fills, the send waits half-way

        def writer(index: int) -> None:
            for round_ in range(20):
                connection.send_text(f"{index}-{round_}", block=round_ % 2 == 0)
                if round_ == 10:
                    connection.send_text(big)
                connection.send_ping(b"%d" % index)

        gevent.joinall([gevent.spawn(writer, index) for index in range(4)], raise_error=True)
        wait_for(lambda: len(received) == 4 * 21, 20)
        assert sorted(m for m in received if m != big) == sorted(f"{i}-{r}" for i in range(4) for r in range(20))
        assert received.count(big) == 4
        assert connection.closed is None
    finally:
        connection.close(timeout=2)
        receiver.kill()


# A Locust run -----------------------------------------------------------------------------------------

READ_TIME_LOCUSTFILE = """
from wslocust import WebSocketUser


class ReadTimeUser(WebSocketUser):
    kernel_timestamps = False
    message_interval = 0.1
"""


@pytest.mark.slow
@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "read-time"])
def test_the_results_block_names_the_clock_a_run_used(echo_process, tmp_path, kernel):
    from locust_process import run_locust

    locustfile = "locustfiles/echo.py"
    if not kernel:
        locustfile = str(tmp_path / "read_time.py")
        (tmp_path / "read_time.py").write_text(READ_TIME_LOCUSTFILE)
    result = run_locust(
        "-f", locustfile, "--headless", "-u", "5", "-r", "5", "-t", "3s", "--host", echo_process.url,
        "--ws-message-interval", "100",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    timing = [line for line in result.stderr.splitlines() if "  timing  " in line]
    if kernel:
        # The first connects of a process may come before Linux switched stamping on (then counted).
        assert len(timing) == 1 and "latency timed from kernel receive timestamps (SO_TIMESTAMPNS)" in timing[0]
    else:
        assert timing == [timing[0]] and timing[0].endswith(
            "latency timed from read time (no kernel receive timestamps)"
        )


def _close_notify_server(cert: str, key: str, accepted: list) -> gevent.server.StreamServer:
    """A wss:// server that answers the client's close frame and ends TLS (close_notify) in one write, then
    keeps TCP open, as asyncio's and nginx's TLS do until the peer's close_notify."""
    import base64
    import hashlib
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def handle(sock, _address) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)

        def pump() -> None:
            sock.sendall(outgoing.read())
            incoming.write(sock.recv(65536))

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                pump()
        sock.sendall(outgoing.read())
        received = b""
        while b"\r\n\r\n" not in received:
            try:
                received += tls.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
        client_key = received.split(b"Sec-WebSocket-Key: ")[1].split(b"\r\n")[0]
        accept = base64.b64encode(hashlib.sha1(client_key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        tls.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")  # fmt: skip
        sock.sendall(outgoing.read())
        frames = b""
        while not frames.startswith(b"\x88"):  # the client's (masked) close frame
            try:
                frames += tls.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
        tls.write(b"\x88\x02\x03\xe8")  # close 1000
        try:
            tls.unwrap()  # close_notify into the same write; the client's would come later
        except ssl.SSLWantReadError:
            pass
        sock.sendall(outgoing.read())
        accepted.append(sock)
        gevent.sleep(30)  # TCP stays open: the client must not wait for its end

    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server


def test_wss_close_ends_at_once_when_the_close_reply_and_close_notify_come_in_one_read(self_signed_cert):
    accepted: list = []
    server = _close_notify_server(*self_signed_cert, accepted)
    try:
        connection = Connection(parse_uri(f"wss://127.0.0.1:{server.server_port}/"), on_message=lambda m, at: None)
        connection.open(timeout=10, verify_tls=False)
        receiver = gevent.spawn(connection.receive_forever)
        started = time.perf_counter()
        connection.close(timeout=5)
        took = time.perf_counter() - started
        receiver.kill()
        assert accepted, "the server never saw the close frame"
        assert connection.closed is not None and connection.closed.code == 1000, connection.closed
        assert took < 1.0, f"close waited {took:.2f} s for a TCP end that the server leaves to the client"
    finally:
        server.stop(timeout=1)


def test_a_reply_whose_stamp_maps_before_its_send_is_timed_at_read_never_negative(server):
    # The map from kernel stamps (the wall clock) to perf_counter() is measured now and then; a wall clock
    # slewed or stepped since (a VM resumed from a snapshot did it here, in a 100,000-connection run) maps a
    # reply before its request left: a negative round trip, which crashed Locust's console printer. Here
    # the map is made wrong on purpose, by 50 ms, for the length of the test (no other way short of moving
    # the machine's clock).
    import locust
    from locust import constant, task
    from locust.env import Environment

    from wslocust import WebSocketUser
    from wslocust.run.state import run_state

    class Echoing(WebSocketUser):
        host = server.url
        wait_time = constant(0.01)
        ping_interval = 0.05

        @task
        def once(self):
            self.echo("x")

    clock = timestamps.shared_clock_map()
    clock.measure()
    saved = clock.offset, clock._next_refresh
    clock.offset += 0.05  # every stamp now maps 50 ms early
    clock._next_refresh = float("inf")
    environment = Environment(user_classes=[Echoing], events=locust.events)
    runner = environment.create_local_runner()
    try:
        runner.start(1, spawn_rate=10)
        wait_for(lambda: environment.stats.get("echo", "WS").num_requests >= 5
                 and environment.stats.get("ping", "WS").num_requests >= 2)  # fmt: skip
    finally:
        runner.quit()
        clock.offset, clock._next_refresh = saved
    for name in ("echo", "ping"):
        entry = environment.stats.get(name, "WS")
        assert entry.num_failures == 0 and entry.min_response_time >= 0, (name, entry.min_response_time)
    # The echoes and pongs moved to the read's count (the 101 stays the kernel's: it needs no send time).
    counters = run_state(environment).counters
    assert counters.received_timed_at_read >= 7, counters
