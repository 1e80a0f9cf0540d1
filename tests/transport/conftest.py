"""Fixtures for transport tests: peer processes that are always reaped, with their children."""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ra.testing.procs import kill_tree

REPO = Path(__file__).resolve().parents[2]


def wait_until(cond: Callable[[], object], timeout: float = 5.0, interval: float = 0.005) -> object:
    """Poll ``cond`` until truthy or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {cond}")
        time.sleep(interval)


class Peers:
    """Starts ``python -m tests.transport.peer MODE ENDPOINT`` processes; kills them all at
    teardown, whatever happened."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, mode: str, endpoint: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
        p = subprocess.Popen(
            [sys.executable, "-m", "tests.transport.peer", mode, endpoint, *extra],
            stdout=subprocess.PIPE, text=True, cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.procs.append(p)
        assert p.stdout is not None
        # The peer prints its address once bound; never wait on a hung peer forever.
        ready, _, _ = select.select([p.stdout], [], [], 20)
        line = p.stdout.readline().strip() if ready else ""
        if not line:
            kill_tree(p.pid)
            p.wait(5)
            raise RuntimeError(f"peer {mode} {endpoint} failed to start (rc={p.returncode})")
        return p, line

    def kill(self, p: subprocess.Popen[str]) -> None:
        kill_tree(p.pid)
        p.wait(5)

    def cleanup(self) -> None:
        for p in self.procs:
            kill_tree(p.pid)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
            if p.stdout:
                p.stdout.close()


@pytest.fixture
def peers() -> Iterator[Peers]:
    ps = Peers()
    try:
        yield ps
    finally:
        ps.cleanup()


@pytest.fixture
def ipc_dir() -> Iterator[Path]:
    """A short per-test directory for ipc sockets. Not under ``tmp_path``: its paths grow with
    the test name and would pass the 107-byte sun_path limit."""
    d = Path(tempfile.mkdtemp(prefix="ra-t-", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)
