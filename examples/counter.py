"""A replicated counter: the smallest useful ra machine.

Commands (submitted with ``ra.process_command`` / ``ra.pipeline_command``):

* ``("add", n)`` -- add the int ``n`` (negative to subtract); the reply is the new value;
* ``"reset"`` -- back to 0; the reply is the value it had.

Anything else is answered ``("error", "bad_command")`` and leaves the value alone (a machine
must never raise in ``apply``: that would crash its server on every member).

Query it with :func:`value`: ``ra.consistent_query(ids, "examples.counter:value")``.

Run ``python -m examples.counter`` for a walkthrough on three real node daemons.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Counter", "MACHINE", "value", "main"]


class Counter:
    """The machine: the state is an int."""

    def init(self, config: Any) -> int:
        """The initial value: ``config`` if it is an int, else 0."""
        return config if isinstance(config, int) and not isinstance(config, bool) else 0

    def apply(self, meta: dict[str, Any], command: Any, state: int) -> tuple[Any, Any]:
        """Apply one command; returns ``(new_state, reply)``."""
        if (isinstance(command, tuple) and len(command) == 2 and command[0] == "add"
                and isinstance(command[1], int) and not isinstance(command[1], bool)):
            new = state + command[1]
            return new, new
        if command == "reset":
            return 0, state
        return state, ("error", "bad_command")


#: The machine config to pass to ``ra.start_cluster``.
MACHINE = ("module", "examples.counter:Counter", 0)


def value(state: int) -> int:
    """Query function: the counter's value."""
    return state


def main() -> None:
    """Walkthrough: three daemons, a counter cluster, a few commands and queries."""
    import tempfile

    import ra
    from examples._nodes import LocalNodes, wait_for

    with tempfile.TemporaryDirectory(prefix="ra-counter-") as tmp, LocalNodes(tmp) as nodes:
        addrs = nodes.start_many(range(3))
        print(f"3 node daemons: {', '.join(addrs)}")
        ids = [nodes.sid("counter", i) for i in range(3)]
        started, _ = ra.start_cluster("counter", MACHINE, ids)
        print(f"cluster 'counter' started on {len(started)} members")
        for n in (5, 10, -3):
            reply, leader = ra.process_command(ids, ("add", n))
            print(f"add {n:>3} -> {reply}   (leader {leader.name}@{leader.node})")
        print(f"bad command -> {ra.process_command(ids, 'oops')[0]}")
        # the query function is named by import path: under ``python -m`` this module is
        # __main__, which a server process cannot import
        v, _ = ra.consistent_query(ids, "examples.counter:value")
        print(f"consistent query: {v}")
        for sid in ids:
            # a follower applies an entry once it learns of its commit (next append/heartbeat)
            wait_for(lambda: ra.local_query(sid, "examples.counter:value")[1] == v, 5.0,
                     f"{sid} to apply")
            print(f"local query on {sid.node}: {v}")
        nodes.stop_all()
        print(f"stopped; processes left: {len(nodes.leftovers())}")


if __name__ == "__main__":
    main()
