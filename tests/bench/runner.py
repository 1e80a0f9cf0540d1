"""No ra equivalent. Runs a bench command for the bench smoke tests: as a subprocess of its own
session, within a time limit, and with a marker in its environment that every process it starts
inherits, so that whatever the run leaves behind (even a process reparented to init after its
parent died) is found, killed, and reported."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import psutil
import pytest

__all__ = ["ROOT", "marked", "run_bench"]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def marked(tag: str) -> list[psutil.Process]:
    """The live processes whose environment carries ``RA_BENCH_SMOKE=tag``."""
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("RA_BENCH_SMOKE") == tag:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def run_bench(args: list[str], limit: float, env: dict[str, str] | None = None) -> str:
    """``python *args`` from the repository's root; returns its output (stdout and stderr).
    Fails the test if it runs over ``limit`` seconds, exits non-zero, or leaves a process
    behind (each one is killed first)."""
    tag = uuid.uuid4().hex
    before = {c.pid for c in psutil.Process().children()}
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT,
                            env=dict(os.environ, **(env or {}), RA_BENCH_SMOKE=tag),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    timed_out = False
    try:
        text, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        for p in marked(tag):
            p.kill()
        proc.kill()
        text, _ = proc.communicate()
    finally:
        # whatever happened, leave nothing behind ourselves (a last exit may still be going on)
        time.sleep(0.5)
        left = marked(tag)
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)
        _reap_orphans(before)
    if timed_out:
        pytest.fail(f"python {' '.join(args)} took more than {limit} s:\n{text[-4000:]}")
    # a failed suite's lines first: the tail alone is the summary table
    failures = [ln for ln in text.splitlines() if "FAILED" in ln or "Error" in ln][:20]
    assert proc.returncode == 0, "\n".join(failures) + "\n...\n" + text[-4000:]
    assert not left, f"processes left behind: {[(p.pid, p.name()) for p in left]}"
    return text


def _reap_orphans(before: set[int]) -> None:
    """When this process is a subreaper (tests/node's fixtures make it one), the run's
    processes killed after their parent exited are our children now: reap the zombies."""
    for c in psutil.Process().children():
        if c.pid in before:
            continue
        try:
            if c.status() == psutil.STATUS_ZOMBIE:
                c.wait(0)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired, ChildProcessError):
            pass
