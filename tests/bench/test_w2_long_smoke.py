"""No ra equivalent. Smoke run of W2-long (issue 14): ``python -m bench.w2_long --secs 8
--interval 2 --clients 4`` as a subprocess within a time limit (``tests.bench.runner``): one ops/s row per interval, each
with a figure, the ratio row equal to last / first of those rows, the CPU and memory rows
present, no call failed, and no process of the run left behind. Not a speed test."""
from __future__ import annotations

import json

import pytest

from tests.bench.runner import run_bench

__all__: list[str] = []

pytestmark = pytest.mark.integration

LIMIT = 120.0


@pytest.mark.timeout(LIMIT + 30)
def test_w2_long_rows() -> None:
    text = run_bench(["-m", "bench.w2_long", "--secs", "8", "--interval", "2", "--clients", "4"],
                     LIMIT)
    rows = {r["metric"]: r for r in
            (json.loads(ln) for ln in text.splitlines() if ln.startswith("{"))}
    labels = ["0-2 s", "2-4 s", "4-6 s", "6-8 s"]
    rates = [rows[f"ops/s {lb}"]["value"] for lb in labels]
    assert all(r > 0 for r in rates), rows
    assert not any(m.startswith("ops/s ") and m[6:] not in labels for m in rows), list(rows)
    assert rows["last / first"]["value"] == pytest.approx(rates[-1] / rates[0])
    for lb in (labels[0], labels[-1]):
        assert rows[f"leader CPU us/cmd {lb}"]["value"] > 0, rows
    for m in ("leader RSS at end", "leader USS at end", "WAL RSS at end", "WAL USS at end"):
        assert rows[m]["value"] > 0, rows[m]
    # every command completed in an interval was one more entry in the log (the run checked
    # the counter itself: it fails unless each acknowledged add was applied once)
    assert rows["log entries at end"]["value"] >= sum(rates) * 2
    assert "(checked: each acknowledged add applied once)" in rows["ops/s 0-2 s"]["note"]
    assert "4 client processes, 8 s, 0 errors" in rows["ops/s 0-2 s"]["note"], rows
