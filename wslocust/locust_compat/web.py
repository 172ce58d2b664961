"""Locust's web UI: custom options as start-form fields (short labels, a fresh start each test); refusing swarms."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import jsonify, request

__all__ = ["label_web_ui_fields", "refuse_swarms", "reset_fields_at_each_start", "show_in_web_ui"]

_RUNNING = ("spawning", "running")
"""Locust's runner states in which a ``POST /swarm`` edits the running test rather than starting one."""


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


def label_web_ui_fields(web_ui: Any, labels: Mapping[str, str]) -> None:
    """
    Give start-form fields short labels: ``labels`` by option ``dest``, instead of their ``--help`` text.

    Locust's form labels each custom field "Name (help text)" on one line, which cuts a long help off.
    ``WebUI.update_template_args`` (run at start and for each page load) builds ``extra_options`` from
    ``ui_extra_args_dict()``; this instance's method is wrapped to replace their ``help_text``.
    Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    update = web_ui.update_template_args

    def update_with_labels() -> None:
        update()
        fields = web_ui.template_args.get("extra_options") or {}
        for dest, label in labels.items():
            if dest in fields:
                fields[dest]["help_text"] = label

    web_ui.update_template_args = update_with_labels


def reset_fields_at_each_start(web_ui: Any, launch_values: Mapping[str, str | None]) -> None:
    """
    Start every test from the command line's values of these fields (``launch_values`` by ``dest``).

    Locust's ``POST /swarm`` writes each form field it is given into ``environment.parsed_options``
    and leaves the others as they are: a field of one test would carry over into the next test
    started without it (through the API, say). A ``before_request`` hook on its ``locust.swarm``
    endpoint puts the launch values back first, unless the test runs (an edit of the user count).
    Locust converts a field to the type of the value it replaces, so the values are text or None.
    Checked: 2.40.0, 2.43.4, 2.46.6, 2.47.0.
    """
    environment = web_ui.environment

    def reset_fields() -> None:
        if request.method != "POST" or request.endpoint != "locust.swarm" or environment.parsed_options is None:
            return
        runner = environment.runner
        if runner is not None and runner.state in _RUNNING:
            return
        for dest, value in launch_values.items():
            setattr(environment.parsed_options, dest, value)

    web_ui.app.before_request(reset_fields)
