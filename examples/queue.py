"""A replicated FIFO queue with consumers: RabbitMQ's quorum-queue pattern in miniature.

The machine holds the messages and the consumers; the *effects* it returns do the talking:

* a consumer is a client mailbox address (``ra.Client().address``, ra's "pid");
  ``("checkout", pid, prefetch)`` registers it and the machine returns
  ``monitor("process", pid)``, so that if the consumer's process dies the leader appends
  ``("down", pid, "noproc")`` as a command: its unsettled messages go back to the head of the
  queue and on to the other consumers;
* messages go out as ``send_msg(pid, ("delivery", id, msg), "ra_event")`` effects: the consumer's
  ``Client.receive()`` gives ``RaEvent(leader, ("machine", ("delivery", id, msg)))``; at most
  ``prefetch`` messages are out to a consumer at a time, the consumers served in turn;
* ``("settle", pid, [ids])`` acknowledges messages (which frees prefetch room),
  ``("return", pid, [ids])`` gives them back, ``("cancel", pid)`` leaves (its unsettled messages
  are returned) and is demonitored;
* monitors belong to the leader that set them: on becoming leader, ``state_enter`` re-creates one
  per consumer (as a quorum queue does);
* when the queue is empty (nothing ready, nothing unsettled) the log behind it holds nothing of
  value: the machine returns ``ReleaseCursor(index, state)`` (at most every ``snapshot_every``
  commands, default 64), as quorum queues release their log when emptied.

Other commands: ``("enqueue", msg)`` -> ``("ok", id)``. Every command's reply is ``"ok"`` or
``("ok", ...)``, or ``("error", reason)``. Deliveries are sent by the leader when a command is
applied; a leader change loses the ones in flight, but a message leaves the queue only when
settled, so delivery is at least once (re-delivered after a ``down`` or ``return``).

Queries: :func:`depth` (messages waiting), :func:`consumers` (pid -> unsettled count),
:func:`stats`.

Run ``python -m examples.queue`` for a walkthrough (with ``-m``: run as a script, this file's
directory would go first on ``sys.path`` and shadow the standard library's ``queue``).
"""
from __future__ import annotations

from typing import Any

from ra import ReleaseCursor
from ra import effects as fx

__all__ = ["Queue", "machine", "depth", "consumers", "stats", "main"]

#: State layout (terms only): ``next_id``; ``ready``: ``[(id, msg), ...]`` oldest first;
#: ``consumers``: ``{pid: {"prefetch": n, "out": {id: msg}}}`` in turn order (the next to be
#: served first); ``since_release``: commands applied since the last release cursor.
State = dict[str, Any]


class Queue:
    """The machine. Never mutates a state it was given (a released state may still be held)."""

    def __init__(self) -> None:
        self.snapshot_every = 64

    def init(self, config: Any) -> State:
        """``config``: ``None`` or ``{"snapshot_every": N}`` (the least gap between snapshots)."""
        if isinstance(config, dict) and config.get("snapshot_every"):
            self.snapshot_every = int(config["snapshot_every"])
        return {"next_id": 1, "ready": [], "consumers": {}, "since_release": 0}

    # -- apply --------------------------------------------------------------------------------
    def apply(self, meta: dict[str, Any], command: Any, state: State) -> tuple[Any, Any, list[Any]]:
        """Apply one command: ``(state, reply, effects)``."""
        s: State = {"next_id": state["next_id"], "ready": list(state["ready"]),
                    "consumers": {p: {"prefetch": c["prefetch"], "out": dict(c["out"])}
                                  for p, c in state["consumers"].items()},
                    "since_release": state["since_release"] + 1}
        effects: list[Any] = []
        reply = self._command(command, s, effects)
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            return state, reply, []        # rejected: nothing changes
        effects += _deliver(s)
        if (not s["ready"] and not any(c["out"] for c in s["consumers"].values())
                and s["since_release"] >= self.snapshot_every):
            s["since_release"] = 0
            effects.append(ReleaseCursor(meta["index"], s))
        return s, reply, effects

    @staticmethod
    def _command(cmd: Any, s: State, effects: list[Any]) -> Any:
        if not isinstance(cmd, tuple) or not cmd:
            return ("error", "bad_command")
        op, n = cmd[0], len(cmd)
        cons = s["consumers"]
        if op == "enqueue" and n == 2:
            mid = s["next_id"]
            s["next_id"] = mid + 1
            s["ready"].append((mid, cmd[1]))
            return ("ok", mid)
        if op == "checkout" and n == 3 and isinstance(cmd[1], str) \
                and isinstance(cmd[2], int) and cmd[2] > 0:
            pid, prefetch = cmd[1], cmd[2]
            if pid in cons:
                cons[pid]["prefetch"] = prefetch
            else:
                cons[pid] = {"prefetch": prefetch, "out": {}}
                effects.append(fx.monitor("process", pid))
            return "ok"
        if op in ("settle", "return") and n == 3 and cmd[1] in cons:
            out = cons[cmd[1]]["out"]
            ids = [i for i in cmd[2] if i in out]
            if op == "return":
                _requeue(s, [(i, out[i]) for i in ids])
            for i in ids:
                del out[i]
            return ("ok", len(ids))
        if op == "cancel" and n == 2 and cmd[1] in cons:
            _requeue(s, list(cons.pop(cmd[1])["out"].items()))
            effects.append(fx.demonitor("process", cmd[1]))
            return "ok"
        if op == "down" and n == 3:
            # the consumer's process is gone (its mailbox refuses connections): hand its
            # unsettled messages to the others; a down for an unknown pid is a no-op
            c = cons.pop(cmd[1], None)
            if c is not None:
                _requeue(s, list(c["out"].items()))
            return "ok"
        return ("error", "bad_command")

    # -- other callbacks ----------------------------------------------------------------------
    def state_enter(self, role: str, state: State) -> list[Any]:
        """A new leader monitors every consumer again (monitors belong to the leader)."""
        if role == "leader":
            return [fx.monitor("process", pid) for pid in state["consumers"]]
        return []

    def overview(self, state: State) -> dict[str, Any]:
        """What ``ra overview`` shows of this machine."""
        return stats(state)


def _requeue(s: State, msgs: list[tuple[int, Any]]) -> None:
    """Put messages back in id order: returned ones are older than those still waiting."""
    if msgs:
        s["ready"] = sorted(s["ready"] + [tuple(m) for m in msgs], key=lambda m: m[0])


def _deliver(s: State) -> list[Any]:
    """Hand ready messages to consumers with prefetch room, one each in turn. A consumer
    served goes to the back of the turn order (dict order is part of the state)."""
    effects: list[Any] = []
    cons = s["consumers"]
    while s["ready"]:
        pid = next((p for p, c in cons.items() if len(c["out"]) < c["prefetch"]), None)
        if pid is None:
            break
        mid, msg = s["ready"].pop(0)
        c = cons.pop(pid)
        c["out"][mid] = msg
        cons[pid] = c
        effects.append(fx.send_msg(pid, ("delivery", mid, msg), "ra_event"))
    return effects


def machine(snapshot_every: int = 64) -> tuple[str, str, Any]:
    """The machine config to pass to ``ra.start_cluster``."""
    return ("module", "examples.queue:Queue", {"snapshot_every": snapshot_every})


def depth(state: State) -> int:
    """Query function: messages waiting for a consumer."""
    return len(state["ready"])


def consumers(state: State) -> dict[str, int]:
    """Query function: each consumer's number of unsettled messages."""
    return {p: len(c["out"]) for p, c in state["consumers"].items()}


def stats(state: State) -> dict[str, Any]:
    """Query function: ready and unsettled counts, consumers, the next message id."""
    return {"ready": len(state["ready"]),
            "unsettled": sum(len(c["out"]) for c in state["consumers"].values()),
            "consumers": len(state["consumers"]), "next_id": state["next_id"]}


# --- walkthrough -------------------------------------------------------------------------------

#: A consumer in a process of its own: checks out with prefetch 2, prints what it receives,
#: never settles (so that its messages are stuck with it until it dies).
_CONSUMER = """
import sys, ra
c = ra.Client()
ids = [ra.ServerId(sys.argv[1], a) for a in sys.argv[2:]]
c.process_command(ids, ("checkout", c.address, 2), timeout=10)
print(c.address, flush=True)
while True:
    _, (_, mid, msg) = c.receive().event      # ("machine", ("delivery", id, msg))
    print(mid, msg, flush=True)
"""


def main() -> None:
    """Walkthrough: two consumers, one in a process that is SIGKILLed with messages unsettled."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    import ra
    from examples._nodes import LocalNodes

    with tempfile.TemporaryDirectory(prefix="ra-queue-") as tmp, LocalNodes(tmp) as nodes:
        addrs = nodes.start_many(range(3))
        print(f"3 node daemons: {', '.join(addrs)}")
        ids = [nodes.sid("q", i) for i in range(3)]
        ra.start_cluster("q", machine(), ids, timeout=30)
        other = subprocess.Popen([sys.executable, "-c", _CONSUMER, "q", *addrs],
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None
            b = other.stdout.readline().strip()
            with ra.Client() as a:
                ra.process_command(ids, ("checkout", a.address, 10))
                print(f"consumer A {a.address} (this process, prefetch 10), "
                      f"consumer B {b} (pid {other.pid}, prefetch 2, never settles)")
                for i in range(6):
                    ra.process_command(ids, ("enqueue", f"m{i}"))
                def take(n: int) -> list[tuple[int, Any]]:
                    return [a.receive(timeout=10).event[1][1:] for _ in range(n)]

                got_b = [(int(m), msg) for m, msg in
                         (other.stdout.readline().split() for _ in range(2))]
                got_a = take(4)
                print(f"6 enqueued, delivered in turn: A got {got_a}, B got {got_b}")
                unsettled = ra.consistent_query(ids, "examples.queue:consumers")[0]
                print(f"unsettled per consumer: {unsettled}")
                os.kill(other.pid, signal.SIGKILL)
                other.wait()
                again = take(2)
                print(f"B SIGKILLed: the leader saw its mailbox gone, appended ('down', B, "
                      f"'noproc'), and B's messages went to A: {again}")
                done = [mid for mid, _ in got_a + again]
                ra.process_command(ids, ("settle", a.address, done))
                st = ra.consistent_query(ids, "examples.queue:stats")[0]
                print(f"A settled all {len(done)}: {st}")
        finally:
            if other.poll() is None:
                other.kill()
                other.wait()
        nodes.stop_all()
        print(f"stopped; processes left: {len(nodes.leftovers())}")


if __name__ == "__main__":
    main()
