"""No ra equivalent (ra returns ``{error, Reason}``). The errors the core's value types raise.

A leaf: it loads nothing but :mod:`raerror`, so that :class:`~ra.core.types.ServerId` can check
its node address in the pure core without loading the shell's modules. :mod:`ra.errors`
re-exports these very classes, as it does the transport's (``transport/errors.py``).
"""
from __future__ import annotations

from typing import Any

from raerror import RaError

__all__ = ["InvalidConfig"]


class InvalidConfig(RaError, ValueError):
    """A configuration value is invalid. ``key``, ``value`` and ``allowed`` say which and why.

    Also a ``ValueError``: a bad value, found before anything was started or written."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        super().__init__(f"invalid config {key}={value!r}: {allowed}")
        self.key = key
        self.value = value
        self.allowed = allowed
