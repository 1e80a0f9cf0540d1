"""Fixtures for real-process supervisor tests: loop, fork server, whole-tree cleanup."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from supervisor import ForkServer, Loop

REPO = str(Path(__file__).resolve().parents[2])


def kill_tree(root: psutil.Process | None = None) -> None:
    """SIGKILL every descendant of ``root`` (default: this process) and reap them."""
    root = root or psutil.Process()
    try:
        procs = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=5)


@pytest.fixture
def cleanup() -> Iterator[None]:
    """Kill and reap the whole process tree under the test, even when it fails."""
    try:
        yield
    finally:
        kill_tree()


@pytest.fixture
def loop(cleanup: None) -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


@pytest.fixture
def forkserver(cleanup: None) -> Iterator[ForkServer]:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    fs = ForkServer(preload=["tests.supervisor.children"], env=env)
    fs.start()
    yield fs
    fs.stop()
