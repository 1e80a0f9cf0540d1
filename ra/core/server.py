"""The Raft core. Mirrors ra_server.erl.

Pure: ``step(role, msg, state) -> (role, state, effects)``. No I/O, no clock, no randomness. The
state object is updated in place (copying it per message costs too much in Python); the log and
meta store inside it are injected objects whose calls never block (see ``ra.core.log``).

Raft as ra does it:

* Pre-vote before every election; a brand-new server (term 0, empty log) waits for
  ``TriggerElection``. Election timeouts are picked by the shell.
* Nothing is acknowledged before it is durable: followers answer ``AppendEntriesRpc`` with their
  *written* index (after the log's ``Written`` notice), the leader counts its own written index
  the same way, and every outbound effect is held back while a term or vote is not yet durable.
  With ``durable_replies``, a follower whose term is durable hands the reply to its write
  (``DurableReply``): the shell may have the WAL send it once that write is synced, a hop
  sooner; the follower then skips its own reply to the ``Written`` that says so (``replied``),
  also when that ``Written`` comes after the next write delegated (the WAL held it).
  It does so only with nothing before the write unconfirmed but the previous delegated write;
  otherwise it answers itself, once per ``Written``. (The shell carries only one-entry writes'.)
* Commit by majority of durable match indexes, only for entries of the current term (Raft
  §5.4.2); each new leader appends a noop. Followers apply up to ``min(commit, written)``.
* Commands are applied in order; replies and ``applied`` notifications go out after apply.
* Low-priority commands are queued and appended in batches (``FlushCommands``).
* Consistent queries are answered after a heartbeat round confirms leadership.
* Membership changes one server at a time, only once the leader has committed an entry of its
  term and the previous change is committed. The latest configuration in the log is in force.
* Leadership transfer: the target is caught up, then sent ``TimeoutNow``.
* Check-quorum: every election timeout a leader checks that a majority (itself included)
  answered it since the last check, else steps down; a leader cut off from its cluster stops
  taking commands within two election timeouts, and its clients go elsewhere.
* Quiet when idle (``quiet_when_idle``; ra's idle servers do the same with aten): see
  "Quiet when idle" below.
* Client sessions (``ra.core.sessions``): a command retried under the same (session, seq) is
  applied once; every retry gets the first reply.
* Snapshots on the machine's ``ReleaseCursor``; lagging followers get chunked install_snapshot.
* Checkpoints (``Checkpoint``) keep the machine state without truncating the log;
  ``PromoteCheckpoint`` (ra's release cursor without a state) promotes the newest one at or
  below its index to the snapshot. A restart recovers from the newest of snapshot and
  checkpoints.
* Machine effects are typed where the core takes a callback's result (``ra.core.effects``:
  ``machine_effects``, the one validator); a malformed one never reaches the shell.

Quiet when idle (``ServerConfig.quiet_when_idle``, the same on every member). Idle is free:
no peer message and no timer but the shell's ticks (as ra with aten: leader liveness comes from
the node failure detector and the connections). Contract:

* A leader is *idle* when every peer holds its whole log durably (``match_index`` = last
  index), has said it knows the commit index (``AppendEntriesReply.commit_index``), is not
  being sent a snapshot, the last index is committed, and no query, leadership transfer,
  queued command or end of life is pending. A heartbeat timeout that finds the leader idle
  sends nothing and arms no heartbeat timer (``heartbeat_off``); the step that ends idleness
  re-arms the normal heartbeat. New entries are sent at once as always. A lost append or
  answer leaves a peer non-idle, so the heartbeats repair it. While the leader has no work of
  its own (every entry committed, nothing queued, no query, transfer or end of life), a
  heartbeat goes only to the peers that are not idle: a leader whose follower is down (its
  node restarting) does not wake the follower that is up, every period, to hear nothing new.
  A peer that answered none of the last ``SILENT_AFTER`` heartbeats is *silent* (down, cut
  off, hung, or its process not back yet) and is heartbeated only every ``SILENT_EVERY``-th
  period, as ra retries a lagging peer once a tick; a leader whose lagging peers are all
  silent and that has no work of its own arms its heartbeat timer for the periods until the
  next such beat (``StartHeartbeatTimeout.periods``), and work of its own or a lagging peer
  that answers brings the normal pace back at once. Any answer ends a peer's silence, and a
  silent member that comes back is not left waiting: its pre-vote or probe is answered at once.
* A follower that has a leader it does not suspect runs no election timer: an election
  timeout that finds it so arms nothing (``election_off``). The leader counts as *suspect*
  once its node is reported down (``NodeDown``), its connection is lost (``LeaderDown``, which
  forgets it), it is no longer in the configuration, or it asks for a pre-vote of a later term
  (it has stepped down). A step that leaves a quiet follower without an unsuspected leader
  arms a normal election timer, which runs as before.
* A member that lost a live idle leader (a restart, a dropped connection, a false suspicion, a
  missed ``NodeUp``) campaigns as usual; the leader answers a pre-vote from a member of its
  configuration (not an operator's forced one) and a vote request of its own term or below at
  once with an append (it never steps down for a pre-vote): a member whose term is not above
  the leader's follows it again and its reply makes the leader resend what it lacks; one whose
  term is above refuses it and the reply's term deposes the leader, as a heartbeat's refusal
  would. A quiet follower defers its own timer for another candidate's granted pre-vote once per
  timeout only. Bound: such a member follows the leader again within its election timer (at
  most ``2T``) plus a pre-vote and an append, without an election.
* A leader *process* that hangs (SIGSTOP, a stuck machine) while its node and connections stay
  up is found only by a client: a quiet follower (unsuspected leader) that is asked for a
  ``Command`` or a ``ConsistentQuery`` (it redirects them) *probes* the leader: it sends
  ``LeaderProbe`` to the leader and a copy to every other member, forgets that it heard the
  leader and arms a normal election timeout (``U(T, 2T)``); a follower that gets a copy about
  its own leader and term probes the leader too (no copies of its own). The leader answers a
  probe at once with an append to the prober. Any message of the leader ends the probe (back
  to no timer; the probe's fires once more, to no effect); a probe still unanswered when the
  timer fires makes the follower forget the leader and campaign. Bound: a hung leader is
  replaced within ``2T`` of a client's request at a follower plus one election (pre-vote, vote,
  a term sync; a split vote adds ``[T, 2T)``); with no client asking, never (nobody needs it).
* A quiet follower refuses every pre-vote while it counts on its leader (unsuspected, and its
  own probe has not failed): a follower whose probe or its answer was lost, or whose own check
  ran early, never deposes a live leader; the followers that probed for one client all give up
  within ``2T``, each granting the later ones, so a hung leader is still replaced. A probe the
  leader answers never leads to an election.
* The shell (or the simulator) must feed ``NodeDown(node)`` / ``NodeUp(node)`` from a node
  failure detector for every node hosting a member (initial statuses on start) and
  ``LeaderDown`` on connection loss: without them a lost leader is never replaced.
* Check-quorum still holds: at every check a peer counts if it answered since the last check,
  or if its node is not suspected and it was idle (nothing outstanding) at this check or the
  previous one. A check that finds the leader idle and no peer's node suspected (the next check
  could only fail once one of those changes) arms no next one (``quorum_off``); the step that
  ends either condition (a command, a ``NodeDown``) arms the normal one. So a quiet leader steps
  down within two election timeouts of its detector reporting a majority's nodes down, and a
  leader with entries outstanding that no majority answers steps down within two election
  timeouts, as without quiet mode.
* Node suspicions are also kept without quiet mode (``NodeDown`` of the leader's node acts as
  ``LeaderDown``); everything else above applies only with ``quiet_when_idle``.
"""
from __future__ import annotations

import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ra.core import quorum, validate
from ra.core.config import SERVER_DEFAULTS as _D
from ra.core.effects import (
    OUTBOUND, Append, Aux, BadMachineEffects, Cast, Checkpoint, DeleteAndTerminate,
    DurableReply, Effect,
    GarbageCollection, InvalidEffect, Log as LogEffect, MachineEffect, NextEvent, Notify,
    PromoteCheckpoint, RecordLeaderMsg, ReleaseCursor, Reply, SendRpc, StartElectionTimeout,
    StartHeartbeatTimeout, machine_effects,
)
from ra.core.log import Log
from ra.core.machine import apply_machine, machine_error
from ra.core.sessions import MAX_RESPONSES, Sessions, unwrap_snapshot, wrap_snapshot
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, Command, Commands, ConsistentQuery, ElectionTimeout,
    FlushCommands, HeartbeatReply, HeartbeatRpc, HeartbeatTimeout, InstallSnapshotResult,
    InstallSnapshotRpc, LeaderDown, LeaderProbe, MetaWritten, NodeDown, NodeUp, PreVoteResult,
    PreVoteRpc, RequestVoteResult, RequestVoteRpc, SnapshotMeta, Tick, TimeoutNow,
    TransferLeadership, TriggerElection, Written,
)

__all__ = ["ServerConfig", "ServerState", "Peer", "init", "step", "overview", "holds_flush"]

#: Heartbeat ticks a leadership transfer may take before the leader gives up on it.
_TRANSFER_TICKS = 10
#: Quiet mode: a peer that answered none of this many heartbeats in a row is *silent* (down,
#: cut off, or its process not back yet), and is heartbeated only every ``SILENT_EVERY``-th
#: period. A leader whose lagging peers are all silent wakes at that pace, not every period.
#: Two silent beats are never more than ``SILENT_EVERY + 1`` periods apart (see
#: ``_wake_timers``): within the simulator's ``quiet_lag`` bound of 5 periods.
SILENT_AFTER = 3
SILENT_EVERY = 4


@dataclass(slots=True)
class ServerConfig:
    """Static configuration of one server (ra's ``ra_server_config()``): its identity, the
    injected log, meta store and machine, and the tuning keys the core reads (the shell reads
    the others). Built by the shell from a config checked by :data:`ra.core.config.SERVER`."""

    id: Any
    uid: str
    cluster_name: str
    initial_members: tuple[Any, ...]
    machine: Any
    log: Any
    meta: Any
    machine_config: Any = None
    # the tuning keys the core reads; their defaults and checks: ra.core.config.SERVER
    max_append_entries_rpc_batch_size: int = _D["max_append_entries_rpc_batch_size"]
    max_pipeline_count: int = _D["max_pipeline_count"]
    low_priority_batch_size: int = _D["low_priority_batch_size"]
    snapshot_chunk_size: int = _D["snapshot_chunk_size"]
    quiet_when_idle: bool = _D["quiet_when_idle"]
    durable_replies: bool = _D["durable_replies"]


@dataclass(slots=True)
class Peer:
    """The leader's view of one follower's progress."""

    next_index: int
    match_index: int = 0
    #: the entries up to here were not sent to it by this leader since its next_index was
    #: last set back (its log there is unknown, not in flight): the pipeline window counts
    #: from max(match_index, sent_floor). Above every index until _send_entries lowers it to
    #: next_index - 1, its one rule. Without it a new leader whose log was longer than
    #: max_pipeline_count counted its whole log as in flight and sent nothing until a
    #: heartbeat (W4: a failover 100 ms longer)
    sent_floor: int = sys.maxsize
    query_index: int = 0
    snapshot: str = "none"         # "none" | "sending"
    snapshot_ticks: int = 0
    active: bool = False           # answered since the last quorum check
    commit_known: int = 0          # the commit index it said it knows (quiet mode)
    was_idle: bool = False         # idle with its node unsuspected at the last quorum check
    silent: int = 0                # heartbeats sent since it last answered (quiet mode)


class Delegation(NamedTuple):
    """The write a follower's last ``DurableReply`` rides on, and to whom it answers."""

    term: int
    leader: Any
    first: int          # the write's first index
    last: int           # its last index
    last_term: int      # the term of its last entry


@dataclass(slots=True)
class ServerState:
    cfg: ServerConfig
    id: Any
    log: Log
    meta: Any
    machine: Any
    role: str = "follower"
    current_term: int = 0
    voted_for: Any = None
    leader_id: Any = None
    cluster: tuple[Any, ...] = ()
    cluster_index_term: tuple[int, int] = (0, 0)
    commit_index: int = 0
    last_applied: int = 0
    machine_state: Any = None
    machine_version: int = 0
    sessions: Sessions = field(default_factory=Sessions)
    # follower
    verified_index: int = 0        # highest index known to match the current leader's log
    delegated: Delegation | None = None    # the last DurableReply's write
    heard_from_leader: bool = False
    brand_new: bool = False
    snapshot_accum: dict[int, bytes] = field(default_factory=dict)
    snapshot_accum_meta: SnapshotMeta | None = None
    snapshot_accum_last: int = 0
    # elections
    votes: set[Any] = field(default_factory=set)
    pre_vote_token: int = 0
    # leader
    peers: dict[Any, Peer] = field(default_factory=dict)
    noop_index: int = 0
    noop_committed: bool = False
    #: low-priority usr commands awaiting a flush: their log entries (``_usr_entry``)
    low_queue: deque[tuple[Any, ...]] = field(default_factory=deque)
    flush_scheduled: bool = False
    batch_end: int = 0             # the last index the last flush sent (holds_flush)
    query_index: int = 0
    queries: list[tuple[int, int, Any, Any]] = field(default_factory=list)
    eol_ticks: int = 0             # >0: the end-of-life entry is applied, leader winding down
    transfer_target: Any = None
    transfer_index: int = 0
    transfer_ticks: int = 0
    # messages dropped as malformed or unknown, by reason (never in overview: it is not Raft
    # state; the shell reports it)
    dropped: dict[str, int] = field(default_factory=dict)
    # quiet when idle: nodes the failure detector suspects; timers the core left unarmed
    down_nodes: set[str] = field(default_factory=set)
    heartbeat_off: bool = False    # leader: idle, no heartbeat timer armed
    beat_periods: int = 1          # leader: periods its armed heartbeat timer spans (quiet)
    beats: int = 0                 # leader: heartbeat periods since it was elected (quiet)
    election_off: bool = False     # follower: its leader unsuspected, no election timer armed
    quorum_off: bool = False       # leader: idle, no peer's node suspected, no quorum check
    probing: bool = False          # follower: a client woke it, the leader must answer
    deferred: bool = False         # follower: its election timer was put off for a candidate
    # durability of term/vote
    meta_seq: int = 0
    meta_synced: int = 0
    held: list[Any] = field(default_factory=list)


# --- construction and recovery --------------------------------------------------------------

def init(cfg: ServerConfig) -> tuple[str, ServerState, list[Any]]:
    """Build a server from its durable state (snapshot, log, meta) and return it as follower.

    The machine state comes from the newest of the snapshot and the checkpoints (a checkpoint
    above the snapshot spares replaying the log up to it; the log below it is still there).
    Committed entries after it, up to the stored last applied index, are re-applied (their
    effects are dropped: they already ran before the restart)."""
    log, meta = cfg.log, cfg.meta
    term, voted_for = meta.fetch()
    s = ServerState(cfg=cfg, id=cfg.id, log=log, meta=meta, machine=cfg.machine,
                    current_term=term, voted_for=voted_for)
    snap = log.recover_snapshot()
    if snap is not None:
        smeta, stored = snap
        s.machine_state, s.sessions = unwrap_snapshot(stored, smeta.index)
        s.cluster = tuple(smeta.cluster)
        s.cluster_index_term = (smeta.index, smeta.term)
        s.machine_version = smeta.machine_version
        s.machine = _machine_for(cfg.machine, smeta.machine_version)
        s.commit_index = s.last_applied = s.verified_index = smeta.index
    else:
        # the log decides the effective version: entries before an upgrade noop are applied
        # by the module of the version they were written under (0 at the start)
        s.machine = _machine_for(cfg.machine, 0)
        s.machine_state = s.machine.init(cfg.machine_config)
        s.cluster = tuple(cfg.initial_members)
    last_idx = log.last_index_term()[0]
    s.brand_new = term == 0 and last_idx == 0
    # everything up to the stored last applied index was committed and is the same entry in
    # our log (a log only loses a suffix in a crash), durable or not yet confirmed so: a
    # server restarted alone shows the state it had (ra recovers to last_applied too)
    replay_to = min(meta.last_applied(), last_idx)
    if replay_to > s.last_applied:
        s.commit_index = replay_to
        _apply_to(s, replay_to, [])
    # the configuration in force is the newest cluster entry in the log: the replay saw every
    # entry up to replay_to, so only the tail after it needs reading (in ranges, not one by one)
    i = max(s.last_applied, log.snapshot_index_term()[0]) + 1
    while i <= last_idx:
        chunk = log.take(i, 4096)
        if not chunk:
            break
        for e in chunk:
            if e[2][0] == "cluster":
                s.cluster = tuple(e[2][1])
                s.cluster_index_term = (e[0], e[1])
        i = chunk[-1][0] + 1
    effects: list[Any] = [StartElectionTimeout()]
    _state_enter(s, effects)
    return "follower", s, effects


def _machine_for(configured: Any, version: int) -> Any:
    """The machine object for an effective ``version`` (ra_machine:which_module/2)."""
    which = getattr(configured, "which_module", None)
    if which is None or _code_version(configured) == version:
        return configured
    m = which(version)
    return m() if isinstance(m, type) else m


def _code_version(machine: Any) -> int:
    v = getattr(machine, "version", None)
    return int(v()) if v is not None else 0


def _recompute_cluster(s: ServerState, upto: int) -> None:
    """Set the configuration in force from the newest cluster entry at or below ``upto``."""
    snap_idx, snap_term = s.log.snapshot_index_term()
    i = upto
    while i > snap_idx:
        e = s.log.fetch(i)
        if e is not None and e[2][0] == "cluster":
            s.cluster = tuple(e[2][1])
            s.cluster_index_term = (i, e[1])
            return
        i -= 1
    smeta = s.log.snapshot_meta()
    if smeta is not None:
        s.cluster = tuple(smeta.cluster)
        s.cluster_index_term = (snap_idx, snap_term)
    else:
        s.cluster = tuple(s.cfg.initial_members)
        s.cluster_index_term = (0, 0)


# --- the dispatcher ---------------------------------------------------------------------------

def step(role: str, msg: Any, s: ServerState) -> tuple[str, ServerState, list[Any]]:
    """Handle one message in ``role``; returns the new role, the state and the effects in order.

    While a term or vote change is not yet durable (no ``MetaWritten`` for it), outbound effects
    are held back in order and released with the confirming ``MetaWritten``."""
    assert role == s.role, f"role mismatch {role} != {s.role}"
    reason = validate.check(msg)
    if reason is not None:
        s.dropped[reason] = s.dropped.get(reason, 0) + 1
        return s.role, s, []
    effects: list[Any] = []
    if isinstance(msg, MetaWritten):
        if msg.seq > s.meta_synced:
            s.meta_synced = msg.seq
        if s.role == "candidate" and s.meta_synced >= s.meta_seq \
                and quorum.has_majority(s.votes & set(s.cluster), s.cluster):
            _become_leader(s, effects)
    else:
        _HANDLERS[type(msg)](msg, s, effects)
    if s.role != role:
        _state_enter(s, effects)
    if s.probing and (s.role != "follower" or _leader_suspect(s)):
        s.probing = False          # the normal election timer it armed runs as before
    if s.heartbeat_off or s.election_off or s.quorum_off or s.beat_periods > 1:
        _wake_timers(s, effects)
    if s.meta_synced < s.meta_seq:
        keep: list[Effect] = []
        for e in effects:
            (s.held if isinstance(e, OUTBOUND) else keep).append(e)
        effects = keep
    elif s.held:
        effects = s.held + effects
        s.held = []
    return s.role, s, effects


# --- term / role transitions --------------------------------------------------------------------

def _store_meta(s: ServerState) -> None:
    s.meta_seq = max(s.meta_seq, s.meta.store(s.current_term, s.voted_for))


def _update_term(s: ServerState, term: int, effects: list[Any]) -> None:
    """Adopt a higher term seen in any message: forget the vote, become follower."""
    if term <= s.current_term:
        return
    s.current_term = term
    s.voted_for = None
    _store_meta(s)
    if s.role != "follower":
        _become_follower(s, None, effects)
    else:
        s.leader_id = None
    s.verified_index = 0


def _become_follower(s: ServerState, leader: Any, effects: list[Any]) -> None:
    was_leader = s.role == "leader"
    s.role = "follower"
    s.leader_id = leader
    s.votes = set()
    s.snapshot_accum = {}
    s.snapshot_accum_meta = None
    if was_leader:
        _abandon_leader_work(s, effects)
    effects.append(StartElectionTimeout())


def _abandon_leader_work(s: ServerState, effects: list[Any]) -> None:
    """A deposed leader answers what it holds with a redirect (ra: clients retry elsewhere)."""
    for _, _, frm, _ in s.queries:
        effects.append(Reply(frm, ("redirect", s.leader_id)))
    s.queries = []
    while s.low_queue:
        _reject(s, s.low_queue.popleft()[2], effects)
    s.peers = {}
    s.transfer_target = None
    s.flush_scheduled = False


def _is_member(s: ServerState) -> bool:
    return s.id in s.cluster


def _others(s: ServerState) -> list[Any]:
    return [m for m in s.cluster if m != s.id]


def _log_up_to_date(s: ServerState, last_idx: int, last_term: int) -> bool:
    my_idx, my_term = s.log.last_index_term()
    return last_term > my_term or (last_term == my_term and last_idx >= my_idx)


def _start_pre_vote(s: ServerState, effects: list[Any], force: bool = False) -> None:
    s.role = "pre_vote"
    s.leader_id = None
    s.pre_vote_token += 1
    s.votes = {s.id}
    effects.append(StartElectionTimeout())
    if quorum.has_majority(s.votes & set(s.cluster), s.cluster):
        _start_candidate(s, effects)
        return
    last_idx, last_term = s.log.last_index_term()
    rpc = PreVoteRpc(s.current_term + 1, s.pre_vote_token, s.id, last_idx, last_term,
                     _code_version(s.cfg.machine), force)
    for p in _others(s):
        effects.append(SendRpc(p, rpc))


def _start_candidate(s: ServerState, effects: list[Any]) -> None:
    s.role = "candidate"
    s.leader_id = None
    s.current_term += 1
    s.voted_for = s.id
    _store_meta(s)
    s.votes = {s.id}
    s.verified_index = 0
    # a candidate waits a whole election timeout for its votes: a vote round includes two
    # durable writes, and cutting it short restarts the round forever on slow disks
    effects.append(StartElectionTimeout())
    # a one-member cluster wins on its own vote, once that vote is durable (see step)
    last_idx, last_term = s.log.last_index_term()
    rpc = RequestVoteRpc(s.current_term, s.id, last_idx, last_term)
    for p in _others(s):
        effects.append(SendRpc(p, rpc))


def _become_leader(s: ServerState, effects: list[Any]) -> None:
    s.role = "leader"
    s.leader_id = s.id
    s.votes = set()
    s.brand_new = False
    nxt = s.log.next_index()
    s.peers = {p: Peer(next_index=nxt) for p in _others(s)}
    s.queries = []
    s.low_queue = deque()
    s.flush_scheduled = False
    s.batch_end = 0
    s.transfer_target = None
    s.noop_index = nxt
    s.noop_committed = False
    s.beat_periods = 1
    s.beats = 0
    # the noop carries the machine version this leader's code runs: applying it upgrades
    # every member at the same index (ra's machine versioning)
    s.log.append((nxt, s.current_term, ("noop", max(s.machine_version,
                                                    _code_version(s.cfg.machine)))))
    effects.append(StartHeartbeatTimeout())
    effects.append(StartElectionTimeout(check_quorum=True))
    _replicate_all(s, effects)
    _evaluate_commit(s, effects)


# --- handlers: elections -------------------------------------------------------------------------

def _on_election_timeout(msg: ElectionTimeout, s: ServerState, effects: list[Any]) -> None:
    s.deferred = False
    if s.role == "leader":
        _check_quorum(s, effects)
        return
    if s.role == "follower" and s.cfg.quiet_when_idle and not _leader_suspect(s):
        # quiet: the detector or the connection will say when the leader is gone, and a
        # client's probe when its process hangs while its node and links stay up
        if s.probing:
            # a client woke us and the leader left our probe unanswered for an election
            # timeout (any message of its would have ended the probe): hung, campaign
            s.probing = False
            s.leader_id = None
        else:
            # no timer at all until the leader becomes suspect (_wake_timers) or a client
            # wakes us (_wake_detector)
            s.heard_from_leader = False
            s.election_off = True
            return
    if s.role == "follower" and s.heard_from_leader:
        s.heard_from_leader = False
        effects.append(StartElectionTimeout(since_leader=True, turn=_turn(s, s.leader_id)))
        return
    if s.brand_new or not _is_member(s):
        # a brand-new server waits for trigger_election; a non-member never campaigns
        if s.role != "follower":
            _become_follower(s, None, effects)
        else:
            effects.append(StartElectionTimeout())
        return
    _start_pre_vote(s, effects)


def _turn(s: ServerState, lost: Any) -> int:
    """Our rank among the members that may campaign once ``lost`` (the leader) is gone."""
    ranked = sorted(tuple(m) for m in s.cluster if m != lost)
    me = tuple(s.id)
    return ranked.index(me) if me in ranked else len(ranked)


def _check_quorum(s: ServerState, effects: list[Any]) -> None:
    """A leader that no majority answered during the last election timeout steps down (etcd's
    CheckQuorum; Raft dissertation §6.2): it may be cut off, and a new leader may already lead
    the others, while its clients would wait on it."""
    heard = {s.id}
    quiet = s.cfg.quiet_when_idle
    last = s.log.last_index_term()[0]
    for pid, p in s.peers.items():
        if quiet:
            # a peer with nothing outstanding need not answer: its node being up will do
            # (idle now, or at the previous check: it may not have answered the first append
            # since then yet)
            up = pid[1] not in s.down_nodes
            idle = up and _peer_idle(s, p, last)
            if p.active or idle or (up and p.was_idle):
                heard.add(pid)
            p.was_idle = idle
        elif p.active:
            heard.add(pid)
        p.active = False
    if quorum.has_majority(heard & set(s.cluster), s.cluster):
        # idle, and no peer's node suspected: the check cannot fail before one of those changes,
        # so none is armed; _wake_timers arms the next one when one does
        s.quorum_off = quiet and _quorum_idle(s)
        if not s.quorum_off:
            effects.append(StartElectionTimeout(check_quorum=True))
        return
    _become_follower(s, None, effects)


def _on_trigger_election(msg: TriggerElection, s: ServerState, effects: list[Any]) -> None:
    if msg.frm is not None:
        effects.append(Reply(msg.frm, ("ok", "ok", s.leader_id)))
    if s.role == "leader" or not _is_member(s):
        return
    s.brand_new = False
    # asked for: the other members grant it even while they count on a quiet leader
    _start_pre_vote(s, effects, force=True)


def _on_leader_down(msg: LeaderDown, s: ServerState, effects: list[Any]) -> None:
    if s.role == "follower" and msg.leader_id == s.leader_id and msg.leader_id is not None:
        s.leader_id = None
        s.heard_from_leader = False
        if _is_member(s) and not s.brand_new:
            effects.append(StartElectionTimeout(short=True, turn=_turn(s, msg.leader_id)))


def _on_node_down(msg: NodeDown, s: ServerState, effects: list[Any]) -> None:
    s.down_nodes.add(msg.node)
    lid = s.leader_id
    if s.role == "follower" and lid is not None and lid[1] == msg.node:
        _on_leader_down(LeaderDown(lid), s, effects)


def _on_node_up(msg: NodeUp, s: ServerState, effects: list[Any]) -> None:
    s.down_nodes.discard(msg.node)


def _answer_lost_member(s: ServerState, candidate: Any, effects: list[Any]) -> None:
    """A quiet leader asked for a vote by a member of its configuration: that member lost us (a
    restart, a lost connection, a suspicion) and, the leader being idle, no heartbeat would
    tell it of us. Answer at once with an append: a member whose term is not above ours
    follows us again (and its reply makes us resend what it lacks); one whose term is above
    ours refuses it, and its reply's term deposes us, as a heartbeat's would."""
    if s.role == "leader" and s.cfg.quiet_when_idle and candidate in s.peers:
        s.peers[candidate].silent = 0       # it is there: back to the normal pace
        _send_entries(s, candidate, effects, force=True)


def _on_pre_vote_rpc(msg: PreVoteRpc, s: ServerState, effects: list[Any]) -> None:
    if not msg.force:
        # (an operator's trigger_election asks for an election: not cut short by us)
        _answer_lost_member(s, msg.candidate_id, effects)
    if s.cfg.quiet_when_idle and s.role == "follower" and msg.term > s.current_term \
            and msg.candidate_id == s.leader_id:
        # our leader campaigns for a later term: it stepped down (check-quorum), and being
        # quiet it will not stop heartbeats to tell us so
        s.leader_id = None
        s.heard_from_leader = False
    # a pre-vote never changes the receiver's term
    grant = (msg.term > s.current_term and s.role != "leader"
             and msg.machine_version >= s.machine_version
             and _log_up_to_date(s, msg.last_log_index, msg.last_log_term)
             and (msg.force or not _trusts_quiet_leader(s)))
    effects.append(SendRpc(msg.candidate_id,
                           PreVoteResult(max(msg.term, s.current_term) if grant else s.current_term,
                                         msg.token, grant, s.id)))
    if grant and s.role == "follower" and s.leader_id is None \
            and not (s.deferred and s.cfg.quiet_when_idle):
        # its request for votes should follow: campaigning ourselves now would split the vote
        # (both members of a 3-member cluster whose leader went silent time out within a few
        # ms of each other often enough to cost a whole extra election timeout). Quiet: once
        # per timeout, or a candidate that cannot win (cut off from the leader, which we lost
        # too) would keep us from ever asking the idle leader, which answers our pre-vote
        s.deferred = True
        effects.append(StartElectionTimeout())
    if not grant and s.role == "follower" and s.leader_id is None and not s.brand_new \
            and _is_member(s):
        # someone campaigns, so there is no leader, but it cannot win with our vote (its log
        # or term is behind: after a whole cluster restarts, the member asked to campaign may
        # be the one stopped first, while the others elected a leader of a later term):
        # campaign soon ourselves rather than after a whole election timeout, and without
        # waiting for our turn after it (W4: the follower ranked first is often the one
        # whose log is a batch behind)
        effects.append(StartElectionTimeout(short=True, at_once=True))


def _on_pre_vote_result(msg: PreVoteResult, s: ServerState, effects: list[Any]) -> None:
    if msg.term > s.current_term + 1 or (not msg.vote_granted and msg.term > s.current_term):
        _update_term(s, msg.term, effects)
        return
    if s.role != "pre_vote" or msg.token != s.pre_vote_token or not msg.vote_granted:
        return
    if msg.from_id in s.cluster:
        s.votes.add(msg.from_id)
    if quorum.has_majority(s.votes & set(s.cluster), s.cluster):
        _start_candidate(s, effects)


def _on_request_vote_rpc(msg: RequestVoteRpc, s: ServerState, effects: list[Any]) -> None:
    if msg.term > s.current_term:
        _update_term(s, msg.term, effects)
    else:
        _answer_lost_member(s, msg.candidate_id, effects)
    granted = False
    if msg.term == s.current_term and s.voted_for in (None, msg.candidate_id) \
            and s.role != "leader":
        if _log_up_to_date(s, msg.last_log_index, msg.last_log_term):
            granted = True
            # the cluster was started (a member campaigns): should the candidate be cut off
            # before its first append, we must be able to campaign ourselves
            s.brand_new = False
            if s.voted_for != msg.candidate_id:
                s.voted_for = msg.candidate_id
                _store_meta(s)
            effects.append(StartElectionTimeout())
    effects.append(SendRpc(msg.candidate_id, RequestVoteResult(s.current_term, granted, s.id)))


def _on_request_vote_result(msg: RequestVoteResult, s: ServerState, effects: list[Any]) -> None:
    if msg.term > s.current_term:
        _update_term(s, msg.term, effects)
        return
    if s.role != "candidate" or msg.term != s.current_term or not msg.vote_granted:
        return
    if msg.from_id in s.cluster:
        s.votes.add(msg.from_id)
    if s.meta_synced >= s.meta_seq and quorum.has_majority(s.votes & set(s.cluster), s.cluster):
        _become_leader(s, effects)


def _on_timeout_now(msg: TimeoutNow, s: ServerState, effects: list[Any]) -> None:
    if msg.term < s.current_term or s.role == "leader" or not _is_member(s):
        return
    _update_term(s, msg.term, effects)
    _start_candidate(s, effects)


# --- handlers: replication (follower side) --------------------------------------------------------

def _accept_leader(s: ServerState, term: int, leader: Any, effects: list[Any]) -> None:
    """Common to every message from a current leader: adopt its term and leadership."""
    _update_term(s, term, effects)
    if s.role not in ("follower", "receive_snapshot"):
        _become_follower(s, None, effects)
    probing = s.probing
    s.probing = False
    if s.leader_id != leader:
        s.leader_id = leader
        effects.append(RecordLeaderMsg(leader))
        # from now on the election timer counts from this leader's messages
        effects.append(StartElectionTimeout(since_leader=True, turn=_turn(s, leader)))
    elif probing and s.role == "follower":
        # it answered our probe (or said anything): it runs, back to quiet waiting (the
        # probe's timer fires once more and arms nothing)
        s.election_off = True
    s.heard_from_leader = True
    s.brand_new = False


def _on_append_entries(msg: AppendEntriesRpc, s: ServerState, effects: list[Any]) -> None:
    log = s.log
    if msg.term < s.current_term:
        last_idx, last_term = log.last_index_term()
        effects.append(SendRpc(msg.leader_id, AppendEntriesReply(
            s.current_term, False, last_idx + 1, last_idx, last_term, s.id)))
        return
    _accept_leader(s, msg.term, msg.leader_id, effects)
    if s.role == "receive_snapshot":
        s.role = "follower"
        s.snapshot_accum = {}
        s.snapshot_accum_meta = None
    snap_idx = log.snapshot_index_term()[0]
    prev = msg.prev_log_index
    last_idx = log.last_index_term()[0]
    if prev > snap_idx:
        local = log.fetch_term(prev)
        if local is None:
            _reply_ae(s, msg.leader_id, False, last_idx + 1, effects)
            return
        if local != msg.prev_log_term:
            _reply_ae(s, msg.leader_id, False, _conflict_hint(s, prev, local), effects)
            return
    # the prefix up to prev matches; entries at or below the snapshot are committed already
    entries = msg.entries
    wrote = False
    if entries:
        k = 0
        n = len(entries)
        while k < n:
            idx, term = entries[k][0], entries[k][1]
            if idx > snap_idx and (idx > last_idx or log.fetch_term(idx) != term):
                break
            k += 1
        if k < n:
            new = entries[k:] if k else entries
            log.write(new)
            wrote = True
            if new[0][0] <= s.cluster_index_term[0]:
                _recompute_cluster(s, new[0][0] - 1)
            for e in new:
                if e[2][0] == "cluster":
                    s.cluster = tuple(e[2][1])
                    s.cluster_index_term = (e[0], e[1])
    end = prev + len(entries)
    if end > s.verified_index:
        s.verified_index = end
    if msg.leader_commit > s.commit_index:
        s.commit_index = max(s.commit_index, min(msg.leader_commit, s.verified_index))
    if not wrote:
        _reply_ae_success(s, effects)
    elif s.cfg.durable_replies and s.meta_synced >= s.meta_seq and end == s.verified_index \
            and _alone_in_flight(s, new[0][0]):
        # the reply that this write's Written would bring, sent by the write itself once
        # durable; not while our term is not (a reply in it must wait for that: step)
        lt = entries[-1][1]
        effects.append(DurableReply(msg.leader_id, AppendEntriesReply(
            s.current_term, True, end + 1, end, lt, s.id, s.commit_index), len(new)))
        s.delegated = Delegation(s.current_term, msg.leader_id, new[0][0], end, lt)
    _follower_apply(s, effects)


def _alone_in_flight(s: ServerState, first: int) -> bool:
    """Whether a write starting at ``first`` has nothing unconfirmed before it but, at most,
    the previous delegated write of this term (whose ``Written`` its WAL may hold back until
    its next batch: ``wal.wal``). One client at a time (W1) delegates every reply; a follower
    with other writes in flight (pipelined appends: W3) answers on each ``Written`` itself, one
    answer for all the writes that it confirms, instead of one sent by the WAL per batch
    (delegating every write measured W2 -10 % in two pairs, BENCHMARKS.md session 24)."""
    lw = s.log.last_written()[0]
    if lw >= first - 1:
        return True
    d = s.delegated
    return d is not None and d.term == s.current_term and d.last == first - 1 \
        and d.first == lw + 1


def _conflict_hint(s: ServerState, prev: int, local_term: int) -> int:
    """Fast back-off: the first index of the conflicting term, never below commit + 1."""
    floor = max(s.commit_index, s.log.snapshot_index_term()[0]) + 1
    i = prev
    while i - 1 >= floor and s.log.fetch_term(i - 1) == local_term:
        i -= 1
    return max(i, floor)


def _reply_ae(s: ServerState, to: Any, success: bool, next_index: int, effects: list[Any]) -> None:
    w_idx = min(s.log.last_written()[0], s.verified_index)
    effects.append(SendRpc(to, AppendEntriesReply(
        s.current_term, success, next_index, w_idx, s.log.fetch_term(w_idx) or 0, s.id,
        s.commit_index)))


def _reply_ae_success(s: ServerState, effects: list[Any]) -> None:
    if s.leader_id is not None and s.leader_id != s.id:
        _reply_ae(s, s.leader_id, True, s.verified_index + 1, effects)


def _follower_apply(s: ServerState, effects: list[Any]) -> None:
    upto = min(s.commit_index, s.log.last_written()[0])
    if upto > s.last_applied:
        _apply_to(s, upto, effects)


def _on_written(msg: Written, s: ServerState, effects: list[Any]) -> None:
    if not s.log.handle_written(msg):
        return
    if s.role == "leader":
        _evaluate_commit(s, effects)
    elif s.role in ("follower", "receive_snapshot"):
        d = s.delegated
        if not (msg.replied and d is not None and d.term == s.current_term
                and d.leader == s.leader_id
                and ((d.last, d.last_term) == (msg.to_idx, msg.term)
                     or d.first == msg.to_idx + 1)):
            # the WAL answered for this write (replied), to this leader in this term: the
            # write delegated last (d), or the one just before it, whose Written the WAL
            # held until the next write's batch (a write delegates behind an unconfirmed
            # one only if that one was delegated in this term: _alone_in_flight)
            _reply_ae_success(s, effects)
        _follower_apply(s, effects)


def _on_heartbeat_rpc(msg: HeartbeatRpc, s: ServerState, effects: list[Any]) -> None:
    if msg.term < s.current_term:
        effects.append(SendRpc(msg.leader_id, HeartbeatReply(msg.query_index, s.current_term,
                                                             s.id)))
        return
    _accept_leader(s, msg.term, msg.leader_id, effects)
    effects.append(SendRpc(msg.leader_id, HeartbeatReply(msg.query_index, s.current_term, s.id)))


def _on_install_snapshot(msg: InstallSnapshotRpc, s: ServerState, effects: list[Any]) -> None:
    if msg.term < s.current_term:
        effects.append(SendRpc(msg.leader_id, InstallSnapshotResult(
            s.current_term, 0, 0, s.id)))
        return
    _accept_leader(s, msg.term, msg.leader_id, effects)
    meta = msg.meta
    written = s.log.last_written()[0]
    if meta.index <= s.log.snapshot_index_term()[0] or (
            written >= meta.index and s.log.fetch_term(meta.index) == meta.term):
        # We hold everything it covers *durably* (our own snapshot, or the same entry at its
        # index, written: Raft §7): keep our log, which may hold acknowledged entries past it,
        # and say how far we match. Claiming a non-durable entry here would let a crash make
        # our log shorter than what the leader counts for us.
        s.verified_index = max(s.verified_index, meta.index)
        if s.role == "receive_snapshot":
            s.role = "follower"
            s.snapshot_accum, s.snapshot_accum_meta = {}, None
        w_idx = max(meta.index, min(s.log.last_written()[0], s.verified_index))
        w_term = meta.term if w_idx == meta.index else (s.log.fetch_term(w_idx) or 0)
        effects.append(SendRpc(msg.leader_id, InstallSnapshotResult(
            s.current_term, w_idx, w_term, s.id)))
        return
    if meta.index <= s.commit_index or s.log.fetch_term(meta.index) == meta.term:
        # Everything it covers is committed here, or our log holds its last entry (and so,
        # by log matching, all it covers), but not all of it durable yet: installing would
        # move the commit index back, or drop entries past it that a DurableReply may have
        # acknowledged already (their write is synced before this process hears of it).
        # Answer with what is durable and matching; the pending writes complete and the
        # leader moves on. Once per snapshot (on its last chunk), not once per chunk: each
        # answer may make the leader send it all again (CORE-BUGS #9).
        if msg.chunk_state[1] != "last":
            return
        w_idx = min(written, s.verified_index)
        effects.append(SendRpc(msg.leader_id, InstallSnapshotResult(
            s.current_term, w_idx, s.log.fetch_term(w_idx) or 0, s.id)))
        return
    if s.snapshot_accum_meta != meta:
        s.snapshot_accum_meta = meta
        s.snapshot_accum = {}
        s.snapshot_accum_last = 0
    s.role = "receive_snapshot"
    num, flag = msg.chunk_state
    s.snapshot_accum[num] = msg.data
    if flag == "last":
        s.snapshot_accum_last = num
    last = s.snapshot_accum_last
    if not last or any(i not in s.snapshot_accum for i in range(1, last + 1)):
        return
    data = b"".join(s.snapshot_accum[i] for i in range(1, last + 1))
    s.snapshot_accum = {}
    s.snapshot_accum_meta = None
    s.machine_state, s.sessions = unwrap_snapshot(s.log.install_snapshot(meta, data), meta.index)
    s.machine_version = meta.machine_version
    s.cluster = tuple(meta.cluster)
    s.cluster_index_term = (meta.index, meta.term)
    s.machine = _machine_for(s.cfg.machine, meta.machine_version)
    s.commit_index = s.last_applied = s.verified_index = meta.index
    s.meta.store_last_applied(meta.index)
    s.role = "follower"
    effects.append(SendRpc(msg.leader_id, InstallSnapshotResult(
        s.current_term, meta.index, meta.term, s.id)))
    fn = getattr(s.machine, "snapshot_installed", None)
    if fn is not None:
        meffects = fn({"index": meta.index, "term": meta.term,
                       "machine_version": meta.machine_version}, s.machine_state)
        _callback_effects(s, "snapshot_installed", meffects, s.last_applied, effects,
                          any_role=True)


# --- handlers: replication (leader side) ----------------------------------------------------------

def _replicate_all(s: ServerState, effects: list[Any]) -> None:
    for pid in s.peers:
        _send_entries(s, pid, effects, force=False)


def _send_entries(s: ServerState, pid: Any, effects: list[Any], force: bool,
                  upto: int | None = None) -> None:
    """Send the next batch to ``pid`` within its pipeline window (or an empty heartbeat append
    when ``force``), or start a snapshot if what it needs has been compacted away. With
    ``upto``, no entry after that index is sent."""
    p = s.peers[pid]
    if p.snapshot == "sending":
        return
    log = s.log
    cfg = s.cfg
    last = log.last_index_term()[0]
    if upto is not None and upto < last:
        last = upto
    if p.sent_floor >= p.next_index:
        # new, or rewound (a refused append, a snapshot's answer): what it lacks from there
        # is sent from now on, and only that counts as in flight
        p.sent_floor = p.next_index - 1
    while True:
        in_flight = p.next_index - 1 - max(p.match_index, p.sent_floor)
        room = min(cfg.max_append_entries_rpc_batch_size, cfg.max_pipeline_count - in_flight,
                   last - p.next_index + 1)
        if room <= 0 and not force:
            return
        prev = p.next_index - 1
        prev_term = log.fetch_term(prev)
        if prev_term is None:
            _send_snapshot(s, pid, effects)
            return
        entries = log.take(p.next_index, room) if room > 0 else []
        if room > 0 and not entries and p.next_index <= last:
            _send_snapshot(s, pid, effects)
            return
        effects.append(SendRpc(pid, AppendEntriesRpc(
            s.current_term, s.id, s.commit_index, prev, prev_term, entries)))
        p.next_index += len(entries)
        force = False
        if not entries:
            return


def _send_snapshot(s: ServerState, pid: Any, effects: list[Any]) -> None:
    p = s.peers[pid]
    meta, chunks = s.log.snapshot_chunks(s.cfg.snapshot_chunk_size)
    p.snapshot = "sending"
    p.snapshot_ticks = 0
    n = len(chunks)
    for i, chunk in enumerate(chunks, start=1):
        effects.append(SendRpc(pid, InstallSnapshotRpc(
            s.current_term, s.id, meta, (i, "last" if i == n else "next"), chunk)))


def _peer_of_reply(s: ServerState, term: int, from_id: Any, effects: list[Any]) -> Peer | None:
    """Common to every reply a leader gets: a higher term deposes it; a reply of an older term
    or from a non-peer is stale. Returns the peer to update, or None."""
    if term > s.current_term:
        _update_term(s, term, effects)
        return None
    if s.role != "leader" or term < s.current_term:
        return None
    p = s.peers.get(from_id)
    if p is not None:
        p.active = True
        p.silent = 0
    return p


def _on_append_entries_reply(msg: AppendEntriesReply, s: ServerState,
                             effects: list[Any]) -> None:
    p = _peer_of_reply(s, msg.term, msg.from_id, effects)
    if p is None:
        return
    if msg.commit_index > p.commit_known:
        p.commit_known = msg.commit_index
    if msg.success:
        if msg.last_index > p.match_index:
            p.match_index = msg.last_index
        if msg.next_index > p.next_index:
            p.next_index = min(msg.next_index, s.log.next_index())
        if p.next_index <= p.match_index:
            p.next_index = p.match_index + 1
        _evaluate_commit(s, effects)
        if s.role != "leader":
            return
        _maybe_timeout_now(s, effects)
    else:
        p.next_index = max(p.match_index + 1, min(msg.next_index, s.log.next_index()))
    if p.snapshot == "none":
        # the entries appended since the last flush leave with the flush that is due (one
        # append per follower for the whole batch, held by group commit): sent from here as
        # well, they went to each follower as it answered, in more and smaller appends (W2:
        # 3.5 appends per WAL write instead of 2). What the last flush released is sent on.
        _send_entries(s, msg.from_id, effects, force=False,
                      upto=s.batch_end if s.flush_scheduled else None)


def _on_install_snapshot_result(msg: InstallSnapshotResult, s: ServerState,
                                effects: list[Any]) -> None:
    p = _peer_of_reply(s, msg.term, msg.from_id, effects)
    if p is None:
        return
    if p.snapshot != "sending":
        # a late or duplicate answer to a snapshot we already acted on: keep what it says
        # it holds, but do not start another snapshot for it (CORE-BUGS #9)
        if msg.last_index > p.match_index:
            p.match_index = msg.last_index
            p.next_index = max(p.next_index, p.match_index + 1)
            _evaluate_commit(s, effects)
        return
    p.snapshot = "none"
    if msg.last_index > p.match_index:
        p.match_index = msg.last_index
    p.next_index = max(p.next_index, p.match_index + 1)
    _evaluate_commit(s, effects)
    if s.role == "leader":
        _send_entries(s, msg.from_id, effects, force=False)


def _on_heartbeat_timeout(msg: HeartbeatTimeout, s: ServerState, effects: list[Any]) -> None:
    if s.role != "leader":
        return
    if s.eol_ticks:
        s.eol_ticks -= 1
        if s.eol_ticks == 0:
            effects.append(DeleteAndTerminate())
            return
    if s.cfg.quiet_when_idle and _leader_idle(s):
        # quiet: no heartbeat at all (the detector and the connections tell of this node's
        # and this process's end; a member that lost us asks with a pre-vote, which we answer
        # with an append); the step that ends idleness re-arms the normal one
        s.heartbeat_off = True
        return
    timer_at = len(effects)
    effects.append(StartHeartbeatTimeout())
    # quiet: when only some peers' progress is outstanding, only they are sent a heartbeat (an
    # idle peer holds the whole log and knows the commit index: waking it to answer costs two
    # wake-ups a period for nothing; a leader whose peer's node restarts heartbeats that alone)
    quiet = s.cfg.quiet_when_idle
    last = s.log.last_index_term()[0]
    busy_only = quiet and not _leader_busy(s, last)
    s.beats += s.beat_periods
    slow_ok = busy_only
    for pid, p in s.peers.items():
        if busy_only and _peer_idle(s, p, last):
            continue
        if quiet and p.silent >= SILENT_AFTER:
            # silent (down, cut off, not restarted yet): every SILENT_EVERY-th period only.
            # It is not forgotten: its own pre-vote or probe, once it is back, is answered at
            # once with an append (_answer_lost_member), and any answer ends its silence
            if s.beats % SILENT_EVERY:
                continue
        else:
            slow_ok = False
        if p.snapshot == "sending":
            p.snapshot_ticks += 1
            if p.snapshot_ticks >= 3:      # chunks or the result were lost: start over
                p.snapshot = "none"
            else:
                continue
        # no rewind when a follower makes no progress: one missing entries refuses this
        # heartbeat with a hint, and rewinding to match_index would resend its whole log
        # after a restart (match_index starts at 0)
        _send_entries(s, pid, effects, force=True)
        if quiet:
            p.silent += 1
    # no work of its own and every lagging peer silent: sleep until the next silent beat
    # (_wake_timers re-arms the normal pace as soon as that changes)
    s.beat_periods = SILENT_EVERY - s.beats % SILENT_EVERY if slow_ok else 1
    if s.beat_periods > 1:
        effects[timer_at] = StartHeartbeatTimeout(s.beat_periods)
    if s.queries:
        _send_query_heartbeats(s, effects)
    if s.transfer_target is not None:
        s.transfer_ticks += 1
        if s.transfer_ticks > _TRANSFER_TICKS:
            s.transfer_target = None
        else:
            _maybe_timeout_now(s, effects)


def _evaluate_commit(s: ServerState, effects: list[Any]) -> None:
    """Advance the commit index to what a majority holds durably, current-term entries only."""
    voters = s.cluster
    idxs = []
    for m in voters:
        if m == s.id:
            idxs.append(s.log.last_written()[0])
        else:
            p = s.peers.get(m)
            idxs.append(p.match_index if p is not None else 0)
    new = quorum.majority_index(idxs)
    if new > s.commit_index:
        if s.log.fetch_term(new) == s.current_term:
            s.commit_index = new
            if new >= s.noop_index:
                s.noop_committed = True
            _apply_to(s, new, effects)
            if s.role == "leader":
                _answer_queries(s, effects)
                if not _is_member(s) and s.commit_index >= s.cluster_index_term[0]:
                    # our own removal is committed: hand over by stepping down
                    _become_follower(s, None, effects)


# --- quiet when idle (module docstring) -----------------------------------------------------------

def _peer_idle(s: ServerState, p: Peer, last: int) -> bool:
    """Nothing outstanding for this peer: it holds the whole log and knows the commit index."""
    return p.match_index >= last and p.commit_known >= s.commit_index and p.snapshot == "none"


def _leader_busy(s: ServerState, last: int) -> bool:
    """The leader has work of its own (a query, a transfer, its end of life, queued or
    uncommitted commands) that every peer's heartbeat serves, whatever each peer holds."""
    return bool(s.queries or s.transfer_target is not None or s.eol_ticks or s.low_queue
                or s.flush_scheduled or s.commit_index < last)


def _leader_idle(s: ServerState) -> bool:
    """A leader with nothing to send or resend: its heartbeats may stop."""
    last = s.log.last_index_term()[0]
    if _leader_busy(s, last):
        return False
    for p in s.peers.values():
        if not _peer_idle(s, p, last):
            return False
    return True


def _beat_due(s: ServerState) -> bool:
    """A quiet leader must heartbeat every period: it has work of its own, or a lagging peer
    that is not silent."""
    last = s.log.last_index_term()[0]
    if _leader_busy(s, last):
        return True
    return any(p.silent < SILENT_AFTER and not _peer_idle(s, p, last) for p in s.peers.values())


def _quorum_idle(s: ServerState) -> bool:
    """An idle leader none of whose peers' nodes the detector suspects: its quorum check may run
    at the quiet pace."""
    return _leader_idle(s) and not any(pid[1] in s.down_nodes for pid in s.peers)


def _leader_suspect(s: ServerState) -> bool:
    """A follower cannot count on its leader: none, its node suspected, or no member."""
    lid = s.leader_id
    return lid is None or lid[1] in s.down_nodes or lid not in s.cluster


def _trusts_quiet_leader(s: ServerState) -> bool:
    """A quiet follower that counts on its leader and has not itself found it gone (its own
    quiet timeout or unanswered probe, the detector, the lost connection): it refuses
    pre-votes, so that a follower whose probe or its answer was lost (or whose own check ran
    early) cannot depose a live leader. A client's probe reaches every follower, so that each
    runs its own check at about the same time: the last of them to find the leader silent
    (within 2T of the probe) is granted by the others, and a hung leader is still replaced."""
    return s.cfg.quiet_when_idle and s.role == "follower" and not _leader_suspect(s)


def _wake_detector(s: ServerState, effects: list[Any]) -> None:
    """A client asked a quiet follower for something its leader must do: the leader may be the
    reason (hung, so its clients time out and try the others). Check it now rather than at the
    quiet timeout: probe it and its other followers (so that they check too and will grant our
    pre-vote), and wait a normal election timeout for any message of it."""
    if not (s.cfg.quiet_when_idle and s.role == "follower" and not s.probing
            and not _leader_suspect(s)):
        return
    probe = LeaderProbe(s.current_term, s.leader_id, s.id)
    for p in _others(s):
        if p != s.leader_id:
            effects.append(SendRpc(p, probe))
    _start_probe(s, effects)


def _start_probe(s: ServerState, effects: list[Any]) -> None:
    s.probing = True
    s.heard_from_leader = False
    s.election_off = False
    effects.append(SendRpc(s.leader_id, LeaderProbe(s.current_term, s.leader_id, s.id)))
    effects.append(StartElectionTimeout())


def _on_leader_probe(msg: LeaderProbe, s: ServerState, effects: list[Any]) -> None:
    if s.role == "leader":
        # answer at once, with an append as a heartbeat would (a stale leader's answer is
        # refused by the follower's later term)
        if msg.from_id in s.peers and msg.term <= s.current_term:
            s.peers[msg.from_id].silent = 0
            _send_entries(s, msg.from_id, effects, force=True)
        return
    if msg.term == s.current_term and msg.leader_id == s.leader_id and not s.probing \
            and s.role == "follower" and s.cfg.quiet_when_idle and not _leader_suspect(s):
        _start_probe(s, effects)


def _wake_timers(s: ServerState, effects: list[Any]) -> None:
    """Re-arm a timer the core left unarmed (the idle leader's heartbeat and quorum check, the
    quiet follower's election timer) once the reason for leaving it so has gone: the leader is
    no longer idle or a peer's node became suspect (or it no longer leads), the follower's
    leader became suspect (or it no longer follows). A timer this step armed anyway counts."""
    if s.heartbeat_off:
        if any(type(e) is StartHeartbeatTimeout for e in effects):
            s.heartbeat_off = False
        elif s.role != "leader" or not _leader_idle(s):
            s.heartbeat_off = False
            if s.role == "leader":
                s.beat_periods = 1
                effects.append(StartHeartbeatTimeout())
    elif s.beat_periods > 1 and not any(type(e) is StartHeartbeatTimeout for e in effects):
        if s.role != "leader":
            s.beat_periods = 1
        elif _beat_due(s):
            # work of its own, or a lagging peer that answers: the normal pace again. The
            # periods slept so far are unknown here: the next beat is a silent peers' one, so
            # that theirs stay at most SILENT_EVERY + 1 periods apart
            s.beat_periods = 1
            s.beats = (s.beats // SILENT_EVERY + 1) * SILENT_EVERY - 1
            effects.append(StartHeartbeatTimeout())
    if s.quorum_off:
        if any(type(e) is StartElectionTimeout for e in effects):
            s.quorum_off = False
        elif s.role != "leader" or not _quorum_idle(s):
            s.quorum_off = False
            if s.role == "leader":
                effects.append(StartElectionTimeout(check_quorum=True))
    if s.election_off:
        if any(type(e) is StartElectionTimeout for e in effects):
            s.election_off = False
        elif s.role != "follower" or _leader_suspect(s):
            s.election_off = False
            effects.append(StartElectionTimeout())


# --- client commands ------------------------------------------------------------------------------

def _reject(s: ServerState, mode: Any, effects: list[Any]) -> None:
    """A command this server cannot take (it does not lead): redirect its caller, or notify
    its pipeline of the rejection."""
    if mode is None:
        return
    if mode[0] == "notify":
        _, corr, pid = mode
        effects.append(Cast(pid, ("ra_event", s.leader_id,
                                  ("rejected", ("not_leader", s.leader_id, corr)))))
    else:
        effects.append(Reply(mode[1], ("redirect", s.leader_id)))


def _on_command(msg: Command, s: ServerState, effects: list[Any]) -> None:
    if s.role != "leader":
        _reject(s, msg.reply_mode, effects)
        _wake_detector(s, effects)
        return
    if msg.kind == "delete_cluster":
        idx = s.log.next_index()
        s.log.append((idx, s.current_term, ("eol", msg.reply_mode)))
        _schedule_flush(s, effects)
        return
    if msg.kind == "usr":
        if msg.session is not None:
            found, reply = s.sessions.lookup(msg.session[0], msg.session[1])
            if found:
                # a retry of a command already applied: answer it without a second entry
                _answer_usr(s, msg.reply_mode, reply, effects, None)
                return
        if msg.session is None:
            entry: tuple[Any, ...] = ("usr", msg.payload, msg.reply_mode, msg.ts)
        else:
            # flat, not a nested tuple: every tuple costs the codec a Python call each way
            sid, seq, first_out = msg.session
            entry = ("usr", msg.payload, msg.reply_mode, msg.ts, sid, seq, first_out)
        if msg.priority == "low":
            s.low_queue.append(entry)
        else:
            s.log.append((s.log.next_index(), s.current_term, entry))
        _schedule_flush(s, effects)
        return
    if msg.kind in ("open_session", "close_session"):
        idx = s.log.next_index()
        s.log.append((idx, s.current_term, ("session", msg.kind, msg.payload, msg.reply_mode,
                                            msg.ts)))
        _schedule_flush(s, effects)
        return
    _membership_command(s, msg, effects)


def _on_commands(msg: Commands, s: ServerState, effects: list[Any]) -> None:
    """As ``_on_command`` of each ``usr`` command in turn (validate checked every one)."""
    cs = msg.cmds
    if s.role != "leader":
        for i in range(1, len(cs), 5):
            _reject(s, cs[i], effects)
        _wake_detector(s, effects)
        return
    ts = msg.ts
    lookup = s.sessions.lookup
    if msg.priority == "low":
        add = s.low_queue.append
    else:
        log, term = s.log, s.current_term

        def add(entry: tuple[Any, ...]) -> None:
            log.append((log.next_index(), term, entry))
    taken = False
    for i in range(0, len(cs), 5):
        payload, mode, sid = cs[i], cs[i + 1], cs[i + 2]
        if sid is None:
            entry: tuple[Any, ...] = ("usr", payload, mode, ts)
        else:
            found, reply = lookup(sid, cs[i + 3])
            if found:
                # a retry of a command already applied: answer it without a second entry
                _answer_usr(s, mode, reply, effects, None)
                continue
            # flat, not a nested tuple: every tuple costs the codec a Python call each way
            entry = ("usr", payload, mode, ts, sid, cs[i + 3], cs[i + 4])
        if not taken:           # where the first command taken would schedule it
            taken = True
            _schedule_flush(s, effects)
        add(entry)


def _schedule_flush(s: ServerState, effects: list[Any]) -> None:
    """Replication is sent once the queued events are handled, so a burst goes out batched."""
    if not s.flush_scheduled:
        s.flush_scheduled = True
        effects.append(NextEvent(FlushCommands()))


def _on_flush(msg: FlushCommands, s: ServerState, effects: list[Any]) -> None:
    s.flush_scheduled = False
    if s.role != "leader":
        return
    n = s.cfg.low_priority_batch_size
    queue, log, term = s.low_queue, s.log, s.current_term
    while queue and n > 0:
        log.append((log.next_index(), term, queue.popleft()))
        n -= 1
    _replicate_all(s, effects)
    s.batch_end = s.log.last_index_term()[0]
    if s.low_queue:
        _schedule_flush(s, effects)


def holds_flush(s: ServerState) -> bool:
    """Group commit, the policy (the shell, or the simulator, only keeps the time): whether a
    ``FlushCommands`` due now should wait. True while this server leads and the batch its last
    flush sent is not committed yet: the commands that arrive meanwhile then leave together, in
    one append per follower (and, in the shell, one WAL write), when that batch commits or the
    hold's time cap (``group_commit_ms``) runs out, whichever comes first. A leader with
    nothing uncommitted (one client at a time) never waits. Holding is always safe: it delays
    replication, never changes what is replicated; liveness rests on the cap."""
    return s.role == "leader" and s.commit_index < s.batch_end


def _membership_command(s: ServerState, msg: Command, effects: list[Any]) -> None:
    frm = msg.reply_mode[1] if msg.reply_mode else None

    def answer(value: Any) -> None:
        if frm is not None:
            effects.append(Reply(frm, value))

    if not (s.noop_committed and s.commit_index >= s.cluster_index_term[0]):
        answer(("error", "cluster_change_not_permitted"))
        return
    target = msg.payload
    if msg.kind == "join":
        if target in s.cluster:
            answer(("error", "already_member"))
            return
        new = s.cluster + (target,)
    elif msg.kind == "leave":
        if target not in s.cluster:
            answer(("error", "not_member"))
            return
        new = tuple(m for m in s.cluster if m != target)
        if not new:
            answer(("error", "last_member"))
            return
    else:
        answer(("error", ("unknown_command", msg.kind)))
        return
    idx = s.log.next_index()
    s.log.append((idx, s.current_term, ("cluster", new, None)))
    s.cluster = new
    s.cluster_index_term = (idx, s.current_term)
    if msg.kind == "join" and target != s.id:
        s.peers[target] = Peer(next_index=idx)
    answer(("ok", "ok", s.id))
    _schedule_flush(s, effects)


def _prune_peers(s: ServerState) -> None:
    """Stop replicating to removed members once their removal is committed."""
    if s.commit_index >= s.cluster_index_term[0]:
        for pid in [p for p in s.peers if p not in s.cluster]:
            del s.peers[pid]


# --- queries and leadership transfer --------------------------------------------------------------

def _on_consistent_query(msg: ConsistentQuery, s: ServerState, effects: list[Any]) -> None:
    if s.role != "leader":
        effects.append(Reply(msg.frm, ("redirect", s.leader_id)))
        _wake_detector(s, effects)
        return
    s.query_index += 1
    # everything committed before this query is at or below the commit index, or below our noop
    need = max(s.commit_index, s.noop_index)
    s.queries.append((s.query_index, need, msg.frm, msg.query))
    _send_query_heartbeats(s, effects)
    _answer_queries(s, effects)


def _send_query_heartbeats(s: ServerState, effects: list[Any]) -> None:
    rpc = HeartbeatRpc(s.query_index, s.current_term, s.id)
    for pid in s.peers:
        if pid in s.cluster:
            effects.append(SendRpc(pid, rpc))


def _on_heartbeat_reply(msg: HeartbeatReply, s: ServerState, effects: list[Any]) -> None:
    p = _peer_of_reply(s, msg.term, msg.from_id, effects)
    if p is not None and msg.query_index > p.query_index:
        p.query_index = msg.query_index
        _answer_queries(s, effects)


def _answer_queries(s: ServerState, effects: list[Any]) -> None:
    if not s.queries:
        return
    confirmed = [s.query_index if m == s.id else
                 (s.peers[m].query_index if m in s.peers else 0) for m in s.cluster]
    if not _is_member(s):
        confirmed.append(0)
    ok_upto = quorum.majority_index(confirmed)
    rest = []
    for q in s.queries:
        qidx, need, frm, fun = q
        if qidx <= ok_upto and s.last_applied >= need:
            effects.append(Reply(frm, ("ok", fun(s.machine_state), s.id)))
        else:
            rest.append(q)
    s.queries = rest


def _on_transfer_leadership(msg: TransferLeadership, s: ServerState,
                            effects: list[Any]) -> None:
    if s.role != "leader":
        effects.append(Reply(msg.frm, ("redirect", s.leader_id)))
        return
    if msg.target == s.id:
        effects.append(Reply(msg.frm, ("ok", "already_leader", s.id)))
        return
    if msg.target not in s.peers or msg.target not in s.cluster:
        effects.append(Reply(msg.frm, ("error", "unknown_member")))
        return
    s.transfer_target = msg.target
    s.transfer_index = s.log.last_index_term()[0]
    s.transfer_ticks = 0
    effects.append(Reply(msg.frm, ("ok", "ok", s.id)))
    _send_entries(s, msg.target, effects, force=False)
    _maybe_timeout_now(s, effects)


def _maybe_timeout_now(s: ServerState, effects: list[Any]) -> None:
    t = s.transfer_target
    if t is None:
        return
    p = s.peers.get(t)
    if p is None:
        s.transfer_target = None
        return
    if p.match_index >= s.transfer_index:
        effects.append(SendRpc(t, TimeoutNow(s.current_term, s.id)))
        s.transfer_target = None


# --- apply ------------------------------------------------------------------------------------------

def _apply_to(s: ServerState, upto: int, effects: list[Any], general: bool = False) -> None:
    """Apply entries ``last_applied+1 .. upto`` in order through the machine.

    On the leader, awaited commands are answered and notifications batched per client; machine
    effects are passed to the shell. ``ReleaseCursor`` snapshots on every member. Every other
    role answers no one and runs :func:`_apply_unanswered` instead, which leaves the same
    state, session table, stored last applied index and effects (``general``: run this loop
    anyway; tests compare the two)."""
    if not general and s.role != "leader":
        _apply_unanswered(s, upto, effects)
        return
    log = s.log
    leader = s.role == "leader"
    notify: dict[Any, list[tuple[Any, Any]]] = {}
    machine = s.machine
    sessions = s.sessions
    idx = s.last_applied
    batch: list[Any] = []
    pos = 0
    while idx < upto:
        if pos == len(batch):
            # read in ranges: one segment read per range, not one per entry (recovery replays
            # everything since the snapshot)
            batch = log.take(idx + 1, min(upto - idx, 1024))
            pos = 0
            if not batch:
                break
        e = batch[pos]
        pos += 1
        idx += 1
        cmd = e[2]
        tag = cmd[0]
        replay = idx <= sessions.index
        if not replay:
            sessions.index = idx
        if tag == "usr":
            mode = cmd[2]
            if type(mode) is bytes:     # kept encoded by the log: only a leader needs it
                mode = log.reply_mode(mode) if leader else None
            resp = None     # the session's reply table to keep the reply in (None: no session)
            if len(cmd) > 6:
                sid, seq = cmd[4], cmd[5]
                if replay:
                    # the table already reflects this entry: only redo the machine's part
                    verdict: Any = None if idx in sessions.skipped else True
                else:
                    # a dict: apply (see Sessions.command); a tuple: the answer to give
                    verdict = resp = sessions.command(idx, sid, seq, cmd[6], cmd[3])
                if verdict is not True and type(verdict) is not dict:
                    if leader:
                        if verdict is None:
                            found, kept = sessions.lookup(sid, seq)
                            if found:
                                _answer_usr(s, mode, kept, effects, notify)
                        elif verdict[0] == "dup":
                            _answer_usr(s, mode, verdict[1], effects, notify)
                        else:
                            _answer_usr(s, mode, None, effects, notify, verdict[1])
                    s.last_applied = idx
                    continue
            meta = {"index": idx, "term": e[1], "system_time": cmd[3],
                    "machine_version": s.machine_version}
            s.machine_state, reply, meffects = apply_machine(machine, meta, cmd[1],
                                                             s.machine_state)
            if resp is not None:
                resp[seq] = reply
                if len(resp) > MAX_RESPONSES:
                    sessions.cap(sid)
            if leader and mode is not None:
                if type(reply) is tuple:
                    _answer_usr(s, mode, reply, effects, notify)    # may be a machine error
                elif mode[0] == "notify":
                    notify.setdefault(mode[2], []).append((mode[1], reply))
                elif mode[0] == "await":
                    effects.append(Reply(mode[1], ("ok", reply, s.id)))
            if meffects:
                _machine_effects(s, meffects, idx, effects)
        elif tag in _CONTROL_TAGS:
            _apply_control(s, idx, e[1], cmd, replay, effects)
            if tag == "session":
                if leader and cmd[3] is not None and cmd[3][0] == "await":
                    effects.append(Reply(cmd[3][1], ("ok", idx, s.id)))
            elif tag == "noop":
                machine = s.machine         # it may have been upgraded
            elif leader:
                _prune_peers(s)
        elif tag == "eol":
            s.last_applied = idx
            _end_of_life(s, cmd[1], effects)
            break
        s.last_applied = idx
    if idx > 0:
        s.meta.store_last_applied(s.last_applied)
    for pid, applied in notify.items():
        effects.append(Notify(pid, s.id, applied))


def _apply_unanswered(s: ServerState, upto: int, effects: list[Any]) -> None:
    """:func:`_apply_to` of a member that answers no one (every role but leader; recovery's
    replay is one): the same outcome, with the common entry, a user command applied for the
    first time, decided inline, and every other one left to :func:`_apply_entry`. Recovery
    replays the whole log since the snapshot through here (issue 14's W5): per entry it costs
    a session decision, the machine's meta map and its call, nothing else."""
    log = s.log
    machine = s.machine
    version = s.machine_version
    sessions = s.sessions
    command = sessions.command
    idx = s.last_applied
    stop = False
    while idx < upto and not stop:
        # in ranges: one segment read and one bulk decode per range
        batch = log.take(idx + 1, min(upto - idx, 1024))
        if not batch:
            break
        for idx, term, cmd in batch:
            if cmd[0] != "usr" or idx <= sessions.index:
                if _apply_entry(s, idx, term, cmd, effects):
                    stop = True
                    break
                machine = s.machine         # a noop may have upgraded it
                version = s.machine_version
                continue
            sessions.index = idx
            resp = None
            if len(cmd) > 6:
                resp = command(idx, cmd[4], cmd[5], cmd[6], cmd[3])
                if type(resp) is not dict:
                    s.last_applied = idx    # not applied (duplicate, stale, expired)
                    continue
            s.machine_state, reply, meffects = apply_machine(
                machine, {"index": idx, "term": term, "system_time": cmd[3],
                          "machine_version": version}, cmd[1], s.machine_state)
            if resp is not None:
                resp[cmd[5]] = reply
                if len(resp) > MAX_RESPONSES:
                    sessions.cap(cmd[4])
            if meffects:
                _machine_effects(s, meffects, idx, effects)
            s.last_applied = idx
    if idx > 0:
        s.meta.store_last_applied(s.last_applied)


def _apply_entry(s: ServerState, idx: int, term: int, cmd: Any, effects: list[Any]) -> bool:
    """One entry of :func:`_apply_unanswered` off its inline path (session bookkeeping being
    replayed, session, noop, cluster and end-of-life entries): what :func:`_apply_to` does
    with it on a member that is not the leader. True: it was the end of life, stop."""
    sessions = s.sessions
    tag = cmd[0]
    replay = idx <= sessions.index
    if not replay:
        sessions.index = idx
    if tag == "usr":
        resp = None
        if len(cmd) > 6:
            if replay:
                # the table already reflects this entry: only redo the machine's part
                if idx in sessions.skipped:
                    s.last_applied = idx
                    return False
            else:
                resp = sessions.command(idx, cmd[4], cmd[5], cmd[6], cmd[3])
                if type(resp) is not dict:
                    s.last_applied = idx
                    return False
        meta = {"index": idx, "term": term, "system_time": cmd[3],
                "machine_version": s.machine_version}
        s.machine_state, reply, meffects = apply_machine(s.machine, meta, cmd[1],
                                                         s.machine_state)
        if resp is not None:
            resp[cmd[5]] = reply
            if len(resp) > MAX_RESPONSES:
                sessions.cap(cmd[4])
        if meffects:
            _machine_effects(s, meffects, idx, effects)
    elif tag in _CONTROL_TAGS:
        _apply_control(s, idx, term, cmd, replay, effects)
    elif tag == "eol":
        s.last_applied = idx
        _end_of_life(s, cmd[1], effects)
        return True
    s.last_applied = idx
    return False


#: the entries whose effect on the state is the same on every member (:func:`_apply_control`)
_CONTROL_TAGS = frozenset(("session", "noop", "cluster"))


def _apply_control(s: ServerState, idx: int, term: int, cmd: Any, replay: bool,
                   effects: list[Any]) -> None:
    """A session, noop or cluster entry's effect on the state, the same on every member and
    on both apply loops (a leader's answer and peer pruning are its caller's). ``replay``: the
    session table already reflects this entry."""
    tag = cmd[0]
    if tag == "session":
        if not replay:
            if cmd[1] == "open_session":
                s.sessions.open(idx, cmd[4])
            else:
                s.sessions.close(cmd[2], cmd[4])
    elif tag == "noop":
        if cmd[1] > s.machine_version:
            _upgrade_machine(s, cmd[1], idx, term, effects)
    elif s.cluster_index_term[0] < idx:
        # recovery replays cluster entries too; a live server set it when it wrote it
        s.cluster = tuple(cmd[1])
        s.cluster_index_term = (idx, term)


def _answer_usr(s: ServerState, mode: Any, reply: Any, effects: list[Any],
                notify: dict[Any, list[tuple[Any, Any]]] | None, error: Any = None) -> None:
    """Answer a usr command per its reply mode: its ``reply``, or ``error`` (a session error:
    not applied). ``notify`` batches pipelined answers per client (None: send at once)."""
    if mode is None:
        return
    failed = machine_error(reply)
    if failed is not None:
        error = ("machine_error", failed[0], failed[1])
    if mode[0] == "await":
        effects.append(Reply(mode[1], ("ok", reply, s.id) if error is None
                             else ("error", error)))
    elif mode[0] == "notify":
        if error is not None:
            effects.append(Cast(mode[2], ("ra_event", s.id, ("rejected",
                                                             (error, s.id, mode[1])))))
        elif notify is None:
            effects.append(Notify(mode[2], s.id, [(mode[1], reply)]))
        else:
            notify.setdefault(mode[2], []).append((mode[1], reply))


#: Heartbeat ticks a deleted cluster's leader keeps telling followers the commit index
#: before it deletes itself ("the leader last")
_EOL_TICKS = 3


def _end_of_life(s: ServerState, mode: Any, effects: list[Any]) -> None:
    """The end-of-life entry is applied: followers delete themselves now; the leader answers,
    makes sure the followers learn the commit (a few heartbeat rounds), then deletes itself."""
    if s.role != "leader":
        effects.append(DeleteAndTerminate())
        return
    if mode is not None and mode[0] == "await":
        effects.append(Reply(mode[1], ("ok", "ok", s.id)))
    s.eol_ticks = _EOL_TICKS
    for pid in s.peers:
        _send_entries(s, pid, effects, force=True)


def _upgrade_machine(s: ServerState, version: int, idx: int, term: int,
                     effects: list[Any]) -> None:
    """Switch to the machine module of ``version`` and tell it, as ra does, by applying
    ``("machine_version", old, new)`` through the new module."""
    old = s.machine_version
    s.machine = _machine_for(s.cfg.machine, version)
    s.machine_version = version
    meta = {"index": idx, "term": term, "system_time": 0, "machine_version": version}
    s.machine_state, _, meffects = apply_machine(s.machine, meta, ("machine_version", old,
                                                                    version), s.machine_state)
    if meffects:
        _machine_effects(s, meffects, idx, effects)


def _machine_effects(s: ServerState, meffects: list[MachineEffect], applied_idx: int,
                     effects: list[Any], any_role: bool = False) -> None:
    """Carry out or pass on the (typed, valid) effects a machine callback returned.

    ``ReleaseCursor`` (snapshot), ``PromoteCheckpoint`` and ``Checkpoint`` are carried out by
    every member's log here; ``Append`` and ``Log`` by the leader here (they only touch the
    log); ``Aux`` and ``GarbageCollection`` go to every member's shell; the rest (send_msg,
    monitor, demonitor, mod_call, timer) to the leader's shell, or to any member's with
    ``any_role`` (``state_enter`` and ``snapshot_installed`` effects run where they were
    returned)."""
    leader = s.role == "leader"
    for me in meffects:
        if isinstance(me, ReleaseCursor):
            _release_cursor(s, me, applied_idx)
        elif isinstance(me, PromoteCheckpoint):
            _promote_checkpoint(s, me.index, applied_idx)
        elif isinstance(me, Checkpoint):
            _checkpoint(s, me.index, me.state, applied_idx)
        elif isinstance(me, (Aux, GarbageCollection)):
            effects.append(me)
        elif isinstance(me, Append):
            if leader:
                s.log.append((s.log.next_index(), s.current_term,
                              ("usr", me.cmd, me.reply_mode, 0)))
                _schedule_flush(s, effects)
        elif isinstance(me, LogEffect):
            if leader:
                cmds = []
                for i in me.indexes:
                    entry = s.log.fetch(i)
                    if entry is not None and entry[2][0] == "usr":
                        cmds.append(entry[2][1])
                _callback_effects(s, "log", me.fun(cmds), applied_idx, effects)
        elif leader or any_role:
            effects.append(me)


def _callback_effects(s: ServerState, callback: str, raw: Any, applied_idx: int,
                      effects: list[Any], any_role: bool = False) -> None:
    """The effects of a machine callback other than ``apply``: validated, then carried out;
    if one is malformed none is, and the shell is told (there is no caller to answer)."""
    if not raw:
        return
    try:
        typed = machine_effects(raw)
    except InvalidEffect as e:
        effects.append(BadMachineEffects(callback, str(e)))
        return
    _machine_effects(s, typed, applied_idx, effects, any_role)


def _state_enter(s: ServerState, effects: list[Any]) -> None:
    """ra_machine:state_enter/2 on every role change; its effects run on this member."""
    fn = getattr(s.machine, "state_enter", None)
    if fn is None:
        return
    _callback_effects(s, "state_enter", fn(s.role, s.machine_state), s.last_applied, effects,
                      any_role=True)


def _on_tick(msg: Tick, s: ServerState, effects: list[Any]) -> None:
    """The leader runs the machine's ``tick(time_ms, state)`` (ra: tick_timeout)."""
    if s.role != "leader":
        return
    fn = getattr(s.machine, "tick", None)
    if fn is not None:
        _callback_effects(s, "tick", fn(msg.time_ms, s.machine_state), s.last_applied, effects)


def _release_cursor(s: ServerState, rc: ReleaseCursor, applied_idx: int) -> None:
    idx = min(rc.index, applied_idx)
    term = s.log.fetch_term(idx)
    if term is None or idx <= s.log.snapshot_index_term()[0]:
        return
    cluster = s.cluster if s.cluster_index_term[0] <= idx else _cluster_at(s, idx)
    s.log.update_release_cursor(idx, term, cluster, s.machine_version,
                                wrap_snapshot(rc.state, s.sessions, idx))
    s.sessions.trim(s.log.snapshot_index_term()[0])


def _checkpoint(s: ServerState, index: int, state: Any, applied_idx: int) -> None:
    """Every member stores its own checkpoint; unlike a release cursor nothing is truncated,
    so later entries and the snapshot stay as they are until a promotion."""
    idx = min(index, applied_idx)
    term = s.log.fetch_term(idx)
    if term is None or idx <= s.log.snapshot_index_term()[0]:
        return
    cluster = s.cluster if s.cluster_index_term[0] <= idx else _cluster_at(s, idx)
    s.log.checkpoint(idx, term, cluster, s.machine_version, wrap_snapshot(state, s.sessions, idx))


def _promote_checkpoint(s: ServerState, index: int, applied_idx: int) -> None:
    """``PromoteCheckpoint(index)`` (ra's ``{release_cursor, Index}``): the log promotes its newest checkpoint at or below
    ``index`` (if it has one: checkpoints are local, and a member that installed a snapshot
    since, or lost the log tail a checkpoint was taken on, may not) and truncates below it as
    for a snapshot."""
    idx = min(index, applied_idx)
    if idx <= s.log.snapshot_index_term()[0]:
        return
    if s.log.promote_checkpoint(idx):
        s.sessions.trim(s.log.snapshot_index_term()[0])


def _cluster_at(s: ServerState, idx: int) -> tuple[Any, ...]:
    """The configuration in force at ``idx`` (for snapshot and checkpoint meta)."""
    snap_idx = s.log.snapshot_index_term()[0]
    i = idx
    while i > snap_idx:
        e = s.log.fetch(i)
        if e is not None and e[2][0] == "cluster":
            return tuple(e[2][1])
        i -= 1
    smeta = s.log.snapshot_meta()
    return tuple(smeta.cluster) if smeta is not None else tuple(s.cfg.initial_members)


# --- introspection ----------------------------------------------------------------------------------

def overview(s: ServerState) -> dict[str, Any]:
    """A plain-dict summary (ra's ``ra_server:overview/1``)."""
    last_idx, last_term = s.log.last_index_term()
    return {
        "id": s.id, "uid": s.cfg.uid, "cluster_name": s.cfg.cluster_name, "role": s.role,
        "current_term": s.current_term, "voted_for": s.voted_for, "leader_id": s.leader_id,
        "cluster": list(s.cluster), "commit_index": s.commit_index,
        "last_applied": s.last_applied, "last_index": last_idx, "last_term": last_term,
        "last_written_index": s.log.last_written()[0],
        "snapshot_index": s.log.snapshot_index_term()[0],
        "peers": {str(k): {"next_index": p.next_index, "match_index": p.match_index}
                  for k, p in s.peers.items()},
        "low_priority_queue": len(s.low_queue), "pending_queries": len(s.queries),
    }


_HANDLERS: dict[type, Any] = {
    AppendEntriesRpc: _on_append_entries,
    AppendEntriesReply: _on_append_entries_reply,
    RequestVoteRpc: _on_request_vote_rpc,
    RequestVoteResult: _on_request_vote_result,
    PreVoteRpc: _on_pre_vote_rpc,
    PreVoteResult: _on_pre_vote_result,
    InstallSnapshotRpc: _on_install_snapshot,
    InstallSnapshotResult: _on_install_snapshot_result,
    HeartbeatRpc: _on_heartbeat_rpc,
    HeartbeatReply: _on_heartbeat_reply,
    TimeoutNow: _on_timeout_now,
    LeaderProbe: _on_leader_probe,
    ElectionTimeout: _on_election_timeout,
    HeartbeatTimeout: _on_heartbeat_timeout,
    Tick: _on_tick,
    Written: _on_written,
    LeaderDown: _on_leader_down,
    NodeDown: _on_node_down,
    NodeUp: _on_node_up,
    FlushCommands: _on_flush,
    Command: _on_command,
    Commands: _on_commands,
    ConsistentQuery: _on_consistent_query,
    TransferLeadership: _on_transfer_leadership,
    TriggerElection: _on_trigger_election,
}
