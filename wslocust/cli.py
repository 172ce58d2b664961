"""
The ``wslocust`` command: one subcommand per tool.

Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; to add one, import the
module in :func:`build_parser` and list it in ``_subcommands``.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

from wslocust.arguments import CommandLineParser

__all__ = ["build_parser", "main"]


def _subcommands() -> list[tuple[str, ModuleType, str]]:
    # Imported here: ``wslocust monitor`` need not load the reference server, nor the other way round.
    from wslocust import monitor, options_command, server
    from wslocust.suite import command as suite

    return [
        ("serve", server, server.SERVE_DESCRIPTION),
        ("monitor", monitor, monitor.MONITOR_DESCRIPTION),
        ("suite", suite, suite.SUITE_DESCRIPTION),
        ("options", options_command, options_command.OPTIONS_DESCRIPTION),
    ]


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of the ``wslocust`` command and all its subcommands."""
    parser = CommandLineParser(
        prog="wslocust", description="WebSocket load-testing tools for Locust."
    )
    commands = parser.add_subparsers(
        title="commands", dest="command", metavar="COMMAND", required=True
    )
    for name, module, description in _subcommands():
        command = commands.add_parser(name, help=description, description=description)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``wslocust`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
