"""ra/log/meta.py: DiskMeta is durable before store() returns; last_applied is lazy."""
from __future__ import annotations

import os
from typing import Any

import pytest

from ra.core.messages import MetaWritten
from ra.core.meta import MetaStore
from ra.core.types import ServerId
from ra.log.meta import CorruptMeta, DiskMeta


def test_store_fetch_reopen(tmp_path: Any) -> None:
    m = DiskMeta(str(tmp_path))
    assert isinstance(m, MetaStore)
    assert m.fetch() == (0, None) and m.last_applied() == 0
    seq = m.store(3, ServerId("a", "n1:1"))
    assert m.sync() == [MetaWritten(seq)] and m.sync() == []
    m.store_last_applied(17)
    assert DiskMeta(str(tmp_path)).last_applied() == 0     # in memory until flushed
    m.flush_last_applied()
    m2 = DiskMeta(str(tmp_path))
    assert m2.fetch() == (3, ServerId("a", "n1:1"))
    assert m2.last_applied() == 17
    m2.store(4, None)
    assert DiskMeta(str(tmp_path)).fetch() == (4, None)


def test_corrupt_meta_is_refused(tmp_path: Any) -> None:
    m = DiskMeta(str(tmp_path))
    m.store(5, "x")
    with open(os.path.join(str(tmp_path), "meta"), "r+b") as f:
        f.seek(9)
        f.write(b"\x00")
    with pytest.raises(CorruptMeta):
        DiskMeta(str(tmp_path))
