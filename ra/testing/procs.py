"""Process-tree helpers for tests, benchmarks and examples. No ra equivalent.

Every test, benchmark and demo that starts node daemons must leave no process behind, even when
it fails: these are the shared pieces (psutil).
"""
from __future__ import annotations

import os
import signal

import psutil

__all__ = ["tree_pids", "kill_tree"]


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (empty if it is gone)."""
    try:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_tree(pid: int, sig: int = signal.SIGKILL, timeout: float = 5.0) -> list[int]:
    """Send ``sig`` to ``pid`` and every descendant; wait (bounded) until they are gone, reaping
    the caller's own children so none lingers as a zombie. Returns the pids signalled."""
    pids = tree_pids(pid)
    procs = []
    for p in pids:
        try:
            proc = psutil.Process(p)
            procs.append(proc)
            proc.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    _reap(pids)
    psutil.wait_procs(procs, timeout=timeout)
    _reap(pids)
    return pids


def _reap(pids: list[int]) -> None:
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass
