"""Client sessions in the core (no ra equivalent; Raft dissertation §6.3): a command retried
under the same (session, seq) is applied once and every retry gets the first reply, also across
a snapshot taken below the last applied index, a restart and a snapshot install."""
import dataclasses
from typing import Any

import pytest

from ra import effects as fx
from ra.core import sessions as S
from ra.core.effects import Cast, Notify, Reply
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, Command, FlushCommands, InstallSnapshotRpc,
)
from ra.core.server import init
from ra.testing.memory import MemoryLog, MemoryMeta
from tests.core.helpers import N1, N2, make_leader, new_server, step, sync


class Adder:
    """State: (total, applies). ``("add", n)`` replies the new total; ``("snap_at", i)`` also
    asks for a snapshot at index ``i`` with the state it had there (kept in ``history``)."""

    def __init__(self) -> None:
        self.history: dict[int, Any] = {0: (0, 0)}

    def init(self, config: Any) -> tuple[int, int]:
        return (0, 0)

    def apply(self, meta: dict[str, Any], cmd: Any, state: Any) -> tuple[Any, ...]:
        new = (state[0] + cmd[1], state[1] + 1)
        self.history[meta["index"]] = new
        if cmd[0] == "snap_at":
            at = cmd[2]
            return new, new[0], [fx.release_cursor(at, self.history[at])]
        return new, new[0]


def leader(machine: Any, log: MemoryLog | None = None, meta: MemoryMeta | None = None) -> Any:
    s = new_server(machine=machine, log=log, meta=meta)
    make_leader(s)
    sync(s)
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))
    return s


def commit(s: Any, *msgs: Command) -> list[Any]:
    eff = []
    for m in msgs:
        eff += step(s, m)
    eff += step(s, FlushCommands())
    sync(s)
    last = s.log.last_index_term()[0]
    return eff + step(s, AppendEntriesReply(s.current_term, True, last + 1, last, 1, N2))


def replies(eff: list[Any]) -> list[Any]:
    return [(e.frm, e.value) for e in eff if isinstance(e, Reply)]


def open_session(s: Any) -> int:
    [(_, (tag, sid, _))] = replies(commit(s, Command("open_session", None, ("await", "o"))))
    assert tag == "ok"
    return sid


def usr(cmd: Any, session: Any, frm: Any = "f") -> Command:
    return Command("usr", cmd, ("await", frm), session=session)


def test_open_session_id_is_its_index_and_a_retry_is_answered_not_applied() -> None:
    m = Adder()
    s = leader(m)
    sid = open_session(s)
    assert sid == 2                                   # noop 1, open 2
    assert replies(commit(s, usr(("add", 5), (sid, 1, 1), "a"))) == [("a", ("ok", 5, N1))]
    # the same seq again, as a new leader would get it: answered from the table, no new entry
    last = s.log.last_index_term()[0]
    assert replies(commit(s, usr(("add", 5), (sid, 1, 1), "b"))) == [("b", ("ok", 5, N1))]
    assert s.log.last_index_term()[0] == last
    assert s.machine_state == (5, 1)


def test_duplicate_entries_in_the_log_apply_once_and_answer_the_first_reply() -> None:
    s = leader(Adder())
    sid = open_session(s)
    # two copies appended before either is applied (a retry sent while the first was in flight)
    eff = commit(s, usr(("add", 3), (sid, 1, 1), "a"), usr(("add", 3), (sid, 1, 1), "b"),
                 usr(("add", 4), (sid, 2, 1), "c"))
    assert replies(eff) == [("a", ("ok", 3, N1)), ("b", ("ok", 3, N1)), ("c", ("ok", 7, N1))]
    assert s.machine_state == (7, 2)
    assert s.sessions.skipped == {4}


def test_unknown_session_and_stale_seq_are_refused_with_errors() -> None:
    s = leader(Adder())
    sid = open_session(s)
    eff = commit(s, usr(("add", 1), (99, 1, 1), "x"),       # never opened
                 usr(("add", 1), (sid, 5, 5), "a"),          # client: everything below 5 done
                 usr(("add", 1), (sid, 3, 3), "late"))       # a late copy of seq 3
    assert replies(eff) == [("x", ("error", "session_expired")), ("a", ("ok", 1, N1)),
                            ("late", ("error", "stale_seq"))]
    assert s.machine_state == (1, 1)


def test_first_outstanding_drops_replies_below_it() -> None:
    s = leader(Adder())
    sid = open_session(s)
    commit(s, *[usr(("add", 1), (sid, q, 1)) for q in (1, 2, 3)])
    assert list(s.sessions.table[sid].responses) == [1, 2, 3]
    commit(s, usr(("add", 1), (sid, 4, 3)))
    assert list(s.sessions.table[sid].responses) == [3, 4]


def test_pipelined_duplicate_is_notified_again_and_session_errors_are_rejections() -> None:
    s = leader(Adder())
    sid = open_session(s)
    eff = commit(s, Command("usr", ("add", 2), ("notify", "c1", "pid"), session=(sid, 1, 1)),
                 Command("usr", ("add", 2), ("notify", "c1", "pid"), session=(sid, 1, 1)),
                 Command("usr", ("add", 2), ("notify", "c9", "pid"), session=(77, 1, 1)))
    notes = [e for e in eff if isinstance(e, Notify)]
    assert [n.applied for n in notes] == [[("c1", 2)], [("c1", 2)]] or \
        [n.applied for n in notes] == [[("c1", 2), ("c1", 2)]]
    assert [e.msg for e in eff if isinstance(e, Cast)] == [
        ("ra_event", N1, ("rejected", ("session_expired", N1, "c9")))]


def test_expiry_by_cluster_time_and_the_session_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    t = S.Sessions()
    a = t.open(10, ts=1_000)
    b = t.open(11, ts=2_000)
    resp = t.command(12, a, 1, 1, ts=S.SESSION_TIMEOUT_MS)
    assert resp is t.table[a].responses
    resp[1] = "r"
    # b idle for longer than the timeout once cluster time passes a check: gone; a kept
    t.command(13, a, 2, 1, ts=2_000 + S.SESSION_TIMEOUT_MS + S.EXPIRY_CHECK_MS + 1)
    assert b not in t.table and a in t.table
    assert t.command(14, b, 1, 1, ts=0) == ("error", "session_expired")
    monkeypatch.setattr(S, "MAX_SESSIONS", 2)
    t.open(20, ts=0)
    t.open(21, ts=0)              # a is the least recently active of the two others: evicted
    assert sorted(t.table) == [20, 21]


def test_reply_cap_makes_evicted_seqs_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(S, "MAX_RESPONSES", 2)
    t = S.Sessions()
    sid = t.open(1, ts=0)
    for q in (1, 2, 3):
        resp = t.command(1 + q, sid, q, 1, ts=0)
        assert resp is t.table[sid].responses
        resp[q] = q                     # what the server does once it applied the command
        if len(resp) > S.MAX_RESPONSES:
            t.cap(sid)
    assert list(t.table[sid].responses) == [2, 3]
    # seq 1's reply was evicted: a late retry of it must not be applied a second time
    assert t.command(9, sid, 1, 1, ts=0) == ("error", "stale_seq")
    assert t.command(10, sid, 3, 1, ts=0) == ("dup", 3)


def test_the_server_caps_each_session_reply_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same cap through the core's apply: the oldest reply goes, and its seq is stale."""
    from ra.core import server as core_server
    monkeypatch.setattr(core_server, "MAX_RESPONSES", 2)
    s = leader(Adder())
    sid = open_session(s)
    commit(s, *[usr(("add", 1), (sid, q, 1)) for q in (1, 2, 3)])
    assert list(s.sessions.table[sid].responses) == [2, 3]
    assert replies(commit(s, usr(("add", 1), (sid, 1, 1), "late"))) == [
        ("late", ("error", "stale_seq"))]
    assert replies(commit(s, usr(("add", 1), (sid, 3, 1), "again"))) == [
        ("again", ("ok", 3, N1))]
    assert s.machine_state == (3, 3)


def test_snapshot_below_last_applied_replays_the_same_decisions_after_restart() -> None:
    m = Adder()
    log, meta = MemoryLog(), MemoryMeta()
    s = leader(m, log, meta)
    sid = open_session(s)                                        # 2
    commit(s, usr(("add", 1), (sid, 1, 1)),                      # 3 applied
           usr(("add", 10), (sid, 2, 1)),                        # 4 applied
           usr(("add", 10), (sid, 2, 1)),                        # 5 duplicate: skipped
           usr(("add", 100), (sid, 3, 1)))                       # 6 applied
    # a snapshot at 3 taken while applying 7: the table it stores is as of 7
    commit(s, usr(("snap_at", 1000, 3), (sid, 4, 1)))            # 7 applied
    assert s.log.snapshot_index_term()[0] == 3
    assert s.machine_state == (1111, 4)
    assert s.sessions.skipped == {5}
    sync(s)
    # restart from the snapshot at 3: 4..7 replay with the decisions taken the first time
    m2 = Adder()
    m2.history = dict(m.history)
    _, s2, _ = init(dataclasses.replace(s.cfg, machine=m2))
    assert s2.sessions.index == 7
    assert s2.machine_state == (1111, 4)
    assert s2.sessions.lookup(sid, 2) == (True, 11)


def test_a_follower_installing_the_snapshot_gets_the_table() -> None:
    m = Adder()
    s = leader(m)
    sid = open_session(s)
    commit(s, usr(("add", 1), (sid, 1, 1)), usr(("add", 1), (sid, 1, 1)),
           usr(("snap_at", 5, 3), (sid, 2, 1)))
    meta, chunks = s.log.snapshot_chunks(1 << 20)
    fm = Adder()
    fm.history = dict(m.history)
    f = new_server(N2, machine=fm)
    step(f, InstallSnapshotRpc(s.current_term, N1, meta, (1, "last"), chunks[0]))
    assert f.machine_state == (1, 1)
    assert f.sessions.index == 5 and f.sessions.skipped == {4}
    # the entries after the snapshot, replayed: 4 skipped again, 5 applied
    tail = s.log.take(4, 10)
    step(f, AppendEntriesRpc(s.current_term, N1, 5, 3, meta.term, tail))
    sync(f)
    assert f.machine_state == s.machine_state == (6, 2)


def test_session_less_commands_are_unchanged() -> None:
    s = leader(Adder())
    eff = commit(s, usr(("add", 2), None, "a"), usr(("add", 2), None, "b"))
    assert replies(eff) == [("a", ("ok", 2, N1)), ("b", ("ok", 4, N1))]
    assert not s.sessions.used
    assert s.log.fetch(2)[2] == ("usr", ("add", 2), ("await", "a"), 0)


def test_wrap_and_unwrap_round_trip() -> None:
    t = S.Sessions()
    assert S.wrap_snapshot("st", t, 5) == "st"             # never used: the bare state
    sid = t.open(3, ts=7)
    t.command(4, sid, 1, 1, ts=8)[1] = ("r", 1)
    t.skipped = {2, 6}
    t.index = 6
    state, back = S.unwrap_snapshot(S.wrap_snapshot("st", t, 5), 5)
    assert state == "st" and back.index == 6 and back.skipped == {6}
    assert back.lookup(sid, 1) == (True, ("r", 1))
    assert S.unwrap_snapshot("plain", 9)[1].index == 9


class Fragile(Adder):
    """``("bad", n)`` raises ValueError; ``("oom", n)`` raises MemoryError."""

    def apply(self, meta: dict[str, Any], cmd: Any, state: Any) -> tuple[Any, ...]:
        if cmd[0] == "bad":
            raise ValueError(f"no {cmd[1]}")
        if cmd[0] == "oom":
            raise MemoryError()
        return super().apply(meta, cmd, state)


def test_a_machine_exception_is_a_no_op_answered_with_machine_error() -> None:
    s = leader(Fragile())
    sid = open_session(s)
    eff = commit(s, usr(("add", 1), (sid, 1, 1), "a"), usr(("bad", 7), (sid, 2, 1), "b"),
                 usr(("add", 1), (sid, 3, 1), "c"))
    assert replies(eff) == [("a", ("ok", 1, N1)),
                            ("b", ("error", ("machine_error", "ValueError", "no 7"))),
                            ("c", ("ok", 2, N1))]
    assert s.machine_state == (2, 2)
    # its retry gets the same error, from the session table
    assert replies(commit(s, usr(("bad", 7), (sid, 2, 1), "b2"))) == [
        ("b2", ("error", ("machine_error", "ValueError", "no 7")))]


def test_a_nondeterministic_exception_crashes_the_server() -> None:
    s = leader(Fragile())
    with pytest.raises(MemoryError):
        commit(s, usr(("oom", 1), None, "a"))
