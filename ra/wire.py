"""No ra equivalent (BEAM sends records as they are). Registers the core's messages with the
wire codec so that peer RPCs travel as themselves.

Codes are fixed forever: they are on the wire between nodes of different versions.
Import this module before sending or receiving core messages (``ra.server_proc`` and ``ra.api``
do).
"""
from __future__ import annotations

from ra.core import messages as m
from transport import codec

__all__ = ["CODES"]

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

_done = codec.registered()
for _code, _cls in CODES.items():
    if _done.get(_code) is not _cls:
        codec.register_dataclass(_cls, _code)
