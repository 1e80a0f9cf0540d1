"""The example machines: pure behaviour, then on a real 3-node cluster (kv: put/get/delete/cas
and snapshots via release_cursor; counter)."""
from __future__ import annotations

from typing import Any

import pytest

import ra
from examples import counter, kv
from examples._nodes import LocalNodes, wait_for

pytestmark = pytest.mark.integration

META = {"term": 1, "system_time": 0, "machine_version": 0}


def _apply_all(m: Any, state: Any, cmds: list[Any], first_index: int = 1) -> tuple[Any, list]:
    """Apply ``cmds`` in order; returns the final state and the (reply, effects) of each."""
    out = []
    for i, c in enumerate(cmds):
        res = m.apply(dict(META, index=first_index + i), c, state)
        state = res[0]
        out.append((res[1], list(res[2]) if len(res) == 3 else []))
    return state, out


# --- pure ----------------------------------------------------------------------------------------

def test_counter_machine_pure() -> None:
    m = counter.Counter()
    s0 = m.init(None)
    assert s0 == 0 and m.init(7) == 7
    s, out = _apply_all(m, s0, [("add", 5), ("add", -2), "reset", ("add", 1), "bogus",
                                ("add", True), ("add", 1.5)])
    assert [r for r, _ in out] == [5, 3, 3, 1, ("error", "bad_command"),
                                   ("error", "bad_command"), ("error", "bad_command")]
    assert s == 1 and counter.value(s) == 1


def test_kv_machine_pure_ops_never_mutate_their_input() -> None:
    m = kv.KV()
    s0 = m.init(None)
    s1, out = _apply_all(m, s0, [("put", "a", 1), ("get", "a"), ("get", "b"),
                                 ("cas", "a", 2, 3), ("cas", "a", 1, 3), ("cas", "b", None, 9),
                                 ("cas", "b", None, 10), ("delete", "b"), ("delete", "b"),
                                 ("put", ("t", 1), [1, 2]), "bogus", ("put", "x")])
    assert [r for r, _ in out] == [
        "ok", 1, None, ("mismatch", 1), ("ok", 3), ("ok", 9), ("mismatch", 9), True, False,
        "ok", ("error", "bad_command"), ("error", "bad_command")]
    assert kv.items(s1) == {"a": 3, ("t", 1): [1, 2]}
    assert kv.get(s1, "a") == 3 and kv.size(s1) == 2 and s1["applied"] == 12
    assert s0 == {"data": {}, "applied": 0}          # the initial state was left alone
    assert all(not effects for _, effects in out)     # no snapshots unless configured


def test_kv_machine_pure_release_cursor_every_n_applied_commands() -> None:
    m = kv.KV()
    s = m.init({"snapshot_every": 3})
    # indexes need not be contiguous (noop and cluster entries take indexes too)
    _, out = _apply_all(m, s, [("put", i, i) for i in range(7)], first_index=10)
    cursors = [(i, e) for i, (_, effects) in enumerate(out) for e in effects]
    assert [i for i, _ in cursors] == [2, 5]
    rc = cursors[0][1]
    assert isinstance(rc, ra.ReleaseCursor) and rc.index == 12
    assert rc.state == {"data": {0: 0, 1: 1, 2: 2}, "applied": 3}


# --- real cluster --------------------------------------------------------------------------------

def test_counter_on_three_nodes(three: LocalNodes, cname: str) -> None:
    ids = [three.sid(cname, i) for i in range(3)]
    started, not_started = ra.start_cluster(cname, counter.MACHINE, ids, timeout=30)
    assert sorted(started) == sorted(ids) and not not_started
    assert ra.process_command(ids, ("add", 5))[0] == 5
    assert ra.process_command(ids, ("add", 10))[0] == 15
    assert ra.process_command(ids, "nonsense")[0] == ("error", "bad_command")
    assert ra.process_command(ids, "reset")[0] == 15
    _, leader = ra.members(ids, timeout=10)
    replies: dict[Any, Any] = {}
    with ra.Client() as c:             # a mailbox of its own for the pipelined replies
        for corr in range(5):
            c.pipeline_command(leader, ("add", 2), correlation=corr)
        while len(replies) < 5:
            ev = c.receive(timeout=10)
            assert ev.event[0] == "applied", ev
            replies.update(dict(ev.event[1]))
    assert replies == {0: 2, 1: 4, 2: 6, 3: 8, 4: 10}
    assert ra.consistent_query(ids, "examples.counter:value")[0] == 10
    for sid in ids:    # every member applies the same commands
        wait_for(lambda: ra.local_query(sid, counter.value)[1] == 10, 10.0, f"{sid} applies")


def test_kv_put_get_delete_cas_on_three_nodes(three: LocalNodes, cname: str) -> None:
    ids = [three.sid(cname, i) for i in range(3)]
    ra.start_cluster(cname, kv.machine(), ids, timeout=30)

    def cmd(c: Any) -> Any:
        return ra.process_command(ids, c, timeout=10)[0]

    assert cmd(("put", "a", 1)) == "ok"
    assert cmd(("get", "a")) == 1
    assert cmd(("get", "nope")) is None
    assert cmd(("cas", "a", 2, 5)) == ("mismatch", 1)
    assert cmd(("cas", "a", 1, 5)) == ("ok", 5)
    assert cmd(("cas", "new", None, {"x": (1, 2)})) == ("ok", {"x": (1, 2)})
    assert cmd(("cas", "new", None, 0)) == ("mismatch", {"x": (1, 2)})
    assert cmd(("delete", "a")) is True
    assert cmd(("delete", "a")) is False
    assert cmd(("frobnicate",)) == ("error", "bad_command")
    # queries run in the server process: named by import path, with arguments
    assert ra.consistent_query(ids, ("examples.kv", "get", ["new"]))[0] == {"x": (1, 2)}
    assert ra.consistent_query(ids, ("examples.kv", "get", ["a"]))[0] is None
    assert ra.consistent_query(ids, kv.items)[0] == {"new": {"x": (1, 2)}}
    # no snapshots without snapshot_every
    _, leader = ra.members(ids, timeout=10)
    assert ra.overview(leader.node)["servers"][cname]["snapshot_index"] == 0


def test_kv_snapshots_and_a_restarted_member_recovers(three: LocalNodes, cname: str) -> None:
    every = 10
    ids = [three.sid(cname, i) for i in range(3)]
    ra.start_cluster(cname, kv.machine(snapshot_every=every), ids, timeout=30)
    _, leader = ra.members(ids, timeout=10)
    idx_of: dict[int, int] = {}            # n-th command -> its log index
    for n in range(1, 26):
        ra.process_command(ids, ("put", f"k{n}", n), timeout=10)
        (idx_of[n], _), _, _ = ra.local_query(leader, kv.size)
    # every member snapshots at the index of the 10th and the 20th command
    for sid in ids:
        wait_for(lambda: ra.overview(sid.node)["servers"][cname]["snapshot_index"] == idx_of[20],
                 10.0, f"{sid} snapshot at the 20th command")
    # a follower is stopped, misses a snapshot's worth of commands, and is restarted: it
    # recovers from its own snapshot and log, then catches up with the leader
    follower = next(s for s in ids if s != leader)
    ra.stop_server(follower, timeout=10)
    for n in range(26, 40):
        ra.process_command(ids, ("put", f"k{n}", n), timeout=10)
        (idx_of[n], _), _, _ = ra.local_query(leader, kv.size)
    ra.process_command(ids, ("delete", "k1"), timeout=10)      # the 40th command
    (idx_of[40], _), _, _ = ra.local_query(leader, kv.size)
    assert ra.overview(leader.node)["servers"][cname]["snapshot_index"] == idx_of[40]
    ra.restart_server(follower, timeout=10)
    want = {f"k{n}": n for n in range(2, 40)}
    wait_for(lambda: ra.local_query(follower, kv.items)[1] == want, 15.0, "follower catches up")
    # it applied the 30th and 40th commands itself and snapshotted at the same index
    wait_for(lambda: ra.overview(follower.node)["servers"][cname]["snapshot_index"]
             == idx_of[40], 10.0, "follower snapshot at the 40th command")
    assert ra.consistent_query(ids, kv.size)[0] == 38
