"""The checker must bite: the core run with a known Raft bug is caught within a seed budget.

Each planted bug (a test-side mutant of the core, ``ra.testing.mutants``, applied by
``SimCluster(bugs=...)``; ``ack_before_durable`` and ``reply_before_durable`` live in
``MemoryLog``) is hunted with the fault
profile that exposes it. The hunt walks seeds ``0, 1, 2, ...`` of that profile and
stops at the first *safety* violation (liveness failures and exceptions do not count). The same
seed is then re-run without the bug and must pass, so the catch is the bug's doing and not the
simulator's. Why each profile:

* ``vote_without_log_check`` / ``stale_votes``: a follower cut off from the leader passes pre-vote
  in a quiet spell; the others commit new entries while its candidacy waits for a durable term;
  without the up-to-date check they elect it, and a leader lacks a committed entry.
* ``commit_old_term_by_count`` / ``figure8``: one entry per RPC, no pipelining, leaders isolated
  right after election or after a commit: Raft's figure 8.
* ``forget_voted_for`` / ``elections``: voters crash right after granting a vote and come back
  before the rival candidate's request arrives: two leaders in one term.
* ``ack_before_durable`` / ``durability``: caught at once by ``durable_ack`` (an ack names an
  entry storage does not hold durably); with the durability checks off, slow syncs and followers
  crashing right after acking make a "durable" majority lose a committed entry.
* ``reply_before_durable`` / ``durability``: the reply a follower's write carries
  (``DurableReply``) leaves when attached instead of when synced: caught by ``durable_ack``;
  with the durability checks off, a crash before the sync loses an entry a leader counted.
* ``apply_before_commit``: caught at once by ``apply_committed``; with that check switched off,
  by state-machine safety under partitions (an applied entry is later replaced).
* ``held_notice_lost`` (the simulated WAL): the notice it holds back after sending a follower's
  reply (``notice_defer_ms``) is dropped instead of sent with its next batch. Nothing unsafe
  follows (the leader counted the reply, which was durable), but the follower never learns
  that its entries are written and never applies them: caught by ``liveness``.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ra.core import server
from ra.core.effects import Reply
from ra.testing.checkers import Violation
from ra.testing.mutants import MUTANTS
from ra.testing.sim import ALL_BUGS, run_seed

SAFETY_ONLY = ("liveness", "exception")

#: bug -> (profile, servers, seed budget, checks switched off)
HUNTS: dict[str, tuple[str, int, int, frozenset[str]]] = {
    "vote_without_log_check": ("stale_votes", 3, 150, frozenset()),
    "commit_old_term_by_count": ("figure8", 3, 200, frozenset()),
    "forget_voted_for": ("elections", 5, 150, frozenset()),
    "ack_before_durable": ("durability", 3, 150, frozenset()),
    "reply_before_durable": ("durability", 3, 150, frozenset()),
    "apply_before_commit": ("partitions", 3, 50, frozenset()),
}
DEEP_HUNTS = {
    # the same bugs must also be caught by the end-to-end checks, not only the local ones
    "apply_before_commit": ("partitions", 3, 100, frozenset({"apply_committed"})),
    "ack_before_durable": ("durability", 3, 150, frozenset({"durable_ack", "durable_commit"})),
    "reply_before_durable": ("durability", 3, 150,
                             frozenset({"durable_ack", "durable_commit"})),
}


def hunt(bug: str, profile: str, servers: int, budget: int,
         disabled: frozenset[str]) -> tuple[int, Violation]:
    for seed in range(budget):
        try:
            run_seed(seed, servers, profile, bugs={bug}, disabled_checks=disabled)
        except Violation as v:
            if v.check not in SAFETY_ONLY:
                return seed, v
    pytest.fail(f"{bug}: no safety violation in {budget} seeds of {profile}/{servers}")


def _check(bug: str, profile: str, servers: int, budget: int, disabled: frozenset[str]) -> None:
    seed, v = hunt(bug, profile, servers, budget, disabled)
    print(f"\n{bug}: caught by {v.check} at seed {seed} ({profile}, {servers} servers)\n"
          f"  replay: {v.replay}")
    assert v.replay and f"--seed {seed}" in v.replay and f"--bug {bug}" in v.replay
    # without the bug, the very same run has no safety violation (a liveness failure there would
    # be a separate core bug, reported by test_sim_seeds)
    try:
        run_seed(seed, servers, profile, disabled_checks=disabled)
    except Violation as clean:
        assert clean.check in SAFETY_ONLY, f"the clean core fails too:\n{clean}"


@pytest.mark.parametrize("bug", sorted(HUNTS))
def test_bug_is_caught(bug: str) -> None:
    _check(bug, *HUNTS[bug])


@pytest.mark.parametrize("bug", sorted(DEEP_HUNTS))
def test_bug_is_caught_by_end_to_end_checks(bug: str) -> None:
    _check(bug, *DEEP_HUNTS[bug])


def test_the_bugs_are_planted_test_side_only() -> None:
    """The hunted core bugs are mutants (so ``make mutants`` runs them too), and the core has
    no switch left to plant any bug."""
    assert set(HUNTS) <= ALL_BUGS
    assert set(HUNTS) - {"ack_before_durable", "reply_before_durable"} <= {
        m.name for m in MUTANTS}
    assert not hasattr(server, "BUGS")
    assert "bugs" not in {f.name for f in dataclasses.fields(server.ServerConfig)}


def _local_reads(s: Any, effects: list[Any]) -> None:
    """A stale-read core: answers consistent queries from local state, skipping the heartbeat
    round that confirms leadership."""
    rest = []
    for q in s.queries:
        _, need, frm, fun = q
        if s.last_applied >= need:
            effects.append(Reply(frm, ("ok", fun(s.machine_state), s.id)))
        else:
            rest.append(q)
    s.queries = rest


def test_stale_reads_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """No core switch plants this one: the test swaps in a query path without the leadership
    check; a deposed leader in the minority then serves stale reads, which
    ``query_linearizable`` must catch in the ``reads`` profile."""
    assert hasattr(server, "_answer_queries"), (
        "ra.core.server._answer_queries is gone: update the stale-read plant (a plant that "
        "no longer applies must fail, not skip)")
    monkeypatch.setattr(server, "_answer_queries", _local_reads)
    for seed in range(100):
        try:
            run_seed(seed, 3, "reads")
        except Violation as v:
            assert v.check == "query_linearizable", str(v)
            monkeypatch.undo()
            run_seed(seed, 3, "reads")      # the real core passes the same seed
            return
    pytest.fail("stale reads went unnoticed for 100 seeds of the reads profile")


def test_a_held_notice_that_is_lost_is_caught_by_liveness() -> None:
    """The WAL's deferred notice (``wal.wal``, ``notice_defer_ms``) is modelled by every seed;
    losing it leaves a follower that never applies, which the liveness check reports, and the
    same seed passes whole without the bug."""
    for seed in range(20):
        try:
            run_seed(seed, 3, "calm", bugs={"held_notice_lost"})
        except Violation as v:
            assert v.check == "liveness", v
            assert "--bug held_notice_lost" in v.replay
            run_seed(seed, 3, "calm")
            return
    pytest.fail("held_notice_lost: no seed of 20 failed")
