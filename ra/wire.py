"""No ra equivalent (BEAM sends records as they are). Registers ra's types with the wire codec:
:class:`~ra.core.types.ServerId` (codec-owned code 5), the core's messages (peer RPCs, 20..39) and
:mod:`ra.messages` (client -> server 60..79, server/client -> daemon 80..99), so that they travel
and are stored as themselves. The transport's own messages use 40..49
and 100..109 (:mod:`transport.messages`), the WAL's 50..59 (:mod:`wal.messages`).

Codes are fixed forever: they are on the wire between nodes of different versions and in files
(meta, directory, WAL records, snapshots). The codec (``transport``) imports nothing of ``ra``
and learns ra's classes only here: import this module before encoding or decoding anything that
may hold them. ra's modules that send, receive or store terms either import this module or
take the codec from it (``from ra.wire import codec``: the same module object, registered).
"""
from __future__ import annotations

from ra import messages as rm
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
    32: m.LeaderProbe,
    33: m.AppendEntriesPacked,
    # client -> server
    60: rm.CommandCall, 61: rm.PipelineCast, 62: rm.ConsistentQueryCall, 63: rm.LocalQueryCall,
    64: rm.LeaderQueryCall, 65: rm.MembersCall, 66: rm.AuxCall, 67: rm.AuxCast,
    68: rm.InitialMembersCall, 69: rm.TransferLeadershipCall, 70: rm.TriggerElectionCall,
    71: rm.OverviewCall, 72: rm.KeyMetricsCall, 73: rm.PingCall, 74: rm.PipelineBatch,
    # server -> daemon, client -> daemon
    80: rm.MetricsReport, 81: rm.NodePing, 82: rm.NodeStatus, 83: rm.NodeStop,
    84: rm.StartChild, 85: rm.TerminateChild, 86: rm.RestartChild, 87: rm.DeleteChild,
    88: rm.WhichChildren, 89: rm.StartServer, 90: rm.RestartServer, 91: rm.StopServer,
    92: rm.ForceDeleteServer, 93: rm.ListServers, 94: rm.ServerMetrics, 95: rm.StartStatus,
    96: rm.ServerLoaded, 97: rm.ServerLoadFailed, 98: rm.AwaitStarted, 99: rm.ServerUp,
}

codec.register_server_id(ServerId)
_done = codec.registered()
for _code, _cls in CODES.items():
    if _done.get(_code) is not _cls:
        codec.register_dataclass(_cls, _code)
