"""
Helpers shared by the tests: wait on a condition with a deadline, the
environment of a subprocess, and ``wslocust serve`` as a real subprocess.

Tests never sleep for a fixed time: they wait for a condition, with a deadline.
The generic process helpers (a session of its own, stopping a whole process
group, output in files) are :mod:`benchmarks.processes`'; Locust's command
line is :mod:`locust_process`'.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import gevent

from benchmarks.processes import CapturedProcess, free_port, wait_until

__all__ = [
    "REPO_ROOT",
    "SUITE_VARIABLES",
    "ServerProcess",
    "free_port",
    "run_server_process",
    "subprocess_environment",
    "wait_for",
    "with_open_files_limit",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository root, put on ``PYTHONPATH`` of subprocesses so that they import this checkout."""

SUITE_VARIABLES = (
    "WS_",
    "LOCUST_",
    "WORKERS",
    "TARGET_CONNECTIONS",
    "RAMP_UP_TIME",
    "TEST_DURATION",
    "MESSAGE_INTERVAL",
)
"""Prefixes of the environment variables that change what wslocust and Locust do: a test's subprocess
starts without them (the machine's shell may have set them for a demo) and gets only those it asks for."""

T = TypeVar("T")


class _Watched(Protocol):
    name: str

    def running(self) -> bool: ...

    def output(self, tail: int | None = None) -> str: ...


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str = "",
    processes: Iterable[_Watched] = (),
) -> T:
    """
    Call ``predicate`` until it returns a true value, and return that value.

    Sleeps with ``gevent.sleep`` between calls, so that greenlets of this
    process (an in-process server, Locust users) keep running.

    Args:
        processes: processes the condition depends on (a
            :class:`~benchmarks.processes.CapturedProcess`, a
            :class:`~locust_process.LocustProcess`): if one exits first, fail
            at once with its output rather than wait for the deadline.

    Raises:
        AssertionError: ``timeout`` seconds passed first (the message names
            the condition and its last value), or one of ``processes`` exited.
    """
    watched = list(processes)
    last: list[Any] = [None]

    def condition() -> Any:
        last[0] = value = predicate()
        if not value:
            for process in watched:
                if not process.running():
                    what = message or getattr(predicate, "__qualname__", repr(predicate))
                    raise AssertionError(f"{process.name} exited while waiting for {what}\n{process.output(60)}")
        return value

    value = wait_until(condition, timeout, interval, sleep=gevent.sleep)
    if not value:
        what = message or getattr(predicate, "__qualname__", repr(predicate))
        details = "".join(f"\n{process.output(25)}" for process in watched)
        raise AssertionError(f"not true within {timeout} s: {what} (last value: {last[0]!r}){details}")
    return value


def subprocess_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """
    This process's environment for a subprocess of a test: without :data:`SUITE_VARIABLES`,
    with this checkout importable and unbuffered output, then ``env``.
    """
    environment = {name: value for name, value in os.environ.items() if not name.startswith(SUITE_VARIABLES)}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    environment["PYTHONUNBUFFERED"] = "1"
    environment.update(env or {})
    return environment


# python -c this LIMIT ARGS...: lower RLIMIT_NOFILE in the child itself (a preexec_fn is
# unsafe in a process with threads), then run the module as ``python -m`` would.
_WITH_OPEN_FILES_LIMIT = (
    "import resource, runpy, sys; module = sys.argv.pop(1); limit = int(sys.argv.pop(1)); "
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)); "
    "runpy.run_module(module, run_name='__main__', alter_sys=True)"
)


def with_open_files_limit(module: str, limit: int | None) -> list[str]:
    """
    The start of the command line of ``python -m MODULE`` in a process whose open-files limit
    (soft and hard: the process cannot raise it) is ``limit``; None leaves it unchanged.
    """
    if limit is None:
        return [sys.executable, "-m", module]
    return [sys.executable, "-c", _WITH_OPEN_FILES_LIMIT, module, str(limit)]


_LISTENING = re.compile(
    r"listening on (?P<url>wss?://(?P<host>\S+?):(?P<port>\d+)(?P<path>/\S*)) \(stats at (?P<stats>\S+)\)"
)


class ServerProcess(CapturedProcess):
    """
    A ``wslocust serve`` subprocess, in a session of its own, its output in files.

    Attributes:
        process: the ``subprocess.Popen`` object.
        url, port, stats_url: read from the listening line, once
            :meth:`wait_listening` has returned.
    """

    def __init__(self, args: list[str], *, open_files_limit: int | None = None) -> None:
        super().__init__(
            "wslocust serve",
            [*with_open_files_limit("wslocust", open_files_limit), "serve", *args],
            env=subprocess_environment(),
            cwd=REPO_ROOT,
        )
        self.process = self.popen
        self.url = self.stats_url = ""
        self.port = 0

    @property
    def stdout_lines(self) -> list[str]:
        """Lines printed on stdout so far, without line ends."""
        return self.lines("stdout")

    @property
    def stderr_lines(self) -> list[str]:
        """Lines printed on stderr so far, without line ends."""
        return self.lines("stderr")

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Wait for the listening line and read the URL and port from it."""

        def listening() -> re.Match[str] | None:
            return next(filter(None, map(_LISTENING.search, self.stdout_lines)), None)

        match = wait_for(listening, timeout, interval=0.02, message="the server's listening line", processes=[self])
        self.url, self.stats_url, self.port = match["url"], match["stats"], int(match["port"])

    def stats(self) -> dict[str, float]:
        """``GET /stats``, decoded."""
        with urllib.request.urlopen(self.stats_url, timeout=5) as response:
            return json.load(response)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int:  # type: ignore[override]
        """Send ``signum`` if it still runs, wait for it (kill its group after ``timeout``); its exit code."""
        super().stop(timeout, signum)
        return self.process.returncode

    def wait(self, timeout: float = 30.0) -> int:
        """
        Wait for the process to exit and return its exit code.

        Raises:
            AssertionError: it still ran after ``timeout`` seconds (it is killed).
        """
        try:
            return super().wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the server did not exit within {timeout} s\n{self.output()}") from None


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
        server.stop()  # only signals if it still runs; kills what is left of its group
