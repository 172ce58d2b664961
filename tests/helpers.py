"""
Helpers shared by the tests: wait on a condition with a deadline, pick a free
port, and run ``wslocust serve`` as a real subprocess.

Tests never sleep for a fixed time: they wait for a condition, with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar

import gevent

__all__ = ["REPO_ROOT", "ServerProcess", "free_port", "master_json_stats", "run_server_process", "wait_for"]

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository root, put on ``PYTHONPATH`` of subprocesses so that they import this checkout."""

T = TypeVar("T")

# python -c this LIMIT serve ...: lower RLIMIT_NOFILE in the child itself (a
# preexec_fn is unsafe in a process with threads), then run ``python -m wslocust``.
_WITH_OPEN_FILES_LIMIT = (
    "import resource, runpy, sys; limit = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)); "
    "runpy.run_module('wslocust', run_name='__main__', alter_sys=True)"
)

_LISTENING = re.compile(
    r"listening on (?P<url>ws://(?P<host>\S+?):(?P<port>\d+)(?P<path>/\S*)) \(stats at (?P<stats>\S+)\)"
)


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "",
) -> T:
    """
    Call ``predicate`` until it returns a true value, and return that value.

    Sleeps with ``gevent.sleep`` between calls, so that greenlets of this
    process (an in-process server, Locust users) keep running.

    Raises:
        AssertionError: ``timeout`` seconds passed first; the message names
            the condition and its last value.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__qualname__", repr(predicate))
            raise AssertionError(
                f"not true within {timeout} s: {what} (last value: {value!r})"
            )
        gevent.sleep(interval)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class ServerProcess:
    """
    A ``wslocust serve`` subprocess, with its output collected line by line.

    Attributes:
        process: the ``subprocess.Popen`` object.
        stdout_lines: lines printed on stdout so far, without line ends.
        stderr_lines: lines printed on stderr so far, without line ends.
        url, port, stats_url: read from the listening line, once
            :meth:`wait_listening` has returned.
    """

    def __init__(self, args: list[str], *, open_files_limit: int | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])
        )
        env["PYTHONUNBUFFERED"] = "1"
        self.args = [sys.executable, "-m", "wslocust", "serve", *args]
        if open_files_limit is not None:
            self.args[1:3] = ["-c", _WITH_OPEN_FILES_LIMIT, str(open_files_limit)]
        self.process = subprocess.Popen(
            self.args,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.url = self.stats_url = ""
        self.port = 0
        # One reader per pipe, so that neither pipe can fill up and block the server.
        self._readers = [
            threading.Thread(
                target=self._collect,
                args=(self.process.stdout, self.stdout_lines),
                daemon=True,
            ),
            threading.Thread(
                target=self._collect,
                args=(self.process.stderr, self.stderr_lines),
                daemon=True,
            ),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(pipe: IO[str], lines: list[str]) -> None:
        for line in pipe:
            lines.append(line.rstrip("\n"))

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait for the listening line and read the URL and port from it."""

        def listening() -> re.Match[str] | None:
            if self.process.poll() is not None:
                self.wait()  # collect its last lines for the message
                raise AssertionError(
                    f"the server exited with {self.process.returncode}\n{self.output()}"
                )
            return next(filter(None, map(_LISTENING.search, self.stdout_lines)), None)

        match = wait_for(
            listening, timeout, interval=0.02, message="the server's listening line"
        )
        self.url, self.stats_url, self.port = (
            match["url"],
            match["stats"],
            int(match["port"]),
        )

    def stats(self) -> dict[str, float]:
        """``GET /stats``, decoded."""
        with urllib.request.urlopen(self.stats_url, timeout=5) as response:
            return json.load(response)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send ``signum`` if it still runs, then :meth:`wait` for it."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.wait(timeout)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit (kill it after ``timeout``) and return its exit code."""
        try:
            wait_for(
                lambda: self.process.poll() is not None,
                timeout,
                interval=0.02,
                message="the server's exit",
            )
        except AssertionError:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            # The pipes reach EOF once the process is gone: collect the last lines.
            for reader in self._readers:
                reader.join(timeout=5)
            for pipe in (self.process.stdout, self.process.stderr):
                if pipe is not None:
                    pipe.close()
        return self.process.returncode

    def output(self) -> str:
        """Everything printed so far, for assertion messages."""
        return "\n".join(["stdout:", *self.stdout_lines, "stderr:", *self.stderr_lines])


@contextmanager
def run_server_process(
    *args: str, timeout: float = 30.0, open_files_limit: int | None = None
) -> Iterator[ServerProcess]:
    """
    Run ``python -m wslocust serve --port 0 *args``; yield it once it listens.

    ``open_files_limit`` sets the subprocess's RLIMIT_NOFILE (soft and hard).
    On exit, stop it with SIGTERM if it still runs (and kill it if it does not
    exit in time).
    """
    server = ServerProcess(["--port", "0", *args], open_files_limit=open_files_limit)
    try:
        server.wait_listening(timeout)
        yield server
    finally:
        server.stop()  # only signals if it still runs; always collects the output


def master_json_stats(stdout: str) -> dict[str, dict]:
    """
    Locust's ``--json`` entries by name, from the master's document.

    With ``--processes`` (or ``WORKERS``) each forked worker prints its own
    empty ``--json`` list on the same stdout, so the non-empty one is taken.
    """
    decoder, index, documents = json.JSONDecoder(), 0, []
    while index < len(stdout):
        if stdout[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(stdout, index)
        documents.append(document)
    [entries] = [document for document in documents if document] or [[]]
    return {entry["name"]: entry for entry in entries}
