"""
Processes in a session of their own: start one, wait on a condition with a
deadline, stop it with everything it forked.

The one place for these helpers: the benchmarks and the tests
(``from benchmarks.processes import ...``) both use them.

- :func:`start_in_session` makes a command the leader of a new session, so
  that it and every process it forks (Locust's ``--processes`` workers) form
  one process group, out of reach of the terminal's Ctrl-C;
  :func:`stop_process_group` asks the leader to stop, then kills whatever of
  the group is left; :func:`kill_process_group` kills it at once;
  :func:`wait_for_group` waits until every member has exited.
- :class:`CapturedProcess` is such a process with its stdout and stderr in
  files, read on demand.
- :func:`wait_until` polls a condition until a deadline; :func:`free_port`
  picks a TCP port.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil

__all__ = [
    "CapturedProcess",
    "free_port",
    "group_members",
    "json_documents",
    "kill_process_group",
    "start_in_session",
    "stop_process_group",
    "wait_for_group",
    "wait_until",
]

T = TypeVar("T")


def json_documents(text: str) -> list[Any]:
    """Every JSON document in ``text``, in order: Locust's ``--json`` with ``--processes`` prints one per process."""
    decoder, index, documents = json.JSONDecoder(), 0, []
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        document, index = decoder.raw_decode(text, index)
        documents.append(document)
    return documents


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that was free a moment ago (another process may take it before the caller)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.1, sleep: Callable[[float], Any] = time.sleep
) -> T | None:
    """
    Call ``predicate`` until it returns a true value, at most ``timeout`` seconds.

    Args:
        predicate: the condition; called at least once.
        timeout: seconds until the deadline.
        interval: seconds between two calls.
        sleep: how to wait between two calls (``gevent.sleep`` lets this
            process's greenlets run in a process gevent has not patched).

    Returns:
        The predicate's first true value, or None when the deadline passed first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        sleep(interval)


# Process groups ----------------------------------------------------------------------


def start_in_session(argv: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
    """
    Start ``argv`` as the leader of a new session (and of a new process group), stdin from /dev/null.

    Everything it forks stays in its group, so that :func:`stop_process_group`
    ends all of it; a Ctrl-C in the terminal reaches only the caller, which stops it in order.

    Args:
        argv: the command.
        options: more arguments of :class:`subprocess.Popen` (env, cwd, stdout, ...).
    """
    return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, start_new_session=True, **options)


def group_members(pgid: int) -> list[int]:
    """The pids of the processes of group ``pgid`` that still run (zombies left out)."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (OSError, psutil.Error):
            continue  # gone meanwhile
    return members


def kill_process_group(process: subprocess.Popen[Any], reap_timeout: float = 5.0) -> None:
    """SIGKILL every process of the group ``process`` leads (what it forked included), then reap ``process``."""
    # The group is the session this child leads: only what we started.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(reap_timeout)


def stop_process_group(
    process: subprocess.Popen[Any], timeout: float = 10.0, signum: int = signal.SIGTERM
) -> int | None:
    """
    Stop ``process`` and its group: ``signum`` to it if it still runs, up to
    ``timeout`` seconds for it to exit, then SIGKILL to whatever of its group
    is left (all of it if it did not exit).

    Returns:
        Its exit code (negative: the signal that ended it), or None if it could not be reaped.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    kill_process_group(process)
    return process.returncode


def wait_for_group(process: subprocess.Popen[Any], timeout: float) -> int:
    """
    Wait until ``process`` and every other process of its group have exited.

    Returns:
        The exit code of ``process``.

    Raises:
        subprocess.TimeoutExpired: ``timeout`` seconds passed first.
    """
    deadline = time.monotonic() + timeout
    code = process.wait(timeout)
    if wait_until(lambda: not group_members(process.pid), deadline - time.monotonic(), interval=0.05) is None:
        raise subprocess.TimeoutExpired(process.args, timeout)
    return code


# A process with its output in files ----------------------------------------------------


class CapturedProcess:
    """
    A command in a session of its own, its stdout and stderr written to files and read when asked.

    Files rather than pipes: no pipe can fill up and block the process, and a
    forked child that outlives its parent holds no pipe that a reader waits on.

    Args:
        name: names it in messages (and its files), e.g. ``master@w0``.
        argv: the command.
        env: its environment (default: this process's).
        cwd: its working directory.
        folder: where to write ``NAME.out`` and ``NAME.err``; by default a
            temporary folder, removed with this object.

    Attributes:
        name, argv: as given.
        popen: the :class:`subprocess.Popen`.
        stdout_path, stderr_path: the files its output goes to.
        started: ``time.monotonic()`` when it was started.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        folder: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self._temporary = None
        if folder is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="captured-")  # removed with this object
            folder = Path(self._temporary.name)
        stem = base = re.sub(r"[^\w.@-]+", "_", name)
        taken = 1
        while (folder / f"{stem}.err").exists():  # another process of the same name in this folder
            taken += 1
            stem = f"{base}-{taken}"
        self.stdout_path, self.stderr_path = folder / f"{stem}.out", folder / f"{stem}.err"
        with open(self.stdout_path, "w") as stdout, open(self.stderr_path, "w") as stderr:
            self.popen = start_in_session(self.argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
        self.started = time.monotonic()

    def __enter__(self) -> CapturedProcess:  # noqa: PYI034  (Python 3.10: no typing.Self)
        return self

    def __exit__(self, *_: object) -> None:
        """Leave nothing running: SIGKILL to its group if any of it still runs."""
        self.kill()

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    @property
    def stdout(self) -> str:
        """Everything it printed on stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        """Everything it printed on stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def lines(self, stream: str = "stderr") -> list[str]:
        """The lines of ``stream`` (``"stdout"`` or ``"stderr"``) so far."""
        return getattr(self, stream).splitlines()

    def find(self, pattern: str, stream: str = "stderr") -> re.Match[str] | None:
        """The first match of ``pattern`` in a line of ``stream``, or None."""
        regex = re.compile(pattern)
        return next(filter(None, map(regex.search, self.lines(stream))), None)

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> int:
        """
        Wait for it to exit by itself and return its exit code.

        Raises:
            subprocess.TimeoutExpired: it still runs after ``timeout`` seconds.
        """
        return self.popen.wait(timeout)

    def stop(self, timeout: float = 10.0, signum: int = signal.SIGTERM) -> int | None:
        """:func:`stop_process_group`: ``signum``, then SIGKILL to its group after ``timeout``; its exit code."""
        return stop_process_group(self.popen, timeout, signum)

    def kill(self) -> None:
        """SIGKILL to its whole group at once."""
        kill_process_group(self.popen)

    def output(self, tail: int | None = None) -> str:
        """Its stdout and stderr (their last ``tail`` lines if given), for assertion messages."""
        stdout, stderr = self.lines("stdout"), self.lines("stderr")
        if tail is not None:
            stdout, stderr = stdout[-tail:], stderr[-tail:]
        return "\n".join([f"--- {self.name} (pid {self.pid}) stdout:", *stdout, "--- stderr:", *stderr])
