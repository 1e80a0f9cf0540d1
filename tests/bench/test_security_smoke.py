"""No ra equivalent. Smoke run of the ``security`` suite of ``make bench`` (W1-W3 with PLAIN and
with CURVE, ``bench/security.py``) at toy sizes: each mode runs on its own cluster in a child
process selecting its transport, and every row carries a CURVE figure and a PLAIN one; nothing of
the run is left behind (``tests.bench.runner``). Not a speed test."""
from __future__ import annotations

import json
import math

import pytest

from tests.bench.runner import run_bench

__all__: list[str] = []

pytestmark = pytest.mark.integration


@pytest.mark.timeout(300)
def test_security_suite_rows() -> None:
    out = run_bench(["-m", "bench.security", "--smoke"], 240)
    rows = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    assert [(r["workload"], r["metric"]) for r in rows] == [
        ("W1 CURVE vs PLAIN", "p50"), ("W1 CURVE vs PLAIN", "ops/s"),
        ("W2 CURVE vs PLAIN", "ops/s"), ("W2 CURVE vs PLAIN", "p50"),
        ("W2 CURVE vs PLAIN", "cluster CPU µs/cmd"), ("W2 CURVE vs PLAIN", "client CPU µs/cmd"),
        ("W2 threads CURVE vs PLAIN", "ops/s"), ("W3 CURVE vs PLAIN", "commands/s")]
    for r in rows:
        for k in ("value", "peer"):
            assert isinstance(r[k], (int, float)) and r[k] > 0 and not math.isnan(r[k]), r
    # each mode ran (the suite checks that its child's connections ran that mechanism)
    assert "[plain]" in out and "[curve]" in out
