"""Spawning helpers for process tests: every process started is killed (with its children) at
teardown, even on failure; readiness and progress are polled with deadlines."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from ra.testing.procs import kill_tree

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, *args: str, log: str | None = None) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out,
                             stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": ROOT})
        self.procs.append(p)
        return p

    def spawn_wal(self, tmp: str, *args: str) -> tuple[subprocess.Popen[bytes], str, str]:
        """A WAL process (``python -m wal.wal``) with its data dir ``tmp/data`` and its mailbox
        at ``ipc://tmp/wal.sock``, plus ``args``; returns ``(process, data_dir, endpoint)``."""
        data = os.path.join(tmp, "data")
        ep = f"ipc://{tmp}/wal.sock"
        p = self.spawn("-m", "wal.wal", "--wal-dir", os.path.join(data, "wal"), "--data-dir",
                       data, "--endpoint", ep, *args)
        return p, data, ep

    def kill(self, p: subprocess.Popen[bytes], sig: int = 9) -> None:
        try:
            os.kill(p.pid, sig)
        except ProcessLookupError:
            pass
        p.wait(10)

    def cleanup(self) -> None:
        for p in self.procs:
            kill_tree(p.pid)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass


def wait_for(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    """Poll ``pred`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def wait_written(mb: Any, log: Any, idx: int, timeout: float, what: str) -> None:
    """Feed the WAL's notices arriving at ``mb`` to ``log`` (a DiskLog) until its last
    written index is ``idx``, or fail after ``timeout`` seconds."""
    def written() -> bool:
        env = mb.recv(0.05)
        while env is not None:
            for ev in log.handle_wal_event(env.payload):
                log.handle_written(ev)
            env = mb.recv(0)
        return bool(log.last_written()[0] == idx)
    wait_for(written, timeout, what)


def wal_overview(mb: Any, endpoint: str, timeout: float = 0.5) -> Any:
    from ra.errors import RaError
    from wal.messages import WalOverview
    try:
        return mb.call(endpoint, WalOverview(), timeout)
    except RaError:
        return None
