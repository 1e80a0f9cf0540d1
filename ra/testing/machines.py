"""Small machines for tests, benchmarks and the docs. No ra equivalent (ra's test machines).

They live in an importable module because machines are imported inside each server process.
"""
from __future__ import annotations

from typing import Any

from ra.core.machine import ReleaseCursor

__all__ = ["Counter", "KV", "add", "get_state", "get_key", "crash_on"]


class Counter:
    """A command is an int N: the state grows by N and the reply is the new total
    (the BENCH.md machine). ``("snapshot_every", n)`` as config releases a cursor every n."""

    def __init__(self) -> None:
        self.every = 0

    def init(self, config: Any) -> int:
        if isinstance(config, dict):
            self.every = int(config.get("snapshot_every", 0))
        return 0

    def apply(self, meta: dict[str, Any], cmd: Any, state: int) -> tuple[Any, ...]:
        if not isinstance(cmd, int):
            return state, ("error", "not_an_int")
        new = state + cmd
        if self.every and meta["index"] % self.every == 0:
            return new, new, [ReleaseCursor(meta["index"], new)]
        return new, new


class KV:
    """``("put", k, v)``, ``("get", k)``, ``("delete", k)`` on a dict state."""

    def init(self, config: Any) -> dict[Any, Any]:
        return {}

    def apply(self, meta: dict[str, Any], cmd: Any, state: dict[Any, Any]) -> tuple[Any, ...]:
        op = cmd[0]
        if op == "put":
            new = dict(state)
            new[cmd[1]] = cmd[2]
            return new, "ok"
        if op == "get":
            return state, state.get(cmd[1])
        if op == "delete":
            new = dict(state)
            new.pop(cmd[1], None)
            return new, "ok"
        return state, ("error", "unknown_op")


def add(cmd: Any, state: int) -> int:
    """A ``("simple", "ra.testing.machines:add", 0)`` machine: sums commands."""
    return state + cmd


def get_state(state: Any) -> Any:
    """Query function: the whole state."""
    return state


def get_key(state: dict[Any, Any], key: Any) -> Any:
    """Query function with an argument: ``("ra.testing.machines", "get_key", [k])``."""
    return state.get(key)


def crash_on(state: Any) -> Any:
    """Query function that raises."""
    raise ValueError("query crashed on purpose")
