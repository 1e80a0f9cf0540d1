"""Typed errors of the public API. No ra equivalent: ra returns ``{error, Reason}`` tuples.

Every error the library raises at its users is a subclass of :class:`RaError`, so
``except ra.RaError`` catches them all. Messages say what went wrong and what to do.

Where they are defined: :class:`RaError` in the leaf module :mod:`raerror` (below every package),
the errors of cast/call (``OutcomeUnknown``, ``Timeout``, ``NoProc``, ``NodeDown``,
``ProcessDied``, ``NodeLost``, ``BadReply``) in :mod:`transport.errors`, ``InvalidConfig`` in the core's leaf
:mod:`ra.core.errors` (``ServerId`` raises it), and the supervisor's in :mod:`supervisor.spec`;
this module re-exports the first three groups (the very same classes, so ``except ra.NoProc``
catches what a mailbox raises) and defines ra's own errors. Imports run
downward only: ``ra`` -> ``transport`` / ``supervisor`` -> ``raerror``.
"""
from __future__ import annotations

from typing import Any

from ra.core.errors import InvalidConfig
from raerror import RaError
from transport.errors import (
    BadReply, MessageTooLarge, NodeDown, NodeLost, NoProc, OutcomeUnknown, ProcessDied, Timeout,
    TransportError,
)

#: A command (or any request) whose encoding exceeds the frame limit (64 MiB): not sent, so not
#: applied; the very class the mailbox raises (``MessageTooLarge``), under the API's name.
CommandTooLarge = MessageTooLarge

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
    "BadConfig",
    "BadReply",
    "CommandTooLarge",
    "MessageTooLarge",
    "QueryError",
    "MachineLoadError",
    "error_reply",
    "error_from_reply",
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


class MachineLoadError(InvalidConfig):
    """A server's machine could not be imported or built in its server process on ``node``:
    the module is not importable by the node's Python, or its import raised, called
    ``sys.exit()``, or did not finish within the node's ``load_timeout_ms``. ``key`` is
    ``"machine"``, ``value`` the machine spec, ``allowed`` what to do; ``server`` names the
    server, ``reason`` the failure (``"ModuleNotFoundError: No module named 'x'"``).

    An ``InvalidConfig``: the machine named cannot be used on that node, nothing was written
    (a first start leaves no trace; a restart keeps the server's data and stored config), and
    the server stays down until the cause is fixed and it is started again."""

    def __init__(self, value: Any, allowed: str, *, node: str | None = None,
                 server: Any = None, reason: str = "") -> None:
        super().__init__("machine", value, allowed)
        self.node = node
        self.server = server
        self.reason = reason
        where = f"server {server!r} on node {node}" if node else f"server {server!r}"
        fix = allowed[:1].upper() + allowed[1:]
        self.args = ((f"{where} cannot load its machine {_machine_path(value)!r}: {reason}. "
                      f"{fix}"),)


def _machine_path(spec: Any) -> Any:
    if isinstance(spec, (tuple, list)) and len(spec) == 3:
        return spec[1]
    return spec


class BadRequest(RaError):
    """The process called refused the request as malformed (wrong type, wrong arity, a field
    of the wrong type or range, or a message it does not serve): nothing was done. ``reason``
    is the callee's, e.g. ``"bad_field:CommandCall.priority"`` or ``"unknown_message"``; the
    callee counted it (its ``overview``). Retrying the same request cannot help."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class BadConfig(BadRequest, InvalidConfig):
    """A node refused a server config at its door (the API checks configs before sending, so
    only a request built by hand gets here): both a :class:`BadRequest` (``reason``, e.g.
    ``"bad_field:StartServer.conf.tick_ms"``) and an :class:`InvalidConfig` (``key``,
    ``value``, ``allowed``, from the same schema the door used)."""

    def __init__(self, message: str, reason: str, key: str, value: Any, allowed: str) -> None:
        RaError.__init__(self, f"{message} (invalid config {key}={value!r}: {allowed})")
        self.reason = reason
        self.key = key
        self.value = value
        self.allowed = allowed


class QueryError(RaError):
    """A query function could not be run in the server: it could not be imported there
    (``module`` names the module; it must be importable by the *server's* Python, e.g. on its
    ``PYTHONPATH``), or it raised, or its result is not a term. The server keeps running."""

    def __init__(self, message: str, module: str | None = None) -> None:
        super().__init__(message)
        self.module = module


# ----------------------------------------------------------------- errors on the wire

def error_reply(e: RaError) -> tuple[Any, ...]:
    """The wire form of an error raised while answering a call: ``("error", tag, text,
    fields)``, ``fields`` the typed attributes the caller needs to rebuild it (``key``,
    ``value``, ``allowed``...; empty for errors that carry only their text)."""
    fields: dict[str, Any] = {}
    if isinstance(e, InvalidConfig):
        fields = {"key": e.key, "value": e.value, "allowed": e.allowed}
    if isinstance(e, MachineLoadError):
        fields.update(node=e.node, server=e.server, reason=e.reason)
    return ("error", type(e).__name__, str(e), fields)


def error_from_reply(tag: Any, text: Any, fields: Any = None,
                     classes: dict[str, type[RaError]] | None = None) -> RaError | None:
    """Rebuild the typed error of :func:`error_reply` (None if ``tag`` names none we know:
    the caller decides). ``classes`` maps further tags to classes built from the text."""
    f = fields if isinstance(fields, dict) else {}
    if tag == "MachineLoadError" and "value" in f:
        err: RaError = MachineLoadError(f["value"], str(f.get("allowed", "")),
                                        node=f.get("node"), server=f.get("server"),
                                        reason=str(f.get("reason", "")))
        err.args = (str(text),)
        return err
    if tag == "InvalidConfig" and "key" in f:
        err = InvalidConfig(str(f["key"]), f.get("value"), str(f.get("allowed", "")))
        return err
    cls = (classes or {}).get(str(tag))
    return cls(str(text)) if cls is not None else None
