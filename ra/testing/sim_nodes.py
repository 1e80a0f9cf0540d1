"""The simulator's per-server pieces: the sim state machine and the checked memory log. No ra
equivalent.

``SimMachine`` keeps a tiny literal state ``(count, last_index)``, reports every apply to the
checker and asks for snapshots (both spellings, ``ReleaseCursor`` and ``("release_cursor", idx,
state)``), takes checkpoints (``("checkpoint", idx, state)``) and promotes them
(``("release_cursor", idx)``); its ``state_enter``/``tick`` callbacks return ``aux`` effects.
``CheckedLog`` is ``MemoryLog`` reporting every write (log matching), every configuration entry
a leader appends (one change at a time), every snapshot (taken, promoted or installed), and what
its storage holds *durably* (durability checks).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ra.core.machine import ReleaseCursor
from ra.core.messages import SnapshotMeta
from ra.testing.memory import MemoryLog

if TYPE_CHECKING:
    from ra.testing.sim import SimCluster

__all__ = ["SimMachine", "CheckedLog", "machine_raises"]


def machine_raises(cmd: Any) -> bool:
    """The simulated machine raises on one client command in 23 (by its payload, so every
    member and every replay alike): such a command is applied as a no-op and its client gets
    a machine error (``ra.MachineError``)."""
    return type(cmd) is tuple and len(cmd) == 2 and type(cmd[1]) is int and cmd[1] % 23 == 0


class SimMachine:
    """The simulated state machine: state ``(count, last_index)``; the reply to a command is
    ``(index, count)``, so a client learns where its command was applied. Every ``snapshot_every``
    applies it emits, in turn, a ``ReleaseCursor``, a ``("release_cursor", idx, state)``, a
    checkpoint and a promotion (``("release_cursor", idx)``, which promotes that checkpoint
    where the member still has it). Each apply is reported to the checker."""

    def __init__(self, sim: SimCluster, sid: Any, snapshot_every: int) -> None:
        self.sim, self.sid, self.every = sim, sid, snapshot_every

    def init(self, config: Any) -> tuple[int, int]:
        return (0, 0)

    def apply(self, meta: dict[str, Any], cmd: Any, state: Any) -> tuple[Any, Any, list[Any]]:
        if isinstance(cmd, tuple) and cmd and cmd[0] == "machine_version":
            return state, None, []          # an upgrade notice, not a client command
        if machine_raises(cmd):
            raise ValueError(f"the simulated machine refuses {cmd!r}")
        idx = meta["index"]
        count = state[0] + 1
        new = (count, idx)
        self.sim.on_apply(self.sid, idx, meta["term"], cmd)
        effects: list[Any] = []
        if self.every and count % self.every == 0:
            # the two spellings of a snapshot request, a checkpoint, its promotion, in turn
            kind = (count // self.every) % 4
            effects.append(ReleaseCursor(idx, new) if kind == 0 else
                           ("release_cursor", idx, new) if kind == 1 else
                           ("checkpoint", idx, new) if kind == 2 else
                           ("release_cursor", idx))
        return new, (idx, count), effects

    def state_enter(self, role: str, state: Any) -> list[Any]:
        """ra_machine:state_enter/2: an ``aux`` effect the shell just counts."""
        return [("aux", ("entered", role))]

    def tick(self, time_ms: int, state: Any) -> list[Any]:
        """ra_machine:tick/2 (leader only)."""
        return [("aux", ("tick", time_ms))]


class CheckedLog(MemoryLog):
    """``MemoryLog`` that reports every write to the checker (for log matching)."""

    def __init__(self, sim: SimCluster, sid: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self._sim, self._sid = sim, sid

    def append(self, entry: tuple[int, int, Any]) -> None:
        prev = self.fetch_term(entry[0] - 1)
        super().append(entry)
        self._sim.checker.on_entries_written(self._sid, [entry], prev)
        if entry[2][0] == "cluster":
            # only a leader appends (followers write): its state is mid-step, up to date
            srv = self._sim.servers[self._sid]
            self._sim.checker.on_config_appended(self._sid, entry[0], srv.state.commit_index,
                                                 self)

    def write(self, entries: list[tuple[int, int, Any]]) -> None:
        if not entries:
            return
        prev = self.fetch_term(entries[0][0] - 1)
        super().write(entries)
        self._sim.checker.on_entries_written(self._sid, entries, prev)

    def durable_term(self, idx: int) -> int | None:
        """The term storage holds *durably* at ``idx`` (what a crash would keep), None if
        nothing; reads MemoryLog's durable image (``_d_entries`` / ``_d_snap``)."""
        e = self._d_entries.get(idx)
        if e is not None:
            return e[1]
        snap = self._d_snap
        if snap is not None and idx <= snap[0].index:
            return snap[0].term if idx == snap[0].index else -1   # -1: covered, term unknown
        return None

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> Any:
        state = super().install_snapshot(meta, data)
        self._sim.checker.on_snapshot_installed(self._sid, meta.index, meta.term)
        self._sim.stats["snapshots_installed"] += 1
        self._sim.note(self._sid, f"installed snapshot at {meta.index}")
        return state

    def _before_truncation(self) -> None:
        srv = self._sim.servers.get(self._sid)
        if srv is not None and srv.state is not None and srv.alive:
            # record what is committed before the entries vanish into the snapshot
            st = srv.state
            self._sim.checker.on_commit_progress(self._sid, srv.inc, st.current_term,
                                                 st.commit_index, self)

    def update_release_cursor(self, idx: int, term: int, cluster: tuple[Any, ...],
                              machine_version: int, machine_state: Any) -> None:
        before = self.snapshot_index_term()[0]
        self._before_truncation()
        super().update_release_cursor(idx, term, cluster, machine_version, machine_state)
        if self.snapshot_index_term()[0] > before:
            self._sim.stats["snapshots_taken"] += 1
            self._sim.checker.on_snapshot_installed(self._sid, idx, term)

    def checkpoint(self, idx: int, term: int, cluster: tuple[Any, ...], machine_version: int,
                   machine_state: Any) -> None:
        before = self.checkpoint_index_terms()[-1:]
        super().checkpoint(idx, term, cluster, machine_version, machine_state)
        if self.checkpoint_index_terms()[-1:] != before:
            self._sim.stats["checkpoints_taken"] += 1

    def promote_checkpoint(self, idx: int) -> bool:
        self._before_truncation()
        if not super().promote_checkpoint(idx):
            return False
        snap_idx, snap_term = self.snapshot_index_term()
        self._sim.stats["checkpoints_promoted"] += 1
        self._sim.checker.on_snapshot_installed(self._sid, snap_idx, snap_term)
        return True
