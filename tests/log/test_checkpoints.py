"""Checkpoints on the disk log beyond the contract suite: a restarted server starts from the
newest checkpoint and replays only what follows it; corrupt checkpoints are set aside and
recovery falls back; promotion moves the file into ``snapshots/`` atomically and truncates the
segments as a snapshot does; files never outlive what supersedes them."""
from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ra.core import server
from ra.core.messages import SnapshotMeta
from ra.testing.memory import MemoryMeta
from tests.wal.harness import InProcNode
from transport import codec
from wal import osio

CL = (("a", "n1"),)


class Count:
    """State ``(count, last_index)``; records every index it applies."""

    def __init__(self) -> None:
        self.applied: list[int] = []

    def init(self, config: Any) -> tuple[int, int]:
        return (0, 0)

    def apply(self, meta: dict[str, Any], cmd: Any, state: tuple[int, int]) -> tuple[Any, ...]:
        self.applied.append(meta["index"])
        return (state[0] + 1, meta["index"]), None


def _usr(i: int) -> tuple[Any, ...]:
    return ("usr", ("x", i), None, 0)


def _node_with_log(tmp: Any, n: int) -> tuple[InProcNode, Any]:
    """A log ``a`` holding a noop at 1 and commands at 2..n, partly in segments, all durable."""
    node = InProcNode(str(tmp), max_size_bytes=4096, segment_max_entries=10)
    lg = node.log("a")
    lg.append((1, 1, ("noop", 0)))
    for i in range(2, n + 1):
        lg.append((i, 1, _usr(i)))
        if i % 15 == 0:
            node.pump()
    node.pump()
    node.wal.roll_over()
    node.flush_segments()
    lg.tick()
    assert lg.segments.range() is not None
    return node, lg


def _restart(node: InProcNode, last_applied: int) -> tuple[Any, Any, Count]:
    """Node crash, then a core server built from what is on disk."""
    node.crash_all()
    lg = node.logs["a"]
    meta = MemoryMeta()
    meta.store_last_applied(last_applied)
    m = Count()
    cfg = server.ServerConfig(id=("a", "n1"), uid="a", cluster_name="c", initial_members=CL,
                              machine=m, log=lg, meta=meta)
    _, s, _ = server.init(cfg)
    return lg, s, m


def _cp_dir(tmp: Any) -> str:
    return os.path.join(str(tmp), "a", "checkpoints")


def _damage(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(30)
        c = f.read(1)
        f.seek(30)
        f.write(bytes([c[0] ^ 0x10]))


def test_restart_starts_from_the_checkpoint_and_replays_the_rest(tmp_path: Any) -> None:
    node, lg = _node_with_log(tmp_path, 40)
    lg.checkpoint(25, 1, CL, 0, (24, 25))
    lg, s, m = _restart(node, 40)
    assert lg.recovered_from == ("checkpoint", 25)
    assert m.applied == list(range(26, 41))          # not 2..25: the checkpoint has them
    assert s.machine_state == (39, 40) and s.last_applied == 40 and s.commit_index == 40
    assert lg.snapshot_index_term() == (0, 0)
    assert lg.fetch(2) == (2, 1, _usr(2))             # the log below it is kept
    assert os.listdir(_cp_dir(tmp_path)) == ["%020d_1.snapshot" % 25]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_newest_checkpoint_falls_back_to_the_previous(tmp_path: Any, damage: str) -> None:
    node, lg = _node_with_log(tmp_path, 40)
    for i in (10, 20, 30):
        lg.checkpoint(i, 1, CL, 0, (i - 1, i))
    newest = os.path.join(_cp_dir(tmp_path), "%020d_1.snapshot" % 30)
    if damage == "flip":
        _damage(newest)
    else:
        with open(newest, "r+b") as f:
            f.truncate(20)
    lg, s, m = _restart(node, 40)
    assert lg.recovered_from == ("checkpoint", 20)
    assert m.applied == list(range(21, 41))
    assert s.machine_state == (39, 40)
    assert lg.checkpoint_index_terms() == [(10, 1), (20, 1)]
    assert any("corrupt checkpoint" in w for w in lg.warnings)
    assert os.path.exists(newest + ".corrupt")        # set aside, never read again
    lg.checkpoint(30, 1, CL, 0, (29, 30))             # the index is free for a new one
    assert lg.checkpoint_index_terms()[-1] == (30, 1)


def test_all_checkpoints_corrupt_falls_back_to_the_snapshot(tmp_path: Any) -> None:
    node, lg = _node_with_log(tmp_path, 40)
    lg.update_release_cursor(5, 1, CL, 0, (4, 5))
    for i in (10, 20):
        lg.checkpoint(i, 1, CL, 0, (i - 1, i))
    for n in os.listdir(_cp_dir(tmp_path)):
        _damage(os.path.join(_cp_dir(tmp_path), n))
    lg, s, m = _restart(node, 40)
    assert lg.recovered_from == ("snapshot", 5)
    assert m.applied == list(range(6, 41))
    assert s.machine_state == (39, 40)
    assert lg.checkpoint_index_terms() == []


def test_checkpoints_at_or_below_the_snapshot_are_deleted_at_recovery(tmp_path: Any) -> None:
    """A crash between a snapshot's write and the deletion of the checkpoints it supersedes:
    recovery deletes them."""
    node, lg = _node_with_log(tmp_path, 30)
    lg.checkpoint(10, 1, CL, 0, (9, 10))
    stale = os.path.join(_cp_dir(tmp_path), "%020d_1.snapshot" % 10)
    with open(stale, "rb") as f:
        data = f.read()
    lg.update_release_cursor(12, 1, CL, 0, (11, 12))
    assert not os.path.exists(stale)
    with open(stale, "wb") as f:                      # as if the unlink never happened
        f.write(data)
    lg, s, m = _restart(node, 30)
    assert not os.path.exists(stale)
    assert lg.recovered_from == ("snapshot", 12) and m.applied == list(range(13, 31))


def test_promotion_moves_the_file_and_truncates_like_a_snapshot(tmp_path: Any) -> None:
    node, lg = _node_with_log(tmp_path, 60)
    snaps = os.path.join(str(tmp_path), "a", "snapshots")
    segs = os.path.join(str(tmp_path), "a", "segments")
    assert lg.segments.range() == (1, 60) and len(os.listdir(segs)) == 6
    for i in (15, 35, 50):
        lg.checkpoint(i, 1, CL, 0, (i - 1, i))
    name15 = "%020d_1.snapshot" % 15
    with open(os.path.join(_cp_dir(tmp_path), name15), "rb") as f:
        cp15 = f.read()
    assert lg.promote_checkpoint(20) is True
    assert lg.snapshot_index_term() == (15, 1)
    assert os.listdir(snaps) == [name15]
    with open(os.path.join(snaps, name15), "rb") as f:
        assert f.read() == cp15                       # the same file, renamed
    assert sorted(os.listdir(_cp_dir(tmp_path))) == ["%020d_1.snapshot" % i for i in (35, 50)]
    # no previous snapshot to fall back on yet: every segment stays (as for release_cursor)
    assert lg.segments.range() == (1, 60)
    assert lg.promote_checkpoint(40) is True
    assert lg.snapshot_index_term() == (35, 1)
    # now the previous snapshot (15) is the fallback: files wholly at or below it go
    assert lg.segments.range() == (11, 60) and len(os.listdir(segs)) == 5
    assert lg.checkpoint_index_terms() == [(50, 1)]
    lg, s, m = _restart(node, 60)
    assert lg.snapshot_index_term() == (35, 1)
    assert lg.recovered_from == ("checkpoint", 50)
    assert m.applied == list(range(51, 61)) and s.machine_state == (59, 60)
    assert lg.take(36, 100) == [(i, 1, _usr(i)) for i in range(36, 61)]


@contextlib.contextmanager
def _failing(call: str, err: int) -> Iterator[None]:
    """The next ``call`` of the WAL/log OS layer fails with ``err``."""
    f = osio.FaultyOS()
    old = osio.set_os(f)
    try:
        f.arm(call, err)
        yield
    finally:
        osio.set_os(old)


def test_a_failed_promotion_leaves_the_checkpoint_in_place(tmp_path: Any) -> None:
    node, lg = _node_with_log(tmp_path, 30)
    lg.checkpoint(20, 1, CL, 0, (19, 20))
    with _failing("rename", errno.EIO), pytest.raises(OSError):
        lg.promote_checkpoint(25)
    lg, s, m = _restart(node, 30)                     # the server would crash on the error
    assert lg.snapshot_index_term() == (0, 0)
    assert lg.checkpoint_index_terms() == [(20, 1)]
    assert lg.recovered_from == ("checkpoint", 20) and m.applied == list(range(21, 31))
    assert lg.promote_checkpoint(25) is True


def test_install_snapshot_deletes_checkpoint_files(tmp_path: Any) -> None:
    node, lg = _node_with_log(tmp_path, 20)
    lg.checkpoint(10, 1, CL, 0, (9, 10))
    lg.checkpoint(18, 1, CL, 0, (17, 18))
    lg.install_snapshot(SnapshotMeta(50, 2, CL, 0), codec.encode((49, 50)))
    assert os.listdir(_cp_dir(tmp_path)) == []
    node.pump()
    lg, s, m = _restart(node, 50)
    assert lg.recovered_from == ("snapshot", 50) and s.machine_state == (49, 50)


def test_interrupted_checkpoint_write_is_cleaned_up(tmp_path: Any) -> None:
    node, lg = _node_with_log(tmp_path, 20)
    lg.checkpoint(10, 1, CL, 0, (9, 10))
    # the temp file is written, never renamed
    with _failing("rename", errno.EIO), pytest.raises(OSError):
        lg.checkpoint(15, 1, CL, 0, (14, 15))
    assert any(n.endswith(".tmp") for n in os.listdir(_cp_dir(tmp_path)))
    lg, s, m = _restart(node, 20)
    assert os.listdir(_cp_dir(tmp_path)) == ["%020d_1.snapshot" % 10]
    assert lg.recovered_from == ("checkpoint", 10)


def test_max_checkpoints_is_configurable(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path), max_size_bytes=4096)
    lg = node.log("a", max_checkpoints=2, min_checkpoint_interval=5)
    for i in range(1, 31):
        lg.append((i, 1, _usr(i)))
    node.pump()
    for i in range(1, 31):
        lg.checkpoint(i, 1, CL, 0, i)
    # the first above 0 + 5, then each more than 5 above the newest: 6, 12, 18, 24, 30
    assert lg.checkpoint_index_terms() == [(24, 1), (30, 1)]
    assert len(os.listdir(_cp_dir(tmp_path))) == 2
