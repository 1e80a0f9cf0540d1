"""Typed errors of the public API. No ra equivalent: ra returns ``{error, Reason}`` tuples.

Every error the library raises at its users is a subclass of :class:`RaError`, so
``except ra.RaError`` catches them all. Messages say what went wrong and what to do.
"""
from __future__ import annotations

from typing import Any

__all__ = [
    "RaError",
    "Timeout",
    "NoProc",
    "NodeDown",
    "NotLeader",
    "ClusterNotFormed",
    "NotFound",
    "NameNotRegistered",
    "AlreadyStarted",
    "SystemNotStarted",
    "InvalidConfig",
]


class RaError(Exception):
    """Base of every error raised by this library."""


class Timeout(RaError):
    """No answer within the timeout. ``server`` names who did not answer (ra's ``{timeout, S}``)."""

    def __init__(self, message: str, server: Any = None) -> None:
        super().__init__(message)
        self.server = server


class NoProc(RaError):
    """No such process on a live node (ra's ``noproc``)."""


class NodeDown(RaError):
    """The node daemon hosting the target cannot be reached (ra's ``nodedown``)."""


class NotLeader(RaError):
    """The server is not the leader; ``leader`` is the known leader or ``None``."""

    def __init__(self, message: str, leader: Any = None) -> None:
        super().__init__(message)
        self.leader = leader


class ClusterNotFormed(RaError):
    """Fewer than a majority of the cluster's servers could be started."""


class NotFound(RaError):
    """The server or cluster is not known on that node."""


class NameNotRegistered(RaError):
    """The name is not registered with the node daemon."""


class AlreadyStarted(RaError):
    """A server (or node daemon) with that name or data directory already runs."""


class SystemNotStarted(RaError):
    """The node daemon (ra's system) is not running."""


class InvalidConfig(RaError):
    """A configuration value is invalid. ``key``, ``value`` and ``allowed`` say which and why."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"invalid config {key}={value!r}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed
