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

__all__ = ["Machine", "SimpleMachine", "ReleaseCursor", "apply_machine", "MACHINE_ERROR",
           "NONDETERMINISTIC", "machine_error"]

#: the reply that stands for "apply raised": ``(MACHINE_ERROR, exception type, message)``
MACHINE_ERROR = "$ra_machine_error"
#: exceptions from ``apply`` that may not happen on every member alike (memory, the machine's
#: own I/O, stack depth): they crash the server for its supervisor instead of being replied
NONDETERMINISTIC = (MemoryError, OSError, RecursionError)


def machine_error(reply: Any) -> tuple[str, str] | None:
    """``(type, message)`` if ``reply`` stands for an exception raised by ``apply``."""
    if type(reply) is tuple and len(reply) == 3 and reply[0] == MACHINE_ERROR:
        return reply[1], reply[2]
    return None


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
    """Call ``machine.apply`` and normalise its result to ``(state, reply, effects)``.

    An exception is deterministic (the same command on the same state raises on every
    member): the state stays as it was, there are no effects, and the reply is
    ``(MACHINE_ERROR, type, message)``, which the client raises as ``ra.MachineError``. The
    exceptions in :data:`NONDETERMINISTIC` propagate (the server crashes and is restarted)."""
    try:
        result = machine.apply(meta, command, state)
    except NONDETERMINISTIC:
        raise
    except Exception as e:
        return state, (MACHINE_ERROR, type(e).__name__, str(e)[:1000]), []
    if len(result) == 2:
        return result[0], result[1], []
    new_state, reply, effects = result
    if not isinstance(effects, list):
        effects = list(effects) if isinstance(effects, tuple) else [effects]
    return new_state, reply, effects
