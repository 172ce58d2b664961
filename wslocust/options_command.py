"""
``wslocust options``: every wslocust option of a Locust run, with its environment variable, default and valid
values.

``locust -f LOCUSTFILE --help`` cannot list them: Locust prints its help before it imports the locustfile that
loads wslocust. This command reads them from the one place they are declared,
:func:`wslocust.integration.options.add_options`, by letting it fill a parser of its own; the valid values are
those the option's own check states when it refuses an empty value, so nothing here is a copy that could drift.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["OPTIONS_DESCRIPTION", "OptionInfo", "add_arguments", "declared_options", "run"]

OPTIONS_DESCRIPTION = (
    "List every wslocust option of a Locust run (locust --help cannot: it prints its help before wslocust "
    "loads), with its environment variable, default and valid values."
)

_WIDTH = 100
_PROBE = "?"
"""A value no option accepts: each option's check answers it with what is valid."""
_ALSO = [
    "Also read: WS_SERVER_URL, the target when Locust's --host (LOCUST_HOST) is not given; and WORKERS,",
    "Locust's --processes (worker processes) when neither --processes nor LOCUST_PROCESSES is given.",
]


@dataclass(frozen=True)
class OptionInfo:
    """One option, as :func:`~wslocust.integration.options.add_options` declares it."""

    flag: str
    env: str | None
    """Its environment variable."""
    metavar: str | None
    """The name of its value; None for a switch."""
    default: Any
    """Its default when not given; None: not set (the help says what applies then)."""
    valid: str
    """Its valid values, in words."""
    web_ui: bool
    """True when it is a field of the web UI's start form."""
    help: str


def declared_options() -> list[OptionInfo]:
    """Every option that :func:`~wslocust.integration.options.add_options` adds to Locust's parser, in its order."""
    import configargparse  # Locust's parser's base: env_var= and configuration files

    from wslocust.integration.options import add_options

    parser = configargparse.ArgumentParser(add_help=False)
    known = set(map(id, parser._actions))
    add_options(parser)
    return [_info(action) for action in parser._actions if id(action) not in known]


def _info(action: argparse.Action) -> OptionInfo:
    switch = action.nargs == 0
    return OptionInfo(
        flag=max(action.option_strings, key=len),
        env=getattr(action, "env_var", None),
        metavar=None if switch else str(action.metavar or action.dest.upper()),
        default=None if action.default is False else action.default,
        valid=_valid(action, switch),
        web_ui=bool(getattr(action, "include_in_web_ui", False)),
        help=(action.help or "").replace("%%", "%"),
    )


def _valid(action: argparse.Action, switch: bool) -> str:
    if switch:
        return "a switch: on when given (in the environment or a configuration file: true or false)"
    if action.choices is not None:
        return ", ".join("empty (none)" if choice == "" else str(choice) for choice in action.choices)
    if action.type is None:
        return "any text"
    try:
        action.type(_PROBE)  # type: ignore[operator]
    except (argparse.ArgumentTypeError, ValueError) as exc:
        return _what_is_valid(str(exc))
    return "any text"


def _what_is_valid(message: str) -> str:
    """``"ENV / --flag: '?' is not a port (0-65535)"`` -> ``"a port (0-65535)"``; ``"...; use X"`` -> ``"X"``."""
    detail = message.partition(f"{_PROBE!r} ")[2] or message
    for marker in ("; use ", "is not "):
        if marker in detail:
            return detail.split(marker, 1)[1]
    return detail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=None, help="show only the options whose flag or variable has this")
    parser.add_argument("--json", action="store_true", help="print them as a JSON list")


def run(args: argparse.Namespace) -> int:
    """Print the options (those matching ``args.name``); 1 when none matches."""
    options = declared_options()
    if args.name:
        wanted = args.name.lower().lstrip("-").replace("_", "-")
        options = [o for o in options if wanted in o.flag.lower() or wanted in (o.env or "").lower().replace("_", "-")]
    if args.json:
        print(json.dumps([asdict(option) for option in options], indent=2))
    elif options:
        print("\n".join(format_options(options)))
    if not options:
        print(f"wslocust options: no option matches {args.name!r}", flush=True)
        return 1
    return 0


def format_options(options: list[OptionInfo]) -> list[str]:
    """The options for people: one paragraph each, then what else wslocust reads."""
    lines = [
        *textwrap.wrap(
            "wslocust's options of a Locust run (locust -f LOCUSTFILE --help cannot list them). Each is a "
            "command-line option, an environment variable, and a key of a Locust configuration file (the flag "
            "without --); the command line wins over the environment, which wins over the file.",
            _WIDTH,
        ),
        "",
    ]
    for option in options:
        lines.append(f"{option.flag} {option.metavar}" if option.metavar else option.flag)
        default = "off" if option.metavar is None else "not set" if option.default is None else str(option.default)
        fields = [f"environment: {option.env}", f"default: {default}", f"web UI: {'yes' if option.web_ui else 'no'}"]
        lines.append("    " + "    ".join(fields))
        lines += textwrap.wrap(f"valid: {option.valid}", _WIDTH, initial_indent="    ", subsequent_indent="      ")
        lines += textwrap.wrap(option.help, _WIDTH, initial_indent="    ", subsequent_indent="    ")
        lines.append("")
    return [*lines, *_ALSO]
