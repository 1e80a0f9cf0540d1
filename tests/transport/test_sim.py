"""SimNetwork: determinism per seed, faults, and the Mailbox-like surface with actors."""
from __future__ import annotations

from typing import Any

import pytest

from ra.errors import NodeDown, NoProc, Timeout
from transport.sim import SimMailbox, SimNetwork


def echo(mb: SimMailbox) -> None:
    for env in mb.recv_many():
        if env.kind == "call":
            mb.reply(env.frm, ("echo", env.payload))


def trace(seed: int, **faults: Any) -> list[Any]:
    net = SimNetwork(seed, delay=(0.001, 0.05), **faults)
    got: list[Any] = []
    sink = net.spawn(lambda mb: got.extend((round(net.clock.current_time(), 6), e.payload)
                                           for e in mb.recv_many()))
    src = net.spawn()
    for i in range(50):
        src.cast(sink.address, i)
    net.run()
    return got


def test_same_seed_same_run_different_seed_differs() -> None:
    faults = {"drop": 0.2, "duplicate": 0.2}
    a, b, c = trace(7, **faults), trace(7, **faults), trace(8, **faults)
    assert a == b
    assert a != c


def test_faults_drop_duplicate_and_reorder() -> None:
    got = [p for _, p in trace(3, drop=0.3, duplicate=0.3)]
    assert len(set(got)) < 50                      # some dropped
    assert len(got) > len(set(got))                # some duplicated
    assert got != sorted(got)                      # delays longer than send gaps reorder
    clean = [p for _, p in trace(3)]
    assert sorted(clean) == list(range(50))


def test_call_reply_noproc_nodedown_timeout() -> None:
    net = SimNetwork(1)
    server = net.spawn(echo, node="n1")
    client = net.spawn(node="n0")
    assert client.call(server.address, (1, {2})) == ("echo", (1, {2}))
    silent = net.spawn(node="n1")  # never answers
    t0 = net.clock.current_time()
    with pytest.raises(Timeout):
        client.call(silent.address, "x", timeout=0.5)
    assert net.clock.current_time() - t0 == pytest.approx(0.5)
    net.kill(server.address)
    with pytest.raises(NoProc):
        client.call(server.address, "x")
    net.kill_node("n1")
    with pytest.raises(NodeDown):
        client.call(silent.address, "x")
    with pytest.raises(TypeError):
        client.cast(silent.address, object())


def test_partition_heal_and_clog() -> None:
    net = SimNetwork(2)
    server = net.spawn(echo)
    client = net.spawn()
    net.partition([client.address], [server.address])
    with pytest.raises(Timeout):
        client.call(server.address, 1, timeout=1.0)
    net.heal()
    assert client.call(server.address, 2) == ("echo", 2)
    got: list[Any] = []
    sink = net.spawn(lambda mb: got.extend(e.payload for e in mb.recv_many()))
    net.clog(client.address, sink.address)
    for i in range(5):
        client.cast(sink.address, i)
    net.run(until=net.clock.current_time() + 10)
    assert got == []
    net.unclog(client.address, sink.address)
    net.run()
    assert sorted(got) == [0, 1, 2, 3, 4]


def test_actor_calls_another_actor_while_serving() -> None:
    net = SimNetwork(5)
    back = net.spawn(echo)

    def relay(mb: SimMailbox) -> None:
        for env in mb.recv_many():
            mb.reply(env.frm, ("relayed", mb.call(back.address, env.payload)))

    front = net.spawn(relay)
    client = net.spawn()
    assert client.call(front.address, "q") == ("relayed", ("echo", "q"))
