"""The WAL's acceptance rules (wal/batch.py) under the seeded simulation of tests/wal/sim.py:
writer processes killed and restarted, connections dropped with data unread, the WAL reading
connections in any order and dying before a sync. A failing seed replays with
``python -m tests.wal.sim --seed N``."""
from __future__ import annotations

import os

import pytest

from tests.wal import sim

SEEDS = 2000
SOAK_SEEDS = 50_000

#: planted bugs: (name, snippet of wal/batch.py, replacement); each must break the invariant
PLANTED = [
    # the WAL writes a request sent before one it already wrote (no send order)
    ("writes_stale_requests",
     "        if st is not None and seq <= st.seq:\n            stale += 1\n",
     "        if False:\n            stale += 1\n"),
    # a request whose predecessor has not arrived is treated as next in order
    ("ignores_missing_predecessors", " if seq == st.seq + 1 else lw + 1", ""),
    # the fence does nothing: a dead process's late request lands under its successor's log
    ("fence_does_nothing", "    writers[uid] = WriterState(next_idx=0, seq=seq)\n", "    pass\n"),
]


def _seeds() -> int:
    soak = os.environ.get("RA_SOAK", "")
    return SOAK_SEEDS if soak else SEEDS


def test_confirmed_entries_survive_every_seed() -> None:
    bad = []
    for seed in range(_seeds()):
        try:
            sim.run(seed)
        except sim.Violation as exc:
            bad.append(str(exc))
    assert not bad, f"{len(bad)} seeds failed; first: {bad[0]}"


@pytest.mark.parametrize("name,old,new", PLANTED, ids=[p[0] for p in PLANTED])
def test_each_planted_bug_is_caught(name: str, old: str, new: str) -> None:
    plan, fence = sim.mutated(old, new)
    for seed in range(SEEDS):
        try:
            sim.run(seed, plan=plan, fence=fence)
        except sim.Violation:
            return
    pytest.fail(f"planted bug {name} survived {SEEDS} seeds")


def test_a_seed_replays_exactly() -> None:
    a, b = sim.run(318), sim.run(318)
    assert a.trace == b.trace and a.synced == b.synced and len(a.synced) > 50


def test_a_planted_bug_that_no_longer_applies_fails_loudly() -> None:
    with pytest.raises(ValueError, match="occurs 0 times"):
        sim.mutated("this text is not in wal/batch.py", "")
