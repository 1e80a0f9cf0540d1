"""The WAL's batch loop in-process: one sync per batch, roll over, o_sync, faults at the OS seam,
torn tails on restart, gaps and resends."""
from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ra.core.messages import Written
from tests.wal.harness import InProcNode
from wal import osio
from wal.format import HEADER_SIZE, scan_file
from wal.messages import WalError, WalWritten
from wal.segment_writer import wal_files


@pytest.fixture
def faulty() -> Iterator[osio.FaultyOS]:
    f = osio.FaultyOS()
    old = osio.set_os(f)
    try:
        yield f
    finally:
        osio.set_os(old)


def _fill(node: InProcNode, uids: list[str], n: int, term: int = 1) -> None:
    for u in uids:
        lg = node.logs[u]
        start = lg.next_index()
        for i in range(start, start + n):
            lg.append((i, term, (u, i)))


def test_one_fdatasync_per_batch_for_many_writers(tmp_path: Any, faulty: osio.FaultyOS) -> None:
    node = InProcNode(str(tmp_path))
    uids = [f"s{i}" for i in range(20)]
    for u in uids:
        node.log(u)
    _fill(node, uids, 1)
    node.pump()  # the WAL meets its writers (and writes its hint file of their addresses)
    _fill(node, uids, 49)
    before = faulty.calls.get("fdatasync", 0)
    writes_before = faulty.calls.get("write", 0)
    evs = node.pump()
    assert faulty.calls["fdatasync"] - before == 1
    assert faulty.calls["write"] - writes_before == 1  # one buffer, one write call
    assert {u for u, _ in evs} == set(uids)
    for u in uids:
        assert node.logs[u].last_written() == (50, 1)
    ov = node.wal.overview()
    assert ov["entries"] == 1000 and ov["syncs"] == 2 and ov["entries_per_sync"] == 500


def test_notices_only_after_sync(tmp_path: Any, faulty: osio.FaultyOS) -> None:
    """A notice is sent only once fdatasync returned: make fdatasync fail, get none."""
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    _fill(node, ["a"], 5)
    faulty.arm("fdatasync", errno.EIO)
    node.pump()
    assert lg.last_written() == (0, 0)


@pytest.mark.parametrize("call,err", [("write", errno.ENOSPC), ("write", errno.EIO),
                                      ("fdatasync", errno.EIO), ("fdatasync", errno.ENOSPC)])
def test_faults_stop_confirming_and_are_reported(tmp_path: Any, faulty: osio.FaultyOS,
                                                 call: str, err: int) -> None:
    node = InProcNode(str(tmp_path))
    a, b = node.log("a"), node.log("b")
    _fill(node, ["a", "b"], 10)
    node.pump()
    assert a.last_written() == (10, 1) and b.last_written() == (10, 1)
    faulty.arm(call, err)
    _fill(node, ["a"], 10)
    node.pump()
    assert a.last_written() == (10, 1)          # nothing unsynced confirmed
    assert a.wal_error and errno.errorcode[err] in a.wal_error
    assert b.wal_error                          # every known writer is told
    ov = node.wal.overview()
    assert ov["failed"] and errno.errorcode[err] in ov["error"]
    # even if the disk heals, this incarnation confirms nothing more
    faulty.disarm()
    _fill(node, ["b"], 5)
    node.pump()
    assert b.last_written() == (10, 1) and a.last_written() == (10, 1)
    # restart (the supervisor's job): confirmed entries are there, writers carry on
    node.crash_wal()
    node.deliver()                              # wal_started -> writers resend
    node.pump()
    assert a.last_written() == (20, 1) and b.last_written() == (15, 1)
    assert a.wal_error is None
    node.crash_all()
    assert node.logs["a"].take(1, 100) == [(i, 1, ("a", i)) for i in range(1, 21)]


def test_real_enospc_on_a_small_tmpfs(tmp_path: Any) -> None:
    """A 1 MiB tmpfs as the WAL directory gives a real ENOSPC from write()."""
    import subprocess

    from wal.wal import Wal
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mnt)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        notes: list[Any] = []
        w = Wal(str(mnt / "wal"), str(tmp_path / "data"), lambda a, m: notes.append(m),
                max_size_bytes=64 << 20)
        w.recover()
        from wal.batch import Append
        i = 1
        while w.failed is None and i < 10_000:
            w.handle_appends([Append(b"a", "A", i - 1, [(i, 1, bytes(64 << 10))], i)])
            i += 1
        assert w.failed and "No space left" in w.failed
        confirmed = max(m.ranges[-1][2] for m in notes if type(m) is WalWritten)
        assert confirmed == i - 2               # the failing entry was not confirmed
        assert any(type(m) is WalError for m in notes)
        w.close()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_roll_over_and_segments(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path), max_size_bytes=2048, segment_max_entries=16)
    lg = node.log("a")
    for k in range(10):
        _fill(node, ["a"], 20)
        node.pump()
    assert node.wal.overview()["roll_overs"] >= 3
    assert len(wal_files(node.wal_dir)) >= 4
    flushed = node.flush_segments()
    assert flushed >= 3 and len(wal_files(node.wal_dir)) == 1
    assert lg.tick() > 0                        # memtable trimmed: entries now read from segments
    assert len(lg.mem) < 200
    assert lg.take(1, 200) == [(i, 1, ("a", i)) for i in range(1, 201)]
    segs = os.listdir(os.path.join(str(tmp_path), "a", "segments"))
    assert all(int(s.split("_")[2].split(".")[0]) - int(s.split("_")[1]) < 16 for s in segs)


def test_o_sync_strategy(tmp_path: Any, faulty: osio.FaultyOS) -> None:
    node = InProcNode(str(tmp_path), write_strategy="o_sync")
    lg = node.log("a")
    assert fcntl.fcntl(node.wal._fd, fcntl.F_GETFL) & os.O_SYNC
    before = faulty.calls.get("fdatasync", 0)
    _fill(node, ["a"], 10)
    node.pump()
    assert faulty.calls.get("fdatasync", 0) == before
    assert lg.last_written() == (10, 1)


@pytest.mark.parametrize("checksums", [True, False])
def test_torn_tail_every_offset_on_restart(tmp_path: Any, checksums: bool) -> None:
    """Truncate the WAL file inside its last record at every byte offset: recovery returns the
    entries before it, never a partial one."""
    base = InProcNode(str(tmp_path / "base"), checksums=checksums)
    lg = base.log("a")
    _fill(base, ["a"], 3)
    base.pump()
    lg.append((4, 1, ("a", 4, "x" * 30)))
    base.pump()
    path = base.wal.path
    scanned = scan_file(path)
    with open(path, "rb") as f:
        data = f.read()[:scanned.valid_end]     # the records, without the allocated tail
    recs = scanned.records
    last_len = len(data) - HEADER_SIZE - sum(30 + len(u) + len(p) for u, _, _, p in recs[:3])
    good = len(data) - last_len
    for cut in range(good, len(data)):
        d = tmp_path / f"cut{cut}"
        os.makedirs(d / "wal")
        with open(d / "wal" / "0000000000000001.wal", "wb") as f:
            f.write(data[:cut])
        node = InProcNode(str(d), checksums=checksums)
        got = node.log("a").take(1, 10)
        assert got == [(i, 1, ("a", i)) for i in (1, 2, 3)], cut
        # zero-filled tail: same answer
    d = tmp_path / "zeros"
    os.makedirs(d / "wal")
    with open(d / "wal" / "0000000000000001.wal", "wb") as f:
        f.write(data[:good] + bytes(4096))
    assert InProcNode(str(d), checksums=checksums).log("a").take(1, 10) == \
        [(i, 1, ("a", i)) for i in (1, 2, 3)]


def test_flipped_bit_with_checksums_ends_log(tmp_path: Any) -> None:
    base = InProcNode(str(tmp_path / "base"))
    lg = base.log("a")
    for i in range(1, 6):
        lg.append((i, 1, ("a", i)))
        base.pump()
    with open(base.wal.path, "rb") as f:      # the records, without the allocated tail
        data = bytearray(f.read()[:scan_file(base.wal.path).valid_end])
    data[-3] ^= 0x10                            # inside the payload of entry 5
    d = tmp_path / "flip"
    os.makedirs(d / "wal")
    with open(d / "wal" / "0000000000000001.wal", "wb") as f:
        f.write(bytes(data))
    lg2 = InProcNode(str(d)).log("a")
    assert lg2.last_index_term() == (4, 1)
    assert lg2.take(1, 10) == [(i, 1, ("a", i)) for i in range(1, 5)]


def test_gap_after_wal_crash_is_resent(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    _fill(node, ["a"], 5)
    node.pump()
    _fill(node, ["a"], 5)                       # 6..10 sent ...
    lg.flush()
    node.crash_wal()                            # ... and lost with the WAL
    _fill(node, ["a"], 5)                       # 11..15: a gap for the new WAL
    evs = node.pump()
    assert evs == [] and lg.last_written() == (5, 1)
    evs = node.pump()                           # the writer resends from 6
    assert evs and lg.last_written() == (15, 1)
    node.crash_all()
    assert node.logs["a"].take(1, 20) == [(i, 1, ("a", i)) for i in range(1, 16)]


def test_overwrite_recovers_last_write(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path), max_size_bytes=4096)
    lg = node.log("a")
    _fill(node, ["a"], 30)
    node.pump()
    node.wal.roll_over()
    node.flush_segments()                       # 1..30 term 1 now in segments
    lg.write([(20, 2, "x20"), (21, 2, "x21")])
    node.pump()
    assert lg.last_written() == (21, 2)
    node.crash_all()                            # recovery: segments + WAL overwrite
    lg = node.logs["a"]
    assert lg.last_index_term() == (21, 2)
    assert lg.fetch(19) == (19, 1, ("a", 19)) and lg.fetch(20) == (20, 2, "x20")
    assert lg.fetch(22) is None
    node.crash_all()                            # and again, with all of it in segments now
    assert node.logs["a"].last_index_term() == (21, 2)


def test_stale_written_notice_does_not_confirm(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    _fill(node, ["a"], 5)
    lg.flush()
    lg.write([(3, 2, "n3")])                    # overwrite before the first batch is confirmed
    node.pump()                                 # both batches go in one WAL batch
    assert lg.last_written() == (3, 2)
    assert not lg.handle_written(Written(1, 1, 5))


def test_the_file_is_allocated_ahead_written_in_place_and_cut_back_at_roll_over(
        tmp_path: Any) -> None:
    from wal.wal import PREALLOCATE_BYTES
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    path = node.wal.path
    assert os.path.getsize(path) == PREALLOCATE_BYTES      # allocated before the first record
    _fill(node, ["a"], 5)
    node.pump()
    assert os.path.getsize(path) == PREALLOCATE_BYTES      # written in place, not appended
    scanned = scan_file(path)
    assert [r[1] for r in scanned.records] == [1, 2, 3, 4, 5]
    assert scanned.valid_end == node.wal.overview()["file_size"] < PREALLOCATE_BYTES
    # a batch beyond the allocation grows it by at least a chunk, records still in place
    lg.append((6, 1, ("a", "x" * PREALLOCATE_BYTES)))
    node.pump()
    assert os.path.getsize(path) >= node.wal.overview()["file_size"] > PREALLOCATE_BYTES
    assert [r[1] for r in scan_file(path).records] == [1, 2, 3, 4, 5, 6]
    node.wal.roll_over()
    assert os.path.getsize(path) == scan_file(path).valid_end   # the closed file: records only
    assert lg.last_written() == (6, 1)


def test_a_file_that_cannot_be_allocated_is_written_as_it_grows(
        tmp_path: Any, faulty: osio.FaultyOS) -> None:
    faulty.arm("fallocate", errno.ENOSPC)
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    _fill(node, ["a"], 5)
    node.pump()
    assert node.wal.failed is None and lg.last_written() == (5, 1)
    assert os.path.getsize(node.wal.path) == node.wal.overview()["file_size"]


def test_a_reply_leaves_after_the_sync_and_the_notice_says_so(tmp_path: Any,
                                                               faulty: osio.FaultyOS) -> None:
    """DiskLog.attach_reply -> WalAppend.reply -> sent by the WAL once synced, before the
    writer's notice, which names its index (the log's Written then says ``replied``)."""
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    lg.write([(1, 1, "x"), (2, 1, "y")])
    lg.attach_reply(2, 1, ["tcp://127.0.0.1:9", b"frame", b""])
    evs = node.pump()
    assert node.forwards == [("tcp://127.0.0.1:9", b"frame", b"")]
    assert evs == [("a", Written(1, 1, 2, True))]
    # the next write carries none unless attached again
    lg.write([(3, 1, "z")])
    assert node.pump() == [("a", Written(1, 3, 3, False))]
    assert len(node.forwards) == 1


def test_with_defer_notices_the_notice_after_a_sent_reply_waits_for_the_next_batch(
        tmp_path: Any) -> None:
    """``defer_notices`` (the WAL process's ``notice_defer_ms``): the reply leaves at the sync,
    its writer's notice is held; the next batch sends it before anything of its own, so each
    writer's notices keep their order. A writer without a reply is not held back."""
    node = InProcNode(str(tmp_path), defer_notices=True)
    a, b = node.log("a"), node.log("b")
    a.write([(1, 1, "x")])
    a.attach_reply(1, 1, ["tcp://127.0.0.1:9", b"frame", b""])
    b.write([(1, 1, "y")])
    assert node.pump() == [("b", Written(1, 1, 1, False))]      # a's is held
    assert node.forwards == [("tcp://127.0.0.1:9", b"frame", b"")]
    assert [(addr, m.replied) for addr, m in node.wal.held] == [("a", 1)]
    assert a.last_written() == (0, 0)
    a.write([(2, 1, "z")])
    assert node.pump() == [("a", Written(1, 1, 1, True)), ("a", Written(1, 2, 2, False))]
    assert node.wal.held == [] and a.last_written() == (2, 1)


def test_held_notices_leave_on_send_held_and_on_close(tmp_path: Any) -> None:
    """What the process loop does when no batch comes within ``notice_defer_ms``, and what a
    closing WAL does: nothing synced stays unannounced."""
    node = InProcNode(str(tmp_path), defer_notices=True)
    a = node.log("a")
    a.write([(1, 1, "x")])
    a.attach_reply(1, 1, ["tcp://127.0.0.1:9", b"frame", b""])
    assert node.pump() == []
    node.wal.send_held()
    assert node.deliver() == [("a", Written(1, 1, 1, True))]
    a.write([(2, 1, "y")])
    a.attach_reply(2, 1, ["tcp://127.0.0.1:9", b"frame", b""])
    assert node.pump() == []
    node.wal.close()
    assert node.deliver() == [("a", Written(1, 2, 2, True))]
    assert node.wal.held == []


def test_a_failed_batch_still_sends_the_notices_held_from_the_last(
        tmp_path: Any, faulty: osio.FaultyOS) -> None:
    """Held notices name entries synced by an earlier batch: a later failure does not take
    them back (the failed batch's own entries are never confirmed)."""
    node = InProcNode(str(tmp_path), defer_notices=True)
    a = node.log("a")
    a.write([(1, 1, "x")])
    a.attach_reply(1, 1, ["tcp://127.0.0.1:9", b"frame", b""])
    assert node.pump() == []
    a.write([(2, 1, "y")])
    faulty.arm("fdatasync", errno.EIO)
    node.pump()
    assert node.wal.failed is not None
    assert a.last_written() == (1, 1)


def test_a_reply_for_another_entry_than_the_flush_ends_with_is_dropped(tmp_path: Any) -> None:
    """The log attaches a reply only to the append that ends with the entry it names."""
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    lg.write([(1, 1, "x"), (2, 1, "y")])
    lg.attach_reply(2, 2, ["tcp://127.0.0.1:9", b"frame", b""])     # another term
    assert node.pump() == [("a", Written(1, 1, 2, False))]
    lg.write([(3, 1, "z"), (4, 1, "w")])
    lg.attach_reply(3, 1, ["tcp://127.0.0.1:9", b"frame", b""])     # not the last entry
    assert node.pump() == [("a", Written(1, 3, 4, False))]
    assert node.forwards == []


def test_no_reply_leaves_when_the_sync_fails(tmp_path: Any, faulty: osio.FaultyOS) -> None:
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    lg.write([(1, 1, "x")])
    lg.attach_reply(1, 1, ["tcp://127.0.0.1:9", b"frame", b""])
    faulty.arm("fdatasync", errno.EIO)
    node.pump()
    assert node.forwards == [] and lg.last_written() == (0, 0)


def test_a_reply_that_cannot_leave_is_not_reported_sent(tmp_path: Any) -> None:
    """forward() -> False (it could not leave): the notice says 0, so the writer replies."""
    node = InProcNode(str(tmp_path))
    node.wal.forward = lambda to, frame, key: False
    lg = node.log("a")
    lg.write([(1, 1, "x")])
    lg.attach_reply(1, 1, ["tcp://127.0.0.1:9", b"frame", b""])
    assert node.pump() == [("a", Written(1, 1, 1, False))]
