"""A node with a few dozen servers (issue 17): started together, their directory synced in
batches; killed and restarted, every server comes back with its data, a stopped one stays down;
a data dir in the directory format before the log is migrated by the restarted node."""
from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path
from typing import Any

import psutil
import pytest

import ra
from ra import messages as rm
from ra.node import daemon as node
from ra.node.directory import LOG_FILE, OLD_FILE, Directory
from ra.wire import codec
from tests.api.conftest import COUNTER, Nodes, wait_for
from wal import osio

pytestmark = pytest.mark.integration

N = 30


def _answers(sid: ra.ServerId, value: int) -> bool:
    try:
        return ra.process_command([sid], 0, timeout=1.0)[0] == value
    except (ra.NoProc, ra.NodeDown, ra.OutcomeUnknown, ra.Timeout):
        return False


def _start_many(nodes: Nodes) -> list[ra.ServerId]:
    ids = [nodes.sid(f"s{k}", 0) for k in range(N)]
    with concurrent.futures.ThreadPoolExecutor(10) as ex:
        list(ex.map(lambda s: ra.start_cluster(s.name, COUNTER, [s]), ids))
    for k, s in enumerate(ids):
        assert ra.process_command([s], k + 1)[0] == k + 1
    return ids


def _all_back(ids: list[ra.ServerId], down: set[ra.ServerId]) -> None:
    for k, s in enumerate(ids):
        if s not in down:
            wait_for(lambda s=s, k=k: _answers(s, k + 1), 60, f"{s} back with its state")


def test_a_killed_node_brings_back_every_server_it_had(tmp_path: Path):
    nodes = Nodes(str(tmp_path), {})
    try:
        nodes.start(0)
        ids = _start_many(nodes)
        st = node.node_call(nodes.addrs[0], rm.NodeStatus())
        # at most a log fsync and a data dir fsync per batch, a batch per server at worst
        # (the format before: 4 per server)
        assert 0 < st["directory_syncs"] <= 2 * N
        ra.stop_server(ids[3])          # acknowledged once durable: stays down after a crash
        nodes.kill(0)
        nodes.start(0, keep_listen=False)
        # forked in chunks (ra.server.sup._RESTART_CHUNK), the daemon answering between two:
        # those not forked yet show as loading, never as stopped
        rows = ra.overview(nodes.addrs[0])["servers"]
        assert {n for n, r in rows.items() if r["status"] not in ("loading", "running")} == \
            {ids[3].name}
        _all_back(ids, {ids[3]})
        servers = ra.overview(nodes.addrs[0])["servers"]
        assert servers[ids[3].name]["pid"] is None and servers[ids[3].name]["status"] == \
            "stopped"
        assert len(servers) == N
        ra.restart_server(ids[3])
        assert ra.process_command([ids[3]], 0)[0] == 4
        ra.force_delete_server(ids[5])  # deleted: not back after a restart, data gone
        uid5 = Directory(nodes.data_dir(0)).uid_of(ids[5].name)
        assert uid5 is None
        nodes.kill(0)
        nodes.start(0, keep_listen=False)
        _all_back(ids, {ids[5]})
        assert ids[5].name not in ra.overview(nodes.addrs[0])["servers"]
    finally:
        nodes.cleanup()


def test_a_node_restart_lets_restart_window_servers_recover_at_once(tmp_path: Path):
    # without the window a chunk of 16 would be recovering at once (ra.server.sup)
    nodes = Nodes(str(tmp_path), {"restart_window": 3})
    try:
        nodes.start(0)
        ids = _start_many(nodes)
        assert node.node_call(nodes.addrs[0], rm.NodeStatus())["restart_recovering_peak"] == 0
        nodes.kill(0)
        nodes.start(0, keep_listen=False)
        _all_back(ids, set())
        assert 1 <= node.node_call(nodes.addrs[0], rm.NodeStatus())[
            "restart_recovering_peak"] <= 3
    finally:
        nodes.cleanup()


def _to_old_format(data_dir: str) -> None:
    """Rewrite a (stopped) node's directory as a node before the log kept it."""
    d = Directory(data_dir)
    names: dict[str, dict[str, Any]] = {}
    for name, e in d.names().items():
        names[name] = dict(e)
        osio.atomic_write(os.path.join(data_dir, e["uid"], "config"),
                          codec.encode(d.config_of(name)))
    osio.atomic_write(os.path.join(data_dir, OLD_FILE), codec.encode(names))
    os.unlink(os.path.join(data_dir, LOG_FILE))


def test_a_node_restarted_on_a_data_dir_of_the_old_format_migrates_it(tmp_path: Path):
    nodes = Nodes(str(tmp_path), {})
    try:
        nodes.start(0)
        ids = _start_many(nodes)[:10]
        nodes.stop(0)
        _to_old_format(nodes.data_dir(0))
        nodes.start(0, keep_listen=False)
        _all_back(ids, set())
        assert os.path.exists(os.path.join(nodes.data_dir(0), LOG_FILE))
        assert not os.path.exists(os.path.join(nodes.data_dir(0), OLD_FILE))
        assert len(Directory(nodes.data_dir(0))) == N
    finally:
        nodes.cleanup()


@pytest.mark.parametrize("nice", [None, 0, 7])
def test_servers_run_at_server_nice_below_the_node(tmp_path: Path, nice: int | None):
    # the node's shared processes keep the CPU first when more servers are runnable than cores
    nodes = Nodes(str(tmp_path), {} if nice is None else {"server_nice": nice})
    try:
        nodes.start(0)
        sid = nodes.sid("n", 0)
        ra.start_cluster("n", COUNTER, [sid])
        assert ra.process_command([sid], 1)[0] == 1
        table = node.node_call(nodes.addrs[0], rm.ListServers())
        server = psutil.Process(int(table["n"]["pid"]))
        daemon = psutil.Process(nodes.procs[0].pid)
        others = [p for p in daemon.children(recursive=True) if p.pid != server.pid]
        assert len(others) >= 3        # the fork server, the WAL, the segment writer
        want = 19 if nice is None else nice
        assert server.nice() == min(19, daemon.nice() + want)     # nice(2) stops at 19
        assert [p.nice() for p in others] == [daemon.nice()] * len(others)
        if os.geteuid() == 0:       # allowed to raise itself: servers at the node's start priority
            assert server.nice() == psutil.Process().nice()
            assert daemon.nice() == max(-20, psutil.Process().nice() - want)
        # a restarted server gets it from the fork server again, not twice
        server.kill()
        wait_for(lambda: _answers(sid, 1), what="restarted")
        again = psutil.Process(int(node.node_call(nodes.addrs[0], rm.ListServers())["n"]["pid"]))
        assert again.pid != server.pid and again.nice() == min(19, daemon.nice() + want)
    finally:
        nodes.cleanup()


def test_a_node_that_may_not_raise_its_priority_lowers_its_servers(monkeypatch):
    def refuse(*_a: Any) -> None:
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(os, "setpriority", refuse)
    assert node.raise_node_priority(19) == 0
    assert node.raise_node_priority(0) == 0
