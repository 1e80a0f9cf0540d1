"""No ra equivalent (Jepsen's test state machines): the machines ``ra check`` runs.

Three deterministic machines, each a class with ``init(config)`` and ``apply(meta, command,
state) -> (state, reply)``; they are named by import path (``"ra.check.machines:Register"``)
because every server process imports them itself. Their replies depend only on the command and
the state, never on the clock or on which member applies them.

``Register`` (a key-value register, Jepsen's ``register`` workload)
    ``("write", k, v)`` -> ``True``; ``("cas", k, old, new)`` -> ``True`` if the value was
    ``old`` (it is now ``new``), else ``False`` (nothing changed); ``("read", k)`` -> the value
    (``None`` when unset). A read *command* goes through the log like a write.
``Set`` (Jepsen's ``set``)
    ``("add", e)`` -> ``True``; ``("read",)`` -> the sorted list of elements.
``Counter`` (Jepsen's ``counter``)
    ``("add", n)`` -> the new total; ``("read",)`` -> the total.

Any other command leaves the state alone and replies ``("error", "unknown_command")``.

The top-level query functions run on a member's state through ``ra.consistent_query`` /
``ra.local_query`` / ``ra.leader_query``: ``get`` as the triple
``("ra.check.machines", "get", [k])``, ``elements`` and ``total`` as
``"ra.check.machines:elements"`` / ``"ra.check.machines:total"``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Register", "Set", "Counter", "get", "elements", "total", "MACHINES"]

_UNKNOWN = ("error", "unknown_command")


class Register:
    """A key-value register; state ``{key: value}`` (a new dict per write: states are small)."""

    def init(self, config: Any) -> dict[Any, Any]:
        return {}

    def apply(self, meta: dict[str, Any], cmd: Any,
              state: dict[Any, Any]) -> tuple[dict[Any, Any], Any]:
        match cmd:
            case ("write", k, v):
                return {**state, k: v}, True
            case ("cas", k, old, new):
                if state.get(k) != old:
                    return state, False
                return {**state, k: new}, True
            case ("read", k):
                return state, state.get(k)
        return state, _UNKNOWN


class Set:
    """A set of elements; state a ``set`` updated in place (it is only ever read by this
    server's own queries, and a copy per add would make a run quadratic)."""

    def init(self, config: Any) -> set[Any]:
        return set()

    def apply(self, meta: dict[str, Any], cmd: Any, state: set[Any]) -> tuple[set[Any], Any]:
        match cmd:
            case ("add", e):
                state.add(e)
                return state, True
            case ("read",):
                return state, elements(state)
        return state, _UNKNOWN


class Counter:
    """An integer counter; state the total."""

    def init(self, config: Any) -> int:
        return 0

    def apply(self, meta: dict[str, Any], cmd: Any, state: int) -> tuple[int, Any]:
        match cmd:
            case ("add", int(n)) if not isinstance(n, bool):
                return state + n, state + n
            case ("read",):
                return state, state
        return state, _UNKNOWN


def get(state: dict[Any, Any], key: Any) -> Any:
    """Query: the register's value at ``key`` (``None`` when unset)."""
    return state.get(key)


def elements(state: set[Any]) -> list[Any]:
    """Query: the set's elements, sorted."""
    return sorted(state)


def total(state: int) -> int:
    """Query: the counter's total."""
    return state


#: workload name -> the machine config for ``ra.start_cluster``
MACHINES: dict[str, tuple[str, str, None]] = {
    "register": ("module", "ra.check.machines:Register", None),
    "set": ("module", "ra.check.machines:Set", None),
    "counter": ("module", "ra.check.machines:Counter", None),
}
