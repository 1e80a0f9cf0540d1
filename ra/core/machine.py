"""State machines. Mirrors ra_machine.erl and ra_machine_simple.erl.

A machine is an object with ``init(config) -> state`` and
``apply(meta, command, state) -> (state, reply)`` or ``(state, reply, effects)``. ``meta`` is a
dict with ``index``, ``term``, ``system_time`` and ``machine_version``. Optional callbacks
(``state_enter``, ``tick``, ``overview``, ``version``...) are looked up with ``getattr``.
Machines must be deterministic: every member applies the same commands in the same order.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ra.core.effects import InvalidEffect, ReleaseCursor, machine_effects

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
    """Call ``machine.apply`` and normalise its result to ``(state, reply, effects)``, the
    effects typed (``ra.core.effects.machine_effects``: ra-style tuples are accepted).

    An exception is deterministic (the same command on the same state raises on every
    member): the state stays as it was, there are no effects, and the reply is
    ``(MACHINE_ERROR, type, message)``, which the client raises as ``ra.MachineError``. The
    exceptions in :data:`NONDETERMINISTIC` propagate (the server crashes and is restarted).
    A result that is not ``(state, reply[, effects])``, or holds a malformed effect, is a bug
    of the machine's as deterministic as an exception, and handled as one (type
    ``"InvalidEffect"`` for an effect): no state change is half-applied with some of its
    effects lost."""
    try:
        result = machine.apply(meta, command, state)
    except NONDETERMINISTIC:
        raise
    except Exception as e:
        return state, (MACHINE_ERROR, type(e).__name__, str(e)[:1000]), []
    n = len(result) if type(result) in (tuple, list) else 0
    if n == 2:
        return result[0], result[1], []
    if n != 3:
        why = f"apply must return (state, reply) or (state, reply, effects), not {result!r}"
        return state, (MACHINE_ERROR, "InvalidResult", why[:1000]), []
    new_state, reply, effects = result
    if not effects:
        return new_state, reply, []
    try:
        return new_state, reply, machine_effects(effects)
    except InvalidEffect as e:
        return state, (MACHINE_ERROR, "InvalidEffect", str(e)[:1000]), []
