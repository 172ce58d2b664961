"""Locust's HTML pages: something added to the web UI's page, and a section added to the HTML report."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import locust.html
from flask import Response, request

__all__ = ["add_to_web_ui_page", "extend_html_report", "locust_get_html_report"]

logger = logging.getLogger("wslocust")

_LOCUST_GET_HTML_REPORT = locust.html.get_html_report
_REPORT_USERS = ("locust.html", "locust.main", "locust.web")
"""The modules that call ``get_html_report``: ``locust.main`` (``--html``) and ``locust.web`` (the web UI's
Download report) import it by name, so each module's own name is replaced."""


def _before_body_end(page: str, html: str) -> str:
    at = page.rfind("</body>")
    return page if at < 0 else page[:at] + html + page[at:]


def add_to_web_ui_page(web_ui: Any, html: str) -> None:
    """
    Insert ``html`` before ``</body>`` of the web UI's page (Locust's ``/``, endpoint ``locust.index``).

    Locust's extension points (``extended_tabs``, ``extended_tables``) take tables only; a script added to
    the page can add a link beside them. An ``after_request`` hook on Locust's Flask app; a page without
    ``</body>`` is left as it is. Checked: 2.46.6, 2.47.0.
    """

    def insert(response: Response) -> Response:
        if request.endpoint != "locust.index" or response.status_code != 200 or response.mimetype != "text/html":
            return response
        response.set_data(_before_body_end(response.get_data(as_text=True), html))
        return response

    web_ui.app.after_request(insert)


def locust_get_html_report(environment: Any, show_download_link: bool = True, theme: str = "") -> str:
    """Locust's own ``locust.html.get_html_report``, whatever is installed in its place."""
    page: str = _LOCUST_GET_HTML_REPORT(environment, show_download_link=show_download_link, theme=theme)
    return page


def extend_html_report(section: Callable[[Any], str]) -> None:
    """
    Add ``section(environment)`` to Locust's HTML report (``--html`` and the web UI's Download report).

    Locust renders the report from a template whose React page fills ``<div id="root">`` from
    ``window.templateArgs``; its format has no place for an extension's figures. The section goes after
    that ``div``, before ``</body>``, as plain HTML, so it survives the page's rendering and a mailed file.
    If ``section`` raises, Locust's report is written without it and the error is logged. Calling it again
    replaces ``section``. Checked: 2.46.6, 2.47.0.
    """

    def get_html_report(environment: Any, show_download_link: bool = True, theme: str = "") -> str:
        page = locust_get_html_report(environment, show_download_link=show_download_link, theme=theme)
        try:
            html = section(environment)
        except Exception:
            logger.exception("wslocust: the WebSocket section of the HTML report failed; the report has none")
            return page
        return _before_body_end(page, html)

    for name in _REPORT_USERS:
        module = importlib.import_module(name)
        module.get_html_report = get_html_report  # type: ignore[attr-defined]
