"""Quiet when idle (``ServerConfig.quiet_when_idle``; ``ra.core.server``, "Quiet when idle"): an
idle leader arms no heartbeat and (no peer's node suspected) no quorum check, a follower with an
unsuspected leader arms no election timer, the node failure detector's ``NodeDown``/``NodeUp``
do the fast detection, a client's probe finds a hung leader, a member that lost the leader finds
it again through its pre-vote (answered with an append), and check-quorum still deposes a
cut-off leader. Exact effects, as in ``test_server_follower``."""
from __future__ import annotations

from typing import Any

from ra.core.effects import NextEvent, SendRpc, StartElectionTimeout, StartHeartbeatTimeout
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, Command, ElectionTimeout, FlushCommands,
    ConsistentQuery, HeartbeatTimeout, LeaderDown, LeaderProbe, NodeDown, NodeUp, PreVoteResult,
    PreVoteRpc, RequestVoteResult, RequestVoteRpc, TriggerElection,
)
from ra.core.effects import Reply
from ra.core.server import SILENT_AFTER, SILENT_EVERY
from tests.core.helpers import N1, N2, N3, make_leader, new_server, step, sync, with_log

NOOP = ("noop", 0)


def quiet_leader() -> Any:
    """N1 leads term 1 in quiet mode; its noop (index 1) is durable, not yet replicated."""
    s = new_server(quiet_when_idle=True)
    make_leader(s)
    sync(s)
    return s


def ack(s: Any, peer: Any, commit: int) -> list[Any]:
    last = s.log.last_index_term()[0]
    return step(s, AppendEntriesReply(s.current_term, True, last + 1, last, 1, peer, commit))


def idle_leader() -> Any:
    s = quiet_leader()
    ack(s, N2, 0)
    ack(s, N3, 0)                  # the noop commits; the peers do not know it yet
    assert s.commit_index == 1
    ack(s, N2, 1)
    ack(s, N3, 1)
    return s


def quiet_follower() -> Any:
    """N1 follows N2 in term 1, quiet mode, its log and commit index level with the leader's."""
    s = new_server(quiet_when_idle=True)
    with_log(s, [(1, 1, NOOP)], term=1)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    assert s.leader_id == N2
    return s


# -- the leader ------------------------------------------------------------------------------------

def test_a_leader_heartbeats_while_a_peer_does_not_know_the_commit_index() -> None:
    s = quiet_leader()
    ack(s, N2, 0)
    ack(s, N3, 0)
    eff = step(s, HeartbeatTimeout())
    assert eff[0] == StartHeartbeatTimeout() and len(eff) == 3
    assert {e.to for e in eff[1:]} == {N2, N3}
    assert all(type(e) is SendRpc and e.msg.leader_commit == 1 for e in eff[1:])
    assert not s.heartbeat_off


def test_an_idle_leader_stops_heartbeating() -> None:
    s = idle_leader()
    # the first timeout that finds it idle sends nothing and arms nothing
    assert step(s, HeartbeatTimeout()) == []
    assert s.heartbeat_off
    # a late answer to an earlier heartbeat changes nothing: still idle, still no timer
    assert step(s, AppendEntriesReply(1, True, 2, 1, 1, N3, 1)) == []
    assert s.heartbeat_off


def test_a_peer_that_lacks_entries_keeps_the_heartbeats_going() -> None:
    s = quiet_leader()
    ack(s, N2, 0)
    ack(s, N2, 1)                  # N2 knows everything; N3 never answered
    eff = step(s, HeartbeatTimeout())
    assert eff[0] == StartHeartbeatTimeout() and not s.heartbeat_off


def test_a_command_wakes_an_idle_leader_up() -> None:
    s = idle_leader()
    step(s, HeartbeatTimeout())
    eff = step(s, Command("usr", 5))
    assert eff == [NextEvent(FlushCommands()), StartHeartbeatTimeout()]
    assert not s.heartbeat_off


def test_without_quiet_mode_an_idle_leader_heartbeats() -> None:
    s = new_server(quiet_when_idle=False)
    make_leader(s)
    sync(s)
    for p in (N2, N3):
        step(s, AppendEntriesReply(1, True, 2, 1, 1, p, 0))
        step(s, AppendEntriesReply(1, True, 2, 1, 1, p, 1))
    eff = step(s, HeartbeatTimeout())
    assert eff[0] == StartHeartbeatTimeout() and len(eff) == 3


# -- check-quorum in quiet mode -------------------------------------------------------------------

def test_an_idle_leader_whose_peers_nodes_are_up_stays_without_answers() -> None:
    s = idle_leader()
    step(s, HeartbeatTimeout())
    # nothing can make the next check fail before a command or a suspicion: none is armed
    assert step(s, ElectionTimeout()) == []
    assert s.role == "leader" and s.quorum_off


def test_a_suspected_node_brings_the_quorum_check_back_to_its_pace() -> None:
    s = idle_leader()
    step(s, ElectionTimeout())
    assert s.quorum_off
    assert step(s, NodeDown(N2[1])) == [StartElectionTimeout(check_quorum=True)]
    assert not s.quorum_off
    # with a peer's node suspected the checks stay at one per election timeout
    assert step(s, ElectionTimeout()) == [StartElectionTimeout(check_quorum=True)]
    assert s.role == "leader"                # N3 and itself: a majority
    step(s, NodeDown(N3[1]))
    eff = step(s, ElectionTimeout())
    assert s.role == "follower" and StartElectionTimeout() in eff


def test_a_command_brings_the_quorum_check_back_to_its_pace() -> None:
    s = idle_leader()
    step(s, ElectionTimeout())
    assert s.quorum_off
    eff = step(s, Command("usr", 5))
    assert StartElectionTimeout(check_quorum=True) in eff and not s.quorum_off


def test_an_idle_leader_steps_down_once_a_majority_of_nodes_is_reported_down() -> None:
    s = idle_leader()
    step(s, HeartbeatTimeout())
    assert step(s, NodeDown(N2[1])) == []
    step(s, ElectionTimeout())
    assert s.role == "leader"                # N3 and itself: a majority
    step(s, NodeDown(N3[1]))
    eff = step(s, ElectionTimeout())
    assert s.role == "follower" and StartElectionTimeout() in eff


def test_node_up_ends_a_suspicion() -> None:
    s = idle_leader()
    step(s, NodeDown(N2[1]))
    step(s, NodeDown(N3[1]))
    step(s, NodeUp(N3[1]))
    assert s.down_nodes == {N2[1]}
    step(s, ElectionTimeout())
    assert s.role == "leader"


def test_outstanding_entries_must_be_answered_within_two_checks() -> None:
    s = idle_leader()
    step(s, ElectionTimeout())               # idle at this check: counted by node status
    step(s, Command("usr", 5))
    step(s, FlushCommands())                 # sent; nobody answers
    step(s, ElectionTimeout())               # idle at the previous check: still counted
    assert s.role == "leader"
    step(s, ElectionTimeout())
    assert s.role == "follower"


# -- the follower ----------------------------------------------------------------------------------

def test_a_follower_with_an_unsuspected_leader_runs_no_election_timer() -> None:
    s = quiet_follower()
    assert step(s, ElectionTimeout()) == []
    assert s.election_off and s.role == "follower" and s.leader_id == N2
    # a leader's append changes nothing; a timer left over (an answered probe's) neither
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    assert step(s, ElectionTimeout()) == []
    assert s.election_off and s.leader_id == N2 and s.role == "follower"


def test_a_connection_loss_forgets_the_leader_and_the_pre_vote_finds_it_again() -> None:
    # the connection to the idle leader dropped and came back: nothing else would ever tell
    s = quiet_follower()
    step(s, ElectionTimeout())
    eff = step(s, LeaderDown(N2))
    assert eff == [StartElectionTimeout(short=True, turn=0)] and not s.election_off
    eff = step(s, ElectionTimeout())
    assert s.role == "pre_vote"
    assert SendRpc(N2, PreVoteRpc(2, s.pre_vote_token, N1, 1, 1)) in eff
    # the leader answers with an append (test_an_idle_leader_answers_a_members_pre_vote...)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    assert s.role == "follower" and s.leader_id == N2 and s.current_term == 1
    assert step(s, ElectionTimeout()) == [] and s.election_off


def test_node_down_of_the_leaders_node_starts_the_election_timer() -> None:
    s = quiet_follower()
    step(s, ElectionTimeout())
    eff = step(s, NodeDown(N2[1]))
    assert eff == [StartElectionTimeout(short=True, turn=0)]
    assert s.leader_id is None and not s.election_off
    eff = step(s, ElectionTimeout())
    assert s.role == "pre_vote" and eff[0] == StartElectionTimeout()


def test_node_down_of_another_node_changes_nothing_but_is_kept() -> None:
    s = quiet_follower()
    step(s, ElectionTimeout())
    assert step(s, NodeDown(N3[1])) == []
    assert s.leader_id == N2 and s.down_nodes == {N3[1]}


def test_a_leader_on_a_suspected_node_keeps_the_timer_running() -> None:
    s = quiet_follower()
    step(s, NodeDown(N2[1]))                 # reported down, then heard from again
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    assert s.leader_id == N2
    eff = step(s, ElectionTimeout())
    assert eff == [StartElectionTimeout(since_leader=True, turn=0)]


def test_a_pre_vote_of_its_leader_for_a_later_term_means_the_leader_is_gone() -> None:
    s = quiet_follower()
    step(s, ElectionTimeout())
    eff = step(s, PreVoteRpc(2, 1, N2, 1, 1))
    assert s.leader_id is None and not s.election_off
    assert eff == [SendRpc(N2, PreVoteResult(2, 1, True, N1)), StartElectionTimeout()]


def test_a_higher_term_that_clears_the_leader_arms_the_timer() -> None:
    s = quiet_follower()
    step(s, ElectionTimeout())
    # a candidate whose log is behind: refused, yet its term is adopted and the leader forgotten
    eff = step(s, PreVoteRpc(3, 1, N3, 0, 0))
    assert eff == [SendRpc(N3, PreVoteResult(1, 1, False, N1))]       # a pre-vote changes nothing
    from ra.core.messages import RequestVoteRpc
    eff = step(s, RequestVoteRpc(3, N3, 0, 0))
    assert s.leader_id is None and s.current_term == 3
    assert eff[-1] == StartElectionTimeout() and not s.election_off


def test_without_quiet_mode_node_down_of_the_leader_acts_as_leader_down() -> None:
    s = new_server(quiet_when_idle=False)
    with_log(s, [(1, 1, NOOP)], term=1)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    assert step(s, NodeDown(N2[1])) == [StartElectionTimeout(short=True, turn=0)]
    assert s.leader_id is None


def test_a_malformed_node_event_is_dropped() -> None:
    s = quiet_follower()
    assert step(s, NodeDown(5)) == []        # type: ignore[arg-type]
    assert s.leader_id == N2 and s.dropped == {"bad node_down": 1}


# -- a client wakes the failure detection (a probe of the leader) ---------------------------------

def quiet_waiting() -> Any:
    """``quiet_follower`` past its first election timeout: no timer armed."""
    s = quiet_follower()
    assert step(s, ElectionTimeout()) == []
    return s


def test_a_command_at_a_quiet_follower_probes_the_leader_and_arms_a_normal_timeout() -> None:
    s = quiet_waiting()
    eff = step(s, Command("usr", 1, ("await", "c1")))
    probe = LeaderProbe(1, N2, N1)
    assert eff == [Reply("c1", ("redirect", N2)), SendRpc(N3, probe), SendRpc(N2, probe),
                   StartElectionTimeout()]
    assert s.probing and not s.election_off and s.leader_id == N2
    # another client while the probe is out: redirected, no second probe
    assert step(s, Command("usr", 2, ("await", "c2"))) == [Reply("c2", ("redirect", N2))]


def test_a_consistent_query_at_a_quiet_follower_probes_too() -> None:
    s = quiet_waiting()
    eff = step(s, ConsistentQuery("c1", len))
    assert eff[0] == Reply("c1", ("redirect", N2)) and s.probing
    assert SendRpc(N2, LeaderProbe(1, N2, N1)) in eff


def test_an_answered_probe_goes_back_to_quiet_waiting() -> None:
    s = quiet_waiting()
    step(s, Command("usr", 1, ("await", "c1")))
    eff = step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    assert not any(isinstance(e, StartElectionTimeout) for e in eff)
    assert not s.probing and s.election_off
    # the probe's timer fires once more, to no effect
    assert step(s, ElectionTimeout()) == []
    assert s.role == "follower" and s.leader_id == N2


def test_an_unanswered_probe_campaigns_after_one_election_timeout() -> None:
    s = quiet_waiting()
    step(s, Command("usr", 1, ("await", "c1")))
    eff = step(s, ElectionTimeout())
    assert s.role == "pre_vote" and s.leader_id is None and not s.probing
    assert eff[0] == StartElectionTimeout()
    assert all(type(e.msg) is PreVoteRpc and e.msg.term == 2 for e in eff[1:])


def test_a_leader_answers_a_probe_at_once_with_an_append() -> None:
    s = idle_leader()
    eff = step(s, LeaderProbe(1, N1, N2))
    assert [(e.to, type(e.msg)) for e in eff] == [(N2, AppendEntriesRpc)]
    assert eff[0].msg.term == 1 and eff[0].msg.entries == []
    assert step(s, LeaderProbe(1, N1, ("n9", "x:9"))) == []        # not a peer: ignored


def test_a_probe_copy_makes_another_quiet_follower_check_the_leader_too() -> None:
    s = quiet_waiting()
    eff = step(s, LeaderProbe(1, N2, N3))
    assert eff == [SendRpc(N2, LeaderProbe(1, N2, N1)), StartElectionTimeout()]
    assert s.probing and not s.election_off
    # a copy about another leader or term, or a second one: nothing
    s2 = quiet_waiting()
    assert step(s2, LeaderProbe(1, N3, N3)) == []
    assert step(s2, LeaderProbe(2, N2, N3)) == []


def test_a_quiet_follower_refuses_pre_votes_while_it_counts_on_its_leader() -> None:
    # a follower whose probe (or its answer) was lost must not depose a live leader
    s = quiet_waiting()
    assert step(s, PreVoteRpc(2, 1, N3, 1, 1)) == [SendRpc(N3, PreVoteResult(1, 1, False, N1))]
    assert s.leader_id == N2 and s.election_off
    # probing: still refused until its own probe has gone unanswered for its election timeout
    step(s, LeaderProbe(1, N2, N3))
    assert step(s, PreVoteRpc(2, 2, N3, 1, 1)) == [SendRpc(N3, PreVoteResult(1, 2, False, N1))]
    step(s, ElectionTimeout())
    assert s.role == "pre_vote"                # campaigns itself, and grants N3's
    eff = step(s, PreVoteRpc(2, 3, N3, 1, 1))
    assert eff == [SendRpc(N3, PreVoteResult(2, 3, True, N1))]


def test_an_operators_trigger_election_is_granted_by_a_follower_of_a_quiet_leader() -> None:
    # ra.trigger_election asks for an election: the stickiness of quiet followers must not
    # refuse it (a forced pre-vote); its log is still checked
    s = quiet_waiting()
    eff = step(s, PreVoteRpc(2, 1, N3, 1, 1, 0, True))
    assert eff == [SendRpc(N3, PreVoteResult(2, 1, True, N1))]
    behind = step(s, PreVoteRpc(2, 2, N3, 0, 0, 0, True))      # an empty log: refused
    assert behind == [SendRpc(N3, PreVoteResult(1, 2, False, N1))]
    # and the server asked sends forced pre-votes
    t = quiet_waiting()
    eff = step(t, TriggerElection(None))
    assert t.role == "pre_vote"
    assert {e.msg.force for e in eff if isinstance(e, SendRpc)} == {True}


def test_without_quiet_mode_a_command_at_a_follower_only_redirects() -> None:
    s = new_server(quiet_when_idle=False)
    with_log(s, [(1, 1, NOOP)], term=1)
    step(s, AppendEntriesRpc(1, N2, 1, 1, 1, []))
    step(s, ElectionTimeout())
    assert step(s, Command("usr", 1, ("await", "c1"))) == [Reply("c1", ("redirect", N2))]


def test_a_follower_that_just_accepted_its_leader_probes_it_too() -> None:
    # a leader that hangs right after its election: its followers' first timeout would go quiet
    s = quiet_follower()
    assert not s.election_off
    eff = step(s, Command("usr", 1, ("await", "c1")))
    assert SendRpc(N2, LeaderProbe(1, N2, N1)) in eff and eff[-1] == StartElectionTimeout()
    eff = step(s, ElectionTimeout())
    assert s.role == "pre_vote" and s.leader_id is None


# -- a member that lost the idle leader finds it again ---------------------------------------------

def test_an_idle_leader_answers_a_members_pre_vote_with_an_append_and_stays() -> None:
    s = idle_leader()
    step(s, HeartbeatTimeout())
    # (the append carries the commit index: a member restarted with a lower one catches up)
    eff = step(s, PreVoteRpc(2, 1, N2, 1, 1))
    assert eff == [SendRpc(N2, AppendEntriesRpc(1, N1, 1, 1, 1, [])),
                   SendRpc(N2, PreVoteResult(1, 1, False, N1))]
    assert s.role == "leader" and s.current_term == 1 and s.heartbeat_off
    # its answer changes nothing: still idle, no timer
    assert step(s, AppendEntriesReply(1, True, 2, 1, 1, N2, 1)) == []
    # not a member, or an operator's forced pre-vote: only the refusal
    assert step(s, PreVoteRpc(2, 2, ("n9", "x:9"), 1, 1)) == [
        SendRpc(("n9", "x:9"), PreVoteResult(1, 2, False, N1))]
    assert step(s, PreVoteRpc(2, 3, N2, 1, 1, 0, True)) == [
        SendRpc(N2, PreVoteResult(1, 3, False, N1))]


def test_a_members_pre_vote_of_a_later_term_gets_the_append_whose_refusal_deposes() -> None:
    # a member whose term is above ours (it passed a pre-vote, then was cut off): the append
    # it refuses carries back its term, as a heartbeat's refusal would
    s = idle_leader()
    step(s, HeartbeatTimeout())
    eff = step(s, PreVoteRpc(4, 1, N2, 1, 1))
    assert SendRpc(N2, AppendEntriesRpc(1, N1, 1, 1, 1, [])) in eff and s.role == "leader"
    step(s, AppendEntriesReply(3, False, 2, 1, 1, N2, 1))
    assert s.role == "follower" and s.current_term == 3


def test_a_leader_answers_a_vote_request_of_its_term_with_an_append() -> None:
    s = idle_leader()
    step(s, HeartbeatTimeout())
    eff = step(s, RequestVoteRpc(1, N3, 1, 1))
    assert eff == [SendRpc(N3, AppendEntriesRpc(1, N1, 1, 1, 1, [])),
                   SendRpc(N3, RequestVoteResult(1, False, N1))]
    assert s.role == "leader"
    # a later term deposes it, as always
    step(s, RequestVoteRpc(2, N3, 1, 1))
    assert s.role == "follower" and s.current_term == 2


def test_a_granted_pre_vote_defers_a_quiet_followers_timer_once_per_timeout() -> None:
    # a candidate that cannot win (cut off from the leader that we lost too) must not keep us
    # from ever asking the leader ourselves
    s = quiet_follower()
    step(s, LeaderDown(N2))
    eff = step(s, PreVoteRpc(2, 1, N3, 1, 1))
    assert eff == [SendRpc(N3, PreVoteResult(2, 1, True, N1)), StartElectionTimeout()]
    assert step(s, PreVoteRpc(2, 2, N3, 1, 1)) == [SendRpc(N3, PreVoteResult(2, 2, True, N1))]
    step(s, ElectionTimeout())
    assert s.role == "pre_vote"


def test_only_the_peers_with_something_outstanding_are_heartbeated() -> None:
    # N3 is down (its node restarts): N2, idle, is not woken every period to hear nothing new
    s = quiet_leader()
    ack(s, N2, 0)
    ack(s, N2, 1)                  # N2 holds the log and knows the commit index; N3 silent
    assert s.commit_index == 1
    eff = step(s, HeartbeatTimeout())
    assert eff[0] == StartHeartbeatTimeout() and len(eff) == 2
    assert eff[1].to == N3 and type(eff[1].msg) is AppendEntriesRpc


def test_work_of_the_leaders_own_heartbeats_every_peer() -> None:
    # a query waits for a majority's heartbeat answers: every peer is sent its append too
    s = quiet_leader()
    ack(s, N2, 0)
    ack(s, N2, 1)                  # N2 idle, N3 silent
    step(s, ConsistentQuery("q1", len))
    eff = step(s, HeartbeatTimeout())
    assert {e.to for e in eff if type(e) is SendRpc and type(e.msg) is AppendEntriesRpc} \
        == {N2, N3}


def appends_to(eff: list[Any], peer: Any) -> int:
    return sum(1 for e in eff if type(e) is SendRpc and e.to == peer
               and type(e.msg) is AppendEntriesRpc)


def silent_n3() -> Any:
    """A quiet leader whose N2 is idle and whose N3 answered none of ``SILENT_AFTER``
    heartbeats (its node restarts)."""
    s = quiet_leader()
    ack(s, N2, 0)
    ack(s, N2, 1)
    for _ in range(SILENT_AFTER):
        eff = step(s, HeartbeatTimeout())
        assert eff[0] == StartHeartbeatTimeout() and appends_to(eff, N3) == 1
    return s


def test_a_silent_peer_is_heartbeated_every_few_periods_and_the_leader_sleeps_between() -> None:
    s = silent_n3()
    # ra's leaders retry a lagging peer once a tick: not every period, forever, one that
    # does not answer (a node restarting 1,000 servers kept 1,000 leaders waking 10 times a
    # second); the beat that reaches it next arms a timer for the periods until the one after
    for _ in range(3):
        eff = step(s, HeartbeatTimeout())
        assert appends_to(eff, N3) == 1 and appends_to(eff, N2) == 0
        assert eff[0] == StartHeartbeatTimeout(SILENT_EVERY)


def test_an_answer_ends_the_silence() -> None:
    s = silent_n3()
    step(s, HeartbeatTimeout())
    # N3 is back and answers (it still lacks the noop): the normal pace again, at once
    eff = step(s, AppendEntriesReply(1, False, 1, 0, 0, N3, 0))
    assert StartHeartbeatTimeout() in eff and s.beat_periods == 1
    eff = step(s, HeartbeatTimeout())
    assert eff[0] == StartHeartbeatTimeout() and appends_to(eff, N3) == 1


def test_work_of_its_own_brings_a_sleeping_leader_back_to_the_pace() -> None:
    s = silent_n3()
    step(s, HeartbeatTimeout())
    assert s.beat_periods == SILENT_EVERY
    eff = step(s, Command("usr", 5))
    assert StartHeartbeatTimeout() in eff and s.beat_periods == 1
    # the periods slept are unknown: the next beat is the silent peer's, so that its appends
    # stay at most SILENT_EVERY + 1 periods apart however often work comes and goes
    eff = step(s, HeartbeatTimeout())
    assert appends_to(eff, N3) == 1


def test_a_peer_that_answers_is_heartbeated_every_period() -> None:
    # N3 answers every heartbeat but stays behind (its appends refused): never silent
    s = quiet_leader()
    ack(s, N2, 0)
    ack(s, N2, 1)
    for _ in range(3 * SILENT_EVERY):
        eff = step(s, HeartbeatTimeout())
        assert eff[0] == StartHeartbeatTimeout() and appends_to(eff, N3) == 1
        step(s, AppendEntriesReply(1, False, 1, 0, 0, N3, 0))


def test_without_quiet_mode_a_silent_peer_is_heartbeated_every_period() -> None:
    s = new_server(quiet_when_idle=False)
    make_leader(s)
    sync(s)
    for _ in range(3 * SILENT_EVERY):
        eff = step(s, HeartbeatTimeout())
        assert eff[0] == StartHeartbeatTimeout() and appends_to(eff, N3) == 1
