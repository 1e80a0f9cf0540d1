"""Mirrors the messages of ra_log_wal.erl and ra_log_segment_writer.erl (there, Erlang tuples).
The WAL's and the segment writer's protocol as frozen slotted dataclasses registered with the
codec (codes 50..59 and 110, fixed forever), each with ONE validator (:data:`CHECKS`).

Writer (a server's log) -> WAL: :class:`WalAppend` (cast). WAL -> writer, casts:
:class:`WalWritten`, :class:`WalResendWrite`, :class:`WalError`, :class:`WalStarted`. A writer
process, before it reads its log: :class:`WalFence` (call). Anyone -> WAL: :class:`WalRollOver`
(cast or call), :class:`WalOverview`, :class:`WalForgetWriter` (calls). WAL -> segment writer: :class:`SegRoll` (cast); anyone -> segment writer:
:class:`SegOverview` (call). :mod:`wal.wal` states what each means.

Entries stay plain lists ``[index, term, payload_bytes]`` (no object per entry on the hot
path). Every process checks each message once, at its door, with :func:`check` (or the
:data:`CHECKS` table joined into its own checker): a malformed one is dropped and counted,
and a call gets ``("error", "bad_request", reason)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from transport import codec
from transport.messages import (
    Check, checker, fields, is_str, list_of, nat, nat64, nonempty_str, path_component, tuple_of,
    valid_endpoint,
)

__all__ = [
    "WalAppend", "WalWritten", "WalResendWrite", "WalError", "WalStarted", "WalFence",
    "WalRollOver",
    "WalOverview", "WalForgetWriter", "SegRoll", "SegOverview", "WAL_NOTICES",
    "CODES", "CHECKS", "check", "valid_uid",
]


def valid_uid(uid: str) -> bool:
    """A uid usable as a directory name under ``data_dir`` (no path tricks)."""
    return path_component(uid)


_uid = path_component


@dataclass(frozen=True, slots=True)
class WalAppend:
    """Cast writer -> WAL: consecutive ``entries`` ``[[index, term, payload_bytes], ...]``
    (index >= 1; term 0 only for a tombstone); ``lw`` is the writer's last index confirmed
    durable; ``seq`` is the send order, strictly increasing over every append sent for ``uid``
    by any of its processes on this host (``ra.log`` uses ``CLOCK_MONOTONIC`` nanoseconds): the
    WAL never writes an append that was sent before one it already wrote (:mod:`wal.batch`).
    The notices go to the cast's sender address.

    ``reply``: ``None``, or ``[to, frame, key]`` that the WAL sends once this append is synced
    (and never if it is not written): ``frame`` is an envelope already packed by the writer,
    sent as it is to the mailbox at endpoint ``to`` (whose CURVE server key is ``key``, ``b""``
    when the node runs no key pair). A follower's answer to its leader leaves this way, a
    process hop sooner than through the follower (``ra.core.effects.DurableReply``). Of a
    batch's appends of one writer, only the last with a ``reply`` has it sent (a later reply
    says all an earlier one does), and the ``WalWritten`` says which (``replied``)."""

    uid: str
    lw: int
    entries: list[list[Any]]
    seq: int
    reply: list[Any] | None = None


@dataclass(frozen=True, slots=True)
class WalWritten:
    """Cast WAL -> writer, after the batch holding them was synced: every ``[term, from, to]``
    range is durable. ``replied``: the last index of the append whose ``reply`` was sent with
    this batch, 0 if none was."""

    uid: str
    ranges: list[list[int]]
    replied: int = 0


@dataclass(frozen=True, slots=True)
class WalResendWrite:
    """Cast WAL -> writer: a request left a gap; resend everything from ``from_idx``."""

    uid: str
    from_idx: int


@dataclass(frozen=True, slots=True)
class WalError:
    """Cast WAL -> writer: a write or sync failed; this WAL incarnation confirms nothing more."""

    uid: str
    reason: str


@dataclass(frozen=True, slots=True)
class WalStarted:
    """Cast WAL -> every writer its predecessor knew: resend whatever is unconfirmed."""

    epoch: int


@dataclass(frozen=True, slots=True)
class WalRollOver:
    """Cast (ignored while the file is empty) or call (-> ``"ok"``): close the current file."""


@dataclass(frozen=True, slots=True)
class WalOverview:
    """Call -> the WAL's counters (:meth:`wal.wal.Wal.overview`)."""


@dataclass(frozen=True, slots=True)
class WalFence:
    """Call writer -> WAL -> ``"ok"``, made by a new process of writer ``uid`` *before* it reads
    its log from disk; its appends will be numbered from ``seq + 1``. Once answered, nothing
    sent by an earlier process of ``uid`` is ever written (:func:`wal.batch.fence`)."""

    uid: str
    seq: int


@dataclass(frozen=True, slots=True)
class WalForgetWriter:
    """Call -> ``"ok"``: the writer ``uid`` is gone for good."""

    uid: str


@dataclass(frozen=True, slots=True)
class SegRoll:
    """Cast WAL -> segment writer: a WAL file was closed; flush it."""


@dataclass(frozen=True, slots=True)
class SegOverview:
    """Call -> the segment writer's counters."""


WAL_NOTICES = (WalWritten, WalResendWrite, WalError, WalStarted)


def _entries(es: Any) -> bool:
    if type(es) is not list or not es:
        return False
    first = es[0][0] if type(es[0]) in (list, tuple) and es[0] else None
    if type(first) is not int or first < 1 or first + len(es) > _MAX_INDEX:
        return False
    i = first
    for e in es:
        if (type(e) not in (list, tuple) or len(e) != 3 or e[0] != i or type(e[0]) is not int
                or type(e[1]) is not int or not 0 <= e[1] < _MAX_INDEX
                or type(e[2]) is not bytes):
            return False
        i += 1
    return True


_MAX_INDEX = 1 << 63        # indexes and terms are u64 fields on disk (wal.format)
_nat3 = tuple_of(nat64, nat64, nat64)


def _range(r: Any) -> bool:
    return _nat3(r) and r[1] <= r[2]


_KEY_BYTES = 32         # a CURVE public key (transport.curve.KEY_BYTES)


def _reply(r: Any) -> bool:
    return r is None or (type(r) in (list, tuple) and len(r) == 3 and valid_endpoint(r[0])
                         and type(r[1]) is bytes and 0 < len(r[1])
                         and type(r[2]) is bytes and len(r[2]) in (0, _KEY_BYTES))


CODES: dict[int, type] = {
    50: WalAppend, 51: WalWritten, 52: WalResendWrite, 53: WalError, 54: WalStarted,
    55: WalRollOver, 56: WalOverview, 57: WalForgetWriter, 58: SegRoll, 59: SegOverview,
    110: WalFence,
}

CHECKS: dict[type, Check] = {
    WalAppend: fields(WalAppend, _uid, nat64, _entries, nat64, _reply),
    WalWritten: fields(WalWritten, _uid, list_of(_range, tuples=True), nat64),
    WalResendWrite: fields(WalResendWrite, _uid, lambda x: nat64(x) and x > 0),
    WalError: fields(WalError, _uid, is_str),
    WalStarted: fields(WalStarted, nat),
    WalRollOver: fields(WalRollOver),
    WalOverview: fields(WalOverview),
    WalFence: fields(WalFence, _uid, nat64),
    WalForgetWriter: fields(WalForgetWriter, nonempty_str),
    SegRoll: fields(SegRoll),
    SegOverview: fields(SegOverview),
}

check = checker(CHECKS)

_done = codec.registered()
for _code, _cls in CODES.items():
    if _done.get(_code) is not _cls:
        codec.register_dataclass(_cls, _code)
