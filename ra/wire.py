"""No ra equivalent (BEAM sends records as they are). Registers the core's messages (peer RPCs)
and ``ra.messages`` (client -> server, client -> daemon, server -> daemon) with the wire codec so
that they travel as themselves.

Codes are fixed forever: they are on the wire between nodes of different versions. The
transport's own messages use 40..49 (:mod:`transport.messages`), the WAL's 50..59
(:mod:`wal.messages`). Import this module before sending or receiving ra's messages
(``ra.server_proc``, ``ra.node`` and ``ra.api`` do).
"""
from __future__ import annotations

from ra import messages as rm
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
    # client -> server
    60: rm.CommandCall, 61: rm.PipelineCast, 62: rm.ConsistentQueryCall, 63: rm.LocalQueryCall,
    64: rm.LeaderQueryCall, 65: rm.MembersCall, 66: rm.AuxCall, 67: rm.AuxCast,
    68: rm.InitialMembersCall, 69: rm.TransferLeadershipCall, 70: rm.TriggerElectionCall,
    71: rm.OverviewCall, 72: rm.KeyMetricsCall, 73: rm.PingCall,
    # server -> daemon, client -> daemon
    80: rm.MetricsReport, 81: rm.NodePing, 82: rm.NodeStatus, 83: rm.NodeStop,
    84: rm.StartChild, 85: rm.TerminateChild, 86: rm.RestartChild, 87: rm.DeleteChild,
    88: rm.WhichChildren, 89: rm.StartServer, 90: rm.RestartServer, 91: rm.StopServer,
    92: rm.ForceDeleteServer, 93: rm.ListServers, 94: rm.ServerMetrics,
}

_done = codec.registered()
for _code, _cls in CODES.items():
    if _done.get(_code) is not _cls:
        codec.register_dataclass(_cls, _code)
