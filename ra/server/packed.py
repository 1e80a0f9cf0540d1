"""No ra equivalent (BEAM sends a log entry as a term and ETS keeps it). The wire form of an
``append_entries`` that carries entries: :class:`ra.core.messages.AppendEntriesPacked`.

Why: without it every entry was encoded by the leader twice (its WAL record, then inside the
append_entries term) and by every follower once more (its WAL record), and every tuple of every
entry went through the codec's hooks at each hop. In this form a leader sends the payload bytes
it encoded once for its WAL (:meth:`ra.log.log.DiskLog.payloads`), a follower decodes each
payload once, for its core, and hands the very bytes it received to its WAL
(:meth:`ra.log.log.DiskLog.carry`).

Contract: :func:`pack` of an ``AppendEntriesRpc`` with entries and :func:`unpack` give back an
equal ``AppendEntriesRpc`` (terms exact: a tuple stays a tuple) plus the commands and payloads. :func:`unpack`
raises :class:`BadPacked` (a ``ValueError`` with a short ``reason``) for a malformed message, and
for one whose payloads do not each decode to exactly one term; it never returns half a message.
The plain ``AppendEntriesRpc`` stays accepted (senders of an older version, empty appends).
"""
from __future__ import annotations

from typing import Any

from ra.core.messages import AppendEntriesPacked, AppendEntriesRpc
from ra.log.log import MAX_BYTES_PER_MESSAGE, runs
from ra.wire import codec

__all__ = ["pack", "pack_parts", "unpack", "check", "BadPacked"]

_MAX_INDEX = 1 << 63        # indexes and terms are u64 fields on disk (wal.format)
_INT = {int}
_BYTES = {bytes}


class BadPacked(ValueError):
    """A malformed :class:`AppendEntriesPacked`; ``reason`` names what is wrong."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def pack(msg: AppendEntriesRpc, payloads: list[bytes]) -> AppendEntriesPacked:
    """``msg`` with its entries' commands as ``payloads`` (``codec.encode`` of each, in order)."""
    return AppendEntriesPacked(msg.term, msg.leader_id, msg.leader_commit, msg.prev_log_index,
                               msg.prev_log_term, [e[1] for e in msg.entries], payloads)


def pack_parts(msg: AppendEntriesRpc, payloads: list[bytes],
               max_bytes: int = MAX_BYTES_PER_MESSAGE) -> list[AppendEntriesPacked]:
    """:func:`pack`, cut into consecutive appends of at most ``max_bytes`` of payloads each (an
    entry larger than that goes alone: ``ra.log.log.runs``): each part's ``prev_log_index``/
    ``prev_log_term`` is the previous part's last entry, so a follower that takes them in order
    ends where it would have with the one message, and one that lost a part refuses the next as
    any gap."""
    cuts = runs(list(map(len, payloads)), max_bytes)
    if len(cuts) == 1:
        return [pack(msg, payloads)]
    es = msg.entries
    return [AppendEntriesPacked(msg.term, msg.leader_id, msg.leader_commit,
                                es[lo - 1][0] if lo else msg.prev_log_index,
                                es[lo - 1][1] if lo else msg.prev_log_term,
                                [e[1] for e in es[lo:hi]], payloads[lo:hi])
            for lo, hi in cuts]


def check(p: Any) -> str | None:
    """The shape of an :class:`AppendEntriesPacked` (payloads not decoded): ``None`` or why not."""
    try:
        nat = (p.term, p.leader_commit, p.prev_log_index, p.prev_log_term)
        for x in nat:
            if type(x) is not int or not 0 <= x < _MAX_INDEX:
                return "bad_field:AppendEntriesPacked"
        sid = p.leader_id
        if not (isinstance(sid, tuple) and len(sid) == 2):
            return "bad_field:AppendEntriesPacked.leader_id"
        terms, payloads = p.terms, p.payloads
        if type(terms) is not list or type(payloads) is not list or not terms \
                or len(terms) != len(payloads) or p.prev_log_index + len(terms) >= _MAX_INDEX:
            return "bad_field:AppendEntriesPacked.entries"
        # the per-entry checks run in C (set, map, min, max): this is every entry's path
        if set(map(type, terms)) != _INT or min(terms) < 0 or max(terms) >= _MAX_INDEX:
            return "bad_field:AppendEntriesPacked.terms"
        if set(map(type, payloads)) != _BYTES:
            return "bad_field:AppendEntriesPacked.payloads"
    except Exception as e:     # a half-built object: malformed all the same
        return f"malformed AppendEntriesPacked: {type(e).__name__}"
    return None


def unpack(p: AppendEntriesPacked) -> tuple[AppendEntriesRpc, list[Any], list[bytes]]:
    """The ``AppendEntriesRpc`` ``p`` stands for, its entries' commands (in order) and their
    payloads. Raises :class:`BadPacked`."""
    reason = check(p)
    if reason is not None:
        raise BadPacked(reason)
    try:
        cmds = codec.decode_each(p.payloads)
    except codec.DecodeError as e:
        raise BadPacked("bad_payload:AppendEntriesPacked", str(e)) from None
    first = p.prev_log_index + 1
    entries = list(zip(range(first, first + len(cmds)), p.terms, cmds))
    return (AppendEntriesRpc(p.term, p.leader_id, p.leader_commit, p.prev_log_index,
                             p.prev_log_term, entries), cmds, p.payloads)
