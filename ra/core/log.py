"""The Log interface the core writes through. Mirrors ra_log.erl's API, as a Protocol.

Contract (in the way etcd documents ``Ready``):

* Calls never block on I/O and never read a clock. ``append``/``write`` only *queue* entries;
  they become visible to ``fetch``/``last_index_term`` at once, but are durable only when a later
  ``Written(term, from_idx, to_idx)`` message, fed back through ``step``, is passed to
  ``handle_written``. ``last_written()`` is the highest index known durable *and* still present
  with the term it was written at.
* Entries are plain tuples ``(index, term, command)``.
* ``write`` (followers) may start at or below ``next_index()``: everything from its first index on
  is replaced, and ``last_written`` drops below the overwrite point until re-confirmed.
* Snapshots: ``update_release_cursor`` takes a snapshot of the given machine state at an applied
  index and drops entries at or below it; ``install_snapshot`` replaces the log with a snapshot
  received from a leader. Both are durable when they return (snapshots are rare; ra writes them
  in a background worker, we accept the blocking write).
* Checkpoints (ra 2.10+): ``checkpoint`` stores the machine state at an applied index *without*
  dropping any entry; a bounded number is kept apart from the snapshot, the oldest dropped.
  ``promote_checkpoint`` turns the newest checkpoint at or below an index into the snapshot,
  after which entries at or below it go as for ``update_release_cursor``. Both are durable when
  they return. ``recover_snapshot`` is what a restarting server starts from: the newest of the
  snapshot and the checkpoints, so that only the log after it is replayed. A checkpoint is only
  used while the log still holds the entry it was taken at, with the same term (its entries are
  then, by log matching, the ones the checkpoint's state was built from); one the log no longer
  backs (e.g. the unsynced tail it covered was lost in a crash) is ignored and dropped.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ra.core.messages import SnapshotMeta, Written

__all__ = ["Log", "DEFAULT_MAX_CHECKPOINTS", "DEFAULT_MIN_CHECKPOINT_INTERVAL"]

Entry = tuple[int, int, Any]

#: Checkpoints a log keeps; a new one beyond this drops the oldest (ra's ``max_checkpoints``).
DEFAULT_MAX_CHECKPOINTS = 10
#: How far above the newest checkpoint the next one must be to be taken. ra's
#: ``min_checkpoint_interval`` defaults to 16384; here, as for ``release_cursor`` (which takes
#: every snapshot a machine asks for where ra waits for 4096 entries), the machine's choice is
#: honoured by default: it already decides how often to ask.
DEFAULT_MIN_CHECKPOINT_INTERVAL = 0


@runtime_checkable
class Log(Protocol):
    def last_index_term(self) -> tuple[int, int]:
        """Index and term of the last entry (durable or not); the snapshot's if the log is empty."""

    def last_written(self) -> tuple[int, int]:
        """Highest (index, term) known durable and still in the log."""

    def next_index(self) -> int:
        """The index the next appended entry gets: ``last_index_term()[0] + 1``."""

    def fetch(self, idx: int) -> Entry | None:
        """The entry at ``idx``, or None if absent (beyond the end, or inside the snapshot)."""

    def fetch_term(self, idx: int) -> int | None:
        """The term at ``idx``; 0 for index 0; the snapshot's term at its index; None if unknown."""

    def take(self, from_idx: int, n: int) -> list[Entry]:
        """Up to ``n`` consecutive entries from ``from_idx`` (empty if it lies in the snapshot)."""

    def reply_mode(self, raw: bytes) -> Any:
        """The reply mode of a ``usr`` entry that the log returned encoded (a ``bytes`` in the
        reply mode's place: a disk log keeps it so, see ``ra.log.log``), decoded; None if it
        does not decode. A log that returns reply modes as they were appended never gets here."""

    def append(self, entry: Entry) -> None:
        """Leader append: ``entry[0]`` must equal ``next_index()``."""

    def write(self, entries: list[Entry]) -> None:
        """Follower write: replaces the log from ``entries[0][0]`` (≤ ``next_index()``) on."""

    def handle_written(self, ev: Written) -> bool:
        """Apply a durability notice; True if ``last_written`` advanced.

        ``Written(term, from_idx, to_idx)`` confirms one write whose last entry had ``term``
        (its entries may span several terms). Notices arrive in write order. If the entry at
        ``to_idx`` still has ``term``, log matching makes the whole prefix up to ``to_idx``
        identical to what that write (and the earlier, already confirmed ones) put on disk, so
        ``last_written`` becomes ``to_idx``. Otherwise the tail was overwritten since and the
        notice is ignored: the overwrite's own notice confirms it."""

    def snapshot_meta(self) -> SnapshotMeta | None:
        """Meta of the current snapshot, if any."""

    def snapshot_index_term(self) -> tuple[int, int]:
        """(index, term) of the current snapshot, (0, 0) if none."""

    def update_release_cursor(self, idx: int, term: int, cluster: tuple[Any, ...],
                              machine_version: int, machine_state: Any) -> None:
        """Snapshot ``machine_state`` as of applied entry ``idx``; drop entries ≤ ``idx``."""

    def read_snapshot(self) -> tuple[SnapshotMeta, Any] | None:
        """The current snapshot's meta and decoded machine state."""

    def checkpoint(self, idx: int, term: int, cluster: tuple[Any, ...], machine_version: int,
                   machine_state: Any) -> None:
        """Store ``machine_state`` as of applied entry ``idx`` as a checkpoint; no entry is
        dropped. Ignored unless ``idx`` is above the snapshot and at least the log's minimum
        checkpoint interval above the newest checkpoint. Durable when it returns."""

    def promote_checkpoint(self, idx: int) -> bool:
        """Make the newest checkpoint at or below ``idx`` (and above the snapshot) the snapshot,
        durably, then drop entries at or below it and the checkpoints it supersedes. False if
        there is no such checkpoint (nothing changes)."""

    def recover_snapshot(self) -> tuple[SnapshotMeta, Any] | None:
        """Meta and decoded machine state to recover from: the newest of the snapshot and the
        checkpoints the log still backs (see the module docstring); None if neither exists."""

    def snapshot_chunks(self, chunk_size: int) -> tuple[SnapshotMeta, list[bytes]]:
        """The current snapshot encoded and cut into chunks of at most ``chunk_size`` bytes."""

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> Any:
        """Replace the log with a received snapshot (all chunks joined); returns the decoded
        machine state. Afterwards the log is empty and ``last_written() == (meta.index,
        meta.term)``."""
