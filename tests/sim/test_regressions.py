"""Seeds that once exposed a core bug (docs/INTERNALS.md, "Recovery"), replayed on every run.

Each is pinned with its cluster size and profile, so a change of the seed mapping does not move
it; a change of the profile's parameters may (the seed then simply becomes extra coverage).
"""
from __future__ import annotations

import pytest

from ra.testing.sim import run_seed

REGRESSIONS = [
    # (bug number, seed, servers, profile)
    (6, 20687, 5, "chaos"),
    (6, 17320, 3, "chaos"),
    (6, 7622, 3, "chaos"),
    (6, 6621, 5, "chaos"),
    (6, 15279, 5, "chaos"),
    (6, 20011, 5, "chaos"),
    (7, 25237, 5, "chaos"),
    (7, 73415, 5, "chaos"),
    # found by the snapshot profiles; #8's seeds stopped reproducing when the clients and
    # election timers changed (sessions, check-quorum), its fix has a unit test of its own
    (8, 66, 3, "snapshot_reconfig"),
    (8, 1111, 5, "snapshot_slow_sync"),
    (9, 1055, 5, "snapshot_slow_sync"),
    (9, 58, 3, "snapshot_slow_sync"),  # reproduced #9 (a 60,000-event storm) before its fix
    # #10: a snapshot dropped entries past it that a DurableReply had acknowledged
    (10, 497, 5, "chaos"),
    (10, 1288, 5, "snapshot_slow_sync"),
]


@pytest.mark.parametrize("bug,seed,servers,profile", REGRESSIONS,
                         ids=[f"bug{b}-seed{s}" for b, s, _, _ in REGRESSIONS])
def test_regression_seed(bug: int, seed: int, servers: int, profile: str) -> None:
    run_seed(seed, servers, profile)
