"""Shape checks for messages entering the core. No ra equivalent (BEAM pattern matching does it).

``check(msg)`` returns ``None`` for a well-formed message and a short reason otherwise. The core
drops a malformed or unknown message *before* touching its state (counted in
``ServerState.dropped``), so a garbage frame that decoded into a known class, or a bug in a
shell, can neither crash the server nor change what it believes. Checks are ``type(x) is int``
style: cheap enough for the replication path (an entry costs a few identity tests).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ra.core import messages as m

__all__ = ["check"]


def _nat(*xs: Any) -> bool:
    for x in xs:
        if type(x) is not int or x < 0:
            return False
    return True


def _sid(x: Any) -> bool:
    return isinstance(x, tuple) and len(x) == 2


_COMMAND_KINDS = ("usr", "join", "leave", "delete_cluster", "open_session", "close_session")


def _session(x: Any) -> bool:
    """``(session_id, seq, first_outstanding)``: positive ints, first_outstanding <= seq.
    On every command's path: plain comparisons, no generator."""
    if type(x) is not tuple or len(x) != 3:
        return False
    s, q, f = x
    return (type(s) is int and type(q) is int and type(f) is int
            and s > 0 and 0 < f <= q)


def _commands(x: m.Commands) -> str | None:
    """Each command as ``Command`` checks a ``usr`` one: a reply mode that is None or a
    non-empty tuple; a session ``(id, seq, first_outstanding)`` of positive ints with
    first_outstanding <= seq, or ``None, 0, 0``. Written out: it runs for every command."""
    cs = x.cmds
    if not (x.priority in ("normal", "low") and _nat(x.ts) and type(cs) is list and cs
            and len(cs) % 5 == 0):
        return "bad commands"
    for i in range(1, len(cs), 5):
        mode, sid, q, f = cs[i], cs[i + 1], cs[i + 2], cs[i + 3]
        if not (mode is None or (type(mode) is tuple and mode)):
            return "bad commands"
        if type(q) is not int or type(f) is not int:
            return "bad commands"
        if type(sid) is int:
            if not (sid > 0 and 0 < f <= q):
                return "bad commands"
        elif sid is not None or q or f:
            return "bad commands"
    return None


def _entries(prev: int, es: Any) -> str | None:
    if type(es) is not list:
        return "entries not a list"
    i = prev
    for e in es:
        i += 1
        if (type(e) is not tuple or len(e) != 3 or e[0] != i or type(e[0]) is not int
                or type(e[1]) is not int or e[1] < 0 or type(e[2]) is not tuple or not e[2]):
            return f"bad entry at {i}"
    return None


def _ae(x: m.AppendEntriesRpc) -> str | None:
    if not (_nat(x.term, x.leader_commit, x.prev_log_index, x.prev_log_term)
            and _sid(x.leader_id)):
        return "bad append_entries fields"
    return _entries(x.prev_log_index, x.entries)


def _ok(x: Any) -> str | None:
    return None


def _meta(x: Any) -> bool:
    return (type(x) is m.SnapshotMeta and _nat(x.index, x.term, x.machine_version)
            and isinstance(x.cluster, tuple))


_CHECKS: dict[type, Callable[[Any], str | None]] = {
    m.AppendEntriesRpc: _ae,
    m.AppendEntriesReply: lambda x: None if (
        _nat(x.term, x.next_index, x.last_index, x.last_term, x.commit_index)
        and type(x.success) is bool
        and _sid(x.from_id)) else "bad append_entries_reply",
    m.RequestVoteRpc: lambda x: None if (
        _nat(x.term, x.last_log_index, x.last_log_term) and _sid(x.candidate_id))
    else "bad request_vote_rpc",
    m.RequestVoteResult: lambda x: None if (
        _nat(x.term) and type(x.vote_granted) is bool and _sid(x.from_id))
    else "bad request_vote_result",
    m.PreVoteRpc: lambda x: None if (
        _nat(x.term, x.token, x.last_log_index, x.last_log_term, x.machine_version)
        and _sid(x.candidate_id) and type(x.force) is bool) else "bad pre_vote_rpc",
    m.PreVoteResult: lambda x: None if (
        _nat(x.term, x.token) and type(x.vote_granted) is bool and _sid(x.from_id))
    else "bad pre_vote_result",
    m.InstallSnapshotRpc: lambda x: None if (
        _nat(x.term) and _sid(x.leader_id) and _meta(x.meta)
        and type(x.chunk_state) is tuple and len(x.chunk_state) == 2
        and _nat(x.chunk_state[0]) and x.chunk_state[0] >= 1
        and x.chunk_state[1] in ("next", "last") and type(x.data) is bytes)
    else "bad install_snapshot_rpc",
    m.InstallSnapshotResult: lambda x: None if (
        _nat(x.term, x.last_index, x.last_term) and _sid(x.from_id))
    else "bad install_snapshot_result",
    m.HeartbeatRpc: lambda x: None if (_nat(x.query_index, x.term) and _sid(x.leader_id))
    else "bad heartbeat_rpc",
    m.HeartbeatReply: lambda x: None if (_nat(x.query_index, x.term) and _sid(x.from_id))
    else "bad heartbeat_reply",
    m.TimeoutNow: lambda x: None if (_nat(x.term) and _sid(x.leader_id)) else "bad timeout_now",
    m.LeaderProbe: lambda x: None if (_nat(x.term) and _sid(x.leader_id) and _sid(x.from_id))
    else "bad leader_probe",
    m.Written: lambda x: None if (_nat(x.term, x.from_idx, x.to_idx) and x.from_idx <= x.to_idx
                                  and type(x.replied) is bool)
    else "bad written",
    m.MetaWritten: lambda x: None if _nat(x.seq) else "bad meta_written",
    m.ElectionTimeout: _ok,
    m.HeartbeatTimeout: _ok,
    m.FlushCommands: _ok,
    m.LeaderDown: _ok,
    m.NodeDown: lambda x: None if type(x.node) is str else "bad node_down",
    m.NodeUp: lambda x: None if type(x.node) is str else "bad node_up",
    m.TriggerElection: _ok,
    m.Tick: lambda x: None if _nat(x.time_ms) else "bad tick",
    m.Command: lambda x: None if (
        x.kind in _COMMAND_KINDS and x.priority in ("normal", "low")
        and (x.reply_mode is None or (type(x.reply_mode) is tuple and x.reply_mode))
        and _nat(x.ts) and (x.session is None or _session(x.session))
        and (x.kind != "close_session" or _nat(x.payload))) else "bad command",
    m.Commands: _commands,
    m.ConsistentQuery: lambda x: None if callable(x.query) else "bad consistent_query",
    m.TransferLeadership: lambda x: None if _sid(x.target) else "bad transfer_leadership",
}


def check(msg: Any) -> str | None:
    """``None`` if ``msg`` is a well-formed core message, else why not."""
    fn = _CHECKS.get(type(msg))
    if fn is None:
        return f"unknown message type {type(msg).__name__}"
    try:
        return fn(msg)
    except Exception as e:     # a field access on a half-built object: malformed all the same
        return f"malformed {type(msg).__name__}: {type(e).__name__}"
