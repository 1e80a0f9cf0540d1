"""Elections: pre-vote, candidate, vote granting, durability of votes (↔ ra_server_SUITE)."""
from ra.core.effects import Reply, SendRpc, StartElectionTimeout, StartHeartbeatTimeout
from ra.core.messages import (
    AppendEntriesRpc, ElectionTimeout, LeaderDown, MetaWritten, PreVoteResult, PreVoteRpc,
    RequestVoteResult, RequestVoteRpc, TimeoutNow, TriggerElection,
)
from ra.testing import mutants
from ra.testing.memory import MemoryLog, MemoryMeta
from tests.core.helpers import CLUSTER, N1, N2, N3, make_leader, new_server, step, with_log


def test_brand_new_server_waits_for_trigger_election():
    s = new_server()
    assert s.brand_new
    assert step(s, ElectionTimeout()) == [StartElectionTimeout()]
    assert s.role == "follower"


def test_a_brand_new_server_that_granted_a_vote_campaigns_once_its_timer_fires():
    # the cluster was started; its candidate may be cut off before its first append, and the
    # members that voted for it are a majority that must be able to elect another
    s = new_server()
    step(s, RequestVoteRpc(1, N2, 0, 0))
    assert s.voted_for == N2 and not s.brand_new
    assert SendRpc(N2, RequestVoteResult(1, True, N1)) in step(s, MetaWritten(s.meta_seq))
    step(s, ElectionTimeout())
    assert s.role == "pre_vote"


def test_trigger_election_starts_pre_vote():
    s = new_server()
    eff = step(s, TriggerElection(("c", 1)))
    rpc = PreVoteRpc(1, 1, N1, 0, 0, 0, True)    # asked for: forced past quiet stickiness
    assert eff == [Reply(("c", 1), ("ok", "ok", None)), StartElectionTimeout(),
                   SendRpc(N2, rpc), SendRpc(N3, rpc)]
    assert s.role == "pre_vote" and s.current_term == 0


def test_election_timeout_of_recovered_follower_starts_pre_vote():
    s = new_server()
    with_log(s, [(1, 1, ("noop", 0))], term=1)
    eff = step(s, ElectionTimeout())
    rpc = PreVoteRpc(2, 1, N1, 1, 1, 0)
    assert eff == [StartElectionTimeout(), SendRpc(N2, rpc), SendRpc(N3, rpc)]
    assert s.role == "pre_vote" and s.current_term == 1


def test_follower_that_heard_from_leader_waits_another_timeout():
    s = new_server(quiet_when_idle=False)      # quiet mode: tests/core/test_quiet.py
    with_log(s, [(1, 1, ("noop", 0))], term=1)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    # counted from the leader's last message (the shell knows when that was)
    assert step(s, ElectionTimeout()) == [StartElectionTimeout(since_leader=True)]
    assert s.role == "follower"
    assert step(s, ElectionTimeout())[1:] == [SendRpc(N2, PreVoteRpc(2, 1, N1, 1, 1, 0)),
                                              SendRpc(N3, PreVoteRpc(2, 1, N1, 1, 1, 0))]


def test_pre_vote_majority_becomes_candidate_and_holds_votes_until_term_durable():
    s = new_server()
    step(s, TriggerElection())
    eff = step(s, PreVoteResult(1, 1, True, N2))
    assert s.role == "candidate" and s.current_term == 1 and s.voted_for == N1
    # the RequestVote RPCs wait until term 1 and the self-vote are durable
    assert eff == [StartElectionTimeout()]
    eff = step(s, MetaWritten(s.meta_seq))
    rv = RequestVoteRpc(1, N1, 0, 0)
    assert eff == [SendRpc(N2, rv), SendRpc(N3, rv)]


def test_pre_vote_with_stale_token_is_ignored():
    s = new_server()
    step(s, TriggerElection())
    step(s, ElectionTimeout())   # new round, token 2
    assert step(s, PreVoteResult(1, 1, True, N2)) == []
    assert s.role == "pre_vote"


def test_candidate_with_majority_becomes_leader_and_appends_noop():
    s = new_server()
    eff = make_leader(s)
    assert s.log.last_index_term() == (1, 1)
    assert s.log.fetch(1) == (1, 1, ("noop", 0))
    ae = AppendEntriesRpc(1, N1, 0, 0, 0, [(1, 1, ("noop", 0))])
    assert eff == [StartHeartbeatTimeout(), StartElectionTimeout(check_quorum=True),
                   SendRpc(N2, ae), SendRpc(N3, ae)]


def test_vote_granted_once_per_term_and_only_after_durable():
    s = new_server()
    eff = step(s, RequestVoteRpc(1, N2, 0, 0))
    assert s.voted_for == N2 and s.current_term == 1
    assert eff == [StartElectionTimeout()]            # reply held: vote not durable yet
    eff = step(s, MetaWritten(s.meta_seq))
    assert eff == [SendRpc(N2, RequestVoteResult(1, True, N1))]
    eff = step(s, RequestVoteRpc(1, N3, 0, 0))
    assert eff == [SendRpc(N3, RequestVoteResult(1, False, N1))]


def test_vote_denied_when_candidate_log_is_behind():
    s = new_server()
    with_log(s, [(1, 1, ("noop", 0)), (2, 1, ("usr", 5, None, 0))], term=1)
    eff = step(s, RequestVoteRpc(2, N2, 1, 1))
    assert s.current_term == 2 and s.voted_for is None
    step(s, MetaWritten(s.meta_seq))
    assert s.held == []
    assert eff == []   # held, then released by MetaWritten above
    # with a log as long, granted
    s2 = new_server()
    with_log(s2, [(1, 1, ("noop", 0)), (2, 1, ("usr", 5, None, 0))], term=1)
    step(s2, RequestVoteRpc(2, N2, 2, 1))
    assert s2.voted_for == N2


def test_mutant_vote_without_log_check_grants_stale_candidate():
    s = new_server(core=mutants.load("vote_without_log_check"))
    with_log(s, [(1, 1, ("noop", 0)), (2, 1, ("usr", 5, None, 0))], term=1)
    step(s, RequestVoteRpc(2, N2, 1, 1))
    assert s.voted_for == N2


def test_pre_vote_does_not_change_receivers_term():
    s = new_server()
    with_log(s, [(1, 1, ("noop", 0))], term=1)
    eff = step(s, PreVoteRpc(2, 7, N2, 1, 1, 0))
    assert eff == [SendRpc(N2, PreVoteResult(2, 7, True, N1)), StartElectionTimeout()]
    assert s.current_term == 1 and s.voted_for is None
    eff = step(s, PreVoteRpc(2, 8, N3, 0, 0, 0))
    # refused (its log is behind): no leader known, so this member campaigns soon itself
    assert eff == [SendRpc(N3, PreVoteResult(1, 8, False, N1)), StartElectionTimeout(short=True, at_once=True)]
    assert s.current_term == 1 and s.voted_for is None


def test_refusing_a_stale_pre_vote_without_a_leader_campaigns_soon_without_waiting_its_turn():
    s = new_server()
    with_log(s, [(1, 1, ("noop", 0)), (2, 1, ("usr", 5, None, 0))], term=1)
    s.brand_new = False
    eff = step(s, PreVoteRpc(2, 3, N2, 1, 1, 0))      # its log ends at 1, ours at 2
    assert eff == [SendRpc(N2, PreVoteResult(1, 3, False, N1)), StartElectionTimeout(short=True, at_once=True)]
    # the same when its term is not ahead of ours (the others moved on to a later term)
    eff = step(s, PreVoteRpc(1, 5, N2, 2, 1, 0))
    assert eff == [SendRpc(N2, PreVoteResult(1, 5, False, N1)), StartElectionTimeout(short=True, at_once=True)]
    # with a leader known, a stale pre-vote changes nothing
    s.leader_id = N3
    eff = step(s, PreVoteRpc(2, 4, N2, 1, 1, 0))
    assert eff == [SendRpc(N2, PreVoteResult(1, 4, False, N1))]


def test_leader_steps_down_on_higher_term():
    s = new_server()
    make_leader(s)
    step(s, RequestVoteRpc(5, N2, 9, 9))
    assert s.role == "follower" and s.current_term == 5


def test_restart_remembers_vote():
    log, meta = MemoryLog(), MemoryMeta()
    s = new_server(log=log, meta=meta)
    step(s, RequestVoteRpc(1, N2, 0, 0))
    meta.sync()
    meta.crash()
    log.crash()
    s2 = new_server(log=log, meta=meta)
    assert (s2.current_term, s2.voted_for) == (1, N2)
    step(s2, RequestVoteRpc(1, N3, 0, 0))
    assert s2.voted_for == N2


def test_restart_forgets_unsynced_vote():
    log, meta = MemoryLog(), MemoryMeta()
    s = new_server(log=log, meta=meta)
    eff = step(s, RequestVoteRpc(1, N2, 0, 0))
    assert not any(isinstance(e, SendRpc) for e in eff)   # never answered
    meta.crash()
    s2 = new_server(log=log, meta=meta)
    assert (s2.current_term, s2.voted_for) == (0, None)


def test_mutant_forget_voted_for():
    log, meta = MemoryLog(), MemoryMeta()
    s = new_server(log=log, meta=meta)
    step(s, RequestVoteRpc(1, N2, 0, 0))
    meta.sync()
    s2 = new_server(log=log, meta=meta, core=mutants.load("forget_voted_for"))
    assert s2.voted_for is None


def test_timeout_now_skips_pre_vote():
    s = new_server()
    with_log(s, [(1, 1, ("noop", 0))], term=1)
    step(s, TimeoutNow(1, N2))
    assert s.role == "candidate" and s.current_term == 2


def test_leader_down_starts_pre_vote_soon():
    s = new_server()
    with_log(s, [(1, 1, ("noop", 0))], term=1)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    # soon, after a short random delay the shell picks (followers must not all split the vote)
    assert step(s, LeaderDown(N2)) == [StartElectionTimeout(short=True)]
    assert s.role == "follower" and s.leader_id is None
    step(s, ElectionTimeout())
    assert s.role == "pre_vote"


def test_single_member_cluster_elects_itself():
    s = new_server(members=(N1,))
    step(s, TriggerElection())
    assert s.role == "candidate"
    assert s.role == "candidate"      # its own vote is not durable yet
    eff = step(s, MetaWritten(s.meta_seq))
    assert s.role == "leader"
    assert eff == [StartHeartbeatTimeout(), StartElectionTimeout(check_quorum=True)]


def test_non_member_never_campaigns():
    s = new_server(sid=("n9", "x:9"), members=CLUSTER)
    s.brand_new = False
    assert step(s, ElectionTimeout()) == [StartElectionTimeout()]
    assert s.role == "follower"


def test_granting_a_pre_vote_without_a_leader_holds_our_own_campaign_back():
    # quiet mode refuses pre-votes while it has a leader (tests/core/test_quiet.py)
    s = new_server(quiet_when_idle=False)
    with_log(s, [(1, 1, ("noop", 0))], term=1)
    eff = step(s, PreVoteRpc(2, 1, N2, 1, 1, 0))
    assert eff == [SendRpc(N2, PreVoteResult(2, 1, True, N1)), StartElectionTimeout()]
    step(s, AppendEntriesRpc(1, N3, 1, 1, 1, []))           # with a leader: no hold back
    eff = step(s, PreVoteRpc(2, 2, N2, 1, 1, 0))
    assert eff == [SendRpc(N2, PreVoteResult(2, 2, True, N1))]
