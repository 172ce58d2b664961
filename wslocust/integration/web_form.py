"""
wslocust's fields in the start form of Locust's web UI (the options that
:mod:`wslocust.integration.options` marks for it).

Each field has a short label: Locust labels a field "Name (help text)" on one
line, and the ``--help`` texts were cut off. An empty field means the option
is not given: the profile's select starts empty (no profile), as Locust
preselects the first of an option's ``choices``. Each test
starts from the command line's values: a field given to one ``POST /swarm``
does not carry over into the next test started without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wslocust.locust_compat import label_web_ui_fields, reset_fields_at_each_start

if TYPE_CHECKING:
    from locust.env import Environment

__all__ = ["LABELS", "set_up_web_form"]

LABELS = {
    "ws_target_connections": "default: the profile's, else the shape's",
    "ws_ramp_up_time": "ms",
    "ws_test_duration": "ms",
    "ws_profile": "empty: none",
    "ws_time_scale": "1 = real time, 0.01 = 100x faster",
    "ws_time_scale_messages": "real or scaled; default: real",
    "ws_message_interval": "ms, 0 = none",
}
"""The label of each field, by option (``parsed_options`` attribute): what follows its name."""


def set_up_web_form(environment: Environment, web_ui: Any) -> None:
    """Label the fields, and start each test from the command line's values (at ``init``, with a web UI)."""
    options = environment.parsed_options
    if options is None:
        return
    label_web_ui_fields(web_ui, LABELS)
    launch = {name: _text(getattr(options, name, None)) for name in LABELS}
    reset_fields_at_each_start(web_ui, launch)


def _text(value: Any) -> str | None:
    # Locust converts a form field to the type of the value it replaces: text never fails to convert.
    if value is None or isinstance(value, str):
        return value
    return f"{value:g}" if isinstance(value, float) else str(value)
