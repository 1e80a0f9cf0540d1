"""Starting, restarting and deleting servers and clusters (↔ ra_SUITE start_* / delete_*)."""
from __future__ import annotations

import os

import pytest

import ra
from ra import messages as rm
from ra.testing import machines as M
from tests.api.conftest import COUNTER, leader_of, wait_for

pytestmark = pytest.mark.integration


def _uid_dirs(data_dir: str) -> list[str]:
    skip = {"wal", "ra_directory", "ra_node.lock", "node.log"}
    return [d for d in os.listdir(data_dir) if d not in skip and os.path.isdir(
        os.path.join(data_dir, d))]


def test_start_cluster_elects_a_leader_and_commits(three):
    ids = [three.sid("c", i) for i in range(3)]
    started, not_started = ra.start_cluster("c", COUNTER, ids)
    assert sorted(started) == sorted(ids) and not_started == []
    reply, leader = ra.process_command(ids, 5)
    assert reply == 5 and leader in ids
    assert ra.process_command(ids, 2)[0] == 7
    assert ra.consistent_query(ids[0], M.get_state)[0] == 7


def test_start_cluster_with_one_node_down_starts_two(nodes):
    nodes.start(0)
    nodes.start(1)
    dead = ra.ServerId("c", "127.0.0.1:1")      # nothing listens there
    ids = [nodes.sid("c", 0), nodes.sid("c", 1), dead]
    started, not_started = ra.start_cluster("c", COUNTER, ids)
    assert sorted(started) == sorted(ids[:2]) and not_started == [dead]
    assert ra.process_command(ids[:2], 3)[0] == 3


def test_start_cluster_with_two_nodes_down_fails_and_cleans_up(nodes):
    nodes.start(0)
    ids = [nodes.sid("c", 0), ra.ServerId("c", "127.0.0.1:1"), ra.ServerId("c", "127.0.0.1:2")]
    with pytest.raises(ra.ClusterNotFormed):
        ra.start_cluster("c", COUNTER, ids)
    # the one server that did start was force-deleted, data and all
    assert _uid_dirs(nodes.data_dir(0)) == []
    with pytest.raises(ra.NotFound):
        ra.restart_server(ids[0])


def test_start_or_restart_cluster_restarts_with_state(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_or_restart_cluster("c", COUNTER, ids)   # nothing there yet: a fresh start
    for _ in range(10):
        ra.process_command(ids, 1)
    for sid in ids:
        ra.stop_server(sid)
    wait_for(lambda: all(three.server_pid("c", i) is None for i in range(3)), what="stopped")
    restarted, not_started = ra.start_or_restart_cluster("c", COUNTER, ids)
    assert sorted(restarted) == sorted(ids) and not_started == []
    assert ra.process_command(ids, 1, timeout=10)[0] == 11


def test_restart_server_of_never_started_server_raises_not_found(three):
    with pytest.raises(ra.NotFound):
        ra.restart_server(three.sid("nope", 0))


def test_start_server_twice_raises_already_started(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    with pytest.raises(ra.AlreadyStarted):
        ra.start_server("c", ids[0], COUNTER, ids)


def test_restart_running_server_raises_already_started(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    with pytest.raises(ra.AlreadyStarted):
        ra.restart_server(ids[1])


def test_delete_cluster_removes_every_members_data(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    ra.process_command(ids, 1)
    assert all(_uid_dirs(three.data_dir(i)) for i in range(3))
    leader = ra.delete_cluster(ids)
    assert leader in ids
    for i in range(3):
        assert _uid_dirs(three.data_dir(i)) == []
    with pytest.raises(ra.NoProc):
        ra.ping(ids[0])


def test_brand_new_servers_elect_only_after_trigger_election(three):
    ids = [three.sid("c", i) for i in range(3)]
    for sid in ids:
        ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                         "initial_members": ids, "election_timeout_ms": 50})
    # several election timeouts pass: nobody campaigns (term stays 0)
    c = ra.default_client()
    for _ in range(5):
        wait_for(lambda: all(ra.key_metrics(s)["state"] == "follower" for s in ids),
                 what="metrics")
        ov = [c._ok(s, rm.OverviewCall(), 5) for s in ids]
        assert all(o["current_term"] == 0 and o["leader_id"] is None for o in ov)
        assert ra.ping(ids[0]) == "pong"
    ra.trigger_election(ids[2])
    assert leader_of(ids) in ids


def test_stop_and_restart_server_keeps_data(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    ra.process_command(ids, 4)
    wait_for(lambda: ra.local_query(ids[0], M.get_state)[1] == 4, what="applied on ids[0]")
    for sid in ids:                # the whole cluster down: nothing to catch up from
        ra.stop_server(sid)
    ra.restart_server(ids[0])
    # alone, it can only have this from its own disk
    assert ra.local_query(ids[0], M.get_state)[1] == 4
    for sid in ids[1:]:
        ra.restart_server(sid)
    ra.process_command(ids, 1, timeout=15)
    for sid in ids:
        wait_for(lambda: ra.local_query(sid, M.get_state)[1] == 5, what=f"{sid} at 5")


def test_cli_overview_and_members(three, capsys):
    from ra.client.cli import main
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    ra.process_command(ids, 1)
    leader = leader_of(ids)
    assert main(["overview", three.addrs[0]]) == 0
    out = capsys.readouterr().out
    assert "SERVER" in out and "c " in out and ("leader" in out or "follower" in out)
    assert main(["members", f"c@{three.addrs[1]}"]) == 0
    out = capsys.readouterr().out
    assert f"c@{leader.node}  (leader)" in out and out.count("c@") == 3
    assert main(["members", f"c@{three.addrs[1]}", "--json"]) == 0
    import json
    js = json.loads(capsys.readouterr().out)
    assert js["leader"] == list(leader) and len(js["members"]) == 3
    assert main(["overview", "127.0.0.1:9"]) == 1


def test_connections_between_two_nodes_grow_with_clusters_not_servers_squared(three):
    """A server connects only to what its own cluster needs, so the TCP connections from one
    node to another stay about one per cluster the two share (issue 17: not servers²). Counted
    from the sockets of the node trees (``bench.scale.node_pair_connections``)."""
    from bench.scale import node_pair_connections
    roots = [three.procs[i].pid for i in range(3)]
    started = 0
    for c in (4, 16):
        for k in range(started, c):
            ids = [three.sid(f"np{k}", i) for i in range(3)]
            ra.start_cluster(f"np{k}", COUNTER, ids)
            ra.process_command(ids, 1)
        started = c
        pairs = node_pair_connections(roots)
        assert len(pairs) == 6 and min(pairs.values()) > 0, pairs
        # a few per pair for the daemons themselves; servers² would be c * c = 256 at c = 16
        assert max(pairs.values()) <= c + 8, (c, pairs)
