"""Mirrors ra_log_segment_writer.erl. Moves entries of closed WAL files into per-server segments.

Decision (STYLE C11): segments are *rebuilt from closed WAL files*, not from memtables held by the
WAL. OS processes share no ETS, and reading the just-closed file back (it is still in the page
cache) keeps the WAL process's memory bounded, keeps the segment work off the WAL's hot loop (it
runs in its own process, on another core), and makes the normal path the same code as crash
recovery: :func:`flush_wal_file` is idempotent, so a kill at any moment is repaired by running it
again on the same file.

Contract of :func:`flush_wal_file`: for every writer in the file, its surviving entries (ra's
overwrite rule, :func:`wal.format.resolve`) are written as new segment files, each fsynced, the
directories fsynced (all writers' files together: :class:`wal.osio.DurableBatch`); only then is
the WAL file unlinked (and the WAL directory fsynced). A torn
tail is where the file's log ends. Flushes of one WAL directory are serialised by an ``flock``
on ``<wal_dir>/flush.lock`` so the WAL's start-up recovery and this process never interleave.

Process entry point: :func:`run` with a :class:`wal.config.SegmentWriterConfig` (how ra forks
it), or ``python -m wal.segment_writer --wal-dir D --data-dir D [--endpoint E]`` (:func:`main`).
It flushes every closed WAL file (all but the newest, which the WAL owns) in sequence order,
then waits for a nudge (a :class:`wal.messages.SegRoll` cast on its endpoint) or polls every
``--poll-ms``. A :class:`wal.messages.SegOverview` call answers its counters (files flushed,
messages dropped by reason). Anything else is dropped and counted; a call gets
``("error", "bad_request", reason)``.
"""
from __future__ import annotations

import fcntl
import os
import signal
import sys
import time
from contextlib import contextmanager
from collections.abc import Iterator, Mapping

from typing import Any

from wal import osio
from wal.config import SegmentWriterConfig, coerce, from_argv
from wal.format import resolve, scan_file
from transport.messages import BAD_REQUEST
from wal.messages import SegOverview, SegRoll, check, valid_uid
from wal.segments import Segments

__all__ = ["flush_wal_file", "flush_closed", "wal_files", "flush_lock", "main", "run",
           "segments_dir", "wal_file_name", "valid_uid"]



def wal_file_name(seq: int) -> str:
    return f"{seq:016d}.wal"


def wal_files(wal_dir: str) -> list[tuple[int, str]]:
    """(seq, path) of every WAL file in ``wal_dir``, ascending."""
    out = []
    for n in os.listdir(wal_dir):
        if n.endswith(".wal") and n[:-4].isdigit():
            out.append((int(n[:-4]), os.path.join(wal_dir, n)))
    out.sort()
    return out


def segments_dir(data_dir: str, uid: str) -> str:
    """Where server ``uid``'s segments live."""
    return os.path.join(data_dir, uid, "segments")


@contextmanager
def flush_lock(wal_dir: str) -> Iterator[None]:
    """Exclusive lock serialising flushes of ``wal_dir``."""
    fd = os.open(os.path.join(wal_dir, "flush.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def flush_wal_file(path: str, data_dir: str, segment_max_entries: int,
                   *, delete: bool = True) -> dict[str, int]:
    """Write ``path``'s entries into segments, durably, then delete it. Returns entries per uid.
    Call with :func:`flush_lock` held (or when nothing else flushes this directory)."""
    res = scan_file(path)
    counts: dict[str, int] = {}
    # every writer's segments made durable together: two journal commits, not two per writer
    with osio.DurableBatch.batched():
        for uid_b, entries in resolve(res.records).items():
            uid = uid_b.decode(errors="replace")
            if not valid_uid(uid):
                continue  # never written by the WAL (it refuses such uids); ignore, don't escape
            sd = segments_dir(data_dir, uid)
            os.makedirs(sd, exist_ok=True)
            segs = Segments(sd)
            try:
                segs.write(entries, segment_max_entries)
            finally:
                segs.close()
            counts[uid] = len(entries)
    if delete:
        os.unlink(path)
        osio.fsync_dir(os.path.dirname(path) or ".")
    return counts


def flush_closed(wal_dir: str, data_dir: str, segment_max_entries: int,
                 *, include_newest: bool = False) -> int:
    """Flush every closed WAL file (all but the newest unless ``include_newest``), oldest first.
    Returns how many files were flushed."""
    n = 0
    with flush_lock(wal_dir):
        files = wal_files(wal_dir)
        if not include_newest:
            files = files[:-1]
        for _, path in files:
            flush_wal_file(path, data_dir, segment_max_entries)
            n += 1
    return n


def main(argv: list[str] | None = None) -> int:
    """``python -m wal.segment_writer ARGS``: :func:`run` with the
    :class:`~wal.config.SegmentWriterConfig` of the command line (``--help`` lists it)."""
    return run(from_argv(SegmentWriterConfig, argv, "wal.segment_writer"))


def run(config: SegmentWriterConfig | Mapping[str, Any]) -> int:
    """Segment writer process: flush closed WAL files until SIGTERM."""
    a = coerce(SegmentWriterConfig, config)
    stop = False

    def _term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    mb = None
    if a.endpoint:
        from transport.direct import DirectMailbox
        mb = DirectMailbox(a.endpoint, blocking_connect=False)
    os.makedirs(a.wal_dir, exist_ok=True)
    stats: dict[str, Any] = {"flushed_files": 0, "nudges": 0, "dropped": {}}
    while not stop:
        stats["flushed_files"] += flush_closed(a.wal_dir, a.data_dir, a.segment_max_entries)
        if mb is not None:
            env = mb.recv(a.poll_ms / 1000)
            while env is not None:  # coalesce nudges
                _serve(mb, env, stats)
                env = mb.recv(0)
        else:
            time.sleep(a.poll_ms / 1000)
    return 0


def _door(p: Any, kind: str) -> str | None:
    """Why the segment writer drops ``p`` arriving as ``kind`` (``None``: it is served)."""
    reason = check(p)
    if reason is None and type(p) not in (SegRoll, SegOverview):
        reason = "unknown_message"
    if reason is None and type(p) is SegOverview and kind != "call":
        reason = "bad_kind:SegOverview"
    return reason


def _serve(mb: Any, env: Any, stats: dict[str, Any]) -> None:
    """One message at the segment writer's door (see the module docstring)."""
    p = env.payload
    reason = _door(p, env.kind)
    if reason is not None:
        stats["dropped"][reason] = stats["dropped"].get(reason, 0) + 1
        if env.kind == "call":
            mb.reply(env.frm, ("error", BAD_REQUEST, reason))
    elif type(p) is SegRoll:
        stats["nudges"] += 1
        if env.kind == "call":
            mb.reply(env.frm, "ok")
    else:
        mb.reply(env.frm, {**stats, "dropped": dict(stats["dropped"])})


if __name__ == "__main__":
    sys.exit(main())
