"""The machines and the error classification of ``ra check`` (pure; no processes)."""
from __future__ import annotations

from typing import Any

import pytest

import ra
from ra.check import machines
from ra.check.workloads import classify

META: dict[str, Any] = {"index": 1, "term": 1}


def _run(m: Any, cmds: list[Any]) -> tuple[Any, list[Any]]:
    state, replies = m.init(None), []
    for c in cmds:
        state, reply = m.apply(META, c, state)
        replies.append(reply)
    return state, replies


def test_register() -> None:
    state, replies = _run(machines.Register(), [
        ("read", 0), ("write", 0, 3), ("cas", 0, 2, 4), ("cas", 0, 3, 4), ("read", 0),
        ("read", 1), ("bogus",)])
    assert replies == [None, True, False, True, 4, None, ("error", "unknown_command")]
    assert machines.get(state, 0) == 4 and machines.get(state, 1) is None


def test_set() -> None:
    state, replies = _run(machines.Set(), [("add", 3), ("add", 1), ("add", 3), ("read",)])
    assert replies == [True, True, True, [1, 3]]
    assert machines.elements(state) == [1, 3]


def test_counter() -> None:
    state, replies = _run(machines.Counter(), [("add", 1), ("add", 2), ("read",), ("add", True)])
    assert replies == [1, 3, 3, ("error", "unknown_command")]
    assert machines.total(state) == 3


def test_classify_argument_errors_fail_the_rest_is_unknown() -> None:
    assert classify(TypeError("not a term")) == "fail"
    assert classify(ra.InvalidConfig("k", 1, "no")) == "fail"
    assert classify(ra.Timeout("late")) == "info"
    assert classify(OSError("socket")) == "info"


def test_classify_uses_outcome_unknown_when_the_library_has_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    class OutcomeUnknown(ra.RaError):
        pass

    class Sent(OutcomeUnknown):
        pass

    monkeypatch.setattr(ra, "OutcomeUnknown", OutcomeUnknown, raising=False)
    assert classify(Sent("sent, then the callee died")) == "info"
    assert classify(ra.NodeDown("not delivered")) == "fail"
    assert classify(ra.NoProc("not delivered")) == "fail"
    assert classify(OSError("socket")) == "info"
