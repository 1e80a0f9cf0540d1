"""No ra equivalent (BEAM sends records as they are). Registers ra's types with the wire codec:
:class:`~ra.core.types.ServerId` (codec-owned code 5) and the core's messages, so that they
travel and are stored as themselves.

Codes are fixed forever: they are on the wire between nodes of different versions and in files
(meta, directory, WAL records, snapshots). The codec (``transport``) imports nothing of ``ra``
and learns ra's classes only here: import this module before encoding or decoding anything that
may hold them. ra's modules that send, receive or store terms either import this module or
take the codec from it (``from ra.wire import codec``: the same module object, registered).
"""
from __future__ import annotations

from ra.core import messages as m
from ra.core.types import ServerId
from transport import codec

__all__ = ["CODES", "codec"]

CODES: dict[int, type] = {
    20: m.AppendEntriesRpc,
    21: m.AppendEntriesReply,
    22: m.RequestVoteRpc,
    23: m.RequestVoteResult,
    24: m.PreVoteRpc,
    25: m.PreVoteResult,
    26: m.InstallSnapshotRpc,
    27: m.InstallSnapshotResult,
    28: m.HeartbeatRpc,
    29: m.HeartbeatReply,
    30: m.TimeoutNow,
    31: m.SnapshotMeta,
}

codec.register_server_id(ServerId)
_done = codec.registered()
for _code, _cls in CODES.items():
    if _done.get(_code) is not _cls:
        codec.register_dataclass(_cls, _code)
