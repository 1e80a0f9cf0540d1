"""Follower: append_entries, durable acks, back-off hints, apply, snapshots (↔ ra_server_SUITE)."""
from ra.core.effects import (
    Cast, DurableReply, RecordLeaderMsg, Reply, SendRpc, StartElectionTimeout,
)
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, Command, ConsistentQuery, HeartbeatReply, HeartbeatRpc,
    InstallSnapshotResult, InstallSnapshotRpc, MetaWritten, SnapshotMeta, Written,
)
from ra.testing import mutants
from ra.testing.memory import MemoryLog
from tests.core.helpers import CLUSTER, N1, N2, N3, new_server, step, sync, with_log

NOOP = ("noop", 0)

#: a follower that learns of a leader counts its election timeout from that leader's messages;
#: n1 ranks first among the members other than the leader n2
FOLLOW = StartElectionTimeout(since_leader=True, turn=0)


def usr(n):
    return ("usr", n, None, 0)


def test_append_entries_acked_only_after_written():
    s = new_server()
    eff = step(s, AppendEntriesRpc(1, N2, 0, 0, 0, [(1, 1, NOOP), (2, 1, usr(5))]))
    assert s.current_term == 1 and s.leader_id == N2 and s.role == "follower"
    # nothing goes out: the new term is not durable and neither are the entries
    assert eff == [RecordLeaderMsg(N2), FOLLOW]
    assert s.log.last_index_term() == (2, 1) and s.log.last_written() == (0, 0)
    eff = sync(s)
    assert eff == [SendRpc(N2, AppendEntriesReply(1, True, 3, 2, 1, N1))]


def test_heartbeat_append_is_answered_at_once_with_written_index():
    s = new_server()
    with_log(s, [(1, 1, NOOP), (2, 1, usr(5))], term=1)
    eff = step(s, AppendEntriesRpc(1, N2, 2, 2, 1, []))
    # the reply says the commit index it now knows (a quiet leader waits for that)
    assert eff == [RecordLeaderMsg(N2), FOLLOW,
                   SendRpc(N2, AppendEntriesReply(1, True, 3, 2, 1, N1, 2))]
    assert s.commit_index == 2 and s.last_applied == 2 and s.machine_state == 5


def test_missing_prev_replies_failure_with_next_index_hint():
    s = new_server()
    with_log(s, [(1, 1, NOOP)], term=1)
    eff = step(s, AppendEntriesRpc(1, N2, 0, 5, 1, [(6, 1, usr(1))]))
    assert eff[-1] == SendRpc(N2, AppendEntriesReply(1, False, 2, 0, 0, N1))


def test_conflicting_term_backs_off_to_first_index_of_that_term():
    s = new_server()
    with_log(s, [(1, 1, NOOP), (2, 2, usr(1)), (3, 2, usr(2)), (4, 2, usr(3))], term=2)
    eff = step(s, AppendEntriesRpc(3, N2, 1, 4, 3, []))
    assert eff == [RecordLeaderMsg(N2), FOLLOW]        # term 3 is not durable yet: the reply waits
    eff = step(s, MetaWritten(s.meta_seq))
    assert eff == [SendRpc(N2, AppendEntriesReply(3, False, 2, 0, 0, N1))]


def test_stale_tail_is_overwritten_and_never_counted_before_verified():
    s = new_server()
    with_log(s, [(1, 1, NOOP), (2, 1, usr(1)), (3, 1, usr(2))], term=1)
    # a new leader whose log shares only index 1: a heartbeat at prev 1 must not ack 2..3
    eff = step(s, AppendEntriesRpc(2, N2, 1, 1, 1, []))
    sync(s)
    eff = step(s, AppendEntriesRpc(2, N2, 1, 1, 1, []))
    assert eff[-1] == SendRpc(N2, AppendEntriesReply(2, True, 2, 1, 1, N1, 1))
    step(s, AppendEntriesRpc(2, N2, 1, 1, 1, [(2, 2, NOOP)]))
    assert s.log.last_index_term() == (2, 2) and s.log.fetch(3) is None
    assert s.log.last_written() == (1, 1)
    assert sync(s) == [SendRpc(N2, AppendEntriesReply(2, True, 3, 2, 2, N1, 1))]


def test_duplicate_append_does_not_truncate():
    s = new_server()
    with_log(s, [(1, 1, NOOP), (2, 1, usr(1)), (3, 1, usr(2))], term=1)
    step(s, AppendEntriesRpc(1, N2, 0, 0, 0, [(1, 1, NOOP)]))
    assert s.log.last_index_term() == (3, 1) and s.log.last_written() == (3, 1)


def test_stale_term_append_is_rejected_with_current_term():
    s = new_server()
    with_log(s, [(1, 3, NOOP)], term=3)
    eff = step(s, AppendEntriesRpc(2, N2, 0, 0, 0, []))
    assert eff == [SendRpc(N2, AppendEntriesReply(3, False, 2, 1, 3, N1))]


def test_follower_applies_only_committed_and_written():
    s = new_server()
    with_log(s, [(1, 1, NOOP)], term=1)
    step(s, AppendEntriesRpc(1, N2, 3, 1, 1, [(2, 1, usr(1)), (3, 1, usr(2))]))
    assert s.commit_index == 3 and s.last_applied == 1      # 2..3 not durable yet
    sync(s)
    assert s.last_applied == 3 and s.machine_state == 3


def test_mutant_apply_before_commit():
    s = new_server(core=mutants.load("apply_before_commit"))
    with_log(s, [(1, 1, NOOP)], term=1)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, [(2, 1, usr(7))]))
    assert s.last_applied == 2


def test_follower_redirects_commands_and_queries():
    # quiet mode also probes the leader (tests/core/test_quiet.py)
    s = new_server(quiet_when_idle=False)
    with_log(s, [(1, 1, NOOP)], term=1)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    assert step(s, Command("usr", 1, ("await", "f1"))) == [Reply("f1", ("redirect", N2))]
    assert step(s, Command("usr", 1, ("notify", "c1", "pid"))) == [
        Cast("pid", ("ra_event", N2, ("rejected", ("not_leader", N2, "c1"))))]
    assert step(s, ConsistentQuery("f2", lambda st: st)) == [Reply("f2", ("redirect", N2))]


def test_heartbeat_rpc_is_answered():
    s = new_server()
    with_log(s, [(1, 1, NOOP)], term=1)
    eff = step(s, HeartbeatRpc(4, 1, N2))
    assert eff == [RecordLeaderMsg(N2), FOLLOW, SendRpc(N2, HeartbeatReply(4, 1, N1))]


def test_install_snapshot_in_chunks():
    s = new_server()
    with_log(s, [(1, 1, NOOP)], term=1)
    meta = SnapshotMeta(10, 1, CLUSTER, 0)
    data = repr(42).encode()
    step(s, InstallSnapshotRpc(1, N2, meta, (1, "next"), data[:1]))
    assert s.role == "receive_snapshot"
    eff = step(s, InstallSnapshotRpc(1, N2, meta, (2, "last"), data[1:]))
    assert s.role == "follower"
    assert s.machine_state == 42 and s.last_applied == 10 and s.commit_index == 10
    assert s.log.last_index_term() == (10, 1) and s.log.last_written() == (10, 1)
    assert eff[-1] == SendRpc(N2, InstallSnapshotResult(1, 10, 1, N1))
    # replication resumes after the snapshot
    step(s, AppendEntriesRpc(1, N2, 11, 10, 1, [(11, 1, usr(1))]))
    sync(s)
    assert s.machine_state == 43


def test_install_snapshot_chunks_out_of_order():
    s = new_server()
    with_log(s, [(1, 1, NOOP)], term=1)
    meta = SnapshotMeta(5, 1, CLUSTER, 0)
    data = repr((1, 2, 3)).encode()
    step(s, InstallSnapshotRpc(1, N2, meta, (2, "last"), data[4:]))
    assert s.machine_state == 0
    step(s, InstallSnapshotRpc(1, N2, meta, (1, "next"), data[:4]))
    assert s.machine_state == (1, 2, 3)


def test_recovery_replays_to_last_applied():
    log = MemoryLog()
    s = new_server(log=log)
    with_log(s, [(1, 1, NOOP), (2, 1, usr(4)), (3, 1, usr(5))], term=1)
    step(s, AppendEntriesRpc(1, N2, 3, 3, 1, []))
    assert s.machine_state == 9
    log.crash()
    s.meta.crash()
    s2 = new_server(log=log, meta=s.meta)
    assert s2.machine_state == 9 and s2.last_applied == 3 and s2.commit_index == 3
    assert step(s2, Written(1, 1, 1)) == []


def test_written_for_overwritten_term_does_not_advance():
    s = new_server()
    with_log(s, [(1, 1, NOOP)], term=1)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, [(2, 1, usr(1))]))
    step(s, AppendEntriesRpc(2, N3, 1, 1, 1, [(2, 2, usr(9))]))
    assert s.log.handle_written(Written(1, 2, 2)) is False
    assert s.log.last_written() == (1, 1)


# -- DurableReply: the reply rides on the write it acknowledges ------------------------------

def test_no_reply_rides_on_a_write_when_turned_off():
    s = new_server(durable_replies=False)
    with_log(s, [(1, 1, NOOP), (2, 1, usr(5))], term=1)
    eff = step(s, AppendEntriesRpc(1, N2, 2, 2, 1, [(3, 1, usr(1))]))
    assert eff == [RecordLeaderMsg(N2), FOLLOW]
    assert sync(s) == [SendRpc(N2, AppendEntriesReply(1, True, 4, 3, 1, N1, 2))]


def _delegating_follower():
    s = new_server(durable_replies=True)
    with_log(s, [(1, 1, NOOP), (2, 1, usr(5))], term=1)
    eff = step(s, AppendEntriesRpc(1, N2, 2, 2, 1, [(3, 1, usr(1))]))
    reply = AppendEntriesReply(1, True, 4, 3, 1, N1, 2)
    assert eff == [RecordLeaderMsg(N2), FOLLOW, DurableReply(N2, reply)]
    return s, reply


def test_a_write_in_a_durable_term_hands_its_reply_to_the_write():
    """The write carries the reply (the WAL sends it once synced); the Written that says so
    sends nothing more, and the follower applies as before."""
    s, reply = _delegating_follower()
    assert s.log.attach_reply(N2, reply)
    assert s.log.take_forwards() == []          # nothing before the sync
    evs = s.log.sync()
    assert evs == [Written(1, 3, 3, True)]
    assert s.log.take_forwards() == [(N2, reply)]
    assert step(s, evs[0]) == []
    assert s.log.last_written() == (3, 1) and s.last_applied == 2


def test_a_reply_the_shell_did_not_carry_is_sent_by_the_follower():
    s, reply = _delegating_follower()
    evs = s.log.sync()                          # no attach_reply: the shell dropped it
    assert evs == [Written(1, 3, 3, False)]
    assert step(s, evs[0]) == [SendRpc(N2, reply)]


def test_a_reply_carried_to_a_leader_since_replaced_is_sent_again_to_the_new_one():
    """The WAL's reply went to the old leader: the new leader hears from the follower."""
    s, reply = _delegating_follower()
    s.log.attach_reply(N2, reply)
    evs = s.log.sync()
    step(s, AppendEntriesRpc(2, N3, 2, 3, 1, []))      # term 2 from n3, not durable yet
    step(s, MetaWritten(s.meta_seq))
    eff = step(s, evs[0])
    assert eff == [SendRpc(N3, AppendEntriesReply(2, True, 4, 3, 1, N1, 2))]


def test_replies_ride_on_writes_by_default():
    s = new_server()
    with_log(s, [(1, 1, NOOP), (2, 1, usr(5))], term=1)
    eff = step(s, AppendEntriesRpc(1, N2, 2, 2, 1, [(3, 1, usr(1))]))
    assert isinstance(eff[-1], DurableReply)


def test_a_write_behind_the_delegated_one_alone_delegates_too():
    """One client at a time: the WAL may hold the last write's Written until its next batch,
    so that write is still unconfirmed when the next append comes; it is the only one, and
    it was delegated: the next reply rides on its write too."""
    s, reply = _delegating_follower()
    s.log.attach_reply(N2, reply)
    eff = step(s, AppendEntriesRpc(1, N2, 3, 3, 1, [(4, 1, usr(2))]))
    assert eff[-1] == DurableReply(N2, AppendEntriesReply(1, True, 5, 4, 1, N1, 3))


def test_a_held_written_of_the_write_before_the_delegated_one_sends_nothing():
    """W1: the WAL answered write 3 and held its Written until its next batch, which holds
    write 4 (delegated behind it): that Written comes after write 4 delegated, and the
    answer the WAL sent for write 3 went to this leader in this term. Sending it again cost
    the leader a message per command from each follower (W1 p50 -5 to -6 % without)."""
    s, reply = _delegating_follower()
    s.log.attach_reply(N2, reply)
    held = s.log.sync()
    assert held == [Written(1, 3, 3, True)]
    eff = step(s, AppendEntriesRpc(1, N2, 3, 3, 1, [(4, 1, usr(2))]))
    assert isinstance(eff[-1], DurableReply)
    assert [e for e in step(s, held[0]) if isinstance(e, SendRpc)] == []
    assert s.log.last_written() == (3, 1)
    # not when the WAL did not answer for it (the shell dropped that reply)
    s2, _reply = _delegating_follower()
    held = s2.log.sync()
    assert held == [Written(1, 3, 3, False)]
    step(s2, AppendEntriesRpc(1, N2, 3, 3, 1, [(4, 1, usr(2))]))
    assert step(s2, held[0]) == [SendRpc(N2, AppendEntriesReply(1, True, 5, 3, 1, N1, 3))]


def test_with_writes_in_flight_the_follower_answers_itself():
    """A write that the follower did not delegate is unconfirmed: the next one does not
    delegate either (under load one answer per Written covers every write it confirms)."""
    s = new_server()
    with_log(s, [(1, 1, NOOP), (2, 1, usr(5))], term=1)
    step(s, AppendEntriesRpc(1, N2, 2, 2, 1, [(3, 1, usr(1))]))
    s.delegated = None                          # as if that write had not delegated
    eff = step(s, AppendEntriesRpc(1, N2, 2, 3, 1, [(4, 1, usr(2))]))
    assert not [e for e in eff if isinstance(e, DurableReply)]
    # two delegated writes in flight: the third answers itself as well
    s2, reply = _delegating_follower()
    eff = step(s2, AppendEntriesRpc(1, N2, 3, 3, 1, [(4, 1, usr(2))]))
    assert isinstance(eff[-1], DurableReply)
    eff = step(s2, AppendEntriesRpc(1, N2, 3, 4, 1, [(5, 1, usr(3))]))
    assert not [e for e in eff if isinstance(e, DurableReply)]
    # once everything before it is written, a write delegates again
    for ev in s2.log.sync():
        step(s2, ev)
    eff = step(s2, AppendEntriesRpc(1, N2, 3, 5, 1, [(6, 1, usr(4))]))
    assert isinstance(eff[-1], DurableReply)


def test_a_durable_reply_says_how_many_entries_its_write_holds():
    """The shell carries only one-entry writes' (a batch's answer is shared by its commands:
    W2, BENCHMARKS.md session 24); the core says how many there are."""
    s = new_server()
    with_log(s, [(1, 1, NOOP), (2, 1, usr(5))], term=1)
    eff = step(s, AppendEntriesRpc(1, N2, 2, 2, 1, [(3, 1, usr(1)), (4, 1, usr(2))]))
    assert eff[-1] == DurableReply(N2, AppendEntriesReply(1, True, 5, 4, 1, N1, 2), 2)
    assert sync(s) == [SendRpc(N2, AppendEntriesReply(1, True, 5, 4, 1, N1, 2))]


def test_no_reply_rides_on_a_write_while_the_term_is_not_durable():
    s = new_server(durable_replies=True)
    with_log(s, [(1, 1, NOOP)], term=1)
    eff = step(s, AppendEntriesRpc(2, N2, 1, 1, 1, [(2, 2, usr(1))]))
    assert not [e for e in eff if isinstance(e, DurableReply)]


def test_mutant_reply_before_durable_is_caught_by_the_durability_model():
    """The memory log's bug switch: the reply leaves at attach time, before the sync."""
    s = new_server(log=MemoryLog(reply_before_durable=True), durable_replies=True)
    with_log(s, [(1, 1, NOOP), (2, 1, usr(5))], term=1)
    eff = step(s, AppendEntriesRpc(1, N2, 2, 2, 1, [(3, 1, usr(1))]))
    s.log.attach_reply(N2, eff[-1].msg)
    (to, m), = s.log.take_forwards()
    assert s.log._d_last < m.last_index        # claimed, not durable: what the sim flags


def test_install_snapshot_keeps_a_log_that_holds_its_last_entry_not_yet_written():
    """Entries past the snapshot may be acknowledged already (a DurableReply leaves when the
    write is synced, before the follower hears of it): a log holding the snapshot's entry is
    kept, not replaced, and the answer claims only what is durable."""
    s = new_server()
    with_log(s, [(1, 1, NOOP)], term=1)
    step(s, AppendEntriesRpc(1, N2, 0, 1, 1, [(2, 1, usr(1)), (3, 1, usr(2)), (4, 1, usr(3))]))
    meta = SnapshotMeta(3, 1, CLUSTER, 0)
    eff = step(s, InstallSnapshotRpc(1, N2, meta, (1, "last"), b"x"))
    assert eff == [SendRpc(N2, InstallSnapshotResult(1, 1, 1, N1))]
    assert s.log.last_index_term() == (4, 1) and s.log.snapshot_index_term() == (0, 0)
    assert s.role == "follower"
