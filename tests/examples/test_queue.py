"""examples/queue.py: the machine alone, then consumers in real processes SIGKILLed with
messages unsettled (the ``down`` command), before and after a leadership change."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest

import ra
from examples import queue as Q
from ra import effects as fx
from examples._nodes import LocalNodes, wait_for

pytestmark = pytest.mark.integration

META = {"term": 1, "system_time": 0, "machine_version": 0}


class Run:
    """Drives the machine directly, keeping the state and numbering the indexes."""

    def __init__(self, **config: Any) -> None:
        self.m = Q.Queue()
        self.s = self.m.init(config or None)
        self.idx = 0

    def __call__(self, cmd: Any) -> tuple[Any, list[Any]]:
        self.idx += 1
        self.s, reply, effects = self.m.apply(dict(META, index=self.idx), cmd, self.s)
        return reply, effects


def sends(effects: list[Any]) -> list[tuple[str, int, Any]]:
    return [(e.to, e.msg[1], e.msg[2]) for e in effects if isinstance(e, fx.SendMsg)]


# --- pure ----------------------------------------------------------------------------------------

def test_queue_machine_pure_delivery_prefetch_and_monitors() -> None:
    q = Run()
    assert q(("enqueue", "a")) == (("ok", 1), [])            # no consumer yet: it waits
    reply, eff = q(("checkout", "A", 2))
    assert reply == "ok"
    assert eff == [fx.monitor("process", "A"), fx.send_msg("A", ("delivery", 1, "a"),
                                                           "ra_event")]
    _, eff = q(("checkout", "B", 1))
    assert eff == [fx.monitor("process", "B")]
    deliveries = [sends(q(("enqueue", m))[1]) for m in "bcde"]
    # in turn, within prefetch: A (first in turn) gets b, B gets c, then nobody has room
    assert deliveries == [[("A", 2, "b")], [("B", 3, "c")], [], []]
    assert Q.depth(q.s) == 2 and Q.consumers(q.s) == {"A": 2, "B": 1}
    # settling frees room: the oldest waiting message goes out
    assert q(("settle", "A", [1, 99])) == (("ok", 1), [fx.send_msg("A", ("delivery", 4, "d"),
                                                                   "ra_event")])
    # return: back to the head of the queue, in id order, and straight out again in turn
    reply, eff = q(("return", "B", [3]))
    assert reply == ("ok", 1) and sends(eff) == [("B", 3, "c")]
    # a re-checkout changes the prefetch without a second monitor
    reply, eff = q(("checkout", "B", 3))
    assert reply == "ok" and sends(eff) == [("B", 5, "e")]
    assert not [e for e in eff if isinstance(e, fx.Monitor)]
    # bad commands change nothing
    before = q.s
    assert q(("settle", "nobody", [1]))[0] == ("error", "bad_command")
    assert q(("checkout", "C", 0))[0] == ("error", "bad_command")
    assert q("enqueue")[0] == ("error", "bad_command")
    assert q.s is before
    # state_enter: a new leader monitors every consumer again; other roles do nothing
    assert q.m.state_enter("leader", q.s) == [fx.monitor("process", "A"),
                                              fx.monitor("process", "B")]
    assert q.m.state_enter("follower", q.s) == []


def test_queue_machine_pure_cancel_down_and_release_cursor() -> None:
    q = Run(snapshot_every=5)
    q(("checkout", "A", 2))
    q(("checkout", "B", 2))
    for m in "abcd":
        q(("enqueue", m))
    assert Q.consumers(q.s) == {"A": 2, "B": 2}
    reply, eff = q(("cancel", "A"))           # A's two come back, nobody has room
    assert reply == "ok" and fx.demonitor("process", "A") in eff and not sends(eff)
    assert Q.depth(q.s) == 2 and [m for _, m in q.s["ready"]] == ["a", "c"]
    reply, eff = q(("checkout", "C", 5))
    assert sends(eff) == [("C", 1, "a"), ("C", 3, "c")]
    reply, eff = q(("down", "B", "noproc"))   # B died: its two go to C
    assert reply == "ok" and sends(eff) == [("C", 2, "b"), ("C", 4, "d")]
    assert q(("down", "B", "noproc")) == ("ok", [])     # a second down is harmless
    assert Q.stats(q.s) == {"ready": 0, "unsettled": 4, "consumers": 1, "next_id": 5}
    reply, eff = q(("settle", "C", [1, 2, 3, 4]))
    # empty now, and more than 5 commands since the start: the log can go
    rcs = [e for e in eff if isinstance(e, ra.ReleaseCursor)]
    assert reply == ("ok", 4) and len(rcs) == 1 and rcs[0].index == q.idx
    assert rcs[0].state == q.s and q.s["since_release"] == 0
    q(("enqueue", "x"))
    reply, eff = q(("settle", "C", [5]))                 # empty again, but too soon
    assert reply == ("ok", 1) and not [e for e in eff if isinstance(e, ra.ReleaseCursor)]


# --- real processes ------------------------------------------------------------------------------

_CONSUMER = """
import sys, ra
c = ra.Client()
ids = [ra.ServerId(sys.argv[1], a) for a in sys.argv[2:]]
c.process_command(ids, ("checkout", c.address, 1), timeout=20)
print(c.address, flush=True)
while True:
    _, (_, mid, msg) = c.receive().event
    print(mid, msg, flush=True)
"""


class Consumer:
    """A consumer in a process of its own (prefetch 1, never settles)."""

    def __init__(self, name: str, addrs: list[str]) -> None:
        self.p = subprocess.Popen([sys.executable, "-c", _CONSUMER, name, *addrs],
                                  stdout=subprocess.PIPE, text=True)
        assert self.p.stdout is not None
        self.out = self.p.stdout
        self.address = self.out.readline().strip()
        assert self.address.startswith("tcp://"), self.address

    def next(self) -> tuple[int, str]:
        mid, msg = self.out.readline().split()
        return int(mid), msg

    def kill(self) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
        self.p.wait()


def test_killed_consumer_messages_go_to_another_before_and_after_a_leader_change(
        three: LocalNodes, cname: str) -> None:
    ids = [three.sid(cname, i) for i in range(3)]
    ra.start_cluster(cname, Q.machine(), ids, timeout=30)
    addrs = [s.node for s in ids]
    b = Consumer(cname, addrs)
    c = None
    try:
        with ra.Client() as a:
            for i in range(3):
                ra.process_command(ids, ("enqueue", f"m{i}"))
            assert b.next() == (1, "m0")
            ra.process_command(ids, ("checkout", a.address, 3))
            got = sorted(a.receive(timeout=10).event[1][1:] for _ in range(2))
            assert got == [(2, "m1"), (3, "m2")]
            b.kill()
            ev = a.receive(timeout=10)    # B's unsettled message, via ("down", B, "noproc")
            assert ev.event == ("machine", ("delivery", 1, "m0"))
            assert ra.consistent_query(ids, Q.consumers)[0] == {a.address: 3}

            # a new leader re-monitors the consumers it inherits (state_enter)
            c = Consumer(cname, addrs)
            ra.process_command(ids, ("enqueue", "m3"))       # A is full (prefetch 3): to C
            assert c.next() == (4, "m3")
            assert ra.process_command(ids, ("settle", a.address, [1, 2, 3]))[0] == ("ok", 3)
            _, leader = ra.members(ids, timeout=10)
            target = next(s for s in ids if s != leader)
            ra.transfer_leadership(leader, target, timeout=10)
            wait_for(lambda: ra.members(ids, timeout=5)[1] == target, 10.0, "new leader")
            c.kill()
            ev = a.receive(timeout=10)
            assert ev.leader == target
            assert ev.event == ("machine", ("delivery", 4, "m3"))
            ra.process_command(ids, ("settle", a.address, [4]))
            assert ra.consistent_query(ids, Q.stats)[0] == {
                "ready": 0, "unsettled": 0, "consumers": 1, "next_id": 5}
    finally:
        b.kill()
        if c is not None:
            c.kill()
