"""Mirrors ra_log_segment.erl. One immutable segment file: a contiguous run of one server's entries.

Layout (little-endian)::

    header : magic b"RAPYSEG\\0" | u16 version (1) | u16 0 | u32 count | u64 first_index
    index  : count x (u64 term | u64 offset | u32 length | u64 xxh64(payload))
    u64 xxh64(header + index)
    data   : the payloads, back to back

Unlike ra's segments (pre-allocated index, appended in place), ours are written whole and never
modified: :func:`write_segment` writes each with :func:`wal.osio.atomic_write` (temp file,
fsync, rename, directory fsync), so a visible segment is always complete and durable, and a
crash mid-write leaves only a ``.tmp`` file that readers ignore. Corruption is detected on
read: a bad index checksum fails :func:`Segment.open`, a bad payload checksum fails
:meth:`Segment.read` with :class:`CorruptSegment`.
"""
from __future__ import annotations

import os
import struct
from itertools import accumulate

import xxhash

from wal import osio

__all__ = ["Segment", "SegmentIndex", "CorruptSegment", "write_segment", "segment_name", "parse_segment_name"]

_MAGIC = b"RAPYSEG\x00"
_HDR = struct.Struct("<8sHHIQ")
_IDX = struct.Struct("<QQIQ")
_TERM = struct.Struct("<Q")      # a row's first field
_CK = struct.Struct("<Q")
_xxh = xxhash.xxh64_intdigest


class CorruptSegment(IOError):
    """A segment's header, index or an entry failed its checksum."""


def segment_name(seq: int, first: int, last: int) -> str:
    """File name carrying the segment's sequence number and index range."""
    return f"{seq:012d}_{first}_{last}.segment"


def parse_segment_name(name: str) -> tuple[int, int, int] | None:
    """(seq, first, last) from a segment file name, None for anything else (e.g. ``.tmp``)."""
    if not name.endswith(".segment"):
        return None
    try:
        seq, first, last = name[:-8].split("_")
        return int(seq), int(first), int(last)
    except ValueError:
        return None


def write_segment(dirpath: str, seq: int, first: int, entries: list[tuple[int, bytes]],
                  *, sync_dir: bool = True) -> str:
    """Durably write ``entries`` ``[(term, payload), ...]`` (indexes ``first..``) as a new
    segment; returns its path. Durable when it returns (file and directory synced)."""
    n = len(entries)
    last = first + n - 1
    head_len = _HDR.size + n * _IDX.size + _CK.size
    parts = [_HDR.pack(_MAGIC, 1, 0, n, first)]
    off = head_len
    for term, payload in entries:
        ln = len(payload)
        parts.append(_IDX.pack(term, off, ln, _xxh(payload)))
        off += ln
    head = b"".join(parts)
    parts = [head, _CK.pack(_xxh(head))]
    parts.extend(p for _, p in entries)
    final = os.path.join(dirpath, segment_name(seq, first, last))
    osio.atomic_write(final, b"".join(parts), sync_dir=sync_dir)
    return final


class SegmentIndex:
    """One segment's index table, kept as the file's bytes (28 bytes an entry): opening a
    segment unpacks nothing, an entry's row is unpacked when it is looked up, a range's rows
    in one call. (It used to be four arrays filled entry by entry at open: the same memory, and
    about a third of a microsecond an entry of recovery.)"""

    __slots__ = ("_buf",)

    def __init__(self, buf: bytes) -> None:
        self._buf = buf

    def __len__(self) -> int:
        return len(self._buf) // _IDX.size

    def term(self, i: int) -> int:
        """Term of the ``i``-th entry (0-based)."""
        if not 0 <= i < len(self._buf) // _IDX.size:
            raise IndexError(i)
        t: int = _TERM.unpack_from(self._buf, i * _IDX.size)[0]
        return t

    def row(self, i: int) -> tuple[int, int, int, int]:
        """(term, offset, length, xxh64) of the ``i``-th entry."""
        if not 0 <= i < len(self._buf) // _IDX.size:
            raise IndexError(i)
        r: tuple[int, int, int, int] = _IDX.unpack_from(self._buf, i * _IDX.size)
        return r

    def rows(self, i: int, j: int) -> list[tuple[int, int, int, int]]:
        """Rows ``i..j`` (inclusive, within the table)."""
        if not 0 <= i <= j < len(self._buf) // _IDX.size:
            raise IndexError((i, j))
        sz = _IDX.size
        return list(_IDX.iter_unpack(memoryview(self._buf)[i * sz:(j + 1) * sz]))


class Segment:
    """A read handle on one segment file: index in memory (:class:`SegmentIndex`), payloads read
    with ``pread``."""

    __slots__ = ("path", "seq", "first", "last", "index", "_fd")

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1
        fd = os.open(path, os.O_RDONLY)
        try:
            hdr = os.pread(fd, _HDR.size, 0)
            if len(hdr) < _HDR.size:
                raise CorruptSegment(f"{path}: short header")
            magic, version, _, n, first = _HDR.unpack(hdr)
            if magic != _MAGIC or version != 1:
                raise CorruptSegment(f"{path}: bad magic/version")
            ilen = n * _IDX.size
            rest = os.pread(fd, ilen + _CK.size, _HDR.size)
            if len(rest) < ilen + _CK.size or \
                    _CK.unpack_from(rest, ilen)[0] != _xxh(hdr + rest[:ilen]):
                raise CorruptSegment(f"{path}: index checksum")
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.first: int = first
        self.last: int = first + n - 1
        self.index = SegmentIndex(rest[:ilen])
        parsed = parse_segment_name(os.path.basename(path))
        self.seq = parsed[0] if parsed else 0

    def term(self, idx: int) -> int:
        """Term of entry ``idx`` (must lie in ``first..last``)."""
        return self.index.term(idx - self.first)

    def read(self, idx: int) -> tuple[int, bytes]:
        """(term, payload) of entry ``idx``, checksum verified."""
        term, off, ln, ck = self.index.row(idx - self.first)
        data = os.pread(self._fd, ln, off)
        if len(data) != ln or _xxh(data) != ck:
            raise CorruptSegment(f"{self.path}: entry {idx} checksum")
        return term, data

    def read_range(self, frm: int, to: int) -> list[tuple[int, int, bytes]]:
        """Entries ``frm..to`` (within the segment) as ``(index, term, payload)``, one pread."""
        terms, blob, lens = self.read_run(frm, to)
        out = []
        o = 0
        for k, ln in enumerate(lens):
            out.append((frm + k, terms[k], blob[o:o + ln]))
            o += ln
        return out

    def read_run(self, frm: int, to: int) -> tuple[list[int], bytes, list[int]]:
        """Entries ``frm..to`` (within the segment) in bulk: their terms, their payloads back
        to back in one ``bytes`` (one pread), and the payloads' lengths. Every payload's
        checksum is verified (CorruptSegment names the first bad entry)."""
        rows = self.index.rows(frm - self.first, to - self.first)
        start = rows[0][1]
        lens = [r[2] for r in rows]
        offs = list(accumulate(lens, initial=start))
        size = offs.pop() - start
        # write_segment lays payloads out back to back; an index saying otherwise is corrupt
        # (its checksum passed, so a bug, not a disk error: but never misread it)
        if offs != [r[1] for r in rows]:
            raise CorruptSegment(f"{self.path}: entries {frm}..{to} not back to back")
        blob = os.pread(self._fd, size, start)
        mv = memoryview(blob)
        xxh = _xxh
        if len(blob) != size or [xxh(mv[o - start:o - start + ln]) for _, o, ln, _ in rows] \
                != [r[3] for r in rows]:
            for k, (_, o, ln, ck) in enumerate(rows):
                p = mv[o - start:o - start + ln]
                if len(p) != ln or xxh(p) != ck:
                    raise CorruptSegment(f"{self.path}: entry {frm + k} checksum")
        return [r[0] for r in rows], blob, lens

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
