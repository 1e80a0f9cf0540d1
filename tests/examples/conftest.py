"""Real node daemons for the example tests, cleaned up with psutil even when a test fails.

Three daemons are shared by a module's tests (each test uses a cluster name of its own); the
helper is the examples' own :class:`examples._nodes.LocalNodes`, which remembers every process of
every daemon's tree and SIGKILLs whatever is left at teardown.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest

from examples._nodes import LocalNodes


@pytest.fixture(scope="module")
def three(tmp_path_factory: Any) -> Iterator[LocalNodes]:
    """Three node daemons shared by a module's tests."""
    nodes = LocalNodes(str(tmp_path_factory.mktemp("nodes")))
    try:
        nodes.start_many(range(3))
        yield nodes
    finally:
        nodes.close()
        assert not nodes.leftovers(), f"processes left behind: {nodes.leftovers()}"


_names = itertools.count()


@pytest.fixture
def cname() -> str:
    """A cluster name of its own for each test."""
    return f"ex{next(_names)}"
