"""Process-tree helpers for tests, benchmarks and examples. No ra equivalent.

Every test, benchmark and demo that starts processes must leave none behind, even when it fails:
these are the shared pieces (psutil), used by every conftest, ``bench/`` and ``examples/``.

* :func:`tree_pids` / :func:`descendants`: who is there (a process and its descendants; the
  descendants of this process);
* :func:`kill_tree` / :func:`kill_descendants` / :func:`signal_pids`: SIGKILL (or another
  signal) them, then wait, bounded, until they are gone, reaping our own children;
* :func:`alive` / :func:`living`: running and not a zombie (a dead child not yet reaped).
"""
from __future__ import annotations

import os
import signal
from collections.abc import Iterable

import psutil

__all__ = ["tree_pids", "descendants", "processes", "signal_pids", "kill_tree",
           "kill_descendants", "alive", "living"]


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (empty if it is gone)."""
    try:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every descendant of ``pid`` (default: this process); empty if it is gone."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def processes(pids: Iterable[int]) -> list[psutil.Process]:
    """psutil handles of the ``pids`` that still exist."""
    out = []
    for pid in pids:
        try:
            out.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    return out


def signal_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to each of ``pids``, skipping those already gone. Does not wait."""
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_tree(pid: int, sig: int = signal.SIGKILL, timeout: float = 5.0) -> list[int]:
    """Send ``sig`` to ``pid`` and every descendant; wait (bounded) until they are gone, reaping
    the caller's own children so none lingers as a zombie. Returns the pids signalled."""
    pids = tree_pids(pid)
    _signal_and_wait(pids, sig, timeout)
    return pids


def kill_descendants(pid: int | None = None, sig: int = signal.SIGKILL,
                     timeout: float = 5.0) -> list[int]:
    """:func:`kill_tree` of every descendant of ``pid`` (default: this process), sparing
    ``pid`` itself. Returns the pids signalled."""
    pids = [p.pid for p in descendants(pid)]
    _signal_and_wait(pids, sig, timeout)
    return pids


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def living(pids: Iterable[int], born: dict[int, float] | None = None) -> list[psutil.Process]:
    """The live (non-zombie) processes among ``pids``; with ``born`` (pid -> create time), a pid
    reused by an unrelated process since is not counted."""
    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            if born is not None and pid in born and abs(p.create_time() - born[pid]) > 0.01:
                continue
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _signal_and_wait(pids: list[int], sig: int, timeout: float) -> None:
    procs = processes(pids)
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    _reap(pids)
    psutil.wait_procs(procs, timeout=timeout)
    _reap(pids)


def _reap(pids: list[int]) -> None:
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass
