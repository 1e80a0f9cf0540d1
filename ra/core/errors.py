"""No ra equivalent (ra returns ``{error, Reason}``). The errors the core's value types raise.

A leaf: it loads nothing but :mod:`raerror`, so that :class:`~ra.core.types.ServerId` can check
its node address in the pure core without loading the shell's modules. :mod:`ra.errors`
re-exports these very classes, as it does the transport's (``transport/errors.py``).
"""
from __future__ import annotations

from typing import Any

from raerror import RaError

__all__ = ["InvalidConfig", "InvalidEffect"]


class InvalidConfig(RaError, ValueError):
    """A configuration value is invalid. ``key``, ``value`` and ``allowed`` say which and why.

    Also a ``ValueError``: a bad value, found before anything was started or written."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"invalid config {key}={value!r}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed


class InvalidEffect(RaError, ValueError):
    """A machine effect is malformed: an unknown kind, a wrong arity or a field of the wrong
    type (see :mod:`ra.core.effects`). ``effect`` is what the machine gave, ``reason`` why it
    is refused.

    Raised by the typed effects' constructors and by ``machine_effects``, the validator that
    takes a machine callback's result. From ``apply`` it is handled as an exception raised by
    ``apply``: the command is applied as a no-op on every member and the caller gets
    ``ra.MachineError`` with type ``"InvalidEffect"``."""

    def __init__(self, effect: Any, reason: str) -> None:
        super().__init__(f"invalid machine effect {_short(effect)}: {reason}")
        self.effect = effect
        self.reason = reason


def _short(x: Any) -> str:
    text = repr(x)
    return text if len(text) <= 200 else text[:197] + "..."
