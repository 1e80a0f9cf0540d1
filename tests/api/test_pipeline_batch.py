"""Pipelined commands held back while the connection to their server is backed up, and sent as
one ``PipelineBatch`` (``Client._pipe``). No ra equivalent (Erlang's distribution buffers
for ra). A backed-up connection is made here by having the mailbox report a backlog: the
real one (a full socket) is timing, tested in tests/transport/test_direct.py."""
from __future__ import annotations

import time
from typing import Any

import pytest

import ra
from ra.testing import machines as M
from tests.api.conftest import leader_of, wait_for

pytestmark = pytest.mark.integration


class _Backlog:
    """A stand-in for ``DirectMailbox.backlog``: reports ``value`` for every destination."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self, to: str) -> int:
        return self.value


def _opened(c: ra.Client, leader: Any) -> None:
    """Open the client's session (a call) and wait for the first command's event."""
    c.pipeline_command(leader, 0, correlation="open", priority="normal")
    assert c.receive(timeout=5).event[0] == "applied"


def _applied(c: ra.Client, n: int) -> dict[Any, Any]:
    got: dict[Any, Any] = {}
    while len(got) < n:
        ev = c.receive(timeout=5)
        assert ev.event[0] == "applied", ev
        for corr, reply in ev.event[1]:
            assert corr not in got, f"{corr} applied twice"
            got[corr] = reply
    return got


def test_an_idle_connection_sends_each_pipelined_command_at_once(cluster: Any) -> None:
    """The latency path (W1-like): nothing backed up, nothing held; the event arrives with
    nothing else called on the client (``receive`` would send what is held)."""
    leader = leader_of(cluster)
    with ra.Client() as c:
        _opened(c, leader)
        for i in range(3):
            c.pipeline_command(leader, 1, correlation=i, priority="normal")
            assert c._batch == []
            env = c.mb.recv(5)
            assert env is not None
            assert env.payload[2] == ("applied_flat", [i, i + 1])    # pairs flat on the wire


def test_commands_held_while_backed_up_leave_as_one_frame_before_receive(
        cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    leader = leader_of(cluster)
    with ra.Client() as c:
        _opened(c, leader)
        monkeypatch.setattr(c.mb, "backlog", _Backlog(1))
        sent = c.mb._sent
        for i in range(100):
            c.pipeline_command(leader, 1, correlation=i, priority="normal")
        assert c.mb._sent == sent and len(c._batch) == 500
        got = _applied(c, 100)                 # receive sends the batch first
        assert c.mb._sent == sent + 1 and c._batch == []
        assert sorted(got.values()) == list(range(1, 101))
        assert all(not s.waiting for s in c._sessions.values()) and not c._pipes
        # held, then a call: the batch leaves first and the server steps it first (normal
        # priority: appended in arrival order), so the call's command sees all of it
        for i in range(100, 150):
            c.pipeline_command(leader, 1, correlation=i, priority="normal")
        assert c.process_command(leader, 1000)[0] == 1150
        assert sorted(_applied(c, 50).values()) == list(range(101, 151))
    assert not any("Pipeline" in k for k in ra.key_metrics(leader)["bad_messages"])


def test_a_batch_leaves_when_full_when_the_backlog_drains_and_before_other_work(
        cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    leader = leader_of(cluster)
    with ra.Client() as c:
        _opened(c, leader)
        backlog = _Backlog(1)
        monkeypatch.setattr(c.mb, "backlog", backlog)
        sent = c.mb._sent
        for i in range(1100):                  # full at 512 commands
            c.pipeline_command(leader, 1, correlation=i)
        assert c.mb._sent == sent + 2 and len(c._batch) == 5 * 76
        backlog.value = 0                      # drained: the next command takes all along
        c.pipeline_command(leader, 1, correlation=1100)
        assert c.mb._sent == sent + 3 and c._batch == []
        backlog.value = 1
        c.pipeline_command(leader, 1, correlation=1101)
        c.pipeline_command(leader, 1, correlation=1102, priority="normal")   # another priority
        assert c.mb._sent == sent + 4 and len(c._batch) == 5
        assert c.members(leader)[1] == leader  # a call sends what is held first
        assert c.mb._sent == sent + 6 and c._batch == []
        got = _applied(c, 1103)
        assert sorted(got.values()) == list(range(1, 1104))


def _move_leader(cluster: list[Any]) -> None:
    """Hand leadership to another member and wait until it leads. "ok" only starts a
    transfer, which the leader gives up if the target does not catch up in time (a loaded
    machine): then it is asked again."""
    now = ra.members(cluster, timeout=10)[1]
    target = next(s for s in cluster if s != now)
    assert ra.transfer_leadership(now, target, timeout=10) == "ok"

    def moved() -> bool:
        if ra.members(cluster, timeout=10)[1] != now:
            return True
        ra.transfer_leadership(now, target, timeout=10)
        return False
    wait_for(moved, timeout=30, what="leadership moved")


def test_pipelined_batches_are_applied_exactly_once_across_a_leader_change(
        cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """W3's loop (at most 500 in flight, a rejected command pipelined again to the leader it
    names), every command sent in batches, leadership moved twice on the way: each command
    gets an applied event and is applied once (the counter's total). A command the deposed
    leader had appended but not replicated is lost with its event: after 2 s without events
    the commands still awaited are pipelined again with the same correlation, so with the
    same seq (applied once if they were applied after all). A command the old leader applied
    and notified may be notified again by the new one (as ra's are): counted once."""
    leader = leader_of(cluster)
    n, window = 3000, 500
    deadline = time.monotonic() + 120
    with ra.Client() as c:
        _opened(c, leader)
        monkeypatch.setattr(c.mb, "backlog", _Backlog(1))
        sent = 0
        awaited: set[int] = set()
        resend: list[int] = []
        rejected = 0
        got: set[int] = set()
        moves = [1000, 2000]
        while len(got) < n:
            assert time.monotonic() < deadline, f"{len(got)} of {n} applied"
            while len(awaited) < window and (resend or sent < n):
                corr = resend.pop() if resend else sent
                sent += corr == sent
                c.pipeline_command(leader, 1, correlation=corr)
                awaited.add(corr)
            if moves and len(got) >= moves[0]:
                moves.pop(0)
                _move_leader(cluster)
            try:
                ev = c.receive(timeout=2)
            except ra.Timeout:
                leader = ra.members(cluster, timeout=10)[1]
                for corr in sorted(awaited):
                    c.pipeline_command(leader, 1, correlation=corr)
                continue
            if ev.event[0] == "applied":
                for corr, _ in ev.event[1]:
                    got.add(corr)
                    awaited.discard(corr)
            else:
                _, new, corr = ev.event[1]
                rejected += 1
                if corr in awaited:
                    awaited.discard(corr)
                    resend.append(corr)
                if new is not None:
                    leader = ra.ServerId(*new)
        assert not moves, "the leader never changed"
        assert rejected > 0, "no batch reached a deposed leader"
    assert sorted(got) == list(range(n))
    total = wait_for(lambda: ra.consistent_query(cluster, M.get_state)[0], what="state")
    assert total == n


def test_receive_pairs_a_flat_applied_event_and_never_raises_on_a_bad_one() -> None:
    """The leader sends ``("applied_flat", [corr, reply, ...])``; ``receive`` gives the
    API's ``("applied", [(corr, reply), ...])``. What only looks like one passes through as
    it came, and a leader id that ``ServerId`` refuses (a node "tcp://h:1", which the wire
    check admits) makes the event a foreign message, not an exception."""
    from ra.core.types import ServerId
    from transport.mailbox import Mailbox      # its I/O thread handshakes while we wait
    lead = ServerId("s", "127.0.0.1:1")
    with ra.Client() as c, Mailbox(None) as fz:
        for ev in [("ra_event", lead, ("applied_flat", ["a", 1, ("b", 2), [3]])),
                   ("ra_event", lead, ("applied_flat", ["a", 1, "odd"])),
                   ("ra_event", ("s", "tcp://127.0.0.1:1"), ("applied_flat", ["a", 1]))]:
            fz.cast(c.mb.address, ev)
        got = [c.receive(timeout=5) for _ in range(3)]
    assert got[0] == ra.RaEvent(lead, ("applied", [("a", 1), (("b", 2), [3])])), got[0]
    assert got[1] == ra.RaEvent(lead, ("applied_flat", ["a", 1, "odd"]))
    assert got[2].leader is None and got[2].event[0] == "ra_event"
