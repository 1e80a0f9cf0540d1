"""Fixtures for node daemon tests: this process as subreaper, whole-tree cleanup."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from ra.testing.procs import alive, descendants, kill_descendants
from supervisor.child import set_child_subreaper

__all__ = ["REPO", "alive", "descendants", "wait_for"]

REPO = str(Path(__file__).resolve().parents[2])


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``pred`` until true or ``timeout``; reap exited children meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        psutil.wait_procs(descendants(), timeout=step)
    return pred()


@pytest.fixture(autouse=True)
def node_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Orphans of the daemons under test reparent to this process (subreaper), so the cleanup
    sees and reaps every one; tests/ is importable by the daemon's fork server."""
    set_child_subreaper()
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.chdir(REPO)
    try:
        yield
    finally:
        from ra.node import daemon as node

        node.stop(timeout=5)
        kill_descendants()
