"""The order in which a leader's server process sends a batch (``ServerProc._step_next_events``),
with the real core and a fake mailbox and log (no process, no daemon): the append_entries of a
flush leave before the leader's own WAL write of the same entries, which leaves in the same turn."""
from __future__ import annotations

import collections
from typing import Any

from ra.core.messages import AppendEntriesPacked, AppendEntriesReply, Command
from ra.server import proc
from ra.testing.memory import MemoryLog
from ra.wire import codec
from tests.core.helpers import N2, N3, make_leader, new_server, step, sync


class _Mb:
    def __init__(self, sent: list[tuple[str, Any]]) -> None:
        self.sent = sent
        self.name_cache: dict[tuple[str, str], str] = {}   # the registry's, per mailbox

    def cast(self, to: str, msg: Any) -> None:
        self.sent.append((to, msg))

    def cast_many(self, tos: list[str], msg: Any) -> None:
        self.sent += [(to, msg) for to in tos]


class _Log(MemoryLog):
    """The core's memory log, with what the shell calls on a DiskLog: ``payloads`` (the bytes
    the append_entries carry) and ``flush`` (the WAL write, recorded where the casts are)."""

    sent: list[tuple[str, Any]]

    def payloads(self, entries: list[Any]) -> list[bytes]:
        return [codec.encode(e[2]) for e in entries]

    def flush(self) -> int:
        self.sent.append(("wal", None))
        return 0


def _leader_shell() -> Any:
    sent: list[tuple[str, Any]] = []
    log = _Log()
    log.sent = sent
    s = new_server(log=log)
    make_leader(s)
    sync(s)
    for p in (N2, N3):      # the noop is durable on both followers: nothing is outstanding
        step(s, AppendEntriesReply(s.current_term, True, 2, 1, s.current_term, p))
    p = proc.ServerProc.__new__(proc.ServerProc)
    p.mb, p.log, p.meta, p.state, p.role = _Mb(sent), log, s.meta, s, "leader"
    p.conf = {"election_timeout_ms": 1000, "heartbeat_ms": 100}
    p.counters = collections.Counter()
    p.peer_eps = {N2: "ipc:///n2", N3: "ipc:///n3"}
    p.held, p.timers, p.next_events, p.to_clients = {}, {}, [], []
    p.machine_timers = {}
    return p, sent


def test_a_leaders_appends_leave_before_its_own_wal_write() -> None:
    p, sent = _leader_shell()
    p._step(Command("usr", 5, None))
    assert p.next_events and sent == []     # the flush is queued: nothing left yet
    p._step_next_events()
    kinds = [to if to == "wal" else type(m[1]).__name__ for to, m in sent]
    assert kinds == ["AppendEntriesPacked", "AppendEntriesPacked", "wal"], kinds
    assert {to for to, _ in sent[:2]} == {"ipc:///n2", "ipc:///n3"}
    ae = sent[0][1][1]
    assert type(ae) is AppendEntriesPacked and ae.prev_log_index + len(ae.terms) == 2   # the command, after the noop
    assert not p.next_events
