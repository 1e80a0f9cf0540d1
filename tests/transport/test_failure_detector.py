"""Failure detector: pure decisions with explicit times; nodeup/nodedown between real daemons."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.transport.conftest import Peers
from transport import Mailbox
from transport.failure_detector import DOWN, UNKNOWN, UP, Detector
from transport.messages import FdStatus, FdSubscribe, NodeEvent


def test_detector_up_down_up_each_reported_once() -> None:
    d = Detector(down_after=1.0)
    d.watch("b:1", now=0.0)
    assert d.status("b:1") == UNKNOWN
    assert d.check(0.9) == []
    assert d.heartbeat("b:1", 0.5) == [("nodeup", "b:1")]
    assert d.heartbeat("b:1", 0.7) == []
    assert d.check(1.6) == []                         # 0.9 s of silence < 1.0
    assert d.check(1.8) == [("nodedown", "b:1")]      # 1.1 s
    assert d.check(5.0) == []                         # reported once
    assert d.status("b:1") == DOWN
    assert d.heartbeat("b:1", 6.0) == [("nodeup", "b:1")]
    assert d.status("b:1") == UP


def test_never_heard_node_goes_down_after_threshold() -> None:
    d = Detector(down_after=1.0)
    d.watch("c:1", now=10.0)
    assert d.next_check(10.0) == 11.0
    assert d.check(10.99) == []
    assert d.check(11.01) == [("nodedown", "c:1")]


def test_own_stall_is_not_the_peers_silence() -> None:
    # the daemon ran its checks every 0.2 s, then was not scheduled for 3 s (a machine with far
    # more runnable processes than cores): the heartbeats sent meanwhile wait in its socket,
    # and its first check runs before it reads them
    d = Detector(down_after=1.0, stall_after=0.6)
    d.watch("b:1", now=0.0)
    assert d.heartbeat("b:1", 0.1) == [("nodeup", "b:1")]
    for t in (0.2, 0.4, 0.6):
        assert d.check(t) == []
    assert d.check(3.6) == []                         # 3.5 s of "silence": our own stall
    assert d.stalls == 1
    assert d.heartbeat("b:1", 3.61) == []             # then read from the socket: still up
    assert d.check(3.8) == [] and d.status("b:1") == UP
    # without the allowance the same history reports it down (the bug this guards against)
    plain = Detector(down_after=1.0)
    plain.watch("b:1", now=0.0)
    plain.heartbeat("b:1", 0.1)
    plain.check(0.6)
    assert plain.check(3.6) == [("nodedown", "b:1")]


def _heard_once(node: str, **kw: float) -> Detector:
    """A detector watching ``node`` since 0, its one heartbeat at 0.1 (it dies then)."""
    d = Detector(down_after=1.0, stall_after=0.6, **kw)
    d.watch(node, now=0.0)
    d.heartbeat(node, 0.1)
    return d


def _first_down(d: Detector, step: float, until: float, behind: bool = False
                ) -> tuple[float, list[tuple[str, str]]]:
    """Check every ``step`` s from 0.1 (telling ``d`` first that we are behind on our mail,
    if ``behind``) until a node goes down or ``until``: (that time, what was reported)."""
    t, downs = 0.1, []
    while t < until and not downs:
        t = round(t + step, 1)
        if behind:
            d.behind(t)
        downs = d.check(t)
    return t, downs


def test_stalls_delay_but_never_hide_a_dead_node() -> None:
    d = _heard_once("b:1", stall_forgive=4.0)
    t, downs = _first_down(d, 0.9, 20)                # every check stalled, 0.9 s apart
    assert downs == [("nodedown", "b:1")]
    # silence forgiven: at most stall_forgive, so reported within forgive + threshold (+ a gap)
    assert 0.1 + 4.0 + 1.0 < t <= 0.1 + 4.0 + 1.0 + 0.9
    # a check that is not stalled after a stall counts silence from the stall's end
    e = Detector(down_after=1.0, stall_after=0.6)
    e.watch("c:1", now=0.0)
    e.heartbeat("c:1", 0.1)
    e.check(0.2)
    assert e.check(2.0) == []                         # stalled: silence counts from 2.0
    assert e.check(2.5) == []
    assert e.next_check(2.5) == 3.0
    assert e.check(3.01) == [("nodedown", "c:1")]


def test_behind_on_mail_is_not_the_peers_silence_but_never_hides_a_dead_node() -> None:
    # the loop checks on time (every 0.2 s, no stall) but each turn leaves mail unread: the
    # peer's heartbeats wait in the queue behind it
    d = _heard_once("b:1", stall_forgive=4.0)
    t = 0.1
    while t < 3.0:
        t = round(t + 0.2, 1)
        d.behind(t)
        assert d.check(t) == [], t                    # 2.9 s "silent", behind all along
    assert d.stalls == 0 and d.behinds == 15
    assert d.heartbeat("b:1", 3.15) == []             # the queued heartbeat: never down
    # caught up, and then really silent: down a threshold after its last heartbeat
    for t in (3.3, 3.5, 3.7, 3.9, 4.1):
        assert d.check(t) == [], t
    assert d.check(4.3) == [("nodedown", "b:1")]
    # a node that died while we stay behind is still reported, stall_forgive later
    t, downs = _first_down(_heard_once("c:1", stall_forgive=4.0), 0.2, 20, behind=True)
    assert downs == [("nodedown", "c:1")]
    assert 0.1 + 4.0 + 1.0 < t <= 0.1 + 4.0 + 1.0 + 0.2
    # without the allowance the same history reports the live node down (what this guards)
    t, downs = _first_down(_heard_once("b:1"), 0.2, 3.0)
    assert downs == [("nodedown", "b:1")]


def test_threshold_adapts_to_slow_irregular_heartbeats() -> None:
    d = Detector(down_after=0.5)
    d.watch("n", 0.0)
    t = 0.0
    for gap in [1.0, 3.0, 1.0, 3.0, 1.0, 3.0]:  # slow, jittery but alive
        t += gap
        d.heartbeat("n", t)
        assert d.check(t) == []
    th = d.threshold("n")
    assert th > 3.0  # mean 2 + 4 * stdev
    assert d.check(t + 3.0) == []
    assert d.check(t + th + 0.01) == [("nodedown", "n")]


def test_heartbeat_from_unwatched_node_counts_as_up() -> None:
    d = Detector()
    assert d.heartbeat("x", 1.0) == [("nodeup", "x")]
    assert "x" in d.nodes()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_nodedown_and_nodeup_between_real_daemons(peers: Peers, ipc_dir: Path) -> None:
    pa, b_port = _free_port(), _free_port()
    a_node, b_node = f"127.0.0.1:{pa}", f"127.0.0.1:{b_port}"
    peers.start("daemon", f"tcp://{a_node}", f"watch={b_node}")
    pb, _ = peers.start("daemon", f"tcp://{b_node}", f"watch={a_node}")
    with Mailbox(f"ipc://{ipc_dir}/sub.sock") as mb:
        status = mb.call(f"tcp://{a_node}", FdSubscribe(mb.address))
        if status.get(b_node) != UP:  # b not heard from yet: its nodeup is still to come
            env = mb.recv(5)
            assert env is not None and env.payload == NodeEvent("nodeup", b_node)
        peers.kill(pb)
        t0 = time.monotonic()
        env = mb.recv(3)
        assert env is not None and env.payload == NodeEvent("nodedown", b_node)
        assert time.monotonic() - t0 < 1.5  # down_after 0.3 s + heartbeat jitter
        peers.start("daemon", f"tcp://{b_node}", f"watch={a_node}")  # same node comes back
        env = mb.recv(5)
        assert env is not None and env.payload == NodeEvent("nodeup", b_node)
        assert mb.call(f"tcp://{a_node}", FdStatus()) == {b_node: UP}


def test_socket_part_with_fake_clock(ipc_dir: Path) -> None:
    """Two embedded detectors on real mailboxes; time moves only when the test says so."""
    from transport.clock import FakeClock
    from transport.failure_detector import FailureDetector

    clock = FakeClock()
    with Mailbox("tcp://127.0.0.1:0") as a_mb, Mailbox("tcp://127.0.0.1:0") as b_mb:
        a_node, b_node = a_mb.address[len("tcp://"):], b_mb.address[len("tcp://"):]
        fa = FailureDetector(a_mb, a_node, [b_node], interval=0.1, down_after=0.5, clock=clock)
        fb = FailureDetector(b_mb, b_node, [a_node], interval=0.1, down_after=0.5, clock=clock)
        seen: list[tuple[str, str]] = []
        fa.callbacks.append(lambda ev, node: seen.append((ev, node)))
        fb.tick()  # b's first heartbeat to a
        fb.tick()  # not due again yet: no second heartbeat
        env = a_mb.recv(5)
        assert env is not None and fa.handle(env)
        assert a_mb.recv(0.2) is None
        assert seen == [("nodeup", b_node)]
        assert fa.next_deadline() == pytest.approx(0.0)  # a's own heartbeat is due
        clock.advance(0.4)
        fa.tick()
        assert seen == [("nodeup", b_node)]  # 0.4 s of silence < 0.5
        clock.advance(0.2)
        fa.tick()
        assert seen == [("nodeup", b_node), ("nodedown", b_node)]
        assert fa.detector.status(b_node) == DOWN
        assert not fa.handle(env._replace(payload=("something", "else")))


@pytest.mark.integration
def test_apply_node_event_makes_calls_fail_fast_and_drops_cache(peers: Peers,
                                                                ipc_dir: Path) -> None:
    from ra.errors import NodeDown
    from transport.failure_detector import apply_node_event
    from transport.registry import call_name, resolve

    _, daemon = peers.start("daemon", "tcp://127.0.0.1:0")
    node = daemon[len("tcp://"):]
    peers.start("echo", "tcp://127.0.0.1:0", "name=kv", f"node={node}")
    with Mailbox(f"ipc://{ipc_dir}/me.sock") as mb:
        assert call_name(mb, ("kv", node), 1) == ("echo", 1)
        assert apply_node_event(mb, NodeEvent("nodedown", node))
        t0 = time.monotonic()
        with pytest.raises(NodeDown):
            call_name(mb, ("kv", node), 2, timeout=5)
        assert time.monotonic() - t0 < 0.05
        assert apply_node_event(mb, NodeEvent("nodeup", node))
        assert call_name(mb, ("kv", node), 3) == ("echo", 3)  # re-resolved, reachable again
        assert resolve(mb, "kv", node)
        assert not apply_node_event(mb, ("nodeup", node))   # the old tuple form: not ours
