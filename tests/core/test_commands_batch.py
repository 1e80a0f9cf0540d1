"""``Commands``: pipelined commands stepped as one message (the shell gathers those of one loop
turn). No ra equivalent (ra's gen_statem takes them one by one). The contract: stepping
``Commands(priority, ts, [payload, mode, session_id, seq, first_out, ...])`` is the same as
stepping ``Command("usr", payload, mode, priority, ts, (session_id, seq, first_out))`` (or
with no session: ``None, 0, 0``) for each in order; a malformed batch is dropped whole and
counted, with the state untouched."""
from typing import Any

import pytest

from ra.core.effects import Cast, Notify
from ra.core.messages import AppendEntriesReply, Command, Commands, FlushCommands
from tests.core.helpers import N1, N2, make_leader, new_server, step, sync
from tests.core.test_sessions import Adder, open_session


def leader(**kw: Any) -> Any:
    s = new_server(machine=Adder(), **kw)
    make_leader(s)
    sync(s)
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))
    return s


def run(s: Any, msgs: list[Any]) -> list[Any]:
    """Step ``msgs``, flush, make it durable and have N2 acknowledge: every effect."""
    eff: list[Any] = []
    for m in msgs:
        eff += step(s, m)
    eff += step(s, FlushCommands())
    eff += sync(s)
    last = s.log.last_index_term()[0]
    return eff + step(s, AppendEntriesReply(s.current_term, True, last + 1, last, 1, N2))


def _flat(cmds: list[tuple[Any, Any, Any]]) -> list[Any]:
    return [x for p, m, ss in cmds for x in (p, m, *(ss or (None, 0, 0)))]


@pytest.mark.parametrize("priority", ["low", "normal"])
def test_a_batch_is_its_commands_stepped_one_by_one(priority: str) -> None:
    a, b = leader(low_priority_batch_size=4), leader(low_priority_batch_size=4)
    sa, sb = open_session(a), open_session(b)
    assert sa == sb
    run(a, [Command("usr", ("add", 1), ("notify", "c0", "p"), "normal", 5, (sa, 1, 1))])
    run(b, [Command("usr", ("add", 1), ("notify", "c0", "p"), "normal", 5, (sb, 1, 1))])
    cmds = [(("add", 2), ("notify", "c1", "p"), (sa, 2, 2)),
            (("add", 1), ("notify", "c0", "p"), (sa, 1, 1)),       # a retry: answered, once
            (("add", 3), None, None),                              # no session, no reply
            (("add", 4), ("notify", "c3", "q"), (sa, 3, 2))]
    one_by_one = run(a, [Command("usr", p, m, priority, 7, ss) for p, m, ss in cmds])
    batched = run(b, [Commands(priority, 7, _flat(cmds))])
    assert batched == one_by_one
    assert b.log.last_index_term() == a.log.last_index_term()
    assert [b.log.fetch(i) for i in range(1, 8)] == [a.log.fetch(i) for i in range(1, 8)]
    assert b.machine_state == a.machine_state == (10, 4)
    # the retry was answered from the session table, the others once applied
    notes = [e for e in batched if isinstance(e, Notify)]
    assert sorted(c for n in notes for c, _ in n.applied) == ["c0", "c1", "c3"]


def test_a_batch_longer_than_the_low_priority_batch_leaves_over_several_flushes() -> None:
    s = leader(low_priority_batch_size=2)
    last = s.log.last_index_term()[0]
    eff = step(s, Commands("low", 1, _flat([(("add", i), None, None) for i in range(5)])))
    assert len(s.low_queue) == 5 and s.log.last_index_term()[0] == last
    assert eff and type(eff[0].event) is FlushCommands
    step(s, FlushCommands())
    assert len(s.low_queue) == 3 and s.log.last_index_term()[0] == last + 2


def test_a_follower_rejects_each_command_of_a_batch_in_order() -> None:
    s = new_server()
    cmds = [(1, ("notify", "c1", "p"), None), (2, None, None), (3, ("notify", "c3", "q"), None)]
    eff = step(s, Commands("low", 1, _flat(cmds)))
    casts = [e for e in eff if isinstance(e, Cast)]
    assert casts == [Cast("p", ("ra_event", None, ("rejected", ("not_leader", None, "c1")))),
                     Cast("q", ("ra_event", None, ("rejected", ("not_leader", None, "c3"))))]
    assert s.log.last_index_term()[0] == 0


def test_a_retry_alone_appends_nothing_and_schedules_no_flush() -> None:
    s = leader()
    sid = open_session(s)
    run(s, [Commands("normal", 1, [("add", 1), ("notify", "c", "p"), sid, 1, 1])])
    last = s.log.last_index_term()[0]
    eff = step(s, Commands("normal", 2, [("add", 1), ("notify", "c", "p"), sid, 1, 1]))
    assert s.log.last_index_term()[0] == last
    assert eff == [Notify("p", N1, [("c", 1)])]


GOOD = [("add", 1), ("notify", "c", "p"), 3, 2, 1]

HOSTILE = [
    Commands("urgent", 1, GOOD),                         # priority
    Commands("low", -1, GOOD),                           # ts
    Commands("low", True, GOOD),
    Commands("low", 1, []),                              # empty
    Commands("low", 1, tuple(GOOD)),                     # not a list
    Commands("low", 1, GOOD[:4]),                        # not whole commands
    Commands("low", 1, GOOD + [1]),
    Commands("low", 1, [1, "notify", None, 0, 0]),       # a mode that is not a tuple
    Commands("low", 1, [1, (), None, 0, 0]),             # an empty mode
    Commands("low", 1, [1, None, (3, 2, 1), 0, 0]),      # the session as a triple
    Commands("low", 1, [1, None, 3, 2, 3]),              # first_out above seq
    Commands("low", 1, [1, None, 3, 2, 0]),              # first_out 0
    Commands("low", 1, [1, None, 0, 2, 1]),              # session id 0
    Commands("low", 1, [1, None, True, 2, 1]),
    Commands("low", 1, [1, None, 3, True, 1]),
    Commands("low", 1, [1, None, 3, 2.0, 1]),
    Commands("low", 1, [1, None, None, 2, 1]),           # seqs without a session
    Commands("low", 1, GOOD * 50 + [1, None, 3, 2, 5]),   # one bad command, at the end
]


@pytest.mark.parametrize("msg", HOSTILE, ids=range(len(HOSTILE)))
def test_a_malformed_batch_is_dropped_whole_and_counted(msg: Commands) -> None:
    s = leader()
    last, queued = s.log.last_index_term(), len(s.low_queue)
    assert step(s, msg) == []
    assert s.dropped == {"bad commands": 1}
    assert s.log.last_index_term() == last and len(s.low_queue) == queued
    assert not s.flush_scheduled
