"""Majority arithmetic. No ra equivalent as a module (ra_server inlines it; etcd has quorum/).

Pure functions over plain ints so they can be tested with tables.
"""
from __future__ import annotations

from collections.abc import Iterable, Sized

__all__ = ["majority", "majority_index", "has_majority"]


def majority(n: int) -> int:
    """Votes needed out of ``n`` voters."""
    return n // 2 + 1


def majority_index(indexes: list[int]) -> int:
    """The highest index that a majority of ``indexes`` (one per voter) has reached."""
    if not indexes:
        return 0
    ordered = sorted(indexes, reverse=True)
    return ordered[len(ordered) // 2]


def has_majority(granted: Iterable[object] , voters: Sized) -> bool:
    """True when the set ``granted`` (already restricted to voters) is a majority of ``voters``."""
    return sum(1 for _ in granted) >= majority(len(voters))
