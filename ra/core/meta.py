"""The MetaStore interface: a server's durable term, vote and last applied index.
Mirrors ra_log_meta.erl's API, as a Protocol.

Contract: ``store`` queues a write of (current_term, voted_for) and returns a sequence number; the
store is durable only once a ``MetaWritten(seq')`` with ``seq' >= seq`` is fed back through
``step``. The core holds back every outbound effect until then, so no vote is granted and nothing
is acknowledged on a term or vote that a crash could forget. ``store_last_applied`` needs no
confirmation: a stale value only makes recovery replay more.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["MetaStore"]


@runtime_checkable
class MetaStore(Protocol):
    def fetch(self) -> tuple[int, Any]:
        """(current_term, voted_for) as last stored."""

    def store(self, current_term: int, voted_for: Any) -> int:
        """Queue a durable write; returns its sequence number."""

    def last_applied(self) -> int:
        """The last applied index as last stored (0 if never)."""

    def store_last_applied(self, idx: int) -> None:
        """Record the last applied index (no confirmation needed)."""
