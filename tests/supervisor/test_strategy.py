"""Pure restart plans (supervisor/strategy.py) and spec checks (supervisor/spec.py)."""
from __future__ import annotations

import signal

import pytest

from supervisor import spec as S
from supervisor.strategy import (
    AutoShutdown, ChildView, Decision, Escalate, Remove, Restart, Terminate,
    add_restart, exit_reason, is_normal_exit, needs_restart, plan_exit, shutdown_order,
)

ABN = "killed"


def kids(*specs: tuple) -> list[ChildView]:
    return [ChildView(*s) for s in specs]


def plan(strategy, children, exited, reason, restarts=(), now=100.0, intensity=1, period=5,
         auto="never") -> Decision:
    return plan_exit(strategy, intensity, period, auto, children, exited, reason, restarts, now)


# ---------------------------------------------------------------- exit reasons

@pytest.mark.parametrize("rc,term_sent,reason", [
    (0, False, "normal"),
    (0, True, "normal"),
    (-signal.SIGTERM, True, "shutdown"),
    (143, True, "shutdown"),
    (-signal.SIGTERM, False, "signal:SIGTERM"),
    (-signal.SIGKILL, False, "killed"),
    (-signal.SIGKILL, True, "killed"),
    (-signal.SIGSEGV, False, "signal:SIGSEGV"),
    (3, False, "exit:3"),
    (143, False, "exit:143"),
])
def test_exit_reason_mapping(rc, term_sent, reason):
    assert exit_reason(rc, term_sent) == reason


def test_normal_reasons():
    assert is_normal_exit("normal") and is_normal_exit("shutdown") and is_normal_exit("shutdown:x")
    assert not is_normal_exit("killed") and not is_normal_exit("exit:1")


@pytest.mark.parametrize("restart,reason,expected", [
    ("permanent", "normal", True), ("permanent", "shutdown", True), ("permanent", ABN, True),
    ("transient", "normal", False), ("transient", "shutdown", False),
    ("transient", "shutdown:gone", False), ("transient", ABN, True), ("transient", "exit:1", True),
    ("temporary", "normal", False), ("temporary", ABN, False),
])
def test_needs_restart(restart, reason, expected):
    assert needs_restart(restart, reason) is expected


# ---------------------------------------------------------------- intensity window

def test_add_restart_window():
    assert add_restart((), 10.0, 5) == (10.0,)
    assert add_restart((1.0, 4.0, 6.0), 10.0, 5) == (6.0, 10.0)
    assert add_restart((5.0,), 10.0, 5) == (5.0, 10.0)       # exactly period ago still counts
    assert add_restart((4.999,), 10.0, 5) == (10.0,)


def test_intensity_exceeded_escalates():
    ch = kids(("a",))
    d1 = plan("one_for_one", ch, "a", ABN, (), now=0.0, intensity=2, period=5)
    assert d1 == Decision((Restart("a"),), (0.0,))
    d2 = plan("one_for_one", ch, "a", ABN, d1.restarts, now=1.0, intensity=2, period=5)
    assert d2 == Decision((Restart("a"),), (0.0, 1.0))
    d3 = plan("one_for_one", ch, "a", ABN, d2.restarts, now=2.0, intensity=2, period=5)
    assert d3 == Decision((Escalate("shutdown"),), (0.0, 1.0, 2.0))


def test_intensity_window_forgets_old_restarts():
    ch = kids(("a",))
    d = plan("one_for_one", ch, "a", ABN, (0.0, 1.0), now=6.5, intensity=2, period=5)
    assert d == Decision((Restart("a"),), (6.5,))


def test_intensity_zero_escalates_first_restart():
    d = plan("one_for_one", kids(("a",)), "a", ABN, (), intensity=0)
    assert d.actions == (Escalate("shutdown"),)


def test_no_restart_does_not_count():
    d = plan("one_for_one", kids(("a", "transient")), "a", "normal", (99.0,), intensity=1)
    assert d == Decision((), (99.0,))


# ---------------------------------------------------------------- strategies

def test_one_for_one_restart_types():
    ch = kids(("p", "permanent"), ("t", "transient"), ("x", "temporary"))
    assert plan("one_for_one", ch, "p", "normal").actions == (Restart("p"),)
    assert plan("one_for_one", ch, "t", ABN).actions == (Restart("t"),)
    assert plan("one_for_one", ch, "t", "normal").actions == ()
    assert plan("one_for_one", ch, "t", "shutdown").actions == ()
    assert plan("one_for_one", ch, "x", ABN).actions == (Remove("x"),)


def test_one_for_all_plan():
    ch = kids(("a", "permanent"), ("b", "transient"), ("c", "temporary"), ("d", "permanent"))
    d = plan("one_for_all", ch, "b", ABN)
    assert d.actions == (
        Terminate("d"), Terminate("c"), Terminate("a"),
        Restart("a"), Restart("b"), Remove("c"), Restart("d"),
    )


def test_one_for_all_restarts_stopped_non_temporary_children_too():
    ch = kids(("a", "permanent"), ("b", "transient", False), ("c", "permanent"))
    d = plan("one_for_all", ch, "c", ABN)
    assert d.actions == (Terminate("a"), Restart("a"), Restart("b"), Restart("c"))


def test_one_for_all_normal_transient_exit_touches_nobody():
    ch = kids(("a", "permanent"), ("b", "transient"))
    assert plan("one_for_all", ch, "b", "normal").actions == ()


def test_rest_for_one_plan():
    ch = kids(("a", "permanent"), ("b", "permanent"), ("c", "temporary"), ("d", "transient"))
    d = plan("rest_for_one", ch, "b", ABN)
    assert d.actions == (
        Terminate("d"), Terminate("c"), Restart("b"), Remove("c"), Restart("d"),
    )
    assert plan("rest_for_one", ch, "d", ABN).actions == (Restart("d"),)
    assert plan("rest_for_one", ch, "a", ABN).actions == (
        Terminate("d"), Terminate("c"), Terminate("b"),
        Restart("a"), Restart("b"), Remove("c"), Restart("d"),
    )


def test_simple_one_for_one_plan():
    ch = kids((1, "transient"), (2, "transient"))
    assert plan("simple_one_for_one", ch, 2, ABN).actions == (Restart(2),)
    assert plan("simple_one_for_one", ch, 2, "normal").actions == (Remove(2),)
    ch = kids((1, "temporary"))
    assert plan("simple_one_for_one", ch, 1, ABN).actions == (Remove(1),)
    ch = kids((1, "permanent"))
    assert plan("simple_one_for_one", ch, 1, "normal").actions == (Restart(1),)


def test_stale_exit_is_ignored():
    assert plan("one_for_one", kids(("a",)), "zz", ABN) == Decision((), ())


def test_escalate_beats_group_restart():
    ch = kids(("a",), ("b",))
    d = plan("one_for_all", ch, "a", ABN, (99.0,), now=100.0, intensity=1)
    assert d.actions == (Escalate("shutdown"),)


# ---------------------------------------------------------------- auto_shutdown

def test_any_significant():
    ch = kids(("a", "transient", True, True), ("b", "transient", True, True))
    d = plan("one_for_one", ch, "a", "normal", auto="any_significant")
    assert d.actions == (AutoShutdown(),)
    # abnormal exit of a transient significant child restarts it instead
    d = plan("one_for_one", ch, "a", ABN, auto="any_significant")
    assert d.actions == (Restart("a"),)


def test_all_significant():
    ch = kids(("a", "temporary", True, True), ("b", "transient", True, True))
    assert plan("one_for_one", ch, "a", ABN, auto="all_significant").actions == (Remove("a"),)
    ch = kids(("a", "temporary", True, True), ("b", "transient", False, True))
    assert plan("one_for_one", ch, "a", ABN, auto="all_significant").actions == (
        Remove("a"), AutoShutdown())


def test_never_ignores_significance():
    ch = kids(("a", "temporary", True, True))
    assert plan("one_for_one", ch, "a", ABN, auto="never").actions == (Remove("a"),)


def test_shutdown_order():
    ch = kids(("a",), ("b", "permanent", False), ("c",))
    assert shutdown_order(ch) == ["c", "a"]


# ---------------------------------------------------------------- specs

W = S.Fork("tests.supervisor.children:sleeper")


def test_defaults_match_otp():
    f = S.SupFlags()
    assert (f.strategy, f.intensity, f.period, f.auto_shutdown) == ("one_for_one", 1, 5, "never")
    c = S.ChildSpec("a", W)
    assert (c.restart, c.type, c.significant, c.shutdown_value) == (
        "permanent", "worker", False, 5000)
    sup = S.ChildSpec("s", S.Nested(S.SupFlags()), type="supervisor")
    assert sup.shutdown_value == "infinity"


@pytest.mark.parametrize("bad,err", [
    ("nope", S.InvalidChildSpec),
    (S.ChildSpec(None, W), S.MissingId),
    (S.ChildSpec("a", None), S.MissingStart),  # type: ignore[arg-type]
    (S.ChildSpec("a", ("m", "f", [])), S.InvalidMfa),  # type: ignore[arg-type]
    (S.ChildSpec("a", S.Fork("nocolon")), S.InvalidMfa),
    (S.ChildSpec("a", S.Exec(())), S.InvalidMfa),
    (S.ChildSpec("a", W, restart="sometimes"), S.InvalidRestartType),  # type: ignore[arg-type]
    (S.ChildSpec("a", W, shutdown=-1), S.InvalidShutdown),
    (S.ChildSpec("a", W, shutdown="soon"), S.InvalidShutdown),  # type: ignore[arg-type]
    (S.ChildSpec("a", W, type="thing"), S.InvalidChildType),  # type: ignore[arg-type]
    (S.ChildSpec("a", S.Nested(S.SupFlags())), S.InvalidChildType),
    (S.ChildSpec("a", W, significant=1), S.InvalidSignificant),  # type: ignore[arg-type]
    (S.ChildSpec("a", W, significant=True), S.BadCombination),
])
def test_check_childspec_errors(bad, err):
    with pytest.raises(err) as ei:
        S.check_childspecs([bad], "any_significant")
    assert ei.value.tag == err.tag


def test_significant_needs_auto_shutdown():
    spec = S.ChildSpec("a", W, restart="transient", significant=True)
    assert S.check_childspecs([spec], "any_significant") == [spec]
    with pytest.raises(S.BadCombination):
        S.check_childspecs([spec])


def test_duplicate_child_name():
    with pytest.raises(S.DuplicateChildName) as ei:
        S.check_childspecs([S.ChildSpec("a", W), S.ChildSpec("b", W), S.ChildSpec("a", W)])
    assert ei.value.value == "a"


def test_nested_specs_are_checked():
    inner = S.Nested(S.SupFlags(), (S.ChildSpec("x", W, shutdown=-5),))
    with pytest.raises(S.InvalidShutdown):
        S.check_childspecs([S.ChildSpec("s", inner, type="supervisor")])


@pytest.mark.parametrize("flags,err", [
    (S.SupFlags(strategy="one_for_many"), S.InvalidStrategy),  # type: ignore[arg-type]
    (S.SupFlags(intensity=-1), S.InvalidIntensity),
    (S.SupFlags(period=0), S.InvalidPeriod),
    (S.SupFlags(auto_shutdown="sometimes"), S.InvalidAutoShutdown),  # type: ignore[arg-type]
])
def test_check_flags(flags, err):
    with pytest.raises(err):
        S.check_flags(flags)
