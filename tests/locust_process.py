"""
Locust's command line in tests: one process, ``--processes N``, or a master and its workers.

Every test that starts Locust goes through :class:`LocustProcess`, or
:func:`run_locust` and :func:`master_and_workers`, built on it. Each run

- gets free ports: the master's (``--master-bind-port`` and ``--master-port``),
  the web UI's (``--web-port``) and the embedded reference server's
  (``WS_EMBEDDED_PORT=0``: any free one), so that the suite passes while a
  demo on the same machine holds the defaults 5557, 8089 and 3003;
- starts without the suite's environment variables (the shell's demo
  settings), with this checkout importable;
- runs in a session of its own: the process and every worker it forks are
  one process group;
- writes its output to files: no pipe fills up, and no forked worker that
  outlives its master holds one open (one once hung the whole suite);
- is waited for with a deadline, and its whole group is killed when the
  deadline passes, and in any case once the test is done with it.
"""

from __future__ import annotations

import re
import subprocess
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from helpers import REPO_ROOT, subprocess_environment, with_open_files_limit

from benchmarks.processes import CapturedProcess, free_port, json_documents, wait_for_group

__all__ = [
    "LocustProcess",
    "LocustResult",
    "kill_leftovers",
    "locust_environment",
    "master_and_workers",
    "master_json_stats",
    "run_locust",
]

_EMBEDDED = re.compile(r"started the embedded reference server at (ws://\S+)")
_started: weakref.WeakSet[LocustProcess] = weakref.WeakSet()


def locust_environment(env: dict[str, str] | None = None, *, embedded_port: int | None = 0) -> dict[str, str]:
    """
    The environment of a Locust run: :func:`~helpers.subprocess_environment`, the embedded
    reference server on ``embedded_port`` (0: any free port; None: its default, 3003), then ``env``.
    """
    extra = {} if embedded_port is None else {"WS_EMBEDDED_PORT": str(embedded_port)}
    return subprocess_environment({**extra, **(env or {})})


def master_json_stats(stdout: str) -> dict[str, dict]:
    """
    Locust's ``--json`` entries by name, from the master's document.

    With ``--processes`` (or ``WORKERS``) each forked worker prints its own
    empty ``--json`` list on the same stdout, so the non-empty one is taken.
    """
    documents = json_documents(stdout)
    [entries] = [document for document in documents if document] or [[]]
    return {entry["name"]: entry for entry in entries}


@dataclass
class LocustResult:
    """A finished Locust run."""

    returncode: int
    stdout: str
    stderr: str
    elapsed: float
    """Seconds from its start until it and every worker it forked had exited."""

    @property
    def stats(self) -> dict[str, dict]:
        """Locust's ``--json`` entries by request name (:func:`master_json_stats`)."""
        return master_json_stats(self.stdout)


class LocustProcess(CapturedProcess):
    """
    ``python -m locust ARGS`` in a session of its own, its output in files.

    Args:
        args: Locust's arguments, ``-f LOCUSTFILE`` included.
        env: environment variables of the run, over :func:`locust_environment`'s.
        name: names it in messages and its output files.
        folder: where its output files go (default: a temporary folder).
        free_ports: add ``--master-bind-port`` and ``--master-port`` (one free
            port), ``--web-port`` (another) and ``--web-host 127.0.0.1``, each
            unless ``args`` has it; never to a ``--worker``, which is given its
            master's port.
        embedded_port: the embedded reference server's port, for a run
            without a target (0: any free port; None: its default, 3003).
        open_files_limit: RLIMIT_NOFILE of the process (soft and hard).
        prefix: a command that runs the rest, e.g. ``ip netns exec NAME``.

    Attributes:
        master_port: the port the master binds (or a worker connects to), if known.
        web_port: the web UI's port, if known.
    """

    def __init__(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        name: str = "locust",
        folder: Path | None = None,
        free_ports: bool = True,
        embedded_port: int | None = 0,
        open_files_limit: int | None = None,
        prefix: Sequence[str] = (),
    ) -> None:
        arguments = list(args)
        if free_ports and "--worker" not in arguments:
            arguments += _free_port_options(arguments)
        self.master_port = _option(arguments, "--master-bind-port") or _option(arguments, "--master-port")
        self.web_port = _option(arguments, "--web-port")
        argv = [*prefix, *with_open_files_limit("locust", open_files_limit), *arguments]
        super().__init__(
            name, argv, env=locust_environment(env, embedded_port=embedded_port), cwd=REPO_ROOT, folder=folder
        )
        _started.add(self)

    @property
    def web_url(self) -> str:
        """The web UI's address."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def stats(self) -> dict[str, dict]:
        """Locust's ``--json`` entries by request name, once it has exited."""
        return master_json_stats(self.stdout)

    def embedded_url(self) -> str | None:
        """The embedded reference server's URL, once the run has logged that it started it."""
        match = self.find(_EMBEDDED.pattern)
        return match[1] if match else None

    def wait(self, timeout: float = 60.0) -> int:
        """
        Wait until it and every worker it forked have exited; its exit code.

        Raises:
            AssertionError: that took more than ``timeout`` seconds; its whole
                process group is killed first.
        """
        try:
            return wait_for_group(self.popen, timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"{self.name} did not exit within {timeout:g} s: {' '.join(self.argv)}\n{self.output(60)}"
            ) from None

    def result(self) -> LocustResult:
        """What it printed and its exit code, once it has exited."""
        assert self.returncode is not None, f"{self.name} still runs"
        return LocustResult(self.returncode, self.stdout, self.stderr, time.monotonic() - self.started)


def run_locust(*args: str, timeout: float = 60.0, **options) -> LocustResult:
    """
    Run ``python -m locust ARGS`` (a :class:`LocustProcess` with ``options``) until it and every
    worker it forked have exited, at most ``timeout`` seconds (then kill them all and fail).
    """
    process = LocustProcess(*args, **options)
    try:
        process.wait(timeout)
        return process.result()
    finally:
        process.kill()  # nothing of it outlives the test, whatever happened


@contextmanager
def master_and_workers(
    *master_args: str,
    locustfile: str | Path,
    workers: int = 2,
    common: Sequence[str] = (),
    env: dict[str, str] | None = None,
    folder: Path | None = None,
    embedded_port: int | None = 0,
) -> Iterator[tuple[LocustProcess, list[LocustProcess]]]:
    """
    A master (``--master``, on a free loopback port) and ``workers`` worker processes (``--worker``)
    of ``locustfile``; ``common`` are arguments of all of them. Yields (master, workers) once
    started; every one of them is killed with its group on exit.
    """
    base = ["-f", str(locustfile), *common]
    master = LocustProcess(
        *base, "--master", "--master-bind-host", "127.0.0.1", *master_args,
        env=env, name="master", folder=folder, embedded_port=embedded_port,
    )  # fmt: skip
    started = [master]
    try:
        worker = [*base, "--worker", "--master-port", str(master.master_port)]
        for number in range(1, workers + 1):
            started.append(LocustProcess(*worker, env=env, name=f"worker{number}", folder=folder))
        yield master, started[1:]
    finally:
        for process in started:
            process.kill()


def kill_leftovers() -> list[str]:
    """Kill (with its group) every :class:`LocustProcess` still running; their names. Called after each test."""
    leftovers = [process for process in list(_started) if process.running()]
    for process in leftovers:
        process.kill()
    return [process.name for process in leftovers]


def _option(arguments: list[str], name: str) -> int | None:
    return int(arguments[arguments.index(name) + 1]) if name in arguments else None


def _free_port_options(arguments: list[str]) -> list[str]:
    """The free-port options ``arguments`` lacks (see :class:`LocustProcess`)."""
    added: list[str] = []
    if "--master-bind-port" not in arguments:
        port = str(_option(arguments, "--master-port") or free_port())
        added += ["--master-bind-port", port]
    if "--master-port" not in arguments:
        added += ["--master-port", str(_option(arguments, "--master-bind-port") or added[1])]
    if "--web-port" not in arguments:
        added += ["--web-port", str(free_port())]
    if "--web-host" not in arguments:
        added += ["--web-host", "127.0.0.1"]
    return added
