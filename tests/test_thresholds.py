"""--ws-thresholds: parsing, evaluation against Locust's statistics and the run's figures, the table."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from locust.stats import RequestStats

from wslocust.exceptions import ConfigurationError
from wslocust.reporting import bucketing
from wslocust.reporting.thresholds import EXIT_CODE, SUITE, evaluate, format_table, parse_thresholds
from wslocust.run.state import run_state


@pytest.fixture(scope="module", autouse=True)
def fine_buckets():
    bucketing.install()  # as in a real run: sub-millisecond percentiles
    yield
    bucketing.uninstall()


def test_the_expressions_of_the_issue_parse_into_base_units():
    parsed = parse_thresholds("echo.p95<100ms, connect.p99<500ms, error_rate<0.1%, cpu_per_1k<5%")
    assert [(t.name, t.metric, t.percentile, t.operator, t.limit) for t in parsed] == [
        ("echo", "p95", 0.95, "<", 100.0),
        ("connect", "p99", 0.99, "<", 500.0),
        (None, "error_rate", None, "<", 0.001),
        (None, "cpu_per_1k", None, "<", 5.0),
    ]


@pytest.mark.parametrize(
    "text, limit",
    [
        ("echo.p99.9 <= 2s", 2000.0),
        ("my.request.name.p(95) < 250us", 0.25),  # dots in the name; k6's p(95)
        ("echo.avg<0.5", 0.5),
        ("echo.fail_rate < 1%", 0.01),
        ("ping.count >= 10", 10.0),
        ("msg_rate > 100k", 100_000.0),
        ("mem_per_10k < 2GB", 2e9),
        ("mem_per_10k < 512MiB", 512 * 2**20),
        ("peak_open >= 10000", 10_000.0),
    ],
)
def test_units_names_and_operators(text, limit):
    (threshold,) = parse_thresholds(text)
    assert threshold.limit == pytest.approx(limit)


def test_suite_is_the_original_suites_targets_and_combines_with_more():
    parsed = parse_thresholds("suite, msg_rate>100000")
    assert [t.text for t in parsed] == [t.text for t in parse_thresholds(SUITE)] + ["msg_rate > 100000"]
    assert [t.text for t in parsed][:4] == [
        "echo.p95 < 100ms",
        "error_rate < 0.1%",
        "cpu_per_1k < 5%",
        "mem_per_10k < 2GB",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("echo.p95 100ms", "'echo.p95 100ms' is not METRIC<VALUE (operators <, <=, >, >="),
        ("echo.p95<100apples", "'echo.p95<100apples': unit 'apples' does not fit echo.p95 (use ms, s or us)"),
        ("foo<1", "'foo<1': unknown metric 'foo'"),
        ("echo.p150<1ms", "percentile 150 is not between 0 and 100"),
        ("echo.mean<1ms", "unknown statistic 'mean' of 'echo'"),
        ("error_rate<5ms", "unit 'ms' does not fit error_rate (use % or a fraction)"),
        (" , ", "has no threshold"),
    ],
)
def test_a_malformed_expression_is_one_clear_line(text, message):
    with pytest.raises(ConfigurationError) as caught:
        parse_thresholds(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def environment_with(run_summary: dict | None = None) -> SimpleNamespace:
    stats = RequestStats()
    for response_time in [0.4] * 90 + [3.0] * 9 + [40.0]:
        stats.log_request("WS", "echo", response_time, 64)
    for _ in range(10):
        stats.log_request("WS", "connect", 12.0, 0)
    stats.log_error("WS", "connect", "refused")
    summary = {"cpu_per_1k": 3.5, "mem_per_10k": 1.5e9, "peak_open": 10, "msg_rate": 950.0, "cpu_max": 40.0}
    summary.update(run_summary or {})
    environment = SimpleNamespace(stats=stats, runner=SimpleNamespace(stats=stats))
    run_state(environment).live = SimpleNamespace(run_summary=lambda: summary)
    return environment


def test_evaluation_uses_locusts_statistics_and_the_runs_figures():
    environment = environment_with()
    thresholds = parse_thresholds("echo.p50<1ms, echo.p98<10ms, echo.max<=40ms, error_rate<1%, cpu_per_1k<5%")
    results = evaluate(thresholds, environment)
    assert [(r.threshold.text, r.value, r.ok) for r in results] == [
        ("echo.p50 < 1ms", 0.4, True),
        ("echo.p98 < 10ms", 3.0, True),
        ("echo.max <= 40ms", 40.0, True),
        ("error_rate < 1%", pytest.approx(1 / 110), True),
        ("cpu_per_1k < 5%", 3.5, True),
    ]
    failing = evaluate(parse_thresholds("echo.p99.5<10ms, error_rate<0.5%, mem_per_10k<1GB"), environment)
    assert [r.ok for r in failing] == [False, False, False]


def test_a_threshold_without_data_fails():
    environment = environment_with({"cpu_per_1k": None})
    results = evaluate(parse_thresholds("nothing.p95<1s, cpu_per_1k<5%, peak_open>=1"), environment)
    assert [(r.value, r.ok) for r in results] == [(None, False), (None, False), (10.0, True)]


def test_the_table_lists_each_threshold_its_value_and_the_verdict():
    environment = environment_with()
    results = evaluate(parse_thresholds("echo.p95<100ms, cpu_per_1k<1%, nothing.avg<1ms"), environment)
    table = format_table(results)
    assert [line.split() for line in table[3:6]] == [
        ["echo.p95", "<", "100ms", "3.0", "ms", "pass"],
        ["cpu_per_1k", "<", "1%", "3.5", "%", "FAIL"],
        ["nothing.avg", "<", "1ms", "no", "data", "FAIL"],
    ]
    table = "\n".join(table)
    assert f"2 of 3 thresholds failed (exit code {EXIT_CODE})" in table
