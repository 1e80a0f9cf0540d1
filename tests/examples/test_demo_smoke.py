"""``make demo`` as a smoke run: the real demo as a subprocess, with a time limit.

Checks its exit status, a few key lines, and that no process of the run is left behind: every
descendant of the demo seen while it ran (polled), and any process naming its work directory.
Whatever is found is SIGKILLed at the end, even when the test fails. Its speed is not asserted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import psutil
import pytest

from ra.testing.procs import living

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT = 120.0        # seconds; the demo takes ~10 s on an idle 2-core machine


def _naming(workdir: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(workdir in a for a in p.info["cmdline"] or ()) and \
                    p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def _alive(seen: dict[int, float]) -> list[psutil.Process]:
    return living(seen, seen)


def test_demo_runs_and_leaves_nothing_behind(tmp_path: Any) -> None:
    workdir = str(tmp_path / "demo")
    out_path = tmp_path / "demo.out"
    seen: dict[int, float] = {}
    with open(out_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "examples.demo", "--workdir", workdir],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        me = psutil.Process(proc.pid)
        deadline = time.monotonic() + LIMIT
        while proc.poll() is None:
            assert time.monotonic() < deadline, f"demo still running after {LIMIT} s"
            try:
                for c in me.children(recursive=True):
                    seen.setdefault(c.pid, c.create_time())
            except psutil.Error:
                pass
            time.sleep(0.05)
        text = out_path.read_text()
        assert proc.returncode == 0, text
        for needle in ("3 node daemons up", "SIGKILL node", "failover:", "caught up",
                       "add_member", "leave_and_delete_server", "SERVER", "CLUSTER",
                       "processes of this run still alive: 0", "done in"):
            assert needle in text, f"{needle!r} missing from the demo's output:\n{text}"
        assert len(seen) >= 10, f"only {len(seen)} descendants seen (3 daemons and their trees)"
        # the demo waits for its processes; give orphans a moment to be reaped, then check
        t = time.monotonic()
        while (_alive(seen) or _naming(workdir)) and time.monotonic() - t < 5:
            time.sleep(0.05)
        assert not _alive(seen), f"left behind: {_alive(seen)}\n{text}"
        assert not _naming(workdir), f"left behind: {_naming(workdir)}\n{text}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for p in _alive(seen) + _naming(workdir):
            try:
                p.kill()
            except psutil.Error:
                pass
