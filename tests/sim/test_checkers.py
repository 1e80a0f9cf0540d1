"""Every checker must bite: each invariant is fed a hand-made bad history and must raise, and
the matching good history must pass (a checker that cannot fail proves nothing)."""
from __future__ import annotations

from typing import Any

import pytest

from ra.testing.checkers import CHECKS, SafetyChecker, Violation


class FakeLog:
    """A LogView over a plain dict ``{index: (index, term, command)}``."""

    def __init__(self, entries: list[tuple[int, int, Any]] = (), snap: tuple[int, int] = (0, 0)):
        self.entries = {e[0]: e for e in entries}
        self.snap = snap

    def fetch(self, idx: int) -> tuple[int, int, Any] | None:
        return self.entries.get(idx)

    def snapshot_index_term(self) -> tuple[int, int]:
        return self.snap

    def last_index_term(self) -> tuple[int, int]:
        if not self.entries:
            return self.snap
        i = max(self.entries)
        return i, self.entries[i][1]


def usr(x: Any) -> tuple[Any, ...]:
    return ("usr", x, None, 0)


def noop() -> tuple[Any, ...]:
    return ("noop", 0)


def state(ck: SafetyChecker, sid: str, log: FakeLog, role: str = "follower", term: int = 1,
          commit: int = 0, applied: int = 0, inc: int = 1) -> None:
    ck.on_server_state(sid, inc, role, term, commit, applied, log)


def raises(check: str) -> Any:
    return pytest.raises(Violation, match=rf"^\[{check}\]")


# -- election safety ---------------------------------------------------------------------------

def test_two_leaders_in_one_term_is_caught() -> None:
    ck = SafetyChecker()
    state(ck, "a", FakeLog(), "leader", term=3)
    state(ck, "a", FakeLog(), "leader", term=3)          # same leader again: fine
    state(ck, "b", FakeLog(), "leader", term=4)          # other term: fine
    with raises("election_safety"):
        state(ck, "b", FakeLog(), "leader", term=3)


# -- log matching ------------------------------------------------------------------------------

def test_same_index_and_term_with_different_commands_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_entries_written("a", [(1, 1, usr("x")), (2, 1, usr("y"))], 0)
    ck.on_entries_written("b", [(1, 1, usr("x")), (2, 1, usr("y"))], 0)
    with raises("log_matching"):
        ck.on_entries_written("c", [(2, 1, usr("z"))], 1)


def test_same_entry_after_different_prefix_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_entries_written("a", [(1, 1, usr("x")), (2, 2, usr("y"))], 0)
    ck.on_entries_written("b", [(2, 2, usr("y"))], 1)    # prev term 1 at index 1: consistent
    with raises("log_matching"):
        ck.on_entries_written("c", [(2, 2, usr("y"))], 3)   # term 3 before it: prefixes differ


def test_overwriting_uncommitted_entries_with_new_terms_is_fine() -> None:
    ck = SafetyChecker()
    ck.on_entries_written("a", [(1, 1, usr("x")), (2, 1, usr("y"))], 0)
    ck.on_entries_written("b", [(2, 2, usr("z"))], 1)
    ck.on_entries_written("a", [(2, 2, usr("z"))], 1)


# -- commit index ------------------------------------------------------------------------------

def test_commit_index_going_back_is_caught_but_not_across_restarts() -> None:
    log = FakeLog([(1, 1, noop()), (2, 1, usr("x"))])
    ck = SafetyChecker()
    state(ck, "a", log, commit=2)
    state(ck, "a", log, commit=1, inc=2)                 # a restart may recover less
    with raises("commit_monotonic"):
        state(ck, "a", log, commit=0, inc=2)


def test_commit_index_past_the_log_is_caught() -> None:
    ck = SafetyChecker()
    state(ck, "a", FakeLog([(1, 1, noop())]), commit=1)
    state(ck, "b", FakeLog([], snap=(5, 1)), commit=5)   # covered by a snapshot: fine
    with raises("commit_in_log"):
        state(ck, "c", FakeLog([(1, 1, noop())]), commit=2)


def test_committed_entry_that_changes_is_caught() -> None:
    ck = SafetyChecker()
    state(ck, "a", FakeLog([(1, 1, noop()), (2, 1, usr("x"))]), commit=2)
    state(ck, "b", FakeLog([(1, 1, noop()), (2, 1, usr("x"))]), commit=2)
    with raises("committed_prefix"):
        state(ck, "c", FakeLog([(1, 1, noop()), (2, 2, usr("y"))]), term=2, commit=2)


def test_snapshot_contradicting_a_committed_entry_is_caught() -> None:
    ck = SafetyChecker()
    state(ck, "a", FakeLog([(1, 1, noop()), (2, 1, usr("x"))]), commit=2)
    ck.on_snapshot_installed("b", 2, 1)
    with raises("committed_prefix"):
        ck.on_snapshot_installed("c", 2, 3)


# -- leader completeness -----------------------------------------------------------------------

def test_new_leader_without_a_committed_entry_is_caught() -> None:
    ck = SafetyChecker()
    good = FakeLog([(1, 1, noop()), (2, 1, usr("x"))])
    state(ck, "a", good, "leader", term=1, commit=2)
    state(ck, "c", FakeLog([(1, 1, noop()), (2, 1, usr("x")), (3, 2, noop())]), "leader", term=2)
    with raises("leader_completeness"):
        state(ck, "d", FakeLog([(1, 1, noop()), (2, 3, noop())]), "leader", term=3)


def test_commit_seen_while_a_later_leader_lacks_it_is_caught() -> None:
    ck = SafetyChecker()
    state(ck, "b", FakeLog([(1, 1, noop())]), "leader", term=5)
    with raises("leader_completeness"):
        state(ck, "a", FakeLog([(1, 1, noop()), (2, 1, usr("x"))]), "follower", term=1, commit=2)


def test_stale_leader_of_an_older_term_is_not_blamed() -> None:
    ck = SafetyChecker()
    state(ck, "old", FakeLog([(1, 1, noop())]), "leader", term=1)
    state(ck, "a", FakeLog([(1, 1, noop()), (2, 2, noop())]), "follower", term=2, commit=2)
    state(ck, "old", FakeLog([(1, 1, noop())]), "leader", term=1)


def test_leader_whose_snapshot_covers_the_entry_is_complete() -> None:
    ck = SafetyChecker()
    state(ck, "a", FakeLog([(1, 1, noop()), (2, 1, usr("x"))]), commit=2)
    state(ck, "b", FakeLog([(3, 2, noop())], snap=(2, 1)), "leader", term=2)


# -- state machine -----------------------------------------------------------------------------

def test_applying_beyond_commit_is_caught() -> None:
    ck = SafetyChecker()
    log = FakeLog([(1, 1, noop()), (2, 1, usr("x"))])
    state(ck, "a", log, commit=2, applied=2)
    with raises("apply_committed"):
        state(ck, "b", log, commit=1, applied=2)


def test_two_commands_at_one_index_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_apply("a", 1, 2, 1, "x")
    ck.on_apply("b", 1, 2, 1, "x")
    with raises("state_machine_safety"):
        ck.on_apply("c", 1, 2, 2, "y")


def test_a_command_applied_at_two_indexes_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_apply("a", 1, 2, 1, "x")
    with raises("state_machine_safety"):
        ck.on_apply("a", 1, 3, 1, "x")


def test_out_of_order_apply_is_caught_but_replay_after_restart_is_fine() -> None:
    ck = SafetyChecker()
    ck.on_apply("a", 1, 2, 1, "x")
    ck.on_apply("a", 1, 3, 1, "y")
    ck.on_apply("a", 2, 2, 1, "x")                      # new incarnation replays: fine
    ck.on_apply("a", 2, 3, 1, "y")
    with raises("state_machine_safety"):
        ck.on_apply("a", 2, 3, 1, "y")                  # twice in one incarnation


def test_applied_command_differing_from_the_committed_one_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_apply("a", 1, 2, 1, "x")                      # applied early (not yet committed)
    with raises("state_machine_safety"):
        state(ck, "b", FakeLog([(1, 1, noop()), (2, 2, usr("y"))]), term=2, commit=2)


# -- clients -----------------------------------------------------------------------------------

def test_ack_for_an_index_that_holds_another_command_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_apply("a", 1, 2, 1, ("c1", 1))
    ck.on_ack(("c1", 1), 2)
    with raises("ack_applied"):
        ck.on_ack(("c1", 2), 2)


def test_ack_for_nothing_applied_is_caught() -> None:
    ck = SafetyChecker()
    with raises("ack_applied"):
        ck.on_ack(("c1", 1), 7)


def test_stale_consistent_query_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_apply("a", 1, 2, 1, ("c1", 1))
    ck.on_query_issued("q0")                             # issued before the ack: may miss it
    ck.on_ack(("c1", 1), 2)
    ck.on_query_issued("q1")
    ck.on_query_issued("q2")
    ck.on_query_result("q0", 0)
    ck.on_query_result("q1", 2)
    with raises("query_linearizable"):
        ck.on_query_result("q2", 1)


# -- plumbing ----------------------------------------------------------------------------------

def test_disabled_checks_do_not_raise_and_unknown_names_are_refused() -> None:
    ck = SafetyChecker(disabled={"election_safety"})
    state(ck, "a", FakeLog(), "leader", term=1)
    state(ck, "b", FakeLog(), "leader", term=1)
    with pytest.raises(ValueError):
        SafetyChecker(disabled={"no_such_check"})


def test_every_check_has_a_biting_test_here() -> None:
    import inspect
    import sys
    src = inspect.getsource(sys.modules[__name__])
    for check in CHECKS:
        assert f'raises("{check}")' in src, f"no test shows that {check} can fail"


def test_violation_report_names_seed_and_replay() -> None:
    v = Violation("election_safety", "two leaders in term 3")
    v.seed, v.time, v.step, v.replay = 42, 100, 7, "make sim SEED=42"
    v.trace_tail = ["    100ms    s1 | follower -> leader (term 3)"]
    text = str(v)
    assert "seed=42" in text and "make sim SEED=42" in text and "term 3" in text


# -- the whole-state checker -------------------------------------------------------------------

def test_check_cluster_accepts_a_consistent_cluster() -> None:
    from ra.testing.checkers import check_cluster
    a = FakeLog([(1, 1, noop()), (2, 1, usr("x")), (3, 2, noop())])
    b = FakeLog([(1, 1, noop()), (2, 1, usr("x")), (3, 1, usr("stale"))])
    check_cluster([("a", "leader", 2, 2, a), ("b", "follower", 2, 2, b)])


@pytest.mark.parametrize("case", ["two_leaders", "matching", "prefix", "committed"])
def test_check_cluster_bites(case: str) -> None:
    from ra.testing.checkers import check_cluster
    base = FakeLog([(1, 1, noop()), (2, 1, usr("x")), (3, 2, noop())])
    if case == "two_leaders":
        servers = [("a", "leader", 2, 0, base), ("b", "leader", 2, 0, base)]
        check = "election_safety"
    elif case == "matching":
        other = FakeLog([(1, 1, noop()), (2, 1, usr("y"))])
        servers = [("a", "leader", 2, 0, base), ("b", "follower", 2, 0, other)]
        check = "log_matching"
    elif case == "prefix":
        other = FakeLog([(1, 1, usr("z")), (2, 1, usr("x")), (3, 2, noop())])
        servers = [("a", "leader", 2, 0, base), ("b", "follower", 2, 0, other)]
        check = "log_matching"
    else:
        other = FakeLog([(1, 1, noop()), (2, 3, usr("y"))])
        servers = [("a", "follower", 3, 2, base), ("b", "leader", 3, 2, other)]
        check = "committed_prefix"
    with raises(check):
        check_cluster(servers)


def test_acked_command_never_committed_is_caught_at_the_end() -> None:
    ck = SafetyChecker()
    ck.on_apply("a", 1, 2, 1, ("c1", 1))
    ck.on_ack(("c1", 1), 2)                              # acked after an apply...
    state(ck, "b", FakeLog([(1, 1, noop()), (2, 1, usr(("c1", 1)))]), commit=2)
    ck.check_acked_committed()                           # ...that was committed: fine
    ck.on_apply("a", 1, 3, 1, ("c1", 2))
    ck.on_ack(("c1", 2), 3)                              # acked, but index 3 never committed
    with pytest.raises(Violation, match="ack_applied"):
        ck.check_acked_committed()


# -- durability --------------------------------------------------------------------------------

def test_ack_of_a_non_durable_entry_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_ack_sent("a", 3, 2, 2)                          # durable at term 2: fine
    ck.on_ack_sent("a", 0, 0, None)                       # nothing acked: fine
    with raises("durable_ack"):
        ck.on_ack_sent("b", 3, 2, None)


def test_vote_before_its_term_is_durable_is_caught() -> None:
    ck = SafetyChecker()
    ck.on_vote_sent("a", 3, "c", (3, "c"))
    ck.on_vote_sent("a", 3, "c", (4, "d"))                # a later durable term settles it
    with raises("durable_ack"):
        ck.on_vote_sent("b", 3, "c", (2, None))


def test_commit_without_a_durable_majority_is_caught() -> None:
    ck = SafetyChecker()
    log = FakeLog([(1, 1, noop()), (2, 1, usr("x"))])
    state(ck, "a", log, "leader", term=1, commit=2)
    durable: dict[str, Any] = {"a": lambda i: 1, "b": lambda i: "snapshot",
                               "c": lambda i: None}
    ck.on_leader_commit("a", 1, 1, 2, durable)
    durable["b"] = lambda i: None
    with raises("durable_commit"):
        ck.on_leader_commit("a", 1, 1, 2, durable)


def test_counter_values_must_match_the_committed_log() -> None:
    ck = SafetyChecker()
    log = FakeLog([(1, 1, noop()), (2, 1, usr(("c", 1))), (3, 1, usr(("c", 2))),
                   (4, 1, ("cluster", ("a",), None)), (5, 1, usr(("c", 3)))])
    state(ck, "a", log, "leader", commit=5)
    for idx, cmd in ((2, ("c", 1)), (3, ("c", 2)), (5, ("c", 3))):
        ck.on_apply("a", 1, idx, 1, cmd)
    ck.on_ack(("c", 1), 2, 1)
    ck.on_ack(("c", 3), 5, 3)
    ck.on_query_issued("q")
    ck.on_query_result("q", 5, 3)
    ck.check_acked_committed()
    ck.on_query_issued("q2")
    ck.on_query_result("q2", 5, 4)                      # one command counted twice
    with pytest.raises(Violation, match="state_machine_safety"):
        ck.check_acked_committed()


# -- check-quorum (the simulator's own check: it needs the network's view) -----------------------

def test_a_leader_nobody_answered_for_two_election_timeouts_is_caught() -> None:
    from ra.testing.sim import SimCluster
    sim = SimCluster(0, servers=3, profile="calm")
    sim.run_until(1000, lambda: sim.current_leader() is not None)
    s = sim.servers[sim.current_leader()]
    sim._check_quorum_bound(s)                    # answered just now: fine
    limit = 2 * sim.profile.election_ms
    sim.now += limit                              # exactly the bound: still fine
    sim._check_quorum_bound(s)
    sim.now += 1
    with raises("check_quorum"):
        sim._check_quorum_bound(s)


# -- prompt replication (the simulator's own check: it sees a step's effects) ---------------------

def test_a_new_leader_that_sends_a_peer_nothing_is_caught() -> None:
    from ra.core.effects import SendRpc
    from ra.core.messages import AppendEntriesRpc
    from ra.testing.sim import SimCluster
    sim = SimCluster(0, servers=3, profile="calm")
    sim.run_until(1000, lambda: sim.current_leader() is not None)
    s = sim.servers[sim.current_leader()]
    peers = list(s.state.peers)
    sends = [SendRpc(p, AppendEntriesRpc(s.state.current_term, s.sid, 0, 0, 0)) for p in peers]
    sim._check_prompt_replication(s, sends)             # an append to each: fine
    with raises("prompt_replication"):
        sim._check_prompt_replication(s, sends[:-1])    # the last peer waits for a heartbeat


# -- quiet when idle (ra.testing.sim_detector: they need the detector's and the network's view) --

def _quiet_cluster(bugs: frozenset[str] = frozenset(),
                   disabled: frozenset[str] = frozenset()) -> Any:
    from ra.testing.sim import SimCluster
    sim = SimCluster(3, servers=3, profile="quiet", auto_faults=False, bugs=bugs,
                     disabled_checks=disabled)
    sim.run_until(1000, lambda: sim.current_leader() is not None)
    sim.run_until(1500)
    return sim


def _watch(sim: Any, until: int) -> None:
    """What the fault ticks do, every 20 ms, without their faults."""
    while sim.now < until:
        sim.run_until(sim.now + 20)
        sim.fd.watch_failover()
        sim.fd.watch_hang()
        sim.fd.watch_lag()
        sim.fd.watch_rejoin()


@pytest.mark.parametrize("bugs", [frozenset(), frozenset({"quiet_follower_ignores_node_down"})])
def test_a_leader_lost_silently_and_never_replaced_is_caught(bugs: frozenset[str]) -> None:
    sim = _quiet_cluster(bugs)
    sim.crash(sim.current_leader(), node=True)
    until = sim.now + sim.profile.detect_ms[1] + sim.fd.bound() + 100
    if not bugs:
        _watch(sim, until)                        # the followers elect in time: fine
        return
    with raises("quiet_failover"):
        _watch(sim, until)


def test_a_hung_leader_no_client_asks_about_is_no_obligation() -> None:
    sim = _quiet_cluster()
    lid = sim.current_leader()
    sim.hang(lid, 100_000)                        # its node and links stay up: no report
    _watch(sim, sim.now + 3000)                   # nobody notices, and nobody must
    assert sim.current_leader() == lid and sim.fd.hang_watch is not None


@pytest.mark.parametrize("bugs", [frozenset(), frozenset({"quiet_follower_trusts_a_silent_leader"}),
                                  frozenset({"quiet_follower_ignores_clients"})])
def test_a_hung_leader_a_client_asked_about_and_not_given_up_on_soon_is_caught(
        bugs: frozenset[str]) -> None:
    sim = _quiet_cluster(bugs)
    lid = sim.current_leader()
    sim.hang(lid, 100_000)                        # its node and links stay up: no report
    _watch(sim, sim.now + 30)                     # the quiet_hang obligation opens
    sim.stray_call(next(s for s in sim.servers.values() if s.sid != lid), "test")
    until = sim.now + sim.fd.probe_bound() + 100
    if not bugs:
        _watch(sim, until)                        # the follower's probe fails; elected in time
        return
    with raises("quiet_probe"):
        _watch(sim, until)


def test_a_hung_leader_a_client_asked_about_and_not_replaced_soon_is_caught() -> None:
    # the asked follower never gives up (its own check off): no later leader either
    sim = _quiet_cluster(frozenset({"quiet_follower_ignores_clients"}),
                         disabled=frozenset({"quiet_probe"}))
    lid = sim.current_leader()
    sim.hang(lid, 100_000)
    _watch(sim, sim.now + 30)
    sim.stray_call(next(s for s in sim.servers.values() if s.sid != lid), "test")
    with raises("quiet_hang"):
        _watch(sim, sim.now + sim.fd.probe_bound() + 100)


@pytest.mark.parametrize("bugs", [frozenset(), frozenset({"quiet_leader_ignores_lost_members"})])
def test_a_follower_that_never_finds_the_running_leader_again_is_caught(
        bugs: frozenset[str]) -> None:
    sim = _quiet_cluster(bugs)
    lid = sim.current_leader()
    f = next(s for s in sim.servers.values() if s.sid != lid)
    sim.schedule(1, "leader_down", f.sid, f.inc, lid)     # its connection dropped and is back
    until = sim.now + sim.fd.rejoin_bound() + 100
    if not bugs:
        _watch(sim, until)                        # its pre-vote is answered with an append
        assert f.state.leader_id == lid
        return
    with raises("quiet_rejoin"):
        _watch(sim, until)


@pytest.mark.parametrize("bugs", [frozenset(), frozenset({"quiet_leader_ignores_lagging_follower"})])
def test_a_follower_left_behind_by_a_quiet_leader_is_caught(bugs: frozenset[str]) -> None:
    from ra.core.messages import Command
    sim = _quiet_cluster(bugs)
    lid = sim.current_leader()
    lagging = next(m for m in sim.servers if m != lid)
    # hung (its node and links up: no report, and it never pre-votes): the leader must keep
    # sending to it while it lacks entries (the mutant's leader, idle in its eyes, sends
    # nothing: past the lag bound)
    sim.hang(lagging, 100_000)
    leader = sim.servers[lid]
    sim.step_server(leader, Command("usr", ("x", 1)), None)
    until = sim.now + 200 + sim.fd.lag_bound() + 100
    if not bugs:
        _watch(sim, until)                        # heartbeats keep going to it: fine
        sim.resume(sim.servers[lagging])
        sim.run_until(sim.now + 200)
        assert sim.servers[lagging].log.last_index_term() == leader.log.last_index_term()
        return
    with raises("quiet_lag"):
        _watch(sim, until)


def test_a_message_from_a_settled_idle_quiet_cluster_is_caught() -> None:
    from ra.core.messages import HeartbeatRpc
    sim = _quiet_cluster()
    a, b = list(sim.servers)[:2]
    sim.settled_at = sim.now - sim.profile.idle_grace_ms + 1
    sim.fd.on_send(a, b, HeartbeatRpc(0, 1, a))   # still within the grace: fine
    sim.now += 1
    with raises("quiet_idle"):
        sim.fd.on_send(a, b, HeartbeatRpc(0, 1, a))


def test_a_timer_in_a_settled_idle_quiet_cluster_is_caught() -> None:
    from ra.core.effects import StartElectionTimeout, StartHeartbeatTimeout
    sim = _quiet_cluster()
    lid = sim.current_leader()
    f = next(m for m in sim.servers if m != lid)
    t = sim.profile.election_ms
    sim.settled_at = sim.now - sim.profile.idle_grace_ms + 1
    sim.fd.on_arm(f, StartElectionTimeout())      # still within the grace: fine
    sim.now += 1
    with raises("quiet_idle"):
        sim.fd.on_arm(lid, StartHeartbeatTimeout())
    # a timer armed before the grace ended may still fire once, within the longest timer
    sim.now = sim.settled_at + sim.profile.idle_grace_ms + 3 * t
    sim.fd.on_timer(f, "election")
    sim.now += 1
    with raises("quiet_idle"):
        sim.fd.on_timer(f, "election")


def test_session_duplicates_are_not_counted_but_a_second_apply_is_caught() -> None:
    """The session oracle: a retried command committed twice is applied once (the second
    copy does not count), and applying it again is caught."""
    ck = SafetyChecker()
    sess = ("session", "open_session", None, None, 0)
    log = FakeLog([(1, 1, noop()), (2, 1, sess),
                   (3, 1, ("usr", ("c", 1), None, 0, 2, 1, 1)),
                   (4, 1, ("usr", ("c", 1), None, 0, 2, 1, 1)),
                   (5, 1, ("usr", ("c", 2), None, 0, 2, 2, 1))])
    state(ck, "a", log, "leader", commit=5)
    ck.on_apply("a", 1, 3, 1, ("c", 1))
    ck.on_apply("a", 1, 5, 1, ("c", 2))
    ck.on_ack(("c", 2), 5, 2)
    ck.check_acked_committed()                    # 2 commands applied up to 5: right
    with raises("state_machine_safety"):
        ck.on_apply("b", 1, 4, 1, ("c", 1))       # the duplicate applied: caught


# -- membership and pre-vote ----------------------------------------------------------------------

def cluster(*members: str) -> tuple[Any, ...]:
    return ("cluster", members, None)


def test_second_uncommitted_configuration_change_is_caught() -> None:
    ck = SafetyChecker()
    log = FakeLog([(1, 1, noop()), (2, 1, cluster("a", "b")), (3, 1, usr("x")),
                   (4, 1, cluster("a", "b", "c"))])
    ck.on_config_appended("a", 4, 2, log)                # the change at 2 is committed: fine
    snap = FakeLog([(6, 2, usr("y")), (7, 2, cluster("a"))], snap=(5, 2))
    ck.on_config_appended("a", 7, 0, snap)               # earlier ones are in the snapshot: fine
    with raises("single_config_change"):
        ck.on_config_appended("a", 4, 1, log)            # the change at 2 is not committed


def test_term_rising_in_a_quiet_window_is_caught() -> None:
    ck = SafetyChecker()
    state(ck, "b", FakeLog(), term=5)                    # no window: any term is fine
    ck.open_quiet_window("a", 3, ("a", "b", "c"))
    state(ck, "a", FakeLog(), "leader", term=3)
    state(ck, "d", FakeLog(), term=7)                    # not a member of the window
    state(ck, "c", FakeLog(), term=3)
    ck.close_quiet_window()
    state(ck, "c", FakeLog(), term=4)                    # the window is closed: a new election
    ck.open_quiet_window("a", 4, ("a", "b", "c"))
    with raises("prevote_no_disruption"):
        state(ck, "b", FakeLog(), term=5)
