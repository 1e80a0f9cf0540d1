"""Mirrors ra_log_wal.erl. The node's write-ahead log process: one fsync per batch for every server.

Protocol (the typed messages of :mod:`wal.messages`, carried by ``transport`` casts/calls;
``uid`` is the writer's str uid):

* writer -> WAL, cast ``WalAppend(uid, lw, [[index, term, payload_bytes], ...], seq)``:
  consecutive entries; ``lw`` is the writer's last index confirmed durable; ``seq`` its send
  order (an append sent before one already written is dropped, counted as ``stale_appends``:
  :mod:`wal.batch`). The notices go to the cast's sender address.
* WAL -> writer, cast ``WalWritten(uid, [[term, from, to], ...], replied)`` after the batch
  holding them was synced: every listed range is durable. Never sent for an entry that was not
  synced. Just before it, the ``reply`` of the writer's last append in the batch that carried
  one (and that no later append of the batch overwrote) is sent, as it is, where it says;
  ``replied`` is that append's last index (0: none sent). With ``notice_defer_ms`` (the WAL
  process's default: 2), a notice that follows such a reply is held back instead: it leaves at
  the start of the WAL's next batch, before anything of that batch, or ``notice_defer_ms``
  after the sync when no batch comes, or when the WAL closes; notices to one writer keep their
  order. (The reply is what the leader waits for; the writer's own work on the notice, its
  apply, then runs during the next sync rather than beside the leader the reply just woke.)
* WAL -> writer, cast ``WalResendWrite(uid, from_idx)``: a request left a gap; resend
  everything from ``from_idx`` (:mod:`wal.batch` has the rule).
* WAL -> writer, cast ``WalError(uid, reason)``: a write or sync failed; nothing more will be
  confirmed by this WAL incarnation (it exits so that its supervisor restarts it).
* WAL -> writer, cast ``WalStarted(epoch)``: sent at start to every writer address the
  previous incarnation knew (best-effort file ``writers``): resend whatever is unconfirmed.
* writer -> WAL, call ``WalFence(uid, seq)`` -> ``"ok"``: a new process of the writer, before
  it reads its log from disk; nothing an earlier process of ``uid`` sent is written after the
  answer (:func:`wal.batch.fence`).
* call ``WalOverview()`` -> dict; call ``WalRollOver()`` -> ``"ok"``; cast ``WalRollOver()``
  (a server with a large in-memory tail asks; ignored when the file is empty);
  call ``WalForgetWriter(uid)`` -> ``"ok"``.

Anything else that arrives — a malformed message (bad uid, non-consecutive entries, a field of
the wrong type, a call sent as a cast, an append with no sender address), a message of
another protocol, a bare term — is dropped and counted per reason (``overview()["dropped"]``;
``dropped_bad_messages`` is the total), never written; a call gets
``("error", "bad_request", reason)``. Nothing that arrives can make the WAL raise.

Loop contract: drain *everything* queued (up to ``max_batch_bytes``), plan the batch purely
(:func:`wal.batch.plan_batch`), write it with ONE write call (in place: the file is allocated
ahead of its records, :data:`PREALLOCATE_BYTES`), sync ONCE (``fdatasync``; with
``write_strategy="o_sync"`` the file is opened ``O_SYNC`` and the write itself is the sync), and
only then send the notices. At ``max_size_bytes`` the WAL rolls to a new file (the new file and
its directory entry are synced before use) and nudges the segment writer. With
``idle_poll_ms`` the process holds a PM QoS request that keeps idle CPUs polling from a batch
until that long after the last one (:mod:`wal.idle_poll`). At start, every
existing WAL file is recovered (torn tails end the log) and flushed to segments before the first
append is accepted.

Entry point: :func:`run` with a :class:`wal.config.WalConfig` (how ra forks it), or
``python -m wal.wal --wal-dir D --data-dir D --endpoint E [...]`` (:func:`main`; ``--help``).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from transport.messages import BAD_REQUEST, checker
from wal import messages as wm
from wal import osio
from wal.config import (DEFAULT_MAX_SIZE_BYTES, DEFAULT_SEGMENT_MAX_ENTRIES, WRITE_STRATEGIES,
                        WalConfig, coerce, from_argv)
from wal.batch import Append, WriterState, fence, needs_roll, plan_batch
from wal.format import HEADER_SIZE, encode_header
from wal.idle_poll import IdlePoll
from wal.segment_writer import (flush_lock, flush_wal_file,
                                wal_file_name, wal_files)

__all__ = ["Wal", "main", "run", "DEFAULT_MAX_SIZE_BYTES", "WRITE_STRATEGIES"]

_log = logging.getLogger("wal.wal")

_WRITERS_FILE = "writers"
#: the file is allocated this far ahead of its records (zeros, which end a scan as a torn
#: tail does: wal.format) and written in place: the ``fdatasync`` of a write into allocated
#: space is shorter than that of an append that grows the file (ext4 on this class of
#: machine, 120-byte batches: 130-160 -> 72-110 us alone, 207-260 -> 122-189 us with three
#: WALs syncing at once; BENCHMARKS.md, session 12). Costs at most this much more disk per
#: node; a rolled file is cut back.
PREALLOCATE_BYTES = 1 << 20
_NO_MORE_ALLOCATION = 1 << 62

Notify = Callable[[Any, Any], None]
#: ``forward(to, frame, key) -> sent?``: send a writer's packed frame (``WalAppend.reply``)
Forward = Callable[[str, bytes, bytes], bool]


class Wal:
    """The WAL's state and batch handling, independent of the mailbox (tests drive it directly).

    ``notify(addr, msg)`` sends a notice to a writer; ``forward(to, frame, key)`` an append's
    ``reply`` (none is sent without it). Durability: :meth:`handle_appends` returns only after
    the batch is synced (or the WAL has failed); ``written`` notices and replies are sent only
    for synced entries, and never again after a failed write or sync. With ``defer_notices``
    the notices that follow a sent reply wait in :attr:`held` for the next
    :meth:`handle_appends` or :meth:`send_held` (the module contract).
    """

    def __init__(self, wal_dir: str, data_dir: str, notify: Notify, *,
                 max_size_bytes: int = DEFAULT_MAX_SIZE_BYTES, checksums: bool = True,
                 write_strategy: str = "default",
                 segment_max_entries: int = DEFAULT_SEGMENT_MAX_ENTRIES,
                 on_roll: Callable[[], None] | None = None,
                 forward: Forward | None = None, defer_notices: bool = False) -> None:
        if write_strategy not in WRITE_STRATEGIES:
            raise ValueError(f"write_strategy {write_strategy!r} not in {WRITE_STRATEGIES}")
        self.wal_dir = wal_dir
        self.data_dir = data_dir
        self.notify = notify
        self.max_size_bytes = max_size_bytes
        self.checksums = checksums
        self.write_strategy = write_strategy
        self.segment_max_entries = segment_max_entries
        self.on_roll = on_roll
        self.forward = forward
        self.defer_notices = defer_notices
        #: notices held back after a sent reply, in order: (addr, WalWritten); the monotonic
        #: time of the sync that made the first of them durable
        self.held: list[tuple[Any, wm.WalWritten]] = []
        self.held_since = 0.0
        self.writers: dict[bytes, WriterState] = {}
        self._known_addrs: dict[str, Any] = {}
        self._fd = -1
        self._seq = 0
        self._size = 0
        self._allocated = 0
        self.failed: str | None = None
        self.epoch = time.time_ns()
        self.stats: dict[str, int] = {
            "batches": 0, "entries": 0, "syncs": 0, "bytes": 0, "roll_overs": 0, "resends": 0,
            "recovered_files": 0, "recovered_entries": 0, "dropped_bad_messages": 0,
            "stale_appends": 0, "replies": 0,
            "last_batch_entries": 0, "max_batch_entries": 0,
            "last_batch_writes": 0}
        self.dropped: dict[str, int] = {}       # reason -> messages dropped at the door
        #: the process's idle-poll request (set by :func:`run`), reported by :meth:`overview`
        self.idle_poll: IdlePoll | None = None
        os.makedirs(wal_dir, exist_ok=True)

    # -- start -------------------------------------------------------------------------------
    def recover(self) -> None:
        """Flush every existing WAL file to segments (torn tails end each log), delete them,
        open a fresh file, and tell the writers the previous incarnation knew to resend."""
        with flush_lock(self.wal_dir):
            files = wal_files(self.wal_dir)
            for seq, path in files:
                counts = flush_wal_file(path, self.data_dir, self.segment_max_entries)
                self.stats["recovered_files"] += 1
                self.stats["recovered_entries"] += sum(counts.values())
            self._seq = files[-1][0] if files else 0
        if files:
            _log.info("recovered %d WAL files (%d entries) into segments",
                      self.stats["recovered_files"], self.stats["recovered_entries"])
        self._open_next()
        try:
            with open(os.path.join(self.wal_dir, _WRITERS_FILE)) as f:
                self._known_addrs = json.load(f)
        except (OSError, ValueError):
            self._known_addrs = {}
        for addr in set(self._known_addrs.values()):
            self.notify(addr, wm.WalStarted(self.epoch))

    def _open_next(self) -> None:
        io = osio.get_os()
        if self._fd >= 0:
            # the closed file keeps no allocated tail (its zeros would end its scan all the same)
            io.ftruncate(self._fd, self._size)
            io.close(self._fd)
            self._fd = -1
        self._seq += 1
        path = os.path.join(self.wal_dir, wal_file_name(self._seq))
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        if self.write_strategy == "o_sync":
            flags |= os.O_SYNC
        fd = io.open(path, flags)
        self._fd = fd
        self._allocated = 0
        self._allocate(PREALLOCATE_BYTES)
        io.pwrite_all(fd, encode_header(self.checksums), 0)
        io.fsync(fd)
        osio.fsync_dir(self.wal_dir)
        self._size = HEADER_SIZE

    @property
    def path(self) -> str:
        return os.path.join(self.wal_dir, wal_file_name(self._seq))

    # -- batches -----------------------------------------------------------------------------
    def handle_appends(self, requests: list[Append]) -> None:
        """Write, sync and confirm one batch (see the module contract)."""
        if self.held:
            self.send_held()
        if self.failed is not None:
            for uid, addr, *_ in requests:
                self.notify(addr, wm.WalError(uid.decode(), self.failed))
            return
        plan = plan_batch(requests, self.writers, self.checksums)
        self.stats["stale_appends"] += plan.stale
        for addr, uid, frm in plan.resends:
            self.stats["resends"] += 1
            self.notify(addr, wm.WalResendWrite(uid.decode(), frm))
        if plan.n_entries:
            io = osio.get_os()
            try:
                if needs_roll(self._size, len(plan.buffer), self.max_size_bytes):
                    self.roll_over()
                end = self._size + len(plan.buffer)
                if end > self._allocated:
                    self._allocate(max(PREALLOCATE_BYTES, end - self._allocated))
                io.pwrite_all(self._fd, plan.buffer, self._size)
                self._size = end
                if self.write_strategy != "o_sync":
                    io.fdatasync(self._fd)
            except OSError as exc:
                self._fail(exc, requests)
                return
            st = self.stats
            st["batches"] += 1
            st["syncs"] += 1
            st["entries"] += plan.n_entries
            st["bytes"] += len(plan.buffer)
            st["last_batch_entries"] = plan.n_entries
            st["last_batch_writes"] = len(requests)
            if plan.n_entries > st["max_batch_entries"]:
                st["max_batch_entries"] = plan.n_entries
            sent: dict[tuple[Any, bytes], int] = {}     # writer -> the index its reply named
            if self.forward is not None:
                for key, (idx, (to, frame, skey)) in plan.replies.items():
                    # before the notices: the leader waits for this one, the writer does not
                    if self.forward(to, frame, skey):
                        sent[key] = idx
                st["replies"] += len(sent)
            for key, ranges in plan.written.items():
                replied = sent.get(key, 0)
                note = wm.WalWritten(key[1].decode(), [list(r) for r in ranges], replied)
                if replied and self.defer_notices:
                    if not self.held:
                        self.held_since = time.monotonic()
                    self.held.append((key[0], note))
                else:
                    self.notify(key[0], note)
            self._remember_addrs(plan.writers)

    def send_held(self) -> None:
        """Send the notices held back after sent replies, in their order."""
        held, self.held = self.held, []
        for addr, note in held:
            self.notify(addr, note)

    def _remember_addrs(self, uids: set[bytes]) -> None:
        changed = False
        for uid in uids:
            addr = self.writers[uid].addr
            k = uid.decode()
            if isinstance(addr, str) and self._known_addrs.get(k) != addr:
                self._known_addrs[k] = addr
                changed = True
        if changed:  # best-effort hint, not synced: losing it only delays resends
            try:
                osio.atomic_write(os.path.join(self.wal_dir, _WRITERS_FILE),
                                  json.dumps(self._known_addrs).encode(), durable=False)
            except OSError:
                pass

    def _fail(self, exc: OSError, requests: list[Append]) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        _log.error("write or sync of %s failed: %s; no more confirmations from this WAL, "
                   "which exits to be restarted", self.path, self.failed)
        addrs: dict[Any, set[str]] = {}
        for uid, addr, *_ in requests:
            addrs.setdefault(addr, set()).add(uid.decode())
        for uid_b, st in self.writers.items():
            if st.addr is not None:     # None: fenced, nothing sent since
                addrs.setdefault(st.addr, set()).add(uid_b.decode())
        for addr, uid_set in addrs.items():
            for u in uid_set:
                self.notify(addr, wm.WalError(u, self.failed))

    def _allocate(self, length: int) -> None:
        """Allocate ``length`` more bytes of the current file. If that fails (a full disk, a
        file system without it), this file is written as it grows: its writes then say whether
        the space is there, as they did before files were allocated ahead."""
        try:
            osio.get_os().fallocate(self._fd, self._allocated, length)
            self._allocated += length
        except OSError:
            self._allocated = _NO_MORE_ALLOCATION

    def has_data(self) -> bool:
        """True if the current file holds any record (a roll-over would close something)."""
        return self._size > HEADER_SIZE

    def roll_over(self) -> None:
        """Close the current file (already synced by its last batch) and start the next."""
        self._open_next()
        self.stats["roll_overs"] += 1
        if self.on_roll is not None:
            self.on_roll()

    def fence(self, uid: str, seq: int) -> None:
        """A new process of ``uid`` numbers its appends from ``seq + 1``: the requests of earlier
        ones are stale from now on, including those drained but not yet planned."""
        fence(self.writers, uid.encode(), seq)

    def forget_writer(self, uid: str) -> None:
        """Drop what the WAL knows of ``uid`` (its server was deleted)."""
        self.writers.pop(uid.encode(), None)
        if self._known_addrs.pop(uid, None) is not None:
            try:
                osio.atomic_write(os.path.join(self.wal_dir, _WRITERS_FILE),
                                  json.dumps(self._known_addrs).encode(), durable=False)
            except OSError:
                pass

    def overview(self) -> dict[str, Any]:
        """Counters, the current file, and ``error`` (None, or why the WAL stopped confirming)."""
        st: dict[str, Any] = dict(self.stats)
        st["dropped"] = dict(self.dropped)
        st.update(file=self.path, seq=self._seq, file_size=self._size,
                  writers=len(self.writers), error=self.failed, failed=self.failed is not None,
                  write_strategy=self.write_strategy, checksums=self.checksums,
                  entries_per_sync=(st["entries"] / st["syncs"]) if st["syncs"] else 0.0,
                  epoch=self.epoch,
                  idle_poll_holds=None if self.idle_poll is None else self.idle_poll.holds,
                  idle_poll_held=self.idle_poll is not None and self.idle_poll.held)
        return st

    def close(self) -> None:
        self.send_held()
        if self._fd >= 0:
            osio.get_os().close(self._fd)
            self._fd = -1


#: what the WAL process serves; everything else is dropped at its door
_check = checker({k: wm.CHECKS[k] for k in (wm.WalAppend, wm.WalRollOver, wm.WalOverview,
                                            wm.WalForgetWriter, wm.WalFence)})
_CALLS = (wm.WalOverview, wm.WalForgetWriter, wm.WalFence)


def _door(env: Any) -> str | None:
    """Why the WAL drops this envelope (``None``: it is served). The one check of a message."""
    p = env.payload
    reason = _check(p)
    if reason is not None:
        return reason
    t = type(p)
    if t is wm.WalAppend and (env.kind != "cast" or env.frm is None):
        return "bad_kind:WalAppend"      # notices need the sender's address
    if t in _CALLS and env.kind != "call":
        return f"bad_kind:{t.__name__}"
    return None


def _drop(wal: Wal, mb: Any, env: Any, reason: str) -> None:
    st = wal.stats
    st["dropped_bad_messages"] += 1
    wal.dropped[reason] = wal.dropped.get(reason, 0) + 1
    if env.kind == "call":
        mb.reply(env.frm, ("error", BAD_REQUEST, reason))


def _serve(wal: Wal, mb: Any, env: Any) -> None:
    """One valid non-append message."""
    p = env.payload
    t = type(p)
    if t is wm.WalRollOver:
        if env.kind == "call":
            try:
                wal.roll_over()
                mb.reply(env.frm, "ok")
            except OSError as exc:
                mb.reply(env.frm, ("error", "roll_over_failed", str(exc)))
        elif wal.failed is None and wal.has_data():
            # a server whose in-memory tail grew large asks for a roll-over, so that the
            # segment writer moves its entries to segments and it can drop them from memory
            try:
                wal.roll_over()
            except OSError:
                pass     # the next batch's write reports the disk's trouble
    elif t is wm.WalOverview:
        mb.reply(env.frm, wal.overview())
    elif t is wm.WalForgetWriter:
        wal.forget_writer(p.uid)
        mb.reply(env.frm, "ok")
    elif t is wm.WalFence:
        # served as it is drained, before the appends drained with it are planned: a request
        # of the writer's dead predecessor waiting in this very batch is stale already
        wal.fence(p.uid, p.seq)
        mb.reply(env.frm, "ok")


def main(argv: list[str] | None = None) -> int:
    """``python -m wal.wal ARGS``: :func:`run` with the :class:`~wal.config.WalConfig` of the
    command line (``--help`` lists it)."""
    return run(from_argv(WalConfig, argv, "wal.wal"))


def run(config: WalConfig | Mapping[str, Any]) -> int:
    """Run the WAL process until SIGTERM (exit 0) or a write/sync failure (exit 1)."""
    a = coerce(WalConfig, config)
    from transport.direct import DirectMailbox, hub_max_peers

    stop = False

    def _term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    if a.inject_fault:
        import errno as _errno
        call, err, after = a.inject_fault.split(":")
        fos = osio.FaultyOS()
        osio.set_os(fos)
        fos.arm(call, getattr(_errno, err), int(after))
    # no libzmq I/O thread: each batch is one wake-up of this process (transport/direct.py)
    # it answers every server of the node: room for a connection to each (after the daemon
    # raised the open-file limit that we inherit)
    mb = DirectMailbox(a.endpoint, blocking_connect=False, max_peers=hub_max_peers())
    sw = a.segment_writer
    wal = Wal(a.wal_dir, a.data_dir, mb.cast, max_size_bytes=a.max_size_bytes,
              checksums=a.checksums, write_strategy=a.write_strategy,
              segment_max_entries=a.segment_max_entries,
              on_roll=(lambda: mb.cast(sw, wm.SegRoll())) if sw else None,
              forward=mb.forward, defer_notices=a.notice_defer_ms > 0)
    wal.recover()
    poll = wal.idle_poll = _idle_poll(a.idle_poll_ms)
    failed_at: float | None = None
    max_bytes = a.max_batch_bytes
    defer = a.notice_defer_ms / 1000
    recv = mb.recv
    while not stop:
        if failed_at is not None and time.monotonic() - failed_at > a.error_exit_after:
            _log.error("exiting after the failure (%s)", wal.failed)
            wal.close()
            mb.close()
            return 1
        wait = 0.2 if poll is None else poll.sleep(time.monotonic(), 0.2)
        if wal.held:
            due = wal.held_since + defer - time.monotonic()
            if due <= 0:
                wal.send_held()
            else:
                wait = min(wait, due)
        env = recv(wait)
        if env is None:
            continue
        reqs: list[Append] = []
        nbytes = 0
        while env is not None:
            p = env.payload
            reason = _door(env)
            if reason is not None:
                _drop(wal, mb, env, reason)
            elif type(p) is wm.WalAppend:
                # entries: [index, term, bytes] lists, checked at the door
                reqs.append(Append(p.uid.encode(), env.frm, p.lw,
                                   p.entries, p.seq, p.reply))  # type: ignore[arg-type]
                for e in p.entries:
                    nbytes += len(e[2])
                if nbytes >= max_bytes:
                    break
            else:
                _serve(wal, mb, env)
            env = recv(0)
        if reqs:
            wal.handle_appends(reqs)
            if poll is not None:
                poll.busy(time.monotonic())
            if wal.failed is not None and failed_at is None:
                failed_at = time.monotonic()
    if poll is not None:
        poll.close()
    wal.close()
    mb.close()
    return 0


def _idle_poll(ms: int) -> IdlePoll | None:
    """The WAL's idle-poll request (``idle_poll_ms``), if asked for and the kernel grants it:
    a node checks that it may at its start, so a refusal here is logged and the WAL runs on."""
    if ms <= 0:
        return None
    try:
        return IdlePoll(ms / 1000)
    except OSError as e:
        _log.warning("idle_poll_ms %d: no PM QoS request (%s); idle CPUs halt as usual", ms, e)
        return None


if __name__ == "__main__":
    sys.exit(main())
