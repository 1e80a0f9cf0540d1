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

import re
from typing import Any, Literal, NamedTuple, Self

from ra.core.errors import InvalidConfig

__all__ = ["ServerId", "Index", "Term", "Entry", "Role", "ROLES", "check_node"]

Index = int
Term = int
Entry = tuple[int, int, Any]  # (index, term, command)

Role = Literal["follower", "pre_vote", "candidate", "leader", "receive_snapshot", "await_condition"]
ROLES: tuple[str, ...] = (
    "follower", "pre_vote", "candidate", "leader", "receive_snapshot", "await_condition",
)


# a host name (letters, digits, '-', '_', '.'), an IPv4 address, or an IPv6 one in brackets
_HOST = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\]")
NODE_FORM = '"host:port", a node daemon\'s address as ra.start returned it (port 1-65535)'


def check_node(node: Any, key: str = "node") -> str:
    """Return ``node`` if it is a node address ``"host:port"`` (port 1-65535); raise
    ``TypeError`` for a non-str and :class:`~ra.core.errors.InvalidConfig` (``key``) for a bad
    one (``"foo:bar"``, ``":0"``, ``"host"``, ``"host:"``...)."""
    if not isinstance(node, str):
        raise TypeError(f"a node address is a str {NODE_FORM}, not {type(node).__name__} "
                        f"{node!r}")
    host, sep, port = node.rpartition(":")
    if (not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) <= 65535
            or _HOST.fullmatch(host) is None):
        raise InvalidConfig(key, node, NODE_FORM)
    return node


class _ServerIdFields(NamedTuple):
    name: str
    node: str


class ServerId(_ServerIdFields):
    """A ra server id: the server's registered ``name`` on the node daemon at ``node``
    (``"host:port"``). Any plain ``(name, node)`` tuple is accepted wherever one is.

    Checked when made: a name that is not a non-empty str raises ``TypeError``; a node that is
    not ``"host:port"`` raises :class:`~ra.core.errors.InvalidConfig` (also a ``ValueError``).
    Otherwise a plain named tuple: equal to and hashed as ``(name, node)``."""

    __slots__ = ()

    def __new__(cls, name: str, node: str) -> Self:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a server id's name is a non-empty str, not {name!r}")
        try:
            check_node(node)
        except InvalidConfig as e:
            raise InvalidConfig("server_id", (name, node), f"its node must be {e.allowed}"
                                ) from None
        return super().__new__(cls, name, node)

    def _replace(self, **kw: Any) -> Self:
        return type(self)(**{**self._asdict(), **kw})
