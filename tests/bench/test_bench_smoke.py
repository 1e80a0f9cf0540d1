"""No ra equivalent. Smoke run of ``make bench QUICK=1``: ``python -m bench --quick`` as a
subprocess within a time limit (``tests.bench.runner``); its exit status, its JSON file, and
that no process of the run is left behind. Not a speed test.
"""
from __future__ import annotations

import json
import os

import pytest

from bench import raft
from bench.__main__ import SUITES
from tests.bench.runner import run_bench
from wal import idle_poll

__all__: list[str] = []

pytestmark = pytest.mark.integration

LIMIT = 540.0   # QUICK takes ~1-2 minutes on 2 busy cores, plus ~1-2 for the security suite


@pytest.mark.timeout(LIMIT + 60)
def test_bench_quick(tmp_path: object) -> None:
    out = os.path.join(str(tmp_path), "bench.json")
    # every suite but security, which tests/bench/test_security_smoke.py runs on its own
    # (its quick run alone is a minute of alternated PLAIN/CURVE clusters), and w2_long, which
    # --quick skips (tests/bench/test_w2_long_smoke.py runs it for 20 s)
    alone = {"security", "w2_long"}
    only = [a for s in SUITES if s not in alone for a in ("--only", s)]
    text = run_bench(["-m", "bench", "--quick", "--out", out, *only], LIMIT,
                     env={"RA_BENCH_ERLANG": "0"})     # the Erlang peer has its own test
    with open(out) as f:
        res = json.load(f)
    assert res["quick"] is True and not res["failed"]
    suites = {r["suite"] for r in res["rows"]}
    assert set(SUITES) - alone <= suites, suites
    w7 = {r["metric"]: r["value"] for r in res["rows"] if r["suite"] == "scale"}
    assert w7["commands/s, pipelined"] > 0 and w7["USS per server"] > 0, w7
    assert w7["WAL fsyncs/s per node"] > 0 and w7["start all"] > 0, w7
    assert 0 < w7["TCP connections per node pair"] <= 10 + 8, w7     # C = 10: one per cluster
    ours = {(r["workload"], r["metric"]): r for r in res["rows"] if r["suite"] == "raft"}
    assert any(m == "commands/s" and r["value"] for (w, m), r in ours.items())
    assert "[ours] W1" in text and "JSON:" in text
    poll = ours[(raft.LABELS["W1 idle poll"], "p50")]
    if os.access(idle_poll.DEVICE, os.W_OK):
        assert poll["value"] > 0 and "idle_poll_ms=20" in poll["note"], poll
    else:
        assert poll["value"] is None and "not run" in poll["note"], poll
