"""Commands, pipelines and queries (↔ ra_SUITE, ra_2_SUITE)."""
from __future__ import annotations

import os
import signal
import time

import pytest

import ra
from ra import messages as rm
from ra.testing import machines as M
from tests.api.conftest import COUNTER, KV, leader_of, wait_for

pytestmark = pytest.mark.integration


def _follower(ids):
    leader = leader_of(ids)
    return next(s for s in ids if s != leader), leader


def test_process_command_sent_to_follower_is_redirected(cluster):
    follower, leader = _follower(cluster)
    reply, via = ra.process_command(follower, 3)
    assert reply == 3 and via == leader


def test_pipeline_command_to_follower_yields_rejected_naming_leader(cluster):
    follower, leader = _follower(cluster)
    with ra.Client() as c:
        c.pipeline_command(follower, 1, correlation="c1")
        ev = c.receive(timeout=5)
    assert ev.event == ("rejected", ("not_leader", leader, "c1"))
    assert ev.leader == leader


def _pipeline_all(leader, n, timeout=5):
    """Pipeline ``n`` commands of 1 with correlations 0..n-1 from a fresh client; wait for
    every applied event: {correlation: reply}."""
    with ra.Client() as c:
        for i in range(n):
            c.pipeline_command(leader, 1, correlation=i, priority="normal")
        got = {}
        while len(got) < n:
            ev = c.receive(timeout=timeout)
            assert ev.leader == leader and ev.event[0] == "applied"
            got.update(dict(ev.event[1]))
    return got


def test_pipeline_command_applied_events_are_batched_with_correlations(cluster):
    leader = leader_of(cluster)
    got = _pipeline_all(leader, 50)
    assert sorted(got) == list(range(50))
    assert sorted(got.values()) == list(range(1, 51))   # each reply is the running total


def test_low_priority_pipeline_commands_are_all_applied(cluster):
    leader = leader_of(cluster)
    with ra.Client() as c:
        for i in range(200):
            c.pipeline_command(leader, 1, correlation=i)     # default priority: low
        n = 0
        while n < 200:
            ev = c.receive(timeout=5)
            n += len(ev.event[1])
    assert ra.consistent_query(leader, M.get_state)[0] == 200


def test_pipeline_without_correlation_sends_no_event(cluster):
    leader = leader_of(cluster)
    with ra.Client() as c:
        c.pipeline_command(leader, 5)
        wait_for(lambda: ra.consistent_query(leader, M.get_state)[0] == 5, what="applied")
        with pytest.raises(ra.Timeout):
            c.receive(timeout=0.2)


def test_consistent_query_after_n_commands_sees_all(cluster):
    for _ in range(25):
        ra.process_command(cluster, 1)
    for sid in cluster:       # from any member: the query goes to the leader
        assert ra.consistent_query(sid, M.get_state)[0] == 25


def test_local_and_leader_query(cluster):
    ra.process_command(cluster, 7)
    leader = leader_of(cluster)
    (idx, term), value, lead = ra.leader_query(cluster[0], M.get_state)
    assert value == 7 and lead == leader and idx >= 2 and term >= 1
    for sid in cluster:
        wait_for(lambda: ra.local_query(sid, M.get_state)[1] == 7, what="follower applied")


def test_query_function_forms(shared_three, cname):
    ids = [shared_three.sid(cname, i) for i in range(3)]
    ra.start_cluster(cname, KV, ids)
    assert ra.process_command(ids, ("put", "a", 1))[0] == "ok"
    assert ra.consistent_query(ids, ("ra.testing.machines", "get_key", ["a"]))[0] == 1
    assert ra.consistent_query(ids, "ra.testing.machines:get_state")[0] == {"a": 1}
    with pytest.raises(ra.RaError, match="query crashed"):
        ra.consistent_query(ids, M.crash_on)
    # the server survived the failing query
    assert ra.process_command(ids, ("get", "a"))[0] == 1


def test_terms_round_trip_through_log_and_replies(shared_three, cname):
    ids = [shared_three.sid(cname, i) for i in range(3)]
    ra.start_cluster(cname, KV, ids)
    value = {"t": (1, 2), "b": b"\x00\xff", "s": {1, 2}, "f": frozenset({3}), "big": 2 ** 100,
             "l": [1, (2, [3])], "sid": ra.ServerId("x", "h:1"), "n": None, "x": 1.5}
    ra.process_command(ids, ("put", ("k", 1), value))
    assert ra.process_command(ids, ("get", ("k", 1)))[0] == value
    got = ra.consistent_query(ids, M.get_state)[0][("k", 1)]
    assert got == value and type(got["t"]) is tuple and type(got["f"]) is frozenset


def test_members_and_members_info(cluster):
    members, leader = ra.members(cluster[2])
    assert sorted(members) == sorted(cluster) and leader in cluster
    assert ra.initial_members(cluster[1]) == cluster
    info = ra.members_info(cluster[0])
    assert set(info) == set(cluster)
    assert info[leader]["status"] == "leader"


def test_key_metrics_answered_by_the_node(cluster):
    leader = leader_of(cluster)
    ra.process_command(cluster, 1)
    m = wait_for(lambda: m if (m := ra.key_metrics(leader))["state"] == "leader" else None,
                 what="leader metrics")
    assert m["term"] >= 1 and m["membership"] == "voter"


def test_ping(cluster):
    assert ra.ping(cluster[0]) == "pong"


def test_transfer_leadership(cluster):
    leader = leader_of(cluster)
    target = next(s for s in cluster if s != leader)
    for _ in range(3):
        ra.process_command(cluster, 1)
    assert ra.transfer_leadership(leader, target) == "ok"
    wait_for(lambda: leader_of(cluster) == target, what="target leads")
    assert ra.transfer_leadership(target, target) == "already_leader"
    assert ra.process_command(cluster, 1)[0] == 4


def test_trigger_election_moves_leadership(cluster):
    leader = leader_of(cluster)
    other = next(s for s in cluster if s != leader)
    term = ra.key_metrics(leader)["term"]
    ra.trigger_election(other)
    # its log is as up to date as anyone's: it wins, in a higher term
    wait_for(lambda: ra.key_metrics(other)["state"] == "leader", what=f"{other} leads")
    assert ra.key_metrics(other)["term"] > term
    assert ra.members(cluster)[1] == other
    assert ra.process_command(cluster, 2)[0] == 2


def test_group_commit_holds_only_behind_an_uncommitted_batch(shared_three, cname):
    """With a hold far longer than a command takes (group_commit_ms=900, and heartbeats,
    which would carry held entries to the followers, only every 1.5 s), one client's commands
    one after another never wait for it (nothing is uncommitted when each arrives), and a
    pipelined burst is all applied (the hold ends when the batch before commits)."""
    import time
    ids = [shared_three.sid(cname, i) for i in range(3)]
    ra.start_cluster([{"cluster_name": cname, "id": s, "machine": COUNTER,
                       "initial_members": ids, "group_commit_ms": 900, "heartbeat_ms": 1500,
                       "election_timeout_ms": 5000} for s in ids])
    leader = leader_of(ids)
    ra.process_command(leader, 0)
    took = []
    for n in range(1, 11):
        t0 = time.monotonic()
        assert ra.process_command(leader, 1)[0] == n
        took.append(time.monotonic() - t0)
    assert max(took) < 0.3, took
    got = _pipeline_all(leader, 300, timeout=10)
    assert sorted(got.values()) == list(range(11, 311))


def test_pipelined_session_commands_in_the_older_and_the_flat_wire_form(cluster):
    """A session travels flat in ``PipelineCast`` (id, seq, first_out); the older frame, the
    triple in ``session``, still works, and both name the same command: a copy of a seq in
    the other form is answered with the first reply, not applied again. A raw cast with no
    session is applied each time; a flat session with a bad seq is dropped at the door."""
    from ra import messages as rm
    from transport import registry
    leader = leader_of(cluster)
    with ra.Client() as c:
        c.pipeline_command(leader, 1, correlation="open")     # opens the session
        assert c.receive(timeout=5).event == ("applied", [("open", 1)])
        sess = c._sessions[leader]
        seq = sess.seq + 1
        me = c.address_for(leader.node)

        def cast(corr, session, *flat):
            registry.cast_name(c.mb, leader, rm.PipelineCast(10, corr, me, "normal", session,
                                                             *flat))
            return c.receive(timeout=5).event

        assert cast("old", (sess.id, seq, seq)) == ("applied", [("old", 11)])
        assert cast("flat-dup", sess.id, seq, seq) == ("applied", [("flat-dup", 11)])
        assert cast("flat", sess.id, seq + 1, seq) == ("applied", [("flat", 21)])
        assert cast("old-dup", (sess.id, seq + 1, seq)) == ("applied", [("old-dup", 21)])
        assert cast("raw", None) == ("applied", [("raw", 31)])
        assert cast("raw-again", None) == ("applied", [("raw-again", 41)])
        registry.cast_name(c.mb, leader, rm.PipelineCast(10, "bad", me, "normal", sess.id,
                                                         seq + 2, seq + 3))
        with pytest.raises(ra.Timeout):
            c.receive(timeout=0.3)
    assert ra.consistent_query(leader, M.get_state)[0] == 41
    # the server reports its figures to its node now and then
    wait_for(lambda: ra.key_metrics(leader)["bad_messages"].get("bad_rule:PipelineCast") == 1,
             what="the bad cast counted")


def test_a_correlation_reused_under_a_new_session_is_tracked_under_it(cluster):
    """The client tracks a pipelined command by its correlation until its event: pipelined
    again under another session (the first one dropped, as when the cluster expired it), the
    correlation's seq is that session's, and the commands left under the old one stop holding
    its first outstanding seq back. Both are applied; nothing stays tracked."""
    leader = leader_of(cluster)
    with ra.Client() as c:
        c.pipeline_command(leader, 1, correlation="x")
        old = c._sessions[leader]
        c._drop_session(old)
        c.pipeline_command(leader, 1, correlation="x")
        new = c._sessions[leader]
        assert new is not old and not old.waiting and new.waiting == {1}
        got: list = []
        while len(got) < 2:
            ev = c.receive(timeout=5)
            assert ev.event[0] == "applied"
            got += ev.event[1]
        assert [corr for corr, _ in got] == ["x", "x"]
        assert not new.waiting and not c._pipes
    assert ra.consistent_query(leader, M.get_state)[0] == 2



def _burst(c, sid, pid, msgs, timeout=10):
    """Send every one of ``msgs`` (calls; a ``PipelineCast`` as a cast) to ``sid`` back to
    back while its process ``pid`` is stopped (SIGSTOP: so that it finds them queued
    together when it goes on, whatever its loop takes per poll), and return the calls'
    answers in order. ``c`` has a connection to ``sid`` already."""
    from transport import envelope, registry
    ep = registry.resolve(c.mb, sid.name, sid.node)
    me = c.mb.reply_address(ep)
    refs = []
    os.kill(pid, signal.SIGSTOP)
    try:
        for ref, m in enumerate(msgs, 10_000):
            if type(m) is rm.PipelineCast:
                m = rm.PipelineCast(m.payload, None, me, m.priority)
            call = type(m) is not rm.PipelineCast
            c.mb._send(ep, envelope.pack(envelope.CALL if call else envelope.CAST, me,
                                         ref if call else None, m))
            if call:
                refs.append(ref)
    finally:
        os.kill(pid, signal.SIGCONT)
    got = {}
    deadline = time.monotonic() + timeout
    while len(got) < len(refs):
        assert time.monotonic() < deadline, f"answers {got} of {refs}"
        c.mb._wait(100)
        while (t := c.mb._read()) is not None:
            kind, _frm, ref, value = t
            if kind == envelope.REPLY and ref in refs:
                got[ref] = value
    return [got[r] for r in refs]


def test_calls_that_arrive_together_are_each_answered_in_order(cluster, shared_three):
    """The usr commands a leader takes in one loop turn, called or pipelined, are stepped as
    one core ``Commands`` message: each caller still gets its own answer, in arrival order
    (a low-priority one is appended at the flush, after the normal ones: as ever), beside a
    session command, a malformed call and a pipelined command."""
    leader = leader_of(cluster)
    base, _ = ra.process_command(leader, 0)
    with ra.Client() as c:
        sid, _ = c._leader_call(leader, rm.CommandCall("open_session", None, "normal"), 5)
        i = next(i for i, a in shared_three.addrs.items() if a == leader.node)
        pid = shared_three.server_pid(leader.name, i)
        answers = _burst(c, leader, pid, [
            rm.CommandCall("usr", 1, "normal"),
            rm.CommandCall("usr", 2, "normal", (sid, 1, 1)),
            rm.CommandCall("usr", 4, "low"),
            rm.CommandCall("usr", 8, "normal", (sid, 0, 0)),      # malformed: refused
            rm.PipelineCast(16, None, None, "normal"),
            rm.CommandCall("close_session", sid, "normal"),
            rm.CommandCall("usr", 32, "normal"),
            rm.CommandCall("usr", 2, "normal", (sid, 2, 2)),      # its session is closed
        ])
    assert [a[:2] for a in answers[:3]] == [("ok", base + 1), ("ok", base + 3),
                                            ("ok", base + 55)]
    assert answers[3][:2] == ("error", "bad_request")
    assert answers[4][0] == "ok"                                # the session closed
    assert answers[5][:2] == ("ok", base + 51)                  # after the pipelined 16
    assert answers[6][0] == "error"
