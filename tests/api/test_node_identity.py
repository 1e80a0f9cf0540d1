"""A node keeps its identity across restarts and brings its servers back (issue 12): after a
SIGKILL, `ra node start --data-dir DIR` alone (no listen) heals the cluster."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import ra
from ra.testing import machines as M
from tests.api.conftest import COUNTER, back_up, leader_of, wait_for


def test_killed_node_restarted_with_only_its_data_dir_rejoins(nodes):
    for i in range(3):
        nodes.start(i)
    ids = [nodes.sid("c", i) for i in range(3)]
    ra.start_cluster("c", COUNTER, ids)
    leader = leader_of(ids)
    victim = next(s for s in ids if s != leader)
    i = next(k for k, a in nodes.addrs.items() if a == victim.node)
    ra.process_command(ids, 5)
    nodes.kill(i)
    ra.process_command(ids, 2)          # committed by the two others meanwhile
    addr = nodes.start(i, keep_listen=False)     # only --data-dir: no address given
    assert addr == victim.node                  # the same identity
    back_up(victim)                             # its server came back by itself
    wait_for(lambda: ra.local_query(victim, M.get_state)[1] == 7, 20, "the member caught up")
    assert victim in ra.members(ids)[0]
    assert ra.process_command(ids, 1)[0] == 8


def test_a_stopped_server_stays_stopped_across_a_node_restart(nodes):
    nodes.start(0)
    sid = nodes.sid("solo", 0)
    ra.start_cluster("solo", COUNTER, [sid])
    ra.stop_server(sid)
    nodes.stop(0)
    nodes.start(0, keep_listen=False)
    assert ra.overview(sid.node)["servers"]["solo"]["pid"] is None
    ra.restart_server(sid)              # on purpose: and then it runs after a node restart too
    nodes.stop(0)
    nodes.start(0, keep_listen=False)
    back_up(sid)
    assert ra.process_command([sid], 1)[0] == 1


def test_restart_servers_false_leaves_them_down(tmp_path):
    from tests.api.conftest import Nodes
    ns = Nodes(str(tmp_path), {"restart_servers": False})
    try:
        ns.start(0)
        sid = ns.sid("solo", 0)
        ra.start_cluster("solo", COUNTER, [sid])
        ns.kill(0)
        ns.start(0, keep_listen=False)
        assert ra.overview(sid.node)["servers"]["solo"]["pid"] is None
        ra.restart_server(sid)
        assert ra.process_command([sid], 1)[0] == 1
    finally:
        ns.cleanup()


def test_remembered_port_taken_is_a_clear_error(tmp_path):
    import socket
    d = str(tmp_path / "n")
    addr = ra.start(data_dir=d)
    ra.stop_nodes()
    host, port = addr.rsplit(":", 1)
    with socket.socket() as s:          # someone else took the port meanwhile
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
        s.listen()
        with pytest.raises(ra.InvalidConfig, match="kept so that its clusters still reach it"):
            ra.start(data_dir=d)
        with socket.socket() as free:      # an explicit port: a new identity, as asked
            free.bind((host, 0))
            other = f"{host}:{free.getsockname()[1]}"
        assert ra.start(data_dir=d, listen=other) == other
    ra.stop_nodes()
    assert ra.start(data_dir=d) == other     # and that one is kept from now on
    ra.stop_nodes()


def test_cli_restart_keeps_the_address(tmp_path):
    d = str(tmp_path / "n")
    cmd = [sys.executable, "-m", "ra.client.cli", "node", "start", "--data-dir", d, "--daemon"]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    subprocess.run([sys.executable, "-m", "ra.client.cli", "node", "stop", first], check=True,
                   capture_output=True)
    again = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    try:
        assert again == first
        assert open(os.path.join(d, "node_address")).read().strip() == first
    finally:
        subprocess.run([sys.executable, "-m", "ra.client.cli", "node", "stop", again],
                       capture_output=True)


def test_cli_wildcard_listen_advertises_and_keeps_the_address(tmp_path):
    """`--listen 0.0.0.0:0 --advertise IP:0`: the node is known by IP and the port it bound,
    keeps both across a restart, and its servers, bound on every interface, are reached at IP
    (issue 12)."""
    from ra.check import netns

    ip = netns.global_ipv4()
    if ip is None:
        pytest.skip("this host has no IPv4 address beyond loopback")
    d = str(tmp_path / "n")
    cmd = [sys.executable, "-m", "ra.client.cli", "node", "start", "--data-dir", d, "--daemon",
           "--listen", "0.0.0.0:0", "--advertise", f"{ip}:0"]
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    try:
        assert first.rpartition(":")[0] == ip
        sid = ra.ServerId("w", first)
        ra.start_cluster("w", COUNTER, [sid])
        assert ra.process_command(sid, 3) == (3, sid)
    finally:
        subprocess.run([sys.executable, "-m", "ra.client.cli", "node", "stop", first], check=True,
                       capture_output=True)
    again = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
    try:
        assert again == first
        back_up(sid)
        assert ra.process_command(sid, 1)[0] == 4
    finally:
        subprocess.run([sys.executable, "-m", "ra.client.cli", "node", "stop", again],
                       capture_output=True)


def _node_status(addr: str) -> dict:
    from ra import messages as rm
    from ra.node import daemon as node
    return node.node_call(addr, rm.NodeStatus())


def test_a_node_restart_brings_many_servers_back_quickly_sharing_their_machine(tmp_path):
    """Issue 17: a node hosting many servers restarts them all; with ``preload_machines`` its
    fork server imports their machine module once (learned when the first one loaded; at a
    restart, before any is forked) instead of each server importing it."""
    from tests.api.conftest import Nodes
    nodes = Nodes(str(tmp_path), {"preload_machines": True})
    try:
        _restart_many(nodes)
    finally:
        nodes.cleanup()


def test_without_preload_machines_the_fork_server_imports_no_machine(nodes):
    nodes.start(0)
    sid = nodes.sid("solo", 0)
    ra.start_cluster("solo", COUNTER, [sid])
    assert ra.process_command([sid], 1)[0] == 1
    assert _node_status(nodes.addrs[0])["forkserver_imported"] == []


def _restart_many(nodes) -> None:
    import concurrent.futures
    import time
    n = 20
    nodes.start(0)
    ids = [nodes.sid(f"s{k}", 0) for k in range(n)]
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda s: ra.start_cluster(s.name, COUNTER, [s]), ids))
    for s in ids:
        assert ra.process_command([s], 1)[0] == 1
    wait_for(lambda: "ra.testing.machines" in _node_status(nodes.addrs[0])
             ["forkserver_imported"], 10, "the fork server imported the machine module")
    nodes.kill(0)
    t0 = time.monotonic()
    nodes.start(0, keep_listen=False)
    assert "ra.testing.machines" in _node_status(nodes.addrs[0])["forkserver_imported"]
    for s in ids:                                      # each with its state (its data kept)
        wait_for(lambda s=s: _answers(s), 60, f"{s} back after the node restart")
    # generous: ~1.5 s here for 20 servers on an idle machine (150 servers: ~5 s)
    assert time.monotonic() - t0 < 60


def _answers(sid: ra.ServerId) -> bool:
    try:
        return ra.process_command([sid], 0, timeout=1.0)[0] == 1
    except (ra.NoProc, ra.NodeDown, ra.OutcomeUnknown):
        return False
