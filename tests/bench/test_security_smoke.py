"""No ra equivalent. Smoke run of the ``security`` suite of ``make bench`` (W1-W3 with PLAIN and
with CURVE, ``bench/security.py``) at toy sizes: each mode runs on its own cluster in a child
process selecting its transport, and every row carries a CURVE figure and a PLAIN one. Not a
speed test."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

__all__: list[str] = []

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.timeout(300)
def test_security_suite_rows() -> None:
    p = subprocess.run([sys.executable, "-m", "bench.security", "--smoke"], cwd=ROOT,
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    rows = [json.loads(ln) for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert [(r["workload"], r["metric"]) for r in rows] == [
        ("W1 CURVE vs PLAIN", "p50"), ("W1 CURVE vs PLAIN", "ops/s"),
        ("W2 CURVE vs PLAIN", "ops/s"), ("W2 CURVE vs PLAIN", "p50"),
        ("W2 CURVE vs PLAIN", "cluster CPU µs/cmd"), ("W2 CURVE vs PLAIN", "client CPU µs/cmd"),
        ("W2 threads CURVE vs PLAIN", "ops/s"), ("W3 CURVE vs PLAIN", "commands/s")]
    for r in rows:
        for k in ("value", "peer"):
            assert isinstance(r[k], (int, float)) and r[k] > 0 and not math.isnan(r[k]), r
    # each mode ran (the suite checks that its child's connections ran that mechanism)
    assert "[plain]" in p.stdout and "[curve]" in p.stdout
