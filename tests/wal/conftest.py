from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.wal.procs import Procs


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.cleanup()
