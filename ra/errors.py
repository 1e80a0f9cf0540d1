"""Typed errors of the public API. No ra equivalent: ra returns ``{error, Reason}`` tuples.

Every error the library raises at its users is a subclass of :class:`RaError`, so
``except ra.RaError`` catches them all. Messages say what went wrong and what to do.
"""
from __future__ import annotations

from typing import Any

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
    "BadRequest",
    "BadReply",
    "QueryError",
]


class RaError(Exception):
    """Base of every error raised by this library."""


class OutcomeUnknown(RaError):
    """The request was sent, and whether it took effect is unknown: the callee may have acted
    on it before it died or went silent. Commands (``process_command``) are retried under the
    client's session, which makes a retry safe, until their timeout; other requests are safe to
    retry only if they are idempotent (queries) or checked first (membership)."""


class Timeout(OutcomeUnknown):
    """No answer within the timeout. ``server`` names who did not answer (ra's ``{timeout, S}``)."""

    def __init__(self, message: str, server: Any = None) -> None:
        super().__init__(message)
        self.server = server


class NoProc(RaError):
    """No such process on a live node (ra's ``noproc``). Raised as ``NoProc`` itself, the
    request was *not delivered* (the process was gone before it was sent): safe to retry. The
    subclass :class:`ProcessDied` means it was sent first."""


class NodeDown(RaError):
    """The node daemon hosting the target cannot be reached (ra's ``nodedown``). Raised as
    ``NodeDown`` itself, the request was *not delivered*: safe to retry. The subclass
    :class:`NodeLost` means it was sent first."""


class ProcessDied(OutcomeUnknown, NoProc):
    """The request was sent, then the callee's process was found dead: it may have acted on
    it. (Also a ``NoProc``, for code that only asks whether the callee is there.)"""


class NodeLost(OutcomeUnknown, NodeDown):
    """The request was sent, then the callee's node was found down or unreachable: it may
    have acted on it. (Also a ``NodeDown``.)"""


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


class BadRequest(RaError):
    """The process called refused the request as malformed (wrong type, wrong arity, a field
    of the wrong type or range, or a message it does not serve): nothing was done. ``reason``
    is the callee's, e.g. ``"bad_field:CommandCall.priority"`` or ``"unknown_message"``; the
    callee counted it (its ``overview``). Retrying the same request cannot help."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class BadReply(OutcomeUnknown):
    """The callee answered, but not with a reply of the protocol (a garbled or foreign reply):
    the request was sent and its outcome is unknown."""


class QueryError(RaError):
    """A query function could not be run in the server: it could not be imported there
    (``module`` names the module; it must be importable by the *server's* Python, e.g. on its
    ``PYTHONPATH``), or it raised, or its result is not a term. The server keeps running."""

    def __init__(self, message: str, module: str | None = None) -> None:
        super().__init__(message)
        self.module = module
