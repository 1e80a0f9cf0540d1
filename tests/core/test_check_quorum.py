"""Check-quorum (etcd's CheckQuorum, Raft dissertation §6.2; ra has no equivalent): at every
election timeout a leader checks that a majority, itself included, answered it since the last
check, and steps down otherwise."""
from ra.core.effects import StartElectionTimeout
from ra.core.messages import AppendEntriesReply, ElectionTimeout, HeartbeatReply
from tests.core.helpers import N1, N2, N3, make_leader, new_server, step, sync


def leader():
    s = new_server()
    make_leader(s)
    sync(s)
    return s


def test_a_leader_arms_its_quorum_check_on_election() -> None:
    s = new_server()
    eff = make_leader(s)
    assert StartElectionTimeout(check_quorum=True) in eff


def test_a_leader_answered_by_a_majority_stays_and_rearms() -> None:
    s = leader()
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))
    eff = step(s, ElectionTimeout())
    assert s.role == "leader"
    assert eff == [StartElectionTimeout(check_quorum=True)]
    # the answers are counted per check: none since the last one, so the next check fails
    step(s, ElectionTimeout())
    assert s.role == "follower" and s.leader_id is None


def test_a_leader_nobody_answered_steps_down() -> None:
    s = leader()
    eff = step(s, ElectionTimeout())
    assert s.role == "follower"
    assert StartElectionTimeout() in eff


def test_any_reply_of_the_current_term_counts_but_not_older_terms() -> None:
    s = leader()
    s.current_term = 2                      # as if re-elected; replies of term 1 are stale
    step(s, HeartbeatReply(0, 1, N2))
    step(s, HeartbeatReply(0, 1, N3))
    step(s, ElectionTimeout())
    assert s.role == "follower"
    s2 = leader()
    step(s2, HeartbeatReply(0, 1, N3))
    step(s2, ElectionTimeout())
    assert s2.role == "leader" and s2.id == N1
