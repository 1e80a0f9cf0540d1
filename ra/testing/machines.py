"""Small machines for tests, benchmarks and the docs. No ra equivalent (ra's test machines).

They live in an importable module because machines are imported inside each server process.
"""
from __future__ import annotations

from typing import Any

from ra.core.machine import ReleaseCursor

__all__ = ["Counter", "KV", "Checkpointing", "add", "get_state", "get_key", "crash_on"]


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


class Checkpointing:
    """A counter in ra's checkpoint pattern (ra 2.10+): every ``checkpoint_every`` commands
    (config) it asks every member for a checkpoint of its state, which keeps the log; the
    command ``"promote"`` says the log up to its index is no longer needed, without a state, so
    that the newest checkpoint at or below it becomes the snapshot. State ``(total, commands,
    every)``: ``every`` lives in the state because ``init`` is not called again on a restart
    from a checkpoint or snapshot."""

    def init(self, config: Any) -> tuple[int, int, int]:
        return (0, 0, int((config or {}).get("checkpoint_every", 0)))

    def apply(self, meta: dict[str, Any], cmd: Any, state: tuple[int, int, int]) -> tuple[Any, ...]:
        from ra import effects as fx
        idx = meta["index"]
        if cmd == "promote":
            return state, idx, [fx.release_cursor(idx)]
        if not isinstance(cmd, int):
            return state, ("error", "not_an_int")
        total, n, every = state
        new = (total + cmd, n + 1, every)
        if every and new[1] % every == 0:
            return new, new[0], [fx.checkpoint(idx, new)]
        return new, new[0]


def add(cmd: Any, state: int) -> int:
    """A ``("simple", "ra.testing.machines:add", 0)`` machine: sums commands."""
    return state + cmd


def get_state(state: Any) -> Any:
    """Query function: the whole state."""
    return state


def big(state: Any, n: int) -> bytes:
    """Query function: ``n`` bytes, whatever the state (a reply too large for a frame)."""
    return b"x" * n


def get_key(state: dict[Any, Any], key: Any) -> Any:
    """Query function with an argument: ``("ra.testing.machines", "get_key", [k])``."""
    return state.get(key)


def write_file(path: str, text: str) -> None:
    """A ``mod_call`` target: appends ``text`` and this process's pid to ``path``."""
    import os
    with open(path, "a") as f:
        f.write(f"{text} {os.getpid()}\n")


def crash_on(state: Any) -> Any:
    """Query function that raises."""
    raise ValueError("query crashed on purpose")


class Effects:
    """A machine that exercises every effect (↔ ra_machine_int_SUITE's test machines).

    State: ``{"events": [...], "monitors": [...], "nodes": [...], "timers": {...}}``. Config:
    ``{"watcher": addr}``: every role change is reported there with ``send_msg``.
    """

    def __init__(self) -> None:
        self.watcher: Any = None

    def init(self, config: Any) -> dict[str, Any]:
        self.watcher = (config or {}).get("watcher")
        return {"events": [], "monitors": [], "nodes": [], "timers": {}}

    def _ev(self, state: dict[str, Any], ev: Any) -> dict[str, Any]:
        new = dict(state)
        new["events"] = state["events"] + [ev]
        return new

    def apply(self, meta: dict[str, Any], cmd: Any, state: dict[str, Any]) -> tuple[Any, ...]:
        from ra import effects as fx
        op = cmd[0]
        if op == "send":
            return state, "ok", [fx.send_msg(cmd[1], cmd[2])]
        if op == "send_event":
            return state, "ok", [fx.send_msg(cmd[1], cmd[2], "ra_event")]
        if op == "monitor":
            new = dict(state, monitors=state["monitors"] + [cmd[1]])
            return new, "ok", [fx.monitor("process", cmd[1])]
        if op == "monitor_node":
            new = dict(state, nodes=state["nodes"] + [cmd[1]])
            return new, "ok", [fx.monitor("node", cmd[1])]
        if op in ("down", "nodedown", "nodeup", "timeout"):
            return self._ev(state, cmd), "ok"
        if op == "set_timer":
            new = dict(state, timers=dict(state["timers"], **{cmd[1]: cmd[2]}))
            return new, "ok", [fx.timer(cmd[1], cmd[2])]
        if op == "read_log":
            to = cmd[2]
            return state, "ok", [fx.log(cmd[1], lambda cmds: [fx.send_msg(to, ("log", cmds))])]
        if op == "snapshot":
            return state, "ok", [fx.release_cursor(meta["index"], state)]
        if op == "mod_call":            # ("mod_call", path, text): the leader writes a file
            return state, "ok", [fx.mod_call("ra.testing.machines:write_file",
                                             [cmd[1], cmd[2]])]
        if op == "crash":
            # an I/O failure of the machine's own is not taken as deterministic: the server
            # crashes and its supervisor restarts it
            raise OSError("this machine's own I/O fails on purpose")
        if op == "bad_effect":
            # ("bad_effect", which): a buggy machine returns a malformed effect beside a good
            # one; every member applies the command as a no-op and the caller gets
            # ra.MachineError (the state change below never happens)
            bad = {"arity": ("send_msg", "to"), "type": ("timer", "t", "soon"),
                   "unknown": ("bogus", 1), "not_an_effect": 42}[cmd[1]]
            return self._ev(state, cmd), "ok", [fx.aux("count"), bad]
        if op == "fail":
            # any other exception is deterministic: every member applies it as a no-op and
            # the caller gets ra.MachineError
            raise ValueError(f"this machine refuses {cmd[1]!r}")
        return self._ev(state, ("cmd", cmd)), "ok"

    def state_enter(self, role: str, state: dict[str, Any]) -> list[Any]:
        from ra import effects as fx
        out: list[Any] = []
        if self.watcher:
            out.append(fx.send_msg(self.watcher, ("state_enter", role)))
        if role == "leader":   # monitors and timers belong to the leader: re-create them
            out += [fx.monitor("process", p) for p in state["monitors"]]
            out += [fx.monitor("node", n) for n in state["nodes"]]
            out += [fx.timer(n, ms) for n, ms in state["timers"].items()
                    if ("timeout", n) not in state["events"]]
        return out

    def init_aux(self, name: str) -> int:
        return 0

    def handle_aux(self, role: str, kind: str, cmd: Any, aux: int,
                   state: dict[str, Any]) -> tuple[Any, ...]:
        if cmd == "count":
            return ("reply", (role, aux + 1), aux + 1) if kind == "call" else ("no_reply",
                                                                                aux + 1)
        if cmd == "peek":
            return ("reply", aux, aux)
        return ("no_reply", aux)

    def overview(self, state: dict[str, Any]) -> dict[str, Any]:
        return {"events": len(state["events"]), "monitors": len(state["monitors"])}


class Versioned1:
    """Machine version 1 of a counter; ``which_module`` knows versions 0 and 1."""

    def init(self, config: Any) -> tuple[int, int]:
        return (0, 0)

    def version(self) -> int:
        return 1

    def which_module(self, v: int) -> Any:
        return {0: Versioned0, 1: Versioned1}[v]

    def apply(self, meta: dict[str, Any], cmd: Any, state: tuple[int, int]) -> tuple[Any, ...]:
        total, _ = state
        if isinstance(cmd, tuple) and cmd[0] == "machine_version":
            return (total, meta["index"]), ("upgraded", cmd[1], cmd[2])
        return (total + 10 * cmd, state[1]), ("v1", meta["machine_version"])


class Versioned0(Versioned1):
    def version(self) -> int:
        return 0

    def apply(self, meta: dict[str, Any], cmd: Any, state: tuple[int, int]) -> tuple[Any, ...]:
        return (state[0] + cmd, state[1]), ("v0", meta["machine_version"])


def get_events(state: dict[str, Any]) -> Any:
    return state["events"]
