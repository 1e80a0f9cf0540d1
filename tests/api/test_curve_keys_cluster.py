"""CURVE with a key pair per node (issue 13): three node daemons, each with its own secret key
file (``curve_secret_key_file``) and one allow-list naming every node's key with its address
and the client's key (``curve_allow``); the client has its own key pair (``RA_CURVE_SECRET_KEY_FILE``,
``RA_CURVE_ALLOW``). Commands, queries and a failover work end to end; a node whose key is not
on the allow-list is refused at the handshake and the cluster keeps serving."""
from __future__ import annotations

import socket

import pytest

import ra
from ra import messages as rm
from ra.testing import machines as M
from tests.api.conftest import COUNTER, Nodes, wait_for
from transport import curve
from transport import curvekeys as ck
from transport.errors import HandshakeRefused
from transport.messages import FdWatch
from zmq.utils import z85


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_cluster_on_per_node_keys(tmp_path, monkeypatch):
    keydir = tmp_path / "keys"
    names = ["n0", "n1", "n2", "client", "rogue"]
    files = {n: curve.create_keypair_files(keydir, n) for n in names}   # (public, secret)
    pub = {n: curve.load_public_key(files[n][0]) for n in names}
    listen = {i: f"127.0.0.1:{_free_port()}" for i in range(4)}
    allow = keydir / "allow"
    allow.write_text("# the cluster's nodes, then its clients\n"
                     + "".join(f"{z85.encode(pub[f'n{i}']).decode()} {listen[i]}  # node {i}\n"
                               for i in range(3))
                     + f"{z85.encode(pub['client']).decode()}\n")
    monkeypatch.setenv(ck.ENV_SECRET_KEY_FILE, files["client"][1])
    monkeypatch.setenv(ck.ENV_ALLOW, str(allow))
    ns = Nodes(str(tmp_path), {})
    try:
        for i in range(3):
            ns.env = {"curve_secret_key_file": files[f"n{i}"][1], "curve_allow": str(allow)}
            ns.start(i, listen=listen[i])
        ids = [ns.sid("kc", i) for i in range(3)]
        with ra.Client() as c:
            # durable_replies: the followers' WALs answer the leader, on another node's key
            c.start_cluster([{"cluster_name": "kc", "id": s, "machine": COUNTER,
                              "initial_members": ids, "durable_replies": True} for s in ids])
            assert [c.process_command(ids, 1)[0] for _ in range(10)] == list(range(1, 11))
            # the followers' acks left through their nodes' WALs (DurableReply), whose
            # keyrings learn the leader's key from the follower: no handshake was refused
            leader = c.members(ids)[1]
            followers = [sid for sid in ids if sid != leader]
            # each server's own overview (key_metrics is what it last reported, which an idle
            # server does only every few ticks)
            ovs = {sid: c._ok(sid, rm.OverviewCall(), 5.0) for sid in ids}
            for sid in followers:
                assert ovs[sid]["counters"]["durable_replies"] >= 5, (sid, ovs[sid]["counters"])
            for sid in ids:
                bad = ovs[sid]["bad_messages"]
                assert "mailbox:refused" not in bad, (sid, bad)
            # failover: the leader's node dies; the other two elect and go on
            old = c.members(ids)[1]     # this client's keys (not the default client's)
            dead = ids.index(old)
            ns.kill(dead)
            live = [s for s in ids if s != old]
            assert c.process_command(live, 1, timeout=20)[0] == 11
            assert c.members(live)[1] != old
            assert c.consistent_query(live, M.get_state)[0] == 11
            # it comes back on its address and key, and catches up
            ns.env = {"curve_secret_key_file": files[f"n{dead}"][1], "curve_allow": str(allow)}
            ns.start(dead, listen=listen[dead])
            wait_for(lambda: c.local_query(old, M.get_state, timeout=2)[1] == 11, 20,
                     f"{old} caught up over CURVE")
        # a node whose key is on no allow-list: it runs (its own processes know its key),
        # but the cluster's nodes refuse it at the handshake
        ns.env = {"curve_secret_key_file": files["rogue"][1], "curve_allow": str(allow)}
        rogue_addr = ns.start(3, listen=listen[3])
        monkeypatch.setenv(ck.ENV_SECRET_KEY_FILE, files["rogue"][1])
        with ra.Client() as as_rogue:
            assert as_rogue._daemon(rogue_addr, rm.NodePing(), 5.0) is not None
            # the rogue daemon itself heartbeats node 1: refused at every handshake
            assert as_rogue._daemon(rogue_addr, FdWatch(ids[1].node), 5.0) == "ok"
            wait_for(lambda: as_rogue._daemon(rogue_addr, rm.NodeStatus(), 5.0)["nodes"]
                     == {ids[1].node: "down"}, 20, "the rogue node sees node 1 down")
            with pytest.raises(HandshakeRefused, match="not allowed"):
                as_rogue.process_command(ids[0], 1, timeout=5)
            with pytest.raises(HandshakeRefused, match="not allowed"):
                as_rogue._daemon(ids[1].node, rm.NodeStatus(), 5.0)
        monkeypatch.setenv(ck.ENV_SECRET_KEY_FILE, files["client"][1])
        with ra.Client() as c:
            assert c.process_command(ids, 1, timeout=10)[0] == 12     # still serving
            st = c._daemon(ids[1].node, rm.NodeStatus(), 5.0)
            # the rogue client's status call, and the rogue daemon's heartbeats
            assert st["bad_messages"].get("mailbox:refused", 0) >= 2, st["bad_messages"]
    finally:
        ns.cleanup()
