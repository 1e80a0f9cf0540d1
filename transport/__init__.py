"""ZeroMQ messaging with gen_statem-style cast/call. No ra equivalent (BEAM distribution).

Modules: :mod:`~transport.codec` (terms <-> bytes), :mod:`~transport.envelope` (the versioned
wire envelope), :mod:`~transport.mailbox` (one ROUTER mailbox per process: ``cast``, ``call``,
``reply``, ``recv``), :mod:`~transport.direct` (the mailbox every ra process uses: ZMTP by
hand), :mod:`~transport.mechanism` (ZMTP NULL and PLAIN handshakes, sans I/O),
:mod:`~transport.cookie` (the node secret and the password derived from it), :mod:`~transport.registry` (the node daemon's name registry and the
client resolve cache), :mod:`~transport.failure_detector` (node heartbeats, nodeup/nodedown),
:mod:`~transport.clock` (injected time, for the failure detector's tests),
:mod:`~transport.curve` (ZeroMQ's CURVE security mechanism, sans I/O),
:mod:`~transport.curvekeys` (CURVE key pairs per node, the allow-list, which key to expect
where) and
:mod:`~transport.errors` (what ``call`` raises: ``NoProc``, ``NodeDown``, ``Timeout``...).
(A gen_statem runner and an in-memory network used to live here too; nothing used them: the
Raft core has its own deterministic simulator, ``ra.testing.sim``.)

This package imports nothing of ``ra``. Its names are loaded on first use (PEP 562), so that
``import transport.codec`` or ``transport.errors`` does not load ZeroMQ.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["Mailbox", "Envelope", "From", "codec", "probe_endpoint"]

_WHERE = {"Mailbox": "transport.mailbox", "probe_endpoint": "transport.mailbox",
          "Envelope": "transport.envelope", "From": "transport.envelope"}

if TYPE_CHECKING:
    from transport import codec
    from transport.envelope import Envelope, From
    from transport.mailbox import Mailbox, probe_endpoint


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is not None:
        value = getattr(importlib.import_module(where), name)
    else:
        try:
            value = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
