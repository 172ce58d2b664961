"""
The WebSocket dashboard (charts of a run over time, ``/ws/dashboard`` and ``/ws/series``) and the
WebSocket section of Locust's ``--html`` report.

The series alone (bounded memory, columns that come and go, errors per second) are tested without
I/O. Then real runs against the reference server: the report's figures against the run's results
block and the server's counts; the report's charts drawn offline in headless Chromium; the live
dashboard in Chromium during a run, reached from the WebSocket tab, its last points against
``/ws/stats``. The browser tests need Debian's ``chromium`` and ``playwright`` (as in
``tests/test_browser.py``). ``WSLOCUST_SCREENSHOTS=docs/images`` also saves the dashboard's screenshot
there (the README shows it).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from html.parser import HTMLParser

import pytest
from helpers import REPO_ROOT, run_server_process, wait_for
from locust_process import LocustProcess, run_locust
from test_browser import CHROMIUM, CHROMIUM_ARGS, _require_browser

from wslocust import locust_compat
from wslocust.formatting import format_ms
from wslocust.locust_compat import pages
from wslocust.reporting.series import CHARTS, Series, points_of

# The series, without I/O ---------------------------------------------------------------------------


def _snapshot(t: float, open_: int = 3, errors: dict[str, int] | None = None, workers: int = 1) -> dict:
    system = {"cpu": 12.5, "rss": 50_000_000, "loop_lag": {"recent_p99": 0.4}}
    return {
        "time": t,
        "state": "running",
        "run_time": t - 1000,
        "aggregate": {
            "users": open_,
            "connections": {"open": open_, "connecting": 0, "reconnecting": 1, "failed": 0, "closed": 0},
            "rates": {"messages_sent": 30.0, "messages_received": 29.5},
            "round_trip": {"p50": 1.5, "p95": 3.0, "p99": 4.0},
            "errors": errors or {},
        },
        "workers": [{"name": f"worker {n}", "state": "running", "system": system} for n in range(1, workers + 1)],
        "hosts": [{"host": "box", "cpu": 40.0, "memory": 31.5}],
        "master": None,
    }


def test_a_point_holds_every_charted_figure_under_its_charts_key():
    point = points_of(_snapshot(1000.0, workers=2))
    assert point["connections/open"] == 3 and point["connections/reconnecting"] == 1
    assert point["messages/sent"] == 30.0 and point["messages/received"] == 29.5
    assert [point[f"round_trip/{p}"] for p in ("p50", "p95", "p99")] == [1.5, 3.0, 4.0]
    assert point["cpu/worker 2"] == 12.5 and point["memory/worker 1"] == 50.0 and point["loop_lag/worker 2"] == 0.4
    assert point["host_cpu/box"] == 40.0 and point["host_memory/box"] == 31.5
    assert {key.partition("/")[0] for key in point} <= {chart["key"] for chart in CHARTS}


def test_the_history_is_bounded_and_keeps_the_latest_points():
    series = Series(history=100)
    for second in range(1000):
        series.record(_snapshot(1000.0 + second))
    assert 100 <= len(series.times) <= 160
    assert series.times[-1] == 1999.0
    assert all(len(values) == len(series.times) for values in series.columns.values())
    data = series.as_dict()
    assert data["t"][-1] == 1999.0 and len(data["columns"]["connections/open"]) == len(data["t"])


def test_a_column_that_comes_later_or_goes_is_none_where_it_had_no_figure():
    series = Series(history=100)
    series.record(_snapshot(1000.0, workers=1))
    series.record(_snapshot(1001.0, workers=2))
    series.record(_snapshot(1002.0, workers=1))
    assert series.as_dict()["columns"]["cpu/worker 2"] == [None, 12.5, None]
    for second in range(3, 200):  # worker 2 is gone for longer than the history: its column goes
        series.record(_snapshot(1000.0 + second, workers=1))
    assert "cpu/worker 2" not in series.columns and "cpu/worker 1" in series.columns


def test_errors_are_charted_per_second_by_category_and_never_negative():
    series = Series()
    series.record(_snapshot(1000.0))
    series.record(_snapshot(1002.0, errors={"timeout": 10}))
    series.record(_snapshot(1003.0, errors={"timeout": 13, "closed_1011": 1}))
    series.record(_snapshot(1004.0, errors={"timeout": 2}))  # Reset Stats
    columns = series.as_dict()["columns"]
    assert columns["errors/timeout"] == [None, 5.0, 3.0, 0.0]
    assert columns["errors/closed by server with code 1011"] == [None, None, 1.0, 0.0]
    assert series.latest["error_totals"] == {"timeout": 2}


def test_a_page_asks_only_for_the_points_after_its_last_and_sees_a_new_run():
    series = Series()
    for second in range(5):
        series.record(_snapshot(1000.0 + second))
    later = series.as_dict(since=1002.0)
    assert later["t"] == [1003.0, 1004.0] and later["columns"]["connections/open"] == [3, 3]
    assert series.as_dict(since=1004.0)["t"] == []
    run = later["run"]
    series.clear()
    assert series.as_dict()["t"] == [] and series.as_dict()["run"] == run + 1


def test_columns_are_bounded_too():
    series = Series(max_columns=5)
    series.record(_snapshot(1000.0, workers=20))
    assert len(series.columns) == 5
    assert list(series.columns)[:4] == [f"connections/{s}" for s in ("open", "connecting", "reconnecting", "failed")]


# The --html report ----------------------------------------------------------------------------------------


@pytest.fixture
def report_users(monkeypatch):
    """Locust's own get_html_report in the modules that call it, put back after the test; Locust's page a stub."""
    for name in ("locust.html", "locust.main", "locust.web"):
        monkeypatch.setattr(f"{name}.get_html_report", locust_compat.locust_get_html_report)
    page = "<html><body><div id='root'></div></body></html>"
    monkeypatch.setattr(pages, "locust_get_html_report", lambda environment, **_: page)
    return page


def test_the_section_goes_into_the_report_of_its_environment_only(report_users):
    import locust.main
    import locust.web

    mine = object()
    locust_compat.extend_html_report(lambda env: "<section>ws</section>" if env is mine else "")
    assert locust.main.get_html_report(mine) == "<html><body><div id='root'></div><section>ws</section></body></html>"
    assert locust.web.get_html_report(object(), show_download_link=False) == report_users


def test_a_section_that_fails_leaves_locusts_report_and_logs_why(report_users, caplog):
    import locust.main

    def broken(environment):
        raise KeyError("round_trip")

    locust_compat.extend_html_report(broken)
    assert locust.main.get_html_report(object()) == report_users
    assert "the WebSocket section of the HTML report failed; the report has none" in caplog.text


class _Figures(HTMLParser):
    """Every ``data-ws`` cell of the WebSocket section: name -> raw value."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if "data-ws" in values:
            self.figures[values["data-ws"]] = values.get("data-value") or ""


_RESULTS = re.compile(
    r"connections +peak (?P<peak_open>[\d,]+) open; (?P<connects_succeeded>[\d,]+) connects "
    r"\((?P<connects_failed>[\d,]+) failed attempts?, (?P<reconnects>[\d,]+) reconnects?\), (?P<disconnects>[\d,]+) "
    r"lost, (?P<closed>[\d,]+) closed, (?P<users_gave_up>[\d,]+) users gave up.*\n"
    r" +messages +(?P<messages_sent>[\d,]+) sent, (?P<messages_received>[\d,]+) received "
    r"\((?P<unsolicited_received>[\d,]+) pushed\).*\n"
    r" +latency +round trip p50 (?P<round_trip_p50>[\d.,]+) ms, p95 (?P<round_trip_p95>[\d.,]+) ms, "
    r"p99 (?P<round_trip_p99>[\d.,]+) ms.*\n(?:.*\n)*?"
    r" +replies +(?P<replies_timed_out>[\d,]+) timed out \((?P<replies_late>[\d,]+) came late\), "
    r"(?P<replies_lost>[\d,]+) lost on close, (?P<replies_in_flight_at_stop>[\d,]+) in flight at stop; "
    r"(?P<replies_duplicated>[\d,]+) duplicated, (?P<replies_out_of_order>[\d,]+) out of order\n"
    r"(?: +generator +.*peak CPU (?P<cpu_max>\d+) % of one core.*\n)?"
)
_SERIES = re.compile(r"WsDashboard\.show\(document\.getElementById\(\"ws-report-charts\"\), (\{.*\})\);</script>")


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    """One headless run with --html against the reference server: (report text, console, server's counts)."""
    folder = tmp_path_factory.mktemp("html")
    with run_server_process() as server:
        result = run_locust(
            "-f", "locustfiles/echo.py", "--headless", "-u", "20", "-r", "20", "-t", "6s", "--host", server.url,
            "--ws-message-interval", "100", "--html", str(folder / "report.html"), folder=folder, timeout=90,
        )  # fmt: skip
        truth = server.stats()
    assert result.returncode == 0, result.stderr[-3000:]
    return (folder / "report.html").read_text(encoding="utf-8"), result.stderr + result.stdout, truth


@pytest.mark.slow
def test_the_html_report_carries_the_websocket_results_of_the_run(html_report):
    page, console, truth = html_report
    parser = _Figures()
    parser.feed(page)
    figures = parser.figures
    results = _RESULTS.search(console)
    assert results, console[-3000:]
    for name, printed in results.groupdict().items():
        if printed is None:
            continue
        figure = float(figures[name])
        # as the results block prints them: percentiles as response times, CPU in whole percent
        shown = format_ms(figure) if name.startswith("round_trip") else f"{figure:,.0f}"
        assert shown == printed, (name, figures[name], printed)
    # ... and with the server, which counted every message and connection itself
    assert int(figures["messages_received"]) == truth["messages_sent"] > 0
    assert int(figures["messages_sent"]) == truth["messages_received"]
    assert int(figures["connects_succeeded"]) == truth["connections_accepted"] == 20
    assert int(figures["closed"]) + int(figures["disconnects"]) == truth["connections_closed"]
    assert float(figures["rss_local"]) > 10_000_000 and float(figures["peak_cpu_local"]) > 0
    assert int(figures["errors"]) == 0
    # the charts' data: a point a second, the connections reaching the 20 users
    series = json.loads(_SERIES.search(page)[1])
    assert len(series["t"]) >= 4 and max(series["columns"]["connections/open"]) == 20
    assert max(value or 0 for value in series["columns"]["messages/received"]) > 0
    assert "http://" not in page.partition('id="wslocust-report"')[2], "the section must not load anything"


@pytest.mark.slow
def test_the_html_reports_charts_draw_offline(html_report, tmp_path):
    _require_browser()
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    path.write_text(html_report[0], encoding="utf-8")
    requested: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else (
                requested.append(route.request.url), route.abort()))  # fmt: skip
            page.goto(path.as_uri())
            page.wait_for_function("() => window.wsDashboard && window.wsDashboard.drawn >= 1", timeout=20_000)
            panels = page.evaluate("() => document.querySelectorAll('#ws-report-charts .ws-panel canvas').length")
            opened = page.evaluate("() => window.wsDashboard.charts.connections.data[1]")
            page.locator("#wslocust-report").screenshot(path=str(tmp_path / "report-section.png"))
        finally:
            browser.close()
    assert panels == len(CHARTS)
    assert max(value or 0 for value in opened) == 20
    assert not [url for url in requested if "uPlot" in url or "dashboard" in url], requested


# The live dashboard ----------------------------------------------------------------------------------------


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _last(values: list) -> float | None:
    return next((value for value in reversed(values) if value is not None), None)


@pytest.mark.slow
def test_the_dashboard_charts_the_run_and_its_last_points_match_ws_stats(tmp_path):
    _require_browser()
    from playwright.sync_api import sync_playwright

    with run_server_process() as server:
        run = LocustProcess(
            "-f", "locustfiles/echo.py", "--processes", "2", "--autostart", "-u", "30", "-r", "30", "-t", "60s",
            "--host", server.url, "--ws-message-interval", "100", folder=tmp_path,
        )  # fmt: skip
        try:
            wait_for(lambda: server.stats()["connections_open"] == 30, timeout=30, interval=0.2, processes=[run])
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                    viewport={"width": 1280, "height": 900},
                )  # fmt: skip
                try:
                    page = context.new_page()
                    page.goto(run.web_url + "/")
                    page.get_by_role("tab", name="WebSocket", exact=True).click()
                    link = page.locator("#wslocust-dashboard-link")
                    link.wait_for(timeout=20_000)
                    link.click()
                    page.wait_for_url("**/ws/dashboard", timeout=20_000)
                    # drawn, with a few points, every worker's CPU, and every connection open in the last point
                    page.wait_for_function(
                        """points => {
                            const d = window.wsDashboard, c = d && d.series.columns;
                            const last = key => c[key][c[key].length - 1];
                            // the message rates settle a report after the connections: compare steady rates
                            return d && d.drawn >= 2 && d.series.t.length >= points && c["cpu/worker 2"]
                                && last("connections/open") === 30
                                && last("messages/sent") >= 250 && last("messages/received") >= 250;
                        }""",
                        arg=30 if os.environ.get("WSLOCUST_SCREENSHOTS") else 5,  # a longer history to show
                        timeout=60_000,
                    )
                    series = page.evaluate("() => window.wsDashboard.series")
                    stats = _get(run.web_url + "/ws/stats")
                    with urllib.request.urlopen(run.web_url + "/stats/report", timeout=30) as response:
                        report = response.read().decode()  # the web UI's Download report
                    plotted = page.evaluate(
                        "() => Object.fromEntries(Object.entries(window.wsDashboard.charts)"
                        ".map(([key, chart]) => [key, chart.data.length - 1]))"
                    )
                    canvases = page.evaluate("() => document.querySelectorAll('.ws-panel canvas').length")
                    open_cell = page.locator('.ws-panel[data-chart="connections"] tr[data-key="connections/open"] td')
                    open_now = open_cell.nth(1).inner_text()
                    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
                finally:
                    context.close()
        finally:
            run.stop(timeout=30)
    if os.environ.get("WSLOCUST_SCREENSHOTS"):
        shutil.copy(tmp_path / "dashboard.png", REPO_ROOT / os.environ["WSLOCUST_SCREENSHOTS"] / "dashboard.png")
    columns = series["columns"]
    aggregate = stats["aggregate"]
    assert canvases == len(CHARTS) and open_now == "30"
    assert 'id="wslocust-report"' in report and len(json.loads(_SERIES.search(report)[1])["t"]) >= 5
    # what is plotted is what the page exposes: one uPlot series per column of the chart
    assert plotted == {chart["key"]: sum(k.startswith(chart["key"] + "/") for k in columns) for chart in CHARTS}
    # the last points against /ws/stats, read right after: gauges equal, rates and percentiles close
    assert _last(columns["connections/open"]) == aggregate["connections"]["open"] == 30
    assert _last(columns["connections/failed"]) == aggregate["connections"]["failed"] == 0
    for name in ("messages_sent", "messages_received"):
        charted, current = _last(columns[f"messages/{name[9:]}"]), aggregate["rates"][name]
        assert charted > 100 and math.isclose(charted, current, rel_tol=0.35), (name, charted, current)
    p50, current_p50 = _last(columns["round_trip/p50"]), aggregate["round_trip"]["p50"]
    assert p50 is not None and abs(p50 - current_p50) <= max(2.0, 2 * current_p50), (p50, current_p50)
    workers = {view["name"]: view for view in stats["workers"]}
    assert {key for key in columns if key.startswith("cpu/")} == {f"cpu/{name}" for name in workers} | {"cpu/master"}
    for name, view in workers.items():
        assert _last(columns[f"memory/{name}"]) == pytest.approx(view["system"]["rss"] / 1e6, rel=0.2)
    assert {key for key in columns if key.startswith("host_cpu/")} == {f"host_cpu/{h['host']}" for h in stats["hosts"]}
    assert all(_last(columns[f"loop_lag/{name}"]) is not None for name in workers)


# The package ----------------------------------------------------------------------------------------------


def test_the_package_ships_the_dashboard_and_its_chart_library(tmp_path):
    # build_py collects the files a wheel holds (bdist_wheel runs it), offline and without a build/ in the checkout.
    built = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    shipped = {path.name for path in (tmp_path / "wslocust" / "reporting" / "static").iterdir()}
    assert {
        "uPlot.iife.min.js",
        "uPlot.min.css",
        "uPlot.LICENSE",
        "dashboard.html",
        "dashboard.js",
        "tab-link.js",
    } <= shipped
