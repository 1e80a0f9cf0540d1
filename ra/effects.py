"""Machine effects, as a machine's ``apply`` (or ``state_enter``, ``tick``...) returns them.
Mirrors the effect types of ra_machine.erl.

These helpers build the typed effects of :mod:`ra.core.effects` (frozen dataclasses, checked
when built: a bad field raises :class:`InvalidEffect`). A machine may also return ra's tuple
spelling (``("send_msg", to, msg)``); the server reads both alike, and ``effect.as_tuple()``
gives a typed effect's tuple. A malformed effect returned by ``apply`` fails that command with
``ra.MachineError`` (type ``"InvalidEffect"``) on every member, as an exception would. Unless
noted they run on the leader only, and a new leader re-creates what it needs in
``state_enter("leader", state)``, as ra documents: monitors and timers belong to the leader
that set them.

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
``garbage_collection()``         every member runs a full garbage collection
================================ ===========================================================
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ra.core.effects import (
    Append, Aux, Checkpoint, Demonitor, GarbageCollection, InvalidEffect, Log, MachineEffect,
    ModCall, Monitor, PromoteCheckpoint, ReleaseCursor, SendMsg, Timer,
)

__all__ = ["send_msg", "monitor", "demonitor", "mod_call", "timer", "log", "release_cursor",
           "checkpoint", "aux", "append", "garbage_collection", "ReleaseCursor",
           "SendMsg", "Monitor", "Demonitor", "ModCall", "Timer", "Log", "PromoteCheckpoint",
           "Checkpoint", "Aux", "Append", "GarbageCollection", "MachineEffect", "InvalidEffect"]


def send_msg(to: str, msg: Any, *options: str) -> SendMsg:
    return SendMsg(to, msg, options)


def monitor(kind: str, target: str) -> Monitor:
    return Monitor(kind, target)


def demonitor(kind: str, target: str) -> Demonitor:
    return Demonitor(kind, target)


def mod_call(path: str, args: Sequence[Any] = ()) -> ModCall:
    return ModCall(path, tuple(args))


def timer(name: Any, ms: int | None) -> Timer:
    return Timer(name, None if ms == "infinity" else ms)


def log(indexes: Sequence[int], fun: Callable[[list[Any]], Any]) -> Log:
    return Log(tuple(indexes), fun)


#: ``release_cursor``'s "no state given" (``None`` is a valid machine state)
_NO_STATE: Any = object()


def release_cursor(index: int, state: Any = _NO_STATE) -> ReleaseCursor | PromoteCheckpoint:
    """With ``state``: a snapshot of ``state`` as of ``index`` may replace the log up to it
    (ra's ``{release_cursor, Index, State}``). Without: the entries up to ``index`` are no
    longer needed and the newest checkpoint at or below ``index`` becomes the snapshot (ra's
    ``{release_cursor, Index}``); nothing happens on a member that holds no such checkpoint."""
    if state is _NO_STATE:
        return PromoteCheckpoint(index)
    return ReleaseCursor(index, state)


def checkpoint(index: int, state: Any) -> Checkpoint:
    """``state`` as of ``index`` is kept as a checkpoint on every member, without truncating
    the log (ra's ``{checkpoint, Index, State}``): a restart starts from it instead of
    replaying the log from the snapshot, and a later ``release_cursor(index)`` promotes it."""
    return Checkpoint(index, state)


def aux(cmd: Any) -> Aux:
    return Aux(cmd)


def append(cmd: Any, reply_mode: Any = None) -> Append:
    return Append(cmd, reply_mode)


def garbage_collection() -> GarbageCollection:
    return GarbageCollection()
