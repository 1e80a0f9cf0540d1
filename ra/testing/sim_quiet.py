"""The simulator's quiet window, which the ``prevote_no_disruption`` check watches. No ra
equivalent.

In the recovery phase (no new partition, loss or reordering) ``QuietWindow`` opens a window for
the leader L of term T once nothing can legitimately end T:

* every member of L's configuration is alive, a follower of L in term T, and has accepted a
  message of L since the network healed (from then on its election timer cannot fire unheard:
  heartbeats are far more frequent than the shortest election timeout, and arrive sooner);
* every other live server is a non-member in its own eyes, or brand new (it never campaigns);
* no leadership transfer is under way and no ``TimeoutNow`` can still be in flight.

It closes when L stops leading or its configuration changes, a ``TimeoutNow`` is sent, or a server
crashes. While it is open the checker fails any member whose term rises above T.

Pre-vote traffic is then delivered, to test that a pre-vote never changes the receiver's term
(``PreVoteRpc``'s contract) and that a follower of a live leader ignores grants. With
``profile.replay_prevotes`` = K, the K most recent pre-vote messages of the fault phase (requests
and grants, including those a partition blocked) arrive again when the window opens: late
duplicates. With ``profile.probe_prevotes``, once the cluster has settled (logs converged and
idle), each follower's pre-vote request, as it would send it if its timer fired now, reaches
every other member. In a quiet profile, once settled, a client asks each follower for something
(a command it redirects): each then probes the live, idle leader, which answers, and no member's
term may rise (a probe the leader answers never leads to an election). All randomness comes from
the simulator's seeded RNG.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ra.core.messages import (
    AppendEntriesRpc, HeartbeatRpc, InstallSnapshotRpc, PreVoteResult, PreVoteRpc, TimeoutNow,
)

if TYPE_CHECKING:
    from ra.testing.sim import SimCluster

__all__ = ["QuietWindow"]

_FROM_LEADER = (AppendEntriesRpc, HeartbeatRpc, InstallSnapshotRpc)


class QuietWindow:
    """Opens and closes the quiet window of one ``SimCluster`` (see the module docstring)."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.leader: Any = None                           # L while the window is open
        self.heard: dict[Any, tuple[Any, int]] = {}       # sid -> (leader, term) accepted
        self.timeout_now_at = -10**9
        self.probed = False
        self.asked = False
        self.prevotes: deque[tuple[Any, Any, Any]] = deque(
            maxlen=max(1, sim.profile.replay_prevotes))

    # -- hooks called by the simulator --------------------------------------------------------
    def on_delivered(self, to: Any, msg: Any, state: Any) -> None:
        """``to`` (alive) has just handled peer message ``msg``; ``state`` is its state."""
        if self.sim.faults_over and isinstance(msg, _FROM_LEADER) \
                and state.leader_id == msg.leader_id and state.current_term == msg.term:
            self.heard[to] = (msg.leader_id, msg.term)

    def on_send(self, frm: Any, to: Any, msg: Any) -> None:
        """``frm`` sends peer message ``msg`` to ``to`` (whatever its fate on the network)."""
        if isinstance(msg, TimeoutNow):
            self.timeout_now_at = self.sim.now
            self.close("leadership transfer")
        elif self.sim.profile.replay_prevotes and not self.sim.faults_over and (
                isinstance(msg, PreVoteRpc) or isinstance(msg, PreVoteResult)
                and msg.vote_granted):
            self.prevotes.append((frm, to, msg))

    def on_heal_all(self) -> None:
        self.heard = {}

    def close(self, why: str) -> None:
        if self.leader is not None:
            self.leader = None
            self.sim.checker.close_quiet_window()
            self.sim.note(None, f"quiet window closes: {why}")

    def watch(self) -> None:
        """After every event of the recovery phase: open, keep or close the window."""
        if self.leader is not None:
            self._keep()
        elif not self.sim.net.blocked and self.sim.now - self.timeout_now_at > self._max_delay():
            self._try_open()

    # -- internals ------------------------------------------------------------------------------
    def _keep(self) -> None:
        sim = self.sim
        ls = sim.servers[self.leader].state
        q = sim.checker.quiet
        if ls is None or ls.role != "leader" or q is None or ls.current_term != q[1] \
                or tuple(ls.cluster) != q[2]:
            self.close("the leader stepped down or its configuration changed")
        elif sim.settled_at is not None and sim.profile.probe_prevotes and not self.probed:
            self._probe(q[1], q[2])
        elif sim.settled_at is not None and sim.profile.quiet and not self.asked \
                and sim.now < sim.settled_at + sim.profile.idle_grace_ms // 3:
            self._ask_followers(q[2])

    def _try_open(self) -> None:
        sim = self.sim
        lid = sim.current_leader()
        if lid is None:
            return
        ls = sim.servers[lid].state
        term, members = ls.current_term, tuple(ls.cluster)
        if ls.transfer_target is not None or lid not in members:
            return
        for sid, srv in sim.servers.items():
            if sid == lid:
                continue
            st = srv.state
            if sid in members:
                if not srv.alive or st.role != "follower" or st.current_term != term \
                        or st.leader_id != lid or self.heard.get(sid) != (lid, term):
                    return
            elif srv.alive and sid in st.cluster and not st.brand_new:
                return         # a non-member that thinks it is one may campaign
        self.leader = lid
        sim.checker.open_quiet_window(lid, term, members)
        sim.stats["quiet_windows"] += 1
        sim.note(None, f"quiet window opens: {_n(lid)} leads term {term}, every member follows it")
        hi = max(1, sim.profile.linger_ms // 2)
        while self.prevotes:
            frm, to, m = self.prevotes.popleft()
            sim.stats["prevote_replays"] += 1
            sim.schedule(sim.rng.randint(1, hi), "peer", to, m, frm)

    def _probe(self, term: int, members: tuple[Any, ...]) -> None:
        sim = self.sim
        self.probed = True
        hi = max(1, sim.profile.linger_ms // 2)
        for x in members:
            st = sim.servers[x].state
            if st.role != "follower":
                continue
            last_idx, last_term = sim.servers[x].log.last_index_term()
            rpc = PreVoteRpc(term + 1, st.pre_vote_token + 1, x, last_idx, last_term,
                             st.machine_version)
            for to in members:
                if to != x:
                    sim.stats["prevote_replays"] += 1
                    sim.schedule(sim.rng.randint(1, hi), "peer", to, rpc, x)
        sim.note(None, "quiet window: every follower's pre-vote request is on its way")

    def _ask_followers(self, members: tuple[Any, ...]) -> None:
        """A client asks every follower (they probe the leader): early (within the first third
        of the idle grace), so that the probes and their answers are over before
        ``quiet_idle`` starts counting."""
        sim = self.sim
        self.asked = True
        for x in members:
            if sim.servers[x].role == "follower":
                sim.schedule(sim.rng.randint(1, 10), "stray", x)

    def _max_delay(self) -> int:
        """The longest a message sent in the fault phase may still be in flight."""
        p = self.sim.base_profile
        return max(p.delay[1], p.long_delay[1] if p.reorder else 0)


def _n(sid: Any) -> str:
    return str(getattr(sid, "name", sid))
