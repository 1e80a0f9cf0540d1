"""Group commit in the simulator: the core decides whether a leader's flush waits
(``ra.core.server.holds_flush``: its previous batch is uncommitted), the simulator keeps the time
cap as the shell does (``ServerProc._hold``, ``group_commit_ms``).

* ``group_commit`` (fault-free, many clients with short think times): holds happen and end both
  ways (the previous batch commits; the cap runs out), and every entry a hold kept back is
  committed in the end, in the term it was appended in: holding never loses a command.
* A follower's answer does not send it the entries appended since the last flush: they leave
  with the flush that is due, one append per follower for the whole batch; what the last flush
  released is still sent (a follower that lost it is given it again at once).
* The faulty profiles of the rotation with group commit on: every safety check and the liveness
  check pass, and holds did happen.
"""
from __future__ import annotations

import pytest

from ra.core import server
from ra.core.effects import SendRpc
from ra.core.messages import AppendEntriesReply, AppendEntriesRpc, Command, FlushCommands
from ra.testing.sim import SimCluster
from tests.core.helpers import N2, N3, make_leader, new_server, step, sync


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


def _sent(effects: list, to: tuple) -> list[int]:
    """The indexes of the entries sent to ``to`` in these effects."""
    return [e[0] for x in effects if type(x) is SendRpc and x.to == to
            and type(x.msg) is AppendEntriesRpc for e in x.msg.entries]


def test_an_answer_sends_what_the_last_flush_released_and_not_what_waits_for_the_next() -> None:
    s = new_server()
    make_leader(s)
    sync(s)
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))      # the noop (1) commits
    step(s, Command("usr", 1, None))
    eff = step(s, FlushCommands())
    assert _sent(eff, N2) == [2] and _sent(eff, N3) == [2] and s.batch_end == 2
    step(s, Command("usr", 2, None))                        # 3: waits for the next flush
    assert s.flush_scheduled
    sync(s)
    eff = step(s, AppendEntriesReply(1, True, 3, 2, 1, N2))
    assert s.commit_index == 2
    assert _sent(eff, N2) == []                             # not sent from the answer...
    eff = step(s, FlushCommands())
    assert _sent(eff, N2) == [3] and _sent(eff, N3) == [3]  # ...but with the flush, to all
    step(s, Command("usr", 3, None))                        # 4: waits for the next flush
    # N3 lost entries 2 and 3 (it answers with where it wants to go on): what the flushes
    # released is sent again at once, the entry that waits for the next flush is not
    eff = step(s, AppendEntriesReply(1, False, 2, 1, 1, N3))
    assert _sent(eff, N3) == [2, 3]
    eff = step(s, FlushCommands())
    assert _sent(eff, N3) == [4] and _sent(eff, N2) == [4]
    # with no flush due, an answer sends whatever the follower lacks, as before
    step(s, Command("usr", 4, None))
    s.flush_scheduled = False          # (as a shell that lost the flush event would leave it)
    eff = step(s, AppendEntriesReply(1, True, 5, 4, 1, N2))
    assert _sent(eff, N2) == [5]


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
