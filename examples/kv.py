"""A replicated key-value store with snapshots.

Commands (submitted with ``ra.process_command`` / ``ra.pipeline_command``):

* ``("put", key, value)`` -> ``"ok"``
* ``("get", key)`` -> the value, or ``None`` (a read through the log: linearizable, but costs a
  write; :func:`get` as a query function is the cheaper way, see below)
* ``("delete", key)`` -> ``True`` if the key was there, else ``False``
* ``("cas", key, expected, new)`` -> ``("ok", new)`` if the key's value was ``expected``
  (``None``: the key is absent) and is now ``new``; ``("mismatch", current)`` otherwise

Anything else is answered ``("error", "bad_command")``. Keys and values are any ra terms.

**Snapshots.** With ``config = {"snapshot_every": N}`` the machine returns
``ReleaseCursor(meta["index"], state)`` as an effect after every N applied commands: each member
then takes a snapshot of that state at that index and may drop the log entries below it; a member
that is far behind (or new) is brought up by ``install_snapshot`` instead of entry by entry.
The count of applied commands is part of the state, so every member snapshots at the same
indexes.

Queries (functions of the state, named by import path since they run in the server process):
``ra.consistent_query(ids, ("examples.kv", "get", [key]))``, ``"examples.kv:size"``,
``"examples.kv:items"``.

Run ``python -m examples.kv`` for a walkthrough on three real node daemons.
"""
from __future__ import annotations

from typing import Any

from ra import ReleaseCursor

__all__ = ["KV", "machine", "get", "size", "items", "main"]

#: State layout: ``{"data": {key: value}, "applied": n}`` (``applied``: commands applied so far,
#: the snapshot clock).
State = dict[str, Any]


class KV:
    """The machine. Never mutates a state it was given (a released state may still be held)."""

    def __init__(self) -> None:
        self.every = 0

    def init(self, config: Any) -> State:
        """``config``: ``None`` or ``{"snapshot_every": N}``."""
        if isinstance(config, dict):
            self.every = int(config.get("snapshot_every") or 0)
        return {"data": {}, "applied": 0}

    def apply(self, meta: dict[str, Any], command: Any, state: State) -> tuple[Any, ...]:
        """Apply one command: ``(state, reply)``, or ``(state, reply, [ReleaseCursor])``."""
        data: dict[Any, Any] = state["data"]
        new_data, reply = self._op(command, data)
        new: State = {"data": new_data, "applied": state["applied"] + 1}
        if self.every and new["applied"] % self.every == 0:
            return new, reply, [ReleaseCursor(meta["index"], new)]
        return new, reply

    @staticmethod
    def _op(cmd: Any, data: dict[Any, Any]) -> tuple[dict[Any, Any], Any]:
        if not isinstance(cmd, tuple) or not cmd:
            return data, ("error", "bad_command")
        op, n = cmd[0], len(cmd)
        if op == "put" and n == 3:
            new = dict(data)
            new[cmd[1]] = cmd[2]
            return new, "ok"
        if op == "get" and n == 2:
            return data, data.get(cmd[1])
        if op == "delete" and n == 2:
            if cmd[1] not in data:
                return data, False
            new = dict(data)
            del new[cmd[1]]
            return new, True
        if op == "cas" and n == 4:
            _, key, expected, value = cmd
            if data.get(key) != expected:
                return data, ("mismatch", data.get(key))
            new = dict(data)
            new[key] = value
            return new, ("ok", value)
        return data, ("error", "bad_command")


def machine(snapshot_every: int = 0) -> tuple[str, str, Any]:
    """The machine config to pass to ``ra.start_cluster``."""
    return ("module", "examples.kv:KV", {"snapshot_every": snapshot_every})


def get(state: State, key: Any) -> Any:
    """Query function: the value of ``key`` (``None`` if absent).
    Pass it as ``("examples.kv", "get", [key])``."""
    return state["data"].get(key)


def size(state: State) -> int:
    """Query function: the number of keys."""
    return len(state["data"])


def items(state: State) -> dict[Any, Any]:
    """Query function: the whole key-value map."""
    data: dict[Any, Any] = state["data"]
    return data


def main() -> None:
    """Walkthrough: three daemons, a KV cluster with snapshots every 20 commands."""
    import tempfile

    import ra
    from examples._nodes import LocalNodes, wait_for

    with tempfile.TemporaryDirectory(prefix="ra-kv-") as tmp, LocalNodes(tmp) as nodes:
        addrs = nodes.start_many(range(3))
        print(f"3 node daemons: {', '.join(addrs)}")
        ids = [nodes.sid("kv", i) for i in range(3)]
        ra.start_cluster("kv", machine(snapshot_every=20), ids)

        def do(cmd: Any) -> Any:
            reply, _ = ra.process_command(ids, cmd)
            print(f"{cmd!r:<40} -> {reply!r}")
            return reply

        do(("put", "colour", "red"))
        do(("get", "colour"))
        do(("cas", "colour", "blue", "green"))      # mismatch: it is red
        do(("cas", "colour", "red", "green"))
        do(("cas", "shape", None, "square"))        # None: create only if absent
        do(("delete", "shape"))
        do(("delete", "shape"))
        v, leader = ra.consistent_query(ids, ("examples.kv", "get", ["colour"]))
        print(f"consistent query get('colour') on {leader.node}: {v!r}")

        for i in range(40):
            ra.pipeline_command(leader, ("put", f"k{i}", i))
        n = wait_for(lambda: ra.consistent_query(ids, "examples.kv:size")[0] == 41 and 41,
                     what="40 pipelined puts")
        print(f"40 pipelined puts: {n} keys")
        snaps = {sid.node: wait_for(lambda: ra.key_metrics(sid)["snapshot_index"], 5.0,
                                    "a snapshot") for sid in ids}
        print("snapshot index per member: "
              + ", ".join(f"{node} {idx}" for node, idx in snaps.items()))
        nodes.stop_all()
        print(f"stopped; processes left: {len(nodes.leftovers())}")


if __name__ == "__main__":
    main()
