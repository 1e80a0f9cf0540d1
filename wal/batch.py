"""No ra equivalent as a module (ra_log_wal.erl does this inline). The WAL's pure batching decision.

Given every append request drained from the mailbox (in arrival order) and the per-writer
state, :func:`plan_batch` decides which entries are accepted, builds the single buffer the WAL
writes, and the notices it will send *after* the one sync: per writer, the ``(term, from, to)``
ranges now durable, and ``resend_write`` requests for writers whose request left a gap.

Acceptance rule. A writer's requests carry ``seq``: consecutive integers within one writer
process (``n + 1`` follows ``n``), jumping up when the process is replaced (``ra.log`` starts each
process's count at ``CLOCK_MONOTONIC`` nanoseconds). ``WriterState.seq`` is that of the last
request *accepted* from the uid.

* **Stale**: a request with ``seq`` at or below the last accepted one was sent before a request
  already written (its connection was read late: its process died, or dropped the connection
  and reconnected). It is dropped without a notice (``Plan.stale``): written now, it would
  truncate entries already confirmed to the newer sender.
* **In order** (``seq`` is the last accepted one's + 1, so every request sent before it was
  written): accepted if it starts at or below the next index the WAL expects from the writer
  (a continuation, or an overwrite of a tail) or at or below ``lw + 1``.
* **Anything else** (the WAL has not seen the writer since it started, a new process of it, or
  an earlier request of the same process has not arrived): accepted only if it starts at or
  below ``lw + 1``, where ``lw`` is the writer's last *confirmed* index sent with the request:
  everything at or below it is durable with the writer's terms, so the request needs nothing
  the WAL may not have written. A request the writer's last accepted one does not back might
  sit on top of an overwrite still on its way.
* A request that is not accepted for a gap gets one ``resend_write`` from ``lw + 1`` (the
  resend cannot be "in order": this request was not written) and is dropped; later gapped
  requests are dropped silently until the resend arrives.
* **Fencing** (what keeps a restarted writer's recovered log true): a writer process calls
  ``WalFence(uid, seq)`` *before* it reads its log from disk (:func:`fence`); its own requests
  then count from ``seq + 1``. Requests its dead predecessor sent are stale from then on, even
  those not read yet: nothing can change the disk under the log it is about to read.

Ordering: within one writer, ranges are reported in write order; a later range may restart
below an earlier one (an overwrite), exactly as the writer issued them. Pure: no I/O, no clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from wal.format import HEADER_SIZE, Record, encode_records

__all__ = ["Append", "WriterState", "Plan", "plan_batch", "fence", "needs_roll", "Range"]

#: (term, from_idx, to_idx)
Range = tuple[int, int, int]


class Append(NamedTuple):
    """One append request: writer ``uid``, its mailbox ``addr``, its last confirmed index ``lw``,
    consecutive ``entries`` ``[(index, term, payload_bytes), ...]`` and its send order ``seq``
    (see the module's acceptance rule)."""

    uid: bytes
    addr: Any
    lw: int
    entries: list[tuple[int, int, bytes]]
    seq: int
    #: ``[to, frame, key]`` to send once written (``wal.messages.WalAppend.reply``), or None
    reply: Any = None


@dataclass(slots=True)
class WriterState:
    """What the WAL knows of one writer since it started."""

    next_idx: int
    resend_from: int | None = None
    addr: Any = None
    #: ``seq`` of the last request accepted: anything sent no later is stale (-2: none yet,
    #: and no request is "in order" after it)
    seq: int = -2


@dataclass(slots=True)
class Plan:
    """The outcome of one batch: bytes to write, then notices to send once synced."""

    buffer: bytes
    n_entries: int
    written: dict[tuple[Any, bytes], list[Range]] = field(default_factory=dict)
    resends: list[tuple[Any, bytes, int]] = field(default_factory=list)
    writers: set[bytes] = field(default_factory=set)
    #: per (addr, uid): the last index of the last accepted request with a reply, and the reply
    replies: dict[tuple[Any, bytes], tuple[int, Any]] = field(default_factory=dict)
    #: requests dropped because a later-sent one of the same uid was accepted before them
    stale: int = 0


def plan_batch(requests: list[Append], writers: dict[bytes, WriterState],
               checksums: bool) -> Plan:
    """Decide the batch. Updates ``writers`` in place (the WAL commits to this plan)."""
    records: list[Record] = []
    rec_append = records.append
    written: dict[tuple[Any, bytes], list[Range]] = {}
    resends: list[tuple[Any, bytes, int]] = []
    touched: set[bytes] = set()
    replies: dict[tuple[Any, bytes], tuple[int, Any]] = {}
    stale = 0
    for uid, addr, lw, entries, seq, reply in requests:
        if not entries:
            continue
        first = entries[0][0]
        st = writers.get(uid)
        if st is not None and seq <= st.seq:
            stale += 1
            continue
        # lw + 1 is always safe: the writer holds everything up to lw durable (WAL or snapshot)
        if st is None:
            allowed = lw + 1
            st = WriterState(next_idx=allowed, addr=addr)
            writers[uid] = st
        else:
            allowed = max(st.next_idx, lw + 1) if seq == st.seq + 1 else lw + 1
            st.addr = addr
        if first > allowed or first < 1:
            # from lw + 1: the resend will not be "in order" (this request was not written)
            if st.resend_from != lw + 1:
                st.resend_from = lw + 1
                resends.append((addr, uid, lw + 1))
            continue
        st.resend_from = None
        st.seq = seq
        touched.add(uid)
        r = replies.get((addr, uid))
        if r is not None and first <= r[0]:
            del replies[(addr, uid)]    # it overwrites what that reply claims: never sent
        ranges = written.get((addr, uid))
        if ranges is None:
            ranges = written[(addr, uid)] = []
        expect = first
        run_term = -1
        run_from = first
        for idx, term, payload in entries:
            if idx != expect:
                raise ValueError(f"non-consecutive entries from {uid!r}: {idx} after {expect - 1}")
            rec_append((uid, idx, term, payload))
            if term != run_term:
                if run_term >= 0:
                    _add_range(ranges, (run_term, run_from, idx - 1))
                run_term, run_from = term, idx
            expect = idx + 1
        _add_range(ranges, (run_term, run_from, expect - 1))
        st.next_idx = expect
        if reply is not None:
            replies[(addr, uid)] = (expect - 1, reply)
    buf = encode_records(records, checksums) if records else b""
    return Plan(buf, len(records), written, resends, touched, replies, stale)


def fence(writers: dict[bytes, WriterState], uid: bytes, seq: int) -> None:
    """A new process of writer ``uid`` is about to read its log from disk; its requests will be
    numbered from ``seq + 1``. Requests sent before it (by a process of ``uid`` that has died)
    are never written from now on, and its first request must start at or below its
    ``lw + 1``, as a writer's the WAL has not seen (its log is only what it reads from disk)."""
    st = writers.get(uid)
    if st is not None and seq <= st.seq:
        return              # a fence older than what was accepted already: nothing to do
    writers[uid] = WriterState(next_idx=0, seq=seq)


def _add_range(ranges: list[Range], r: Range) -> None:
    if ranges:
        t, f, to = ranges[-1]
        if t == r[0] and to + 1 == r[1]:
            ranges[-1] = (t, f, r[2])
            return
    ranges.append(r)


def needs_roll(file_size: int, batch_size: int, max_size: int) -> bool:
    """Roll to a new file before writing this batch? Only a file that holds records rolls;
    a batch bigger than ``max_size`` still goes whole into a fresh file."""
    return file_size > HEADER_SIZE and file_size + batch_size > max_size
