"""Mirrors supervisor.erl: Erlang/OTP supervisor semantics for OS processes.

Pure parts: :mod:`supervisor.spec` (child specs, flags, check_childspecs) and
:mod:`supervisor.strategy` (restart plans). OS parts: :mod:`supervisor.child` (spawn, pidfd,
shutdown), :mod:`supervisor.forkserver` (preloaded spawner), :mod:`supervisor.loop` (the event
loop) and :mod:`supervisor.supervisor` (the supervisor object).

The functions below are OTP's module API over a :class:`Supervisor` object (OTP takes a pid or
name; here the object itself, since supervisors live in the caller's event loop).

This package imports nothing of ``ra``. Its classes are loaded on first use (PEP 562), so that
the pure modules (``supervisor.spec``, ``supervisor.strategy``) load no ZeroMQ.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ChildSpec": "supervisor.spec", "SupFlags": "supervisor.spec", "Exec": "supervisor.spec",
    "Fork": "supervisor.spec", "Nested": "supervisor.spec",
    "SupervisorError": "supervisor.spec", "check_childspecs": "supervisor.spec",
    "Supervisor": "supervisor.supervisor", "ChildInfo": "supervisor.supervisor",
    "StartError": "supervisor.supervisor", "Loop": "supervisor.loop",
    "ForkServer": "supervisor.forkserver",
}

if TYPE_CHECKING:
    from supervisor.forkserver import ForkServer
    from supervisor.loop import Loop
    from supervisor.spec import (
        ChildSpec, Exec, Fork, Nested, SupervisorError, SupFlags, check_childspecs,
    )
    from supervisor.supervisor import ChildInfo, StartError, Supervisor

__all__ = [
    "ChildSpec", "SupFlags", "Exec", "Fork", "Nested", "Supervisor", "ChildInfo", "Loop",
    "ForkServer", "SupervisorError", "StartError",
    "start_link", "start_child", "terminate_child", "restart_child", "delete_child",
    "which_children", "count_children", "check_childspecs",
]


def start_link(loop: Loop, flags: SupFlags, children: Sequence[ChildSpec] = (), *,
               name: Any = None, forkserver: ForkServer | None = None,
               on_exit: Callable[[str], None] | None = None) -> Supervisor:
    """Create a supervisor in ``loop`` and start its children in order (raises StartError)."""
    from supervisor.supervisor import Supervisor
    return Supervisor(loop, flags, children, name=name, forkserver=forkserver,
                      on_exit=on_exit).start()


def start_child(sup: Supervisor, spec_or_args: Any) -> int | None:
    """``supervisor:start_child/2``: a ChildSpec, or extra args for simple_one_for_one."""
    return sup.start_child(spec_or_args)


def terminate_child(sup: Supervisor, ref: Any) -> None:
    """``supervisor:terminate_child/2``: by id, or by pid for simple_one_for_one."""
    sup.terminate_child(ref)


def restart_child(sup: Supervisor, child_id: Any) -> int | None:
    """``supervisor:restart_child/2``."""
    return sup.restart_child(child_id)


def delete_child(sup: Supervisor, child_id: Any) -> None:
    """``supervisor:delete_child/2``."""
    sup.delete_child(child_id)


def which_children(sup: Supervisor) -> list[ChildInfo]:
    """``supervisor:which_children/1`` (start order)."""
    return sup.which_children()


def count_children(sup: Supervisor) -> dict[str, int]:
    """``supervisor:count_children/1``."""
    return sup.count_children()


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
