"""Core value types. Mirrors the types of ra.hrl.

Entries on the hot path are plain tuples ``(index, term, command)``: an object per entry costs
measurably in Python. Commands stored in the log are tuples tagged by their first element:

* ``("usr", cmd, reply_mode, ts)``  a machine command; ``ts`` is the system time in ms the shell
  stamped when the leader received it (the core reads no clock);
* ``("noop", machine_version)``    appended by every new leader;
* ``("cluster", members, reply_mode)``  a membership change, ``members`` a tuple of server ids;
* ``("eol", reply_mode)``          the cluster's end of life (``delete_cluster``): every member
  that applies it deletes itself, the leader last.

``reply_mode`` is ``("await", From)`` (reply after apply), ``("notify", corr, pid)`` (batched
``applied`` event to ``pid``) or ``None``.
"""
from __future__ import annotations

from typing import Any, Literal, NamedTuple

__all__ = ["ServerId", "Index", "Term", "Entry", "Role", "ROLES"]

Index = int
Term = int
Entry = tuple[int, int, Any]  # (index, term, command)

Role = Literal["follower", "pre_vote", "candidate", "leader", "receive_snapshot", "await_condition"]
ROLES: tuple[str, ...] = (
    "follower", "pre_vote", "candidate", "leader", "receive_snapshot", "await_condition",
)


class ServerId(NamedTuple):
    """A ra server id: the server's registered ``name`` on the node daemon at ``node``
    (``"host:port"``). Any plain ``(name, node)`` tuple is accepted wherever one is."""

    name: str
    node: str
