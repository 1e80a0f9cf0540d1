"""No ra equivalent. Smoke run of the W2 rows of ``make bench`` for the program shapes of
README's "Threads and asyncio": ``python -m bench.w2_shapes --quick`` (8 threads through the
module functions, then 1,000 asyncio tasks on one event loop through ``ra.aio``, 2 s each) as a
subprocess within a time limit; every row has a figure, no call failed, and no process of the
run is left behind. Not a speed test."""
from __future__ import annotations

import json

import pytest

from tests.bench.runner import run_bench

__all__: list[str] = []

pytestmark = pytest.mark.integration

LIMIT = 120.0


@pytest.mark.timeout(LIMIT + 30)
def test_w2_threads_and_asyncio_rows() -> None:
    text = run_bench(["-m", "bench.w2_shapes", "--quick"], LIMIT)
    rows = {(r["workload"], r["metric"]): r for r in
            (json.loads(ln) for ln in text.splitlines() if ln.startswith("{"))}
    for wl in ("W2 threads", "W2 asyncio"):
        for metric in ("ops/s", "p50", "p99"):
            assert rows[(wl, metric)]["value"] > 0, rows
        assert ", 0 errors" in rows[(wl, "ops/s")]["note"], rows[(wl, "ops/s")]
    assert "1000 tasks on one event loop" in rows[("W2 asyncio", "ops/s")]["note"]

