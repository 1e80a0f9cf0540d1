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
from array import array

import xxhash

from wal import osio

__all__ = ["Segment", "CorruptSegment", "write_segment", "segment_name", "parse_segment_name"]

_MAGIC = b"RAPYSEG\x00"
_HDR = struct.Struct("<8sHHIQ")
_IDX = struct.Struct("<QQIQ")
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


class Segment:
    """A read handle on one segment file: index in memory, payloads read with ``pread``."""

    __slots__ = ("path", "seq", "first", "last", "terms", "_offs", "_lens", "_cks", "_fd")

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
        # compact arrays, not lists of int objects: a server keeps the index of every segment
        # it has, about 28 bytes an entry this way instead of about 100 (W6 memory)
        terms, offs, lens, cks = array("Q"), array("Q"), array("I"), array("Q")
        for t, o, ln, c in _IDX.iter_unpack(rest[:ilen]):
            terms.append(t)
            offs.append(o)
            lens.append(ln)
            cks.append(c)
        self.terms: array[int] = terms
        self._offs, self._lens, self._cks = offs, lens, cks
        parsed = parse_segment_name(os.path.basename(path))
        self.seq = parsed[0] if parsed else 0

    def term(self, idx: int) -> int:
        """Term of entry ``idx`` (must lie in ``first..last``)."""
        return self.terms[idx - self.first]

    def read(self, idx: int) -> tuple[int, bytes]:
        """(term, payload) of entry ``idx``, checksum verified."""
        i = idx - self.first
        data = os.pread(self._fd, self._lens[i], self._offs[i])
        if len(data) != self._lens[i] or _xxh(data) != self._cks[i]:
            raise CorruptSegment(f"{self.path}: entry {idx} checksum")
        return self.terms[i], data

    def read_range(self, frm: int, to: int) -> list[tuple[int, int, bytes]]:
        """Entries ``frm..to`` (within the segment) as ``(index, term, payload)``, one pread."""
        i, j = frm - self.first, to - self.first
        start = self._offs[i]
        end = self._offs[j] + self._lens[j]
        blob = os.pread(self._fd, end - start, start)
        out = []
        for k in range(i, j + 1):
            o = self._offs[k] - start
            p = blob[o:o + self._lens[k]]
            if len(p) != self._lens[k] or _xxh(p) != self._cks[k]:
                raise CorruptSegment(f"{self.path}: entry {self.first + k} checksum")
            out.append((self.first + k, self.terms[k], p))
        return out

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
