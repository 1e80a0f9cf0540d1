"""Membership changes (↔ ra_SUITE add_member / remove_member, coordination_SUITE)."""
from __future__ import annotations

import os

import pytest

import ra
from ra.testing import machines as M
from tests.api.conftest import COUNTER, leader_of, wait_for

pytestmark = pytest.mark.integration

SNAP_COUNTER = ("module", "ra.testing.machines:Counter", {"snapshot_every": 50})


@pytest.fixture
def node_env():
    # small WAL files and segments, so that old entries are read back from segment files
    return {"wal_max_size_bytes": 16384, "segment_max_entries": 32}


def _add_and_start(ids, new, machine):
    ra.add_member(ids, new)
    ra.start_server({"cluster_name": "c", "id": new, "machine": machine,
                     "initial_members": ids + [new]})


def test_add_member_catches_up_from_segments(nodes):
    for i in range(4):
        nodes.start(i)
    ids = [nodes.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    leader = leader_of(ids)
    for _ in range(300):
        ra.pipeline_command(leader, 1)
    wait_for(lambda: ra.consistent_query(ids, M.get_state)[0] == 300, what="300 applied")
    # the leader's early entries reach segment files (the segment writer runs after the WAL's
    # fsync, so they may come a little after the commit)
    data = nodes.data_dir(nodes_index(nodes, leader))

    def segment_files() -> bool:
        return any(os.listdir(os.path.join(data, d, "segments")) for d in os.listdir(data)
                   if os.path.isdir(os.path.join(data, d, "segments")))
    wait_for(segment_files, what="the leader's entries in segment files")
    new = nodes.sid("c", 3)
    _add_and_start(ids, new, COUNTER)
    wait_for(lambda: ra.local_query(new, M.get_state)[1] == 300, timeout=20, what="caught up")
    members, _ = ra.members(ids)
    assert new in members
    wait_for(lambda: ra.key_metrics(new)["last_applied"] >= 300, what="metrics")
    assert ra.key_metrics(new)["snapshot_index"] == 0        # replayed from entries
    assert ra.process_command(ids + [new], 1)[0] == 301


def nodes_index(nodes, sid):
    return next(i for i, a in nodes.addrs.items() if a == sid.node)


def test_add_member_past_a_snapshot_uses_install_snapshot(nodes):
    for i in range(4):
        nodes.start(i)
    ids = [nodes.sid("c", i) for i in range(3)]
    ra.start_cluster("c", SNAP_COUNTER, ids)
    leader = leader_of(ids)
    for _ in range(120):
        ra.pipeline_command(leader, 1)
    wait_for(lambda: ra.consistent_query(ids, M.get_state)[0] == 120, what="applied")
    wait_for(lambda: ra.key_metrics(leader)["snapshot_index"] >= 100, what="snapshot taken")
    new = nodes.sid("c", 3)
    _add_and_start(ids, new, SNAP_COUNTER)
    wait_for(lambda: ra.local_query(new, M.get_state)[1] == 120, timeout=20, what="caught up")
    # it got there by install_snapshot: its log starts at the leader's snapshot
    wait_for(lambda: ra.key_metrics(new)["snapshot_index"] >= 100, what="snapshot installed")


def test_remove_member(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    leader = leader_of(ids)
    gone = next(s for s in ids if s != leader)
    assert ra.remove_member(ids, gone)[0] == "ok"
    members, _ = ra.members(leader)
    assert gone not in members and len(members) == 2
    assert ra.process_command(leader, 1)[0] == 1
    # the change is a line of the leader's node log, by the leader's server
    li = next(i for i, a in three.addrs.items() if a == leader.node)
    now = sorted(f"{m.name}@{m.node}" for m in members)

    def logged() -> bool:
        with open(os.path.join(three.tmp, f"n{li}.log")) as f:
            return any(f" {leader.node} c[" in ln and "members now " in ln and sorted(
                ln.split("members now ", 1)[1].split(" (as of")[0].split(", ")) == now
                for ln in f)
    wait_for(logged, 5, "the membership change in the leader's log")


def test_leader_removes_itself_and_a_new_leader_takes_over(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    ra.process_command(ids, 1)
    leader = leader_of(ids)
    ra.remove_member(ids, leader)
    rest = [s for s in ids if s != leader]
    wait_for(lambda: leader_of(rest) in rest, timeout=15, what="new leader among the rest")
    assert ra.process_command(rest, 1, timeout=10)[0] == 2


def test_leave_and_delete_server(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    leader = leader_of(ids)
    gone = next(s for s in ids if s != leader)
    ra.leave_and_delete_server(ids, gone)
    assert gone not in ra.members(leader)[0]
    with pytest.raises(ra.NoProc):
        ra.ping(gone)
    with pytest.raises(ra.NotFound):
        ra.restart_server(gone)


def test_leave_and_terminate_keeps_data(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    leader = leader_of(ids)
    gone = next(s for s in ids if s != leader)
    ra.process_command(ids, 3)
    wait_for(lambda: ra.local_query(gone, M.get_state)[1] == 3, what="applied there")
    ra.leave_and_terminate(ids, gone)
    assert gone not in ra.members(leader)[0]
    wait_for(lambda: _pid(three, gone) is None, what="stopped")
    # its data stayed: restarted, out of the cluster (nobody sends it anything), it has it
    ra.restart_server(gone)
    assert ra.local_query(gone, M.get_state)[1] == 3
    assert ra.process_command(leader, 1)[0] == 4


def _pid(nodes, sid):
    return nodes.server_pid(sid.name, nodes_index(nodes, sid))


def test_membership_changes_one_at_a_time_are_queued_by_retrying(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    leader = leader_of(ids)
    a, b = [s for s in ids if s != leader]
    ra.remove_member(ids, a)
    ra.remove_member(ids, b)        # waits until the first change is committed
    assert ra.members(leader)[0] == [leader]
    assert ra.process_command(leader, 5)[0] == 5
