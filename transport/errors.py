"""No ra equivalent (ra returns ``{error, noproc | nodedown | {timeout, S}}``). The errors of
cast/call: what a caller learns about a request that got no reply.

They are the very classes users catch as ``ra.NoProc``, ``ra.Timeout``... (:mod:`ra.errors`
re-exports them): defined here so that the transport imports nothing of ``ra``, and derived from
:class:`raerror.RaError` (a leaf below every package; see its docstring for why) so that
``except ra.RaError`` catches them too.

Delivery contract: ``NoProc`` / ``NodeDown`` raised as themselves mean *not delivered* (safe to
retry); everything under :class:`OutcomeUnknown` means *sent, outcome unknown*.
"""
from __future__ import annotations

from typing import Any

from raerror import RaError

__all__ = ["TransportError", "OutcomeUnknown", "Timeout", "NoProc", "NodeDown", "ProcessDied",
           "NodeLost", "BadReply", "HandshakeRefused", "BadSecret",
           "MessageTooLarge"]


class TransportError(RaError):
    """Base of the errors of :mod:`transport` (a call that got no reply)."""


class OutcomeUnknown(TransportError):
    """The request was sent, and whether it took effect is unknown: the callee may have acted
    on it before it died or went silent. Commands (``process_command``) are retried under the
    client's session, which makes a retry safe, until their timeout; other requests are safe to
    retry only if they are idempotent (queries) or checked first (membership)."""


class Timeout(OutcomeUnknown):
    """No answer within the timeout. ``server`` names who did not answer (ra's ``{timeout, S}``)."""

    def __init__(self, message: str, server: Any = None) -> None:
        super().__init__(message)
        self.server = server


class NoProc(TransportError):
    """No such process on a live node (ra's ``noproc``). Raised as ``NoProc`` itself, the
    request was *not delivered* (the process was gone before it was sent): safe to retry. The
    subclass :class:`ProcessDied` means it was sent first."""


class NodeDown(TransportError):
    """The node daemon hosting the target cannot be reached (ra's ``nodedown``). Raised as
    ``NodeDown`` itself, the request was *not delivered*: safe to retry. The subclass
    :class:`NodeLost` means it was sent first."""


class ProcessDied(OutcomeUnknown, NoProc):
    """The request was sent, then the callee's process was found dead: it may have acted on
    it. (Also a ``NoProc``, for code that only asks whether the callee is there.)"""


class NodeLost(OutcomeUnknown, NodeDown):
    """The request was sent, then the callee's node was found down or unreachable: it may
    have acted on it. (Also a ``NodeDown``.)"""


class BadReply(OutcomeUnknown):
    """The callee answered, but not with a reply of the protocol (a garbled or foreign reply):
    the request was sent and its outcome is unknown."""


class HandshakeRefused(TransportError):
    """A ZMTP security handshake failed: the peer's mechanism differs from ours, its
    credentials are wrong, or it refused ours (``reason`` says which). Raised to a caller as
    itself, the request was *not delivered*: nothing reached the peer's handlers."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BadSecret(TransportError, ValueError):
    """The node secret (the cookie) or a CURVE key file cannot be used: missing, empty,
    malformed, or readable by others. The message says the fix; ``path`` names the file
    (``None``: an environment variable); ``key`` the node config key it stands for."""

    def __init__(self, message: str, path: str | None = None, key: str = "cookie_file") -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class MessageTooLarge(TransportError, ValueError):
    """A message whose encoding exceeds the mailbox's ``max_frame_bytes`` (64 MiB by
    default): the receiver would drop it, so it is not sent (*not delivered*). ``size`` and
    ``limit`` are in bytes."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes encoded exceeds the frame limit of {limit} "
                         "bytes; not sent")
        self.size = size
        self.limit = limit
