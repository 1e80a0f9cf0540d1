"""Machine effects, as a machine's ``apply`` (or ``state_enter``, ``tick``...) returns them.
Mirrors the effect types of ra_machine.erl.

Effects are plain tuples (so they are terms); these helpers build them. Unless noted they run on
the leader only, and a new leader re-creates what it needs in ``state_enter("leader", state)``,
as ra documents: monitors and timers belong to the leader that set them.

================================ ===========================================================
``send_msg(to, msg, *opts)``     cast ``msg`` to a client mailbox address (``Client.address``);
                                 with ``"ra_event"`` it arrives as
                                 ``RaEvent(leader, ("machine", msg))``
``monitor("process", pid)``      the machine later gets ``("down", pid, "noproc")`` as a
                                 command when that client's mailbox is gone
``monitor("node", node)``        ... ``("nodedown", node)`` / ``("nodeup", node)``
``demonitor(kind, target)``      stop monitoring
``mod_call("pkg.mod:f", args)``  call ``f(*args)`` in the leader's process
``timer(name, ms)``              after ``ms`` the machine gets ``("timeout", name)``;
                                 ``ms=None`` cancels
``log(indexes, fun)``            read the commands at ``indexes`` back; ``fun(commands)``
                                 returns more effects
``release_cursor(index, state)`` every member snapshots ``state`` at ``index`` and may drop
                                 the log up to it
``release_cursor(index)``        no state: every member promotes its newest checkpoint at or
                                 below ``index`` to be the snapshot (then as above)
``checkpoint(index, state)``     every member stores ``state`` at ``index`` as a checkpoint: the
                                 log is kept; a restart recovers from the newest checkpoint or
                                 snapshot and replays only what follows it
``aux(cmd)``                     every member calls ``handle_aux(role, "cast", cmd, ...)``
``append(cmd, reply_mode=None)`` the leader appends ``cmd`` as a new command
================================ ===========================================================
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ra.core.machine import ReleaseCursor

__all__ = ["send_msg", "monitor", "demonitor", "mod_call", "timer", "log", "release_cursor",
           "checkpoint", "aux", "append", "garbage_collection", "ReleaseCursor"]


def send_msg(to: str, msg: Any, *options: str) -> tuple[Any, ...]:
    return ("send_msg", to, msg, tuple(options)) if options else ("send_msg", to, msg)


def monitor(kind: str, target: Any) -> tuple[Any, ...]:
    if kind not in ("process", "node"):
        raise ValueError(f"monitor kind must be 'process' or 'node', not {kind!r}")
    return ("monitor", kind, target)


def demonitor(kind: str, target: Any) -> tuple[Any, ...]:
    if kind not in ("process", "node"):
        raise ValueError(f"demonitor kind must be 'process' or 'node', not {kind!r}")
    return ("demonitor", kind, target)


def mod_call(path: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
    return ("mod_call", path, list(args))


def timer(name: Any, ms: int | None) -> tuple[Any, ...]:
    return ("timer", name, ms)


def log(indexes: Sequence[int], fun: Callable[[list[Any]], Any]) -> tuple[Any, ...]:
    return ("log", list(indexes), fun)


#: ``release_cursor``'s "no state given" (``None`` is a valid machine state)
_NO_STATE: Any = object()


def release_cursor(index: int, state: Any = _NO_STATE) -> tuple[Any, ...]:
    """With ``state``: a snapshot of ``state`` as of ``index`` may replace the log up to it
    (ra's ``{release_cursor, Index, State}``). Without: the entries up to ``index`` are no
    longer needed and the newest checkpoint at or below ``index`` becomes the snapshot (ra's
    ``{release_cursor, Index}``); nothing happens on a member that holds no such checkpoint."""
    if state is _NO_STATE:
        return ("release_cursor", index)
    return ("release_cursor", index, state)


def checkpoint(index: int, state: Any) -> tuple[Any, ...]:
    """``state`` as of ``index`` is kept as a checkpoint on every member, without truncating
    the log (ra's ``{checkpoint, Index, State}``): a restart starts from it instead of
    replaying the log from the snapshot, and a later ``release_cursor(index)`` promotes it."""
    return ("checkpoint", index, state)


def aux(cmd: Any) -> tuple[Any, ...]:
    return ("aux", cmd)


def append(cmd: Any, reply_mode: Any = None) -> tuple[Any, ...]:
    return ("append", cmd) if reply_mode is None else ("append", cmd, reply_mode)


def garbage_collection() -> tuple[Any, ...]:
    return ("garbage_collection",)
