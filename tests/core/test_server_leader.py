"""Leader: replication, durable commit, apply and replies, low priority, queries, membership,
transfer, snapshots (↔ ra_server_SUITE leader_* cases)."""
from ra.core.effects import (
    NextEvent, Notify, Reply, SendMsg, SendRpc, StartElectionTimeout, StartHeartbeatTimeout,
)
from ra.core.machine import ReleaseCursor
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, Command, ConsistentQuery, FlushCommands,
    HeartbeatReply, HeartbeatRpc, HeartbeatTimeout, MetaWritten, InstallSnapshotResult, InstallSnapshotRpc,
    TimeoutNow, TransferLeadership, Written,
)
from ra.testing import mutants
from tests.core.helpers import CLUSTER, N1, N2, N3, make_leader, new_server, step, sync

NOOP = ("noop", 0)


def leader(**kw):
    s = new_server(**kw)
    make_leader(s)
    return s


def ack(s, peer, last, next_index=None):
    return step(s, AppendEntriesReply(s.current_term, True, next_index or last + 1, last,
                                      s.log.fetch_term(last), peer))


def test_commit_needs_leader_durable_and_one_follower():
    s = leader()
    assert ack(s, N2, 1) == []
    assert s.commit_index == 0          # the leader's own noop is not durable yet
    sync(s)
    assert s.commit_index == 1 and s.noop_committed


def test_command_is_replicated_after_flush_and_answered_after_apply():
    s = leader()
    sync(s)
    ack(s, N2, 1)
    eff = step(s, Command("usr", 5, ("await", "f1")))
    assert eff == [NextEvent(FlushCommands())]
    eff = step(s, FlushCommands())
    ae = AppendEntriesRpc(1, N1, 1, 1, 1, [(2, 1, ("usr", 5, ("await", "f1"), 0))])
    assert eff == [SendRpc(N2, ae), SendRpc(N3, ae)]
    sync(s)
    assert s.commit_index == 1
    eff = ack(s, N3, 2)
    assert eff == [Reply("f1", ("ok", 5, N1))]
    assert s.commit_index == 2 and s.machine_state == 5


def test_burst_of_commands_goes_out_in_one_batch():
    s = leader()
    sync(s)
    ack(s, N2, 1)
    ack(s, N3, 1)
    for i in range(3):
        step(s, Command("usr", i, None))
    eff = step(s, FlushCommands())
    assert len(eff) == 2 and all(len(e.msg.entries) == 3 for e in eff)


def test_batch_size_and_pipeline_window():
    s = leader(max_append_entries_rpc_batch_size=2, max_pipeline_count=5)
    sync(s)
    ack(s, N2, 1)
    ack(s, N3, 1)
    for i in range(10):
        step(s, Command("usr", i, None))
    eff = step(s, FlushCommands())
    to_n2 = [e.msg for e in eff if e.to == N2]
    # window 5 in flight: batches of 2, 2, 1
    assert [len(m.entries) for m in to_n2] == [2, 2, 1]
    assert [m.prev_log_index for m in to_n2] == [1, 3, 5]
    eff = ack(s, N2, 3)
    assert [len(e.msg.entries) for e in eff if e.to == N2] == [2]


def test_new_leader_with_a_log_longer_than_the_pipeline_sends_at_once():
    # W4: a new leader whose log was longer than max_pipeline_count counted it all as in
    # flight (match index 0) and sent nothing until its first heartbeat (100 ms)
    from tests.core.helpers import with_log
    for core in (None, mutants.load("new_leader_counts_its_log_in_flight")):
        s = new_server(max_pipeline_count=4, **({"core": core} if core else {}))
        with_log(s, [(i, 1, ("usr", i, None, 0)) for i in range(1, 11)], term=1)
        eff = make_leader(s)                        # term 2, noop at 11
        sent = {e.to: e.msg for e in eff if type(e) is SendRpc}
        if core is not None:
            assert sent == {}                       # the mutant: nothing until a heartbeat
            continue
        assert set(sent) == {N2, N3}
        assert all(m.prev_log_index == 10 and m.entries == [(11, 2, NOOP)]
                   for m in sent.values()), sent
        # N2 lacks 7..10: what is sent again counts as in flight, within the window of 4
        # (the noop at 11 waits for an answer)
        eff = step(s, AppendEntriesReply(2, False, 7, 6, 1, N2))
        assert [(m.prev_log_index, [e[0] for e in m.entries])
                for m in (e.msg for e in eff if e.to == N2)] == [(6, [7, 8, 9, 10])]
        # a follower brought back by a snapshot gets a window's worth, not the whole log
        s.peers[N3].snapshot, s.peers[N3].match_index = "sending", 0
        s.peers[N3].next_index = 3
        eff = step(s, InstallSnapshotResult(2, 2, 1, N3))
        assert sum(len(e.msg.entries) for e in eff if e.to == N3) == 4


def test_old_term_entry_not_committed_by_counting_replicas():
    s = new_server()
    from tests.core.helpers import with_log
    with_log(s, [(1, 1, NOOP), (2, 1, ("usr", 1, None, 0))], term=1)
    make_leader(s)                    # term 2, noop at 3
    sync(s)
    # a majority holds index 2 (term 1) but not the term-2 noop: nothing commits
    ack(s, N2, 2)
    assert s.commit_index == 0
    ack(s, N2, 3)
    assert s.commit_index == 3 and s.machine_state == 1


def test_mutant_commits_old_term_entry():
    s = new_server(core=mutants.load("commit_old_term_by_count"))
    from tests.core.helpers import with_log
    with_log(s, [(1, 1, NOOP), (2, 1, ("usr", 1, None, 0))], term=1)
    make_leader(s)
    sync(s)
    ack(s, N2, 2)
    assert s.commit_index == 2


def test_failure_reply_rewinds_next_index_and_resends():
    s = leader()
    sync(s)
    eff = step(s, AppendEntriesReply(1, False, 1, 0, 0, N2))
    assert eff == [SendRpc(N2, AppendEntriesRpc(1, N1, 0, 0, 0, [(1, 1, NOOP)]))]


def test_heartbeat_tick_sends_to_every_peer_and_a_lost_append_is_resent_on_the_hint():
    s = leader()
    sync(s)
    ack(s, N2, 1)
    eff = step(s, HeartbeatTimeout())
    assert eff == [StartHeartbeatTimeout(),
                   SendRpc(N2, AppendEntriesRpc(1, N1, 1, 1, 1, [])),
                   SendRpc(N3, AppendEntriesRpc(1, N1, 1, 1, 1, []))]
    # N3 lost the append of index 1: it refuses the heartbeat with its hint, and the entry is
    # resent from there (the leader does not rewind on its own: after a restart that would
    # resend a whole log that the follower holds already)
    eff = step(s, AppendEntriesReply(1, False, 1, 0, 0, N3))
    assert eff == [SendRpc(N3, AppendEntriesRpc(1, N1, 1, 0, 0, [(1, 1, NOOP)]))]


def test_pipeline_notifications_are_batched_per_client():
    s = leader()
    sync(s)
    ack(s, N2, 1)
    step(s, Command("usr", 1, ("notify", "c1", "pid")))
    step(s, Command("usr", 2, ("notify", "c2", "pid")))
    step(s, FlushCommands())
    sync(s)
    eff = ack(s, N2, 3)
    assert eff == [Notify("pid", N1, [("c1", 1), ("c2", 3)])]


def test_low_priority_commands_are_appended_in_batches():
    s = leader(low_priority_batch_size=2)
    sync(s)
    for i in range(5):
        step(s, Command("usr", i, None, priority="low"))
    assert len(s.low_queue) == 5
    eff = step(s, FlushCommands())
    assert s.log.last_index_term()[0] == 3 and len(s.low_queue) == 3
    assert eff[-1] == NextEvent(FlushCommands())


def test_consistent_query_waits_for_heartbeat_quorum():
    s = leader()
    sync(s)
    ack(s, N2, 1)
    eff = step(s, ConsistentQuery("q1", lambda st: ("state", st)))
    assert eff == [SendRpc(N2, HeartbeatRpc(1, 1, N1)), SendRpc(N3, HeartbeatRpc(1, 1, N1))]
    assert step(s, HeartbeatReply(0, 1, N2)) == []
    assert step(s, HeartbeatReply(1, 1, N3)) == [Reply("q1", ("ok", ("state", 0), N1))]


def test_consistent_query_before_noop_commit_waits_for_it():
    s = leader()
    step(s, ConsistentQuery("q1", lambda st: st))
    assert step(s, HeartbeatReply(1, 1, N2)) == []
    sync(s)
    assert ack(s, N2, 1) == [Reply("q1", ("ok", 0, N1))]


def test_step_down_redirects_pending_queries():
    s = leader()
    step(s, ConsistentQuery("q1", lambda st: st))
    eff = step(s, AppendEntriesRpc(5, N2, 0, 0, 0, []))
    assert s.role == "follower" and not any(isinstance(e, Reply) for e in eff)
    eff = step(s, MetaWritten(s.meta_seq))      # released once term 5 is durable
    assert Reply("q1", ("redirect", None)) in eff


def test_membership_change_needs_committed_noop():
    s = leader()
    eff = step(s, Command("join", ("n4", "x:4"), ("after_log_append", "f")))
    assert eff == [Reply("f", ("error", "cluster_change_not_permitted"))]
    sync(s)
    ack(s, N2, 1)
    eff = step(s, Command("join", ("n4", "x:4"), ("after_log_append", "f")))
    assert eff == [Reply("f", ("ok", "ok", N1)), NextEvent(FlushCommands())]
    assert s.cluster == CLUSTER + (("n4", "x:4"),)
    # one change at a time
    eff = step(s, Command("leave", N3, ("after_log_append", "g")))
    assert eff == [Reply("g", ("error", "cluster_change_not_permitted"))]


def test_join_of_existing_member_and_leave_of_stranger_are_errors():
    s = leader()
    sync(s)
    ack(s, N2, 1)
    assert step(s, Command("join", N2, ("after_log_append", "f"))) == [
        Reply("f", ("error", "already_member"))]
    assert step(s, Command("leave", ("x", "y"), ("after_log_append", "f"))) == [
        Reply("f", ("error", "not_member"))]


def test_leader_removing_itself_steps_down_once_committed():
    s = leader()
    sync(s)
    ack(s, N2, 1)
    step(s, Command("leave", N1, ("after_log_append", "f")))
    step(s, FlushCommands())
    sync(s)
    assert s.role == "leader"
    ack(s, N2, 2)
    ack(s, N3, 2)
    assert s.role == "follower" and s.cluster == (N2, N3)


def test_transfer_leadership_sends_timeout_now_when_target_caught_up():
    s = leader()
    sync(s)
    ack(s, N2, 1)
    eff = step(s, TransferLeadership("f", N3))
    assert eff[0] == Reply("f", ("ok", "ok", N1))
    assert TimeoutNow(1, N1) not in [getattr(e, "msg", None) for e in eff]
    eff = ack(s, N3, 1)
    assert SendRpc(N3, TimeoutNow(1, N1)) in eff


def test_transfer_to_self_and_unknown():
    s = leader()
    assert step(s, TransferLeadership("f", N1)) == [Reply("f", ("ok", "already_leader", N1))]
    assert step(s, TransferLeadership("f", ("zz", "q"))) == [
        Reply("f", ("error", "unknown_member"))]


class SnapMachine:
    def init(self, config):
        return 0

    def apply(self, meta, cmd, state):
        new = state + cmd
        return new, new, [ReleaseCursor(meta["index"], new), ("send_msg", "pid", new)]


def test_release_cursor_snapshots_and_lagging_follower_gets_install_snapshot():
    s = leader(machine=SnapMachine(), snapshot_chunk_size=1)
    sync(s)
    ack(s, N2, 1)
    step(s, Command("usr", 12, None))
    step(s, FlushCommands())
    sync(s)
    eff = ack(s, N2, 2)
    assert eff == [SendMsg("pid", 12)]
    assert s.log.snapshot_index_term() == (2, 1) and s.log.fetch(1) is None
    # N3 has nothing: it needs the snapshot, sent in 1-byte chunks
    eff = step(s, AppendEntriesReply(1, False, 1, 0, 0, N3))
    chunks = [e.msg for e in eff]
    assert all(isinstance(c, InstallSnapshotRpc) for c in chunks)
    assert [c.chunk_state for c in chunks] == [(1, "next"), (2, "last")]
    assert b"".join(c.data for c in chunks) == b"12"
    eff = step(s, InstallSnapshotResult(1, 2, 1, N3))
    assert s.peers[N3].match_index == 2 and s.peers[N3].snapshot == "none"


def test_written_notice_for_leader_commits_single_member():
    s = new_server(members=(N1,))
    from ra.core.messages import MetaWritten, TriggerElection
    step(s, TriggerElection())
    step(s, MetaWritten(s.meta_seq))
    assert s.role == "leader"
    step(s, Command("usr", 3, ("await", "f")))
    step(s, FlushCommands())
    eff = []
    for ev in s.log.sync():
        eff += step(s, ev)
    assert eff == [Reply("f", ("ok", 3, N1))]
    assert step(s, Written(1, 1, 2)) == []
    assert StartElectionTimeout() not in eff
