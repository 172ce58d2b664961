"""
Locust's web UI in a real headless Chromium, 1,280 px wide: during a run the WebSocket
tabs show live, non-zero connection and message figures for the run and each worker,
and no table scrolls sideways; the start form preselects no profile, shows each label
whole, and starts the test the locustfile describes.

Needs Debian's ``chromium`` and the ``playwright`` package (``.ci/run``
installs both); elsewhere it is skipped, in CI it fails.
"""

from __future__ import annotations

import os
import re
import shutil
from contextlib import contextmanager

import pytest
from helpers import run_server_process, wait_for
from locust_process import LocustProcess
from test_web_form import FAST_MESSAGES, _answers

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _require_browser():
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package")
    if shutil.which(CHROMIUM) is None:
        missing.append(CHROMIUM)
    if missing:
        message = f"{' and '.join(missing)} not installed (.ci/run installs them)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def _browser_page(tmp_path, width: int = 1280):
    """A page of a headless Chromium whose window is ``width`` px wide (1,280: a laptop's)."""
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": 900},
        )
        try:
            yield context.new_page()
        finally:
            context.close()


OVERFLOWING = """() => [...document.querySelectorAll('table')].filter(table => table.offsetParent).flatMap(table => {
    const scrolling = table.parentElement;  // Locust's table container, which scrolls what does not fit
    return scrolling.scrollWidth > scrolling.clientWidth ? [[scrolling.scrollWidth, scrolling.clientWidth]] : [];
})"""
"""The visible tables that scroll horizontally, as [scrollWidth, clientWidth]."""


def test_the_websocket_tabs_show_live_figures_per_worker_and_fit_1280_px(tmp_path):
    _require_browser()
    with run_server_process() as server:
        run = LocustProcess(
            "-f", "locustfiles/echo.py", "--processes", "2", "--autostart", "-u", "30", "-r", "30", "-t", "40s",
            "--host", server.url, "--ws-message-interval", "100", folder=tmp_path,
        )  # fmt: skip
        web_port = run.web_port
        try:
            wait_for(lambda: server.stats()["connections_open"] == 30, timeout=30, interval=0.2, processes=[run])
            with _browser_page(tmp_path) as page:
                page.goto(f"http://127.0.0.1:{web_port}/")
                page.get_by_role("tab", name="WebSocket", exact=True).click()
                table = page.locator("table")
                page.wait_for_function(
                    "() => document.querySelectorAll('table tbody tr').length === 3",
                    timeout=20_000,
                )
                first = _rows(table)
                # the UI polls every 2 s and workers report every 3 s: wait for the next report
                page.wait_for_function(
                    "() => document.querySelector('table tbody tr td:nth-child(8)').innerText !== "
                    f"'{first[0]['Messages sent · received']}'",
                    timeout=20_000,
                )
                rows = _rows(table)
                overflowing = {"WebSocket": page.evaluate(OVERFLOWING)}
                page.screenshot(path=str(tmp_path / "websocket-tab.png"))
                page.get_by_role("tab", name="WebSocket system", exact=True).click()
                page.wait_for_function("() => document.querySelectorAll('table tbody tr').length === 3")
                system = _rows(page.locator("table"))
                overflowing["WebSocket system"] = page.evaluate(OVERFLOWING)
                page.get_by_role("tab", name="WebSocket errors", exact=True).click()
                page.wait_for_function("() => document.querySelectorAll('table tbody tr').length === 1")
                errors = _rows(page.locator("table"))
                overflowing["WebSocket errors"] = page.evaluate(OVERFLOWING)
        finally:
            run.stop(timeout=30)
    assert overflowing == {"WebSocket": [], "WebSocket system": [], "WebSocket errors": []}
    header = [row["Node"] for row in rows]
    assert header == ["All (2 workers)", "worker 1", "worker 2"], rows
    everything, *workers = rows
    assert int(everything["Open"]) == 30 == sum(int(worker["Open"]) for worker in workers)
    assert all(int(worker["Open"]) > 0 for worker in workers)
    sent_per_s, received_per_s = _figures(everything["Messages/s sent · received"])
    sent, received = _figures(everything["Messages sent · received"])
    assert sent_per_s > 0 and received_per_s > 0
    assert sent >= received > _figures(first[0]["Messages sent · received"])[1]
    assert re.fullmatch(r"[\d.]+\s·\s[\d.]+\s·\s[\d.]+", everything["Round trip p50 · p95 · p99 (ms)"])
    # message integrity: a correct echo server loses, duplicates and reorders nothing
    assert _figures(everything["Replies timed out · lost · late · dup · reordered"]) == [0] * 5
    # LAGGING: on a machine of two cores the browser itself may stall the generators' event loops
    assert everything["Status"] in ("running", "LAGGING")
    assert re.fullmatch(r"[\d.]+\s·\s[\d.]+", everything["Loop lag p99 · max (ms)"])
    cpu, peak = _figures(system[0]["CPU % now · peak"])
    assert peak >= cpu
    assert all(row["Host-wide CPU %"] and row["Host-wide net in · out (MB/s)"] for row in system)
    assert [row["Error"] for row in errors] == ["no errors"]


def test_the_start_form_starts_without_a_profile_and_shows_each_label_whole(tmp_path):
    _require_browser()
    locustfile = tmp_path / "quick.py"
    locustfile.write_text(FAST_MESSAGES)  # two connections, a message every 50 ms each
    with run_server_process() as server:
        run = LocustProcess("-f", str(locustfile), "--host", server.url, folder=tmp_path)
        try:
            with _browser_page(tmp_path) as page:
                wait_for(lambda: _answers(run.web_url), timeout=30, message="the web UI", processes=[run])
                page.goto(run.web_url)
                page.get_by_text("Custom parameters").click()
                profile = page.locator("select[name=wsProfile]")
                preselected = profile.input_value()
                labels = page.locator("label", has_text=re.compile("^Ws "))
                page.wait_for_function("() => [...document.querySelectorAll('label')].some(l => l.offsetParent)")
                cut = labels.evaluate_all(
                    "labels => labels.filter(l => l.scrollWidth > l.clientWidth).map(l => l.innerText)"
                )
                texts = labels.all_inner_texts()
                page.locator("input[name=wsTargetConnections]").fill("2")
                page.screenshot(path=str(tmp_path / "start-form.png"), full_page=True)
                page.get_by_role("button", name="Start").click()
                wait_for(lambda: server.stats()["connections_open"] == 2, timeout=20, processes=[run])
                before = server.stats()["messages_received"]
                # the locustfile's 40 a second; the light profile would send 2 in 10 s
                wait_for(lambda: server.stats()["messages_received"] >= before + 60, timeout=10, processes=[run])
        finally:
            run.stop(timeout=30)
    assert preselected == "" and len(texts) == 7 and cut == [], (preselected, texts, cut)
    assert "Traceback" not in run.stderr, run.stderr[-3000:]


def _figures(cell: str) -> list[float]:
    """The figures of a grouped cell, ``1,234 · 5.6``."""
    return [float(figure.strip().replace(",", "")) for figure in cell.split("·")]


def _rows(table) -> list[dict[str, str]]:
    headers = [cell.strip() for cell in table.locator("thead th").all_inner_texts()]
    rows = []
    for row in table.locator("tbody tr").all():
        cells = [cell.strip() for cell in row.locator("td").all_inner_texts()]
        rows.append(dict(zip(headers, cells)))
    return rows
