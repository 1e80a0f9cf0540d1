"""Machine callbacks and effects across real processes (↔ ra_machine_int_SUITE,
ra_machine_version_SUITE)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import ra
from ra import messages as rm
from ra.testing import machines as M
from tests.api.conftest import COUNTER, back_up, leader_of, wait_for

pytestmark = pytest.mark.integration


def effects_cluster(nodes, name, watcher=None):
    ids = [nodes.sid(name, i) for i in range(3)]
    ra.start_cluster(name, ("module", "ra.testing.machines:Effects", {"watcher": watcher}), ids)
    return ids


def events(ids):
    return ra.consistent_query(ids, M.get_events)[0]


def test_send_msg_reaches_a_client_mailbox(shared_three, cname):
    ids = effects_cluster(shared_three, cname)
    with ra.Client() as c:
        ra.process_command(ids, ("send", c.address, ("hello", 1)))
        ev = c.receive(timeout=5)
        assert ev == ra.RaEvent(None, ("hello", 1))
        leader = leader_of(ids)
        ra.process_command(ids, ("send_event", c.address, "x"))
        assert c.receive(timeout=5) == ra.RaEvent(leader, ("machine", "x"))


def _client_process(tmp):
    """A separate client process that prints its mailbox address and then waits."""
    code = ("import ra, sys, time\nc = ra.Client()\nprint(c.address, flush=True)\n"
            "time.sleep(120)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    addr = p.stdout.readline().strip()
    return p, addr


def test_monitored_client_killed_produces_down_command(shared_three, cname):
    ids = effects_cluster(shared_three, cname)
    p, addr = _client_process(None)
    try:
        ra.process_command(ids, ("monitor", addr))
        assert not [e for e in events(ids) if e[0] == "down"]
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        wait_for(lambda: ("down", addr, "noproc") in events(ids), what="down command")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_monitored_node_going_away_produces_nodedown(three):
    ids = [three.sid("c", i) for i in range(2)]
    ra.start_cluster("c", ("module", "ra.testing.machines:Effects", None), ids)
    # monitor the third node, which hosts no member
    ra.process_command(ids, ("monitor_node", three.addrs[2]))
    three.kill(2)
    wait_for(lambda: ("nodedown", three.addrs[2]) in events(ids), timeout=15,
             what="nodedown command")


def test_timer_fires_and_fires_on_new_leader_after_failover(three):
    ids = effects_cluster(three, "c")
    ra.process_command(ids, ("set_timer", "t1", 200))
    wait_for(lambda: ("timeout", "t1") in events(ids), what="timer t1")
    # a timer set, then the leader's node dies: the new leader re-arms it in state_enter
    ra.process_command(ids, ("set_timer", "t2", 1500))
    leader = leader_of(ids)
    i = next(k for k, a in three.addrs.items() if a == leader.node)
    three.kill(i)
    rest = [s for s in ids if s != leader]
    wait_for(lambda: ("timeout", "t2") in events(rest), timeout=20, what="t2 on new leader")


def test_log_effect_reads_back_the_right_commands(shared_three, cname):
    ids = effects_cluster(shared_three, cname)
    ra.process_command(ids, ("a", 1))
    ra.process_command(ids, ("b", 2))
    (idx, _), _, _ = ra.leader_query(ids, M.get_state)
    with ra.Client() as c:
        ra.process_command(ids, ("read_log", [idx - 1, idx], c.address))
        ev = c.receive(timeout=5)
    assert ev.event == ("log", [("a", 1), ("b", 2)])


def test_state_enter_sees_every_role_change(three):
    with ra.Client() as c:
        ids = effects_cluster(three, "c", watcher=c.address)
        leader = leader_of(ids)
        seen = []
        while ("state_enter", "leader") not in seen:
            seen.append(c.receive(timeout=5).event)
        assert ("state_enter", "follower") in seen
        assert ("state_enter", "candidate") in seen or ("state_enter", "pre_vote") in seen
        target = next(s for s in ids if s != leader)
        ra.transfer_leadership(leader, target)
        got = []
        while len([e for e in got if e == ("state_enter", "leader")]) < 1:
            got.append(c.receive(timeout=10).event)
        assert ("state_enter", "follower") in got or ("state_enter", "candidate") in got


def test_aux_call_and_cast(shared_three, cname):
    ids = effects_cluster(shared_three, cname)
    leader = leader_of(ids)
    assert ra.aux_command(leader, "count") == ("leader", 1)
    ra.cast_aux_command(leader, "count")
    wait_for(lambda: ra.aux_command(leader, "peek") == 2, what="aux cast")
    f = next(s for s in ids if s != leader)
    assert ra.aux_command(f, "count") == ("follower", 1)   # aux state is per member


def test_release_cursor_snapshots_and_new_member_installs_it(nodes):
    from tests.api.conftest import start_all
    start_all(nodes, 4)
    ids = [nodes.sid("c", i) for i in range(3)]
    ra.start_cluster("c", ("module", "ra.testing.machines:Effects", None), ids)
    for i in range(20):
        ra.process_command(ids, ("n", i))
    ra.process_command(ids, ("snapshot",))
    leader = leader_of(ids)
    wait_for(lambda: ra.key_metrics(leader)["snapshot_index"] >= 22, what="snapshot")
    new = nodes.sid("c", 3)
    ra.add_member(ids, new)
    ra.start_server({"cluster_name": "c", "id": new,
                     "machine": ("module", "ra.testing.machines:Effects", None),
                     "initial_members": ids + [new]})
    wait_for(lambda: len(ra.local_query(new, M.get_events)[1]) == 20, timeout=20,
             what="new member has the state")
    wait_for(lambda: ra.key_metrics(new)["snapshot_index"] >= 22, what="installed snapshot")


def test_machine_upgrade_switches_at_the_recorded_index_everywhere(three):
    ids = [three.sid("c", i) for i in range(3)]
    ra.start_cluster("c", ("module", "ra.testing.machines:Versioned0", None), ids)
    assert ra.process_command(ids, 1)[0] == ("v0", 0)
    for sid in ids:
        ra.stop_server(sid)
    wait_for(lambda: all(three.server_pid("c", i) is None for i in range(3)), what="stopped")
    for sid in ids:
        ra.restart_server(sid, {"machine": ("module", "ra.testing.machines:Versioned1", None)})
    assert ra.process_command(ids, 2, timeout=10)[0] == ("v1", 1)
    total, upgraded_at = ra.consistent_query(ids, M.get_state)[0]
    assert total == 21 and upgraded_at > 2
    for sid in ids:
        wait_for(lambda: ra.local_query(sid, M.get_state)[1] == (21, upgraded_at),
                 what="same upgrade index on every member")


def test_a_machine_that_raises_answers_machine_error_and_the_cluster_stays_up(three):
    """An exception in ``apply`` happens on every member alike: the command is applied as a
    no-op, the caller gets ``ra.MachineError`` with the exception's type and message, no
    server restarts, a retry under the same session gets the same error, and a restart
    replays the log to the same state."""
    ids = [three.sid("fragile", i) for i in range(3)]
    ra.start_cluster("fragile", ("module", "ra.testing.machines:Effects", None), ids)
    pids = {i: three.server_pid("fragile", i) for i in range(3)}
    ra.process_command(ids, ("a",))
    t0 = time.monotonic()
    with pytest.raises(ra.MachineError) as ei:
        ra.process_command(ids, ("fail", "x"), timeout=5)
    assert time.monotonic() - t0 < 2
    assert ei.value.type == "ValueError" and "refuses 'x'" in ei.value.detail
    ra.process_command(ids, ("b",))
    state, leader = ra.consistent_query(ids, M.get_events)
    assert state == [("cmd", ("a",)), ("cmd", ("b",))]
    assert {i: three.server_pid("fragile", i) for i in range(3)} == pids
    # every member holds the same state; a restarted member replays to it
    ra.stop_server(ids[0])
    ra.restart_server(ids[0])
    for sid in ids:
        wait_for(lambda: ra.local_query(sid, M.get_events)[1] == state,
                 what=f"{sid} at the same state")


def test_a_malformed_effect_answers_machine_error_and_the_cluster_stays_up(shared_three, cname):
    """A machine that returns a malformed effect (a wrong arity, a field of the wrong type, an
    unknown kind, no effect at all) fails that command with ``ra.MachineError`` of type
    ``InvalidEffect``, applied as a no-op on every member (its state change and its good effect
    are dropped too); no server restarts."""
    ns = shared_three
    ids = effects_cluster(ns, cname)
    pids = {i: ns.server_pid(cname, i) for i in range(3)}
    ra.process_command(ids, ("a",))
    for which in ("arity", "type", "unknown", "not_an_effect"):
        with pytest.raises(ra.MachineError) as ei:
            ra.process_command(ids, ("bad_effect", which), timeout=5)
        assert ei.value.type == "InvalidEffect", which
        assert "invalid machine effect" in ei.value.detail, which
    ra.process_command(ids, ("b",))
    state, _ = ra.consistent_query(ids, M.get_events)
    assert state == [("cmd", ("a",)), ("cmd", ("b",))]
    # the good effect beside the bad one (an aux cast) never ran
    assert ra.aux_command(leader_of(ids), "peek") == 0
    for sid in ids:
        wait_for(lambda: ra.local_query(sid, M.get_events)[1] == state,
                 what=f"{sid} at the same state")
    assert {i: ns.server_pid(cname, i) for i in range(3)} == pids


def test_crashing_machine_takes_down_only_its_own_server(three):
    ids = [three.sid("bad", i) for i in range(3)]
    ra.start_cluster("bad", ("module", "ra.testing.machines:Effects", None), ids)
    good = [three.sid("good", i) for i in range(3)]
    ra.start_cluster("good", COUNTER, good)
    pids = {i: three.server_pid("bad", i) for i in range(3)}
    with pytest.raises(ra.RaError):
        ra.process_command(ids, ("crash",), timeout=3)
    # every member applies the entry and crashes; its supervisor restarts it; the entry is
    # committed, so it crashes again, until its own supervisor gives up on it
    wait_for(lambda: any(three.server_pid("bad", i) != pids[i] for i in range(3)),
             what="a bad server restarted")
    # the overview reports the restarts of that server's own supervisor
    wait_for(lambda: sum(ra.overview(a)["servers"]["bad"]["restarts"]
                         for a in three.addrs.values()) >= 1, what="restarts reported")

    def gave_up() -> list[dict]:
        rows = [ra.overview(a)["servers"]["bad"] for a in three.addrs.values()]
        return [r for r in rows if r["status"] == "stopped" and "gave up" in r.get("error", "")]
    # a supervisor that gave up is gone (temporary), but its restarts and the why stay shown
    wait_for(gave_up, what="a bad server's supervisor gave up")
    assert all(r["restarts"] >= 1 and r["pid"] is None for r in gave_up())
    ov = ra.overview(three.addrs[0])
    assert ov["servers"]["good"]["restarts"] == 0
    assert ov["servers"]["good"]["role"] in ("leader", "follower")
    # the node-wide server supervisor never restarted: the crashes stayed inside
    st = ra.default_client()._daemon(three.addrs[0], rm.NodeStatus(), 5)
    server_sup = next(c for c in st["tree"]["children"] if c["id"] == "ra_server_sup_sup")
    assert server_sup["sup"]["restarts"] == 0
    # the daemons and the other cluster keep serving
    for _ in range(5):
        ra.process_command(good, 1)
    assert ra.consistent_query(good, M.get_state)[0] == 5
    for i in range(3):
        assert psutil.pid_exists(three.procs[i].pid)


@pytest.fixture
def small_log_nodes(tmp_path):
    """Three daemons whose WAL rolls over every few kB into 16-entry segments, so that a few
    hundred commands leave segment files for a snapshot to delete."""
    from tests.api.conftest import Nodes, start_all
    ns = Nodes(str(tmp_path), {"wal_max_size_bytes": 4096, "segment_max_entries": 16})
    try:
        yield start_all(ns, 3)
    finally:
        ns.cleanup()


def test_checkpoints_recover_restarts_and_promotion_truncates(small_log_nodes):
    ns = small_log_nodes
    name = "cp"
    ids = [ns.sid(name, i) for i in range(3)]
    ra.start_cluster(name, ("module", "ra.testing.machines:Checkpointing",
                            {"checkpoint_every": 40}), ids)

    def log_ov(i):
        return ra.overview(ns.addrs[i])["servers"][name]["log"]

    def seg_files(i):
        uid = ra.overview(ns.addrs[i])["servers"][name]["uid"]
        return sorted(os.listdir(os.path.join(ns.data_dir(i), uid, "segments")))

    total = 0
    for n in range(1, 131):
        total += n
        assert ra.process_command(ids, n)[0] == total
    # every member took the checkpoints after commands 40, 80 and 120, at the same indexes,
    # and truncated nothing
    wait_for(lambda: all(len(log_ov(i)["checkpoints"]) == 3 for i in range(3)),
             what="three checkpoints on every member")
    cps = [log_ov(i)["checkpoints"] for i in range(3)]
    assert cps[0] == cps[1] == cps[2]
    newest = cps[0][-1][0]
    assert all(log_ov(i)["snapshot"][0] == 0 for i in range(3))
    last = ra.key_metrics(leader_of(ids))["last_index"]
    wait_for(lambda: all(ra.key_metrics(s)["last_written_index"] >= last for s in ids),
             what="every member durable")

    # SIGKILL every node; each server restarts from its newest checkpoint and replays the rest
    for i in range(3):
        ns.kill(i)
    for i in range(3):
        ns.start(i)
    for sid in ids:
        back_up(sid)           # a node restarts its servers by itself
    for i in range(3):
        wait_for(lambda: log_ov(i)["recovered_from"] == ("checkpoint", newest), timeout=20,
                 what=f"member {i} recovered from its checkpoint")
    assert ra.consistent_query(ids, M.get_state, timeout=20)[0] == (total, 130, 40)
    for sid in ids:
        wait_for(lambda: ra.local_query(sid, M.get_state)[1] == (total, 130, 40),
                 what="every member has the state")

    # "promote": the newest checkpoint at or below it becomes the snapshot on every member
    wait_for(lambda: all(seg_files(i) for i in range(3)), what="segment files")
    assert all(log_ov(i)["segments"][0] == 1 for i in range(3))
    ra.process_command(ids, "promote")
    for i in range(3):
        wait_for(lambda: log_ov(i)["snapshot"][0] == newest, what=f"member {i} promoted")
        assert [c[0] for c in log_ov(i)["checkpoints"]] == []
    # the first snapshot has no fallback to keep entries for: the segments all stay
    assert all(log_ov(i)["segments"][0] == 1 for i in range(3))
    before = {i: len(seg_files(i)) for i in range(3)}
    for n in range(131, 171):
        total += n
        assert ra.process_command(ids, n)[0] == total
    wait_for(lambda: all(len(log_ov(i)["checkpoints"]) == 1 for i in range(3)),
             what="the checkpoint after command 160")
    second = log_ov(0)["checkpoints"][0][0]
    ra.process_command(ids, "promote")
    for i in range(3):
        wait_for(lambda: log_ov(i)["snapshot"][0] == second, what=f"member {i} promoted again")
        # the previous snapshot is now the fallback: segment files wholly below it are gone
        seg_first = log_ov(i)["segments"][0]
        assert newest - 16 < seg_first <= newest + 1, (i, seg_first, newest)
        assert len(seg_files(i)) < before[i]
    assert ra.consistent_query(ids, M.get_state)[0] == (total, 170, 40)


def test_mod_call_effect_runs_once_in_the_leaders_process(three, tmp_path):
    """``mod_call`` runs ``f(*args)`` in the leader's server process, once (not on followers)."""
    ids = [three.sid("mc", i) for i in range(3)]
    ra.start_cluster("mc", ("module", "ra.testing.machines:Effects", None), ids)
    path = str(tmp_path / "called")
    _, leader = ra.process_command(ids, ("mod_call", path, "hello"))
    leader_pid = three.server_pid(leader.name, next(i for i, a in three.addrs.items()
                                                    if a == leader.node))
    wait_for(lambda: os.path.exists(path), what="mod_call ran")
    ra.process_command(ids, ("a",))
    for sid in ids:                           # every member has applied past it: any call ran
        wait_for(lambda: ("cmd", ("a",)) in ra.local_query(sid, M.get_events)[1],
                 what=f"{sid} applied")
    with open(path) as f:
        assert f.read().split("\n")[:-1] == [f"hello {leader_pid}"]
