"""Command-line parsing shared by the ``wslocust`` command and its subcommands."""

from __future__ import annotations

import argparse
from typing import NoReturn

__all__ = ["CommandLineParser"]


class CommandLineParser(argparse.ArgumentParser):
    """
    An ``ArgumentParser`` whose errors are one line, with no usage block.

    A bad value reads ``wslocust serve: error: --port: 70000 is not a valid
    port (0-65535)``, then the process exits with status 2.
    """

    def error(self, message: str) -> NoReturn:
        # argparse says "argument --port: ..."; the option name alone is clearer.
        message = message.removeprefix("argument ")
        self.exit(2, f"{self.prog}: error: {message}\n")
