"""ra/log/log.py specifics beyond the contract suite: segments as the read path, memtable
trimming, resends served from segments, tombstones through segments, recovery of a WAL that
holds unsynced data."""
from __future__ import annotations

import os
from typing import Any

import pytest

from ra.core.messages import SnapshotMeta
from tests.wal.harness import InProcNode
from wal.messages import WalResendWrite


def _fill(lg: Any, n: int, term: int = 1) -> None:
    s = lg.next_index()
    for i in range(s, s + n):
        lg.append((i, term, ("c", i)))


def test_reads_fall_back_to_segments_after_trim(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path), max_size_bytes=4096, segment_max_entries=50)
    lg = node.log("a")
    for _ in range(10):
        _fill(lg, 30)
        node.pump()
    node.wal.roll_over()
    node.flush_segments()
    assert lg.tick() == 300 and len(lg.mem) == 0
    assert lg.fetch(123) == (123, 1, ("c", 123)) and lg.fetch_term(300) == 1
    assert lg.take(290, 50) == [(i, 1, ("c", i)) for i in range(290, 301)]
    # an overwrite reaching into the segment region
    lg.write([(250, 2, "n")])
    assert lg.take(248, 10) == [(248, 1, ("c", 248)), (249, 1, ("c", 249)), (250, 2, "n")]
    node.pump()
    assert lg.last_written() == (250, 2)


def test_resend_request_served_from_segments(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path), max_size_bytes=4096)
    lg = node.log("a")
    _fill(lg, 40)
    node.pump()
    node.wal.roll_over()
    node.flush_segments()
    lg.tick()
    assert len(lg.mem) == 0
    lg.handle_wal_event(WalResendWrite("a", 10))
    assert lg.flush() == 31
    m = node.queue[-1]
    assert m.entries[0][0] == 10 and len(m.entries) == 31


def test_tombstone_survives_segment_flush(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path), max_size_bytes=4096)
    lg = node.log("a")
    _fill(lg, 50)
    node.pump()
    lg.install_snapshot(SnapshotMeta(20, 3, (), 0), __import__("transport").codec.encode("s"))
    node.pump()
    node.wal.roll_over()
    node.flush_segments()                       # stale 1..50 and the tombstone at 21 -> segments
    node.crash_all()
    lg = node.logs["a"]
    assert lg.last_index_term() == (20, 3) and lg.fetch(21) is None
    lg.append((21, 4, "new"))
    node.pump()
    node.crash_all()
    assert node.logs["a"].last_index_term() == (21, 4)


def test_unsynced_entries_of_newest_wal_file_are_resent(tmp_path: Any) -> None:
    """A server restarting alone finds entries in the live WAL file it cannot know were synced:
    it counts them unconfirmed and re-sends them; they are then confirmed."""
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    _fill(lg, 10)
    node.pump()
    lg.close()
    del node.logs["a"]
    lg2 = node.log("a")                         # WAL still running, file still open
    assert lg2.last_index_term() == (10, 1) and lg2.last_written() == (0, 0)
    node.pump()
    assert lg2.last_written() == (10, 1)


def test_corrupt_latest_snapshot_falls_back_with_log_intact(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path), max_size_bytes=4096, segment_max_entries=10)
    lg = node.log("a")
    _fill(lg, 40)
    node.pump()
    node.wal.roll_over()
    node.flush_segments()
    lg.tick()
    segs = os.path.join(str(tmp_path), "a", "segments")
    lg.update_release_cursor(10, 1, (), 0, "s10")
    assert lg.segments.range() == (1, 40)       # nothing below a previous snapshot yet
    lg.update_release_cursor(30, 1, (), 0, "s30")
    assert lg.segments.range()[0] in (1, 11)    # only files wholly below 10 may go
    assert len(os.listdir(segs)) >= 3
    lg.update_release_cursor(35, 1, (), 0, "s35")   # now the previous is 30: 1..30 may go
    assert lg.segments.range()[0] > 20
    snaps = sorted(os.listdir(os.path.join(str(tmp_path), "a", "snapshots")))
    with open(os.path.join(str(tmp_path), "a", "snapshots", snaps[-1]), "r+b") as f:
        f.truncate(10)
    node.crash_all()
    lg = node.logs["a"]
    assert lg.snapshot_index_term() == (30, 1)
    assert lg.read_snapshot()[1] == "s30"
    assert lg.last_index_term() == (40, 1)      # every entry after the fallback is there
    assert lg.take(31, 20) == [(i, 1, ("c", i)) for i in range(31, 41)]
    assert any("corrupt" in w for w in lg.warnings)


def test_install_snapshot_corrupt_falls_back_and_truncates_at_gap(tmp_path: Any) -> None:
    """An installed snapshot replaces the log; if it is corrupt at recovery, the previous
    snapshot is used and the log ends at the gap (reported in warnings)."""
    node = InProcNode(str(tmp_path), max_size_bytes=4096, segment_max_entries=10)
    lg = node.log("a")
    _fill(lg, 20)
    node.pump()
    lg.update_release_cursor(5, 1, (), 0, "s5")
    lg.install_snapshot(SnapshotMeta(100, 3, (), 0), __import__("transport").codec.encode("i"))
    node.pump()
    node.wal.roll_over()
    node.flush_segments()
    snaps = sorted(os.listdir(os.path.join(str(tmp_path), "a", "snapshots")))
    with open(os.path.join(str(tmp_path), "a", "snapshots", snaps[-1]), "r+b") as f:
        f.truncate(10)
    node.crash_all()
    lg = node.logs["a"]
    assert lg.snapshot_index_term() == (5, 1)
    assert lg.last_index_term()[0] == 5
    assert lg.warnings


def test_recovery_reads_segments_in_bulk_and_still_names_bad_payloads(tmp_path: Any) -> None:
    from ra.log.log import DiskLog
    from ra.wire import codec
    from wal.segments import Segments
    segs = Segments(os.path.join(str(tmp_path), "a", "segments"))
    ents = [(i, 1, codec.encode(("c", i))) for i in range(1, 101)]
    segs.write(ents[:60], 32)
    segs.close()
    lg = DiskLog("a", str(tmp_path))
    assert lg.last_index_term() == (60, 1)
    assert lg.take(1, 100) == [(i, 1, ("c", i)) for i in range(1, 61)]
    lg.close()
    # a payload with a good checksum that is no term of the codec: the bulk decode fails, the
    # one-by-one decode then raises on it, as a single read would
    segs = Segments(os.path.join(str(tmp_path), "a", "segments"))
    segs.write([(61, 1, b"\xc1")] + ents[61:], 32)
    segs.close()
    lg = DiskLog("a", str(tmp_path))
    assert lg.take(40, 21) == [(i, 1, ("c", i)) for i in range(40, 61)]
    with pytest.raises(codec.DecodeError):
        lg.take(50, 20)
    lg.close()


def test_a_custom_codec_reads_segments_one_by_one(tmp_path: Any) -> None:
    import json
    from ra.log.log import DiskLog
    from wal.segments import Segments
    segs = Segments(os.path.join(str(tmp_path), "a", "segments"))
    segs.write([(i, 1, json.dumps(["c", i]).encode()) for i in range(1, 41)], 16)
    segs.close()
    lg = DiskLog("a", str(tmp_path), codec=(lambda t: json.dumps(t).encode(), json.loads))
    assert lg.take(5, 30) == [(i, 1, ["c", i]) for i in range(5, 35)]
    lg.close()


def test_a_log_that_only_grows_keeps_few_segment_files_open(tmp_path: Any) -> None:
    # issue 14: a machine that never snapshots. Every segment file the housekeeping tick read
    # stayed open with its index in memory (28 bytes an entry); a reader now keeps a few
    # open, and reads, terms, overwrites and recovery across all of them stay right
    node = InProcNode(str(tmp_path), max_size_bytes=2048, segment_max_entries=20)
    lg = node.log("a")
    for k in range(30):
        _fill(lg, 20, term=1 + k // 10)
        node.pump()
        node.wal.roll_over()
        node.flush_segments()
        lg.tick()
    assert lg.last_index_term() == (600, 3) and len(lg.mem) == 0
    segs = lg.segments
    assert len([n for n in os.listdir(segs.dir) if n.endswith(".segment")]) >= 30
    assert len(segs.cache.open_names()) <= segs.cache.max_open
    want = [(i, 1 + (i - 1) // 200, ("c", i)) for i in range(1, 601)]
    assert [lg.fetch_term(i) for i in range(1, 601)] == [t for _, t, _ in want]
    assert lg.take(1, 600) == want
    assert [lg.fetch(i) for i in (1, 399, 200, 201, 600, 17)] == \
        [want[i - 1] for i in (1, 399, 200, 201, 600, 17)]
    assert len(segs.cache.open_names()) <= segs.cache.max_open
    lg.write([(450, 4, "n")])                               # an overwrite into the segments
    node.pump()
    node.wal.roll_over()
    node.flush_segments()
    lg.tick()
    assert lg.last_index_term() == (450, 4) and lg.take(448, 5) == want[447:449] + [
        (450, 4, "n")]
    node.crash_all()
    lg2 = node.logs["a"]
    assert lg2.last_index_term() == (450, 4)
    assert [lg2.fetch_term(i) for i in range(1, 451)] == [t for _, t, _ in want[:449]] + [4]
    assert lg2.take(1, 600) == want[:449] + [(450, 4, "n")]
    assert len(lg2.segments.cache.open_names()) <= lg2.segments.cache.max_open


def test_tick_drops_from_memory_only_up_to_the_first_entry_whose_term_differs() -> None:
    from ra.log.log import _agreeing
    from ra.log.memtable import Memtable
    mem = Memtable()
    for i in range(5, 15):
        mem.put((i, 1 if i < 10 else 2, None))
    assert _agreeing(mem, [(5, 9, 1), (10, 14, 2)]) == 14          # all agree
    assert _agreeing(mem, [(5, 8, 1), (9, 14, 2)]) == 8            # 9 differs: kept
    assert _agreeing(mem, [(5, 9, 1), (10, 11, 2)]) == 11          # segments end at 11
    assert _agreeing(mem, [(5, 20, 1)]) == 9                       # 10 has another term
    assert _agreeing(mem, [(5, 5, 3)]) == 4 and _agreeing(mem, []) == 4
