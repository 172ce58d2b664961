"""Sub-millisecond response-time buckets, and the console and CSV output that shows them."""

from __future__ import annotations

import csv
import io

import locust.stats
import pytest
from hypothesis import given
from hypothesis import strategies as st
from locust.stats import RequestStats, StatsCSV

from wslocust.formatting import format_ms
from wslocust.reporting import bucketing
from wslocust.reporting.bucketing import bucket_response_time


@pytest.fixture(scope="module", autouse=True)
def installed():
    bucketing.install()
    bucketing.install()  # idempotent
    assert locust.stats.bucket_response_time is bucket_response_time
    yield
    bucketing.uninstall()
    assert locust.stats.bucket_response_time(0.37) == 0


@pytest.mark.parametrize(
    "value, bucket",
    [
        (0, 0),
        (0.0004, 0.001),
        (0.05234, 0.052),
        (0.3712, 0.37),
        (0.999, 1.0),
        (4.16, 4.2),
        (9.94, 9.9),
        # Tenths from 10 to 100 ms: a 50 ms echo is known to 0.05 ms.
        (10.04, 10.0),
        (47.44, 47.4),
        (99.94, 99.9),
        # From 100 ms up, exactly Locust's buckets.
        (99.96, 100),
        (147, 150),
        (3432, 3400),
        (58760, 59000),
    ],
)
def test_two_significant_digits_below_10_ms_tenths_to_100_ms_and_locusts_buckets_above(value, bucket):
    assert bucket_response_time(value) == bucket


@given(st.floats(min_value=0.01, max_value=99.9))
def test_a_bucket_is_within_five_percent_of_the_value(value):
    assert abs(bucket_response_time(value) - value) <= 0.05 * value + 1e-12


@given(st.floats(min_value=0.001, max_value=0.01))
def test_below_ten_microseconds_a_bucket_is_within_half_a_microsecond(value):
    # one microsecond is the finest bucket: a 5.3 us response time is kept as 0.005 ms
    assert abs(bucket_response_time(value) - value) <= 0.0005 + 1e-12


@pytest.mark.parametrize(
    "value, text",
    [(None, "0"), (0, "0"), (0.37, "0.37"), (0.052, "0.052"), (4.2, "4.2"), (47.4, "47.4"), (150, "150"), (3400, "3400"),
     (-0.052, "-0.052")],  # never a round trip, but it must not kill the printer that shows it
)  # fmt: skip
def test_format_ms(value, text):
    assert format_ms(value) == text


def loopback_like_stats():
    stats = RequestStats()
    for response_time in [0.21, 0.33, 0.35, 0.37, 0.38, 0.41, 0.52, 0.9, 1.7, 12.0]:
        stats.log_request("WS", "echo", response_time, 64)
    return stats


def test_the_median_of_sub_millisecond_echoes_is_no_longer_0():
    entry = loopback_like_stats().get("echo", "WS")
    # Locust's percentile: the value that at least that share of the requests did not exceed.
    assert entry.median_response_time == 0.41
    assert entry.get_response_time_percentile(0.75) == 0.9


def test_console_tables_show_the_decimals_in_locusts_layout():
    stats = loopback_like_stats()
    line = stats.get("echo", "WS").to_string(current=False)
    # Avg, Min, Max, Med
    assert "|    1.7    0.21    12.0   0.41 |" in line
    percentiles = stats.get("echo", "WS").percentile()
    assert percentiles.split()[2:6] == ["0.41", "0.52", "0.90", "1.7"]  # 50, 66, 75, 80 %
    summary = "\n".join(locust.stats.get_stats_summary(stats, current=False))
    assert "0.41" in summary


def test_csv_percentiles_and_web_ui_min_keep_the_decimals():
    stats = loopback_like_stats()

    class Environment:
        pass

    environment = Environment()
    environment.stats = stats
    environment.runner = None
    out = io.StringIO()
    StatsCSV(environment, locust.stats.PERCENTILES_TO_REPORT).requests_csv(csv.writer(out))
    header, echo, _total = list(csv.reader(io.StringIO(out.getvalue())))
    row = dict(zip(header, echo))
    assert row["50%"] == "0.41" and row["Median Response Time"] == "0.41" and row["100%"] == "12.0"
    assert stats.get("echo", "WS").to_dict()["min_response_time"] == 0.21
