"""The simulator's node failure detector and the checks of quiet mode. No ra equivalent (aten's
role in a simulated world).

In a quiet profile (``Profile.quiet``) every server runs on its own node (``sim:<k>``) with
``quiet_when_idle`` on, and :class:`SimDetector` plays each node's failure detector:

* *Truth*: node B is reachable from node A while B's node is up (not killed) and the link
  B -> A is open (``Network.blocked``): a detector hears the heartbeats that reach it, so a
  one-way cut is seen only by the side that stops hearing.
* *Reports*: when A's reported status of B differs from the truth, a report is scheduled after
  ``detect_ms`` (down) or ``detect_up_ms`` (up: the next heartbeat); when it fires and the
  truth still differs, A's server (if alive) steps ``NodeDown(B)`` / ``NodeUp(B)``. A cut that
  heals before its report goes unnoticed, as with a real detector.
* *False suspicions*: during the fault phase, at ``false_suspicion_rate`` per second, one
  node falsely reports a reachable peer down (the up report follows after ``detect_up_ms``).
* A restarted server learns its node's current suspicions at start (the daemon's
  ``FdSubscribe`` answer); a restarted (killed) node starts with everything up.

Checks (each a :class:`~ra.testing.checkers.Violation` naming it):

* ``quiet_failover`` (fault phase, fixed configurations): once the newest leader L of term T
  is reported down to a set S of live members that is a majority of the cluster and fully
  connected, a leader of a later term must be elected within ``failover_ms`` (the clock
  restarts whenever a fault changes the picture).
* ``quiet_hang`` and ``quiet_probe`` (fault phase, fixed configurations): the newest leader L
  of term T hangs (``SimCluster.hang``: its node, detector and links stay up, so no report
  comes) while the other live members are a connected majority. Nobody is obliged to notice
  while no client asks (a quiet follower runs no timer: nothing but a client's request finds a
  hung leader process, as in Erlang ra with aten). Once a client asks a follower of L
  (``Profile.hang_client``: its attempt on L timed out), that follower checks L at once (a
  probe, and copies that make the other followers check too): ``quiet_probe``: it must have
  given up on L within ``2T`` (the probe's normal election timeout) plus the longest message
  delay; ``quiet_hang``: a leader of a later term must be elected within ``probe_bound`` (that,
  then an election as in ``quiet_failover``). The clock restarts whenever a fault changes the
  picture.
* ``quiet_lag`` (fault phase): a live (not hung) leader sends an append or a snapshot chunk,
  at least every few heartbeat periods, to every live member it reaches that lacks committed
  entries (a quiet leader must not leave a follower behind).
* ``quiet_rejoin`` (fault phase): the newest leader L of term T runs (alive, not hung, leading
  T) and reaches a live, running member F of its configuration both ways: F must know L
  (follow it in T) again within ``rejoin_bound`` of losing it, or a later leader be elected.
  An idle leader sends nothing, so this is what a restarted follower, one whose connection
  dropped, one that suspected L falsely or missed its ``NodeUp`` rely on: their election timer
  runs, their pre-vote reaches L, and L answers with an append.
* ``quiet_idle`` (recovery phase): once the cluster settled and ``idle_grace_ms`` passed, no
  member of the leader's configuration sends another one any peer message (no periodic
  AppendEntries, no election traffic: a removed server that never learned of its removal
  still campaigns, as without quiet mode: not counted), arms an election or heartbeat timer,
  or has one fire later than one timer's length after the grace (a timer armed before it
  fires once, to no effect); ticks only.

Everything random comes from the simulator's seeded RNG; nothing iterates over a set.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ra.core.messages import AppendEntriesRpc, InstallSnapshotRpc, NodeDown, NodeUp
from ra.testing.checkers import Violation

if TYPE_CHECKING:
    from ra.testing.sim import SimCluster, SimServer

__all__ = ["SimDetector", "node_of"]


def node_of(k: int) -> str:
    """The node of the k-th server in a quiet profile."""
    return f"sim:{k}"


class SimDetector:
    """Per ordered pair of nodes: what the observer's detector reports (see the module
    docstring)."""

    def __init__(self, sim: SimCluster) -> None:
        self.sim = sim
        self.reported: dict[tuple[Any, Any], bool] = {}     # (observer, observed) -> up
        self.pending: dict[tuple[Any, Any], int] = {}       # pair -> generation scheduled
        self.gen = 0
        self.down_since: dict[tuple[Any, Any], int] = {}    # pair -> when reported down
        self.picture: Any = None                            # faults as of the last watch
        self.failover: tuple[Any, int, int] | None = None   # (leader, term, since)
        self.last_sent: dict[tuple[Any, Any], int] = {}     # (from, to) -> last peer message
        self.lag_picture: Any = None
        self.lag_since = 0
        self.hang_picture: Any = None
        self.hang_watch: tuple[Any, int, int] | None = None  # (leader, term, since)
        self.probe_watch: tuple[Any, int, int, Any] | None = None  # (leader, term, asked, whom)
        self.lost_since: dict[Any, tuple[Any, int]] = {}    # member -> (picture, since)

    # -- truth and reports ----------------------------------------------------------------------
    def reachable(self, observer: Any, observed: Any) -> bool:
        """Whether ``observer``'s node hears ``observed``'s node now (the truth)."""
        srv = self.sim.servers[observed]
        return srv.node_up and (observed, observer) not in self.sim.net.blocked

    def is_up(self, observer: Any, observed: Any) -> bool:
        return self.reported.get((observer, observed), True)

    def sync(self) -> None:
        """Schedule a report for every pair whose reported status differs from the truth."""
        sids = list(self.sim.servers)
        for a in sids:
            for b in sids:
                if a == b or (a, b) in self.pending:
                    continue
                truth = self.reachable(a, b)
                if truth != self.is_up(a, b):
                    self._schedule(a, b, truth)

    def _schedule(self, a: Any, b: Any, up: bool) -> None:
        p = self.sim.profile
        self.gen += 1
        self.pending[(a, b)] = self.gen
        delay = self.sim.rng.randint(*(p.detect_up_ms if up else p.detect_ms))
        self.sim.schedule(delay, "fd_report", a, b, self.gen)

    def report(self, a: Any, b: Any, gen: int) -> None:
        """A scheduled report is due: deliver it if the truth still differs."""
        if self.pending.get((a, b)) != gen:
            return
        del self.pending[(a, b)]
        truth = self.reachable(a, b)
        if truth == self.is_up(a, b):
            return
        self._set(a, b, truth)

    def _set(self, a: Any, b: Any, up: bool) -> None:
        sim = self.sim
        self.reported[(a, b)] = up
        if up:
            self.down_since.pop((a, b), None)
        else:
            self.down_since[(a, b)] = sim.now
        node = sim.servers[b].sid.node
        sim.note(a, f"failure detector: node {node} ({b.name}) {'up' if up else 'DOWN'}")
        srv = sim.servers[a]
        if srv.alive:
            sim.step_server(srv, NodeUp(node) if up else NodeDown(node), None)
        if up:
            sim.stats["fd_up"] += 1
        else:
            sim.stats["fd_down"] += 1

    def false_suspicion(self) -> None:
        """One node falsely reports a reachable peer down; the truth brings it back up."""
        sim = self.sim
        sids = list(sim.servers)
        a, b = sim.rng.sample(sids, 2)
        if (a, b) in self.pending or not self.is_up(a, b) or not self.reachable(a, b):
            return
        sim.stats["fd_false_suspicions"] += 1
        sim.note(a, f"failure detector: FALSE suspicion of {b.name}")
        self._set(a, b, False)
        self._schedule(a, b, True)

    def on_start(self, s: SimServer) -> None:
        """A server (re)started: its node's detector tells it what it suspects now."""
        for (a, b), up in list(self.reported.items()):
            if a == s.sid and not up and s.alive:
                self.sim.step_server(s, NodeDown(self.sim.servers[b].sid.node), None)

    def on_node_restart(self, s: SimServer) -> None:
        """A killed node is back: its detector starts afresh (everything up)."""
        for pair in [p for p in self.reported if p[0] == s.sid]:
            del self.reported[pair]
            self.pending.pop(pair, None)
            self.down_since.pop(pair, None)

    # -- quiet_failover -------------------------------------------------------------------------
    def watch_failover(self) -> None:
        """Fault phase, every fault tick: open, keep, meet or fail the failover obligation."""
        sim = self.sim
        p = sim.profile
        if "quiet_failover" in sim.checker.disabled or p.membership_rate:
            return
        leaders = sim.checker.leaders
        if not leaders:
            return
        term = max(leaders)
        leader = leaders[term]
        picture = (tuple(sim.net.blocked), tuple((s.alive, s.node_up, s.hung)
                                                 for s in sim.servers.values()), term)
        if self.failover is not None and term > self.failover[1]:
            took = sim.now - self.failover[2]
            sim.stats["failover_max_ms"] = max(sim.stats["failover_max_ms"], took)
            self.failover = None
        if picture != self.picture:
            self.picture = picture
            self.failover = None
        if self.failover is None:
            if self._obliged(leader):
                self.failover = (leader, term, sim.now)
                sim.stats["failovers_watched"] += 1
            return
        _, t, since = self.failover
        bound = self.bound()
        if sim.now - since > bound:
            raise Violation(
                "quiet_failover",
                f"the leader {leader.name} of term {t} is reported down to a connected majority "
                f"of live members since t={since}ms, yet no later leader in {bound}ms")

    def _obliged(self, leader: Any) -> bool:
        sim = self.sim
        members = list(sim.servers)
        told = [m for m in members if m != leader and sim.servers[m].alive
                and sim.servers[m].node_up and not sim.servers[m].hung
                and not self.is_up(m, leader)]
        if 2 * len(told) <= len(members):
            return False
        for a in told:
            for b in told:
                if a != b and (a, b) in sim.net.blocked:
                    return False
        return True

    def bound(self) -> int:
        """How long a connected majority may take to elect once told: a few election
        timeouts (split votes, pre-vote then vote), every disk sync on the way, and the
        slowest messages."""
        p = self.sim.profile
        if p.failover_ms:
            return p.failover_ms
        delay = max(p.delay[1], p.long_delay[1] if p.reorder else 0)
        return 4 * p.election_ms + 2 * (p.sync_ms[1] + p.written_ms[1]) + 2 * delay

    # -- quiet_hang -----------------------------------------------------------------------------
    def watch_hang(self) -> None:
        """Fault phase, every fault tick: open, keep, meet or fail the hung-leader obligation."""
        sim = self.sim
        if {"quiet_hang", "quiet_probe"} <= sim.checker.disabled or sim.profile.membership_rate:
            return
        leaders = sim.checker.leaders
        if not leaders:
            return
        term = max(leaders)
        leader = leaders[term]
        picture = (tuple(sim.net.blocked), tuple((s.alive, s.node_up, s.hung, s.inc)
                                                 for s in sim.servers.values()), term)
        if self.hang_watch is not None and term > self.hang_watch[1]:
            took = sim.now - self.hang_watch[2]
            sim.stats["hang_failover_max_ms"] = max(sim.stats["hang_failover_max_ms"], took)
            self.hang_watch = None
            if self.probe_watch is not None:
                took = sim.now - self.probe_watch[2]
                sim.stats["probe_failover_max_ms"] = max(sim.stats["probe_failover_max_ms"],
                                                         took)
        if picture != self.hang_picture:
            self.hang_picture = picture
            self.hang_watch = None
        if self.hang_watch is None:
            self.probe_watch = None
            if self._hang_obliged(leader):
                self.hang_watch = (leader, term, sim.now)
                sim.stats["hangs_watched"] += 1
            return
        if self.probe_watch is not None:
            self._check_probe(leader)

    def _hang_obliged(self, leader: Any) -> bool:
        sim = self.sim
        ls = sim.servers.get(leader)
        if ls is None or not ls.alive or not ls.hung:
            return False
        members = list(sim.servers)
        rest = [m for m in members if m != leader and sim.servers[m].alive
                and sim.servers[m].node_up and not sim.servers[m].hung]
        if 2 * len(rest) <= len(members):
            return False
        return not any((a, b) in sim.net.blocked for a in rest for b in rest if a != b)

    # -- quiet_probe ----------------------------------------------------------------------------
    def on_stray_call(self, s: SimServer) -> None:
        """A client asks ``s``: if it follows the leader that hangs under an open ``quiet_hang``
        obligation, the ``quiet_probe`` obligation opens (the first such call counts)."""
        if self.hang_watch is None or self.probe_watch is not None or self.sim.faults_over:
            return
        leader, term, since = self.hang_watch
        p = self.sim.profile
        delay = max(p.delay[1], p.long_delay[1] if p.reorder else 0)
        if not self.sim.servers[leader].hung or self.sim.now - since <= delay:
            return           # a message the leader sent before it hung may still arrive
        st = s.state
        if s.role == "follower" and st.leader_id == leader and st.current_term == term:
            self.probe_watch = (leader, term, self.sim.now, s.sid)
            self.sim.stats["probes_watched"] += 1

    def _check_probe(self, leader: Any) -> None:
        sim = self.sim
        assert self.probe_watch is not None
        _, t, asked, whom = self.probe_watch
        p = sim.profile
        delay = max(p.delay[1], p.long_delay[1] if p.reorder else 0)
        waited = sim.now - asked
        f = sim.servers[whom]
        if "quiet_probe" not in sim.checker.disabled and waited > 2 * p.election_ms + delay \
                and f.role == "follower" \
                and f.state.leader_id == leader and f.state.current_term == t:
            raise Violation(
                "quiet_probe",
                f"a client asked {whom.name}, a follower of the hung leader {leader.name} (term "
                f"{t}), at t={asked}ms, yet {waited}ms later it still follows it")
        bound = self.probe_bound()
        if waited > bound and "quiet_hang" not in sim.checker.disabled:
            raise Violation(
                "quiet_hang",
                f"a client asked a follower of the hung leader {leader.name} (term {t}) at "
                f"t={asked}ms, yet no later leader in {bound}ms")

    def probe_bound(self) -> int:
        """How long the others may take to replace a hung leader once a client asked one of
        them: the probe's normal election timeout (at most 2T, its copies to the other
        followers on the way), then an election as ``bound``."""
        p = self.sim.profile
        delay = max(p.delay[1], p.long_delay[1] if p.reorder else 0)
        return 2 * p.election_ms + delay + self.bound()

    # -- quiet_lag ------------------------------------------------------------------------------
    def watch_lag(self) -> None:
        """Fault phase, every fault tick: no live, reachable member lacking committed entries
        goes unsent-to by the leader for longer than ``lag_bound``."""
        sim = self.sim
        if "quiet_lag" in sim.checker.disabled:
            return
        picture = (tuple(sim.net.blocked), tuple((s.alive, s.inc) for s in sim.servers.values()))
        if picture != self.lag_picture:
            self.lag_picture, self.lag_since = picture, sim.now
        lid = sim.current_leader()
        if lid is None:
            return
        if sim.servers[lid].hung:
            self.lag_picture = None          # it sends nothing while hung; counts from resume
            return
        ls = sim.servers[lid].state
        bound = self.lag_bound()
        for m in ls.cluster:
            srv = sim.servers.get(m)
            if m == lid or srv is None or not srv.alive or (lid, m) in sim.net.blocked \
                    or (m, lid) in sim.net.blocked:
                continue
            if srv.log.last_index_term()[0] >= ls.commit_index:
                continue
            since = max(self.last_sent.get((lid, m), 0), self.lag_since,
                        sim.servers[lid].became_leader)
            if sim.now - since > bound:
                raise Violation(
                    "quiet_lag",
                    f"leader {lid.name} (term {ls.current_term}, commit {ls.commit_index}) sent "
                    f"nothing to {m.name} (last index {srv.log.last_index_term()[0]}) since "
                    f"t={since}ms although both are up and connected (bound {bound}ms)")

    def lag_bound(self) -> int:
        p = self.sim.profile
        delay = max(p.delay[1], p.long_delay[1] if p.reorder else 0)
        return 5 * p.heartbeat_ms + 2 * delay + p.sync_ms[1] + p.written_ms[1]

    # -- quiet_idle -----------------------------------------------------------------------------
    def on_send(self, frm: Any, to: Any, msg: Any) -> None:
        """A server sends a peer message; once the settled cluster is idle there must be none."""
        sim = self.sim
        if type(msg) in (AppendEntriesRpc, InstallSnapshotRpc):
            self.last_sent[(frm, to)] = sim.now     # what can bring a follower up to date
        if sim.settled_at is None or sim.now < sim.settled_at + sim.profile.idle_grace_ms:
            return
        lid = sim.current_leader()
        members = sim.servers[lid].state.cluster if lid is not None else ()
        if frm not in members or to not in members:
            # a removed server that never learned it campaigns, quiet or not (its pre-votes
            # are refused): not the idle cluster's own traffic
            return
        sim.stats["idle_msgs"] += 1
        if "quiet_idle" not in sim.checker.disabled:
            raise Violation("quiet_idle",
                            f"{frm.name} sends {type(msg).__name__} {sim.now - sim.settled_at}ms "
                            f"after the cluster settled: an idle quiet cluster sends nothing")

    def _idle_member(self, sid: Any) -> bool:
        """Whether ``sid`` is a member of the settled cluster past the idle grace."""
        sim = self.sim
        if sim.settled_at is None or sim.now < sim.settled_at + sim.profile.idle_grace_ms:
            return False
        lid = sim.current_leader()
        return lid is not None and sid in sim.servers[lid].state.cluster

    def on_arm(self, sid: Any, effect: Any) -> None:
        """``sid`` arms an election or heartbeat timer: none once the settled cluster is idle."""
        sim = self.sim
        if not self._idle_member(sid) or sim.settled_at is None:
            return
        sim.stats["idle_timers"] += 1
        if "quiet_idle" not in sim.checker.disabled:
            raise Violation("quiet_idle",
                            f"{sid.name} arms {effect!r} {sim.now - sim.settled_at}ms "
                            f"after the cluster settled: an idle quiet server runs no timer")

    def on_timer(self, sid: Any, kind: str) -> None:
        """A timer of ``sid`` fires: one armed before the grace ends fires at most once, within
        the longest timer (2T, and the followers' turns) after it."""
        sim = self.sim
        if not self._idle_member(sid):
            return
        assert sim.settled_at is not None
        t = sim.profile.election_ms
        if sim.now <= sim.settled_at + sim.profile.idle_grace_ms + 3 * t:
            return
        sim.stats["idle_timers"] += 1
        if "quiet_idle" not in sim.checker.disabled:
            raise Violation("quiet_idle",
                            f"{sid.name}'s {kind} timer fires {sim.now - sim.settled_at}ms after "
                            f"the cluster settled: an idle quiet server runs no timer")

    # -- quiet_rejoin ---------------------------------------------------------------------------
    def watch_rejoin(self) -> None:
        """Fault phase, every fault tick: a member the running leader reaches both ways knows it
        again within ``rejoin_bound`` of losing it (or a later leader is elected)."""
        sim = self.sim
        if "quiet_rejoin" in sim.checker.disabled:
            return
        leaders = sim.checker.leaders
        if not leaders:
            return
        term = max(leaders)
        lid = leaders[term]
        ls = sim.servers[lid]
        if not ls.alive or ls.hung or ls.role != "leader" or ls.state.current_term != term:
            self.lost_since = {}
            return
        bound = self.rejoin_bound()
        for m in ls.state.cluster:
            f = sim.servers.get(m)
            if m == lid or f is None or not f.alive or f.hung or (lid, m) in sim.net.blocked \
                    or (m, lid) in sim.net.blocked:
                self.lost_since.pop(m, None)
                continue
            st = f.state
            if st.role in ("follower", "receive_snapshot") and st.leader_id == lid \
                    and st.current_term == term:
                lost = self.lost_since.pop(m, None)
                if lost is not None:
                    sim.stats["rejoins_watched"] += 1
                    sim.stats["rejoin_max_ms"] = max(sim.stats["rejoin_max_ms"],
                                                     sim.now - lost[1])
                continue
            # only what touches the pair counts (the others' faults change nothing for it)
            picture = (term, ls.inc, f.inc)
            old = self.lost_since.get(m)
            if old is None or old[0] != picture:
                self.lost_since[m] = old = (picture, sim.now)
            since = old[1]
            if sim.now - since > bound:
                raise Violation(
                    "quiet_rejoin",
                    f"{m.name} ({st.role}, term {st.current_term}, leader "
                    f"{getattr(st.leader_id, 'name', st.leader_id)}) has not known the running "
                    f"leader {lid.name} of term {term} since t={since}ms although they reach "
                    f"each other (bound {bound}ms)")

    def rejoin_bound(self) -> int:
        """How long a member may go without knowing a running leader it reaches: its election
        timer (at most 2T; put off once more, by up to 2T, for another candidate's pre-vote it
        granted), its pre-vote and the leader's append in answer (three times over where
        messages are lost), a durable term on the way, and one fault tick."""
        p = self.sim.profile
        delay = max(p.delay[1], p.long_delay[1] if p.reorder else 0)
        rounds = 3 if p.loss else 1
        return (2 * p.election_ms + rounds * (2 * p.election_ms + 2 * delay) + p.sync_ms[1]
                + p.written_ms[1] + 20)
