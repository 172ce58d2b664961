"""
Artillery 2 (Node.js; the ``artillery`` npm package) as a peer: its YAML
configuration, its command line, whether it is installed and how to install it.

Artillery is installed with npm into a cache directory of its own
(``~/.cache/wslocust-bench/artillery``, or ``$WSLOCUST_BENCH_PEERS/artillery``),
never globally, with ``--ignore-scripts`` (no install script of any of its
~1,000 dependencies runs). Its telemetry is switched off for every run
(``ARTILLERY_DISABLE_TELEMETRY``).

The workloads, in Artillery's ``ws`` engine (``@artilleryio/int-core/lib/engine_ws.js``):

- ``closed-loop``: ``connections`` virtual users arrive over
  ``connections / spawn_rate`` seconds (``arrivalCount``); each connects, then
  loops on ``send`` with a ``capture``. The engine has no "echo" step: a
  ``send`` with ``capture`` (or ``match``) is its only way to wait for a
  reply; the step ends when the next message arrives on the connection, which
  is the echo here. So each iteration is one round trip, timed and counted by
  Artillery (``websocket.messages_sent`` / ``messages_received``), as a closed
  loop. A plain ``send`` would not wait: an open loop limited by the socket.
- ``periodic``: the same users; each loops on ``think: interval`` then one
  ``send`` + ``capture``.

Both end when the benchmark stops Artillery (a user's loop has a count far
beyond the run's bound); the command is wrapped in ``timeout`` by the caller.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "NAME",
    "PACKAGE",
    "command",
    "config",
    "environment",
    "install",
    "install_directory",
    "installed",
    "missing_line",
    "version",
]

NAME = "artillery"
PACKAGE = "artillery@2"
LOOP_COUNT = 1_000_000_000
INSTALL_TIMEOUT = 900.0


def install_directory() -> Path:
    """Where Artillery is (to be) installed: ``$WSLOCUST_BENCH_PEERS/artillery``, else under ``~/.cache``."""
    base = os.environ.get("WSLOCUST_BENCH_PEERS") or str(Path.home() / ".cache" / "wslocust-bench")
    return Path(base) / "artillery"


def _entry() -> Path:
    return install_directory() / "node_modules" / "artillery" / "bin" / "run"


def installed() -> bool:
    return shutil.which("node") is not None and _entry().exists()


def version() -> str:
    manifest = install_directory() / "node_modules" / "artillery" / "package.json"
    try:
        return f"artillery {json.loads(manifest.read_text())['version']}"
    except (OSError, ValueError, KeyError):
        return "artillery (version unknown)"


def missing_line() -> str:
    return f"artillery is not installed in {install_directory()} (npm, or --install-peers): skipped"


def install(log: Callable[[str], object] = print) -> bool:
    """``npm install artillery@2 --ignore-scripts`` into :func:`install_directory`; True if it is then installed."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        log("installing Artillery needs Node.js and npm (apt-get install nodejs npm)")
        return False
    directory = install_directory()
    directory.mkdir(parents=True, exist_ok=True)
    step = [npm, "install", "--prefix", str(directory), "--ignore-scripts", "--no-audit", "--no-fund",
            "--loglevel=error", PACKAGE]  # fmt: skip
    log(f"installing Artillery: {' '.join(step)}")
    try:
        subprocess.run(step, check=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL, stdout=sys.stderr)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        log(f"installing Artillery failed: {exc}")
        return False
    return installed()


def config(
    mode: str,
    url: str,
    connections: int,
    *,
    size: int = 64,
    spawn_rate: float = 1000.0,
    interval: float = 5.0,
) -> str:
    """
    Artillery's YAML script for one run (JSON, which is YAML: no YAML writer needed).

    Args:
        mode: ``closed-loop`` or ``periodic`` (one echo per user every ``interval`` seconds).
        url: the echo server, ``ws://127.0.0.1:PORT/``.
        connections: virtual users, one connection each.
        size: message bytes (ASCII text).
        spawn_rate: users started per second.

    Raises:
        ValueError: if the mode is unknown or the URL is not ``ws://`` on a loopback address.
    """
    host = urlsplit(url).hostname or ""
    if not url.startswith("ws://") or not host.startswith("127."):
        raise ValueError(f"{url!r}: the benchmarks target ws:// on a loopback address only")
    # capture waits for the next message on the connection (the echo) before the step ends.
    echo: dict[str, object] = {"send": {"payload": "x" * size, "capture": {"regexp": "^x", "as": "echo"}}}
    if mode == "closed-loop":
        steps: list[dict[str, object]] = [echo]
    elif mode == "periodic":
        # A number of seconds that is not whole would be read as milliseconds: say "ms".
        steps = [{"think": f"{round(interval * 1000)}ms"}, echo]
    else:
        raise ValueError(f"{mode!r} is not a mode (closed-loop, periodic)")
    script = {
        "config": {
            "target": url,
            "phases": [{"duration": max(1, round(connections / spawn_rate)), "arrivalCount": connections}],
            "ws": {"perMessageDeflate": False},
        },
        "scenarios": [{"name": "echo", "engine": "ws", "flow": [{"loop": steps, "count": LOOP_COUNT}]}],
    }
    return json.dumps(script, indent=2) + "\n"


def command(config_file: Path) -> list[str]:
    """``node .../artillery/bin/run run --quiet CONFIG`` (its progress output off)."""
    node = shutil.which("node") or "node"
    return [node, str(_entry()), "run", "--quiet", str(config_file)]


def environment() -> dict[str, str]:
    """This process's environment for Artillery: telemetry off, one local worker."""
    return {**os.environ, "ARTILLERY_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1", "WORKERS": "1"}
