"""Nodes on several hosts (issue 12): three node daemons, each in a network namespace of its
own (its own IP on a bridge), each listening on the wildcard address and advertising its
namespace's IP; the client runs in the root namespace with no configuration (``ra.Client()``,
the module functions). The whole API works across hosts (a machine's send_msg to the client
too), and a failover (SIGKILL of the leader's node) keeps the exactly-once count. Runs as root
(``ip netns``); skipped with the reason elsewhere."""
from __future__ import annotations

import threading
from typing import Any

import pytest

import ra
from tests.api.conftest import COUNTER, wait_for

pytestmark = pytest.mark.integration

GET = "ra.testing.machines:get_state"


@pytest.fixture
def hosts(netns_nodes: Any) -> Any:
    return netns_nodes(3, tag="rmh", listen_hosts=["0.0.0.0"] * 3)


def test_the_api_across_hosts_and_a_failover(hosts: Any) -> None:
    net, nodes = hosts
    # listen on every interface, known by the advertised address
    for i in range(3):
        assert nodes.addrs[i].rpartition(":")[0] == net.host(i)
    ids = [ra.ServerId("mh", nodes.addrs[i]) for i in range(3)]
    started, not_started = ra.start_cluster("mh", COUNTER, ids, timeout=15)
    assert sorted(started) == sorted(ids) and not_started == []

    reply, leader = ra.process_command(ids, 5, timeout=10)
    assert reply == 5 and leader in ids
    # seen from the nodes, the client is at the root namespace's address on their bridge
    me = ra.default_client().address_for(leader.node)
    assert me.startswith(f"tcp://{net.bridge_ip}:"), me
    ra.pipeline_command(leader, 1, correlation="c1")
    assert ra.receive(timeout=10) == ra.RaEvent(leader, ("applied", [("c1", 6)]))

    members, mleader = ra.members(ids)
    assert sorted(members) == sorted(ids) and mleader == leader
    assert ra.consistent_query(ids, GET, timeout=10) == (6, leader)
    assert ra.leader_query(leader, GET)[1:] == (6, leader)
    for sid in ids:             # every member gets there: replies come from every host
        wait_for(lambda sid=sid: ra.local_query(sid, GET)[1] == 6, 10, f"{sid} to apply 6")

    # a machine's send_msg to a client's "pid", as the nodes see it, crosses the hosts too
    fx = [ra.ServerId("fx", nodes.addrs[i]) for i in range(3)]
    ra.start_cluster("fx", ("module", "ra.testing.machines:Effects", {"watcher": None}), fx,
                     timeout=15)
    with ra.Client() as c:
        ra.process_command(fx, ("send", c.address_for(fx[0].node), ("hello", 1)), timeout=10)
        assert c.receive(timeout=10) == ra.RaEvent(None, ("hello", 1))

    # a fourth member on node 0 (another name), added, caught up, removed
    extra = ra.ServerId("mh_x", nodes.addrs[0])
    assert ra.add_member(ids, extra)[0] == "ok"
    ra.start_server("mh", extra, COUNTER, ids + [extra])
    wait_for(lambda: ra.local_query(extra, GET)[1] == 6, 10, "the new member to catch up")
    assert sorted(ra.members(ids)[0]) == sorted(ids + [extra])
    assert ra.remove_member(ids, extra)[0] == "ok"
    assert sorted(ra.members(ids)[0]) == sorted(ids)
    ra.force_delete_server(extra)

    # failover: the leader's node dies (its whole tree) while a second client adds
    acked = [0]
    errors: list[BaseException] = []
    stop = threading.Event()

    def adder() -> None:                # its own client (the module functions: one per thread)
        while not stop.is_set():
            try:
                ra.process_command(ids, 1, timeout=15)
            except ra.RaError as e:      # the majority is up: no call may fail
                errors.append(e)
                return
            acked[0] += 1

    t = threading.Thread(target=adder)
    t.start()
    try:
        wait_for(lambda: acked[0] >= 10, 15, "commands before the kill")
        _, leader = ra.members(ids)
        li = next(i for i in range(3) if nodes.addrs[i] == leader.node)
        nodes.kill(li)
        reply, new_leader = ra.process_command(ids, 1000, timeout=15)
        assert new_leader != leader and isinstance(reply, int)
        n_after = acked[0]
        wait_for(lambda: acked[0] >= n_after + 10, 15, "commands after the failover")
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive() and errors == []
    total = 6 + acked[0] + 1000
    assert ra.consistent_query(ids, GET, timeout=10)[0] == total      # each applied once

    # the killed node comes back at its address, restarts its server, which catches up
    assert nodes.restart(li) == leader.node
    wait_for(lambda: ra.local_query(leader, GET)[1] == total, 20,
             "the restarted member to catch up")
