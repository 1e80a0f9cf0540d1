"""No ra equivalent as a module (ra_log_wal.erl does this inline). The WAL's pure batching decision.

Given every append request drained from the mailbox (in arrival order) and the per-writer
state, :func:`plan_batch` decides which entries are accepted, builds the single buffer the WAL
writes, and the notices it will send *after* the one sync: per writer, the ``(term, from, to)``
ranges now durable, and ``resend_write`` requests for writers whose request left a gap.

Acceptance rule (what makes "writers detect the gap and resend" safe after a WAL restart):

* A writer the WAL has not seen since it started is accepted only if its request starts at or
  below ``lw + 1``, where ``lw`` is the writer's own last *confirmed* index sent with the request
  (everything at or below it is durable with the writer's terms, so nothing is assumed about what
  the previous WAL incarnation may or may not have written). Otherwise the WAL asks it to resend
  from ``lw + 1`` and drops the request.
* A writer seen since start is accepted if its request starts at or below the next index the
  WAL expects from it (a continuation, or an overwrite of a tail) or at or below ``lw + 1``
  (e.g. after the writer installed a snapshot, its log jumps forward). A request beyond it (a gap:
  messages lost) gets one ``resend_write`` and is dropped; later gapped requests are dropped
  silently until the resend arrives.

Ordering: within one writer, ranges are reported in write order; a later range may restart
below an earlier one (an overwrite), exactly as the writer issued them. Pure: no I/O, no clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from wal.format import HEADER_SIZE, Record, encode_records

__all__ = ["Append", "WriterState", "Plan", "plan_batch", "needs_roll", "Range"]

#: (term, from_idx, to_idx)
Range = tuple[int, int, int]


class Append(NamedTuple):
    """One append request: writer ``uid``, its mailbox ``addr``, its last confirmed index ``lw``
    and consecutive ``entries`` ``[(index, term, payload_bytes), ...]``."""

    uid: bytes
    addr: Any
    lw: int
    entries: list[tuple[int, int, bytes]]


@dataclass(slots=True)
class WriterState:
    """What the WAL knows of one writer since it started."""

    next_idx: int
    resend_from: int | None = None
    addr: Any = None


@dataclass(slots=True)
class Plan:
    """The outcome of one batch: bytes to write, then notices to send once synced."""

    buffer: bytes
    n_entries: int
    written: dict[tuple[Any, bytes], list[Range]] = field(default_factory=dict)
    resends: list[tuple[Any, bytes, int]] = field(default_factory=list)
    writers: set[bytes] = field(default_factory=set)


def plan_batch(requests: list[Append], writers: dict[bytes, WriterState],
               checksums: bool) -> Plan:
    """Decide the batch. Updates ``writers`` in place (the WAL commits to this plan)."""
    records: list[Record] = []
    rec_append = records.append
    written: dict[tuple[Any, bytes], list[Range]] = {}
    resends: list[tuple[Any, bytes, int]] = []
    touched: set[bytes] = set()
    for uid, addr, lw, entries in requests:
        if not entries:
            continue
        first = entries[0][0]
        st = writers.get(uid)
        if st is None:
            allowed = lw + 1
            st = WriterState(next_idx=allowed, addr=addr)
            writers[uid] = st
        else:
            # lw + 1 is always safe: the writer holds everything up to lw durable (WAL or snapshot)
            allowed = max(st.next_idx, lw + 1)
            st.addr = addr
        if first > allowed or first < 1:
            if st.resend_from != allowed:
                st.resend_from = allowed
                resends.append((addr, uid, allowed))
            continue
        st.resend_from = None
        touched.add(uid)
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
    buf = encode_records(records, checksums) if records else b""
    return Plan(buf, len(records), written, resends, touched)


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
