"""No ra equivalent. Smoke run of ``make bench QUICK=1``: ``python -m bench --quick`` as a
subprocess within a time limit; its exit status, its JSON file, and that no process of the run
is left behind (every process it started carries a marker in its environment, so even one
reparented to init after its parent died is found). Not a speed test.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from bench.__main__ import SUITES

__all__: list[str] = []

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT = 540.0   # QUICK takes ~1-2 minutes on 2 busy cores, plus ~1-2 for the security suite


def _marked(tag: str) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.environ().get("RA_BENCH_SMOKE") == tag:
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


@pytest.mark.timeout(LIMIT + 60)
def test_bench_quick(tmp_path: object) -> None:
    tag = uuid.uuid4().hex
    out = os.path.join(str(tmp_path), "bench.json")
    env = dict(os.environ, RA_BENCH_SMOKE=tag, RA_BENCH_ERLANG="0")   # its own test below
    # every suite but security, which tests/bench/test_security_smoke.py runs on its own
    # (its quick run alone is a minute of alternated PLAIN/CURVE clusters), and w2_long, which
    # --quick skips (tests/bench/test_w2_long_smoke.py runs it for 20 s)
    alone = {"security", "w2_long"}
    only = [a for s in SUITES if s not in alone for a in ("--only", s)]
    proc = subprocess.Popen([sys.executable, "-m", "bench", "--quick", "--out", out, *only],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        text, _ = proc.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        for p in _marked(tag):
            p.kill()
        proc.kill()
        text, _ = proc.communicate()
        pytest.fail(f"python -m bench --quick took more than {LIMIT} s:\n{text[-4000:]}")
    finally:
        # whatever happened, leave nothing behind ourselves
        time.sleep(0.5)
        left = _marked(tag)
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)
    assert proc.returncode == 0, text[-4000:]
    assert not left, f"processes left behind: {[(p.pid, p.name()) for p in left]}"
    with open(out) as f:
        res = json.load(f)
    assert res["quick"] is True and not res["failed"]
    suites = {r["suite"] for r in res["rows"]}
    assert set(SUITES) - alone <= suites, suites
    w7 = {r["metric"]: r["value"] for r in res["rows"] if r["suite"] == "scale"}
    assert w7["commands/s, pipelined"] > 0 and w7["USS per server"] > 0, w7
    assert w7["WAL fsyncs/s per node"] > 0 and w7["start all"] > 0, w7
    ours = {(r["workload"], r["metric"]): r for r in res["rows"] if r["suite"] == "raft"}
    assert any(m == "commands/s" and r["value"] for (w, m), r in ours.items())
    assert "[ours] W1" in text and "JSON:" in text
