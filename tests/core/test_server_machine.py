"""Machine callbacks and effects in the core (↔ ra_machine_int_SUITE, ra_machine_version_SUITE),
and dropping malformed input."""
from ra.core import server
from ra.core.effects import Aux, NextEvent, Reply, SendMsg, SendRpc, Timer
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, Command, FlushCommands, Tick, TriggerElection,
)
from tests.core.helpers import N1, N2, N3, make_leader, new_server, step, sync


class Effects:
    """Returns the effects it is told to in the command; records state_enter calls."""

    def __init__(self):
        self.entered = []

    def init(self, config):
        return 0

    def apply(self, meta, cmd, state):
        if cmd[0] == "effects":
            return state + 1, "ok", list(cmd[1])
        return state + 1, "ok"

    def state_enter(self, role, state):
        self.entered.append(role)
        return [("send_msg", "watcher", ("entered", role))]

    def tick(self, time_ms, state):
        return [("send_msg", "watcher", ("tick", time_ms, state))]


def leader_with(machine, **kw):
    s = new_server(machine=machine, **kw)
    make_leader(s)
    sync(s)
    step(s, AppendEntriesReply(1, True, 2, 1, 1, N2))
    return s


def commit(s, *cmds):
    for c in cmds:
        step(s, Command("usr", c, ("await", ("f", c[0]))))
    step(s, FlushCommands())
    sync(s)
    last = s.log.last_index_term()[0]
    return step(s, AppendEntriesReply(1, True, last + 1, last, 1, N2))


def test_state_enter_is_called_on_every_role_change():
    m = Effects()
    s = new_server(machine=m)
    assert m.entered == ["follower"]
    eff = step(s, TriggerElection())
    assert m.entered == ["follower", "pre_vote"]
    assert SendMsg("watcher", ("entered", "pre_vote")) in eff
    make_leader(new_server(machine=m))
    assert "candidate" in m.entered and m.entered[-1] == "leader"


def test_leader_passes_send_msg_and_follower_does_not():
    s = leader_with(Effects())
    eff = commit(s, ("effects", [("send_msg", "pid1", "hello")]))
    assert SendMsg("pid1", "hello") in eff
    f = new_server(machine=Effects())
    step(f, AppendEntriesRpc(1, N2, 0, 0, 0, [(1, 1, ("noop", 0)),
                                              (2, 1, ("usr", ("effects", [("send_msg", "p", 1)]),
                                                      None, 0))]))
    eff = sync(f)
    step(f, AppendEntriesRpc(1, N2, 2, 2, 1, []))
    assert f.last_applied == 2
    assert not any(isinstance(e, SendMsg) for e in eff)


def test_aux_effects_reach_every_member():
    f = new_server(machine=Effects())
    step(f, AppendEntriesRpc(1, N2, 0, 0, 0, [(1, 1, ("noop", 0)),
                                              (2, 1, ("usr", ("effects", [("aux", "x")]),
                                                      None, 0))]))
    sync(f)
    eff = step(f, AppendEntriesRpc(1, N2, 2, 2, 1, []))
    assert Aux("x") in eff


def test_append_effect_appends_a_new_command_on_the_leader():
    s = leader_with(Effects())
    last = s.log.last_index_term()[0]
    eff = commit(s, ("effects", [("append", ("second",))]))
    assert s.log.fetch(last + 2)[2][:2] == ("usr", ("second",))
    assert NextEvent(FlushCommands()) in eff


def test_log_effect_reads_commands_back():
    s = leader_with(Effects())
    commit(s, ("a",), ("b",))
    got = []

    def reader(cmds):
        got.extend(cmds)
        return [("send_msg", "pid", tuple(cmds))]
    eff = commit(s, ("effects", [("log", [2, 3], reader)]))
    assert got == [("a",), ("b",)]
    assert SendMsg("pid", (("a",), ("b",))) in eff


def test_tick_runs_on_the_leader_only():
    s = leader_with(Effects())
    assert step(s, Tick(1234)) == [SendMsg("watcher", ("tick", 1234, 0))]
    f = new_server(machine=Effects())
    assert step(f, Tick(1234)) == []


def test_release_cursor_tuple_form_snapshots():
    s = leader_with(Effects())
    commit(s, ("effects", [("release_cursor", 2, 1)]))
    assert s.log.snapshot_index_term()[0] == 2


class V1:
    def init(self, config):
        return []

    def version(self):
        return 1

    def which_module(self, v):
        return {0: V0, 1: V1}[v]

    def apply(self, meta, cmd, state):
        return state + [("v1", cmd, meta["machine_version"])], "v1"


class V0(V1):
    def version(self):
        return 0

    def apply(self, meta, cmd, state):
        return state + [("v0", cmd, meta["machine_version"])], "v0"


def test_machine_upgrade_switches_module_at_the_noop_index():
    # a follower runs v0 until it applies the v1 leader's noop, then v1 from that index on
    f = new_server(machine=V1())
    f.machine, f.machine_version = V0(), 0      # as if recovered from a v0 log
    entries = [(1, 1, ("noop", 0)), (2, 1, ("usr", "a", None, 0)), (3, 2, ("noop", 1)),
               (4, 2, ("usr", "b", None, 0))]
    step(f, AppendEntriesRpc(2, N2, 0, 0, 0, entries))
    sync(f)
    step(f, AppendEntriesRpc(2, N2, 4, 4, 2, []))
    assert f.machine_state == [("v0", "a", 0), ("v1", ("machine_version", 0, 1), 1),
                               ("v1", "b", 1)]
    assert f.machine_version == 1


def test_leader_noop_carries_its_code_version():
    s = new_server(machine=V1())
    make_leader(s)
    assert s.log.fetch(1) == (1, 1, ("noop", 1))


def test_pre_vote_denied_to_older_code():
    s = new_server(machine=V1())
    s.machine_version = 1
    from ra.core.messages import PreVoteResult, PreVoteRpc
    eff = step(s, PreVoteRpc(1, 1, N2, 0, 0, 0))
    assert eff == [SendRpc(N2, PreVoteResult(0, 1, False, N1))]


def test_malformed_and_unknown_messages_are_dropped_untouched():
    s = leader_with(Effects())
    before = server.overview(s)
    for bad in [None, 42, ("x",), AppendEntriesRpc("t", N2, 0, 0, 0, []),
                AppendEntriesRpc(5, N2, 0, -1, 0, []),
                AppendEntriesRpc(5, N2, 0, 0, 0, [(7, 1, ("noop", 0))]),
                Command("usr", 1, ("await", "f"), priority="urgent"),
                AppendEntriesReply(1, "yes", 1, 1, 1, N3)]:
        assert step(s, bad) == []
    assert server.overview(s) == before and s.role == "leader"
    assert sum(s.dropped.values()) == 8
    assert step(s, Command("usr", ("x",), ("await", "f"))) == [NextEvent(FlushCommands())]


def test_reply_still_sent_with_effects():
    s = leader_with(Effects())
    eff = commit(s, ("effects", [("timer", "t1", 100)]))
    assert Reply(("f", "effects"), ("ok", "ok", N1)) in eff
    assert Timer("t1", 100) in eff
