"""Typed errors of the public API. No ra equivalent: ra returns ``{error, Reason}`` tuples.

Every error the library raises at its users is a subclass of :class:`RaError`, so
``except ra.RaError`` catches them all. Messages say what went wrong and what to do.

Where they are defined: :class:`RaError` in the leaf module :mod:`raerror` (below every package),
the errors of cast/call (``OutcomeUnknown``, ``Timeout``, ``NoProc``, ``NodeDown``,
``ProcessDied``, ``NodeLost``) in :mod:`transport.errors`, and the supervisor's in
:mod:`supervisor.spec`; this module re-exports the first two groups (the very same classes, so
``except ra.NoProc`` catches what a mailbox raises) and defines ra's own errors. Imports run
downward only: ``ra`` -> ``transport`` / ``supervisor`` -> ``raerror``.
"""
from __future__ import annotations

from typing import Any

from raerror import RaError
from transport.errors import (
    NodeDown, NodeLost, NoProc, OutcomeUnknown, ProcessDied, Timeout, TransportError,
)

__all__ = [
    "RaError",
    "OutcomeUnknown",
    "Timeout",
    "NoProc",
    "NodeDown",
    "ProcessDied",
    "NodeLost",
    "SessionExpired",
    "MachineError",
    "NotLeader",
    "ClusterNotFormed",
    "NotFound",
    "NameNotRegistered",
    "AlreadyStarted",
    "SystemNotStarted",
    "InvalidConfig",
    "TransportError",
]


class SessionExpired(OutcomeUnknown):
    """The client's session expired (idle too long, or evicted by newer ones) while a command
    was being retried after an unknown outcome: whether the first attempt was applied is
    unknown. A command refused on its first attempt is resent under a new session instead,
    and never raises this."""


class MachineError(RaError):
    """The machine's ``apply`` raised on this command. It raised on every member alike (an
    exception from ``apply`` is taken as deterministic), so the command is *applied as a
    no-op*: the state is as the machine left it (unchanged for a machine that returns new
    states), the cluster stays up, and a retry of the same command gets the same error.
    ``type`` and ``message`` are the exception's. (``MemoryError``, ``OSError`` and
    ``RecursionError`` are not taken as deterministic: they crash the server instead, and its
    supervisor restarts it.)"""

    def __init__(self, message: str, type: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.type = type
        self.detail = detail


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
