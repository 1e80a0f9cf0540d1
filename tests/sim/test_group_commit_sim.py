"""Group commit in the simulator: the core decides whether a leader's flush waits
(``ra.core.server.holds_flush``: its previous batch is uncommitted), the simulator keeps the time
cap as the shell does (``ServerProc._hold``, ``group_commit_ms``).

* ``group_commit`` (fault-free, many clients with short think times): holds happen and end both
  ways (the previous batch commits; the cap runs out), and every entry a hold kept back is
  committed in the end, in the term it was appended in: holding never loses a command.
* The faulty profiles of the rotation with group commit on: every safety check and the liveness
  check pass, and holds did happen.
"""
from __future__ import annotations

import pytest

from ra.core import server
from ra.core.messages import AppendEntriesReply, Command, FlushCommands
from ra.testing.sim import SimCluster
from tests.core.helpers import N2, make_leader, new_server, step, sync


def test_the_core_holds_a_leaders_flush_while_its_previous_batch_is_uncommitted() -> None:
    s = new_server()
    assert not server.holds_flush(s)                        # a follower never holds
    make_leader(s)
    sync(s)
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))      # the noop commits
    assert not server.holds_flush(s)                        # nothing sent since: no hold
    step(s, Command("usr", 1, None))
    step(s, FlushCommands())
    assert s.batch_end == 2 and server.holds_flush(s)       # batch 2 is out, uncommitted
    sync(s)
    step(s, AppendEntriesReply(1, True, 3, 2, 1, N2))
    assert s.commit_index == 2 and not server.holds_flush(s)


@pytest.mark.parametrize("seed", range(6))
def test_holds_happen_end_both_ways_and_every_held_command_commits(seed: int) -> None:
    sim = SimCluster(seed, 3, "group_commit")
    r = sim.run()
    st = r.stats
    assert st["group_commit_holds"] > 20
    assert st["group_commit_released_by_commit"] > 0 and st["group_commit_released_by_cap"] > 0
    assert st["group_commit_held_entries"] > st["group_commit_holds"]  # batches, not singles
    assert sim.held_batches
    leader = sim.current_leader()
    ls = sim.servers[leader]
    for _sid, term, lo, hi in sim.held_batches:
        assert hi <= ls.state.commit_index
        assert all(ls.log.fetch_term(i) == term for i in range(lo, hi + 1)), (term, lo, hi)


def test_without_group_commit_nothing_is_held() -> None:
    r = SimCluster(0, 3, "group_commit", group_commit_ms=0).run()
    assert r.stats["group_commit_holds"] == 0
    assert r.stats["group_commit_held_entries"] == 0


FAULTY = ("lossy", "partitions", "crashes", "chaos", "membership", "elections", "durability",
          "figure8", "snapshot_slow_sync")


@pytest.mark.parametrize("profile", FAULTY)
def test_safety_and_liveness_hold_with_group_commit_on(profile: str) -> None:
    holds = 0
    for seed in range(12):
        for n in (3, 5):
            holds += SimCluster(seed, n, profile, group_commit_ms=5).run().stats[
                "group_commit_holds"]
    assert holds > 0


def test_a_failing_run_with_group_commit_replays_with_it() -> None:
    from ra.testing.sim import replay_command
    assert replay_command(3, 5, "chaos", group_commit_ms=5) == (
        "python -m ra.testing.sim --seed 3 --servers 5 --profile chaos --group-commit 5 --trace")
