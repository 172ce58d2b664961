"""
A benchmark's child processes: started in a session of their own, their
stdout markers handed to :meth:`Child.wait_for`, stopped in order.

- :class:`Child` reads its stdout in a thread; lines that start with a marker
  (``READY``, ``COUNT``, ``IDLE``, ``EXACT``) and a server's listening line
  are handed to :meth:`Child.wait_for`.
- :func:`stop_all_children` stops every child still running (SIGTERM, then
  SIGKILL of its process group): the entry point calls it on success, errors,
  Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .sessions import kill_process_group, start_in_session

__all__ = [
    "COUNT_TIMEOUT",
    "HOST",
    "STOP_TIMEOUT",
    "Child",
    "log",
    "raise_open_files_limit",
    "set_logs_directory",
    "stop_all_children",
]

HOST = "127.0.0.1"
COUNT_TIMEOUT = 10.0
"""Seconds a generator may take to answer SIGUSR1 (a Locust process holding 10,000 users is slow to)."""
STOP_TIMEOUT = 30.0
"""Seconds a child gets to exit after SIGTERM before SIGKILL (Locust stops its users gracefully)."""

_LISTENING = re.compile(r"^listening (\d+)$|(ws://[^\s/]+:(\d+)\S*)")
_children: list[Child] = []
_logs: list[Path] = []


def set_logs_directory(directory: Path | None) -> None:
    """Keep every child's stdout and stderr in ``directory`` when it stops (``--logs DIR``)."""
    _logs[:] = [directory] if directory is not None else []


def log(message: str) -> None:
    """Progress and warnings go to stderr; tables and RESULT lines go to stdout."""
    sys.stderr.write(f"benchmarks: {message}\n")
    sys.stderr.flush()


def raise_open_files_limit() -> int:
    """
    Raise this process's open-files soft limit to the hard limit and return it.

    Every child inherits it: Locust raises its own soft limit only to 10,000,
    which a plain Locust user holding 10,000 connections (plus its other files)
    would exceed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Child:
    """
    A child process in its own session, with its stdout read by a thread.

    Lines that start with a marker word go to a queue for :meth:`wait_for`,
    and so does a server's listening line (as ``LISTENING <url>``); the other
    lines are kept (the last 200) for error reports. Stderr goes to a file.
    """

    MARKERS = ("READY", "COUNT", "IDLE", "EXACT")

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name = name
        self.command = command
        self._stderr = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115  lives as long as the child
        # Its own session: a terminal's Ctrl-C reaches only us, and we stop it in order.
        self.process = start_in_session(
            command, stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=cwd, text=True, bufsize=1
        )
        _children.append(self)
        self.pid = self.process.pid
        self.started = time.monotonic()
        self._events: queue.Queue[tuple[str, str]] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=200)
        threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            tag, _, rest = line.partition(" ")
            if tag in self.MARKERS:
                self._events.put((tag, rest))
                continue
            match = _LISTENING.search(line)
            if match:
                self._events.put(("LISTENING", match.group(2) or f"ws://{HOST}:{match.group(1)}/"))
            self._tail.append(line)
        self._events.put(("EOF", ""))

    def wait_for(self, tag: str, timeout: float) -> str | None:
        """The rest of the next ``tag`` line, or None on timeout or exit. Other markers are dropped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                got, rest = self._events.get(timeout=remaining)
            except queue.Empty:
                return None
            if got == "EOF":
                self._events.put((got, rest))  # later waits fail fast too
                return None
            if got == tag:
                return rest

    def wait_for_json(self, tag: str, timeout: float) -> dict[str, Any] | None:
        rest = self.wait_for(tag, timeout)
        return json.loads(rest) if rest is not None else None

    def count(self) -> dict[str, Any] | None:
        """Ask the generator for its cumulative counts (SIGUSR1) and return them."""
        if not self.alive:
            return None
        os.kill(self.pid, signal.SIGUSR1)
        return self.wait_for_json("COUNT", COUNT_TIMEOUT)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float) -> int | None:
        """Wait for the child to exit by itself; its exit code, or None if it still runs."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def output(self) -> str:
        """The last lines of stdout and stderr, for error reports."""
        stdout = list(self._tail)[-40:]
        stderr = self.stderr().splitlines()[-40:]
        return "\n".join(["--- stdout (last lines):", *stdout, "--- stderr (last lines):", *stderr])

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL to its whole process group if it lingers (and to what it left behind)."""
        if self.alive:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                log(f"{self.name} (pid {self.pid}) still running {timeout:g} s after SIGTERM: SIGKILL")
        kill_process_group(self.process)
        if self.alive:
            log(f"{self.name} (pid {self.pid}) did not exit after SIGKILL")
        if self in _children:
            _children.remove(self)
            self._keep_log()

    def _keep_log(self) -> None:
        if not _logs:
            return
        stamp = time.strftime("%H%M%S")
        name = re.sub(r"[^\w.-]+", "_", self.name)
        path = _logs[0] / f"{stamp}-{name}-{self.pid}.log"
        command = " ".join(self.command)
        path.write_text(f"$ {command}\n--- stdout:\n" + "\n".join(self._tail) + "\n--- stderr:\n" + self.stderr())


def stop_all_children() -> None:
    """Stop every child still running, the most recent first (generators before their servers)."""
    for child in reversed(list(_children)):
        child.stop()
