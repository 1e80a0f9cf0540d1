"""Client sessions: exactly-once commands (Raft dissertation §6.3, as LogCabin does it). No ra
equivalent: ra leaves duplicate detection to each machine.

A client opens a session with a log entry; its id is that entry's index, so ids are unique and
every member agrees on them. Each later command of the client carries ``(session, seq,
first_outstanding)``: ``seq`` numbers the client's commands 1, 2, 3...; ``first_outstanding``
is the lowest ``seq`` whose outcome the client still waits for, so the replies below it can go.
When a command is applied the table keeps its reply under its ``seq``; a duplicate (a retry
after an unknown outcome, appended again by a later leader) is not applied again and is
answered with the kept reply.

Every decision is a function of the log alone, so every member takes the same one:

* time is the *cluster time*, the largest ``ts`` (leader's clock, in the entry) of the session
  entries applied so far; a session idle for :data:`SESSION_TIMEOUT_MS` of cluster time
  expires (checked every :data:`EXPIRY_CHECK_MS`); opening a session beyond
  :data:`MAX_SESSIONS` expires the least recently active one first;
* a session keeps at most :data:`MAX_RESPONSES` replies (the oldest go first); a retry of a
  command whose reply is gone, or whose ``seq`` is below the session's ``first_outstanding``,
  is not applied (the client has stopped waiting for it) and gets ``("error", "stale_seq")``;
* a command of an unknown (expired or never opened) session is not applied and gets
  ``("error", "session_expired")``.

Memory: at most ``MAX_SESSIONS * MAX_RESPONSES`` replies, in practice a few per session.

Snapshots and checkpoints: a snapshot at index ``S`` holds the machine state as of ``S`` (the
machine chooses ``S``, which may be below the last applied index ``A``) and this table as of
``A``. To replay ``S+1..A`` the same way, the table also keeps the indexes of the session
commands that were *not* applied (duplicates, stale, unknown session: rare) above the snapshot:
during that replay a session command is applied iff its index is not among them, and the table
is left as it is (it already reflects those entries).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Sessions", "Session", "SESSION_TIMEOUT_MS", "EXPIRY_CHECK_MS", "MAX_SESSIONS",
           "MAX_RESPONSES", "wrap_snapshot", "unwrap_snapshot"]

#: cluster time a session may stay idle before it expires (LogCabin: 1 hour; a client that
#: keeps its session across a longer silence reopens one, see ``ra.client.api.Client``)
SESSION_TIMEOUT_MS = 600_000
#: how often (in cluster time) idle sessions are looked for
EXPIRY_CHECK_MS = 10_000
#: sessions kept; opening one more expires the least recently active
MAX_SESSIONS = 8192
#: replies kept per session (a client pipelining more than this may lose the oldest)
MAX_RESPONSES = 8192

_SNAP_TAG = "$ra_snapshot"
_SNAP_VERSION = 1


@dataclass(slots=True)
class Session:
    first_outstanding: int = 1     # every kept reply's seq is at or above it
    last_active: int = 0
    responses: dict[int, Any] = field(default_factory=dict)   # seq -> reply


@dataclass(slots=True)
class Sessions:
    """The replicated session table of one server. ``index`` is the last log index whose
    session effects the table holds (the last applied index, except right after recovering
    from a snapshot, when it may be ahead: see the module docstring)."""

    table: dict[int, Session] = field(default_factory=dict)
    index: int = 0
    cluster_time: int = 0
    next_check: int = 0
    skipped: set[int] = field(default_factory=set)

    @property
    def used(self) -> bool:
        """Anything session-related happened (else snapshots stay the bare machine state)."""
        return bool(self.table or self.skipped or self.cluster_time)

    def replaying(self, idx: int) -> bool:
        """``idx`` is already reflected in the table (a replay after a snapshot)."""
        return idx <= self.index

    # -- applying entries ----------------------------------------------------------------------
    def open(self, idx: int, ts: int) -> int:
        """Apply the session-open entry at ``idx``: the new session's id is ``idx``."""
        self._advance(ts)
        if idx not in self.table:
            if len(self.table) >= MAX_SESSIONS:
                victim = min(self.table, key=lambda k: (self.table[k].last_active, k))
                del self.table[victim]
            self.table[idx] = Session(last_active=self.cluster_time)
        return idx

    def close(self, sid: int, ts: int) -> None:
        self._advance(ts)
        self.table.pop(sid, None)

    def command(self, idx: int, sid: int, seq: int, first_out: int, ts: int) -> Any:
        """Decide the session command ``(sid, seq, first_out)`` at ``idx``: the answer to give
        without applying it (the kept reply of a duplicate as ``("dup", reply)``, or an
        ``("error", reason)`` tuple), or, to apply it, the session's reply table (a ``dict``):
        the caller applies the command, stores its reply there under ``seq``, and calls
        :meth:`cap` if the table then holds more than :data:`MAX_RESPONSES` replies. (Every
        member applies every session command: one call and no allocation per command.)"""
        if ts > self.cluster_time:
            self.cluster_time = ts
        if self.cluster_time >= self.next_check:
            self._advance(ts)
        sess = self.table.get(sid)
        if sess is None or sid >= idx:
            self.skipped.add(idx)
            return ("error", "session_expired")
        sess.last_active = self.cluster_time
        resp = sess.responses
        fo = sess.first_outstanding
        if first_out > fo:
            if first_out == fo + 1:
                # a pipelining client moves on by one per command: drop that one reply here
                # (recovery replays every command: _drop_below's call and range cost ~10 %)
                resp.pop(fo, None)
                sess.first_outstanding = first_out
            else:
                _drop_below(sess, first_out)
                resp = sess.responses
        if seq in resp:
            self.skipped.add(idx)
            return ("dup", resp[seq])
        if seq < sess.first_outstanding:
            self.skipped.add(idx)
            return ("error", "stale_seq")
        return resp

    def cap(self, sid: int) -> None:
        """The reply table of ``sid`` grew past :data:`MAX_RESPONSES`: the oldest reply goes;
        its seq (and any below) must now count as stale, or a late retry of it would be
        applied again (rare: a scan is fine)."""
        sess = self.table[sid]
        _drop_below(sess, min(sess.responses) + 1)

    def lookup(self, sid: int, seq: int) -> tuple[bool, Any]:
        """``(True, reply)`` if the command ``seq`` of session ``sid`` was applied and its
        reply is kept, else ``(False, None)``."""
        sess = self.table.get(sid)
        if sess is None or seq not in sess.responses:
            return False, None
        return True, sess.responses[seq]

    def _advance(self, ts: int) -> None:
        if ts > self.cluster_time:
            self.cluster_time = ts
        if self.cluster_time >= self.next_check:
            self.next_check = self.cluster_time + EXPIRY_CHECK_MS
            limit = self.cluster_time - SESSION_TIMEOUT_MS
            for k in [k for k, v in self.table.items() if v.last_active < limit]:
                del self.table[k]

    # -- snapshots ------------------------------------------------------------------------------
    def to_term(self, above: int) -> tuple[Any, ...]:
        """The table as a term for a snapshot taken at index ``above`` (skips below it are
        no longer needed)."""
        return (self.index, self.cluster_time, self.next_check,
                [(k, v.first_outstanding, v.last_active, list(v.responses.items()))
                 for k, v in self.table.items()],
                sorted(i for i in self.skipped if i > above))

    @classmethod
    def from_term(cls, t: Any) -> Sessions:
        index, ctime, nxt, rows, skipped = t
        table = {}
        for k, fo, last, resp in rows:
            table[k] = Session(fo, last, {seq: r for seq, r in resp})
        return cls(table, index, ctime, nxt, set(skipped))

    def trim(self, snapshot_index: int) -> None:
        """A snapshot at ``snapshot_index`` was taken: skips at or below it can go."""
        if self.skipped:
            self.skipped = {i for i in self.skipped if i > snapshot_index}


def _drop_below(sess: Session, first_out: int) -> None:
    """Raise ``sess.first_outstanding`` to ``first_out``, dropping the replies below it. Every
    kept seq is at or above ``first_outstanding``, so the seqs in between are all there is to
    look at (amortised O(1) per command; a jump far ahead, as only a misbehaving client makes,
    filters the table once instead)."""
    resp = sess.responses
    lo = sess.first_outstanding
    if first_out - lo <= 2 * len(resp) + 16:
        for k in range(lo, first_out):
            resp.pop(k, None)
    else:
        sess.responses = {k: v for k, v in resp.items() if k >= first_out}
    sess.first_outstanding = first_out


def wrap_snapshot(machine_state: Any, sessions: Sessions, index: int) -> Any:
    """What a snapshot or checkpoint at ``index`` stores: the bare machine state while no
    session was ever used (so snapshots of session-less clusters are unchanged), else the
    machine state and the session table together."""
    if not sessions.used:
        return machine_state
    return (_SNAP_TAG, _SNAP_VERSION, machine_state, sessions.to_term(index))


def unwrap_snapshot(stored: Any, index: int) -> tuple[Any, Sessions]:
    """Inverse of :func:`wrap_snapshot` for a snapshot at ``index``: ``(machine_state,
    sessions)``."""
    if (isinstance(stored, tuple) and len(stored) == 4 and stored[0] == _SNAP_TAG
            and stored[1] == _SNAP_VERSION):
        return stored[2], Sessions.from_term(stored[3])
    return stored, Sessions(index=index)
