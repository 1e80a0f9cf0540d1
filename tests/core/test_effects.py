"""Typed machine effects at the core's boundary (``ra.core.effects``): the constructors of
``ra.effects`` and ra's tuple spelling read back to the same typed effects, both spellings behave
alike in the core, and a malformed effect is a machine error (from ``apply``) or dropped and
reported (other callbacks), never a crash."""
from __future__ import annotations

from typing import Any

import pytest

from ra import effects as fx
from ra.core.effects import (
    SHELL_MACHINE_EFFECTS, Append, Aux, BadMachineEffects, Checkpoint, Demonitor,
    GarbageCollection, InvalidEffect, Log, ModCall, Monitor, PromoteCheckpoint, ReleaseCursor,
    SendMsg, Timer, machine_effects,
)
from ra.core.machine import MACHINE_ERROR
from ra.core.messages import AppendEntriesReply, AppendEntriesRpc, Command, FlushCommands, Tick
from tests.core.helpers import N1, N2, make_leader, new_server, step, sync


def _reader(cmds: list[Any]) -> list[Any]:
    return [("send_msg", "pid", tuple(cmds))]


#: (built by ra.effects, the same typed effect spelled by hand, ra's tuple spelling)
CASES: list[tuple[Any, Any, tuple[Any, ...]]] = [
    (fx.send_msg("tcp://a:1", ("m", 1)), SendMsg("tcp://a:1", ("m", 1)),
     ("send_msg", "tcp://a:1", ("m", 1))),
    (fx.send_msg("tcp://a:1", "m", "ra_event"), SendMsg("tcp://a:1", "m", ("ra_event",)),
     ("send_msg", "tcp://a:1", "m", ("ra_event",))),
    (fx.monitor("process", "tcp://a:1"), Monitor("process", "tcp://a:1"),
     ("monitor", "process", "tcp://a:1")),
    (fx.monitor("node", "h:1"), Monitor("node", "h:1"), ("monitor", "node", "h:1")),
    (fx.demonitor("process", "tcp://a:1"), Demonitor("process", "tcp://a:1"),
     ("demonitor", "process", "tcp://a:1")),
    (fx.mod_call("pkg.mod:f", [1, "x"]), ModCall("pkg.mod:f", (1, "x")),
     ("mod_call", "pkg.mod:f", [1, "x"])),
    (fx.timer("t", 100), Timer("t", 100), ("timer", "t", 100)),
    (fx.timer("t", None), Timer("t", None), ("timer", "t", None)),
    (fx.log([2, 3], _reader), Log((2, 3), _reader), ("log", [2, 3], _reader)),
    (fx.release_cursor(5, {"s": 1}), ReleaseCursor(5, {"s": 1}),
     ("release_cursor", 5, {"s": 1})),
    (fx.release_cursor(5, None), ReleaseCursor(5, None), ("release_cursor", 5, None)),
    (fx.release_cursor(5), PromoteCheckpoint(5), ("release_cursor", 5)),
    (fx.checkpoint(5, [1]), Checkpoint(5, [1]), ("checkpoint", 5, [1])),
    (fx.aux(("x", 1)), Aux(("x", 1)), ("aux", ("x", 1))),
    (fx.append(("appended",)), Append(("appended",)), ("append", ("appended",))),
    (fx.append(("appended",), ("notify", 7, "tcp://a:1")),
     Append(("appended",), ("notify", 7, "tcp://a:1")),
     ("append", ("appended",), ("notify", 7, "tcp://a:1"))),
    (fx.garbage_collection(), GarbageCollection(), ("garbage_collection",)),
]


@pytest.mark.parametrize("built,typed,spelled", CASES, ids=[c[2][0] for c in CASES])
def test_every_constructor_round_trips(built: Any, typed: Any, spelled: tuple[Any, ...]) -> None:
    assert built == typed and type(built) is type(typed)
    assert built.as_tuple() == spelled
    assert machine_effects([spelled]) == [typed]
    assert machine_effects([built]) == [built]
    assert machine_effects([built.as_tuple()]) == [built]


def test_the_tuple_spelling_variants_ra_allows() -> None:
    # a single option as an atom, ra's infinity for a cancelled timer, lists for tuples
    assert machine_effects([("send_msg", "a", "m", "ra_event")]) == [SendMsg("a", "m",
                                                                             ("ra_event",))]
    assert machine_effects([("send_msg", "a", "m", ["ra_event", "local"])]) == [
        SendMsg("a", "m", ("ra_event", "local"))]
    assert machine_effects([("timer", "t", "infinity")]) == [Timer("t", None)]
    assert fx.timer("t", "infinity") == Timer("t", None)     # type: ignore[arg-type]
    # a single effect, typed or spelled, instead of a list; a tuple of effects; nothing
    assert machine_effects(("aux", 1)) == [Aux(1)]
    assert machine_effects(Aux(1)) == [Aux(1)]
    assert machine_effects((("aux", 1), Aux(2))) == [Aux(1), Aux(2)]
    assert machine_effects(None) == [] and machine_effects([]) == []


#: malformed effects: every kind with a wrong arity and with a field of a wrong type
MALFORMED: list[Any] = [
    ("send_msg", "a"), ("send_msg", "a", "m", (), 1), ("send_msg", 42, "m"),
    ("send_msg", "a", "m", ["bogus"]), ("send_msg", "a", "m", 7),
    ("monitor", "process"), ("monitor", "thread", "a"), ("monitor", "process", 42),
    ("demonitor", "node"), ("demonitor", "node", None),
    ("mod_call", "m:f"), ("mod_call", "no_colon", []), ("mod_call", "m:f", 5),
    ("mod_call", 3, []),
    ("timer", "t"), ("timer", "t", "soon"), ("timer", ["unhashable"], 5), ("timer", "t", -1),
    ("timer", "t", True),
    ("log", [1]), ("log", [1], "not callable"), ("log", "12", _reader), ("log", [-1], _reader),
    ("release_cursor",), ("release_cursor", 1, 2, 3), ("release_cursor", "x"),
    ("release_cursor", -1, "s"),
    ("checkpoint", 1), ("checkpoint", "1", "s"),
    ("aux",), ("aux", 1, 2),
    ("append",), ("append", "c", ("await",)), ("append", "c", ("await", ("addr", 1))),
    ("append", "c", ("notify", 1, 2)),
    ("append", "c", "noreply", 4),
    ("garbage_collection", 1),
    ("bogus", 1), (), (1, 2), None, 42, "send_msg", {"send_msg": 1},
]


@pytest.mark.parametrize("bad", MALFORMED, ids=[repr(b)[:40] for b in MALFORMED])
def test_a_malformed_effect_is_refused_with_a_typed_error(bad: Any) -> None:
    with pytest.raises(InvalidEffect) as ei:
        machine_effects([bad])
    assert ei.value.effect == bad and ei.value.reason
    assert isinstance(ei.value, ValueError)


def test_typed_effects_check_their_fields_when_built() -> None:
    for build in (lambda: fx.send_msg(42, "m"), lambda: fx.monitor("thread", "a"),  # type: ignore[arg-type]
                  lambda: fx.demonitor("process", 1), lambda: fx.mod_call("nocolon"),  # type: ignore[arg-type]
                  lambda: fx.timer("t", 1.5), lambda: fx.log([1], 3),  # type: ignore[arg-type]
                  lambda: fx.release_cursor(-1), lambda: fx.checkpoint("x", 1),  # type: ignore[arg-type]
                  lambda: fx.append("c", "later"), lambda: Timer({}, 1)):
        with pytest.raises(InvalidEffect):
            build()


# -- in the core -----------------------------------------------------------------------------------

class Returns:
    """Returns the effects the command carries; counts applies in its state."""

    def __init__(self, enter: Any = None, tick: Any = None, named: Any = None) -> None:
        self.enter, self.tick_effects, self.named = enter, tick, named

    def init(self, config: Any) -> int:
        return 0

    def apply(self, meta: dict[str, Any], cmd: Any, state: int) -> tuple[Any, ...]:
        if cmd[0] == "effects":
            return state + 1, "ok", cmd[1]
        if cmd[0] == "named":       # effects the log does not carry (the runs compare logs)
            return state + 1, "ok", self.named
        if cmd[0] == "result":
            return cmd[1]
        return state + 1, "ok"

    def state_enter(self, role: str, state: int) -> Any:
        return self.enter

    def tick(self, time_ms: int, state: int) -> Any:
        return self.tick_effects


def leader(machine: Any) -> Any:
    s = new_server(machine=machine)
    make_leader(s)
    sync(s)
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))
    return s


def commit(s: Any, *cmds: Any) -> list[Any]:
    for c in cmds:
        step(s, Command("usr", c, ("await", "f")))
    step(s, FlushCommands())
    out = sync(s)
    last = s.log.last_index_term()[0]
    return out + step(s, AppendEntriesReply(1, True, last + 1, last, 1, N2))


def _run(effects: list[Any]) -> tuple[list[Any], Any]:
    s = leader(Returns(named=effects))
    commit(s, ("a",), ("b",))
    eff = commit(s, ("named",))
    eff += commit(s, ("c",))        # whatever an append effect added commits here
    entries = [s.log.fetch(i) for i in range(1, s.log.last_index_term()[0] + 1)]
    return eff, (s.machine_state, s.last_applied, entries, s.log.snapshot_index_term(),
                 s.log.checkpoint_index_terms())


@pytest.mark.parametrize("built,typed,spelled", CASES, ids=[c[2][0] for c in CASES])
def test_tuple_and_typed_spellings_behave_alike(built: Any, typed: Any,
                                                spelled: tuple[Any, ...]) -> None:
    if isinstance(built, (ReleaseCursor, PromoteCheckpoint, Checkpoint)):
        # index 4 is applied when the effect is returned: snapshot / checkpoint it
        built = type(built)(4, *([built.state] if hasattr(built, "state") else []))
        spelled = built.as_tuple()
    as_typed = _run([built])
    as_tuple = _run([spelled])
    assert as_typed == as_tuple
    eff = as_typed[0]
    if isinstance(built, SHELL_MACHINE_EFFECTS):
        assert built in eff                     # passed to the shell, typed
    elif isinstance(built, Log):
        assert SendMsg("pid", (("a",), ("b",))) in eff
    elif isinstance(built, Append):
        assert ("usr", ("appended",)) in [e[2][:2] for e in as_typed[1][2]]
    elif isinstance(built, ReleaseCursor):
        assert as_typed[1][3] == (4, 1)
    elif isinstance(built, Checkpoint):
        assert [i for i, _ in as_typed[1][4]] == [4]
    assert not any(isinstance(e, BadMachineEffects) for e in eff)


@pytest.mark.parametrize("bad", MALFORMED, ids=[repr(b)[:40] for b in MALFORMED])
def test_a_malformed_effect_from_apply_is_a_machine_error_and_a_no_op_everywhere(bad: Any) -> None:
    s = leader(Returns())
    commit(s, ("a",))
    before = s.machine_state
    eff = commit(s, ("effects", [fx.aux("fine"), bad]))
    [answer] = [e.value for e in eff if getattr(e, "frm", None) == "f"]
    assert answer[0] == "error" and answer[1][:2] == ("machine_error", "InvalidEffect")
    assert "invalid machine effect" in answer[1][2]
    assert s.machine_state == before                        # applied as a no-op
    assert not any(isinstance(e, SHELL_MACHINE_EFFECTS) for e in eff)   # not even the good one
    # the server goes on: the next command applies
    commit(s, ("b",))
    assert s.machine_state == before + 1 and s.role == "leader"
    # a follower applying the same entries reaches the same state
    f = new_server(machine=Returns())
    entries = [s.log.fetch(i) for i in range(1, s.log.last_index_term()[0] + 1)]
    step(f, AppendEntriesRpc(1, N2, 0, 0, 0, entries))
    sync(f)
    step(f, AppendEntriesRpc(1, N2, entries[-1][0], entries[-1][0], 1, []))
    assert f.last_applied == s.last_applied and f.machine_state == s.machine_state


def test_a_typed_effect_built_badly_inside_apply_is_the_same_machine_error() -> None:
    class Builds(Returns):
        def apply(self, meta: dict[str, Any], cmd: Any, state: int) -> tuple[Any, ...]:
            return state + 1, "ok", [fx.send_msg(cmd[1], "m")]
    s = leader(Builds())
    before = s.machine_state
    eff = commit(s, ("x", 42))
    [answer] = [e.value for e in eff if getattr(e, "frm", None) == "f"]
    assert answer[1][:2] == ("machine_error", "InvalidEffect") and s.machine_state == before


@pytest.mark.parametrize("result", [None, 5, ("only_state",), (1, 2, 3, 4)])
def test_a_malformed_apply_result_is_a_machine_error(result: Any) -> None:
    s = leader(Returns())
    before = s.machine_state
    eff = commit(s, ("result", result))
    [answer] = [e.value for e in eff if getattr(e, "frm", None) == "f"]
    assert answer[1][:2] == ("machine_error", "InvalidResult") and s.machine_state == before
    assert MACHINE_ERROR not in repr(answer)     # the client sees the error, not the marker


def test_malformed_effects_from_tick_are_dropped_and_reported() -> None:
    m = Returns(tick=[("send_msg", "a", "m"), ("monitor", "process")])
    s = leader(m)
    eff = step(s, Tick(5))
    bad = [e for e in eff if isinstance(e, BadMachineEffects)]
    assert len(bad) == 1 and bad[0].callback == "tick" and "monitor takes 2" in bad[0].reason
    assert not any(isinstance(e, SHELL_MACHINE_EFFECTS) for e in eff)   # none of them
    m.tick_effects = [("send_msg", "a", "m")]
    assert step(s, Tick(6)) == [SendMsg("a", "m")]
    assert s.role == "leader"


def test_malformed_effects_from_state_enter_are_dropped_and_reported() -> None:
    from ra.core.messages import TimeoutNow
    m = Returns(enter=[fx.aux("entered"), ("timer", "t", "soon")])
    s = new_server(machine=m)
    eff = step(s, TimeoutNow(0, N2)) + sync(s)
    assert s.role == "candidate"
    bad = [e for e in eff if isinstance(e, BadMachineEffects)]
    assert len(bad) == 1 and bad[0].callback == "state_enter" and "'soon'" in bad[0].reason
    assert Aux("entered") not in eff
    # well-formed again: the next role change runs them
    m.enter = [fx.aux("entered")]
    eff = step(s, AppendEntriesRpc(s.current_term, N2, 0, 0, 0, [])) + sync(s)
    assert s.role == "follower" and s.id == N1
    assert Aux("entered") in eff and not any(isinstance(e, BadMachineEffects) for e in eff)
