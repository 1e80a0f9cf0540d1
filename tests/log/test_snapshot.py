"""ra/log/snapshot.py + snapshot_file.py: durable write, previous kept, corrupt latest falls back."""
from __future__ import annotations

import errno
import os
from typing import Any

import pytest

from ra.core.messages import SnapshotMeta
from ra.log.snapshot import FileSnapshotStore
from transport import codec
from wal import osio


def _store(p: Any) -> FileSnapshotStore:
    return FileSnapshotStore(str(p), codec.encode, codec.decode)


def test_write_keep_two_recover(tmp_path: Any) -> None:
    st = _store(tmp_path)
    for i in (10, 20, 30):
        st.write(SnapshotMeta(i, 1, (("a", "n"),), 0), b"state%d" % i)
    assert len(os.listdir(tmp_path)) == 2
    meta, data = _store(tmp_path).recover()
    assert meta == SnapshotMeta(30, 1, (("a", "n"),), 0) and data == b"state30"


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_corrupt_latest_falls_back_to_previous(tmp_path: Any, damage: str) -> None:
    st = _store(tmp_path)
    st.write(SnapshotMeta(10, 1, (), 0), b"a" * 1000)
    st.write(SnapshotMeta(20, 2, (), 0), b"b" * 1000)
    latest = max(n for n in os.listdir(tmp_path) if n.endswith(".snapshot"))
    p = os.path.join(str(tmp_path), latest)
    with open(p, "r+b") as f:
        if damage == "flip":
            f.seek(500)
            c = f.read(1)
            f.seek(500)
            f.write(bytes([c[0] ^ 4]))
        elif damage == "truncate":
            f.truncate(300)
        else:
            f.truncate(0)
    st2 = _store(tmp_path)
    meta, data = st2.recover()
    assert meta.index == 10 and data == b"a" * 1000
    assert st2.warnings
    # a later snapshot does not prune the good previous one in favour of the corrupt one
    st2.write(SnapshotMeta(15, 2, (), 0), b"c")
    assert _store(tmp_path).recover()[0].index == 15


def test_failed_rename_leaves_previous_valid(tmp_path: Any) -> None:
    st = _store(tmp_path)
    st.write(SnapshotMeta(10, 1, (), 0), b"old")
    f = osio.FaultyOS()
    old = osio.set_os(f)
    try:
        f.arm("rename", errno.EIO)
        with pytest.raises(OSError):
            st.write(SnapshotMeta(20, 1, (), 0), b"new")
    finally:
        osio.set_os(old)
    st2 = _store(tmp_path)                      # the .tmp is cleaned up on open
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert st2.recover() == (SnapshotMeta(10, 1, (), 0), b"old")


def test_the_directories_are_made_by_their_first_file_and_their_parent_synced(
        tmp_path: Any, monkeypatch: Any) -> None:
    # most servers never snapshot: opening a log makes no snapshot or checkpoint directory
    # (two mkdirs were a millisecond of CPU at every server's first start)
    from ra.log.log import DiskLog
    log = DiskLog("a", str(tmp_path))
    assert not os.path.exists(os.path.join(str(tmp_path), "a", "snapshots"))
    assert not os.path.exists(os.path.join(str(tmp_path), "a", "checkpoints"))
    assert log.checkpoint_index_terms() == [] and log.snapshots.recover() is None
    synced: list[str] = []
    real = osio.fsync_dir
    monkeypatch.setattr(osio, "fsync_dir", lambda p, *a: (synced.append(p), real(p, *a)))
    d = tmp_path / "a" / "snapshots"
    st = _store(d)
    st.write(SnapshotMeta(10, 1, (), 0), b"x")
    assert str(tmp_path / "a") in synced            # the new directory's entry is durable
    assert _store(d).recover()[1] == b"x"
