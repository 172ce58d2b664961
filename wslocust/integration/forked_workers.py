"""
Workers that Locust forks (``--processes``, ``WORKERS``) end with the process that forked them.

Locust forks its workers before anything of the run exists, and stops them at exit with an
``atexit`` hook that looks for children still running with ``waitpid(..., WNOHANG)``: a child
still running reads as finished (``(0, 0)`` is taken for its status), so none is signalled. A
master that exits at start (a port taken, a bad option found at ``init``) or is killed therefore
left its workers retrying a master that is gone for five minutes, or running forever once
connected. The kernel ends them instead: ``PR_SET_PDEATHSIG`` sends a forked worker SIGTERM
(Locust's own graceful stop: users closed, bounded by ``close_timeout``) when its parent dies.

Linux only (``prctl``); elsewhere a forked worker behaves as Locust's does.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

__all__ = ["die_with_parent", "end_forked_workers_with_their_parent"]

PR_SET_PDEATHSIG = 1
"""``prctl`` option (linux/prctl.h): the signal this process gets when its parent thread exits."""

_forking_pid: int | None = None


def end_forked_workers_with_their_parent() -> None:
    """
    From now on, every child this process forks gets SIGTERM when this process exits.

    Call it once, before Locust forks (importing a locustfile is early enough: Locust forks after).
    """
    if sys.platform.startswith("linux"):
        os.register_at_fork(before=_remember_parent, after_in_child=_die_with_remembered_parent)


def _remember_parent() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _die_with_remembered_parent() -> None:
    if _forking_pid is not None:
        die_with_parent(_forking_pid)


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> bool:
    """
    Ask the kernel to send ``sig`` to this process when ``parent_pid``, its parent, exits.

    If the parent is already gone (it exited between the fork and this call), ``sig`` is sent now.
    Returns False where ``prctl`` is not available. Safe in a child right after ``fork()``: no
    subprocess, no lock (``ctypes.util.find_library`` would run ``ldconfig``).
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # libc is loaded in every CPython process
    except (OSError, AttributeError):
        return False
    if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)
    return True
