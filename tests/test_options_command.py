"""
``wslocust options``: every wslocust option of a Locust run, which ``locust --help`` cannot list, read from
the options' declarations (``wslocust.integration.options.add_options``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from helpers import REPO_ROOT, subprocess_environment
from locust.argument_parser import get_empty_argument_parser, setup_parser_arguments

from wslocust.integration.options import add_options


def wslocust_options(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wslocust", "options", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_environment(),
        cwd=REPO_ROOT,
    )


def locusts_own_flags() -> set[str]:
    """The ``--ws-*`` flags of Locust's real parser once wslocust has added its options."""
    # Locust's parser without its plugin hook: once wslocust is imported, the hook adds the options already.
    parser = get_empty_argument_parser(add_help=True)
    setup_parser_arguments(parser)
    add_options(parser)
    return {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--ws-")}


def test_locust_help_lists_no_wslocust_option_which_is_why_the_command_exists():
    shown = subprocess.run(
        [sys.executable, "-m", "locust", "-f", "locustfiles/echo.py", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=subprocess_environment(),
        cwd=REPO_ROOT,
    )
    assert shown.returncode == 0 and "--ws-" not in shown.stdout


def test_every_option_with_its_variable_default_valid_values_and_web_ui_field():
    listed = wslocust_options("--json")
    assert listed.returncode == 0, listed.stderr
    options = {option["flag"]: option for option in json.loads(listed.stdout)}
    assert set(options) == locusts_own_flags()
    connections = options["--ws-target-connections"]
    assert connections["env"] == "TARGET_CONNECTIONS"
    assert connections["valid"] == "a whole number of connections >= 1"  # the check's own words
    assert connections["web_ui"] is True and connections["default"] is None
    assert options["--ws-embedded-port"]["default"] == 3003
    assert options["--ws-embedded-port"]["valid"] == "a port (0-65535)"
    assert "light" in options["--ws-profile"]["valid"] and options["--ws-profile"]["env"] == "WS_PROFILE"
    assert options["--ws-source-addresses"]["valid"].startswith("addresses, ranges")
    assert options["--ws-thresholds-abort"]["metavar"] is None
    assert options["--ws-thresholds"]["web_ui"] is False
    assert all(option["env"] and option["help"] for option in options.values())


def test_the_text_names_each_option_and_its_variable_and_filters_by_name():
    text = wslocust_options()
    assert text.returncode == 0, text.stderr
    for flag in locusts_own_flags():
        assert re.search(rf"^{flag}\b", text.stdout, re.MULTILINE), flag
    assert "environment: MESSAGE_INTERVAL    default: not set    web UI: yes" in text.stdout
    assert "WORKERS" in text.stdout and "WS_SERVER_URL" in text.stdout
    one = wslocust_options("WS_PROFILE")
    assert re.findall(r"^--ws-\S+", one.stdout, re.MULTILINE) == ["--ws-profile"]
    none = wslocust_options("no-such-option")
    assert none.returncode == 1 and "no option matches 'no-such-option'" in none.stdout


def test_the_readme_names_the_command_on_its_first_screen_and_every_option():
    readme = (REPO_ROOT / "README.md").read_text()
    first_screen = "\n".join(readme.splitlines()[:40])
    assert "wslocust options" in first_screen
    for flag in locusts_own_flags():
        assert f"`{flag}" in readme, flag
