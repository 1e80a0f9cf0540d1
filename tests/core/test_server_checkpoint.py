"""Checkpoint effects in the core (↔ ra_server_SUITE checkpoint_* cases, ra 2.10+).

``("checkpoint", idx, state)`` stores the state on every member and truncates nothing;
``("release_cursor", idx)`` (no state) promotes the newest checkpoint at or below ``idx`` to the
snapshot; ``("release_cursor", idx, state)`` snapshots as before, even when ``state`` is None; a
restart recovers from the newest of snapshot and checkpoints and replays only what follows."""
from typing import Any

from ra import effects as fx
from ra.core.effects import MachineEffect, Reply
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, Command, FlushCommands, InstallSnapshotRpc,
    SnapshotMeta,
)
from ra.testing.memory import MemoryLog, MemoryMeta
from tests.core.helpers import CLUSTER, N1, N2, make_leader, new_server, step, sync


class Rec:
    """State: the tuple of applied indexes. Commands ask for checkpoint effects at the index
    they are applied at (or at a given one); ``applied`` records every apply call."""

    def __init__(self) -> None:
        self.applied: list[int] = []

    def init(self, config: Any) -> tuple[int, ...]:
        return ()

    def apply(self, meta: dict[str, Any], cmd: Any, state: tuple[int, ...]) -> tuple[Any, ...]:
        idx = meta["index"]
        self.applied.append(idx)
        new = state + (idx,)
        op = cmd[0]
        if op == "cp":          # a checkpoint of the state after this command
            return new, "ok", [fx.checkpoint(idx, new)]
        if op == "cp_at":       # a checkpoint claimed at another index
            return new, "ok", [fx.checkpoint(cmd[1], new)]
        if op == "promote":     # everything up to here is done with: promote
            return new, "ok", [fx.release_cursor(idx)]
        if op == "snap_none":   # a snapshot whose state is None (not a promotion)
            return new, "ok", [fx.release_cursor(idx, None)]
        return new, "ok"


def leader(machine: Any, **kw: Any) -> Any:
    s = new_server(machine=machine, **kw)
    make_leader(s)
    sync(s)
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))
    return s


def commit(s: Any, *cmds: Any) -> list[Any]:
    """Append ``cmds`` on leader ``s``, make them durable and committed; the effects."""
    for c in cmds:
        step(s, Command("usr", c, ("await", ("f", c))))
    step(s, FlushCommands())
    sync(s)
    last = s.log.last_index_term()[0]
    return step(s, AppendEntriesReply(1, True, last + 1, last, 1, N2))


def test_checkpoint_is_stored_and_truncates_nothing() -> None:
    s = leader(Rec())
    eff = commit(s, ("a",), ("cp",), ("b",))            # noop 1, a 2, cp 3, b 4
    assert eff == [Reply(("f", c), ("ok", "ok", N1)) for c in [("a",), ("cp",), ("b",)]]
    assert s.log.checkpoint_index_terms() == [(3, 1)]
    assert s.log.snapshot_index_term() == (0, 0)
    assert [e[0] for e in s.log.take(1, 10)] == [1, 2, 3, 4]
    meta, state = s.log.recover_snapshot()
    assert (meta.index, meta.term, meta.cluster) == (3, 1, CLUSTER)
    assert state == (2, 3)


def test_checkpoint_runs_on_followers_too() -> None:
    f = new_server(machine=Rec())
    entries = [(1, 1, ("noop", 0)), (2, 1, ("usr", ("a",), None, 0)),
               (3, 1, ("usr", ("cp",), None, 0))]
    step(f, AppendEntriesRpc(1, N2, 0, 0, 0, entries))
    sync(f)
    eff = step(f, AppendEntriesRpc(1, N2, 3, 3, 1, []))
    assert f.last_applied == 3
    assert f.log.checkpoint_index_terms() == [(3, 1)]
    assert not [e for e in eff if isinstance(e, MachineEffect)]


def test_checkpoint_is_clamped_to_the_applied_index_and_skipped_below_the_snapshot() -> None:
    s = leader(Rec())
    commit(s, ("a",), ("cp_at", 50))                   # claimed beyond what is applied
    assert s.log.checkpoint_index_terms() == [(3, 1)]
    commit(s, ("b",), ("snap_none",))                  # snapshot at 5
    assert s.log.snapshot_index_term() == (5, 1)
    assert s.log.checkpoint_index_terms() == []        # the snapshot superseded it
    commit(s, ("cp_at", 4))                            # at or below the snapshot: ignored
    assert s.log.checkpoint_index_terms() == []


def test_release_cursor_without_state_promotes_the_newest_checkpoint_at_or_below() -> None:
    s = leader(Rec())
    commit(s, ("a",), ("cp",), ("b",), ("cp",), ("c",))   # checkpoints at 3 and 5
    commit(s, ("cp",))                                     # and at 7
    assert s.log.checkpoint_index_terms() == [(3, 1), (5, 1), (7, 1)]
    eff = commit(s, ("cp_at", 6), ("promote",))           # 8: ignored (not above 7); 9: promote
    # promoted: the newest at or below 9, i.e. 7; nothing is left to promote
    assert s.log.snapshot_index_term() == (7, 1)
    assert s.log.checkpoint_index_terms() == []
    assert s.log.fetch(7) is None and s.log.fetch(8)[0] == 8
    assert s.log.read_snapshot()[1] == (2, 3, 4, 5, 6, 7)
    assert not [e for e in eff if isinstance(e, MachineEffect)]


class _PromoteAt(Rec):
    """``("go",)`` promotes up to a fixed index, whatever index it is applied at."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def apply(self, meta: dict[str, Any], cmd: Any, state: tuple[int, ...]) -> tuple[Any, ...]:
        if cmd == ("go",):
            return super().apply(meta, cmd, state)[:2] + ([fx.release_cursor(self.at)],)
        return super().apply(meta, cmd, state)


def test_promotion_keeps_checkpoints_above_the_index() -> None:
    s = leader(_PromoteAt(3))
    commit(s, ("cp",), ("a",), ("cp",), ("b",))           # checkpoints at 2 and 4
    commit(s, ("go",))                                    # release_cursor(3) at 6
    assert s.log.snapshot_index_term() == (2, 1)
    assert s.log.checkpoint_index_terms() == [(4, 1)]
    assert s.log.fetch(2) is None and s.log.fetch(3)[0] == 3


def test_release_cursor_without_state_and_no_checkpoint_changes_nothing() -> None:
    s = leader(Rec())
    eff = commit(s, ("a",), ("promote",))
    assert s.log.snapshot_index_term() == (0, 0)
    assert [e[0] for e in s.log.take(1, 10)] == [1, 2, 3]
    assert eff == [Reply(("f", c), ("ok", "ok", N1)) for c in [("a",), ("promote",)]]


def test_release_cursor_with_none_state_is_a_snapshot_not_a_promotion() -> None:
    s = leader(Rec())
    commit(s, ("cp",), ("snap_none",))
    assert s.log.snapshot_index_term() == (3, 1)
    assert s.log.read_snapshot()[1] is None


def test_effect_helpers_tell_the_two_release_cursors_apart() -> None:
    assert fx.release_cursor(7) == fx.PromoteCheckpoint(7)
    assert fx.release_cursor(7).as_tuple() == ("release_cursor", 7)
    assert fx.release_cursor(7, None) == fx.ReleaseCursor(7, None)
    assert fx.release_cursor(7, None).as_tuple() == ("release_cursor", 7, None)
    assert fx.release_cursor(7, {"s": 1}).as_tuple() == ("release_cursor", 7, {"s": 1})
    assert fx.checkpoint(7, None).as_tuple() == ("checkpoint", 7, None)


def test_restart_recovers_from_the_checkpoint_and_replays_only_what_follows() -> None:
    log, meta = MemoryLog(), MemoryMeta()
    s = leader(Rec(), log=log, meta=meta)
    commit(s, ("a",), ("b",), ("cp",), ("c",), ("d",))     # checkpoint at 4; applied up to 6
    full = s.machine_state
    assert full == (2, 3, 4, 5, 6)
    log.crash()
    meta.crash()
    m = Rec()
    s2 = new_server(machine=m, log=log, meta=meta)
    assert log.recovered_from == ("checkpoint", 4)
    assert m.applied == [5, 6]                             # 2..4 come from the checkpoint
    assert s2.machine_state == full
    assert s2.last_applied == 6 and s2.commit_index == 6
    assert s2.log.snapshot_index_term() == (0, 0)          # the log below it is still there
    assert s2.log.fetch(2)[0] == 2


def test_restart_ignores_a_checkpoint_the_surviving_log_does_not_back() -> None:
    """The checkpoint is durable at once, the entries it was taken on only once synced: if
    those were lost, the checkpoint is not used (and dropped)."""
    log, meta = MemoryLog(), MemoryMeta()
    s = leader(Rec(), log=log, meta=meta)
    commit(s, ("a",))                                     # durable up to 2
    log.append((3, 1, ("usr", ("b",), None, 0)))          # never synced
    log.checkpoint(3, 1, CLUSTER, 0, (2, 3))
    assert log.checkpoint_index_terms() == [(3, 1)]
    log.crash()
    meta.crash()
    m = Rec()
    s2 = new_server(machine=m, log=log, meta=meta)
    assert log.checkpoint_index_terms() == []
    assert log.recovered_from is None
    assert s2.machine_state == (2,) and m.applied == [2]


def test_installed_snapshot_drops_the_checkpoints() -> None:
    f = new_server(machine=Rec())
    entries = [(1, 1, ("noop", 0)), (2, 1, ("usr", ("cp",), None, 0))]
    step(f, AppendEntriesRpc(1, N2, 0, 0, 0, entries))
    sync(f)
    step(f, AppendEntriesRpc(1, N2, 2, 2, 1, []))
    assert f.log.checkpoint_index_terms() == [(2, 1)]
    meta = SnapshotMeta(10, 1, CLUSTER, 0)
    step(f, InstallSnapshotRpc(1, N2, meta, (1, "last"), repr((2, 3, 10)).encode()))
    assert f.log.snapshot_index_term() == (10, 1)
    assert f.log.checkpoint_index_terms() == []
    assert f.machine_state == (2, 3, 10)


def test_snapshot_answered_once_and_stale_results_start_nothing() -> None:
    """CORE-BUGS #9: a follower whose commit index covers the snapshot but whose written index
    does not answers on the last chunk only; a leader that is not sending a snapshot any more
    takes a late answer's match index but starts no new snapshot (each answer used to trigger
    the whole snapshot again: a message storm)."""
    from ra.core.effects import SendRpc
    from ra.core.messages import InstallSnapshotResult
    f = new_server(N2, machine=Rec())
    entries = [(1, 1, ("noop", 0))] + [(i, 1, ("usr", ("a",), None, 0)) for i in range(2, 6)]
    step(f, AppendEntriesRpc(1, N1, 0, 0, 0, entries))
    sync(f)
    step(f, AppendEntriesRpc(1, N1, 5, 5, 1, [(6, 1, ("usr", ("a",), None, 0))]))  # not synced
    assert f.commit_index == 5
    f.commit_index = 6                       # as if the leader said 6 is committed
    meta = SnapshotMeta(6, 1, (N1, N2), 0)
    first = step(f, InstallSnapshotRpc(1, N1, meta, (1, "next"), b"x"))
    last = step(f, InstallSnapshotRpc(1, N1, meta, (2, "last"), b"y"))
    assert [e for e in first if isinstance(e, SendRpc)] == []
    assert [e.msg for e in last if isinstance(e, SendRpc)] == [
        InstallSnapshotResult(1, 5, 1, N2)]
    # the leader's side: an answer while not sending updates the peer, sends nothing new
    s = leader(Rec())
    eff = step(s, InstallSnapshotResult(1, 1, 1, N2))
    assert s.peers[N2].snapshot == "none"
    assert not [e for e in eff if isinstance(e, SendRpc) and
                type(e.msg).__name__ == "InstallSnapshotRpc"]
