"""No ra equivalent. Smoke run of the W2 rows of ``make bench`` for the program shapes of
README's "Threads and asyncio": ``python -m bench.w2_shapes --quick`` (8 threads through the
module functions, then 1,000 asyncio tasks on one event loop through ``ra.aio``, 2 s each) as a
subprocess within a time limit; every row has a figure, no call failed, and no process of the
run is left behind. Not a speed test."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import psutil
import pytest

from tests.bench.test_bench_smoke import ROOT, _marked

__all__: list[str] = []

pytestmark = pytest.mark.integration

LIMIT = 120.0


@pytest.mark.timeout(LIMIT + 30)
def test_w2_threads_and_asyncio_rows() -> None:
    tag = uuid.uuid4().hex
    before = {c.pid for c in psutil.Process().children()}
    env = dict(os.environ, RA_BENCH_SMOKE=tag)
    proc = subprocess.Popen([sys.executable, "-m", "bench.w2_shapes", "--quick"], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        proc.kill()
        text, _ = proc.communicate()
        pytest.fail(f"python -m bench.w2_shapes --quick took more than {LIMIT} s:\n{text[-4000:]}")
    finally:
        left = _marked(tag)
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)
        _reap_orphans(before)
    assert proc.returncode == 0, text[-4000:]
    assert not left, f"processes left behind: {[(p.pid, p.name()) for p in left]}"
    rows = {(r["workload"], r["metric"]): r for r in
            (json.loads(ln) for ln in text.splitlines() if ln.startswith("{"))}
    for wl in ("W2 threads", "W2 asyncio"):
        for metric in ("ops/s", "p50", "p99"):
            assert rows[(wl, metric)]["value"] > 0, rows
        assert ", 0 errors" in rows[(wl, "ops/s")]["note"], rows[(wl, "ops/s")]
    assert "1000 tasks on one event loop" in rows[("W2 asyncio", "ops/s")]["note"]


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
