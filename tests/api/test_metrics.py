"""The Prometheus endpoint of a node (issue 12): `metrics` in the node's config (CLI:
`ra node start --metrics HOST:PORT`) serves ra's per-server and per-WAL figures, named by
Prometheus' conventions; the official parser reads what it serves."""
from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ra
from ra import messages as rm
from tests.api.conftest import COUNTER, Nodes, leader_of, wait_for


def _scrape(addr: str) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_node_serves_prometheus_metrics(tmp_path):
    ns = Nodes(str(tmp_path), {"metrics": "127.0.0.1:0"})
    try:
        for i in range(3):
            ns.start(i)
        ids = [ns.sid("m", i) for i in range(3)]
        ra.start_cluster("m", COUNTER, ids)
        leader = leader_of(ids)
        for _ in range(10):
            ra.process_command(ids, 1)
        li = next(i for i, a in ns.addrs.items() if a == leader.node)
        st = ra.default_client()._daemon(ns.addrs[li], rm.NodeStatus(), 5)
        maddr = st["metrics"]
        assert maddr and maddr.startswith("127.0.0.1:")
        lbl = (("node", leader.node), ("server", "m"))

        def scraped() -> dict:
            m = _scrape(maddr)
            return m if m.get(("ra_server_last_applied", lbl), 0) >= 11 else {}
        m = wait_for(scraped, 10, "the leader's report to reach the metrics")
        assert m[("ra_server_up", lbl)] == 1 and m[("ra_server_leader", lbl)] == 1
        assert m[("ra_server_term", lbl)] >= 1
        assert m[("ra_server_commit_index", lbl)] >= 11
        assert m[("ra_server_commands_total", lbl)] >= 10
        assert m[("ra_server_elections_total", lbl)] >= 1
        node = (("node", leader.node),)
        assert m[("ra_wal_syncs_total", node)] >= 1
        assert m[("ra_wal_entries_total", node)] >= 11
        assert m[("ra_wal_failed", node)] == 0
        assert m[("ra_wal_entries_per_sync", node)] > 0
        assert m[("ra_wal_queue_depth", node)] >= 1
        assert m[("ra_wal_max_batch_entries", node)] >= 1
        assert m[("ra_server_snapshots_total", lbl)] == 0
        ra.stop_server(leader)
        assert wait_for(lambda: _scrape(maddr).get(("ra_server_up", lbl)) == 0, 5)
    finally:
        ns.cleanup()


EFFECTS = ("module", "ra.testing.machines:Effects", None)


def test_snapshots_taken_and_installed_are_counted(tmp_path):
    """A member stopped while its cluster snapshots (release_cursor: the log below goes) gets
    the snapshot installed when it comes back: each node's endpoint counts what its member did."""
    ns = Nodes(str(tmp_path), {"metrics": "127.0.0.1:0"})
    try:
        for i in range(3):
            ns.start(i)
        ids = [ns.sid("s", i) for i in range(3)]
        ra.start_cluster("s", EFFECTS, ids)
        leader = leader_of(ids)
        lagging = next(s for s in ids if s != leader)
        ra.stop_server(lagging)
        for _ in range(3):
            ra.process_command(ids, ("snapshot",))
        ra.restart_server(lagging)

        def counter(sid, name):
            i = next(i for i, a in ns.addrs.items() if a == sid.node)
            maddr = ra.default_client()._daemon(ns.addrs[i], rm.NodeStatus(), 5)["metrics"]
            return _scrape(maddr).get((name, (("node", sid.node), ("server", "s"))), 0)
        wait_for(lambda: counter(lagging, "ra_server_snapshots_installed_total") >= 1, 15,
                 "the restarted member's report of its installed snapshot")
        wait_for(lambda: counter(leader, "ra_server_snapshots_total") >= 1, 10,
                 "the leader's report of its snapshots")
        # and each is a line of its node's log, by the server that did it
        installed = f"installed the snapshot of leader s@{leader.node} at index"
        for sid, text in ((lagging, installed), (leader, "snapshot taken at index")):
            i = next(i for i, a in ns.addrs.items() if a == sid.node)
            lines = (tmp_path / f"n{i}.log").read_text().splitlines()
            assert [ln for ln in lines if f" {sid.node} s[" in ln and text in ln], lines[-20:]
    finally:
        ns.cleanup()


def test_bad_metrics_address_is_invalid_config(tmp_path):
    with pytest.raises(ra.InvalidConfig, match="metrics"):
        ra.start(data_dir=str(tmp_path / "d"), metrics="nope")
