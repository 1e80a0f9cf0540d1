"""Deterministic cluster simulator for the pure Raft core. No ra equivalent.

``SimCluster(seed)`` runs N ``ra.core.server`` instances on a simulated clock and network. One
``random.Random(seed)`` drives everything: message delay, loss, duplication and reordering,
partitions, crashes and restarts, when the memory log/meta twins are synced (and so what a crash
loses), election timeouts, and what the clients do. Nothing iterates over a ``set``, so a seed
replays identically in any process: ``python -m ra.testing.sim --seed N --trace``.

A run has a *fault phase* (``profile.fault_ms``) and a *recovery phase*: every fault stops,
crashed servers restart, and within ``profile.settle_ms`` a leader must be elected, one fresh
command per client must be acknowledged and every member must converge (liveness); the run then
goes on idle for ``profile.linger_ms``. After every step the ``SafetyChecker``
(``ra.testing.checkers``) checks Raft's safety properties; a failure raises ``Violation``
carrying the seed, the replay command and the last events.

In a quiet profile (``Profile.quiet``) the servers run with ``quiet_when_idle``, each on its own
node, and ``ra.testing.sim_detector`` plays the node failure detector (delays, false suspicions,
partitions and node kills reported late) and checks that a lost leader is replaced in bounded
time once reported, that a member that lost a running leader finds it again, and that a
settled idle cluster sends nothing and runs no timer; crashes may then take the
whole node (``node_kill_ratio``: silence, no connection-close notice).

In the recovery phase a *quiet window* (``ra.testing.sim_quiet``) is open while a healthy leader
has every member following it; the ``prevote_no_disruption`` check then fails any term that rises.

Event contract towards the core: effects are carried out in order; ``NextEvent`` runs after the
events already queued at this instant; ``Written``/``MetaWritten`` notices reach a server in the
order its syncs produced them; a timer re-armed replaces the previous one; a crash drops every
event for the dead incarnation (messages in flight to its id are still delivered if it is back).
"""
from __future__ import annotations

import functools
import heapq
import random
import signal
import sys
import traceback
from collections import deque
from dataclasses import dataclass, field, replace
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ra.core import server, validate
from ra.core.effects import (
    SHELL_MACHINE_EFFECTS, Cast, DeleteAndTerminate, DurableReply, NextEvent, Notify,
    RecordLeaderMsg, Reply, SendRpc, StartElectionTimeout, StartHeartbeatTimeout,
)
from ra.core.messages import (
    AppendEntriesReply, ElectionTimeout, FlushCommands, HeartbeatTimeout, InstallSnapshotResult,
    Command, LeaderDown, RequestVoteResult, Tick, TriggerElection, Written,
)
from ra.core.types import ServerId
from ra.core.messages import AppendEntriesRpc, HeartbeatReply, HeartbeatRpc, InstallSnapshotRpc
from ra.testing import mutants
from ra.testing.checkers import SafetyChecker, Violation
from ra.testing.memory import MemoryMeta
from ra.testing.mutants import MUTANTS
from ra.testing.sim_clients import ClientDriver, SimClient
from ra.testing.sim_fmt import fmt_msg
from ra.testing.sim_net import (
    PROFILES, Network, Profile, calm, malformed_message, scenario_for_seed,
)
from ra.testing.sim_nodes import CheckedLog, SimMachine, machine_raises
from ra.testing.sim_detector import SimDetector, node_of
from ra.testing.sim_quiet import QuietWindow

__all__ = ["SimCluster", "SimResult", "SimMachine", "CheckedLog", "run_seed", "run_seeds", "replay_command",
           "main", "CORE_BUGS", "ALL_BUGS"]

#: planted bugs of the core: the test-side mutants of :mod:`ra.testing.mutants` (the core has no
#: bug switches); ``ack_before_durable`` and ``reply_before_durable`` live in the memory log twin,
#: ``held_notice_lost`` in this module's model of the WAL holding notices (:meth:`_release_held`)
CORE_BUGS = frozenset(m.name for m in MUTANTS)
ALL_BUGS = CORE_BUGS | {"ack_before_durable", "reply_before_durable", "held_notice_lost"}


@functools.cache
def _mutated_core(names: tuple[str, ...]) -> ModuleType:
    """The core with the mutants ``names`` applied (compiled once per set per process)."""
    return mutants.load(*names)


#: the replies a leader counts for its quorum check
_REPLIES = (AppendEntriesReply, HeartbeatReply, InstallSnapshotResult)
#: what a follower hears from a leader (it counts its election timeout from the last one)
_FROM_LEADER = (AppendEntriesRpc, HeartbeatRpc, InstallSnapshotRpc)


@dataclass(slots=True)
class SimServer:
    sid: Any
    cfg: Any
    log: CheckedLog
    meta: MemoryMeta
    role: str = "follower"
    state: Any = None
    alive: bool = False
    inc: int = 0
    timers: dict[str, int] = field(default_factory=lambda: {"election": 0, "heartbeat": 0})
    monitors: dict[Any, None] = field(default_factory=dict)
    sync_due: bool = False
    written_tail: int = 0
    #: the WAL's notices held back after a reply it sent (``wal.wal``: until its next batch)
    held: list[Any] = field(default_factory=list)
    held_gen: int = 0            # tells a stale release event from the current hold's
    restart_due: bool = False
    heard: dict[Any, int] = field(default_factory=dict)   # leader: peer -> last reply time
    leader_heard: int = 0        # when a leader's message last arrived (the shell records it)
    cluster_seen: tuple[Any, ...] = ()   # leader: its configuration, and since when
    config_since: int = 0
    hold_until: int = 0          # group commit: when the current hold ends at the latest
    hold_gen: int = 0            # tells a stale hold_end event from the current hold's
    flush_held: bool = False     # a FlushCommands is parked by the hold
    node_up: bool = True         # quiet profiles: False while its node is killed
    hung: bool = False           # quiet profiles: the process hangs (node and links stay up)
    backlog: list[tuple[str, Any, Any]] = field(default_factory=list)  # what waits for it
    resumed_at: int = 0          # when it last came out of a hang
    became_leader: int = 0       # when it last became leader


@dataclass(slots=True)
class SimResult:
    seed: int
    servers: int
    profile: str
    events: int
    steps: int
    time_ms: int
    stats: dict[str, int]
    leaders: dict[int, Any]
    commit_index: int


class SimCluster(ClientDriver):
    """A seeded simulated cluster (see the module docstring)."""

    def __init__(self, seed: int, servers: int | None = None, profile: str | Profile | None = None,
                 *, bugs: frozenset[str] | set[str] = frozenset(), trace: bool = False,
                 disabled_checks: frozenset[str] | set[str] = frozenset(),
                 out: Callable[[str], None] = print, max_events: int = 60_000,
                 auto_faults: bool = True, group_commit_ms: int | None = None) -> None:
        d_servers, d_profile = scenario_for_seed(seed)
        self.seed = seed
        self.n_initial = servers if servers is not None else d_servers
        prof = profile if profile is not None else d_profile
        self.profile = prof if isinstance(prof, Profile) else PROFILES[prof]
        self.group_commit = group_commit_ms     # an override of the profile's (replayed)
        if group_commit_ms is not None:
            self.profile = replace(self.profile, group_commit_ms=group_commit_ms)
        self.base_profile = self.profile
        self.overrides = (servers is not None and servers != d_servers,
                          profile is not None and self.profile.name != d_profile)
        unknown = set(bugs) - ALL_BUGS
        if unknown:
            raise ValueError(f"unknown bugs {sorted(unknown)}; known: {sorted(ALL_BUGS)}")
        self.bugs = frozenset(bugs)
        # read at start, not import: ``mutants.patched`` swaps this module's ``server``
        core_bugs = tuple(sorted(self.bugs & CORE_BUGS))
        self.core: Any = _mutated_core(core_bugs) if core_bugs else server
        self.rng = random.Random(seed)
        self.checker = SafetyChecker(disabled_checks, raises=machine_raises)
        self.net = Network(self.rng, self.profile)
        self.tracing, self.out = trace, out
        self.tail: deque[tuple[int, Any, Any]] = deque(maxlen=40)
        self.max_events = max_events
        self.auto_faults = auto_faults
        self.now = 0
        self.events = 0
        self.steps = 0
        self._seq = 0
        self.queue: list[tuple[int, int, str, tuple[Any, ...]]] = []
        self.servers: dict[Any, SimServer] = {}
        self.clients: dict[str, SimClient] = {}
        self.pending_calls: dict[Any, Any] = {}      # frm -> server holding the call
        self.faults_over = False
        self.done = False
        self.machine_violation: Violation | None = None
        self.deadline = 0
        self.partition_until = 0
        self.settled_at: int | None = None
        self.stats: dict[str, int] = {k: 0 for k in (
            "commands", "acked", "unknown", "sessions", "retries", "machine_errors", "queries", "crashes", "partitions", "joins",
            "leaves", "transfers", "snapshots_taken", "snapshots_installed",
            "checkpoints_taken", "checkpoints_promoted", "machine_effects",
            "elections", "dropped", "duplicated", "quiet_windows", "prevote_replays",
            "group_commit_holds", "group_commit_released_by_commit",
            "group_commit_released_by_cap", "group_commit_held_entries", "node_kills",
            "fd_down", "fd_up", "fd_false_suspicions", "failovers_watched", "failover_max_ms", "idle_msgs",
            "hangs", "hangs_watched", "hang_failover_max_ms", "idle_timers",
            "stray_calls", "probes_watched", "probe_failover_max_ms", "rejoins_watched",
            "rejoin_max_ms", "blips")}
        #: group commit: (leader, term, first, last) of every batch a hold kept back
        self.held_batches: list[tuple[Any, int, int, int]] = []
        self.quiet = QuietWindow(self)
        self.fd = SimDetector(self) if self.profile.quiet else None
        self._next_name = 1
        for _ in range(self.n_initial):
            self._new_server(None)
        initial = tuple(self.servers)
        for s in self.servers.values():
            s.cfg.initial_members = initial
        for s in list(self.servers.values()):
            self._start(s)
        for i in range(self.profile.clients):
            # every fifth client keeps to raw, session-less commands
            self.clients[f"c{i + 1}"] = SimClient(f"c{i + 1}", sessions=i % 5 != 4)
        if self.profile.membership_rate + self.profile.transfer_rate > 0:
            self.clients["admin"] = SimClient("admin", admin=True)
        # ra's start_cluster: trigger an election on one member
        self.schedule(1, "trigger", initial[0])
        if self.profile.tick_ms:
            self.schedule(self.profile.tick_ms, "tick")
        self.schedule(300, "trigger_check")
        if auto_faults:
            for c in self.clients.values():
                self._next_wakeup(c)
            self.schedule(20, "fault_tick")
            self.schedule(self.profile.fault_ms, "heal_all")

    # -- construction --------------------------------------------------------------------------
    def _new_server(self, members: tuple[Any, ...] | None) -> SimServer:
        sid = ServerId(f"s{self._next_name}",
                       node_of(self._next_name) if self.profile.quiet else "sim:1")
        self._next_name += 1
        log = CheckedLog(self, sid, ack_before_durable="ack_before_durable" in self.bugs,
                         reply_before_durable="reply_before_durable" in self.bugs)
        meta = MemoryMeta()
        machine = SimMachine(self, sid, self.profile.snapshot_every)
        cfg = self.core.ServerConfig(
            id=sid, uid=f"u_{sid.name}", cluster_name="sim", initial_members=members or (sid,),
            machine=machine, log=log, meta=meta,
            max_append_entries_rpc_batch_size=self.profile.batch_size,
            max_pipeline_count=self.profile.pipeline, low_priority_batch_size=8,
            snapshot_chunk_size=self.profile.chunk_size, quiet_when_idle=self.profile.quiet,
            durable_replies=True)   # every seed proves the rule (and declines: the shell's)
        s = SimServer(sid, cfg, log, meta)
        self.servers[sid] = s
        return s

    def spawn_server(self, members: list[Any]) -> Any:
        """Start a brand-new server that knows ``members`` (it waits to be joined)."""
        s = self._new_server(None)
        s.cfg.initial_members = tuple(members) + (s.sid,)
        self._start(s)
        self.note(s.sid, "spawned (waiting to be joined)")
        return s.sid

    def _start(self, s: SimServer) -> None:
        s.alive = True
        s.inc += 1
        s.written_tail = self.now
        role, state, effects = self.core.init(s.cfg)
        s.role, s.state = role, state
        self._after_step(s, effects, "", 0)
        if self.fd is not None:
            if not s.node_up:
                s.node_up = True
                self.fd.on_node_restart(s)
            self.fd.on_start(s)
            self.fd.sync()

    # -- the event queue -----------------------------------------------------------------------
    def schedule(self, delay: int, kind: str, *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (self.now + delay, self._seq, kind, args))

    def _schedule_at(self, t: int, kind: str, *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (t, self._seq, kind, args))

    def run(self) -> SimResult:
        """Run to the end of the recovery phase; raise ``Violation`` on any failure."""
        try:
            while self.queue and not self.done:
                self.step_event()
            if not self.done and self.auto_faults:
                self._liveness_failure("the event queue ran dry")
        except Violation as v:
            raise self._annotate(v)
        except Exception as exc:  # the core (or the sim) raised: report it like a violation
            crash = Violation("exception",
                              f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            raise self._annotate(crash) from exc
        return self.result()

    def result(self) -> SimResult:
        leader = self.current_leader()
        self.stats["dropped"], self.stats["duplicated"] = self.net.dropped, self.net.duplicated
        return SimResult(self.seed, self.n_initial, self.profile.name, self.events, self.steps,
                         self.now, dict(self.stats), dict(self.checker.leaders),
                         self.servers[leader].state.commit_index if leader else 0)

    def run_until(self, t: int, stop: Callable[[], bool] | None = None) -> bool:
        """Scripted runs: handle events up to simulated time ``t`` (or until ``stop()``);
        returns whether ``stop`` fired. Violations propagate annotated, as in ``run``."""
        try:
            while self.queue and self.queue[0][0] <= t:
                self.step_event()
                if stop is not None and stop():
                    return True
            self.now = max(self.now, t)
        except Violation as v:
            raise self._annotate(v)
        return False

    def step_event(self) -> None:
        t, _, kind, args = heapq.heappop(self.queue)
        self.now = t
        self.events += 1
        if self.events > self.max_events:
            self._liveness_failure(f"more than {self.max_events} events")
        getattr(self, "_ev_" + kind)(*args)
        if self.machine_violation is not None:
            # raised inside the machine, where the core takes exceptions for machine errors
            v, self.machine_violation = self.machine_violation, None
            raise v
        if self.faults_over and not self.done:
            self.quiet.watch()
            self._check_settled()

    def _annotate(self, v: Violation) -> Violation:
        v.seed, v.time, v.step = self.seed, self.now, self.steps
        v.replay = replay_command(self.seed, self.n_initial if self.overrides[0] else None,
                                  self.profile.name if self.overrides[1] else None, self.bugs,
                                  self.group_commit)
        v.trace_tail = [self._fmt_tail(x) for x in self.tail]
        return v

    # -- events --------------------------------------------------------------------------------
    def _ev_peer(self, to: Any, msg: Any, frm: Any) -> None:
        s = self.servers[to]
        if s.alive and s.hung:
            s.backlog.append(("peer", msg, frm))    # its socket buffers it
            return
        if s.alive:
            if isinstance(msg, _REPLIES + _FROM_LEADER) and validate.check(msg) is None:
                # (the malformed-message profile sends garbage: only well-formed ones count)
                if isinstance(msg, _REPLIES):
                    if s.state.role == "leader" and msg.term == s.state.current_term:
                        s.heard[msg.from_id] = self.now
                elif msg.term >= s.state.current_term:
                    s.leader_heard = self.now
            self.step_server(s, msg, frm)
            if s.alive:
                self.quiet.on_delivered(to, msg, s.state)

    def _ev_local(self, sid: Any, inc: int, msg: Any) -> None:
        s = self.servers[sid]
        if s.alive and s.inc == inc:
            if isinstance(msg, FlushCommands) and self._hold(s):
                return
            self.step_server(s, msg, None)

    # -- group commit: the core decides (holds_flush), the simulator keeps the time, as the shell
    def _hold(self, s: SimServer) -> bool:
        """Whether ``s``'s due flush waits (then it is parked until the batch before it commits
        or ``group_commit_ms`` passes); the same rule as ``ServerProc._hold``."""
        cap = self.profile.group_commit_ms
        if not cap or not self.core.holds_flush(s.state):
            if s.hold_until:
                self._released(s, "group_commit_released_by_commit")
            return False
        if not s.hold_until:
            s.hold_until = self.now + cap
            s.hold_gen += 1
            self.stats["group_commit_holds"] += 1
            self.schedule(cap, "hold_end", s.sid, s.inc, s.hold_gen)
        if self.now < s.hold_until:
            s.flush_held = True
            return True
        self._released(s, "group_commit_released_by_cap")
        return False

    def _released(self, s: SimServer, why: str) -> None:
        """The hold ends: record the entries it held (appended since the last flush)."""
        self.stats[why] += 1
        s.hold_until = 0
        lo, hi = s.state.batch_end + 1, s.log.last_index_term()[0]
        if s.state.role == "leader" and lo <= hi:
            self.stats["group_commit_held_entries"] += hi - lo + 1
            self.held_batches.append((s.sid, s.state.current_term, lo, hi))

    def _ev_hold_end(self, sid: Any, inc: int, gen: int) -> None:
        s = self.servers[sid]
        if s.alive and s.inc == inc and s.hold_gen == gen and s.flush_held:
            s.flush_held = False
            self._ev_local(sid, inc, FlushCommands())

    def _ev_timer(self, sid: Any, inc: int, kind: str, gen: int) -> None:
        s = self.servers[sid]
        if s.alive and s.inc == inc and s.timers[kind] == gen:
            if self.fd is not None:
                self.fd.on_timer(sid, kind)
            self.step_server(s, ElectionTimeout() if kind == "election" else HeartbeatTimeout(),
                             None)

    def _ev_sync(self, sid: Any, inc: int) -> None:
        s = self.servers[sid]
        if not (s.alive and s.inc == inc):
            return
        s.sync_due = False
        evs = s.log.sync() + s.meta.sync()
        self._send_forwards(s)
        if s.held:                  # the WAL's next batch: what it held back leaves first
            self._release_held(s)
        if any(type(e) is Written and e.replied for e in evs):
            # the WAL holds the notice of a batch whose reply it sent (notice_defer_ms)
            d = self.rng.randint(*self.profile.notice_defer_ms)
            if d > 0:
                s.held = [e for e in evs if type(e) is Written]
                evs = [e for e in evs if type(e) is not Written]
                s.held_gen += 1
                self.schedule(d, "release", s.sid, s.inc, s.held_gen)
        self._deliver_local(s, evs, self.profile.written_ms)

    def _ev_release(self, sid: Any, inc: int, gen: int) -> None:
        s = self.servers[sid]
        if s.alive and s.inc == inc and s.held_gen == gen and s.held:
            self._release_held(s)

    def _release_held(self, s: SimServer) -> None:
        held, s.held = s.held, []
        if "held_notice_lost" not in self.bugs:
            self._deliver_local(s, held, self.profile.written_ms)

    def _send_forwards(self, s: SimServer) -> None:
        """The replies the log's writer sends as their writes become durable (DurableReply):
        from the follower's host, so the same network fates as the follower's own."""
        for to, msg in s.log.take_forwards():
            self._send_rpc(s, to, msg)

    def _deliver_local(self, s: SimServer, evs: list[Any], delay: tuple[int, int]) -> None:
        for ev in evs:
            t = max(self.now + self.rng.randint(*delay), s.written_tail)
            s.written_tail = t
            self._schedule_at(t, "local", s.sid, s.inc, ev)

    def _ev_call(self, sid: Any, msg: Any, frm: Any, client: str) -> None:
        s = self.servers[sid]
        if not s.alive:
            if frm is not None:
                self.schedule(self.rng.randint(1, 3), "reply", client, frm, ("noproc",))
            return
        if frm is not None:
            self.pending_calls[frm] = sid
        self.step_server(s, msg, client)

    def _call(self, c: SimClient, target: Any, msg: Any, frm: Any) -> None:
        """Client ``c`` calls ``target`` (reliable channel; ``frm`` None for a pipelined cast)."""
        self.schedule(self.rng.randint(1, 3), "call", target, msg, frm, c.name)

    def _ev_reply(self, client: str, frm: Any, value: Any) -> None:
        self.client_reply(client, frm, value)

    def _ev_mail(self, client: str, msg: Any) -> None:
        if client in self.clients:
            self.client_mail(client, msg)

    def _ev_wake(self, client: str) -> None:
        self.client_wakeup(self.clients[client])

    def _ev_resend(self, client: str, req: int) -> None:
        self.client_resend(client, req)

    def _ev_ctimeout(self, client: str, req: int) -> None:
        self.client_timeout(client, req)

    def _ev_trigger(self, sid: Any) -> None:
        s = self.servers[sid]
        if s.alive:
            self.note(sid, "trigger_election (start_cluster)")
            self.step_server(s, TriggerElection(None), None)

    def _ev_trigger_check(self) -> None:
        if all(s.meta.fetch()[0] == 0 for s in self.servers.values()):
            alive = [s.sid for s in self.servers.values() if s.alive]
            if alive:
                self._ev_trigger(self.rng.choice(alive))
        if not self.faults_over:
            self.schedule(300, "trigger_check")

    def _ev_tick(self) -> None:
        """The shell's periodic tick (ra's tick_timeout) to every live server."""
        for s in list(self.servers.values()):
            if s.alive:
                self.step_server(s, Tick(self.now), None)
        self.schedule(self.profile.tick_ms, "tick")

    def _ev_restart(self, sid: Any) -> None:
        s = self.servers[sid]
        if s.alive or not s.restart_due:
            return
        s.restart_due = False
        self.note(sid, f"restart (term {s.meta.fetch()[0]}, log {s.log.last_index_term()})")
        self._start(s)

    def _ev_fd_report(self, observer: Any, observed: Any, gen: int) -> None:
        if self.fd is not None:
            self.fd.report(observer, observed, gen)

    def _ev_leader_down(self, sid: Any, inc: int, leader: Any) -> None:
        s = self.servers[sid]
        if s.alive and s.inc == inc:
            self.step_server(s, LeaderDown(leader), None)

    def _ev_fault_tick(self) -> None:
        if self.faults_over:
            return
        p, rng, dt = self.profile, self.rng, 20
        hung = any(s.hung for s in self.servers.values())
        if self.net.blocked:
            if self.now >= self.partition_until:
                self.heal()
        elif hung:
            pass            # no new partition or crash while a process hangs: quiet_hang's
                            # clock would restart on each
        elif p.partition_rate and rng.random() < p.partition_rate * dt / 1000:
            self.partition()
        if p.garbage_rate and rng.random() < p.garbage_rate * dt / 1000:
            victim = rng.choice(list(self.servers))
            bad = malformed_message(rng, victim)
            self.note(victim, f"GARBAGE {bad!r}")
            self.schedule(rng.randint(*p.delay), "peer", victim, bad, None)
        if p.hang_rate and not hung and rng.random() < p.hang_rate * dt / 1000:
            leader = self.current_leader()
            alive = [s.sid for s in self.servers.values() if s.alive]
            if alive:
                victim = leader if leader is not None and rng.random() < 0.8 \
                    else rng.choice(alive)
                self.hang(victim, rng.randint(*p.hang_ms))
                if p.hang_client and victim == leader and rng.random() < p.hang_client:
                    s = self.servers[victim]
                    self.schedule(rng.randint(*p.hang_client_ms), "hang_client", victim, s.inc)
        elif p.crash_rate and not hung and rng.random() < p.crash_rate * dt / 1000:
            down = sum(1 for s in self.servers.values() if not s.alive)
            alive = [s.sid for s in self.servers.values() if s.alive]
            if down < p.max_down and alive:
                leader = self.current_leader()
                victim = leader if leader is not None and rng.random() < p.crash_leader_bias \
                    else rng.choice(alive)
                self.crash(victim, node=bool(p.node_kill_ratio)
                           and rng.random() < p.node_kill_ratio)
                self.schedule(rng.randint(*p.down_ms), "restart", victim)
        if p.blip_rate and rng.random() < p.blip_rate * dt / 1000:
            self.blip()
        if self.fd is not None:
            if p.false_suspicion_rate and rng.random() < p.false_suspicion_rate * dt / 1000:
                self.fd.false_suspicion()
            self.fd.sync()
            self.fd.watch_failover()
            self.fd.watch_hang()
            self.fd.watch_lag()
            self.fd.watch_rejoin()
        self.schedule(dt, "fault_tick")

    def _ev_heal_all(self) -> None:
        """End of the fault phase: heal, restart everything, then demand liveness."""
        self.faults_over = True
        self.profile = calm(self.profile)
        self.net.profile = self.profile
        self.heal()
        for s in list(self.servers.values()):
            if s.hung:
                self.resume(s)
        self.quiet.on_heal_all()
        self.note(None, "=== faults stop: recovery phase ===")
        for s in list(self.servers.values()):
            if not s.alive:
                s.restart_due = True
                self._ev_restart(s.sid)
        self.deadline = self.now + self.profile.settle_ms
        self.schedule(self.profile.settle_ms, "deadline")
        for c in self.clients.values():
            if c.op is None:
                self.schedule(self.rng.randint(0, 5), "wake", c.name)

    def _ev_deadline(self) -> None:
        if not self.done and self.settled_at is None:
            self._liveness_failure(f"not settled {self.profile.settle_ms}ms after faults stopped")

    # -- faults (also used by the demo and the hypothesis test) ---------------------------------
    def crash(self, sid: Any, node: bool = False) -> None:
        """Crash ``sid``'s process; ``node``: its whole node (quiet profiles), silently: no
        connection-close notice, only the failure detector tells, after its delay."""
        s = self.servers[sid]
        if not s.alive:
            return
        self.stats["crashes"] += 1
        if node:
            s.node_up = False
            self.stats["node_kills"] += 1
        s.alive = False
        s.inc += 1
        s.state = None            # the process is gone; init() rebuilds it from storage
        s.log.crash()
        s.meta.crash()
        s.sync_due = False
        s.held = []              # sent by the WAL to a process that is gone
        s.monitors = {}
        s.hold_until, s.flush_held = 0, False     # the process and its timers are gone
        s.hung, s.backlog = False, []
        s.restart_due = True
        self.quiet.close("crash")
        self.note(sid, f"CRASH{' OF ITS NODE' if node else ''} (durable: term "
                       f"{s.meta.fetch()[0]}, log {s.log.last_index_term()})")
        for o in self.servers.values():
            if o.alive and sid in o.monitors and not node:
                del o.monitors[sid]
                self.schedule(self.rng.randint(5, 20), "leader_down", o.sid, o.inc, sid)
        for frm, holder in list(self.pending_calls.items()):
            if holder == sid:
                del self.pending_calls[frm]
                self.schedule(self.rng.randint(1, 5), "reply", frm[1], frm, ("error", "nodedown"))
        if self.fd is not None:
            self.fd.sync()

    def blip(self) -> None:
        """A follower's connection to its idle leader drops and comes back at once: it gets
        ``LeaderDown`` while the leader stays up and silent (a busy leader's next heartbeat
        would tell it at once: not worth a fault)."""
        lid = self.current_leader()
        if lid is None or not self.servers[lid].state.heartbeat_off:
            return
        rest = [s for s in self.servers.values() if s.alive and not s.hung
                and s.role == "follower" and s.state.leader_id == lid]
        if not rest:
            return
        s = self.rng.choice(rest)
        self.stats["blips"] += 1
        self.note(s.sid, f"connection to {_n(s.state.leader_id)} drops and comes back")
        self.schedule(self.rng.randint(1, 5), "leader_down", s.sid, s.inc, s.state.leader_id)

    def hang(self, sid: Any, ms: int) -> None:
        """The process of ``sid`` hangs for ``ms`` (SIGSTOP, a stuck machine): its node, its
        detector and its connections stay up; what reaches it waits until it runs again."""
        s = self.servers[sid]
        if not s.alive or s.hung:
            return
        s.hung = True
        self.stats["hangs"] += 1
        self.note(sid, f"HANG for {ms}ms (node and links stay up)")
        self.schedule(ms, "hang_end", sid, s.inc)

    def _ev_hang_client(self, sid: Any, inc: int) -> None:
        """A client's attempt on the hung leader ``sid`` timed out: it asks a follower."""
        s = self.servers[sid]
        if not (s.alive and s.inc == inc and s.hung) or self.faults_over:
            return
        rest = [x for x in self.servers.values() if x.sid != sid and x.alive and not x.hung
                and x.role == "follower"]
        if rest:
            self.stray_call(self.rng.choice(rest), f"its attempt on {sid.name} timed out")

    def _ev_stray(self, sid: Any) -> None:
        s = self.servers[sid]
        if s.alive and not s.hung and s.role == "follower":
            self.stray_call(s, "quiet window")

    def stray_call(self, s: SimServer, why: str) -> None:
        """A client command reaches follower ``s`` (it answers with a redirect, which no client
        waits for: the command is never taken)."""
        self.stats["stray_calls"] += 1
        self.note(s.sid, f"a client asks it ({why})")
        if self.fd is not None:
            self.fd.on_stray_call(s)
        self.step_server(s, Command("usr", ("stray",), ("await", ("stray", self.now))), None)

    def _ev_hang_end(self, sid: Any, inc: int) -> None:
        s = self.servers[sid]
        if s.alive and s.inc == inc and s.hung:
            self.resume(s)

    def resume(self, s: SimServer) -> None:
        """A hung process runs again: it handles what waited for it, in arrival order."""
        s.hung, backlog = False, s.backlog
        s.backlog = []
        s.resumed_at = self.now
        self.note(s.sid, f"resumes ({len(backlog)} events waited)")
        for i, (kind, msg, frm) in enumerate(backlog):
            if not s.alive or s.hung:
                s.backlog.extend(backlog[i:] if s.hung else ())
                return
            if kind == "peer":
                self._ev_peer(s.sid, msg, frm)
            else:
                self.step_server(s, msg, frm)

    def restart(self, sid: Any) -> None:
        s = self.servers[sid]
        if not s.alive:
            s.restart_due = True
            self._ev_restart(sid)

    def partition(self) -> None:
        desc = self.net.partition(list(self.servers), self.current_leader())
        if desc:
            self.stats["partitions"] += 1
            lo, hi = self.profile.partition_ms
            self.partition_until = self.now + self.rng.randint(lo, hi)
            self.note(None, f"PARTITION {desc}")
        if self.fd is not None:
            self.fd.sync()

    def partition_groups(self, *groups: list[Any]) -> None:
        """Scripted symmetric partition into ``groups`` (demo, tests)."""
        self.net.blocked.clear()
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                self.net._cut(a, b)
                self.net._cut(b, a)
        self.stats["partitions"] += 1
        self.note(None, "PARTITION " + " | ".join(
            "{" + ",".join(x.name for x in g) + "}" for g in groups))
        if self.fd is not None:
            self.fd.sync()

    def heal(self) -> None:
        if self.net.blocked:
            self.net.heal()
            self.note(None, "HEAL partition")
            if self.fd is not None:
                self.fd.sync()

    def sync(self, sid: Any) -> None:
        s = self.servers[sid]
        if s.alive:
            self._ev_sync(sid, s.inc)

    # -- stepping a server ---------------------------------------------------------------------
    def step_server(self, s: SimServer, msg: Any, frm: Any) -> None:
        if s.hung:
            s.backlog.append(("step", msg, frm))    # timers, notices, calls: handled on resume
            return
        self.steps += 1
        self.tail.append((self.now, s.sid, (msg, frm)))
        if self.tracing:
            self.out(self._fmt_tail(self.tail[-1]))
        old_role, old_term, old_commit = s.role, s.state.current_term, s.state.commit_index
        role, state, effects = self.core.step(s.role, msg, s.state)
        s.role, s.state = role, state
        self._after_step(s, effects, old_role, old_term, old_commit)

    def _after_step(self, s: SimServer, effects: list[Any], old_role: str, old_term: int,
                    old_commit: int | None = None) -> None:
        st = s.state
        if st.role != old_role or st.current_term != old_term:
            if st.role == "leader" and old_role != "leader":
                self.stats["elections"] += 1
                s.became_leader = self.now
                s.heard = {}
            self.note(s.sid, f"{old_role or 'start'} -> {st.role} (term {st.current_term})")
        self.checker.on_server_state(s.sid, s.inc, st.role, st.current_term, st.commit_index,
                                     st.last_applied, s.log)
        if st.role == "leader" and old_commit is not None and st.commit_index > old_commit \
                and old_role == "leader":
            self.checker.on_leader_commit(
                s.sid, st.current_term, old_commit + 1, st.commit_index,
                {m: self._durable_view(m) for m in st.cluster if m in self.servers})
        if st.role == "leader" and old_role != "leader":
            self._check_prompt_replication(s, effects)
        for e in effects:
            self._effect(s, e)
        if st.role == "leader" and s.alive:
            self._check_quorum_bound(s)
        if not self.faults_over and self.auto_faults:
            p = self.profile
            if p.crash_after_vote or p.crash_after_ack:
                self._buggify(s, effects)
            if st.role == "leader" and s.alive and (
                    (old_role != "leader" and p.isolate_after_elected
                     and self.rng.random() < p.isolate_after_elected)
                    or (old_commit is not None and st.commit_index > old_commit
                        and p.isolate_after_commit
                        and self.rng.random() < p.isolate_after_commit)):
                self.net.isolate(s.sid, list(self.servers))
                self.partition_until = self.now + self.rng.randint(*p.partition_ms)
                self.stats["partitions"] += 1
                self.note(None, f"PARTITION {self.net.description} (targeted)")
                if self.fd is not None:
                    self.fd.sync()
        if not s.alive:
            return
        if s.flush_held and not self.core.holds_flush(st):
            s.flush_held = False
            self.schedule(0, "local", s.sid, s.inc, FlushCommands())
        if "reply_before_durable" in self.bugs:
            self._send_forwards(s)
        if "ack_before_durable" in self.bugs:
            early = s.log.take_early_acks()
            if early:
                self._deliver_local(s, list(early), (0, 1))
        if not s.sync_due and (s.log.has_pending() or s.meta.has_pending()):
            s.sync_due = True
            self.schedule(self.rng.randint(*self.profile.sync_ms), "sync", s.sid, s.inc)

    def _check_prompt_replication(self, s: SimServer, effects: list[Any]) -> None:
        """``prompt_replication``: the step that made ``s`` leader sent every peer an append
        or a snapshot."""
        if "prompt_replication" in self.checker.disabled:
            return
        sent = {e.to for e in effects if isinstance(e, SendRpc)
                and isinstance(e.msg, (AppendEntriesRpc, InstallSnapshotRpc))}
        missing = [m for m in s.state.peers if m not in sent]
        if missing:
            v = Violation("prompt_replication",
                          f"{_n(s.sid)} became leader of term {s.state.current_term} with "
                          f"{s.log.last_index_term()[0]} entries and sent no append to "
                          f"{[_n(m) for m in missing]}: they wait for its next heartbeat")
            raise self._annotate(v)

    def _check_quorum_bound(self, s: SimServer) -> None:
        """``check_quorum``: a leader that no majority of its configuration has answered for
        more than two election timeouts must have stepped down (a member counts as answered
        from when it entered the leader's view, the leader always hears itself, and a
        configuration change restarts the count)."""
        if "check_quorum" in self.checker.disabled:
            return
        st = s.state
        heard = s.heard
        if st.cluster != s.cluster_seen:
            # a configuration change moves the goal posts: the bound counts from it
            s.cluster_seen, s.config_since = st.cluster, self.now
        times = []
        for m in st.cluster:
            if m == s.sid:
                times.append(self.now)
            else:
                times.append(heard.setdefault(m, self.now))
        limit = 2 * self.profile.election_ms
        if self.fd is not None:
            # quiet: a member the leader has nothing outstanding for counts while its node
            # reaches the leader's (the truth; the core learns it a detection delay later)
            last = s.log.last_index_term()[0]
            for m, p in st.peers.items():
                if m in st.cluster and p.match_index >= last and p.snapshot == "none" \
                        and self.fd.reachable(s.sid, m):
                    heard[m] = self.now
            times = [self.now if m == s.sid else heard[m] for m in st.cluster]
            limit += self.profile.detect_ms[1] + 20 + self.profile.tick_ms
        times.sort(reverse=True)
        # a hung process cannot step down: the bound counts from when it runs again
        quorum_time = max(times[len(times) // 2], s.config_since, s.resumed_at)
        if self.now - quorum_time > limit:
            v = Violation("check_quorum",
                          f"{_n(s.sid)} still leads term {st.current_term} although no majority "
                          f"of {[_n(m) for m in st.cluster]} answered it since "
                          f"t={quorum_time}ms (more than 2 election timeouts: {limit}ms)")
            raise self._annotate(v)

    def _durable_view(self, sid: Any) -> Callable[[int], Any]:
        log = self.servers[sid].log

        def term_at(idx: int) -> Any:
            t = log.durable_term(idx)
            return "snapshot" if t == -1 else t
        return term_at

    def _buggify(self, s: SimServer, effects: list[Any]) -> None:
        """Targeted crash right after a granted vote or a successful append reply went out."""
        p = self.profile
        for e in effects:
            if not isinstance(e, SendRpc):
                continue
            m = e.msg
            chance = p.crash_after_vote if isinstance(m, RequestVoteResult) and m.vote_granted \
                else p.crash_after_ack if isinstance(m, AppendEntriesReply) and m.success else 0.0
            if chance and self.rng.random() < chance:
                if sum(1 for x in self.servers.values() if not x.alive) >= p.max_down:
                    return
                self.crash(s.sid)
                self.schedule(self.rng.randint(*p.quick_down_ms), "restart", s.sid)
                return

    def _send_rpc(self, s: SimServer, to: Any, m: Any) -> None:
        self.quiet.on_send(s.sid, to, m)
        if self.fd is not None:
            self.fd.on_send(s.sid, to, m)
        if isinstance(m, AppendEntriesReply) and m.success \
                or isinstance(m, InstallSnapshotResult) and m.last_index > 0:
            self.checker.on_ack_sent(s.sid, m.last_index, m.last_term,
                                     _covered(s.log.durable_term(m.last_index), m.last_term))
        elif isinstance(m, RequestVoteResult) and m.vote_granted:
            self.checker.on_vote_sent(s.sid, m.term, to,
                                      (s.meta._d_term, s.meta._d_voted_for))
        if to not in self.servers:
            return
        for d in self.net.fates(s.sid, to):
            self.schedule(d, "peer", to, m, s.sid)

    def _effect(self, s: SimServer, e: Any) -> None:
        if isinstance(e, SendRpc):
            self._send_rpc(s, e.to, e.msg)
        elif isinstance(e, DurableReply):
            if self.rng.random() >= self.profile.durable_reply_declined:
                s.log.attach_reply(e.to, e.msg)
        elif isinstance(e, Reply):
            frm = e.frm
            if isinstance(frm, tuple) and frm and frm[0] == "call":
                self.pending_calls.pop(frm, None)
                self.schedule(self.rng.randint(1, 3), "reply", frm[1], frm, e.value)
        elif isinstance(e, NextEvent):
            self.schedule(0, "local", s.sid, s.inc, e.event)
        elif isinstance(e, StartElectionTimeout):
            if self.fd is not None:
                self.fd.on_arm(s.sid, e)
            s.timers["election"] += 1
            t = self.profile.election_ms
            # short (the leader is known gone / a candidate waits for votes): soon, yet
            # randomised: [0, T/5] as the shell (ra/server/proc.py) draws it
            if e.check_quorum:
                lo = hi = t
            elif e.since_leader:
                lo = hi = (max(0, s.leader_heard + t - self.now) + e.turn * t // 5
                           + self.rng.randint(0, max(1, t // 20)))
            elif e.at_once:
                lo, hi = 0, max(1, t // 20)
            elif e.short:
                lo = e.turn * t // 5
                hi = lo + max(1, t // 20)
            else:
                lo, hi = t, 2 * t - 1
            self.schedule(self.rng.randint(lo, hi), "timer", s.sid, s.inc, "election",
                          s.timers["election"])
        elif isinstance(e, StartHeartbeatTimeout):
            if self.fd is not None:
                self.fd.on_arm(s.sid, e)
            s.timers["heartbeat"] += 1
            self.schedule(self.profile.heartbeat_ms * e.periods, "timer", s.sid, s.inc,
                          "heartbeat", s.timers["heartbeat"])
        elif isinstance(e, Notify):
            self.schedule(self.rng.randint(1, 3), "mail", e.pid, ("applied", e.leader, e.applied))
        elif isinstance(e, Cast):
            self.schedule(self.rng.randint(1, 3), "mail", e.to, e.msg)
        elif isinstance(e, RecordLeaderMsg):
            s.monitors[e.leader_id] = None
            leader = self.servers.get(e.leader_id)
            if leader is not None and not leader.alive:
                del s.monitors[e.leader_id]
                self.schedule(self.rng.randint(5, 20), "leader_down", s.sid, s.inc, e.leader_id)
        elif isinstance(e, SHELL_MACHINE_EFFECTS):
            self.stats["machine_effects"] += 1
        elif isinstance(e, DeleteAndTerminate):
            self.note(s.sid, "delete_and_terminate: stopped for good")
            self.crash(s.sid)
            s.restart_due = False
        else:
            raise Violation("exception", f"{s.sid.name} returned an unknown effect {e!r}")

    def on_apply(self, sid: Any, idx: int, term: int, cmd: Any) -> None:
        try:
            self.checker.on_apply(sid, self.servers[sid].inc, idx, term, cmd)
        except Violation as v:
            # the core turns an exception from apply into a machine error: keep it for
            # step_event to raise once the step is over
            if self.machine_violation is None:
                self.machine_violation = v
            raise

    # -- queries about the cluster -------------------------------------------------------------
    def current_leader(self) -> Any:
        best = None
        for s in self.servers.values():
            if s.alive and s.state.role == "leader":
                if best is None or s.state.current_term > best.state.current_term:
                    best = s
        return best.sid if best is not None else None

    def random_member(self, exclude: Any = None) -> Any:
        leader = self.current_leader()
        pool = list(self.servers[leader].state.cluster) if leader else list(self.servers)
        pool = [m for m in pool if m != exclude] or pool
        return self.rng.choice(pool)

    def _check_settled(self) -> None:
        if self.settled_at is not None:
            self.done = self.now >= self.settled_at + self.profile.linger_ms
            return
        if not all(c.final_done or c.admin for c in self.clients.values()):
            return
        if self.converged():
            self.checker.check_acked_committed()
            self.settled_at = self.now
            self.done = not self.profile.linger_ms
            self.note(None, "=== settled: leader elected, client commands acknowledged, "
                            "members converged ===")

    def converged(self) -> bool:
        """A leader exists and every member of its cluster matches its log and has applied
        everything it committed."""
        leader = self.current_leader()
        if leader is None:
            return False
        ls = self.servers[leader].state
        want = (ls.commit_index, self.servers[leader].log.last_index_term())
        if ls.last_applied != ls.commit_index:
            return False
        for m in ls.cluster:
            s = self.servers.get(m)
            if s is None or not s.alive:
                return False
            st = s.state
            if (st.commit_index, s.log.last_index_term()) != want \
                    or st.last_applied != st.commit_index or st.leader_id != leader:
                return False
        return True

    def _liveness_failure(self, why: str) -> None:
        lines = [f"liveness: {why}"]
        for s in self.servers.values():
            if s.state is None:
                continue
            ov = self.core.overview(s.state)
            lines.append(f"  {s.sid.name}: alive={s.alive} role={ov['role']} "
                         f"term={ov['current_term']} leader={_n(ov['leader_id'])} "
                         f"commit={ov['commit_index']} applied={ov['last_applied']} "
                         f"last={ov['last_index']}/{ov['last_term']} "
                         f"written={ov['last_written_index']} snap={ov['snapshot_index']} "
                         f"cluster={[_n(m) for m in ov['cluster']]}")
        for c in self.clients.values():
            lines.append(f"  client {c.name}: op={c.op} final_done={c.final_done}")
        raise Violation("liveness", "\n".join(lines))

    # -- tracing -------------------------------------------------------------------------------
    def note(self, sid: Any, text: str) -> None:
        self.tail.append((self.now, sid, text))
        if self.tracing:
            self.out(self._fmt_tail(self.tail[-1]))

    def trace_client(self, c: SimClient, text: str) -> None:
        self.note(c.name, text)

    def _fmt_tail(self, item: tuple[int, Any, Any]) -> str:
        t, who, what = item
        name = _n(who) if who is not None else "--"
        if isinstance(what, str):
            return f"{t:7d}ms {name:>5} | {what}"
        msg, frm = what
        src = f" from {_n(frm)}" if frm is not None else ""
        return f"{t:7d}ms {name:>5} <- {fmt_msg(msg)}{src}"


def _n(sid: Any) -> str:
    return str(getattr(sid, "name", sid))


def _covered(durable: int | None, want: Any) -> Any:
    """A durable snapshot covering an index counts as holding it (-1 marks "covered")."""
    return want if durable == -1 else durable


def replay_command(seed: int, servers: int | None = None, profile: str | None = None,
                   bugs: frozenset[str] | set[str] = frozenset(),
                   group_commit_ms: int | None = None) -> str:
    """The shell command that replays exactly this run."""
    if servers is None and profile is None and not bugs and group_commit_ms is None:
        return f"make sim SEED={seed}   (python -m ra.testing.sim --seed {seed} --trace)"
    cmd = f"python -m ra.testing.sim --seed {seed}"
    if servers is not None:
        cmd += f" --servers {servers}"
    if profile is not None:
        cmd += f" --profile {profile}"
    for b in sorted(bugs):
        cmd += f" --bug {b}"
    if group_commit_ms is not None:
        cmd += f" --group-commit {group_commit_ms}"
    return cmd + " --trace"


def run_seed(seed: int, servers: int | None = None, profile: str | None = None,
             **kw: Any) -> SimResult:
    """Run one seed to completion (raises ``Violation`` with the replay command on failure)."""
    return SimCluster(seed, servers, profile, **kw).run()


def run_seeds(first: int, end: int) -> list[str]:
    """Run seeds ``first .. end - 1``; the report (with its replay command) of each failing one.
    A top-level function, so that a process pool can run chunks of seeds side by side."""
    failures = []
    for seed in range(first, end):
        try:
            run_seed(seed)
        except Violation as v:
            failures.append(str(v))
    return failures


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ra.testing.sim",
                                 description="Replay one deterministic simulation seed.")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--seeds", type=int, default=1, help="run seeds seed..seed+N-1")
    ap.add_argument("--servers", type=int, choices=(3, 5), default=None)
    ap.add_argument("--profile", choices=sorted(PROFILES), default=None)
    ap.add_argument("--bug", action="append", default=[], choices=sorted(ALL_BUGS),
                    help="plant a bug: a test-side mutant of the core (ra.testing.mutants) or "
                         "ack_before_durable, reply_before_durable (the memory log)")
    ap.add_argument("--group-commit", type=int, default=None, metavar="MS",
                    help="group commit's time cap (overrides the profile's; 0: off)")
    ap.add_argument("--trace", action="store_true", help="print every event")
    args = ap.parse_args(argv)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)   # `... --trace | head` ends quietly
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        d_servers, d_profile = scenario_for_seed(seed)
        print(f"seed {seed}: {args.servers or d_servers} servers, profile "
              f"{args.profile or d_profile}" + (f", bugs {sorted(args.bug)}" if args.bug else ""))
        sim = SimCluster(seed, args.servers, args.profile, bugs=frozenset(args.bug),
                         trace=args.trace, group_commit_ms=args.group_commit)
        try:
            r = sim.run()
        except Violation as v:
            failed += 1
            print(f"FAILED seed {seed}\n{v}")
            continue
        print(f"ok: {r.time_ms}ms simulated, {r.events} events, {r.steps} steps, "
              f"{len(r.leaders)} terms with a leader, commit index {r.commit_index}, "
              + ", ".join(f"{k}={v}" for k, v in r.stats.items() if v))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
