"""ra for Python: RabbitMQ's multi-Raft consensus library as a multiprocess actor system.

Mirrors ra.erl. Module functions use this process's default :class:`Client`; a ``Client()`` of
your own owns its own mailbox and has the same methods. See README.md for the mapping of every
ra function to its Python form.
"""
from __future__ import annotations

import inspect
from typing import Any

from ra.core.machine import Machine, ReleaseCursor, SimpleMachine
from ra.core.types import ServerId
from ra.errors import (
    AlreadyStarted, ClusterNotFormed, InvalidConfig, MachineError, MachineLoadError,
    NameNotRegistered, NodeDown, NodeLost, NoProc, NotFound, NotLeader, OutcomeUnknown,
    ProcessDied, RaError, SessionExpired, SystemNotStarted, Timeout,
)
from ra import effects
from ra.api import Client, MembershipError, RaEvent, default_client, new_uid

__all__ = [
    # values and errors
    "ServerId", "RaEvent", "Client", "Machine", "SimpleMachine", "ReleaseCursor",
    "RaError", "Timeout", "NoProc", "NodeDown", "NotLeader", "ClusterNotFormed", "NotFound",
    "NameNotRegistered", "AlreadyStarted", "SystemNotStarted", "InvalidConfig", "MachineLoadError",
    "MembershipError", "OutcomeUnknown", "ProcessDied", "NodeLost", "SessionExpired",
    "MachineError",
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


def start(**env: Any) -> str:
    """Start (or stop and restart) the local node daemon as a child of this process; return
    its address ``"host:port"`` (ra:start/1). See :func:`ra.node.start`."""
    from ra import node   # lazy: the supervisor package imports ra.errors, and ra.node it
    return node.start(**env)


def start_in(data_dir: str) -> str:
    """``start(data_dir=data_dir)`` (ra:start_in/1)."""
    return start(data_dir=data_dir)


def stop_nodes(timeout: float = 30.0) -> None:
    """Stop every node daemon this process started (orderly, SIGTERM)."""
    from ra import node
    node.stop(timeout)


def _delegate(name: str) -> Any:
    method = getattr(Client, name)

    def fn(*args: Any, **kwargs: Any) -> Any:
        return getattr(default_client(), name)(*args, **kwargs)

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = method.__doc__
    sig = inspect.signature(method)
    fn.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=list(sig.parameters.values())[1:])
    return fn


overview = _delegate("overview")
start_server = _delegate("start_server")
restart_server = _delegate("restart_server")
stop_server = _delegate("stop_server")
force_delete_server = _delegate("force_delete_server")
start_cluster = _delegate("start_cluster")
start_or_restart_cluster = _delegate("start_or_restart_cluster")
delete_cluster = _delegate("delete_cluster")
trigger_election = _delegate("trigger_election")
transfer_leadership = _delegate("transfer_leadership")
ping = _delegate("ping")
aux_command = _delegate("aux_command")
cast_aux_command = _delegate("cast_aux_command")
key_metrics = _delegate("key_metrics")
members = _delegate("members")
members_info = _delegate("members_info")
initial_members = _delegate("initial_members")
add_member = _delegate("add_member")
remove_member = _delegate("remove_member")
leave_and_terminate = _delegate("leave_and_terminate")
leave_and_delete_server = _delegate("leave_and_delete_server")
process_command = _delegate("process_command")
pipeline_command = _delegate("pipeline_command")
receive = _delegate("receive")
local_query = _delegate("local_query")
leader_query = _delegate("leader_query")
consistent_query = _delegate("consistent_query")
