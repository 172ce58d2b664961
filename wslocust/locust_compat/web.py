"""Locust's web UI: custom options as start-form fields, and refusing a swarm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import jsonify, request

__all__ = ["refuse_swarms", "show_in_web_ui"]


def show_in_web_ui(action: Any) -> Any:
    """
    Make an option added to an argument group a field of Locust's web UI; returns ``action``.

    Only ``LocustArgumentParser.add_argument`` sets what ``ui_extra_args_dict()`` and the web UI read
    (``include_in_web_ui``, ``is_secret``, ``is_required``; ``is_multiple`` after 2.40), not a group's.
    Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    action.include_in_web_ui = True
    action.is_secret = action.is_required = action.is_multiple = False
    return action


def refuse_swarms(web_ui: Any, refusal: Callable[[int], str | None]) -> None:
    """
    Answer a web UI swarm (``POST /swarm``) with ``success: false`` when ``refusal(user_count)`` gives a reason.

    A ``before_request`` hook on Locust's Flask app for its ``locust.swarm`` endpoint, answering with the
    fields of Locust's own answer so that its page shows the reason. Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """

    def check_swarm() -> Any:
        if request.method != "POST" or request.endpoint != "locust.swarm":
            return None
        try:
            users = int(request.form.get("user_count", ""))
        except ValueError:
            return None  # Locust answers that itself
        line = refusal(users)
        return None if line is None else jsonify({"success": False, "message": line, "host": web_ui.environment.host})

    web_ui.app.before_request(check_swarm)
