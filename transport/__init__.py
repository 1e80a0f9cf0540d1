"""ZeroMQ messaging with gen_statem-style cast/call. No ra equivalent (BEAM distribution).

Modules: :mod:`~transport.codec` (terms <-> bytes), :mod:`~transport.envelope` (the versioned
wire envelope), :mod:`~transport.mailbox` (one ROUTER mailbox per process: ``cast``, ``call``,
``reply``, ``recv``), :mod:`~transport.registry` (the node daemon's name registry and the
client resolve cache), :mod:`~transport.failure_detector` (node heartbeats, nodeup/nodedown),
:mod:`~transport.messages` (the registry's and detector's typed messages, and the
validator predicates every process's door uses), :mod:`~transport.statem` (a gen_statem runner), :mod:`~transport.clock` (injected time) and
:mod:`~transport.sim` (a seeded in-memory network with the mailbox surface).

Errors raised by ``call`` are ``ra.errors.NoProc``, ``NodeDown`` and ``Timeout``.
"""
from transport import codec
from transport.envelope import Envelope, From
from transport.mailbox import Mailbox, probe_endpoint

__all__ = ["Mailbox", "Envelope", "From", "codec", "probe_endpoint"]
