"""Mirrors ra_mt.erl. A server's in-memory table of recent entries.

Holds a contiguous run ``first..last`` of ``(index, term, command)`` tuples: everything not yet
known to be both durable and in a segment file. Writes at or below ``last`` truncate first
(ra's overwrite rule). Not shared with any other process (OS processes have no ETS).
"""
from __future__ import annotations

from typing import Any

__all__ = ["Memtable"]

Entry = tuple[int, int, Any]


class Memtable:
    """Contiguous entries keyed by index."""

    __slots__ = ("_d", "first", "last")

    def __init__(self) -> None:
        self._d: dict[int, Entry] = {}
        self.first = 0  # 0 when empty
        self.last = 0

    def __len__(self) -> int:
        return len(self._d)

    def get(self, idx: int) -> Entry | None:
        return self._d.get(idx)

    def put(self, entry: Entry) -> None:
        """Store ``entry``; its index must be ``last + 1`` or (overwrite) within the table, or
        anything when the table is empty."""
        idx = entry[0]
        d = self._d
        if not d:
            self.first = idx
        elif idx != self.last + 1:
            if idx < self.first or idx > self.last + 1:
                if idx > self.last + 1:
                    raise ValueError(f"memtable gap: {idx} after {self.last}")
                d.clear()
                self.first = idx
            else:
                for i in range(idx, self.last + 1):
                    del d[i]
        d[idx] = entry
        self.last = idx

    def truncate_from(self, idx: int) -> None:
        """Drop every entry at or above ``idx``."""
        if not self._d or idx > self.last:
            return
        if idx <= self.first:
            self._d.clear()
            self.first = self.last = 0
            return
        for i in range(idx, self.last + 1):
            del self._d[i]
        self.last = idx - 1

    def drop_to(self, idx: int) -> None:
        """Drop every entry at or below ``idx`` (now in segments or a snapshot)."""
        if not self._d or idx < self.first:
            return
        if idx >= self.last:
            self._d.clear()
            self.first = self.last = 0
            return
        for i in range(self.first, idx + 1):
            del self._d[i]
        self.first = idx + 1

    def clear(self) -> None:
        self._d.clear()
        self.first = self.last = 0
