"""Mirrors ra_log_segments.erl (ra_log_reader). A server's set of segment files and range reads.

Precedence rule: segment files are ordered by the sequence number in their name; a newer segment
starting at index ``f`` supersedes every older segment's entries at ``f`` and above (it was
written after the server's log was truncated at ``f``: an overwrite). So each file has a *live*
range ``first..min(last, f_newer - 1)`` and the log the segments hold is contiguous and ends at
the newest segment's ``last``. Re-flushing the same WAL file after a crash writes equal data
with a newer sequence number, which is therefore harmless (idempotent).

Not thread-safe; one owner per process (the server's DiskLog, or the segment writer). Files may
be added by the segment writer at any time: :meth:`refresh` picks them up.

Memory: a server's log only grows (a machine that never snapshots), so nothing here may cost per
entry. At most ``max_open`` files are open at once (:class:`SegmentCache`: their in-memory
indexes and file descriptors, least recently used closed first); each file ever read keeps only
its *term runs* (the first index of each term: one or two per file in practice), which answer
:meth:`Segments.fetch_term` without opening the file again.
"""
from __future__ import annotations

import os
import time
from array import array
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from wal.segment import CorruptSegment, Segment, parse_segment_name, write_segment
from wal import osio

__all__ = ["Segments", "SegmentCache", "CorruptSegment", "DEFAULT_MAX_OPEN", "term_runs"]

T = TypeVar("T")
_R = TypeVar("_R")

#: a directory whose mtime is at least this old (by the wall clock) cannot change without its
#: mtime changing: a file added later stamps a later time, whatever the clock's granularity
_MTIME_SETTLED_NS = 2_000_000_000

#: segment files a reader keeps open (each: an fd and an index of 28 bytes an entry). Reads
#: are local (the tail, or a follower catching up from one point on), so a few suffice
DEFAULT_MAX_OPEN = 4


def term_runs(seg: Segment) -> tuple[array[int], array[int]]:
    """``(starts, terms)``: entry ``starts[k]`` begins a run of entries of term ``terms[k]``
    that lasts until ``starts[k + 1]`` (or the segment's end)."""
    starts, terms = array("q"), array("q")
    prev = -1
    n = len(seg.index)
    for k, (t, _off, _len, _ck) in enumerate(seg.index.rows(0, n - 1) if n else ()):
        if t != prev:
            starts.append(seg.first + k)
            terms.append(t)
            prev = t
    return starts, terms


class SegmentCache:
    """The open segment files of one reader, by file name: at most ``max_open`` (least
    recently used closed first), plus the term runs of every file opened since it was last
    :meth:`forget`-ed (a few dozen bytes each). The owner forgets the files it no longer
    lists; a file's content never changes under its name (segments are immutable)."""

    __slots__ = ("dir", "max_open", "_open", "_runs")

    def __init__(self, dirpath: str, max_open: int = DEFAULT_MAX_OPEN) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, not {max_open!r}")
        self.dir = dirpath
        self.max_open = max_open
        self._open: OrderedDict[str, Segment] = OrderedDict()
        self._runs: dict[str, tuple[array[int], array[int]]] = {}

    def get(self, name: str) -> Segment:
        """The open handle of ``name`` (opened now if it is not; FileNotFoundError if gone)."""
        s = self._open.get(name)
        if s is not None:
            self._open.move_to_end(name)
            return s
        s = Segment(os.path.join(self.dir, name))
        self._open[name] = s
        if name not in self._runs:
            self._runs[name] = term_runs(s)
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)[1].close()
        return s

    def term(self, name: str, idx: int) -> int:
        """Term of entry ``idx``, which must lie in file ``name``."""
        starts, terms = self.runs(name)
        return terms[bisect_right(starts, idx) - 1]

    def runs(self, name: str) -> tuple[array[int], array[int]]:
        """File ``name``'s term runs (:func:`term_runs`; the file is opened only the first
        time; FileNotFoundError if it is gone)."""
        r = self._runs.get(name)
        if r is None:
            self.get(name)
            r = self._runs[name]
        return r

    def forget(self, name: str) -> None:
        """Close ``name`` and drop what is kept of it."""
        self._runs.pop(name, None)
        s = self._open.pop(name, None)
        if s is not None:
            s.close()

    def keep_only(self, names: Iterable[str]) -> None:
        """Forget every file not in ``names``."""
        keep = set(names)
        for n in [n for n in self._runs if n not in keep] + \
                [n for n in self._open if n not in keep]:
            self.forget(n)

    def open_names(self) -> list[str]:
        """The files open now, least recently used first."""
        return list(self._open)

    def close(self) -> None:
        for s in self._open.values():
            s.close()
        self._open.clear()


class Segments:
    """The live view over ``dirpath``'s segment files."""

    def __init__(self, dirpath: str, max_open: int = DEFAULT_MAX_OPEN) -> None:
        self.dir = dirpath
        os.makedirs(dirpath, exist_ok=True)
        self.cache = SegmentCache(dirpath, max_open)
        # live ranges, ascending by first index: (first, last, name)
        self._live: list[tuple[int, int, str]] = []
        self._firsts: list[int] = []
        self._names: list[tuple[int, int, int, str]] = []
        self._mtime = -1                 # the directory's mtime at the last settled listing
        self.refresh()

    # -- view --------------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Re-read the directory; True if the set of files changed. O(1) (one ``stat``) while
        the directory is unchanged since a listing taken once its mtime had settled: an idle
        server's tick does not list its segment files every second."""
        mtime = os.stat(self.dir).st_mtime_ns
        if mtime == self._mtime:
            return False
        settled = time.time_ns() - mtime >= _MTIME_SETTLED_NS
        self._mtime = mtime if settled else -1
        names = []
        for n in os.listdir(self.dir):
            p = parse_segment_name(n)
            if p is not None:
                names.append((p[0], p[1], p[2], n))
        names.sort()
        if names == self._names:
            return False
        self._names = names
        live: list[tuple[int, int, str]] = []
        limit = None
        for seq, first, last, n in reversed(names):
            top = last if limit is None else min(last, limit - 1)
            if top >= first:
                live.append((first, top, n))
            limit = first if limit is None else min(limit, first)
        live.sort()
        self._live = live
        self._firsts = [f for f, _, _ in live]
        self.cache.keep_only(x[3] for x in names)
        return True

    def range(self) -> tuple[int, int] | None:
        """(first, last) index held, None if there are no live entries."""
        if not self._live:
            return None
        return self._live[0][0], self._live[-1][1]

    def next_seq(self) -> int:
        """Sequence number for a new segment file."""
        return (self._names[-1][0] + 1) if self._names else 1

    def _seg(self, name: str) -> Segment:
        return self.cache.get(name)

    def _with_seg(self, idx: int, fn: Callable[[Segment], T]) -> T | None:
        """Run ``fn`` on the segment holding ``idx``; see :meth:`_with_name`."""
        return self._with_name(idx, lambda name: fn(self._seg(name)))

    def _with_name(self, idx: int, fn: Callable[[str], T]) -> T | None:
        """Run ``fn`` on the name of the file holding ``idx``; if the segment writer merged that
        file away since the last refresh (never the data: a newer file holds it), refresh
        once."""
        for attempt in (0, 1):
            r = self._find(idx)
            if r is None:
                return None
            try:
                return fn(r[2])
            except FileNotFoundError:
                if attempt:
                    raise
                self.refresh()
        return None

    def _find(self, idx: int) -> tuple[int, int, str] | None:
        i = bisect_right(self._firsts, idx) - 1
        if i < 0:
            return None
        rng = self._live[i]
        return rng if idx <= rng[1] else None

    def fetch(self, idx: int) -> tuple[int, bytes] | None:
        """(term, payload) at ``idx`` or None; raises CorruptSegment on a bad checksum."""
        return self._with_seg(idx, lambda s: s.read(idx))

    def fetch_term(self, idx: int) -> int | None:
        """Term at ``idx`` or None; opens the file only the first time (then its term runs)."""
        return self._with_name(idx, lambda name: self.cache.term(name, idx))

    def term_runs_from(self, frm: int, to: int) -> list[tuple[int, int, int]]:
        """``(first, last, term)``: the terms of the entries from ``frm`` up to ``to``, in
        runs of one term, consecutive from ``frm`` (they stop at the first index no file
        holds). ``fetch_term`` of every index, without a call per entry: a busy server's
        tick compares thousands of entries in memory with the segments that now hold them."""
        out: list[tuple[int, int, int]] = []
        i = frm
        while i <= to:
            runs = self._with_name(i, self.cache.runs)
            r = self._find(i)       # after _with_name, which may have refreshed the listing
            if runs is None or r is None:
                break
            starts, terms = runs
            hi = min(r[1], to)
            k = bisect_right(starts, i) - 1
            while i <= hi:
                end = min(starts[k + 1] - 1, hi) if k + 1 < len(starts) else hi
                out.append((i, end, terms[k]))
                i = end + 1
                k += 1
        return out

    def read_range(self, frm: int, to: int) -> list[tuple[int, int, bytes]]:
        """Consecutive entries from ``frm`` up to ``to`` (stops at the first missing index)."""
        out: list[tuple[int, int, bytes]] = []
        for _i, got in self._walk(frm, to, Segment.read_range, len):
            out.extend(got)
        return out

    def read_runs(self, frm: int, to: int) -> list[tuple[int, list[int], bytes, list[int]]]:
        """Consecutive entries from ``frm`` up to ``to`` (stops at the first missing index) in
        bulk, one run per segment file: ``(first index, terms, payloads back to back, their
        lengths)`` (:meth:`wal.segment.Segment.read_run`: checksums verified)."""
        return [(i, *got) for i, got in self._walk(frm, to, Segment.read_run,
                                                   lambda run: len(run[0]))]

    def _walk(self, frm: int, to: int, read: Callable[[Segment, int, int], _R],
              count: Callable[[_R], int]) -> Iterator[tuple[int, _R]]:
        """``(first index, read(segment, first, last))`` for each segment file holding the next
        consecutive entries from ``frm`` up to ``to`` (``count`` says how many entries a read
        got); stops at the first missing index."""
        i = frm
        while i <= to:
            r = self._find(i)
            if r is None:
                return
            hi = min(to, r[1])
            got = self._with_seg(i, lambda s: read(s, i, min(hi, s.last)))
            if not got:
                return
            yield i, got
            i += count(got)

    # -- changes -----------------------------------------------------------------------------
    def write(self, entries: list[tuple[int, int, bytes]], max_entries: int,
              *, sync_dir: bool = True, merge: bool = True) -> list[str]:
        """Durably add consecutive ``entries`` as new segment file(s) of at most
        ``max_entries`` each. Supersedes anything held at or above ``entries[0]``'s index.

        With ``merge``, when the newest file is not full and ``entries`` continue it, its
        entries are rewritten together with the new ones into a new file (higher sequence
        number, so it supersedes the old one), and only then is the old file deleted: the
        number of files stays near ``entries / max_entries`` however small the flushes are.
        A crash in between leaves both files, which the precedence rule reads correctly."""
        self.refresh()
        old: str | None = None
        if merge and self._names and self._live:
            seq, first, last, name = self._names[-1]
            if (last - first + 1 < max_entries and entries[0][0] == last + 1
                    and self._live[-1] == (first, last, name)):
                try:
                    entries = self._seg(name).read_range(first, last) + entries
                    old = name
                except (FileNotFoundError, CorruptSegment):
                    old = None
        paths = []
        seq = self.next_seq()
        for k in range(0, len(entries), max_entries):
            chunk = entries[k:k + max_entries]
            paths.append(write_segment(self.dir, seq, chunk[0][0],
                                       [(t, p) for _, t, p in chunk], sync_dir=False))
            seq += 1
        if sync_dir and paths:
            osio.fsync_dir(self.dir)
        if old is not None:
            self.cache.forget(old)
            path = os.path.join(self.dir, old)
            if sync_dir or osio.DurableBatch.current() is not None:
                osio.unlink_durably(path)   # in a batch: once the new file is durable
            else:
                os.unlink(path)
        self.refresh()
        return paths

    def delete_below(self, idx: int) -> int:
        """Delete files whose live entries all lie at or below ``idx`` (covered by a snapshot),
        and files with no live entries; returns how many were deleted."""
        keep = {n for f, last, n in self._live if last > idx}
        n_del = 0
        for _, _, _, n in self._names:
            if n not in keep:
                self.cache.forget(n)
                try:
                    os.unlink(os.path.join(self.dir, n))
                    n_del += 1
                except FileNotFoundError:
                    pass
        if n_del:
            osio.fsync_dir(self.dir)
        self.refresh()
        return n_del

    def close(self) -> None:
        self.cache.close()
