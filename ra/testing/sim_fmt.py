"""Compact one-line rendering of core messages for simulator traces. No ra equivalent."""
from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from ra.core.messages import SnapshotMeta

__all__ = ["fmt_msg"]

_SHORT = {
    "AppendEntriesRpc": "AE", "AppendEntriesReply": "AE-reply", "RequestVoteRpc": "Vote",
    "RequestVoteResult": "Vote-result", "PreVoteRpc": "PreVote", "PreVoteResult": "PreVote-result",
    "InstallSnapshotRpc": "InstallSnapshot", "InstallSnapshotResult": "InstallSnapshot-result",
    "HeartbeatRpc": "Heartbeat", "HeartbeatReply": "Heartbeat-reply", "LeaderProbe": "Probe",
}


def _v(name: str, value: Any) -> str:
    try:
        return _render(name, value)
    except Exception:  # malformed messages (the garbage fault) render as plain repr
        return repr(value)


def _render(name: str, value: Any) -> str:
    if name == "entries":
        if not value:
            return "[]"
        return f"[{value[0][0]}..{value[-1][0]} x{len(value)}]"
    if name == "data":
        return f"<{len(value)}B>"
    if name == "query":
        return getattr(value, "__name__", "fn")
    if name == "meta" and isinstance(value, SnapshotMeta):
        return f"{value.index}/{value.term}"
    return str(getattr(value, "name", value)) if hasattr(value, "name") and \
        isinstance(value.name, str) else repr(value)


def fmt_msg(msg: Any) -> str:
    """``AE(term=3 leader_id=s1 ... entries=[5..7 x3])``-style rendering of any message."""
    if not is_dataclass(msg):
        return repr(msg)
    cls = type(msg).__name__
    parts = [f"{f.name}={_v(f.name, getattr(msg, f.name))}" for f in fields(msg)
             if f.name not in ("from_id",)]
    return f"{_SHORT.get(cls, cls)}({' '.join(parts)})"
