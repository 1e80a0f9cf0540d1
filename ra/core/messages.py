"""Messages the core handles. Mirrors the records of ra.hrl (``#append_entries_rpc{}``, ...).

Peer RPCs and their replies, client requests, timeouts and storage notifications, each a frozen
slotted dataclass named after ra's record. Replies carry ``from_id`` (ra passes ``{PeerId, Reply}``).
Entries inside ``AppendEntriesRpc`` are plain ``(index, term, command)`` tuples.
"""
from __future__ import annotations

from dataclasses import field

from ra.core.frozen import frozen
from typing import Any

__all__ = [
    "AppendEntriesRpc", "AppendEntriesPacked", "AppendEntriesReply", "RequestVoteRpc", "RequestVoteResult",
    "PreVoteRpc", "PreVoteResult", "InstallSnapshotRpc", "InstallSnapshotResult",
    "HeartbeatRpc", "HeartbeatReply", "TimeoutNow", "LeaderProbe", "SnapshotMeta",
    "ElectionTimeout", "HeartbeatTimeout", "Tick", "Written", "MetaWritten", "LeaderDown",
    "NodeDown", "NodeUp",
    "Command", "Commands", "ConsistentQuery", "TransferLeadership", "TriggerElection",
    "FlushCommands", "RaMsg", "PEER_MSGS",
]


@frozen
class SnapshotMeta:
    """What a snapshot covers: the last index/term it includes, the cluster at that point and the
    machine version (ra's ``ra_snapshot:meta()``)."""

    index: int
    term: int
    cluster: tuple[Any, ...]
    machine_version: int = 0


# --- peer RPCs ------------------------------------------------------------------------------

@frozen
class AppendEntriesRpc:
    term: int
    leader_id: Any
    leader_commit: int
    prev_log_index: int
    prev_log_term: int
    entries: list[tuple[int, int, Any]] = field(default_factory=list)


@frozen
class AppendEntriesPacked:
    """The wire form of an :class:`AppendEntriesRpc` that carries entries: the entries at
    ``prev_log_index + 1 ..`` as their ``terms`` and their commands already encoded
    (``payloads``, one codec term each), so that a leader sends the bytes it wrote to its WAL
    and a follower writes to its WAL the bytes it received: no entry is encoded again on the way
    (the shell converts, ``ra.server.packed``; the core never sees this form)."""

    term: int
    leader_id: Any
    leader_commit: int
    prev_log_index: int
    prev_log_term: int
    terms: list[int]
    payloads: list[bytes]


@frozen
class AppendEntriesReply:
    """``success`` says the prev check passed. ``next_index`` is where the follower wants the next
    entry (a back-off hint on failure); ``last_index``/``last_term`` is its highest *durable* entry
    known to match the leader's log, which is what the leader counts for commit.
    ``commit_index`` is the follower's commit index: a quiet leader (``quiet_when_idle``) stops
    sending only once every follower has said it knows the leader's commit index (a lost
    append carrying it would otherwise leave the follower behind until the next command)."""

    term: int
    success: bool
    next_index: int
    last_index: int
    last_term: int
    from_id: Any
    commit_index: int = 0


@frozen
class RequestVoteRpc:
    term: int
    candidate_id: Any
    last_log_index: int
    last_log_term: int


@frozen
class RequestVoteResult:
    term: int
    vote_granted: bool
    from_id: Any


@frozen
class PreVoteRpc:
    """Asks whether a real election at ``term`` (the sender's term + 1) would be won. Receivers do
    not change their own term. ``token`` ties results to one pre-vote round. ``force``: an
    operator's ``trigger_election``: a quiet follower grants it although it still counts on its
    leader (the log check still applies)."""

    term: int
    token: int
    candidate_id: Any
    last_log_index: int
    last_log_term: int
    machine_version: int = 0
    force: bool = False


@frozen
class PreVoteResult:
    term: int
    token: int
    vote_granted: bool
    from_id: Any


@frozen
class InstallSnapshotRpc:
    """One chunk of a snapshot. ``chunk_state`` is ``(chunk_number, "next" | "last")``."""

    term: int
    leader_id: Any
    meta: SnapshotMeta
    chunk_state: tuple[int, str]
    data: bytes


@frozen
class InstallSnapshotResult:
    term: int
    last_index: int
    last_term: int
    from_id: Any


@frozen
class HeartbeatRpc:
    """Confirms leadership for consistent queries (ra's ``#heartbeat_rpc{}``)."""

    query_index: int
    term: int
    leader_id: Any


@frozen
class HeartbeatReply:
    query_index: int
    term: int
    from_id: Any


@frozen
class TimeoutNow:
    """Leadership transfer: the target starts an election at once, skipping pre-vote."""

    term: int
    leader_id: Any


@frozen
class LeaderProbe:
    """Quiet mode (``quiet_when_idle``; no ra equivalent): ``from_id``, a follower of
    ``leader_id`` in ``term`` that a client asked for something, checks that its idle leader
    still runs. The leader answers at once with an append to ``from_id``; the follower's other
    peers get a copy and check the leader too (see "Quiet when idle" in ``ra.core.server``)."""

    term: int
    leader_id: Any
    from_id: Any


# --- local events ---------------------------------------------------------------------------

@frozen
class ElectionTimeout:
    pass


@frozen
class HeartbeatTimeout:
    """The leader's periodic tick: heartbeat/retransmit to every peer."""


@frozen
class Tick:
    """The shell's periodic tick (ra's ``tick_timeout``): the leader calls the machine's
    ``tick(time_ms, state)``."""

    time_ms: int


@frozen
class Written:
    """The log reports ``from_idx..to_idx`` written at ``term`` durable (ra's ``{written, T, R}``).
    ``replied``: the log's writer also sent the :class:`~ra.core.effects.DurableReply` attached
    to the write ending at ``to_idx`` (only ever True for such a write)."""

    term: int
    from_idx: int
    to_idx: int
    replied: bool = False


@frozen
class MetaWritten:
    """The meta store reports every store up to ``seq`` durable."""

    seq: int


@frozen
class LeaderDown:
    """The shell's monitor (connection loss, node failure detector) says the leader is gone."""

    leader_id: Any


@frozen
class NodeDown:
    """The node failure detector suspects ``node`` (``"host:port"``): nothing heard from it for
    longer than its threshold, or a partition. A follower whose leader lives there treats its
    leader as lost (as ``LeaderDown``); a quiet leader stops counting the members there in its
    quorum check. Suspicions may be false; they are only ever a reason to hold an election."""

    node: str


@frozen
class NodeUp:
    """The node failure detector hears ``node`` again (ends a ``NodeDown``)."""

    node: str


@frozen
class FlushCommands:
    """Internal: append a batch of queued low-priority commands."""


# --- client requests ------------------------------------------------------------------------

@frozen
class Command:
    """A client request that goes through the log.

    ``kind`` is ``"usr"`` (``payload`` the machine command), ``"join"`` / ``"leave"``
    (``payload`` a server id), ``"delete_cluster"`` (the end-of-life entry), ``"open_session"``
    (the reply is the new session's id) or ``"close_session"`` (``payload`` the session id).
    ``reply_mode``: ``("await", From)``, ``("notify", corr, pid)`` or ``None``. ``ts`` is the
    shell's system time in ms. ``priority`` is ``"normal"`` or ``"low"``. ``session`` is
    ``(session_id, seq, first_outstanding)`` for a ``usr`` command of a client session (see
    ``ra.core.sessions``), or None.
    """

    kind: str
    payload: Any
    reply_mode: Any = None
    priority: str = "normal"
    ts: int = 0
    session: Any = None


@frozen
class Commands:
    """``usr`` commands that arrived together (pipelined), stepped as one message: the same as
    stepping ``Command("usr", payload, reply_mode, priority, ts, session)`` for each, in
    order, but one step for all (a burst of pipelined commands costs one pass of the step's
    bookkeeping, not one per command). ``cmds`` is flat, five items per command:
    ``payload, reply_mode, session_id, seq, first_outstanding`` (``None, 0, 0`` without a
    session): no object per command on the hot path."""

    priority: str
    ts: int
    cmds: list[Any]


@frozen
class ConsistentQuery:
    """Apply ``query`` (a callable on the machine state) once leadership is confirmed by a
    heartbeat round and every command committed before it arrived has been applied."""

    frm: Any
    query: Any


@frozen
class TransferLeadership:
    frm: Any
    target: Any


@frozen
class TriggerElection:
    frm: Any = None


RaMsg = (
    AppendEntriesRpc | AppendEntriesReply | RequestVoteRpc | RequestVoteResult | PreVoteRpc
    | PreVoteResult | InstallSnapshotRpc | InstallSnapshotResult | HeartbeatRpc | HeartbeatReply
    | TimeoutNow | LeaderProbe | ElectionTimeout | HeartbeatTimeout | Tick | Written | MetaWritten
    | LeaderDown
    | NodeDown | NodeUp | FlushCommands | Command | Commands | ConsistentQuery | TransferLeadership | TriggerElection
)

#: Messages that travel between servers (a network may drop, delay or duplicate them).
PEER_MSGS = (
    AppendEntriesRpc, AppendEntriesReply, RequestVoteRpc, RequestVoteResult, PreVoteRpc,
    PreVoteResult, InstallSnapshotRpc, InstallSnapshotResult, HeartbeatRpc, HeartbeatReply,
    TimeoutNow, LeaderProbe,
)
