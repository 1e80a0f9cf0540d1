"""delete_cluster's end-of-life entry in the core."""
from ra.core.effects import DeleteAndTerminate, Reply, SendRpc, StartHeartbeatTimeout
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, Command, FlushCommands, HeartbeatTimeout,
)
from tests.core.helpers import N1, N2, N3, make_leader, new_server, step, sync


def test_leader_answers_then_deletes_itself_after_telling_followers():
    s = new_server()
    make_leader(s)
    sync(s)
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))
    step(s, Command("delete_cluster", None, ("await", "f")))
    step(s, FlushCommands())
    sync(s)
    eff = step(s, AppendEntriesReply(1, True, 3, 2, 1, N2))
    assert Reply("f", ("ok", "ok", N1)) in eff
    assert not any(isinstance(e, DeleteAndTerminate) for e in eff)
    # the commit goes out to every follower at once
    assert {e.to for e in eff if isinstance(e, SendRpc)} == {N2, N3}
    assert all(e.msg.leader_commit == 2 for e in eff if isinstance(e, SendRpc))
    ticks = [step(s, HeartbeatTimeout()) for _ in range(3)]
    assert ticks[-1] == [DeleteAndTerminate()]
    assert StartHeartbeatTimeout() in ticks[0]


def test_follower_deletes_itself_when_it_applies_the_entry():
    f = new_server()
    step(f, AppendEntriesRpc(1, N2, 0, 0, 0, [(1, 1, ("noop", 0)), (2, 1, ("eol", None))]))
    sync(f)
    eff = step(f, AppendEntriesRpc(1, N2, 2, 2, 1, []))
    assert DeleteAndTerminate() in eff
