"""
Tsung (Erlang; Debian's ``tsung`` package) as a peer: its XML configuration,
its command line, whether it is installed and how to install it.

The workloads, in Tsung's own terms (its ``ts_websocket`` plugin):

- ``closed-loop``: ``connections`` users arrive at ``spawn_rate`` per second;
  each connects (``<websocket type="connect">``), then loops on
  ``<websocket type="message">`` with the default ``ack`` (``parse``: the
  request ends when the echo frame arrived), one request after the other with
  no think time. Tsung records every request in its statistics.
- ``periodic``: the same users; each loops on ``<thinktime value="interval"
  random="false"/>`` then one message waiting for its echo.

Everything runs in the controller's Erlang VM (``use_controller_vm``; no
remote node started over ssh), the web dashboard is off (``-n``), the run is
bounded by ``<load duration>`` and the target is the server's loopback address.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

__all__ = ["NAME", "command", "config", "environment", "install", "installed", "missing_line", "version"]

NAME = "tsung"
DTD = "/usr/share/tsung/tsung-1.0.dtd"
LOOP_COUNT = 1_000_000_000
"""Iterations of a user's loop: more than any bounded run does (``<load duration>`` ends it)."""
INSTALL_TIMEOUT = 900.0


def installed() -> bool:
    return shutil.which("tsung") is not None


def version() -> str:
    """``tsung 1.7.0``, from its own ``-v``."""
    try:
        completed = subprocess.run(["tsung", "-v"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "tsung (version unknown)"
    text = (completed.stdout or completed.stderr).strip().splitlines()
    return text[0].replace("Tsung version", "tsung").strip() if text else "tsung (version unknown)"


def missing_line() -> str:
    return "tsung is not installed (apt-get install tsung, or --install-peers): skipped"


def install(log: Callable[[str], object] = print) -> bool:
    """``apt-get update`` then ``apt-get install -y tsung`` (as root); True if Tsung is then installed."""
    say = log
    for step in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "tsung"]):
        say(f"installing Tsung: {' '.join(step)}")
        try:
            subprocess.run(
                step, check=True, timeout=INSTALL_TIMEOUT, stdin=subprocess.DEVNULL, stdout=sys.stderr,
                env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            say(f"installing Tsung failed: {exc}")
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
    seconds: float = 120.0,
) -> str:
    """
    Tsung's XML configuration for one run.

    Args:
        mode: ``closed-loop`` (echo after echo) or ``periodic`` (one echo per
            user every ``interval`` seconds).
        url: the echo server, ``ws://127.0.0.1:PORT/PATH``.
        connections: users, one connection each.
        size: message bytes (ASCII text).
        spawn_rate: users started per second.
        seconds: the whole run's bound (``<load duration>``).

    Raises:
        ValueError: if the mode is unknown or the URL is not ``ws://`` on a loopback address.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 80
    if parts.scheme != "ws" or not host.startswith("127."):
        raise ValueError(f"{url!r}: the benchmarks target ws:// on a loopback address only")
    message = f'<request><websocket type="message" frame="text">{escape("x" * size)}</websocket></request>'
    if mode == "closed-loop":
        body = message
    elif mode == "periodic":
        body = f'<thinktime value="{interval:g}" random="false"/>{message}'
    else:
        raise ValueError(f"{mode!r} is not a mode (closed-loop, periodic)")
    # Tsung starts far fewer users than asked when its arrival rate is high for a short phase (7 of
    # 10 at 1,000/s in 1 s), and on a loaded machine its launcher falls behind (8,284 of 10,000 in an
    # 11 s phase): the rate is the users over whole seconds, the phase twice as long plus a second,
    # and maxnumber caps them.
    arrival_seconds = max(1, math.ceil(connections / spawn_rate))
    arrival_rate = connections / arrival_seconds
    path = parts.path or "/"
    return f"""<?xml version="1.0"?>
<!DOCTYPE tsung SYSTEM "{DTD}">
<tsung loglevel="error" version="1.0" dumptraffic="false">
  <clients>
    <client host="localhost" use_controller_vm="true" maxusers="{connections + 1000}"/>
  </clients>
  <servers>
    <server host="{host}" port="{port}" type="tcp"/>
  </servers>
  <load duration="{max(1, round(seconds))}" unit="second">
    <arrivalphase phase="1" duration="{2 * arrival_seconds + 1}" unit="second">
      <users maxnumber="{connections}" arrivalrate="{arrival_rate:g}" unit="second"/>
    </arrivalphase>
  </load>
  <sessions>
    <session name="echo" probability="100" type="ts_websocket">
      <request><websocket type="connect" path={quoteattr(path)}></websocket></request>
      <for from="1" to="{LOOP_COUNT}" incr="1" var="round">
        {body}
      </for>
    </session>
  </sessions>
</tsung>
"""


def command(config_file: Path, log_directory: Path) -> list[str]:
    """
    ``tsung -n -I 127.0.0.1 -f CONFIG -l LOGS start``: in the foreground, the web dashboard off,
    the Erlang node named by its loopback address (no host name to resolve).
    """
    return ["tsung", "-n", "-I", "127.0.0.1", "-f", str(config_file), "-l", str(log_directory), "start"]


def environment() -> dict[str, str]:
    """This process's environment for Tsung: the Erlang port mapper it starts listens on loopback only."""
    return {**os.environ, "ERL_EPMD_ADDRESS": "127.0.0.1"}
