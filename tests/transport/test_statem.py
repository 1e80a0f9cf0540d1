"""gen_statem runner: enter calls, postpone, next_event, state and generic timeouts, call/reply,
stop. Driven by a FakeClock; the mailbox is real (ipc)."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from transport import Mailbox
from transport.clock import FakeClock, MonotonicClock
from transport.statem import (
    Call,
    Cast,
    Enter,
    GenericTimeout,
    Internal,
    KeepState,
    KeepStateAndData,
    NextEvent,
    NextState,
    Postpone,
    Reply,
    StatemRunner,
    StateTimeout,
    StateTimeoutEvent,
    Stop,
    Timeout,
)


class Door:
    """The gen_statem manual's code lock: 'locked' until the code arrives, then 'open' for
    10 s (state timeout). Everything it sees is logged for the assertions."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.terminated: Any = None

    def locked(self, ev: Any, content: Any, data: Any) -> Any:
        self.log.append(("locked", ev, content))
        match ev:
            case Enter():
                return KeepStateAndData()
            case Cast() if content == "code":
                return NextState("open", data, [StateTimeout(10, "lock")])
            case Cast() if type(content) is tuple and content[0] == "push":
                return KeepStateAndData([Postpone()])  # only handled once open
            case Cast() if content == "chain":
                return KeepState(data + ["chain"], [NextEvent(Internal(), "i1"),
                                                    NextEvent(Internal(), "i2")])
            case Internal():
                return KeepState(data + [content])
            case Call(frm=frm) if content == "state":
                return KeepStateAndData([Reply(frm, "locked")])
            case Call(frm=frm) if content == "stop":
                return Stop("normal", data, [Reply(frm, "stopping")])
            case Timeout(name="tick"):
                return KeepState(data + [("tick", content)])
        return KeepStateAndData()

    def open(self, ev: Any, content: Any, data: Any) -> Any:
        self.log.append(("open", ev, content))
        match ev:
            case Enter():
                return KeepState(data + [("entered_open_from", ev.old)])
            case Cast() if type(content) is tuple and content[0] == "push":
                return KeepState(data + [content])
            case StateTimeoutEvent():
                return NextState("locked", data + [("auto", content)])
            case Cast() if content == "code":
                return KeepStateAndData([StateTimeout(10, "lock")])  # restarts the timer
            case Call(frm=frm) if content == "stop":
                return Stop("normal", data, [Reply(frm, "stopping")])
            case Timeout(name="tick"):
                return KeepState(data + [("tick", content)])
        return KeepStateAndData()

    def terminate(self, reason: Any, state: Any, data: Any) -> None:
        self.terminated = (reason, state)


@pytest.fixture
def box(ipc_dir: Path) -> Iterator[Mailbox]:
    m = Mailbox(f"ipc://{ipc_dir}/door.sock")
    yield m
    m.close()


def make(box: Mailbox, **kw: Any) -> tuple[Door, StatemRunner, FakeClock]:
    door, clock = Door(), FakeClock()
    return door, StatemRunner(door, "locked", [], box, clock=clock, state_enter=True, **kw), clock


def test_enter_and_postpone_retried_in_order_after_state_change(box: Mailbox) -> None:
    door, r, _ = make(box)
    assert door.log == [("locked", Enter("locked"), None)]  # initial enter call
    for e in [("push", 1), ("push", 2), "code", ("push", 3)]:
        r.inject(Cast(None), e)
    r.run_once()
    assert r.state == "open"
    # postponed pushes 1, 2 run right after the enter call, before push 3
    assert r.data == [("entered_open_from", "locked"), ("push", 1), ("push", 2), ("push", 3)]
    kinds = [(s, type(ev).__name__, c) for s, ev, c in door.log[1:]]
    assert kinds[:4] == [("locked", "Cast", ("push", 1)), ("locked", "Cast", ("push", 2)),
                         ("locked", "Cast", "code"), ("open", "Enter", None)]


def test_next_event_runs_before_queued_events(box: Mailbox) -> None:
    _, r, _ = make(box)
    r.inject(Cast(None), "chain")
    r.inject(Cast(None), ("push", "queued"))  # postponed in locked: not in data
    r.inject(Cast(None), "chain")
    r.run_once()
    assert r.data == ["chain", "i1", "i2", "chain", "i1", "i2"]


def test_state_timeout_fires_only_after_its_time_and_is_restartable(box: Mailbox) -> None:
    _, r, clock = make(box)
    r.inject(Cast(None), "code")
    r.run_once()
    assert r.state == "open" and r.next_deadline() == 10
    clock.advance(9.9)
    r.run_once()
    assert r.state == "open"
    r.inject(Cast(None), "code")  # re-arms: due at 19.9 now
    r.run_once()
    clock.advance(9.9)
    r.run_once()
    assert r.state == "open"
    clock.advance(0.2)
    r.run_once()
    assert r.state == "locked" and ("auto", "lock") in r.data


def test_generic_timeout_survives_state_change(box: Mailbox) -> None:
    _, r, clock = make(box, actions=[GenericTimeout("tick", 5, "t1")])
    r.inject(Cast(None), "code")    # open, state timeout at 10
    r.run_once()
    clock.advance(5)                # tick fires in open
    r.run_once()
    assert ("tick", "t1") in r.data
    # the state timeout then fires and relocks; nothing is left armed
    clock.advance(5)
    r.run_once()
    assert r.state == "locked" and r.next_deadline() is None


def test_generic_timeout_cancel_and_replace(box: Mailbox) -> None:
    _, r, clock = make(box, actions=[GenericTimeout("tick", 5, "a"),
                                     GenericTimeout("tick", 7, "b")])  # replaces
    clock.advance(6)
    r.run_once()
    assert r.data == []
    clock.advance(1)
    r.run_once()
    assert r.data == [("tick", "b")]
    r2 = StatemRunner(Door(), "locked", [], box, clock=clock,
                      actions=[GenericTimeout("tick", 1, "x"), GenericTimeout("tick", None)])
    clock.advance(2)
    r2.run_once()
    assert r2.data == [] and r2.next_deadline() is None


def test_state_change_cancels_pending_state_timeout(box: Mailbox) -> None:
    class M:
        def a(self, ev: Any, content: Any, data: Any) -> Any:
            if isinstance(ev, Cast):
                return NextState("b", data, [StateTimeout(1, "in_b")])
            return KeepState(data + [("a", type(ev).__name__, content)])

        def b(self, ev: Any, content: Any, data: Any) -> Any:
            if isinstance(ev, Cast):
                return NextState("a", data)  # leaves b before its timeout
            return KeepState(data + [("b", type(ev).__name__, content)])

    clock = FakeClock()
    r = StatemRunner(M(), "a", [], box, clock=clock)
    r.inject(Cast(None), "go")
    r.inject(Cast(None), "back")
    r.run_once()
    clock.advance(2)
    r.run_once()
    assert r.state == "a" and r.data == []


def test_call_reply_and_stop_over_real_mailbox(box: Mailbox, ipc_dir: Path) -> None:
    door = Door()
    r = StatemRunner(door, "locked", [], box, clock=MonotonicClock())
    t = threading.Thread(target=r.run, kwargs={"max_wait": 0.05})
    t.start()
    try:
        with Mailbox(f"ipc://{ipc_dir}/client.sock") as client:
            assert client.call(box.address, "state", timeout=5) == "locked"
            client.cast(box.address, "code")
            assert client.call(box.address, "stop", timeout=5) == "stopping"
    finally:
        t.join(5)
    assert not t.is_alive()
    assert r.is_stopped and r.stopped == "normal" and door.terminated == ("normal", "open")


def test_enter_call_may_not_change_state(box: Mailbox) -> None:
    class Bad:
        def s(self, ev: Any, content: Any, data: Any) -> Any:
            return NextState("t", data)

    with pytest.raises(ValueError, match="enter call cannot change state"):
        StatemRunner(Bad(), "s", None, box, clock=FakeClock(), state_enter=True)


def test_handle_event_mode(box: Mailbox) -> None:
    class H:
        def handle_event(self, ev: Any, content: Any, state: Any, data: Any) -> Any:
            return NextState(state + 1, data + [(state, content)])

    r = StatemRunner(H(), 0, [], box, clock=FakeClock())
    r.inject(Cast(None), "a")
    r.inject(Cast(None), "b")
    r.run_once()
    assert r.state == 2 and r.data == [(0, "a"), (1, "b")]
