"""Mirrors ra_log.erl. The disk Log behind ``ra.core.log.Log``: memtable + WAL client + segments
+ snapshots, for one server (``uid``) in ``data_dir/<uid>/``.

Contract (the core's Log contract, plus what the shell does):

* ``append``/``write`` never block and read no clock: they update the memtable and queue the
  entries. The shell calls :meth:`flush` once after each batch of events; it casts ONE
  ``WalAppend(uid, lw, entries, seq)`` message (:mod:`wal.messages`) to the node's WAL (through
  the ``send`` callable). ``seq`` numbers a process's appends consecutively from
  ``CLOCK_MONOTONIC`` in nanoseconds at the log's opening: a restarted server's process opens
  its log after the previous one died, so its appends count above everything that one sent
  (one append per nanosecond is far beyond any writer; the clock is the host's, and the WAL is
  on the host of its writers). The WAL writes no append sent before one it wrote already
  (:mod:`wal.batch`).
* ``fence(seq)``, if given, is called once, at the opening, *before* anything is read from
  disk: the server makes it the ``WalFence`` call, after which nothing an earlier process of
  this uid sent (and the WAL has not read yet) can be written. A log that may be reopened by a
  new process while the WAL runs must be fenced, or its recovered tail may change under it.
* The WAL's notices arrive in the server's mailbox; the shell validates each at its door and
  passes it to :meth:`handle_wal_event`, which returns the ``Written`` events to feed back
  through ``step`` (the core then calls :meth:`handle_written`), and takes care of
  ``WalResendWrite``, ``WalStarted`` (resend what was never confirmed) and ``WalError``
  (recorded in :meth:`overview`; nothing is confirmed). ``last_written`` only advances over
  entries the WAL reported synced *and* whose term still matches.
* :meth:`attach_reply` (the shell's ``DurableReply``): the next :meth:`flush`, if its last entry
  is the one the reply names, carries the reply in its last ``WalAppend``; the WAL sends it once
  that is synced, and the ``Written`` event of the range it ends says ``replied``.
* :meth:`tick` (call it now and then, e.g. each second) picks up segment files the segment writer
  produced and drops from memory the entries now durable in them.
* Snapshots (``update_release_cursor``, ``install_snapshot``) are durable when they return.
  ``update_release_cursor`` deletes segment files wholly below the *previous* snapshot (the
  store keeps two), so that a corrupt latest snapshot falls back to one whose following
  entries still exist.
* Checkpoints (``checkpoint``) go to ``checkpoints/`` (:class:`ra.log.snapshot.FileCheckpointStore`,
  at most ``max_checkpoints``) and truncate nothing. ``promote_checkpoint`` renames the newest
  one at or below the index into ``snapshots/`` (atomic) and then truncates exactly as
  ``update_release_cursor`` does. A snapshot, promoted or not, deletes the checkpoints at or
  below it; ``install_snapshot`` deletes them all (none can be above a snapshot the core
  installs: it installs only above its commit index).
  After ``install_snapshot`` a *tombstone* record (term 0 at ``index + 1``) is sent through the
  WAL so that older entries above the snapshot, still in WAL files or segments, are superseded
  by ra's overwrite rule; until the WAL confirms it, a crash may bring back such a stale tail
  after the snapshot (documented limitation).
* With ra's codec (the default), a ``usr`` command's reply mode, when a tuple, is stored as
  its own encoding (``bytes``): entries read back (``fetch``, ``take``) carry those bytes in
  its place, and :meth:`DiskLog.reply_mode` decodes them for the leader that answers. Every
  follower and every replay decodes each entry; only a leader ever reads a reply mode.
* Recovery (constructor): snapshot (newest that verifies), then segments, then every WAL file
  for this uid, oldest first, with the overwrite rule. Entries of closed WAL files and segments
  are durable; entries of the newest WAL file may not be synced yet, so they count as
  unconfirmed and are re-sent at the first :meth:`flush`. Then checkpoints: those the snapshot
  covers are deleted, and so are those the recovered log does not back (it lacks their entry or
  holds another term there: a crash lost the tail they were taken on); the newest remaining one
  is verified (corrupt ones set aside, falling back to older ones). :meth:`recover_snapshot`
  gives the core the newest of snapshot and checkpoint.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from ra.core.log import DEFAULT_MAX_CHECKPOINTS, DEFAULT_MIN_CHECKPOINT_INTERVAL
from ra.core.messages import SnapshotMeta, Written
from ra.log.memtable import Memtable
from wal.segments import Segments
from ra.log.snapshot import FileCheckpointStore, FileSnapshotStore
from wal.format import BadHeader, resolve, scan_file
from wal.messages import WalAppend, WalError, WalResendWrite, WalStarted, WalWritten
from wal.config import DEFAULT_SEGMENT_MAX_ENTRIES
from wal.segment_writer import wal_files

__all__ = ["DiskLog", "MAX_ENTRIES_PER_MESSAGE", "MAX_BYTES_PER_MESSAGE", "runs",
           "decode_reply_mode"]

Entry = tuple[int, int, Any]
Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]
MAX_ENTRIES_PER_MESSAGE = 4096


#: payload bytes one message carries at most, a WalAppend or an append_entries (a mailbox
#: refuses frames above 64 MiB): more leaves as consecutive messages
MAX_BYTES_PER_MESSAGE = 16 << 20


def runs(sizes: list[int], max_bytes: int = MAX_BYTES_PER_MESSAGE,
         max_n: int | None = None) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: consecutive slices of items whose ``sizes`` add up to at most
    ``max_bytes`` (an item larger than that alone), of at most ``max_n`` items each; one
    slice, ``(0, len(sizes))``, when everything fits."""
    out: list[tuple[int, int]] = []
    lo = size = 0
    for i, n in enumerate(sizes):
        if i > lo and (size + n > max_bytes or i - lo == max_n):
            out.append((lo, i))
            lo, size = i, 0
        size += n
    out.append((lo, len(sizes)))
    return out


def decode_reply_mode(raw: bytes, decode: Callable[[bytes], Any]) -> Any:
    """A reply mode stored encoded (:func:`_default_encode_each`), decoded with ``decode``;
    None (answer no one) unless it decodes to a non-empty tuple, the only reply modes there
    are: the bytes came from a leader, and nothing a peer sends may stop a server."""
    try:
        mode = decode(raw)
    except ValueError:      # codec.DecodeError
        return None
    return mode if type(mode) is tuple and mode else None


def _default_codec() -> Codec:
    from ra.wire import codec  # with ra's types registered
    return codec.encode, codec.decode


def _default_decode_many() -> Callable[[bytes, int], list[Any]]:
    from ra.wire import codec
    return codec.decode_many


def _default_encode_each() -> Callable[[list[Any]], list[bytes]]:
    """ra's codec over a batch of commands, with a ``usr`` command's reply mode (a tuple such as
    ``("notify", correlation, client)``) put in as its own encoding, a ``bytes``: only a leader
    answering it reads it back (:meth:`DiskLog.reply_mode`), while every follower decodes
    every entry it receives and a restart replays the whole log. A W3 entry decodes in 1.1 us
    instead of 2.8 (BENCHMARKS.md, session 15). A reply mode is None or a tuple (the core's
    validator), never bytes: a ``bytes`` there can only be this encoding."""
    from ra.wire import codec
    encode_each = codec.encode_each
    encode_mode = codec.Encoder().encode

    def encode_commands(cmds: list[Any]) -> list[bytes]:
        out = []
        for c in cmds:
            if type(c) is tuple and len(c) > 3 and c[0] == "usr" and type(c[2]) is tuple:
                c = ("usr", c[1], encode_mode(c[2]), *c[3:])
            out.append(c)
        return encode_each(out)
    return encode_commands


class DiskLog:
    """A server's durable log. ``send(msg)`` casts to the WAL; without it, messages are queued
    in :attr:`outbox` (tests, or a shell that sends them itself)."""

    def __init__(self, uid: str, data_dir: str, *, wal_dir: str | None = None,
                 send: Callable[[Any], None] | None = None, codec: Codec | None = None,
                 snapshot_codec: Codec | None = None,
                 segment_max_entries: int = DEFAULT_SEGMENT_MAX_ENTRIES,
                 max_checkpoints: int = DEFAULT_MAX_CHECKPOINTS,
                 min_checkpoint_interval: int = DEFAULT_MIN_CHECKPOINT_INTERVAL,
                 fence: Callable[[int], None] | None = None) -> None:
        if not uid or "/" in uid or uid.startswith(".") or len(uid.encode()) > 255:
            raise ValueError(f"bad uid {uid!r}: non-empty, no '/', no leading '.', <= 255 bytes")
        self.uid = uid
        self._uid_b = uid.encode()
        self.dir = os.path.join(data_dir, uid)
        self.wal_dir = wal_dir or os.path.join(data_dir, "wal")
        self._enc, self._dec = codec or _default_codec()
        #: bulk decoding of segment reads (:meth:`_decode_run`): ra's codec only
        self._dec_many: Callable[[bytes, int], list[Any]] | None = \
            None if codec is not None else _default_decode_many()
        #: encoding a batch of commands with one packer: ra's codec only
        self._enc_each: Callable[[list[Any]], list[bytes]] | None = \
            None if codec is not None else _default_encode_each()
        #: index -> (command, its encoded bytes): each entry's payload is encoded once, for the
        #: WAL and for append_entries (a follower's are the bytes it received). Read only
        #: when the command is the very object the entry holds (``is``): an overwritten or
        #: never-written index can never hand out another entry's bytes. Dropped once durable
        #: (:meth:`handle_written`) and by :meth:`tick`.
        self._payloads: dict[int, tuple[Any, bytes]] = {}
        self._senc, self._sdec = snapshot_codec or (self._enc, self._dec)
        self.segment_max_entries = segment_max_entries
        self.segments = Segments(os.path.join(self.dir, "segments"))
        self.snapshots = FileSnapshotStore(os.path.join(self.dir, "snapshots"),
                                           self._enc, self._dec)
        self.checkpoints = FileCheckpointStore(os.path.join(self.dir, "checkpoints"),
                                               self._enc, self._dec, max_checkpoints)
        self.min_checkpoint_interval = min_checkpoint_interval
        #: what :meth:`recover_snapshot` last returned: ("snapshot" | "checkpoint", index)
        self.recovered_from: tuple[str, int] | None = None
        self.mem = Memtable()
        self._send = send
        self.outbox: list[Any] = []
        self._snap: SnapshotMeta | None = None
        self._last: tuple[int, int] = (0, 0)
        self._written: tuple[int, int] = (0, 0)
        self._unsent_from: int | None = None
        self._tombstone: int | None = None
        #: (index, term, WalAppend.reply) for the next flush: attach_reply
        self._reply: tuple[int, int, list[Any]] | None = None
        self.wal_error: str | None = None
        self._await_tombstone = False
        #: the last WalAppend's number: this process's count starts at the clock (see above)
        self._seq = time.monotonic_ns()
        self.warnings: list[str] = []
        if fence is not None:
            fence(self._seq)    # before the disk is read: see the module docstring
        self._recover()

    # -- recovery ----------------------------------------------------------------------------
    def _recover(self) -> None:
        snap = self.snapshots.recover()
        self.warnings.extend(self.snapshots.warnings)
        self._snap = snap[0] if snap else None
        snap_idx, snap_term = self.snapshot_index_term()
        runs: list[tuple[int, list[tuple[int, int, bytes]]]] = []
        files = wal_files(self.wal_dir) if os.path.isdir(self.wal_dir) else []
        for seq, path in files:  # WAL files before segments: see Segments' precedence rule
            try:
                res = scan_file(path, self._uid_b)
            except FileNotFoundError:
                continue  # flushed meanwhile: its entries are in segments, read below
            except BadHeader as exc:
                self.warnings.append(f"unreadable WAL file {path}: {exc}")
                continue
            lst = resolve(res.records).get(self._uid_b)
            if lst:
                runs.append((seq, lst))
        self.segments.refresh()
        newest = files[-1][0] if files else None
        mem = self.mem
        unconfirmed_from: int | None = None
        for seq, lst in runs:
            f = lst[0][0]
            if len(mem) and f > mem.last + 1:
                mem.clear()  # forward jump after an installed snapshot (see wal.format.resolve)
            for i, t, p in lst:
                mem.put((i, t, self._dec(p) if t else None))
            if seq == newest:
                unconfirmed_from = f if unconfirmed_from is None else min(unconfirmed_from, f)
        # a tombstone (term 0) ends the log before it
        if len(mem) and mem.get(mem.last)[1] == 0:  # type: ignore[index]  # len(mem): it exists
            mem.truncate_from(mem.last)
        mem.drop_to(snap_idx)
        rng = self.segments.range()
        seg_last = rng[1] if rng else 0
        if rng and self.segments.fetch_term(seg_last) == 0:
            seg_last -= 1
        seg_hi = (mem.first - 1) if len(mem) else seg_last
        seg_hi = min(seg_hi, seg_last)
        # segments must cover snap+1 .. seg_hi contiguously, else the log ends at the gap
        if seg_hi > snap_idx and (rng is None or rng[0] > snap_idx + 1):
            self.warnings.append(f"gap after snapshot {snap_idx}: log truncated to it")
            seg_hi = snap_idx
            mem.clear()
        if len(mem) and mem.first > max(seg_hi, snap_idx) + 1:
            self.warnings.append(f"gap before WAL entries at {mem.first}: dropped")
            mem.clear()
        if len(mem):
            e = mem.get(mem.last)
            assert e is not None
            self._last = (e[0], e[1])
        elif seg_hi > snap_idx:
            self._last = (seg_hi, self.segments.fetch_term(seg_hi) or 0)
        else:
            self._last = (snap_idx, snap_term)
        w = self._last[0]
        if unconfirmed_from is not None and len(mem):
            w = min(w, max(unconfirmed_from, mem.first) - 1)
        w = max(w, snap_idx)
        self._written = (w, self.fetch_term(w) or 0)
        if w < self._last[0]:
            self._unsent_from = w + 1
        # checkpoints last: whether the log backs one needs the log recovered
        self.checkpoints.drop_upto(snap_idx)
        self.checkpoints.newest_valid(self._backs)
        self.warnings.extend(self.checkpoints.warnings)
        self.checkpoints.warnings.clear()

    def _backs(self, idx: int, term: int) -> bool:
        """The log holds entry ``idx`` with ``term`` above the snapshot: by log matching, the
        entries up to it are those a checkpoint taken there was built from."""
        return idx > self._snap_idx() and self.fetch_term(idx) == term

    # -- reads -------------------------------------------------------------------------------
    def last_index_term(self) -> tuple[int, int]:
        return self._last

    def last_written(self) -> tuple[int, int]:
        return self._written

    def next_index(self) -> int:
        return self._last[0] + 1

    def _snap_idx(self) -> int:
        return self._snap.index if self._snap is not None else 0

    def fetch(self, idx: int) -> Entry | None:
        if idx <= self._snap_idx() or idx > self._last[0]:
            return None
        e = self.mem.get(idx)
        if e is not None:
            return e
        r = self.segments.fetch(idx)
        if r is None:
            return None
        return (idx, r[0], self._dec(r[1]))

    def _decode_run(self, blob: bytes, lens: list[int]) -> list[Any]:
        """The commands of payloads lying back to back in ``blob``: with ra's codec, one
        unpacker for them all (recovery and catch-up read thousands at once); one by one with
        another codec, or to raise on the very payload a bulk decode stumbled on."""
        if self._dec_many is not None:
            try:
                return self._dec_many(blob, len(lens))
            except ValueError:     # the codec's DecodeError
                pass
        dec = self._dec
        mv = memoryview(blob)
        out = []
        o = 0
        for ln in lens:
            out.append(dec(bytes(mv[o:o + ln])))
            o += ln
        return out

    def fetch_term(self, idx: int) -> int | None:
        if idx == 0:
            return 0
        snap_idx = self._snap_idx()
        if idx == snap_idx and self._snap is not None:
            return self._snap.term
        if idx < snap_idx or idx > self._last[0]:
            return None
        e = self.mem.get(idx)
        if e is not None:
            return e[1]
        return self.segments.fetch_term(idx)

    def take(self, from_idx: int, n: int) -> list[Entry]:
        if from_idx <= self._snap_idx() or n <= 0:
            return []
        hi = min(from_idx + n - 1, self._last[0])
        out: list[Entry] = []
        mem = self.mem
        i = from_idx
        seg_to = min(hi, (mem.first - 1) if len(mem) else hi)
        if i <= seg_to:
            for f, terms, blob, lens in self.segments.read_runs(i, seg_to):
                out.extend(zip(range(f, f + len(terms)), terms, self._decode_run(blob, lens)))
            i += len(out)
            if i <= seg_to:
                return out
        get = mem.get
        while i <= hi:
            e = get(i)
            if e is None:
                break
            out.append(e)
            i += 1
        return out

    def payloads(self, entries: list[Entry]) -> list[bytes]:
        """The encoded command of each entry (``codec.encode(e[2])``): the bytes already made
        for the WAL or received from the leader where there are some, else encoded now (and
        kept, for entries in memory)."""
        cache = self._payloads
        get = cache.get
        out: list[bytes] = []
        append = out.append
        miss: list[int] = []
        for e in entries:
            c = get(e[0])
            if c is not None and c[0] is e[2]:
                append(c[1])
            else:
                miss.append(len(out))
                append(b"")
        if miss:
            cmds = [entries[k][2] for k in miss]
            enc = self._enc_each(cmds) if self._enc_each is not None \
                else [self._enc(c) for c in cmds]
            lo = self.mem.first if len(self.mem) else self._last[0] + 1
            for k, b in zip(miss, enc):
                out[k] = b
                e = entries[k]
                if e[0] >= lo:
                    cache[e[0]] = (e[2], b)
        return out

    def carry(self, first: int, commands: list[Any], payloads: list[bytes]) -> None:
        """``payloads[k]`` is ``codec.encode(commands[k])``, as received for the entry at
        ``first + k``: if the core writes these very commands, :meth:`flush` sends these bytes
        to the WAL instead of encoding them again."""
        self._payloads.update(zip(range(first, first + len(commands)), zip(commands, payloads)))

    def reply_mode(self, raw: bytes) -> Any:
        """A ``usr`` entry's reply mode that the log keeps encoded (see
        :func:`_default_encode_each`), decoded; None (answer no one) if it does not decode:
        the bytes came from a leader, and nothing a peer sends may stop this server."""
        return decode_reply_mode(raw, self._dec)

    # -- writes ------------------------------------------------------------------------------
    def append(self, entry: Entry) -> None:
        idx = entry[0]
        if idx != self._last[0] + 1:
            raise ValueError(f"append at {idx}, expected {self._last[0] + 1}")
        self.mem.put(entry)
        self._last = (idx, entry[1])
        if self._unsent_from is None:
            self._unsent_from = idx

    def write(self, entries: list[Entry]) -> None:
        if not entries:
            return
        first = entries[0][0]
        if first > self._last[0] + 1:
            raise ValueError(f"write at {first} leaves a gap after {self._last[0]}")
        snap_idx = self._snap_idx()
        if first <= snap_idx:
            raise ValueError(f"write at {first} inside the snapshot (index {snap_idx})")
        put = self.mem.put
        for e in entries:
            put(e)
        self._last = (entries[-1][0], entries[-1][1])
        if self._written[0] >= first:
            self._written = (first - 1, self.fetch_term(first - 1) or 0)
        if self._unsent_from is None or first < self._unsent_from:
            self._unsent_from = first

    def handle_written(self, ev: Written) -> bool:
        # Contract of ra.core.log.Log.handle_written: if the entry at to_idx still has the term
        # it was written with, log matching makes the whole prefix up to it identical to what
        # was written then, and every earlier write was confirmed first: all of it is durable.
        if ev.to_idx <= self._written[0] or ev.term == 0 or ev.to_idx > self._last[0]:
            return False
        if self.fetch_term(ev.to_idx) != ev.term:
            return False    # overwritten since; the overwrite's own notice will confirm it
        self._written = (ev.to_idx, ev.term)
        cache = self._payloads
        if cache:
            # durable: the WAL needs these bytes no more and the append_entries for them have
            # left (a resend encodes again), so memory per entry stays what it was. Indexes
            # were inserted in order (an overwrite keeps its old place: it is left for tick)
            to = ev.to_idx
            dead = []
            for k in cache:
                if k > to:
                    break
                dead.append(k)
            for k in dead:
                del cache[k]
        return True

    # -- the WAL client ----------------------------------------------------------------------
    def flush(self) -> int:
        """Send everything queued since the last flush to the WAL (one message, or a few for a
        very large resend). Returns the number of entries sent."""
        parts: list[list[list[Any]]] = []      # the entries of each message, in send order
        if self._tombstone is not None:
            # always sent, even when new writes start at the same index (they overwrite it in
            # the same batch): its notice is what tells stale notices from fresh ones
            parts.append([[self._tombstone, 0, b""]])
            self._tombstone = None
        frm = self._unsent_from
        n = 0
        if frm is not None:
            frm = max(frm, self._snap_idx() + 1)
            last = self._last[0]
            mem_first = self.mem.first if len(self.mem) else last + 1
            out: list[list[Any]] = []
            i = frm
            fetch = self.segments.fetch
            while i < mem_first and i <= last:      # a resend reaching below memory
                r = fetch(i)
                if r is None:
                    break
                out.append([i, r[0], r[1]])
                i += 1
            if mem_first <= i <= last:
                get = self.mem.get
                es: list[Any] = [get(j) for j in range(i, last + 1)]   # contiguous: all there
                out += [[e[0], e[1], p] for e, p in zip(es, self.payloads(es))]
            if out:
                cuts = runs([len(r[2]) for r in out], max_n=MAX_ENTRIES_PER_MESSAGE)
                parts += [out] if len(cuts) == 1 else [out[lo:hi] for lo, hi in cuts]
            n = len(out)
            self._unsent_from = None
        reply = None
        if self._reply is not None:
            idx, term, reply = self._reply
            self._reply = None
            # only on the append whose last entry the reply names: the WAL sends it when that
            # append, and so everything before it, is synced
            if not parts or parts[-1][-1][0] != idx or parts[-1][-1][1] != term:
                reply = None
        if parts:
            lw = self._written[0]
            seq = self._seq
            self._seq += len(parts)
            last = len(parts)
            for k, entries in enumerate(parts, 1):
                m = WalAppend(self.uid, lw, entries, seq + k, reply if k == last else None)
                if self._send is not None:
                    self._send(m)
                else:
                    self.outbox.append(m)
        return n

    def attach_reply(self, idx: int, term: int, reply: list[Any]) -> None:
        """Have the WAL send ``reply`` (``WalAppend.reply``: ``[to, frame, key]``) once the
        entry ``(idx, term)`` is synced, if the next :meth:`flush` ends with it (else it is
        dropped: the ``Written`` event then does not say ``replied``)."""
        self._reply = (idx, term, reply)

    def handle_wal_event(self, msg: Any) -> list[Written]:
        """Turn one *valid* WAL notice (:mod:`wal.messages`, checked at the shell's door) into
        the events to feed back to the core. Notices for another uid are ignored."""
        t = type(msg)
        if t is WalStarted:
            self.wal_error = None
            if self._await_tombstone and self._snap is not None:
                self._tombstone = self._snap.index + 1   # the new WAL may never have got it
            w = self._written[0]
            if w < self._last[0] and (self._unsent_from is None or w + 1 < self._unsent_from):
                self._unsent_from = w + 1
            return []
        if getattr(msg, "uid", None) != self.uid:
            return []
        if t is WalWritten:
            ranges = msg.ranges
            if self._await_tombstone:
                for k, r in enumerate(ranges):
                    # the tombstone of the *latest* install (a previous install's may still be
                    # in flight, and would end the wait too early: CORE-BUGS #8)
                    if r[0] == 0 and self._snap is not None and r[1] == self._snap.index + 1:
                        self._await_tombstone = False
                        ranges = ranges[k + 1:]
                        break
                else:
                    return []
            r = msg.replied
            return [Written(term, f, to, to == r) for term, f, to in ranges if term != 0]
        if t is WalResendWrite:
            frm = max(msg.from_idx, self._snap_idx() + 1)
            if frm <= self._last[0] and (self._unsent_from is None or frm < self._unsent_from):
                self._unsent_from = frm
        elif t is WalError:
            self.wal_error = msg.reason
        return []

    def resend_unconfirmed(self) -> bool:
        """Queue everything not yet confirmed for the next :meth:`flush` (the shell calls this
        when confirmations stall, e.g. the WAL restarted while this server was idle). True if
        anything is unconfirmed."""
        w = self._written[0]
        if w >= self._last[0]:
            return False
        if self._unsent_from is None or w + 1 < self._unsent_from:
            self._unsent_from = w + 1
        return True

    def tick(self) -> int:
        """Pick up new segment files; drop from memory the entries durable in them. Returns the
        number of entries dropped."""
        mem = self.mem
        self._prune_payloads()
        if not len(mem):
            return 0        # nothing to drop (and nothing new to read: segments hold it all)
        segs = self.segments
        segs.refresh()
        rng = segs.range()
        if rng is None or rng[0] > mem.first:
            return 0
        hi = min(self._written[0], rng[1], mem.last)
        if self._unsent_from is not None:
            hi = min(hi, self._unsent_from - 1)
        upto = _agreeing(mem, segs.term_runs_from(mem.first, hi))
        n = upto - mem.first + 1
        if n > 0:
            mem.drop_to(upto)
            self._prune_payloads()
        return max(n, 0)

    def _prune_payloads(self) -> None:
        """Forget the bytes of entries no longer in memory, and of carried ones never written."""
        cache = self._payloads
        if not cache:
            return
        mem = self.mem
        if not len(mem):
            cache.clear()
            return
        lo, hi = mem.first, mem.last
        for i in [i for i in cache if i < lo or i > hi]:
            del cache[i]

    # -- snapshots ---------------------------------------------------------------------------
    def snapshot_meta(self) -> SnapshotMeta | None:
        return self._snap

    def snapshot_index_term(self) -> tuple[int, int]:
        return (self._snap.index, self._snap.term) if self._snap is not None else (0, 0)

    def update_release_cursor(self, idx: int, term: int, cluster: tuple[Any, ...],
                              machine_version: int, machine_state: Any) -> None:
        if self._snap is not None and idx <= self._snap.index:
            return
        meta = SnapshotMeta(idx, term, tuple(cluster), machine_version)
        self.snapshots.write(meta, self._senc(machine_state))
        self._snapshot_taken(meta)

    def _snapshot_taken(self, meta: SnapshotMeta) -> None:
        """``meta`` is now the durable current snapshot (written or promoted): truncate."""
        idx, term = meta.index, meta.term
        self._snap = meta
        self.checkpoints.drop_upto(idx)
        self.mem.drop_to(idx)
        # below the *previous* snapshot only: if the new one turns out corrupt at recovery, the
        # fallback still finds every entry after it (no acknowledged entry is lost)
        self.segments.delete_below(self.snapshots.previous_index())
        if self._last[0] < idx:
            self._last = (idx, term)
        if self._written[0] < idx:
            self._written = (idx, term)
        if self._unsent_from is not None and self._unsent_from <= idx:
            self._unsent_from = idx + 1 if idx < self._last[0] else None

    def read_snapshot(self) -> tuple[SnapshotMeta, Any] | None:
        r = self.snapshots.read_current()
        if r is None:
            return None
        return r[0], self._sdec(r[1])

    def checkpoint(self, idx: int, term: int, cluster: tuple[Any, ...], machine_version: int,
                   machine_state: Any) -> None:
        latest = self.checkpoints.latest()
        # ra's rule (ra_log:should_snapshot(checkpoint, ...)): above the newest checkpoint by
        # more than the minimum interval, counted from 0 when there is none
        if idx <= self._snap_idx() or idx <= (latest[0] if latest else 0) \
                + self.min_checkpoint_interval:
            return
        meta = SnapshotMeta(idx, term, tuple(cluster), machine_version)
        self.checkpoints.write(meta, self._senc(machine_state))

    def promote_checkpoint(self, idx: int) -> bool:
        if idx <= self._snap_idx():
            return False
        cp = self.checkpoints.take(idx, self._backs)
        self.warnings.extend(self.checkpoints.warnings)
        self.checkpoints.warnings.clear()
        if cp is None:
            return False
        meta, path = cp
        self.snapshots.adopt(path, meta)
        self._snapshot_taken(meta)
        return True

    def checkpoint_index_terms(self) -> list[tuple[int, int]]:
        """(index, term) of the checkpoints kept, oldest first (tests, overview)."""
        return self.checkpoints.index_terms()

    def recover_snapshot(self) -> tuple[SnapshotMeta, Any] | None:
        cp = self.checkpoints.newest_valid(self._backs)
        self.warnings.extend(self.checkpoints.warnings)
        self.checkpoints.warnings.clear()
        if cp is not None:
            self.recovered_from = ("checkpoint", cp[0].index)
            return cp[0], self._sdec(cp[1])
        snap = self.read_snapshot()
        self.recovered_from = ("snapshot", snap[0].index) if snap is not None else None
        return snap

    def snapshot_chunks(self, chunk_size: int) -> tuple[SnapshotMeta, list[bytes]]:
        r = self.snapshots.read_current()
        assert r is not None, "no snapshot to send"
        meta, data = r
        chunks = [data[i:i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
        return meta, chunks

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> Any:
        state = self._sdec(data)
        self.snapshots.write(meta, data)
        self._snap = meta
        # the core installs only above its commit index, so every checkpoint (taken at an
        # applied index) is at or below the installed one; any other would be backed by no
        # entry of the log emptied here: all go
        for it in self.checkpoints.index_terms():
            self.checkpoints.discard(it)
        self.mem.clear()
        self._payloads.clear()
        self.segments.delete_below(meta.index)
        self._last = (meta.index, meta.term)
        self._written = (meta.index, meta.term)
        self._unsent_from = None
        self._tombstone = meta.index + 1
        # WAL notices still in flight for writes made before this install would now "confirm"
        # re-written entries of the same index and term that are not durable yet (the
        # tombstone supersedes the old records): ignore notices until the tombstone's own
        self._await_tombstone = True
        return state

    # -- misc --------------------------------------------------------------------------------
    def overview(self) -> dict[str, Any]:
        rng = self.segments.range()
        return {"uid": self.uid, "last_index_term": self._last, "last_written": self._written,
                "snapshot": self.snapshot_index_term(), "mem_entries": len(self.mem),
                "checkpoints": self.checkpoints.index_terms(),
                "recovered_from": self.recovered_from,
                "segments": rng, "wal_error": self.wal_error, "warnings": list(self.warnings),
                "unsent_from": self._unsent_from}

    def close(self) -> None:
        self.segments.close()


def _agreeing(mem: Memtable, runs: list[tuple[int, int, int]]) -> int:
    """The last index up to which every entry of ``mem`` from its first has the term that
    ``runs`` (consecutive ``(first, last, term)`` from ``mem.first``) give it;
    ``mem.first - 1`` if the first does not."""
    upto = mem.first - 1
    get = mem.get
    for a, b, term in runs:
        for i in range(a, b + 1):
            e = get(i)
            if e is None or e[1] != term:
                return upto
            upto = i
    return upto
