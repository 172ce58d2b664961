"""
The WebSocket dashboard: time-series charts of a run in Locust's web UI, on the web UI's own port.

* ``GET /ws/dashboard``: the page (``static/dashboard.html``): one chart per figure group
  (:data:`wslocust.reporting.series.CHARTS`) with a compact table of current and peak values beside
  each, drawn with uPlot (``static/uPlot.iife.min.js``, MIT, shipped in the package: no CDN);
* ``GET /ws/series``: what it plots, as JSON (:meth:`wslocust.reporting.series.Series.as_dict`);
  ``?since=T`` gives only the points after Unix time ``T``;
* ``GET /ws/static/...``: the page's scripts and styles;
* on Locust's page, a link to the dashboard above the WebSocket tabs' tables (``static/tab-link.js``).

Like the tabs (:mod:`wslocust.reporting.web`), it exists only where there is a web UI.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from wslocust import locust_compat
from wslocust.reporting.series import Series

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["STATIC", "install", "static_text"]

STATIC = Path(__file__).with_name("static")
"""The page, its script and style, and uPlot with its licence."""


def static_text(name: str) -> str:
    """A file of :data:`STATIC`, as text."""
    return (STATIC / name).read_text(encoding="utf-8")


def install(environment: Environment, web_ui: Any, series: Series) -> None:
    """Add the dashboard's routes to Locust's web UI, and its link to Locust's page (at ``init``)."""
    base = getattr(environment.parsed_options, "web_base_path", None) or None
    blueprint = Blueprint(
        "wslocust_dashboard", __name__, url_prefix=base, static_folder=str(STATIC), static_url_path="/ws/static"
    )
    auth = web_ui.auth_required_if_enabled

    @blueprint.route("/ws/dashboard")
    @auth
    def ws_dashboard() -> Response:
        return Response(static_text("dashboard.html"), mimetype="text/html")

    @blueprint.route("/ws/series")
    @auth
    def ws_series() -> Response:
        since = request.args.get("since", type=float)
        # Not jsonify: the columns keep their order (Flask sorts keys), which is the charts' order.
        return Response(series.as_json(since), mimetype="application/json")

    web_ui.app.register_blueprint(blueprint)
    locust_compat.add_to_web_ui_page(web_ui, '<script src="./ws/static/tab-link.js" defer></script>')
