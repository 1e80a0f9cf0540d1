"""The two apply loops of the core agree. A member that answers no one (every role but leader;
recovery's replay is one) applies through ``server._apply_unanswered``, which decides the
common user command inline; ``server._apply_to(..., general=True)`` runs the general loop the
leader runs. Over random logs (user commands with and without sessions, duplicates, stale and
unknown sessions, session opens and closes, noops that upgrade the machine, cluster changes,
the end of life, machine effects, errors and snapshots, a session table being replayed after a
snapshot) both must leave the same machine state, machine calls (meta maps included), session
table, effects, stored last applied index, configuration and log."""
from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ra import effects as fx
from ra.core import server
from ra.core.sessions import Session, Sessions
from ra.testing.memory import MemoryLog, MemoryMeta
from tests.core.helpers import CLUSTER, N1, N2, new_server

TS0 = 1_000_000


class Recorder:
    """Counts; records every ``apply`` call. Commands: an int adds it; ``("snap", back)``
    releases a cursor ``back`` entries below its index with a state; ``("cp", back)`` asks for
    a checkpoint; ``("promote",)``; ``("aux", x)``; ``("send", x)`` (a leader-only effect);
    ``("raise",)``; ``("bad",)`` (a malformed result). Version 1; ``which_module(0)`` is
    :class:`RecorderV0`."""

    tag = "v1"

    def __init__(self, calls: list[Any]) -> None:
        self.calls = calls

    def version(self) -> int:
        return 1

    def which_module(self, v: int) -> Any:
        return Recorder(self.calls) if v == 1 else RecorderV0(self.calls)

    def init(self, config: Any) -> int:
        return 0

    def apply(self, meta: dict[str, Any], cmd: Any, state: int) -> Any:
        self.calls.append((self.tag, dict(meta), cmd, state))
        if isinstance(cmd, int):
            return state + cmd, state + cmd
        op = cmd[0]
        idx = meta["index"]
        if op == "snap":
            return state + 1, state, [fx.release_cursor(max(1, idx - cmd[1]), state)]
        if op == "cp":
            return state, state, [fx.checkpoint(max(1, idx - cmd[1]), state)]
        if op == "promote":
            return state, "ok", [fx.release_cursor(idx)]
        if op == "aux":
            return state, "ok", [fx.aux(cmd[1])]
        if op == "send":
            return state, "ok", [fx.send_msg("someone", cmd[1])]
        if op == "raise":
            raise KeyError("boom")
        if op == "bad":
            return "only one"
        return state, ("unknown", op)


class RecorderV0(Recorder):
    tag = "v0"

    def version(self) -> int:
        return 0


def _cmd() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(-5, 5), st.integers(-5, 5), st.integers(-5, 5),
        st.tuples(st.just("snap"), st.integers(0, 6)),
        st.tuples(st.just("cp"), st.integers(0, 6)),
        st.just(("promote",)), st.tuples(st.just("aux"), st.integers(0, 3)),
        st.tuples(st.just("send"), st.integers(0, 3)), st.just(("raise",)),
        st.just(("bad",)))


_MODES = st.sampled_from([None, ("await", "from"), ("notify", 7, "client")])


@st.composite
def _entry(draw: Any, idx: int, opened: list[int]) -> Any:
    kind = draw(st.sampled_from(["usr", "usr", "sess", "sess", "sess", "open", "close", "noop",
                                 "cluster", "other"]))
    ts = TS0 + idx * draw(st.sampled_from([1, 1, 1, 50_000]))     # some sessions expire
    if kind == "usr":
        return ("usr", draw(_cmd()), draw(_MODES), ts)
    if kind == "sess":
        # an open session mostly (an unknown one sometimes); seqs in order, repeated, stale
        sid = draw(st.sampled_from(opened)) if opened and draw(st.integers(0, 5)) else \
            draw(st.integers(1, idx + 2))
        seq = draw(st.integers(1, 12))
        fo = draw(st.integers(1, seq + 1))
        return ("usr", draw(_cmd()), draw(_MODES), ts, sid, seq, fo)
    if kind == "open":
        opened.append(idx)
        return ("session", "open_session", None, draw(_MODES), ts)
    if kind == "close":
        sid = draw(st.sampled_from(opened)) if opened else 1
        return ("session", "close_session", sid, None, ts)
    if kind == "noop":
        return ("noop", draw(st.sampled_from([0, 0, 1])))
    if kind == "cluster":
        return ("cluster", draw(st.sampled_from([CLUSTER, CLUSTER[:2], (N1, N2)])), None)
    return ("eol", None) if draw(st.integers(0, 9)) == 0 else ("noop", 0)


@st.composite
def _scenario(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 60))
    opened: list[int] = []
    entries = []
    term = 1
    for i in range(1, n + 1):
        term += draw(st.sampled_from([0, 0, 0, 1]))
        entries.append((i, term, draw(_entry(i, opened))))
    # a session table already ahead of the machine (recovered from a snapshot taken below the
    # last applied index): entries up to it are replayed, those in ``skipped`` not applied
    ahead = draw(st.integers(0, n))
    skipped = draw(st.sets(st.integers(1, max(1, ahead)), max_size=5)) if ahead else set()
    stops = sorted(set(draw(st.lists(st.integers(1, n), max_size=3))) | {n})
    return {"entries": entries, "ahead": ahead, "skipped": skipped, "stops": stops,
            "v0": draw(st.booleans())}


def _build(sc: dict[str, Any]) -> tuple[server.ServerState, list[Any]]:
    calls: list[Any] = []
    machine = Recorder(calls)
    s = new_server(machine=machine, log=MemoryLog(), meta=MemoryMeta())
    if sc["v0"]:
        s.machine, s.machine_version = RecorderV0(calls), 0
    s.log.write(sc["entries"])
    s.log.sync()
    if sc["ahead"]:
        s.sessions = Sessions(index=sc["ahead"], skipped=set(sc["skipped"]))
    return s, calls


def _outcome(s: server.ServerState, calls: list[Any], effects: list[Any]) -> dict[str, Any]:
    log = s.log
    return {
        "machine_state": s.machine_state, "calls": calls, "effects": effects,
        "sessions": dataclasses.asdict(s.sessions), "last_applied": s.last_applied,
        "stored_last_applied": s.meta.last_applied(), "cluster": s.cluster,
        "cluster_index_term": s.cluster_index_term, "machine_version": s.machine_version,
        "machine": type(s.machine), "snapshot": log.snapshot_index_term(),
        "snapshot_state": log.read_snapshot(), "checkpoints": log.checkpoint_index_terms(),
        "entries": log.entries(), "role": s.role,
    }


def _run(sc: dict[str, Any], general: bool, prepare: Any = None) -> dict[str, Any]:
    s, calls = _build(sc)
    if prepare is not None:
        prepare(s)
    assert s.role == "follower"
    effects: list[Any] = []
    for upto in sc["stops"]:
        server._apply_to(s, upto, effects, general=general)
    return _outcome(s, calls, effects)


@settings(max_examples=250, deadline=None)
@given(_scenario())
def test_unanswered_apply_matches_the_general_loop(sc: dict[str, Any]) -> None:
    fast = _run(sc, general=False)
    slow = _run(sc, general=True)
    assert fast == slow


def test_scenarios_reach_every_branch() -> None:
    """The property above is only as good as what its logs exercise: one fixed log that takes
    every branch of ``_apply_unanswered`` and ``_apply_entry`` (the session verdicts, replay
    with and without a skip, a noop upgrade, a cluster change, effects, an error, the end)."""
    e = [("session", "open_session", None, None, TS0),               # 1: replayed: not again
         ("usr", 1, None, TS0, 1, 1, 1),                               # 2: replayed, applied
         ("usr", 1, None, TS0, 1, 1, 1),                               # 3: duplicate
         ("usr", 1, None, TS0, 1, 2, 3),                               # 4: stale
         ("usr", 1, None, TS0, 99, 1, 1),                              # 5: unknown session
         ("usr", ("snap", 1), None, TS0),                              # 6: snapshot at 5
         ("usr", ("aux", 1), None, TS0),                               # 7: aux effect
         ("usr", ("raise",), None, TS0),                               # 8: machine error
         ("noop", 1),                                                  # 9: upgrade
         ("cluster", (N1, N2), None),                                  # 10
         ("usr", 2, None, TS0, 1, 3, 3),                               # 11: applied
         ("eol", None),                                                # 12: end of life
         ("usr", 5, None, TS0)]                                        # 13: never applied
    sc = {"entries": [(i, 1, c) for i, c in enumerate(e, 1)], "ahead": 2, "skipped": set(),
          "stops": [4, 13], "v0": True}

    def prepare(s: server.ServerState) -> None:
        # the table as of index 2 (a snapshot below it holds it): session 1, seq 1's reply
        s.sessions.cluster_time = s.sessions.next_check = TS0
        s.sessions.table[1] = Session(1, TS0, {1: 1})

    fast = _run(sc, general=False, prepare=prepare)
    assert fast == _run(sc, general=True, prepare=prepare)
    assert fast["last_applied"] == fast["stored_last_applied"] == 12
    assert fast["machine_version"] == 1 and fast["cluster"] == (N1, N2)
    assert fast["snapshot"] == (5, 1)
    assert fast["effects"] == [fx.aux(1), server.DeleteAndTerminate()]
    # 2 replayed, 3-5 not applied (their skips trimmed by the snapshot at 5), 6-11 applied
    assert [c[1]["index"] for c in fast["calls"]] == [2, 6, 7, 8, 9, 11]
    assert [c[0] for c in fast["calls"]] == ["v0"] * 4 + ["v1"] * 2
    assert fast["sessions"]["skipped"] == set()
    assert fast["sessions"]["table"][1]["responses"] == {3: 4}


class _EncodedModesLog(MemoryLog):
    """A log that hands back reply modes encoded, as ``ra.log.DiskLog`` does."""

    def reply_mode(self, raw: bytes) -> Any:
        from ra.log.log import decode_reply_mode
        from ra.wire import codec
        return decode_reply_mode(raw, codec.decode)


def test_a_leader_answers_reply_modes_its_log_kept_encoded() -> None:
    """The same log with reply modes as tuples and as their encoding: the leader's answers are
    the same; an encoding that does not decode answers no one (and raises nothing)."""
    from ra.core.effects import Notify, Reply
    from ra.wire import codec
    modes = [("notify", 7, "client-a"), ("await", "from-b"), None, ("notify", 8, "client-a")]
    out: dict[bool, list[Any]] = {}
    for encoded in (False, True):
        s = new_server(log=_EncodedModesLog())
        entries = [(i + 1, 1, ("usr", 1, codec.encode(m) if encoded and m else m, TS0))
                   for i, m in enumerate(modes)]
        entries.append((len(modes) + 1, 1, ("usr", 1, b"\xc1" if encoded else None, TS0)))
        s.log.write(entries)
        for ev in s.log.sync():
            s.log.handle_written(ev)
        s.role = "leader"
        effects: list[Any] = []
        server._apply_to(s, len(entries), effects)
        assert s.machine_state == len(entries) and s.last_applied == len(entries)
        out[encoded] = effects
    assert out[True] == out[False]
    assert [type(e) for e in out[True]] == [Reply, Notify]
    assert out[True][1].applied == [(7, 1), (8, 4)]
