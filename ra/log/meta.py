"""Mirrors ra_log_meta.erl. A server's durable metadata: current term, voted for, last applied.

Choice: :meth:`DiskMeta.store` writes and *syncs before returning* (temp file, fsync, rename,
fsync directory); it returns a sequence number and :meth:`DiskMeta.sync` then hands the shell
the ``MetaWritten(seq)`` to feed back through ``step`` at once, so the core's contract (act only
after the confirmation) holds with no extra round trip. Term and vote change rarely, so the
~1 ms sync per change is cheap. ``last_applied`` is written to its own file without a sync
(ra's ``store`` vs ``store_sync``): a stale or lost value only makes recovery replay more, and
it never shares a file with the term and vote it could otherwise damage.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

import xxhash

from ra.core.messages import MetaWritten
from wal import osio

__all__ = ["DiskMeta", "CorruptMeta"]

_CK = struct.Struct("<Q")


class CorruptMeta(IOError):
    """The meta file fails its checksum: the term and vote cannot be trusted."""


class DiskMeta:
    """Durable ``ra.core.meta.MetaStore`` in directory ``dirpath`` (files ``meta``,
    ``last_applied``)."""

    def __init__(self, dirpath: str, encode: Callable[[Any], bytes] | None = None,
                 decode: Callable[[bytes], Any] | None = None) -> None:
        if encode is None or decode is None:
            from ra.wire import codec  # with ra's types registered
            encode, decode = codec.encode, codec.decode
        self._enc, self._dec = encode, decode
        self.dir = dirpath
        os.makedirs(dirpath, exist_ok=True)
        self._path = os.path.join(dirpath, "meta")
        self._la_path = os.path.join(dirpath, "last_applied")
        self._term, self._voted_for = 0, None
        self._seq = 0
        self._synced_seq = 0
        self._last_applied = 0
        self._load()

    def _load(self) -> None:
        try:
            with open(self._path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            blob = None
        if blob is not None:
            if len(blob) < _CK.size or _CK.unpack_from(blob)[0] != \
                    xxhash.xxh64_intdigest(blob[_CK.size:]):
                raise CorruptMeta(f"{self._path}: checksum")
            self._term, self._voted_for = self._dec(blob[_CK.size:])
            if isinstance(self._voted_for, list):
                self._voted_for = tuple(self._voted_for)
        try:
            with open(self._la_path, "rb") as f:
                self._last_applied = int(f.read().decode() or 0)
        except (FileNotFoundError, ValueError):
            self._last_applied = 0

    def fetch(self) -> tuple[int, Any]:
        return self._term, self._voted_for

    def store(self, current_term: int, voted_for: Any) -> int:
        """Durably store term and vote (synced when this returns); returns its sequence number."""
        body = self._enc((current_term, voted_for))
        blob = _CK.pack(xxhash.xxh64_intdigest(body)) + body
        osio.atomic_write(self._path, blob)
        self._term, self._voted_for = current_term, voted_for
        self._seq += 1
        return self._seq

    def has_pending(self) -> bool:
        return self._seq > self._synced_seq

    def sync(self) -> list[MetaWritten]:
        """The confirmation(s) to feed back; every store is already durable."""
        if self._seq == self._synced_seq:
            return []
        self._synced_seq = self._seq
        return [MetaWritten(self._seq)]

    def last_applied(self) -> int:
        return self._last_applied

    def store_last_applied(self, idx: int) -> None:
        """Record ``idx`` in memory; :meth:`flush_last_applied` writes it (the shell calls it
        on its tick and at shutdown). Writing on every apply put a file rename on the
        command path (about 0.5 ms each here); a stale value only makes recovery replay more."""
        if idx != self._last_applied:
            self._last_applied = idx
            self._la_dirty = True

    def flush_last_applied(self) -> None:
        """Write the last applied index (no sync) if it changed since the last flush."""
        if not getattr(self, "_la_dirty", False):
            return
        self._la_dirty = False
        osio.atomic_write(self._la_path, str(self._last_applied).encode(), durable=False)
