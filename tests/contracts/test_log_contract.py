"""One contract suite for ra.core.log.Log, run against MemoryLog (ra.testing) and DiskLog (ra.log).

Each implementation is wrapped in a small driver: ``sync()`` makes everything queued durable
and feeds the Written notices back; ``crash()`` loses what was never synced and returns the
log as recovered."""
from __future__ import annotations

from typing import Any

import pytest

from ra.core.log import Log
from ra.core.messages import SnapshotMeta, Written
from ra.testing.memory import MemoryLog
from tests.wal.harness import InProcNode


class MemDriver:
    def __init__(self, tmp: Any) -> None:
        self.log = MemoryLog()

    def sync(self) -> list[Written]:
        evs = self.log.sync()
        for ev in evs:
            self.log.handle_written(ev)
        return evs

    def crash(self) -> Any:
        self.log.crash()
        return self.log

    def encode_state(self, s: Any) -> bytes:
        return repr(s).encode()


class DiskDriver:
    def __init__(self, tmp: Any) -> None:
        self.node = InProcNode(str(tmp), max_size_bytes=1 << 16)
        self.log = self.node.log("srv1")

    def sync(self) -> list[Written]:
        return [ev for _, ev in self.node.pump()]

    def crash(self) -> Any:
        self.node.crash_all()
        self.log = self.node.logs["srv1"]
        return self.log

    def encode_state(self, s: Any) -> bytes:
        from transport import codec
        return codec.encode(s)


@pytest.fixture(params=["memory", "disk"])
def drv(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    return MemDriver(tmp_path) if request.param == "memory" else DiskDriver(tmp_path)


def _cmd(i: int) -> Any:
    return ("usr", {"k": i, "v": b"x" * (i % 7)}, None, 1000 + i)


def test_is_a_log(drv: Any) -> None:
    assert isinstance(drv.log, Log)


def test_empty(drv: Any) -> None:
    lg = drv.log
    assert lg.last_index_term() == (0, 0)
    assert lg.last_written() == (0, 0)
    assert lg.next_index() == 1
    assert lg.fetch(1) is None and lg.fetch_term(0) == 0 and lg.fetch_term(1) is None
    assert lg.take(1, 10) == [] and lg.snapshot_meta() is None
    assert lg.snapshot_index_term() == (0, 0) and lg.read_snapshot() is None


def test_append_visible_now_durable_later(drv: Any) -> None:
    lg = drv.log
    for i in range(1, 6):
        lg.append((i, 1, _cmd(i)))
    assert lg.last_index_term() == (5, 1) and lg.next_index() == 6
    assert lg.fetch(3) == (3, 1, _cmd(3)) and lg.fetch_term(5) == 1
    assert lg.last_written() == (0, 0)
    evs = drv.sync()
    assert evs and evs[-1].to_idx == 5
    assert lg.last_written() == (5, 1)
    assert lg.take(2, 3) == [(i, 1, _cmd(i)) for i in (2, 3, 4)]
    assert lg.take(4, 100) == [(4, 1, _cmd(4)), (5, 1, _cmd(5))]


def test_append_must_be_next(drv: Any) -> None:
    drv.log.append((1, 1, "a"))
    with pytest.raises(ValueError):
        drv.log.append((3, 1, "c"))
    with pytest.raises(ValueError):
        drv.log.append((1, 1, "a"))


def test_write_overwrites_tail_and_written_drops(drv: Any) -> None:
    lg = drv.log
    lg.write([(i, 1, _cmd(i)) for i in range(1, 11)])
    drv.sync()
    assert lg.last_written() == (10, 1)
    lg.write([(6, 2, "new6"), (7, 2, "new7")])
    assert lg.last_index_term() == (7, 2)
    assert lg.fetch(8) is None and lg.fetch(6) == (6, 2, "new6")
    assert lg.last_written() == (5, 1)
    # a stale notice for the old term must not confirm the new entries
    assert lg.handle_written(Written(1, 6, 10)) is False
    assert lg.last_written() == (5, 1)
    drv.sync()
    assert lg.last_written() == (7, 2)


def test_write_gap_raises(drv: Any) -> None:
    drv.log.write([(1, 1, "a")])
    with pytest.raises(ValueError):
        drv.log.write([(3, 1, "c")])


def test_crash_keeps_synced_loses_unsynced(drv: Any) -> None:
    lg = drv.log
    for i in range(1, 4):
        lg.append((i, 1, _cmd(i)))
    drv.sync()
    for i in range(4, 7):
        lg.append((i, 1, _cmd(i)))
    lg = drv.crash()
    assert lg.last_index_term() == (3, 1)
    assert lg.last_written() == (3, 1)
    assert lg.take(1, 10) == [(i, 1, _cmd(i)) for i in (1, 2, 3)]
    lg.append((4, 2, "after"))
    drv.sync()
    assert lg.last_written() == (4, 2)


def test_crash_after_overwrite_returns_last_write(drv: Any) -> None:
    lg = drv.log
    lg.write([(i, 1, i) for i in range(1, 9)])
    drv.sync()
    lg.write([(4, 3, "x4")])
    drv.sync()
    lg = drv.crash()
    assert lg.last_index_term() == (4, 3)
    assert [e[:2] for e in lg.take(1, 10)] == [(1, 1), (2, 1), (3, 1), (4, 3)]


def test_release_cursor_snapshot(drv: Any) -> None:
    lg = drv.log
    for i in range(1, 21):
        lg.append((i, 2, _cmd(i)))
    drv.sync()
    lg.update_release_cursor(10, 2, (("a", "n1"),), 1, {"state": 10})
    assert lg.snapshot_index_term() == (10, 2)
    assert lg.fetch(10) is None and lg.fetch(11) == (11, 2, _cmd(11))
    assert lg.fetch_term(10) == 2 and lg.take(5, 3) == []
    assert lg.last_index_term() == (20, 2) and lg.last_written() == (20, 2)
    meta, st = lg.read_snapshot()
    assert (meta.index, meta.term, meta.machine_version) == (10, 2, 1) and st == {"state": 10}
    meta, chunks = lg.snapshot_chunks(3)
    assert all(len(c) <= 3 for c in chunks)
    assert b"".join(chunks) == drv.encode_state({"state": 10})
    # an older cursor is ignored
    lg.update_release_cursor(5, 2, (), 1, {"state": 5})
    assert lg.snapshot_index_term() == (10, 2)
    lg = drv.crash()
    assert lg.snapshot_index_term() == (10, 2)
    assert lg.read_snapshot()[1] == {"state": 10}
    assert lg.last_index_term() == (20, 2)
    assert lg.take(11, 100) == [(i, 2, _cmd(i)) for i in range(11, 21)]


def test_install_snapshot_replaces_log(drv: Any) -> None:
    lg = drv.log
    for i in range(1, 8):
        lg.append((i, 1, i))
    drv.sync()
    meta = SnapshotMeta(30, 4, (("a", "n1"), ("b", "n2")), 0)
    st = lg.install_snapshot(meta, drv.encode_state({"x": [1, 2]}))
    assert st == {"x": [1, 2]}
    assert lg.last_index_term() == (30, 4) and lg.last_written() == (30, 4)
    assert lg.fetch(5) is None and lg.next_index() == 31
    lg.append((31, 5, "n"))
    drv.sync()
    assert lg.last_written() == (31, 5)
    lg = drv.crash()
    assert lg.snapshot_index_term() == (30, 4)
    assert lg.last_index_term() == (31, 5)


def test_install_snapshot_then_crash_drops_stale_tail(drv: Any) -> None:
    """Entries above the installed snapshot from the old log never come back."""
    lg = drv.log
    for i in range(1, 41):
        lg.append((i, 1, i))
    drv.sync()
    lg.install_snapshot(SnapshotMeta(20, 3, (), 0), drv.encode_state("s"))
    drv.sync()  # lets the disk log's tombstone reach the WAL
    lg = drv.crash()
    assert lg.last_index_term() == (20, 3)
    assert lg.fetch(21) is None


# -- checkpoints (ra 2.10+): kept apart, truncate nothing, promoted by release_cursor(idx) -------

CL = (("a", "n1"),)


def _filled(drv: Any, n: int, term: int = 2) -> Any:
    lg = drv.log
    for i in range(1, n + 1):
        lg.append((i, term, _cmd(i)))
    drv.sync()
    return lg


def test_checkpoint_keeps_the_log_and_is_the_recovery_point(drv: Any) -> None:
    lg = _filled(drv, 20)
    lg.checkpoint(10, 2, CL, 1, {"state": 10})
    assert lg.checkpoint_index_terms() == [(10, 2)]
    assert lg.snapshot_index_term() == (0, 0) and lg.read_snapshot() is None
    assert lg.take(1, 100) == [(i, 2, _cmd(i)) for i in range(1, 21)]
    assert lg.last_written() == (20, 2)
    meta, st = lg.recover_snapshot()
    assert meta == SnapshotMeta(10, 2, CL, 1) and st == {"state": 10}
    lg = drv.crash()
    assert lg.checkpoint_index_terms() == [(10, 2)]
    assert lg.recover_snapshot() == (SnapshotMeta(10, 2, CL, 1), {"state": 10})
    assert lg.snapshot_index_term() == (0, 0)
    assert lg.take(1, 100) == [(i, 2, _cmd(i)) for i in range(1, 21)]


def test_checkpoint_must_be_above_the_newest_checkpoint_and_the_snapshot(drv: Any) -> None:
    lg = _filled(drv, 20)
    lg.update_release_cursor(5, 2, CL, 0, "s5")
    lg.checkpoint(5, 2, CL, 0, "c5")                  # at the snapshot: ignored
    lg.checkpoint(12, 2, CL, 0, "c12")
    lg.checkpoint(12, 2, CL, 0, "again")              # not above the newest: ignored
    lg.checkpoint(8, 2, CL, 0, "c8")
    assert lg.checkpoint_index_terms() == [(12, 2)]
    assert lg.recover_snapshot()[1] == "c12"


def test_newest_of_snapshot_and_checkpoint_wins(drv: Any) -> None:
    lg = _filled(drv, 20)
    lg.checkpoint(6, 2, CL, 0, "c6")
    lg.update_release_cursor(9, 2, CL, 0, "s9")       # supersedes the checkpoint at 6
    assert lg.checkpoint_index_terms() == []
    assert lg.recover_snapshot() == (SnapshotMeta(9, 2, CL, 0), "s9")
    lg.checkpoint(15, 2, CL, 0, "c15")
    lg = drv.crash()
    assert lg.snapshot_index_term() == (9, 2)
    assert lg.recover_snapshot() == (SnapshotMeta(15, 2, CL, 0), "c15")
    assert lg.take(10, 100) == [(i, 2, _cmd(i)) for i in range(10, 21)]


def test_checkpoints_are_bounded_oldest_dropped(drv: Any) -> None:
    lg = _filled(drv, 30)
    for i in range(1, 13):
        lg.checkpoint(2 * i, 2, CL, 0, f"c{2 * i}")
    assert lg.checkpoint_index_terms() == [(2 * i, 2) for i in range(3, 13)]   # 10 kept
    lg = drv.crash()
    assert lg.checkpoint_index_terms() == [(2 * i, 2) for i in range(3, 13)]


def test_checkpoint_the_surviving_log_does_not_back_is_dropped_at_crash(drv: Any) -> None:
    lg = _filled(drv, 10)
    for i in range(11, 21):
        lg.append((i, 2, _cmd(i)))                    # never synced
    lg.checkpoint(8, 2, CL, 0, "c8")
    lg.checkpoint(15, 2, CL, 0, "c15")                # taken on entries a crash loses
    lg = drv.crash()
    assert lg.last_index_term() == (10, 2)
    assert lg.checkpoint_index_terms() == [(8, 2)]
    assert lg.recover_snapshot() == (SnapshotMeta(8, 2, CL, 0), "c8")


def test_promote_checkpoint(drv: Any) -> None:
    lg = _filled(drv, 20)
    for i in (5, 10, 15):
        lg.checkpoint(i, 2, CL, 3, {"at": i})
    assert lg.promote_checkpoint(4) is False          # none at or below 4
    assert lg.promote_checkpoint(12) is True          # the newest at or below 12: 10
    assert lg.snapshot_index_term() == (10, 2)
    assert lg.snapshot_meta() == SnapshotMeta(10, 2, CL, 3)
    assert lg.checkpoint_index_terms() == [(15, 2)]   # 5 is superseded, 15 stays
    assert lg.read_snapshot()[1] == {"at": 10}
    assert b"".join(lg.snapshot_chunks(4)[1]) == drv.encode_state({"at": 10})
    assert lg.fetch(10) is None and lg.take(11, 100) == [(i, 2, _cmd(i)) for i in range(11, 21)]
    assert lg.last_index_term() == (20, 2) and lg.last_written() == (20, 2)
    assert lg.promote_checkpoint(10) is False         # at or below the snapshot
    lg = drv.crash()                                  # durable at return
    assert lg.snapshot_index_term() == (10, 2) and lg.read_snapshot()[1] == {"at": 10}
    assert lg.checkpoint_index_terms() == [(15, 2)]
    assert lg.recover_snapshot()[1] == {"at": 15}
    assert lg.take(11, 100) == [(i, 2, _cmd(i)) for i in range(11, 21)]
    assert lg.promote_checkpoint(20) is True
    assert lg.snapshot_index_term() == (15, 2) and lg.checkpoint_index_terms() == []


def test_promote_checkpoint_above_the_written_index(drv: Any) -> None:
    """A leader applies what a majority holds, possibly before its own write is confirmed:
    a checkpoint there can be promoted, and the snapshot then covers those entries."""
    lg = _filled(drv, 5)
    for i in range(6, 11):
        lg.append((i, 2, _cmd(i)))
    lg.checkpoint(8, 2, CL, 0, "c8")
    assert lg.promote_checkpoint(8) is True
    assert lg.snapshot_index_term() == (8, 2) and lg.last_written()[0] >= 8
    drv.sync()
    assert lg.last_written() == (10, 2)
    lg = drv.crash()
    assert lg.snapshot_index_term() == (8, 2) and lg.last_index_term() == (10, 2)


def test_install_snapshot_drops_checkpoints(drv: Any) -> None:
    lg = _filled(drv, 10)
    lg.checkpoint(4, 2, CL, 0, "c4")
    lg.checkpoint(9, 2, CL, 0, "c9")
    lg.install_snapshot(SnapshotMeta(30, 4, CL, 0), drv.encode_state("i30"))
    assert lg.checkpoint_index_terms() == []
    assert lg.recover_snapshot() == (SnapshotMeta(30, 4, CL, 0), "i30")
    drv.sync()
    lg = drv.crash()
    assert lg.checkpoint_index_terms() == []
    assert lg.recover_snapshot() == (SnapshotMeta(30, 4, CL, 0), "i30")


def test_a_stale_install_tombstone_does_not_end_the_wait_of_a_newer_install(drv: Any) -> None:
    """CORE-BUGS #8: notices of writes made after a first install arrive after a second one;
    the first install's tombstone must not end the second's wait, or an older notice confirms
    entries re-written since (same index and term) that are not durable yet."""
    lg = drv.log
    lg.install_snapshot(SnapshotMeta(36, 1, (), 0), drv.encode_state("a"))
    for i in range(37, 41):
        lg.append((i, 2, i))
    if isinstance(drv, MemDriver):
        stale = lg.sync()                       # the notices, not yet handed to the log
        assert any(ev.term == 0 and ev.from_idx == 37 for ev in stale)
    else:
        stale = [("written", lg.uid, [(0, 37, 37), (2, 37, 40)])]
    lg.install_snapshot(SnapshotMeta(38, 2, (), 0), drv.encode_state("b"))
    lg.append((39, 2, 39))                      # re-written: same index and term, not durable
    lg.append((40, 2, 40))
    if isinstance(drv, MemDriver):
        for ev in stale:
            lg.handle_written(ev)
    else:
        for msg in stale:
            assert lg.handle_wal_event(msg) == []
    assert lg.last_written() == (38, 2)
    drv.sync()                                  # the new writes' own notices confirm them
    assert lg.last_written() == (40, 2)
