"""
Locust's web UI in a real headless Chromium during a run: the WebSocket tab
shows live, non-zero connection and message figures for the run and each worker.

Needs Debian's ``chromium`` and the ``playwright`` package (``.ci/run``
installs both); elsewhere it is skipped, in CI it fails.
"""

from __future__ import annotations

import os
import re
import shutil

import pytest
from helpers import run_server_process, wait_for
from locust_process import LocustProcess

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


def test_the_websocket_tab_shows_live_connections_and_messages_per_worker(tmp_path):
    _require_browser()
    from playwright.sync_api import sync_playwright

    with run_server_process() as server:
        run = LocustProcess(
            "-f", "locustfiles/echo.py", "--processes", "2", "--autostart", "-u", "30", "-r", "30", "-t", "40s",
            "--host", server.url, "--ws-message-interval", "100", folder=tmp_path,
        )  # fmt: skip
        web_port = run.web_port
        try:
            wait_for(lambda: server.stats()["connections_open"] == 30, timeout=30, interval=0.2, processes=[run])
            with sync_playwright() as playwright:
                context = playwright.chromium.launch_persistent_context(
                    str(tmp_path / "profile"),
                    executable_path=CHROMIUM,
                    headless=True,
                    args=CHROMIUM_ARGS,
                    viewport={"width": 1600, "height": 900},
                )
                try:
                    page = context.new_page()
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
                        "() => document.querySelector('table tbody tr td:nth-child(11)').innerText !== "
                        f"'{first[0]['Sent']}'",
                        timeout=20_000,
                    )
                    rows = _rows(table)
                    page.screenshot(path=str(tmp_path / "websocket-tab.png"))
                finally:
                    context.close()
        finally:
            run.stop(timeout=30)
    header = [row["Node"] for row in rows]
    assert header == ["All (2 workers)", "worker 1", "worker 2"], rows
    everything, *workers = rows
    assert int(everything["Open"]) == 30 == sum(int(worker["Open"]) for worker in workers)
    assert all(int(worker["Open"]) > 0 for worker in workers)
    assert float(everything["Received/s"]) > 0 and int(everything["Received"]) > int(first[0]["Received"])
    assert re.fullmatch(r"[\d.]+", everything["Round trip p50 (ms)"])
    # message integrity: a correct echo server loses, duplicates and reorders nothing
    assert [everything[name] for name in ("Timed out", "Lost", "Late", "Dup", "Reordered")] == ["0"] * 5
    # LAGGING: on a machine of two cores the browser itself may stall the generators' event loops
    assert everything["Status"] in ("running", "LAGGING")
    assert re.fullmatch(r"[\d.]+", everything["Loop lag p99 (ms)"])


def _rows(table) -> list[dict[str, str]]:
    headers = [cell.strip() for cell in table.locator("thead th").all_inner_texts()]
    rows = []
    for row in table.locator("tbody tr").all():
        cells = [cell.strip() for cell in row.locator("td").all_inner_texts()]
        rows.append(dict(zip(headers, cells)))
    return rows
