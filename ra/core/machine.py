"""State machines. Mirrors ra_machine.erl and ra_machine_simple.erl.

A machine is an object with ``init(config) -> state`` and
``apply(meta, command, state) -> (state, reply)`` or ``(state, reply, effects)``. ``meta`` is a
dict with ``index``, ``term``, ``system_time`` and ``machine_version``. Optional callbacks
(``state_enter``, ``tick``, ``overview``, ``version``...) are looked up with ``getattr``.
Machines must be deterministic: every member applies the same commands in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["Machine", "SimpleMachine", "ReleaseCursor", "apply_machine"]


@runtime_checkable
class Machine(Protocol):
    def init(self, config: Any) -> Any: ...

    def apply(self, meta: dict[str, Any], command: Any, state: Any) -> tuple[Any, ...]: ...


@dataclass(frozen=True, slots=True)
class ReleaseCursor:
    """Machine effect: everything up to ``index`` may be replaced by a snapshot of ``state``."""

    index: int
    state: Any


class SimpleMachine:
    """ra_machine_simple: ``fun(command, state) -> state``; the reply is the new state."""

    def __init__(self, fun: Callable[[Any, Any], Any], initial_state: Any) -> None:
        self._fun = fun
        self._initial = initial_state

    def init(self, config: Any) -> Any:
        return self._initial

    def apply(self, meta: dict[str, Any], command: Any, state: Any) -> tuple[Any, ...]:
        new_state = self._fun(command, state)
        return new_state, new_state


def apply_machine(machine: Any, meta: dict[str, Any], command: Any,
                  state: Any) -> tuple[Any, Any, list[Any]]:
    """Call ``machine.apply`` and normalise its result to ``(state, reply, effects)``."""
    result = machine.apply(meta, command, state)
    if len(result) == 2:
        return result[0], result[1], []
    new_state, reply, effects = result
    if not isinstance(effects, list):
        effects = list(effects) if isinstance(effects, tuple) else [effects]
    return new_state, reply, effects
