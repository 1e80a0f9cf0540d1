"""Memory twins of the storage interfaces. Mirrors test/ra_log_memory.erl.

``MemoryLog`` and ``MemoryMeta`` keep a *working* view (what the core sees) and a *durable*
image (what survives a crash). Writes are queued; ``sync()`` makes everything queued durable and
returns the ``Written``/``MetaWritten`` events to feed back to the server; ``crash()`` throws away
what was never synced, exactly like a process whose WAL never fsynced. Snapshots, checkpoints and
promotions are durable at once, as the disk log's are. After ``crash()`` the checkpoints are what
the disk log's recovery keeps: none at or below the snapshot, none the surviving log does not
back. Used by core unit tests and the simulator; the contract suite runs them against the disk
implementations.
"""
from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from ra.core.log import DEFAULT_MAX_CHECKPOINTS, DEFAULT_MIN_CHECKPOINT_INTERVAL
from ra.core.messages import MetaWritten, SnapshotMeta, Written

__all__ = ["MemoryLog", "MemoryMeta", "repr_codec"]

Entry = tuple[int, int, Any]


def _repr_encode(value: Any) -> bytes:
    return repr(value).encode()


def _repr_decode(data: bytes) -> Any:
    return ast.literal_eval(data.decode())


#: Default snapshot codec of the memory twin: Python literals (tuples, lists, dicts, ints, str...).
repr_codec: tuple[Callable[[Any], bytes], Callable[[bytes], Any]] = (_repr_encode, _repr_decode)


class MemoryLog:
    """In-memory ``ra.core.log.Log`` with an explicit durability model (see module docstring)."""

    def __init__(self, codec: tuple[Callable[[Any], bytes], Callable[[bytes], Any]] = repr_codec,
                 *, ack_before_durable: bool = False, reply_before_durable: bool = False,
                 max_checkpoints: int = DEFAULT_MAX_CHECKPOINTS,
                 min_checkpoint_interval: int = DEFAULT_MIN_CHECKPOINT_INTERVAL) -> None:
        self._encode, self._decode = codec
        # checkpoints, oldest first; durable at once (no separate durable image)
        self._cps: list[tuple[SnapshotMeta, bytes]] = []
        self._max_cps = max(1, max_checkpoints)
        self._min_cp_interval = min_checkpoint_interval
        self.recovered_from: tuple[str, int] | None = None
        self._entries: dict[int, Entry] = {}
        self._last: tuple[int, int] = (0, 0)
        self._written: tuple[int, int] = (0, 0)
        self._snap: tuple[SnapshotMeta, bytes] | None = None
        # durable image
        self._d_entries: dict[int, Entry] = {}
        self._d_last = 0
        self._d_snap: tuple[SnapshotMeta, bytes] | None = None
        self._pending: list[list[Entry]] = []
        # test-only bug switch: report writes durable at once while the disk still lacks them
        self._ack_before_durable = ack_before_durable
        self._early: list[Written] = []
        self._await_tombstone = False
        #: DurableReply attached to a pending write, by its place in ``_pending``
        self._replies: dict[int, tuple[Any, Any]] = {}
        #: replies the last syncs released: (to, msg), for the harness to send
        self._forwards: list[tuple[Any, Any]] = []
        # test-only bug switch: send an attached reply at once, before its write is durable
        self._reply_before_durable = reply_before_durable

    # -- reads -----------------------------------------------------------------------------
    def reply_mode(self, raw: bytes) -> Any:
        """Entries keep their reply modes as appended: nothing encoded to decode."""
        return None

    def last_index_term(self) -> tuple[int, int]:
        return self._last

    def last_written(self) -> tuple[int, int]:
        return self._written

    def next_index(self) -> int:
        return self._last[0] + 1

    def fetch(self, idx: int) -> Entry | None:
        return self._entries.get(idx)

    def fetch_term(self, idx: int) -> int | None:
        if idx == 0:
            return 0
        e = self._entries.get(idx)
        if e is not None:
            return e[1]
        if self._snap is not None and self._snap[0].index == idx:
            return self._snap[0].term
        return None

    def take(self, from_idx: int, n: int) -> list[Entry]:
        out = []
        get = self._entries.get
        for i in range(from_idx, min(from_idx + n, self._last[0] + 1)):
            e = get(i)
            if e is None:
                break
            out.append(e)
        return out

    # -- writes ----------------------------------------------------------------------------
    def append(self, entry: Entry) -> None:
        idx = entry[0]
        if idx != self._last[0] + 1:
            raise ValueError(f"append at {idx}, expected {self._last[0] + 1}")
        self._entries[idx] = entry
        self._last = (idx, entry[1])
        # coalesce consecutive appends of one term into one pending write
        if self._pending and self._pending[-1][-1][0] == idx - 1 \
                and self._pending[-1][-1][1] == entry[1]:
            self._pending[-1].append(entry)
        else:
            self._pending.append([entry])
        self._maybe_early(idx, idx, entry[1])

    def write(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0][0]
        if first > self._last[0] + 1:
            raise ValueError(f"write at {first} leaves a gap after {self._last[0]}")
        snap_idx = self._snap[0].index if self._snap else 0
        if first <= snap_idx:
            raise ValueError(f"write at {first} inside the snapshot (index {snap_idx})")
        for i in range(first, self._last[0] + 1):
            self._entries.pop(i, None)
        for e in entries:
            self._entries[e[0]] = e
        self._last = (entries[-1][0], entries[-1][1])
        if self._written[0] >= first:
            self._written = (first - 1, self.fetch_term(first - 1) or 0)
        self._pending.append(list(entries))
        self._maybe_early(first, entries[-1][0], entries[-1][1])

    def _maybe_early(self, frm: int, to: int, term: int) -> None:
        if self._ack_before_durable:
            self._early.append(Written(term, frm, to))

    def handle_written(self, ev: Written) -> bool:
        if self._await_tombstone:
            # only the latest install's tombstone ends the wait (CORE-BUGS #8)
            if ev.term == 0 and self._snap is not None and ev.from_idx == self._snap[0].index + 1:
                self._await_tombstone = False
            return False
        if ev.term == 0 or ev.to_idx <= self._written[0] or \
                self.fetch_term(ev.to_idx) != ev.term:
            return False
        self._written = (ev.to_idx, ev.term)
        return True

    # -- snapshots -------------------------------------------------------------------------
    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snap[0] if self._snap else None

    def snapshot_index_term(self) -> tuple[int, int]:
        return (self._snap[0].index, self._snap[0].term) if self._snap else (0, 0)

    def update_release_cursor(self, idx: int, term: int, cluster: tuple[Any, ...],
                              machine_version: int, machine_state: Any) -> None:
        if self._snap is not None and idx <= self._snap[0].index:
            return
        meta = SnapshotMeta(idx, term, tuple(cluster), machine_version)
        self._snapshot_taken(meta, self._encode(machine_state))

    def _snapshot_taken(self, meta: SnapshotMeta, data: bytes) -> None:
        """``meta`` is now the (durable) snapshot, written or promoted: truncate."""
        idx, term = meta.index, meta.term
        self._snap = (meta, data)
        self._d_snap = self._snap
        self._cps = [c for c in self._cps if c[0].index > idx]
        for i in [i for i in self._entries if i <= idx]:
            del self._entries[i]
        for i in [i for i in self._d_entries if i <= idx]:
            del self._d_entries[i]
        if self._last[0] < idx:
            self._last = (idx, term)
        if self._written[0] < idx:
            # entries below an applied index are committed; the snapshot now holds them durably
            self._written = (idx, term)

    def read_snapshot(self) -> tuple[SnapshotMeta, Any] | None:
        if self._snap is None:
            return None
        return self._snap[0], self._decode(self._snap[1])

    # -- checkpoints (the rules of ra.log.log.DiskLog, without files) --------------------------
    def _snap_idx(self) -> int:
        return self._snap[0].index if self._snap else 0

    def _backs(self, idx: int, term: int) -> bool:
        return idx > self._snap_idx() and self.fetch_term(idx) == term

    def _newest_valid(self, upto: int | None = None) -> tuple[SnapshotMeta, bytes] | None:
        """The newest checkpoint at or below ``upto`` the log backs; unbacked ones met on the
        way down are dropped (as the disk log's ``FileCheckpointStore.newest_valid``)."""
        for cp in reversed(list(self._cps)):
            m = cp[0]
            if upto is not None and m.index > upto:
                continue
            if self._backs(m.index, m.term):
                return cp
            self._cps.remove(cp)
        return None

    def checkpoint(self, idx: int, term: int, cluster: tuple[Any, ...], machine_version: int,
                   machine_state: Any) -> None:
        latest = self._cps[-1][0].index if self._cps else 0
        if idx <= self._snap_idx() or idx <= latest + self._min_cp_interval:
            return
        meta = SnapshotMeta(idx, term, tuple(cluster), machine_version)
        self._cps.append((meta, self._encode(machine_state)))
        del self._cps[:-self._max_cps]

    def promote_checkpoint(self, idx: int) -> bool:
        if idx <= self._snap_idx():
            return False
        cp = self._newest_valid(idx)
        if cp is None:
            return False
        self._cps.remove(cp)
        self._snapshot_taken(*cp)
        return True

    def checkpoint_index_terms(self) -> list[tuple[int, int]]:
        """(index, term) of the checkpoints kept, oldest first."""
        return [(m.index, m.term) for m, _ in self._cps]

    def recover_snapshot(self) -> tuple[SnapshotMeta, Any] | None:
        cp = self._newest_valid()
        if cp is not None:
            self.recovered_from = ("checkpoint", cp[0].index)
            return cp[0], self._decode(cp[1])
        snap = self.read_snapshot()
        self.recovered_from = ("snapshot", snap[0].index) if snap is not None else None
        return snap

    def snapshot_chunks(self, chunk_size: int) -> tuple[SnapshotMeta, list[bytes]]:
        assert self._snap is not None, "no snapshot to send"
        meta, data = self._snap
        chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
        return meta, chunks

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> Any:
        state = self._decode(data)
        self._snap = (meta, data)
        self._d_snap = self._snap
        self._cps = []      # all at or below the installed index (see DiskLog.install_snapshot)
        self._entries.clear()
        self._d_entries.clear()
        self._d_last = meta.index
        # Notices already handed out for writes before this install must not confirm entries
        # re-written since at the same index and term: like the disk log's WAL tombstone, a
        # term-0 notice marks where the new writes start, and nothing is confirmed before it.
        self._pending = [[(meta.index + 1, 0, None)]]
        self._replies.clear()
        self._await_tombstone = True
        self._last = (meta.index, meta.term)
        self._written = (meta.index, meta.term)
        return state

    # -- the durability model (test harness side) -------------------------------------------
    def attach_reply(self, to: Any, msg: Any) -> bool:
        """What a shell does with a ``DurableReply``: hand ``msg`` (for ``to``) to the pending
        write that ends at ``(msg.last_index, msg.last_term)``, to be released by the
        :meth:`sync` that makes it durable (:meth:`take_forwards`), whose ``Written`` then says
        ``replied``. False (nothing kept) if the last pending write is not that one."""
        p = self._pending
        if not p or (p[-1][-1][0], p[-1][-1][1]) != (msg.last_index, msg.last_term):
            return False
        if self._reply_before_durable:
            self._forwards.append((to, msg))
        self._replies[len(p) - 1] = (to, msg)
        return True

    def take_forwards(self) -> list[tuple[Any, Any]]:
        """The replies released since the last call, in order: ``(to, msg)``."""
        out, self._forwards = self._forwards, []
        return out

    def has_pending(self) -> bool:
        return bool(self._pending) or bool(self._early)

    def sync(self) -> list[Written]:
        """Make every queued write durable; return the notices to feed back, in order."""
        out: list[Written] = []
        # as the WAL: of the replies attached, the last one that no later write overwrites
        cand: tuple[int, int, tuple[Any, Any]] | None = None
        for k, entries in enumerate(self._pending):
            first = entries[0][0]
            if cand is not None and first <= cand[1]:
                cand = None
            if entries[0][1] == 0:      # the install's tombstone: nothing to make durable
                out.append(Written(0, first, first))
                continue
            for i in range(first, self._d_last + 1):
                self._d_entries.pop(i, None)
            for e in entries:
                self._d_entries[e[0]] = e
            self._d_last = entries[-1][0]
            r = self._replies.get(k)
            if r is not None:
                cand = (len(out), entries[-1][0], r)
            out.append(Written(entries[-1][1], first, entries[-1][0]))
        if cand is not None:
            w = out[cand[0]]
            out[cand[0]] = Written(w.term, w.from_idx, w.to_idx, True)
            if not self._reply_before_durable:
                self._forwards.append(cand[2])
        self._pending.clear()
        self._replies.clear()
        if self._ack_before_durable:
            self._early.clear()
            return []
        return out

    def take_early_acks(self) -> list[Written]:
        """Bug switch only: notices handed out before the data is durable."""
        out, self._early = self._early, []
        return out

    def crash(self) -> None:
        """Forget everything that was never synced (a process crash with the WAL unsynced)."""
        self._pending.clear()
        self._replies.clear()
        self._forwards.clear()
        self._await_tombstone = False
        self._early.clear()
        self._snap = self._d_snap
        snap_idx, snap_term = self.snapshot_index_term()
        self._entries = {i: e for i, e in self._d_entries.items() if i > snap_idx}
        # the durable image is contiguous from the snapshot on
        last = snap_idx
        while last + 1 in self._entries:
            last += 1
        for i in [i for i in self._entries if i > last]:
            del self._entries[i]
        self._d_entries = dict(self._entries)
        self._d_last = last
        self._last = (last, self._entries[last][1]) if last > snap_idx else (snap_idx, snap_term)
        self._written = self._last
        # the disk log's recovery: checkpoints the snapshot covers go, and from the newest down
        # those the surviving log does not back (the tail they were taken on was never synced)
        self._cps = [c for c in self._cps if c[0].index > snap_idx]
        self._newest_valid()

    def entries(self) -> list[Entry]:
        """Every entry in the working log, in order (for checkers)."""
        return [self._entries[i] for i in sorted(self._entries)]


class MemoryMeta:
    """In-memory ``ra.core.meta.MetaStore``: ``store`` is durable after ``sync()``."""

    def __init__(self) -> None:
        self._term, self._voted_for = 0, None
        self._d_term, self._d_voted_for = 0, None
        self._seq = 0
        self._synced_seq = 0
        self._last_applied = 0

    def fetch(self) -> tuple[int, Any]:
        return self._term, self._voted_for

    def store(self, current_term: int, voted_for: Any) -> int:
        self._term, self._voted_for = current_term, voted_for
        self._seq += 1
        return self._seq

    def last_applied(self) -> int:
        return self._last_applied

    def store_last_applied(self, idx: int) -> None:
        self._last_applied = idx

    def has_pending(self) -> bool:
        return self._seq > self._synced_seq

    def sync(self) -> list[MetaWritten]:
        if self._seq == self._synced_seq:
            return []
        self._d_term, self._d_voted_for = self._term, self._voted_for
        self._synced_seq = self._seq
        return [MetaWritten(self._seq)]

    def crash(self) -> None:
        self._term, self._voted_for = self._d_term, self._d_voted_for
        self._synced_seq = self._seq
