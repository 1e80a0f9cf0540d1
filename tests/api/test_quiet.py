"""Quiet when idle with real processes (``quiet_when_idle``; contract in ``ra.core.server``): an
idle cluster keeps its leader without any heartbeat and serves again at once, sends no peer
message and handles no timeout at all while idle, a follower killed and restarted finds the idle
leader again without an election, a leader whose whole node freezes (connections stay open: only
the node failure detector can tell) is replaced once the detector reports its node down, and
the detector watches the node of a member added later too. A hung leader *process* (its node
up), replaced once a client asks: ``test_faults``, ``test_exactly_once``."""
from __future__ import annotations

import os
import signal
import time

import pytest

import ra
from ra.testing import machines as M
from ra.testing.procs import tree_pids
from tests.api.conftest import KV, leader_of, wait_for
from transport.messages import FdStatus
from transport.direct import DirectMailbox

pytestmark = pytest.mark.integration

T_MS = 300          # election timeout: idle spells below are many times longer


@pytest.fixture
def quiet_kv(three):
    ids = [three.sid("qkv", i) for i in range(3)]
    ra.start_cluster([{"cluster_name": "qkv", "id": s, "machine": KV, "initial_members": ids,
                       "quiet_when_idle": True, "election_timeout_ms": T_MS} for s in ids])
    return three, ids


def _put(ids, k, timeout=10):
    reply, _ = ra.process_command(ids, ("put", k, 1), timeout=timeout)
    assert reply == "ok"


def test_an_idle_quiet_cluster_keeps_its_leader_and_serves_at_once(quiet_kv):
    _, ids = quiet_kv
    _put(ids, "a")
    leader = leader_of(ids)
    term = ra.key_metrics(leader)["term"]
    # key_metrics come from the servers' reports to their daemons (every tick)
    wait_for(lambda: all(ra.key_metrics(s)["term"] == term for s in ids), what="reports")
    # idle for many election timeouts: no heartbeats, and no follower campaigns
    deadline = time.monotonic() + 10 * T_MS / 1000
    while time.monotonic() < deadline:
        assert all(ra.key_metrics(s)["term"] == term for s in ids)
        time.sleep(0.05)
    _put(ids, "b")
    assert leader_of(ids) == leader and ra.key_metrics(leader)["term"] == term
    wait_for(lambda: all(sorted(ra.local_query(s, M.get_state)[1]) == ["a", "b"] for s in ids),
             what="every member applied both")


_QUIET_COUNTERS = ("peer_msgs_in", "peer_msgs_out", "timeouts")


def _quiet_counts(ids):
    """Each server's peer messages and timeouts, as last reported to its daemon."""
    return {s: tuple(ra.key_metrics(s)["counters"][k] for k in _QUIET_COUNTERS) for s in ids}


def test_an_idle_cluster_is_silent_and_a_restarted_follower_finds_its_leader(three):
    nodes = three
    ids = [nodes.sid("qidle", i) for i in range(3)]
    # tick_ms 100: a server reports a changed counter within 16 ticks (its idle back-off)
    ra.start_cluster([{"cluster_name": "qidle", "id": s, "machine": KV, "initial_members": ids,
                       "quiet_when_idle": True, "election_timeout_ms": T_MS, "tick_ms": 100}
                      for s in ids])
    _put(ids, "a")
    leader = leader_of(ids)
    term = ra.key_metrics(leader)["term"]
    # settled: the last heartbeats, their answers and timeouts are over and reported
    last: list[object] = [None]

    def still() -> bool:
        now = _quiet_counts(ids)
        same, last[0] = now == last[0], now
        time.sleep(2.0)                  # longer than a report may lag (16 ticks: 1.6 s)
        return same
    wait_for(still, timeout=30, what="the counters to settle")
    before = _quiet_counts(ids)
    time.sleep(4.0)                      # about 13 election timeouts; reports lag <= 1.6 s
    assert _quiet_counts(ids) == before, "an idle quiet cluster sent messages or timed out"
    assert all(ra.key_metrics(s)["term"] == term for s in ids)
    # SIGKILL a follower: its supervisor restarts it, it knows no leader, and the idle leader
    # sends nothing; its pre-vote reaches the leader, which answers with an append
    f = next(s for s in ids if s != leader)
    i = next(j for j, a in nodes.addrs.items() if a == f.node)
    old = nodes.server_pid("qidle", i)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: nodes.server_pid("qidle", i) not in (None, old), what="supervisor restart")
    t0 = time.monotonic()
    wait_for(lambda: ra.local_query(f, M.get_state, timeout=5)[2] == leader, timeout=10,
             what="the restarted follower to know the leader")
    # restart to leader known: its election timer (< 2T), a pre-vote, an append
    assert time.monotonic() - t0 < 5.0
    assert leader_of(ids) == leader
    assert all(ra.key_metrics(s)["term"] == term for s in ids if s != f)
    wait_for(lambda: ra.key_metrics(f)["term"] == term, what="its report of the term")
    assert sorted(ra.local_query(f, M.get_state)[1]) == ["a"]


def test_a_frozen_leader_node_is_replaced_once_the_detector_reports_it(quiet_kv):
    nodes, ids = quiet_kv
    _put(ids, "a")
    leader = leader_of(ids)
    term = ra.key_metrics(leader)["term"]
    i = next(j for j, a in nodes.addrs.items() if a == leader.node)
    pids = tree_pids(nodes.procs[i].pid)
    rest = [s for s in ids if s != leader]
    for p in pids:
        os.kill(p, signal.SIGSTOP)       # the whole node: its sockets stay open, it is silent
    try:
        new = wait_for(lambda: next((s for s in rest
                                     if ra.key_metrics(s)["state"] == "leader"), None),
                       timeout=20, what="a new leader among the rest")
        assert ra.key_metrics(new)["term"] > term
        _put(rest, "b", timeout=20)
    finally:
        for p in pids:
            os.kill(p, signal.SIGCONT)
    # the old leader hears the new term and follows
    wait_for(lambda: ra.local_query(leader, M.get_state, timeout=5)[2] == new, timeout=20,
             what="the old leader follows")
    wait_for(lambda: sorted(ra.local_query(leader, M.get_state)[1]) == ["a", "b"], timeout=20,
             what="the old leader catches up")


def _fd_status(addr: str) -> dict[str, str]:
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        return mb.call("tcp://" + addr, FdStatus(), 5)     # type: ignore[no-any-return]


def test_the_node_of_a_member_added_later_is_watched(three):
    ids = [three.sid("grow", i) for i in range(2)]
    ra.start_cluster([{"cluster_name": "grow", "id": s, "machine": KV, "initial_members": ids,
                       "election_timeout_ms": T_MS} for s in ids])
    _put(ids, "a")
    n2 = three.addrs[2]
    # nothing on these nodes has anything to do with node 2 yet
    assert n2 not in _fd_status(three.addrs[0]) and n2 not in _fd_status(three.addrs[1])
    new = three.sid("grow", 2)
    ra.add_member(ids, new)
    # the members learn the new configuration and have their nodes watch the new member's
    # node, before any server runs there (so nothing on node 2 introduced itself)
    wait_for(lambda: all(n2 in _fd_status(three.addrs[i]) for i in range(2)),
             what="node 2 watched by the nodes of the first two members")
    ra.start_server({"cluster_name": "grow", "id": new, "machine": KV,
                     "initial_members": ids + [new], "election_timeout_ms": T_MS})
    _put(ids, "b")
    wait_for(lambda: sorted(ra.local_query(new, M.get_state)[1]) == ["a", "b"],
             what="the new member caught up")
