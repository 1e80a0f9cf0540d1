"""wal/osio.py: atomic_write, the one temp-file / fsync / rename / fsync-dir in the code base."""
from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from wal import osio


@pytest.fixture
def faulty() -> Iterator[osio.FaultyOS]:
    f = osio.FaultyOS()
    old = osio.set_os(f)
    try:
        yield f
    finally:
        osio.set_os(old)


def test_replaces_the_file_and_syncs_file_and_directory(tmp_path: Path,
                                                        faulty: osio.FaultyOS) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"old")
    osio.atomic_write(str(p), b"new")
    assert p.read_bytes() == b"new" and os.listdir(tmp_path) == ["f"]
    assert faulty.calls == {"write": 1, "fsync": 2, "rename": 1}   # the file, then the dir


def test_not_durable_skips_the_syncs_and_sync_dir_false_the_directory_only(
        tmp_path: Path, faulty: osio.FaultyOS) -> None:
    osio.atomic_write(str(tmp_path / "a"), b"1", durable=False)
    assert faulty.calls.get("fsync", 0) == 0
    osio.atomic_write(str(tmp_path / "b"), b"2", sync_dir=False)
    assert faulty.calls["fsync"] == 1
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_bytes() == b"2"


@pytest.mark.parametrize("call", ["write", "fsync", "rename"])
def test_a_failed_write_keeps_the_old_file(tmp_path: Path, faulty: osio.FaultyOS,
                                           call: str) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"old")
    faulty.arm(call, errno.ENOSPC)
    with pytest.raises(OSError):
        osio.atomic_write(str(p), b"new")
    assert p.read_bytes() == b"old"


# --- DurableBatch: many files made durable together --------------------------------------

class _Ops(osio.FaultyOS):
    """Records the order of renames and fsyncs, and of unlinks (seen through os.unlink)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str]] = []

    def rename(self, src: str, dst: str) -> None:
        super().rename(src, dst)
        self.log.append(("rename", os.path.basename(dst)))

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        self.log.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))


def test_a_batch_shows_its_files_only_once_all_are_durable(tmp_path: Path) -> None:
    ops = _Ops()
    old_os = osio.set_os(ops)
    try:
        d1, d2 = tmp_path / "a", tmp_path / "b"
        d1.mkdir()
        d2.mkdir()
        (d1 / "old").write_bytes(b"superseded")
        with osio.DurableBatch.batched():
            osio.atomic_write(str(d1 / "x"), b"1")
            osio.atomic_write(str(d2 / "y"), b"2")
            osio.unlink_durably(str(d1 / "old"))
            # nothing visible, nothing deleted yet: only the .tmp files are written
            assert sorted(os.listdir(d1)) == ["old", "x.tmp"] and os.listdir(d2) == ["y.tmp"]
            assert ops.log == []
        assert sorted(os.listdir(d1)) == ["x"] and os.listdir(d2) == ["y"]
        assert (d1 / "x").read_bytes() == b"1" and (d2 / "y").read_bytes() == b"2"
    finally:
        osio.set_os(old_os)
    # every file fsynced before any rename, the directories after the renames; the unlink's
    # directory synced last (the superseded file goes only once the new ones are durable)
    kinds = [k for k, _ in ops.log]
    assert kinds == ["fsync", "fsync", "rename", "rename", "fsync", "fsync", "fsync"]
    assert [n for _, n in ops.log[:2]] == ["x.tmp", "y.tmp"]
    assert [n for _, n in ops.log[4:6]] == ["a", "b"] and ops.log[6] == ("fsync", "a")


def test_a_batch_that_fails_renames_nothing_and_deletes_nothing(tmp_path: Path,
                                                               faulty: osio.FaultyOS) -> None:
    (tmp_path / "old").write_bytes(b"kept")
    with pytest.raises(RuntimeError), osio.DurableBatch.batched():
        osio.atomic_write(str(tmp_path / "new"), b"n")
        osio.unlink_durably(str(tmp_path / "old"))
        raise RuntimeError("the caller failed midway")
    assert sorted(os.listdir(tmp_path)) == ["new.tmp", "old"]     # readers ignore .tmp
    # an fsync failing at the commit: no file is renamed, none deleted
    faulty.arm("fsync", errno.EIO)
    with pytest.raises(OSError), osio.DurableBatch.batched():
        osio.atomic_write(str(tmp_path / "new"), b"n")
        osio.unlink_durably(str(tmp_path / "old"))
    assert sorted(os.listdir(tmp_path)) == ["new.tmp", "old"]
    faulty.disarm()
    assert osio.DurableBatch.current() is None         # the next write is not batched
    osio.atomic_write(str(tmp_path / "plain"), b"p")
    assert (tmp_path / "plain").read_bytes() == b"p"
