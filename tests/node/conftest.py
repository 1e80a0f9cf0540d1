"""Fixtures for node daemon tests: this process as subreaper, whole-tree cleanup."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Iterator

import psutil
import pytest

from supervisor.child import set_child_subreaper

REPO = str(Path(__file__).resolve().parents[2])


def descendants() -> list[psutil.Process]:
    try:
        return psutil.Process().children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_tree() -> None:
    procs = descendants()
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=5)


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll ``pred`` until true or ``timeout``; reap exited children meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        psutil.wait_procs(descendants(), timeout=step)
    return pred()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


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
        from ra import node

        node.stop(timeout=5)
        kill_tree()
