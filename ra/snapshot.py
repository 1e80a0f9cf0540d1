"""Mirrors ra_snapshot.erl. A server's snapshot directory: the current snapshot and one previous.

Contract:

* :meth:`FileSnapshotStore.write` is durable when it returns (see :mod:`ra.snapshot_file`:
  temp file, fsync, rename, fsync directory). The previous snapshot is kept, still valid, and
  only older ones are deleted, *after* the new one is durable; so a crash at any point leaves at
  least one complete snapshot (plus possibly a ``.tmp`` that is ignored and removed).
* :meth:`FileSnapshotStore.recover` returns the newest snapshot that verifies; a corrupt newest
  one is reported in :attr:`FileSnapshotStore.warnings` and the previous one is used.
* Deleting segments is the caller's (DiskLog's) job, done only after ``write`` returned, and only
  below :meth:`FileSnapshotStore.previous_index`: the fallback snapshot then still has the log
  entries that follow it.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Protocol, runtime_checkable

from ra import snapshot_file
from ra.core.messages import SnapshotMeta
from ra.snapshot_file import CorruptSnapshot

__all__ = ["SnapshotStore", "FileSnapshotStore", "CorruptSnapshot"]


@runtime_checkable
class SnapshotStore(Protocol):
    """ra_snapshot's callbacks, reduced to what the DiskLog needs."""

    def write(self, meta: SnapshotMeta, data: bytes) -> None: ...

    def previous_index(self) -> int:
        """Index of the snapshot before the newest (the fallback); 0 if there is none."""
        files = self._files()
        return files[-2][0] if len(files) >= 2 else 0

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
        os.makedirs(dirpath, exist_ok=True)
        for n in os.listdir(dirpath):
            if n.endswith(".tmp"):  # a write interrupted by a crash
                os.unlink(os.path.join(dirpath, n))

    def _files(self) -> list[tuple[int, int, str]]:
        out = []
        for n in os.listdir(self.dir):
            p = snapshot_file.parse_file_name(n)
            if p is not None:
                out.append((p[0], p[1], os.path.join(self.dir, n)))
        out.sort()
        return out

    def write(self, meta: SnapshotMeta, data: bytes) -> None:
        """Durably store a snapshot, then prune all but the ``keep`` newest."""
        snapshot_file.write(self.dir, meta, data, self._encode)
        self._current = meta
        files = self._files()
        for _, _, path in files[:-self.keep]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

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

    def read_current(self) -> tuple[SnapshotMeta, bytes] | None:
        """Re-read the current snapshot from disk (verified)."""
        if self._current is None:
            return None
        path = os.path.join(self.dir, snapshot_file.file_name(self._current.index,
                                                              self._current.term))
        return snapshot_file.read(path, self._decode)

    def current(self) -> SnapshotMeta | None:
        return self._current
