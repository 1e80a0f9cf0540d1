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
