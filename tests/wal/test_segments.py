"""wal/segment.py + segments.py: immutable segment files, precedence, corruption, deletion."""
from __future__ import annotations

import os
import itertools
from typing import Any

import pytest

from wal.segment import CorruptSegment, Segment, parse_segment_name
from wal.segments import Segments


def _e(frm: int, to: int, term: int = 1) -> list[tuple[int, int, bytes]]:
    return [(i, term, b"v%d.%d" % (i, term)) for i in range(frm, to + 1)]


def test_write_read_and_max_entries(tmp_path: Any) -> None:
    s = Segments(str(tmp_path))
    paths = s.write(_e(1, 50), max_entries=16)
    assert len(paths) == 4
    assert s.range() == (1, 50)
    assert s.fetch(17) == (1, b"v17.1") and s.fetch_term(50) == 1 and s.fetch(51) is None
    assert s.read_range(10, 40) == _e(10, 40)
    seg = Segment(paths[0])
    assert (seg.first, seg.last) == (1, 16)
    seg.close()


def test_newer_segment_supersedes_from_its_first_index(tmp_path: Any) -> None:
    s = Segments(str(tmp_path))
    s.write(_e(1, 30), 100)
    s.write(_e(20, 22, term=2), 100)            # an overwrite at 20
    assert s.range() == (1, 22)
    assert s.fetch(19) == (1, b"v19.1") and s.fetch(20) == (2, b"v20.2")
    assert s.read_range(18, 30) == _e(18, 19) + _e(20, 22, 2)
    # re-flushing the same data (a crash mid-flush) is harmless
    s.write(_e(20, 22, term=2), 100)
    assert s.read_range(1, 40) == _e(1, 19) + _e(20, 22, 2)
    s2 = Segments(str(tmp_path))                # a fresh reader sees the same log
    assert s2.read_range(1, 40) == _e(1, 19) + _e(20, 22, 2)


def test_corruption_detected(tmp_path: Any) -> None:
    s = Segments(str(tmp_path))
    (path,) = s.write(_e(1, 10), 100)
    s.close()
    with open(path, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        b = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([b[0] ^ 1]))
    s = Segments(str(tmp_path))
    assert s.fetch(5) == (1, b"v5.1")
    with pytest.raises(CorruptSegment):
        s.fetch(10)
    s.close()
    with open(path, "r+b") as f:                # damage the index: open fails
        f.seek(30)
        f.write(b"\xff")
    with pytest.raises(CorruptSegment):
        Segment(path)


def test_tmp_files_ignored_and_delete_below(tmp_path: Any) -> None:
    s = Segments(str(tmp_path))
    s.write(_e(1, 40), 10)
    open(os.path.join(str(tmp_path), "000000000099_1_5.segment.tmp"), "wb").close()
    s.refresh()
    assert s.range() == (1, 40)
    assert s.delete_below(25) == 2              # 1..10, 11..20 wholly below 25
    assert s.range() == (21, 40)
    assert s.fetch(25) is not None
    assert parse_segment_name("x.segment.tmp") is None


def test_small_flushes_merge_into_full_files(tmp_path: Any) -> None:
    w = Segments(str(tmp_path))
    reader = Segments(str(tmp_path))
    for k in range(10):                         # ten flushes of 5 entries each
        w.write(_e(k * 5 + 1, k * 5 + 5), max_entries=16)
        if k == 1:
            reader.refresh()                    # the reader caches a view with a file ...
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith(".segment"))
    assert len(names) == 4                      # 16 + 16 + 16 + 2, not 10 files
    assert w.read_range(1, 50) == _e(1, 50)
    # ... that has since been merged away: it re-reads the directory and still finds the data
    assert reader.fetch(7) == (1, b"v7.1")
    assert reader.read_range(1, 50) == _e(1, 50)


def test_refresh_of_an_unchanged_settled_directory_does_not_list_it(tmp_path: Any,
                                                                   monkeypatch: Any) -> None:
    # an idle server's tick: one stat, no listing, while nothing changes; a new file is seen
    segs = Segments(str(tmp_path))
    segs.write([(1, 1, b"a"), (2, 1, b"b")], 4096)
    old = os.stat(tmp_path).st_mtime_ns - 10_000_000_000      # settled: 10 s ago
    os.utime(tmp_path, ns=(old, old))
    assert segs.refresh() is False                             # lists once (settled now)
    listed = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda d: listed.append(d) or real(d))
    for _ in range(5):
        assert segs.refresh() is False
    assert listed == []
    other = Segments(str(tmp_path))                            # the segment writer's view
    other.write([(3, 1, b"c")], 4096, merge=False)
    assert segs.refresh() is True and segs.range() == (1, 3)
    assert listed


def test_refresh_lists_a_directory_changed_within_the_mtime_granularity(tmp_path: Any) -> None:
    # a file added within the same mtime tick as the last listing is still found: a directory
    # whose mtime is recent is listed every time
    segs = Segments(str(tmp_path))
    now = os.stat(tmp_path).st_mtime_ns
    other = Segments(str(tmp_path))
    other.write([(1, 1, b"a")], 4096)
    os.utime(tmp_path, ns=(now, now))                          # same mtime as before the write
    assert segs.refresh() is True and segs.range() == (1, 1)


def test_read_run_is_the_bulk_form_of_read_range(tmp_path: Any) -> None:
    s = Segments(str(tmp_path))
    s.write(_e(1, 30), 16)
    s.write(_e(25, 27, term=2), 16)            # an overwrite: runs end at the live ranges
    runs = s.read_runs(3, 40)
    assert [r[0] for r in runs] == [3, 17, 25]
    got = []
    for first, terms, blob, lens in runs:
        o = 0
        for k, ln in enumerate(lens):
            got.append((first + k, terms[k], blob[o:o + ln]))
            o += ln
        assert o == len(blob)
    assert got == _e(3, 24) + _e(25, 27, 2) == s.read_range(3, 40)
    assert s.read_runs(28, 40) == [] and s.read_runs(5, 4) == []
    s.close()


def test_read_run_names_the_corrupt_entry(tmp_path: Any) -> None:
    s = Segments(str(tmp_path))
    (path,) = s.write(_e(1, 10), 100)
    s.close()
    seg = Segment(path)
    _t, off, _ln, _ck = seg.index.row(6)      # entry 7's payload
    seg.close()
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 1]))
    seg = Segment(path)
    assert seg.read_run(1, 6)[0] == [1] * 6
    with pytest.raises(CorruptSegment, match="entry 7 checksum"):
        seg.read_run(2, 9)
    with pytest.raises(CorruptSegment, match="entry 7 checksum"):
        seg.read_range(7, 7)
    with pytest.raises(IndexError):
        seg.term(11)
    with pytest.raises(IndexError):
        seg.read_run(9, 11)
    seg.close()


def test_an_index_whose_payloads_are_not_back_to_back_is_refused(tmp_path: Any) -> None:
    # a well-formed file (every checksum right) that write_segment never writes: a byte of
    # padding between two payloads. A bulk read must not decode across it
    import struct

    import xxhash
    from wal.segment import segment_name
    hdr_s, idx_s, ck_s = struct.Struct("<8sHHIQ"), struct.Struct("<QQIQ"), struct.Struct("<Q")
    payloads = [b"aa", b"bb", b"cc"]
    off = hdr_s.size + 3 * idx_s.size + ck_s.size
    rows = []
    for k, p in enumerate(payloads):
        rows.append(idx_s.pack(1, off, len(p), xxhash.xxh64_intdigest(p)))
        off += len(p) + (1 if k == 0 else 0)
    head = hdr_s.pack(b"RAPYSEG\x00", 1, 0, 3, 1) + b"".join(rows)
    path = os.path.join(str(tmp_path), segment_name(1, 1, 3))
    with open(path, "wb") as f:
        f.write(head + ck_s.pack(xxhash.xxh64_intdigest(head)) + b"aa" + b"\x00" + b"bbcc")
    seg = Segment(path)
    assert seg.read(2) == (1, b"bb") and seg.read_run(2, 3)[1] == b"bbcc"
    with pytest.raises(CorruptSegment, match="not back to back"):
        seg.read_run(1, 2)
    seg.close()


# -- the reader's memory: bounded open files, term runs (issue 14) -----------------------------
def _terms_log(n: int) -> list[tuple[int, int, bytes]]:
    """``n`` entries whose term changes now and then, within files and at their boundaries."""
    return [(i, 1 + i // 37, b"v%d" % i) for i in range(1, n + 1)]


def test_open_files_are_bounded_and_every_read_stays_right(tmp_path: Any) -> None:
    log = _terms_log(400)
    w = Segments(str(tmp_path))
    w.write(log, max_entries=25, merge=False)                 # 16 files
    w.close()
    s = Segments(str(tmp_path), max_open=3)
    assert [s.fetch_term(i) for i, _, _ in log] == [t for _, t, _ in log]
    assert len(s.cache.open_names()) <= 3
    assert [s.fetch(i) for i, _, _ in log] == [(t, p) for _, t, p in log]
    assert len(s.cache.open_names()) <= 3
    assert s.read_range(1, 400) == log                        # across every file, one pass
    assert s.read_range(390, 400) == log[389:] and s.read_range(3, 60) == log[2:60]
    assert len(s.cache.open_names()) <= 3
    s.close()


def test_fetch_term_uses_the_runs_without_reopening(tmp_path: Any) -> None:
    log = _terms_log(200)
    Segments(str(tmp_path)).write(log, max_entries=50, merge=False)
    s = Segments(str(tmp_path), max_open=1)
    for i, _, _ in log:
        s.fetch_term(i)                                       # learns every file's runs
    s.cache.close()
    assert s.cache.open_names() == []
    assert [s.fetch_term(i) for i, _, _ in log] == [t for _, t, _ in log]
    assert s.cache.open_names() == []                         # no file opened for a term
    assert s.fetch_term(0) is None and s.fetch_term(201) is None


def test_an_evicted_file_merged_away_is_found_again(tmp_path: Any) -> None:
    w = Segments(str(tmp_path))
    r = Segments(str(tmp_path), max_open=1)
    w.write(_e(1, 21), max_entries=16)                        # 1..16 full, 17..21 not
    r.refresh()
    assert r.fetch(3) == (1, b"v3.1") and r.fetch(18) == (1, b"v18.1")   # 1..16 evicted
    w.write(_e(22, 25), max_entries=16)                       # merges 17..21 away: 17..25
    assert r.fetch(3) == (1, b"v3.1")                         # evicts 17..21
    assert r.fetch(18) == (1, b"v18.1")                       # gone: refreshed, found in 17..25
    assert r.fetch_term(25) == 1 and r.read_range(1, 25) == _e(1, 25)
    w.write(_e(20, 22, term=2), max_entries=16)               # an overwrite from 20
    r.refresh()
    assert [r.fetch_term(i) for i in range(18, 24)] == [1, 1, 2, 2, 2, None]
    assert r.read_range(15, 30) == _e(15, 19) + _e(20, 22, term=2)


def test_max_open_must_be_positive(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="max_open"):
        Segments(str(tmp_path), max_open=0)


def test_reader_memory_does_not_grow_per_entry(tmp_path: Any) -> None:
    # the index of every file read used to stay in memory: 28 bytes an entry, and an fd per
    # file. Now what grows with the log is a few dozen bytes per *file* (its term runs)
    import tracemalloc
    per, files = 500, 80
    w = Segments(str(tmp_path))
    for k in range(files):
        w.write(_e(k * per + 1, (k + 1) * per, term=1 + k // 7), per, sync_dir=False,
                merge=False)
    w.close()
    half = files // 2 * per
    tracemalloc.start()
    try:
        s = Segments(str(tmp_path))
        for i in range(1, half + 1):
            s.fetch_term(i)
        assert len(s.read_range(1, half)) == half
        a = tracemalloc.get_traced_memory()[0]
        for i in range(half + 1, files * per + 1):
            s.fetch_term(i)
        assert len(s.read_range(half + 1, files * per)) == files * per - half
        b = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    per_entry = (b - a) / (files * per - half)
    assert per_entry < 1.5, f"{per_entry:.2f} bytes per entry"
    assert len(s.cache.open_names()) <= s.cache.max_open
    s.close()


def _runs_as_terms(runs: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    return [(i, t) for a, b, t in runs for i in range(a, b + 1)]


def test_term_runs_from_gives_fetch_term_of_every_index(tmp_path: Any) -> None:
    log = _terms_log(400)
    s = Segments(str(tmp_path), max_open=2)
    s.write(log, max_entries=25, merge=False)                 # 16 files, terms change inside
    for frm, to in ((1, 400), (1, 1), (30, 80), (37, 37), (390, 500), (26, 50)):
        want = [(i, s.fetch_term(i)) for i in range(frm, min(to, 400) + 1)]
        runs = s.term_runs_from(frm, to)
        assert _runs_as_terms(runs) == want
        # runs are maximal within a file: two neighbours of one file never share a term
        assert all(a[2] != b[2] or a[1] + 1 != b[0] or s._find(a[0]) != s._find(b[0])
                   for a, b in itertools.pairwise(runs))
    assert s.term_runs_from(401, 500) == [] and s.term_runs_from(0, 5) == []
    assert len(s.cache.open_names()) <= 2
    s.close()


def test_term_runs_from_follows_overwrites_and_stops_at_a_gap(tmp_path: Any) -> None:
    s = Segments(str(tmp_path))
    s.write(_e(1, 21), max_entries=16)
    s.write(_e(18, 24, term=2), max_entries=16)               # an overwrite from 18
    assert _runs_as_terms(s.term_runs_from(10, 30)) == \
        [(i, 1) for i in range(10, 18)] + [(i, 2) for i in range(18, 25)]
    s.write(_e(30, 32, term=2), max_entries=16)               # 25..29 held by no file
    assert _runs_as_terms(s.term_runs_from(20, 40)) == [(i, 2) for i in range(20, 25)]
    assert _runs_as_terms(s.term_runs_from(1, 24)) == [(i, s.fetch_term(i)) for i in range(1, 25)]
    s.close()
