"""Fixtures for real-process supervisor tests: loop, fork server, whole-tree cleanup."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ra.testing.procs import kill_descendants
from supervisor import ForkServer, Loop

REPO = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def cleanup() -> Iterator[None]:
    """Kill and reap the whole process tree under the test, even when it fails."""
    try:
        yield
    finally:
        kill_descendants()


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
