"""No ra equivalent. The root of every error this library raises: :class:`RaError`.

Users catch it as ``ra.RaError`` (re-exported by :mod:`ra.errors`); nothing outside this
distribution should import this module by its own name.

Why a top-level leaf of its own: the layers below ``ra`` (``transport``, ``supervisor``) must
import nothing of ``ra`` (tests/test_boundaries.py), yet the errors they raise through ra's API
must be caught by ``except ra.RaError``. Python matches ``except`` clauses on the real class
hierarchy only (``__subclasscheck__`` and ABC registration are not consulted), so those errors
must *inherit* from ``RaError``, which must therefore be defined below every layer. The other
choice, converting transport errors into ra errors at ra's API boundary, would make
``ra.NoProc`` a different class from the one the transport raises, and every code path that
calls a mailbox directly (server shell, daemon, CLI, user code) would have to remember to
convert. This module loads nothing and defines nothing else.
"""
from __future__ import annotations

__all__ = ["RaError"]


class RaError(Exception):
    """Base of every error raised by this library (``ra``, ``transport``, ``supervisor``)."""
