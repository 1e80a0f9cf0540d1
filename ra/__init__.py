"""ra for Python: RabbitMQ's multi-Raft consensus library as a multiprocess actor system.

Mirrors ra.erl. Module functions use this process's default :class:`Client`; a ``Client()`` of
your own owns its own mailbox and has the same methods. See README.md for the mapping of every
ra function to its Python form.

Importing ``ra`` loads nothing else: every public name is resolved on first use (PEP 562), so
``import ra.core.server`` stays free of ZeroMQ and sockets and ``import ra.check.checkers`` of the
transport (tests/test_boundaries.py). ``from ra import X``, ``ra.X`` and ``from ra import *``
work as if the names were defined here.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    # values and errors
    "ServerId", "RaEvent", "Client", "Machine", "SimpleMachine", "ReleaseCursor",
    "RaError", "Timeout", "NoProc", "NodeDown", "NotLeader", "ClusterNotFormed", "NotFound",
    "NameNotRegistered", "AlreadyStarted", "SystemNotStarted", "InvalidConfig", "MachineLoadError",
    "MembershipError", "OutcomeUnknown", "ProcessDied", "NodeLost", "SessionExpired",
    "MachineError", "BadRequest", "BadReply", "QueryError", "CommandTooLarge",
    # nodes
    "start", "start_in", "stop_nodes", "overview", "new_uid",
    # servers and clusters
    "start_server", "restart_server", "stop_server", "force_delete_server", "start_cluster",
    "start_or_restart_cluster", "delete_cluster", "trigger_election", "transfer_leadership",
    "ping", "key_metrics", "aux_command", "cast_aux_command", "effects",
    # membership
    "members", "members_info", "initial_members", "add_member", "remove_member", "leave_and_terminate",
    "leave_and_delete_server",
    # commands and queries
    "process_command", "pipeline_command", "receive", "local_query", "leader_query",
    "consistent_query",
]

_ERRORS = ("RaError", "Timeout", "NoProc", "NodeDown", "NotLeader", "ClusterNotFormed",
           "NotFound", "NameNotRegistered", "AlreadyStarted", "SystemNotStarted",
           "InvalidConfig", "OutcomeUnknown", "ProcessDied", "NodeLost", "SessionExpired",
           "MachineError", "MachineLoadError", "BadRequest", "BadReply", "QueryError",
           "CommandTooLarge")
#: name -> the module that defines it
_WHERE: dict[str, str] = {
    **{e: "ra.errors" for e in _ERRORS},
    "ServerId": "ra.core.types",
    "Machine": "ra.core.machine", "SimpleMachine": "ra.core.machine",
    "ReleaseCursor": "ra.core.machine",
    "Client": "ra.client.api", "MembershipError": "ra.client.api", "RaEvent": "ra.client.api",
    "default_client": "ra.client.api", "new_uid": "ra.client.api",
}
#: module functions that call the same method of this process's default Client
_DELEGATES = (
    "overview", "start_server", "restart_server", "stop_server", "force_delete_server",
    "start_cluster", "start_or_restart_cluster", "delete_cluster", "trigger_election",
    "transfer_leadership", "ping", "aux_command", "cast_aux_command", "key_metrics", "members",
    "members_info", "initial_members", "add_member", "remove_member", "leave_and_terminate",
    "leave_and_delete_server", "process_command", "pipeline_command", "receive", "local_query",
    "leader_query", "consistent_query",
)

if TYPE_CHECKING:
    from ra import effects
    from ra.client.api import Client, MembershipError, RaEvent, new_uid
    from ra.client.api import default_client as default_client  # public, not in __all__
    from ra.core.machine import Machine, ReleaseCursor, SimpleMachine
    from ra.core.types import ServerId
    from ra.errors import (
        AlreadyStarted, BadReply, BadRequest, ClusterNotFormed, CommandTooLarge, InvalidConfig,
        MachineError,
        MachineLoadError, NameNotRegistered, NodeDown, NodeLost, NoProc, NotFound, NotLeader,
        OutcomeUnknown, ProcessDied, QueryError, RaError, SessionExpired, SystemNotStarted,
        Timeout,
    )


def start(**env: Any) -> str:
    """Start the node daemon of ``data_dir`` as a child of this process (restart it if this
    process started it before; other data dirs' nodes keep running); return its address
    ``"host:port"`` (ra:start/1). See :func:`ra.node.start`."""
    from ra.node import daemon as node   # on use: the daemon's modules are not needed to import ra
    return node.start(**env)


def start_in(data_dir: str) -> str:
    """``start(data_dir=data_dir)`` (ra:start_in/1)."""
    return start(data_dir=data_dir)


def stop_nodes(timeout: float = 30.0) -> None:
    """Stop every node daemon this process started (orderly, SIGTERM)."""
    from ra.node import daemon as node
    node.stop(timeout)


def _delegate(name: str) -> Any:
    import inspect

    from ra.client.api import Client, default_client
    method = getattr(Client, name)

    def fn(*args: Any, **kwargs: Any) -> Any:
        return getattr(default_client(), name)(*args, **kwargs)

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__module__ = __name__
    fn.__doc__ = method.__doc__
    sig = inspect.signature(method)
    fn.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=list(sig.parameters.values())[1:])
    return fn


def __getattr__(name: str) -> Any:
    """PEP 562: resolve a public name (or a submodule, ``ra.effects``...) on first use and keep
    it, so that the next access is a plain attribute."""
    where = _WHERE.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where), name)
    elif name in _DELEGATES:
        value = _delegate(name)
    elif name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
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
    return sorted(set(globals()) | set(__all__) | set(_WHERE))
