"""ZeroMQ messaging with gen_statem-style cast/call. No ra equivalent (BEAM distribution).

Public surface: :class:`Mailbox` (one per process: ``cast``, ``call``, ``reply``, ``recv``),
:class:`From`, :class:`Envelope`, and the term codec in :mod:`transport.codec`. Errors raised
by ``call`` are ``ra.errors.NoProc``, ``NodeDown`` and ``Timeout``.
"""
from transport import codec
from transport.envelope import Envelope, From
from transport.mailbox import Mailbox, probe_endpoint

__all__ = ["Mailbox", "Envelope", "From", "codec", "probe_endpoint"]
