"""Mirrors ra_snapshot.erl. A server's snapshot directory (the current snapshot and one previous)
and its checkpoint directory.

Contract:

* :meth:`FileSnapshotStore.write` is durable when it returns (see :mod:`ra.log.snapshot_file`:
  temp file, fsync, rename, fsync directory). The previous snapshot is kept, still valid, and
  only older ones are deleted, *after* the new one is durable; so a crash at any point leaves at
  least one complete snapshot (plus possibly a ``.tmp`` that is ignored and removed).
* :meth:`FileSnapshotStore.recover` returns the newest snapshot that verifies; a corrupt newest
  one is reported in :attr:`FileSnapshotStore.warnings` and the previous one is used.
* Deleting segments is the caller's (DiskLog's) job, done only after ``write`` returned, and only
  below :meth:`FileSnapshotStore.previous_index`: the fallback snapshot then still has the log
  entries that follow it.
* Checkpoints (:class:`FileCheckpointStore`, ra's ``checkpoints`` directory) are files of the same
  format, written the same durable way, at most ``keep`` of them (the oldest go). Promotion is one
  atomic ``rename`` of a verified checkpoint file into the snapshot directory
  (:meth:`FileSnapshotStore.adopt`): a crash leaves it in exactly one of the two directories,
  each a valid place for it. (ra writes checkpoints without fsync and syncs at promotion; here
  every write is durable on return, as the Log contract says, so a promotion needs no sync of
  the file.)
* Each directory is made by the first file put in it (its parent synced then), not when the
  store is opened: most servers never snapshot, and two directories made at every server's
  first start cost it about a millisecond of CPU (issue 17: mass start). A missing directory
  reads as empty.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ra.log import snapshot_file
from ra.core.messages import SnapshotMeta
from ra.log.snapshot_file import CorruptSnapshot
from wal import osio

__all__ = ["SnapshotStore", "FileSnapshotStore", "FileCheckpointStore", "CorruptSnapshot"]


def _names(dirpath: str) -> list[str]:
    """The directory's entries; none while it does not exist (made by its first file)."""
    try:
        return os.listdir(dirpath)
    except FileNotFoundError:
        return []


def _ensure_dir(dirpath: str) -> None:
    """Make ``dirpath`` if it is missing, durably: its entry in the parent is synced before a
    file inside it is relied on."""
    if not os.path.isdir(dirpath):
        os.makedirs(dirpath, exist_ok=True)
        osio.fsync_dir(os.path.dirname(dirpath) or ".")


@runtime_checkable
class SnapshotStore(Protocol):
    """ra_snapshot's callbacks, reduced to what the DiskLog needs."""

    def write(self, meta: SnapshotMeta, data: bytes) -> None: ...

    def previous_index(self) -> int:
        """Index of the snapshot before the newest (the fallback); 0 if there is none."""
        ...

    def recover(self) -> tuple[SnapshotMeta, bytes] | None: ...

    def current(self) -> SnapshotMeta | None: ...


class FileSnapshotStore:
    """Snapshots of one server in ``dirpath``; keeps ``keep`` (≥ 2) newest files."""

    def __init__(self, dirpath: str, encode: Callable[[Any], bytes],
                 decode: Callable[[bytes], Any], keep: int = 2) -> None:
        self.dir = dirpath
        self._encode, self._decode = encode, decode
        self.keep = max(2, keep)
        self.warnings: list[str] = []
        self._current: SnapshotMeta | None = None
        for n in _names(dirpath):
            if n.endswith(".tmp"):  # a write interrupted by a crash
                os.unlink(os.path.join(dirpath, n))

    def _files(self) -> list[tuple[int, int, str]]:
        out = []
        for n in _names(self.dir):
            p = snapshot_file.parse_file_name(n)
            if p is not None:
                out.append((p[0], p[1], os.path.join(self.dir, n)))
        out.sort()
        return out

    def write(self, meta: SnapshotMeta, data: bytes) -> None:
        """Durably store a snapshot, then prune all but the ``keep`` newest."""
        _ensure_dir(self.dir)
        snapshot_file.write(self.dir, meta, data, self._encode)
        self._current = meta
        self._prune()

    def previous_index(self) -> int:
        """Index of the snapshot before the newest (the fallback); 0 if there is none."""
        files = self._files()
        return files[-2][0] if len(files) >= 2 else 0

    def recover(self) -> tuple[SnapshotMeta, bytes] | None:
        """The newest snapshot that verifies (falling back past corrupt ones), or None."""
        for _, _, path in reversed(self._files()):
            try:
                meta, data = snapshot_file.read(path, self._decode)
            except (CorruptSnapshot, OSError) as exc:
                self.warnings.append(f"corrupt snapshot set aside: {exc}")
                try:  # out of the way of pruning and of later recoveries; kept for forensics
                    os.replace(path, path + ".corrupt")
                except OSError:
                    pass
                continue
            self._current = meta
            return meta, data
        self._current = None
        return None

    def adopt(self, path: str, meta: SnapshotMeta) -> None:
        """Make the durable snapshot-format file at ``path`` (a checkpoint, elsewhere on the same
        file system) the current snapshot: one atomic rename into this directory, then the
        directories are synced; older snapshots are pruned as after :meth:`write`."""
        final = os.path.join(self.dir, snapshot_file.file_name(meta.index, meta.term))
        _ensure_dir(self.dir)
        osio.get_os().rename(path, final)
        osio.fsync_dir(self.dir)
        # the source directory too, or after a crash the file could be in both (harmless: the
        # snapshot then covers the checkpoint, which recovery drops; but tidier)
        osio.fsync_dir(os.path.dirname(path))
        self._current = meta
        self._prune()

    def _prune(self) -> None:
        for _, _, path in self._files()[:-self.keep]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def read_current(self) -> tuple[SnapshotMeta, bytes] | None:
        """Re-read the current snapshot from disk (verified)."""
        if self._current is None:
            return None
        path = os.path.join(self.dir, snapshot_file.file_name(self._current.index,
                                                              self._current.term))
        return snapshot_file.read(path, self._decode)

    def current(self) -> SnapshotMeta | None:
        return self._current


class FileCheckpointStore:
    """Checkpoints of one server in ``dirpath``, newest ``keep`` (≥ 1) kept.

    The store only knows files; which checkpoint may be used (above the snapshot, backed by the
    log) is the DiskLog's decision, passed in as ``usable``. A checkpoint that fails to verify
    is set aside as ``.corrupt`` (kept for forensics, as corrupt snapshots are) and never used.
    Deleting a checkpoint needs no directory sync: one that comes back after a crash is either
    covered by the snapshot (dropped at recovery) or still a correct state at its index."""

    def __init__(self, dirpath: str, encode: Callable[[Any], bytes],
                 decode: Callable[[bytes], Any], keep: int) -> None:
        self.dir = dirpath
        self._encode, self._decode = encode, decode
        self.keep = max(1, keep)
        self.warnings: list[str] = []
        names = []
        for n in _names(dirpath):
            if n.endswith(".tmp"):  # a write interrupted by a crash
                os.unlink(os.path.join(dirpath, n))
                continue
            p = snapshot_file.parse_file_name(n)
            if p is not None:
                names.append(p)
        self._cps: list[tuple[int, int]] = sorted(names)    # (index, term), ascending

    def _path(self, it: tuple[int, int]) -> str:
        return os.path.join(self.dir, snapshot_file.file_name(*it))

    def index_terms(self) -> list[tuple[int, int]]:
        """(index, term) of every checkpoint, oldest first."""
        return list(self._cps)

    def latest(self) -> tuple[int, int] | None:
        return self._cps[-1] if self._cps else None

    def write(self, meta: SnapshotMeta, data: bytes) -> None:
        """Durably store a checkpoint (``meta.index`` above every other one), then drop the
        oldest beyond ``keep``."""
        _ensure_dir(self.dir)
        snapshot_file.write(self.dir, meta, data, self._encode)
        self._cps.append((meta.index, meta.term))
        while len(self._cps) > self.keep:
            self.discard(self._cps[0])

    def read(self, it: tuple[int, int]) -> tuple[SnapshotMeta, bytes]:
        """(meta, encoded state) of checkpoint ``it``, verified; raises ``CorruptSnapshot``."""
        return snapshot_file.read(self._path(it), self._decode)

    def discard(self, it: tuple[int, int], corrupt: bool = False) -> None:
        """Forget checkpoint ``it`` and delete its file (``corrupt``: set it aside instead)."""
        if it in self._cps:
            self._cps.remove(it)
        path = self._path(it)
        try:
            if corrupt:
                os.replace(path, path + ".corrupt")
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass

    def drop_upto(self, idx: int) -> None:
        """Delete the checkpoints at or below ``idx`` (a snapshot there supersedes them)."""
        for it in [c for c in self._cps if c[0] <= idx]:
            self.discard(it)

    def newest_valid(self, usable: Callable[[int, int], bool],
                     upto: int | None = None) -> tuple[SnapshotMeta, bytes] | None:
        """The newest checkpoint (at or below ``upto``) that verifies, checking from the newest
        down. On the way, those above ``upto`` are left alone, unusable ones are deleted and
        corrupt ones set aside (reported in :attr:`warnings`)."""
        for it in reversed(list(self._cps)):
            if upto is not None and it[0] > upto:
                continue
            if not usable(*it):
                self.warnings.append(f"checkpoint {it} dropped: not backed by the log")
                self.discard(it)
                continue
            try:
                return self.read(it)
            except (CorruptSnapshot, OSError) as exc:
                self.warnings.append(f"corrupt checkpoint set aside: {exc}")
                self.discard(it, corrupt=True)
        return None

    def take(self, upto: int,
             usable: Callable[[int, int], bool]) -> tuple[SnapshotMeta, str] | None:
        """Remove the newest valid checkpoint at or below ``upto`` from the store and return
        its meta and path: the file stays there for the caller to move (promotion)."""
        r = self.newest_valid(usable, upto)
        if r is None:
            return None
        meta = r[0]
        self._cps.remove((meta.index, meta.term))
        return meta, self._path((meta.index, meta.term))
