"""
Smoke tests of the benchmark suite's entry point (``python -m benchmarks``),
with tiny durations: every workload it runs here starts its real server and
generators, prints its table and RESULT lines, and leaves no child behind,
also when stopped with SIGTERM half-way.

The reference server is the target, so that the tests do not need Node.js.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from helpers import REPO_ROOT, wait_for

pytestmark = pytest.mark.slow


def run_benchmarks(*args: str, timeout: float = 90.0) -> tuple[subprocess.CompletedProcess[str], list[dict]]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        check=False,  # the tests assert the exit code with the output in the message
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    results = [
        json.loads(line[len("RESULT ") :]) for line in completed.stdout.splitlines() if line.startswith("RESULT ")
    ]
    return completed, results


def logged_pids(logs: Path) -> list[int]:
    """The pids of the children the entry point started, from the names of the logs it kept."""
    return [int(re.search(r"-(\d+)\.log$", path.name).group(1)) for path in logs.glob("*.log")]


def assert_all_gone(pids: list[int]) -> None:
    alive = [pid for pid in pids if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"children still running: {alive}"


def test_throughput_counts_what_the_server_echoed_and_stops_every_child(tmp_path):
    completed, results = run_benchmarks(
        "throughput", "--server", "reference", "--duration", "1", "--warmup", "0.2", "--connections", "5",
        "--variants", "websocket-client,wslocust-user", "--logs", str(tmp_path),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "msgs/gen CPU-s" in completed.stdout
    assert [r["variant"] for r in results] == ["websocket-client", "wslocust-user"]
    for result in results:
        assert result["workload"] == "throughput"
        assert result["server_messages"] > 0
        assert result["generator_cpu_s"] > 0
        # Closed loop: one message per connection in flight at each edge of the window, plus those
        # echoed between reading the generator's counts and the server's (a few milliseconds).
        assert abs(result["server_messages"] - result["generator_echoes"]) <= 2 * 5 + result["server_messages"] // 50
        assert result["efficiency_vs_websocket_client"] is not None
    pids = logged_pids(tmp_path)
    assert len(pids) == 3  # the server and two generators
    assert_all_gone(pids)


def test_hold_reports_memory_per_connection_for_both_users(tmp_path):
    completed, results = run_benchmarks(
        "hold-10k", "--connections", "20", "--spawn-rate", "20", "--interval", "0.5", "--settle", "0.5",
        "--hold", "1.5", "--logs", str(tmp_path),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert {r["variant"] for r in results} == {"wslocust-user", "locust-websocket-client"}
    for result in results:
        assert result["connections_open"] == 20
        assert result["connects_failed"] == 0
        assert 0 < result["generator_idle_rss"] <= result["generator_peak_rss"]
        # 20 connections x 1 echo / 0.5 s = 40/s; the window is short, so allow for the phases.
        assert result["server_messages"] > 0
        assert abs(result["server_messages"] - result["generator_echoes"]) <= 20
    assert_all_gone(logged_pids(tmp_path))


def test_hold_50k_checks_what_it_held_against_the_servers(tmp_path):
    completed, results = run_benchmarks(
        "hold-50k", "--connections", "40", "--spawn-rate", "40", "--hold", "2", "--workers", "2", "--servers", "2",
        "--message-interval", "500", "--logs", str(tmp_path),
        timeout=150,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "peak_rss_mb_per_worker" in completed.stdout
    (result,) = results
    assert result["peak_open"] == result["held_min"] == 40
    assert result["connects"] == result["server_connections_accepted"] == 40
    assert set(result["peak_rss_mb_per_worker"]) == {"worker 0", "worker 1"}
    assert result["echoes"] > 0
    assert result["connect_failures"] == result["echo_failures"] == 0
    # Every echo the users counted was sent by a server; at most one per connection was in flight at stop.
    assert 0 <= result["server_messages_sent"] - result["echoes"] <= 40
    # A 1 s ramp sampled once a second: measured (over 0 s) or not measured, never 0.0 s or NaN.
    assert result["ramp_seconds"] is None or result["ramp_seconds"] > 0
    assert (result["ramp_seconds"] is None) == (result["cpu_percent_workers_ramp"] is None)
    assert "NaN" not in completed.stdout
    assert_all_gone(logged_pids(tmp_path))


def test_sigterm_stops_every_child_and_exits_130(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "hold-10k", "--connections", "10", "--spawn-rate", "10",
         "--hold", "120", "--variants", "wslocust-user", "--logs", str(tmp_path)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        parent = psutil.Process(process.pid)

        def generator_running() -> list[psutil.Process]:
            children = parent.children()
            # The Locust process itself ("... -m locust -f ..."), not "-m wslocust serve".
            return children if any(" -m locust " in " ".join(c.cmdline()) for c in children) else []

        children = wait_for(generator_running, timeout=60, interval=0.1, message="a Locust generator started")
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(60) == 130
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert_all_gone([child.pid for child in children])
    assert len(logged_pids(tmp_path)) == len(children)


NODE_WS = REPO_ROOT / "benchmarks" / ".node" / "node_modules" / "ws" / "package.json"
needs_node = pytest.mark.skipif(
    shutil.which("node") is None or not NODE_WS.exists(),
    reason="latency-error needs Node.js and the ws package (python -m benchmarks latency-error installs it)",
)


@needs_node
def test_latency_error_runs_every_variant_beside_the_typical_user_and_joins_each_message(tmp_path):
    completed, results = run_benchmarks(
        "latency-error", "--connections", "4", "--interval", "0.5", "--duration", "3", "--hold-ms", "5",
        "--logs", str(tmp_path),
        timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "msg err p50/95/99" in completed.stdout and "CPU us/echo" in completed.stdout
    rows = {(r["variant"], r["generator"]): r for r in results}
    variants = ("task", "periodic", "request", "workers", "loaded")
    assert set(rows) == {(v, g) for v in variants for g in ("wslocust", "typical")}
    for (variant, generator), result in rows.items():
        assert "error" not in result, (variant, generator, result.get("error"))
        assert result["requests"] > 0 and result["failures"] == 0
        # Every timed reply is found on the server by (client port, number on its connection).
        assert result["joined"] == result["requests"] and result["unjoined"] == 0, (variant, generator)
        assert result["message_error_p50_ms"] is not None and result["message_error_p50_ms"] > -0.5
        # CPU per echo over the window (psutil counts whole 10 ms ticks: 0 is possible at this size).
        assert result["window_echoes"] > 0 and result["cpu_us_per_echo"] is not None
        assert 0 < result["phase_share"] <= 1
        # wslocust's processes report their counters (sends_late among them); the plain user has none.
        assert (result["sends_late"] is not None) == (generator == "wslocust")
    assert "target (loaded)" in completed.stdout
    assert_all_gone(logged_pids(tmp_path))


@needs_node
def test_latency_error_control_spreads_the_typical_users_sends_as_wslocust_does(tmp_path):
    # The typical user's tasks leave together (Locust starts a spawn burst's tasks at once); the control's
    # are spread over the interval, so that CPU per echo is compared at the same spread.
    completed, results = run_benchmarks(
        "latency-error", "--connections", "8", "--interval", "0.5", "--duration", "3", "--hold-ms", "5",
        "--variants", "task", "--generators", "wslocust,typical,typical-spread", "--logs", str(tmp_path),
        timeout=180,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {r["generator"]: r for r in results}
    assert set(rows) == {"wslocust", "typical", "typical-spread"}
    assert all("error" not in row and row["requests"] > 0 for row in rows.values()), rows
    assert rows["typical-spread"]["phase_share"] < rows["typical"]["phase_share"]
    assert "cpu_vs_typical_spread" in rows["wslocust"]
    assert "typical with its sends spread as wslocust's" in completed.stdout
    assert_all_gone(logged_pids(tmp_path))


@needs_node
def test_latency_error_profile_prints_where_the_generator_spends_its_time(tmp_path):
    completed, results = run_benchmarks(
        "latency-error", "--connections", "2", "--interval", "0.5", "--duration", "3", "--hold-ms", "5",
        "--variants", "task", "--generators", "wslocust", "--profile", str(tmp_path),
        timeout=120,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "own CPU by area" in completed.stdout
    assert "wslocust/user" in completed.stdout
    (result,) = results
    assert result["profiles"] and all(Path(path).exists() for path in result["profiles"])


@needs_node
def test_compression_measures_both_sides_with_and_without_deflate(tmp_path):
    completed, results = run_benchmarks(
        "compression", "--connections", "4", "--duration", "1", "--warmup", "0.5", "--hold-connections", "20",
        "--interval", "0.5", "--hold", "2", "--logs", str(tmp_path),
        timeout=240,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = {(r["variant"], r["part"]): r for r in results}
    assert set(rows) == {(v, p) for v in ("wslocust-user", "wslocust-user-deflate") for p in ("closed loop", "hold")}
    for key, result in rows.items():
        assert "error" not in result, (key, result.get("error"))
        assert result["server_messages"] > 0 and result["generator_failures"] == 0, key
    # The deflating generator said what it negotiated: its results have the compression line.
    outputs = "".join(path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file())
    assert "compression  permessage-deflate on" in outputs
    assert_all_gone(logged_pids(tmp_path))


def test_codec_runs_the_same_user_with_each_library_framing_its_messages(tmp_path):
    completed, results = run_benchmarks(
        "codec", "--server", "reference", "--connections", "4", "--duration", "1", "--warmup", "0.3",
        "--rounds", "1", "--sizes", "64", "--logs", str(tmp_path),
        timeout=240,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    runs = {(r["variant"], r["size"]): r for r in results}
    assert set(runs) == {(codec, 64) for codec in ("wslocust", "websockets", "wsproto")}
    for key, result in runs.items():
        assert "error" not in result, (key, result.get("error"))
        assert result["server_messages"] > 0 and result["generator_failures"] == 0, key
        assert abs(result["server_messages"] - result["generator_echoes"]) <= 2 * 4 + result["server_messages"] // 50
        if key[0] != "wslocust":
            assert result["vs_wslocust"] is not None and result["us_per_echo_vs_wslocust"] is not None, key
    # Each generator said which library framed its connections: the swap took.
    outputs = "".join(path.read_text(errors="replace") for path in tmp_path.rglob("*") if path.is_file())
    assert outputs.count("frames and parses with WebsocketsProtocol (websockets)") == 1
    assert outputs.count("frames and parses with WsprotoProtocol (wsproto)") == 1
    assert "the codec inside the full user path (medians of the per-round ratios):" in completed.stdout
    assert_all_gone(logged_pids(tmp_path))


# The peers workload (issue 15): Tsung's and Artillery's configurations, and a missing peer skipped.


def test_tsung_config_is_valid_xml_aimed_at_the_loopback_server():
    from xml.etree import ElementTree

    from benchmarks.peers import tsung

    closed = ElementTree.fromstring(tsung.config("closed-loop", "ws://127.0.0.1:4321/ws", 100, size=64))
    (server,) = closed.iter("server")
    assert (server.get("host"), server.get("port"), server.get("type")) == ("127.0.0.1", "4321", "tcp")
    assert closed.find("clients/client").get("use_controller_vm") == "true"  # no node started over ssh
    assert int(closed.find("load").get("duration")) > 0  # bounded
    assert closed.find("load/arrivalphase/users").get("maxnumber") == "100"
    connect, message = closed.iter("websocket")
    assert (connect.get("type"), connect.get("path")) == ("connect", "/ws")
    # The default ack (parse): each request waits for its echo, so the loop is closed.
    assert message.get("type") == "message" and message.get("ack") is None and message.text == "x" * 64
    assert not list(closed.iter("thinktime"))
    periodic = ElementTree.fromstring(tsung.config("periodic", "ws://127.0.0.1:4321/", 10_000, interval=5))
    (think,) = periodic.iter("thinktime")
    assert (think.get("value"), think.get("random")) == ("5", "false")
    with pytest.raises(ValueError, match="loopback"):
        tsung.config("closed-loop", "ws://10.0.0.1:4321/", 1)


def test_artillery_config_is_yaml_for_the_ws_engine_aimed_at_the_loopback_server():
    import yaml

    from benchmarks.peers import artillery

    script = yaml.safe_load(artillery.config("closed-loop", "ws://127.0.0.1:4321/", 100, size=64))
    assert script["config"]["target"] == "ws://127.0.0.1:4321/"
    assert script["config"]["phases"] == [{"duration": 1, "arrivalCount": 100}]
    (scenario,) = script["scenarios"]
    assert scenario["engine"] == "ws"
    (loop,) = scenario["flow"]
    # send + capture: the step ends when the echo arrives (a plain send would not wait for it).
    assert loop["loop"] == [{"send": {"payload": "x" * 64, "capture": {"regexp": "^x", "as": "echo"}}}]
    periodic = yaml.safe_load(artillery.config("periodic", "ws://127.0.0.1:4321/", 10_000, interval=0.5))
    think, send = periodic["scenarios"][0]["flow"][0]["loop"]
    assert think == {"think": "500ms"} and "send" in send  # not 0.5, which Artillery reads as ms
    assert periodic["config"]["phases"] == [{"duration": 10, "arrivalCount": 10_000}]
    with pytest.raises(ValueError, match="loopback"):
        artillery.config("closed-loop", "ws://192.168.1.1:4321/", 1)


def test_a_missing_peer_is_skipped_with_one_line(tmp_path, monkeypatch, capsys):
    from benchmarks.workloads import peers

    # No tsung on the PATH, no Artillery in its cache directory.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("WSLOCUST_BENCH_PEERS", str(tmp_path))
    chosen = peers.available_variants(["wslocust-user", "tsung", "artillery", "lean-loop"], install=False)
    assert chosen == ["wslocust-user", "lean-loop"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "tsung is not installed" in lines[0] and lines[0].endswith("skipped")
    assert "artillery is not installed" in lines[1] and lines[1].endswith("skipped")


def test_peers_runs_the_tools_it_has_side_by_side_and_skips_a_missing_one(tmp_path):
    environment = {**os.environ, "WSLOCUST_BENCH_PEERS": str(tmp_path / "none")}  # no Artillery there
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "peers", "--parts", "throughput", "--rounds", "1", "--duration", "1",
         "--warmup", "0.2", "--connections", "5", "--variants", "wslocust-user,artillery,lean-loop",
         "--logs", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, env=environment, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stderr.count("artillery is not installed") == 1
    results = [json.loads(line[7:]) for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert [r["variant"] for r in results] == ["wslocust-user", "lean-loop"]
    for result in results:
        assert result["server_messages"] > 0 and result["msgs_per_generator_cpu_s"] > 0
        assert result["vs_lean_loop"] is not None
    assert "x lean loop" in completed.stdout and "target 2:" in completed.stdout
    assert_all_gone(logged_pids(tmp_path))


def _throughput_rows(user_rate: float, tsung_rate: float, lean_rate: float) -> list[dict]:
    return [
        {"variant": "wslocust-user", "msgs_per_generator_cpu_s": user_rate, "vs_best_peer": round(user_rate / tsung_rate, 2),
         "vs_lean_loop": round(user_rate / lean_rate, 2), "generator_system_us_per_msg": 12.0},
        {"variant": "tsung", "msgs_per_generator_cpu_s": tsung_rate},
        {"variant": "lean-loop", "msgs_per_generator_cpu_s": lean_rate, "generator_system_us_per_msg": 9.0},
    ]  # fmt: skip


def test_a_missed_throughput_target_comes_with_what_it_allows_per_echo_and_what_would_close_it():
    from benchmarks.workloads import peers

    # 50 us per echo against Tsung's 40 and the lean loop's 20: the lean loop's target (20 / 0.85 = 23.5 us) is the
    # tighter one; the 30 us wslocust adds would have to fit in 3.5.
    verdict = peers._verdict("throughput", _throughput_rows(20_000, 25_000, 50_000), {"wslocust-user": "Locust 40%"})
    assert "target 2: wslocust-user x0.80 the best peer" in verdict and "MISSED" in verdict
    assert (
        "50.0 us of generator CPU per echo (12.0 in the kernel); x0.85 the lean loop allows 23.5 us (tsung 40.0 us)"
        in verdict
    )
    assert "takes 20.0 us of them (9.0 in the kernel)" in verdict
    assert "takes 30.0 us here and would have to fit in 3.5 us" in verdict
    assert "cut by 88%" in verdict
    assert (
        "where wslocust-user's time goes (py-spy, own time with the C and system calls each function makes, the idle event loop left out): Locust 40%"
        in verdict
    )
    without_profile = peers._verdict("throughput", _throughput_rows(20_000, 25_000, 50_000))
    assert "where wslocust-user's time goes: --profile DIR (py-spy)" in without_profile

    met = peers._verdict("throughput", _throughput_rows(40_000, 25_000, 45_000))
    assert met.count("met") == 2 and "MISSED" not in met and "allows" not in met and "would close" not in met


def test_a_task_loop_that_misses_while_the_task_less_loop_meets_names_the_task_loop_as_the_gap():
    from benchmarks.workloads import peers

    window = {"variant": "wslocust-window", "msgs_per_generator_cpu_s": 44_000, "vs_best_peer": 1.76,
              "vs_lean_loop": 0.88, "generator_system_us_per_msg": 10.0}  # fmt: skip
    verdict = peers._verdict("throughput", [*_throughput_rows(20_000, 25_000, 50_000), window])
    assert "target 2: wslocust-window x1.76 the best peer" in verdict
    [user_part] = [part for part in verdict.split("\ntarget 2: ") if part.startswith("wslocust-user")]
    assert "MISSED" in user_part
    assert (
        "without a task (wslocust-window, in_flight = 1) met both targets in this run, at 22.7 us per echo" in user_part
    )
    assert "the other 27.3 us are what a task costs: Locust's task loop" in user_part
    # A window that missed too is no answer: the generic one is given.
    window.update(vs_lean_loop=0.80)
    missed = peers._verdict("throughput", [*_throughput_rows(20_000, 25_000, 50_000), window])
    assert "met both targets" not in missed and "the reply's matching" in missed


def test_a_missed_memory_target_comes_with_the_memory_per_connection_it_allows():
    from benchmarks.workloads import peers

    mib = 2**20
    rows = [
        {"variant": "wslocust-user", "generator_peak_rss": 228 * mib, "generator_idle_rss": 50 * mib,
         "connections_open": 10_000, "generator_cpu_share": 0.2, "server_msgs_per_s": 2000.0,
         "msgs_per_generator_cpu_s": 10_000.0, "generator_system_us_per_msg": 30.0,
         "cpu_vs_cheapest_peer": 1.0, "server_cpu_vs_lowest_peer": 0.9},
        {"variant": "tsung", "generator_peak_rss": 388 * mib, "generator_cpu_share": 0.2, "server_msgs_per_s": 2000.0,
         "msgs_per_generator_cpu_s": 10_000.0, "server_cpu_us_per_msg": 50.0},
    ]  # fmt: skip
    verdict = peers._verdict("hold", rows, {}, greenlet_floor=8_477.0)
    assert "peak RSS 228 MB (target <= 150 MB): MISSED" in verdict
    # (228 - 50) MiB over 10,000 connections; (150 - 50) MiB allowed.
    assert "50 MB before the first connection + 18.2 KB per connection at the peak; 150 MB allows 10.2 KB" in verdict
    assert "a blocked gevent greenlet keeps 8.3 KB" in verdict
    # Hold CPU x1.0 the cheapest: 100 us per echo, 80 allowed.
    assert (
        "hold CPU: 100 us of generator CPU per echo (30.0 in the kernel), tsung 100 us: x0.8 allows 80 us, 20 us less per echo"
        in verdict
    )
    assert "server CPU per echo x0.90 the lowest peer's (target <= 1.0): met" in verdict

    # The server paid more for wslocust's traffic: how its rounds compare with the lowest peer's says if it is noise.
    rows[0].update(server_cpu_vs_lowest_peer=1.2, server_wakeups_per_msg=0.1)
    rows[1].update(server_wakeups_per_msg=0.3)
    rounds = [{"variant": "wslocust-user", "server_cpu_us_per_msg": us} for us in (62.0, 53.0, 55.0)]
    rounds += [{"variant": "tsung", "server_cpu_us_per_msg": us} for us in (44.0, 50.0, 47.0)]
    verdict = peers._verdict("hold", rows, {}, None, rounds)
    assert "woke 0.10 times per echo for wslocust-user, 0.30 for tsung: not more often" in verdict
    assert "53.0-62.0 us for wslocust-user, 44.0-50.0 us for tsung: apart in every round" in verdict
    rounds[-1]["server_cpu_us_per_msg"] = 58.0
    assert "44.0-58.0 us for tsung: the ranges overlap" in peers._verdict("hold", rows, {}, None, rounds)

    rows[0].update(generator_peak_rss=140 * mib, cpu_vs_cheapest_peer=0.7, server_cpu_vs_lowest_peer=0.9)
    met = peers._verdict("hold", rows, {}, greenlet_floor=None)
    assert "MISSED" not in met and "per connection" not in met and "us less" not in met


def test_a_profile_is_summed_per_layer_of_wslocust_with_the_idle_event_loop_left_out():
    from benchmarks.profiling import describe_layers, layer_shares

    root = REPO_ROOT  # wherever the clone is: its path is left out
    collapsed = "\n".join([
        "process 1;run (locust/main.py:1);Hub.run (/venv/lib/python3.11/site-packages/gevent/hub.py:631) 500",
        f"process 1;_write ({root}/wslocust/transport/writing.py:43) 40",
        f"process 1;feed ({root}/wslocust/codec/frames.py:422) 10",
        f"process 1;_on_message ({root}/wslocust/user/messaging.py:205) 20",
        f"process 1;bucket ({root}/wslocust/reporting/bucketing.py:46) 5",
        "process 1;log (/venv/lib/python3.11/site-packages/locust/stats.py:370) 15",
        "process 1;switch (/venv/lib/python3.11/site-packages/gevent/_hub_primitives.py:1) 5",
        f"process 1;echo_once ({root}/benchmarks/locustfiles/wslocust_users.py:70) 5",
        "not a stack line",
    ])  # fmt: skip
    shares = dict(layer_shares(collapsed))
    assert shares == {
        "sockets and frames (system calls included)": 0.4, "wslocust's user": 0.2, "Locust": 0.15, "codec": 0.1,
        "wslocust's statistics and run": 0.05, "gevent": 0.05, "other": 0.05,
    }  # fmt: skip
    assert describe_layers(layer_shares(collapsed)).startswith("sockets and frames (system calls included) 40%, ")
    assert describe_layers([]) == "no samples"


def test_the_greenlet_floor_is_measured_in_a_process_of_its_own():
    from benchmarks.measure import Context
    from benchmarks.processes import plan_pinning
    from benchmarks.workloads import peers

    floor = peers._greenlet_floor(Context(plan_pinning(), Path("/nonexistent")))
    # A suspended greenlet keeps at least its greenlet objects and a slice of the C stack; never a page per byte.
    assert floor is not None and 1_000 < floor < 64_000


def test_the_cost_of_recording_a_request_is_printed_for_both_paths_and_both_buckets():
    completed = subprocess.run(
        [sys.executable, "benchmarks/request_log_cost.py", "--requests", "1000", "--repeat", "1"],
        check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    lines = [line for line in completed.stdout.splitlines() if "events.request" in line]
    assert [line.split(":")[0].strip() for line in lines] == ["locust buckets", "wslocust buckets"]
    assert all(re.search(r"events\.request \d+\.\d\d, RequestLog \d+\.\d\d \(x\d+\.\d\d", line) for line in lines)
