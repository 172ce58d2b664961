"""Locust's argument parser: one-line errors, in wslocust's style, for wslocust's own options."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NoReturn

__all__ = ["name_option_errors"]

_ARGUMENT = re.compile(r"argument (?P<flags>\S+): (?P<detail>.*)", re.DOTALL)
"""argparse's error about one option: ``argument --ws-x: DETAIL`` (``-a/--all-of-them`` for several flags)."""
_SWITCH = re.compile(r"Unexpected value for (?P<key>\S+): '(?P<value>.*)'\. Expecting (?P<valid>.*)", re.DOTALL)
"""configargparse's error about a switch's value in the environment or a configuration file."""
_PLAIN = {"expected one argument": "no value; give one"}
"""argparse's wording of a problem, in wslocust's ("what is wrong; what is valid")."""


def name_option_errors(parser: Any, group: Any, names: Mapping[str, str] = MappingProxyType({})) -> None:
    """
    Make ``parser``'s errors about the options of ``group`` (and ``names``) read ``wslocust: NAME: what is
    wrong; what is valid``, one line, exit status 2; others stay Locust's (``locust: error: ...``).

    Each option of the group is named ``ENV / --flag`` (by its flag, its environment variable and its
    configuration-file key); ``names`` adds more (``{"WORKERS": "WORKERS / --processes"}``). A message that
    already starts with such a name (an ``ArgumentTypeError`` of the option's type, or one passed to
    ``parser.error``) is kept as is; argparse's and configargparse's own words are reworded.
    ``LocustArgumentParser.error`` prints ``locust: error: argument --ws-x: ...``; this instance's method is
    wrapped. Reads argparse's ``_group_actions``, so that an option added later is covered too. Checked:
    2.40.0, 2.43.4, 2.46.6, 2.47.0 (configargparse 1.7).
    """
    names = dict(names)
    for action in group._group_actions:
        flag, env = action.option_strings[0], getattr(action, "env_var", None)
        names.update(dict.fromkeys((flag, flag.removeprefix("--"), env or flag), f"{env} / {flag}" if env else flag))
    error = parser.error

    def one_line(message: str) -> NoReturn:
        line = _line(message, names)
        if line is None:
            error(message)
        parser.exit(2, f"wslocust: {line}\n")
        raise AssertionError("unreachable: parser.exit exits")  # pragma: no cover

    parser.error = one_line


def _line(message: str, names: Mapping[str, str]) -> str | None:
    """The message in wslocust's style, or None when it is not about one of ``names``."""
    if any(message.startswith(f"{name}: ") for name in names.values()):
        return message.splitlines()[0]
    argument = _ARGUMENT.fullmatch(message)
    if argument is not None:
        name = next((names[flag] for flag in argument["flags"].split("/") if flag in names), None)
        if name is None:
            return None
        detail = argument["detail"].splitlines()[0]
        if detail.startswith(f"{name}: "):
            return detail
        return f"{name}: {_PLAIN.get(detail, detail)}"
    switch = _SWITCH.fullmatch(message)
    if switch is not None and switch["key"] in names:
        valid = switch["valid"].replace("'", "").strip()
        return f"{names[switch['key']]}: {switch['value']!r} is not a yes/no value; use {valid}"
    return None
