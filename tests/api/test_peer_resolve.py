"""A server finds its peers without waiting on node daemons (``ra.server.proc``, "Peers are found
without waiting"), with real processes: while the daemon of a peer's node is frozen (SIGSTOP)
a server that must find that peer keeps answering at once, and the cluster commits once the
daemon is back; an idle quiet cluster keeps its peers' addresses (a command after a long idle
asks no daemon). :class:`transport.registry.Resolver` and the messages alone:
tests/transport/test_resolver.py."""
from __future__ import annotations

import os
import signal
import time

import pytest

import ra
from ra.testing import machines as M
from tests.api.conftest import KV, leader_of, wait_for
from transport.direct import DirectMailbox
from transport.messages import FdStatus

pytestmark = pytest.mark.integration

T_MS = 500


def _put(ids, k, timeout=10):
    reply, _ = ra.process_command(ids, ("put", k, 1), timeout=timeout)
    assert reply == "ok"


def _counters(sid):
    return ra.key_metrics(sid)["counters"]


def _fd_status(addr: str) -> dict[str, str]:
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        return mb.call("tcp://" + addr, FdStatus(), 5)     # type: ignore[no-any-return]


def _ping_s(sid) -> float:
    t0 = time.monotonic()
    ra.ping(sid, timeout=5)
    return time.monotonic() - t0


def test_a_server_serves_on_while_a_peers_daemon_is_frozen(three):
    nodes = three
    ids = [nodes.sid("pres", i) for i in range(3)]
    ra.start_cluster([{"cluster_name": "pres", "id": s, "machine": KV, "initial_members": ids,
                       "quiet_when_idle": True, "election_timeout_ms": T_MS, "tick_ms": 100}
                      for s in ids])
    _put(ids, "a")
    # node 2 leads: the member on node 0 then has no message from node 1's member that would
    # tell it where that one is; it must ask node 1's daemon
    if leader_of(ids) != ids[2]:
        ra.transfer_leadership(leader_of(ids), ids[2])
        wait_for(lambda: leader_of(ids) == ids[2], 15, "leadership on node 2")
    old = nodes.server_pid("pres", 0)
    daemon1 = nodes.procs[1].pid
    os.kill(daemon1, signal.SIGSTOP)
    try:
        # node 0's member restarts knowing no peer's address
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: nodes.server_pid("pres", 0) not in (None, old), 15, "restarted")
        wait_for(lambda: ra.ping(ids[0], timeout=1), 15, "the restarted member answers")
        ra.trigger_election(ids[0])         # it sends to both peers now
        slow = []
        t_end = time.monotonic() + 3.0
        n = 0
        while time.monotonic() < t_end:
            dt = _ping_s(ids[0])
            n += 1
            if dt > 0.2:
                slow.append(round(dt, 3))
            time.sleep(0.02)
        c = _counters(ids[0])
        # the blocking lookup this replaces held the loop 0.25 s per attempt: a ping that came
        # meanwhile waited for it. One slow ping is a busy machine's scheduling, not a stall
        assert len(slow) <= 1, f"{len(slow)} of {n} pings took over 0.2 s: {slow}"
        assert c["resolve_requests"] >= 2, c         # one per peer at least
        assert c["resolved"] >= 1, c                 # node 2's daemon answered
        wait_for(lambda: _counters(ids[0])["resolve_timeouts"] >= 1, 10,
                 "the request to the frozen daemon expired")
        ra.ping(ids[0], timeout=1)
    finally:
        os.kill(daemon1, signal.SIGCONT)
    _put(ids, "b", timeout=30)
    wait_for(lambda: all(sorted(ra.local_query(s, M.get_state)[1]) == ["a", "b"] for s in ids),
             20, "every member applied both")
    # the restarted member reached node 1's member again, whichever way it learned where
    leader = leader_of(ids)
    _put(ids, "c", timeout=30)
    wait_for(lambda: ra.local_query(ids[1], M.get_state)[1].get("c") == 1, 20,
             f"node 1's member follows {leader}")


def test_an_idle_quiet_cluster_keeps_its_peers_addresses(three):
    nodes = three
    ids = [nodes.sid("pidle", i) for i in range(3)]
    # tick_ms 50: the rule this replaces forgot a peer not heard from for 2 ticks (0.1 s)
    ra.start_cluster([{"cluster_name": "pidle", "id": s, "machine": KV, "initial_members": ids,
                       "quiet_when_idle": True, "election_timeout_ms": T_MS, "tick_ms": 50}
                      for s in ids])
    _put(ids, "a")
    leader = leader_of(ids)
    # every daemon's detector has seen the other nodes up: the first nodeups (which drop the
    # node's cached addresses, rule kept) are over
    addrs = [nodes.addrs[i] for i in range(3)]
    wait_for(lambda: all(_fd_status(a).get(b) == "up" for a in addrs for b in addrs if a != b),
             10, "every node up for every detector")
    _put(ids, "a2")
    # a report made after "a2" was applied (reports follow a change within a tick or so)
    (idx, _), _, _ = ra.local_query(leader, M.get_state)
    wait_for(lambda: ra.key_metrics(leader)["last_applied"] >= idx, 10, "a report")
    before = _counters(leader)
    assert before["resolved"] >= 2, before      # it asked the daemons where its peers are
    time.sleep(1.5)     # idle: no heartbeat, nothing heard from the followers
    _put(ids, "b")
    wait_for(lambda: all(sorted(ra.local_query(s, M.get_state)[1]) == ["a", "a2", "b"]
                         for s in ids), 10, "every member applied all three")
    assert leader_of(ids) == leader
    # the counters reach the daemon with the leader's next report (a tick, backed off)
    (idx, _), _, _ = ra.local_query(leader, M.get_state)
    wait_for(lambda: ra.key_metrics(leader)["last_applied"] >= idx, 10, "a report")
    after = _counters(leader)
    assert after["resolve_requests"] == before["resolve_requests"], (before, after)
