"""Bad input: each a clear typed error, and nothing is written."""
from __future__ import annotations

import concurrent.futures
import os
import re
import time

import pytest
from typing import Any

import ra
from ra.node.directory import Directory
from tests.api.conftest import COUNTER, Nodes, wait_for

pytestmark = pytest.mark.integration


def test_unserialisable_command_raises_type_error_before_sending(cluster):
    with pytest.raises(TypeError, match="object"):
        ra.process_command(cluster, object())
    with pytest.raises(TypeError, match=r"\[1\]"):
        ra.process_command(cluster, [1, lambda: 0])
    with pytest.raises(TypeError):
        ra.pipeline_command(cluster[0], {"k": object()}, correlation=1)
    with pytest.raises(TypeError, match="correlation"):
        ra.pipeline_command(cluster[0], 1, correlation=object())
    assert ra.process_command(cluster, 1)[0] == 1       # only this one reached the log


def test_lambda_query_raises_type_error(cluster):
    with pytest.raises(TypeError, match="lambda|top-level"):
        ra.consistent_query(cluster, lambda s: s)

    def closure(s):
        return s
    with pytest.raises(TypeError, match="top-level"):
        ra.local_query(cluster[0], closure)


def test_unknown_server_on_live_node_is_noproc(shared_three):
    with pytest.raises(ra.NoProc):
        ra.process_command(shared_three.sid("nobody", 0), 1, timeout=2)
    with pytest.raises(ra.NoProc):
        ra.ping(shared_three.sid("nobody", 1))


def test_unknown_node_is_nodedown(shared_three):
    with pytest.raises(ra.NodeDown):
        ra.process_command(ra.ServerId("c", "127.0.0.1:9"), 1, timeout=2)
    with pytest.raises(ra.NodeDown):
        ra.restart_server(ra.ServerId("c", "127.0.0.1:9"))


def test_wrong_argument_types(shared_three):
    with pytest.raises(TypeError, match="server_loc"):
        ra.process_command("not-a-server", 1)
    with pytest.raises(TypeError, match="server_loc"):
        ra.process_command([], 1)
    with pytest.raises(TypeError, match="timeout"):
        ra.process_command(shared_three.sid("c", 0), 1, timeout="soon")
    with pytest.raises(ValueError, match="priority"):
        ra.pipeline_command(shared_three.sid("c", 0), 1, priority="urgent")
    with pytest.raises(TypeError):
        ra.start_cluster("c", COUNTER)
    with pytest.raises(TypeError):
        ra.new_uid(5)


def test_machine_that_does_not_import_is_invalid_config_and_writes_nothing(three):
    ids = [three.sid("fresh", i) for i in range(3)]
    with pytest.raises(ra.InvalidConfig) as ei:
        ra.start_cluster("fresh", ("module", "no_such_pkg.mod:Machine", None), ids)
    assert "machine" in str(ei.value) and "no_such_pkg" in str(ei.value)
    with pytest.raises(ra.InvalidConfig, match="machine"):
        ra.start_cluster("fresh", ("module", "ra.testing.machines:NoSuchClass", None), ids)
    for i in range(3):
        d = three.data_dir(i)
        assert not [x for x in os.listdir(d) if x not in ("wal", "ra_node.lock", "node.log")
                    and os.path.isdir(os.path.join(d, x))]
    # and the same names can be used afterwards
    assert ra.start_cluster("fresh", COUNTER, ids)[0]


def test_invalid_configs(shared_three):
    three = shared_three
    sid = three.sid("c", 0)
    with pytest.raises(ra.InvalidConfig, match="machine"):
        ra.start_cluster("c", ("bogus", "x:y", None), [sid])
    with pytest.raises(ra.InvalidConfig, match="cluster_name"):
        ra.start_server({"cluster_name": "", "id": sid, "machine": COUNTER,
                         "initial_members": [sid]})
    with pytest.raises(ra.InvalidConfig, match="election_timeout_ms"):
        ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                         "initial_members": [sid], "election_timeout_ms": -1})
    with pytest.raises(ra.InvalidConfig, match="no_such_key"):
        ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                         "initial_members": [sid], "no_such_key": 1})
    for key, bad in (("max_checkpoints", 0), ("group_commit_ms", -1), ("group_commit_ms", 0.5),
                     ("min_checkpoint_interval", -1), ("max_pipeline_count", True)):
        with pytest.raises(ra.InvalidConfig, match=key):
            ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                             "initial_members": [sid], key: bad})
    with pytest.raises(ra.InvalidConfig, match="max_checkpoints"):
        ra.restart_server(sid, {"max_checkpoints": "2"})
    with pytest.raises(ra.InvalidConfig, match="initial_members"):
        ra.start_server({"cluster_name": "c", "id": sid, "machine": COUNTER,
                         "initial_members": []})
    with pytest.raises(ra.InvalidConfig, match="wal_write_strategy"):
        ra.start(data_dir=three.data_dir(9), wal_write_strategy="sometimes")
    with pytest.raises(ra.InvalidConfig, match="segment_max_entries"):
        ra.start(data_dir=three.data_dir(9), segment_max_entries=0)


def test_a_forged_wire_config_is_refused_at_the_daemons_door_naming_the_key(shared_three):
    """What the API would never send (it checks first: tests/test_config_schema.py): the
    daemon's door checks the wire config with the same schema, refuses it naming the key,
    counts it, and starts nothing."""
    from ra import messages as rm
    from ra.node.daemon import node_call
    addr = shared_three.addrs[0]
    good = {"name": "forged", "uid": "forgedUID", "cluster_name": "forged",
            "initial_members": [["forged", addr]], "machine": list(COUNTER)}
    before = node_call(addr, rm.NodeStatus())["bad_messages"]
    for key, bad, reason in (
            ("heartbeat_ms", 0, "bad_field:StartServer.conf.heartbeat_ms"),
            ("group_commit_ms", True, "bad_field:StartServer.conf.group_commit_ms"),
            ("uid", "../escape", "bad_field:StartServer.conf.uid"),
            ("bogus", 1, "bad_field:StartServer.conf.unknown_key")):
        assert node_call(addr, rm.StartServer(dict(good, **{key: bad}))) == (
            "error", "bad_request", reason)
    assert node_call(addr, rm.RestartServer("forged", {"cluster_name": "x"})) == (
        "error", "bad_request", "bad_field:RestartServer.add_config.cluster_name")
    after = node_call(addr, rm.NodeStatus())["bad_messages"]
    assert after.get("bad_field:StartServer.conf.heartbeat_ms", 0) == \
        before.get("bad_field:StartServer.conf.heartbeat_ms", 0) + 1
    assert "forged" not in node_call(addr, rm.ListServers())
    # and through the client: a BadRequest that is an InvalidConfig naming the key
    c = ra.default_client()
    with pytest.raises(ra.BadRequest, match="StartServer.conf.tick_ms") as ei:
        c._daemon(addr, rm.StartServer(dict(good, tick_ms=-5)), 5)
    assert isinstance(ei.value, ra.InvalidConfig)
    assert (ei.value.key, ei.value.value, ei.value.allowed) == ("tick_ms", -5,
                                                               "a positive integer")
    with pytest.raises(ra.InvalidConfig) as ei:
        c._daemon(addr, rm.RestartServer("forged", {"machine": ["x", "y", None]}), 5)
    assert ei.value.key == "machine" and ei.value.value == ["x", "y", None]


def test_second_daemon_on_same_data_dir_fails_fast(shared_three):
    with pytest.raises(ra.AlreadyStarted, match="in use"):
        ra.start(data_dir=shared_three.data_dir(0))


def test_membership_errors(cluster):
    with pytest.raises(ra.MembershipError) as ei:
        ra.add_member(cluster, cluster[1])
    assert ei.value.reason == "already_member"
    with pytest.raises(ra.MembershipError) as ei:
        ra.remove_member(cluster, ra.ServerId("x", "127.0.0.1:1"))
    assert ei.value.reason == "not_member"
    with pytest.raises(ra.NotFound):
        ra.transfer_leadership(cluster[0], ra.ServerId("x", "127.0.0.1:1"))


# --- user code never runs in the daemon (issue 11 part 3) -------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BAD = "tests.api.bad_machines."
LOAD_TIMEOUT_MS = 2500


@pytest.fixture(scope="module")
def loader_node(tmp_path_factory):
    """One node whose servers give up loading after 2.5 s; tests/ importable by its servers
    (PYTHONPATH), and RA_TEST_MARK_DIR set for the marks machine."""
    tmp = tmp_path_factory.mktemp("loader")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        mp.setenv("RA_TEST_MARK_DIR", str(tmp))
        mp.setenv("RA_TEST_IMPORT_S", "3")
        ns = Nodes(str(tmp), {"load_timeout_ms": LOAD_TIMEOUT_MS})
        try:
            ns.start(0)
            yield ns
        finally:
            ns.cleanup()


def _daemon_pids(node: str) -> tuple[int, int]:
    from ra import messages as rm
    st = ra.default_client()._daemon(node, rm.NodeStatus(), 5.0)
    return st["pid"], st["forkserver_pid"]


def _assert_node_fine(node: str, pids: tuple[int, int]) -> None:
    """The daemon and its fork server are the same processes as before, and answer at once."""
    t0 = time.monotonic()
    assert _daemon_pids(node) == pids
    assert time.monotonic() - t0 < 1.0


def _module(mod: str) -> tuple:
    return ("module", BAD + mod, None)


@pytest.mark.parametrize("mod, reason", [
    ("exits:Machine", r"sys\.exit\(3\)"),
    ("raises:Machine", "RuntimeError: this module refuses"),
    ("ctor_raises:Machine", "ValueError: cannot build"),
    ("no_such_module:Machine", "ModuleNotFoundError"),
    ("os_exit:Machine", r"exited \(exit:7\)"),
])
def test_machine_that_fails_to_load_is_machine_load_error_and_the_node_lives(
        loader_node, cname, mod, reason):
    node = loader_node.addrs[0]
    pids = _daemon_pids(node)
    sid = ra.ServerId(cname, node)
    data_dir = loader_node.data_dir(0)
    before = set(os.listdir(data_dir))
    t0 = time.monotonic()
    with pytest.raises(ra.MachineLoadError) as ei:
        ra.start_server({"cluster_name": cname, "id": sid, "machine": _module(mod),
                         "initial_members": [sid]}, timeout=10)
    took = time.monotonic() - t0
    e = ei.value
    assert isinstance(e, ra.InvalidConfig) and e.key == "machine"
    assert e.node == node and e.server == cname and e.value[1] == BAD + mod
    msg = str(e)
    assert node in msg and BAD + mod in msg and "PYTHONPATH" in msg and "virtualenv" in msg
    assert re.search(reason, msg), msg
    assert took < 5.0, took
    _assert_node_fine(node, pids)
    # not restarted: it stays down, failed, with the reason; nothing written for it (its
    # process exits right after reporting: wait for that, then check it stays down)
    def exited() -> Any:
        o = ra.overview(node)["servers"][cname]
        return o if o["pid"] is None else None
    ov = wait_for(exited, 5, "the failed server's process to exit")
    assert ov["status"] == "failed" and re.search(reason, ov["error"])
    assert ra.key_metrics(sid)["state"] == "failed"
    time.sleep(0.3)
    assert ra.overview(node)["servers"][cname]["pid"] is None
    assert Directory(data_dir).uid_of(cname) is None
    assert not [x for x in set(os.listdir(data_dir)) - before
                if os.path.isdir(os.path.join(data_dir, x))]
    # fixed (another machine): the same name starts
    ra.start_server({"cluster_name": cname, "id": sid, "machine": COUNTER,
                     "initial_members": [sid]})
    ra.trigger_election(sid)
    assert ra.process_command(sid, 2)[0] == 2


def test_hanging_import_neither_blocks_the_node_nor_crash_loops(loader_node, cname):
    node = loader_node.addrs[0]
    pids = _daemon_pids(node)
    sid = ra.ServerId(cname, node)
    conf = {"cluster_name": cname, "id": sid, "machine": _module("hangs:Machine"),
            "initial_members": [sid]}
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(ra.Client().start_server, conf, timeout=10)
        # meanwhile the daemon answers at once, and shows the server loading
        time.sleep(0.3)
        for _ in range(5):
            t0 = time.monotonic()
            row = ra.overview(node, timeout=1)["servers"][cname]
            assert time.monotonic() - t0 < 0.5
            assert row["status"] == "loading"
            time.sleep(0.2)
        with pytest.raises(ra.MachineLoadError, match=r"did not finish within 2\.5 s") as ei:
            fut.result()
    assert "hangs" in str(ei.value) and "PYTHONPATH" in str(ei.value)
    _assert_node_fine(node, pids)
    row = ra.overview(node)["servers"][cname]
    assert row["status"] == "failed" and row["pid"] is None


def test_caller_timeout_shorter_than_the_load_says_the_import_is_still_running(
        loader_node, cname):
    node = loader_node.addrs[0]
    sid = ra.ServerId(cname, node)
    t0 = time.monotonic()
    with pytest.raises(ra.Timeout, match=r"still importing its machine .*hangs") as ei:
        ra.start_server({"cluster_name": cname, "id": sid, "machine": _module("hangs:Machine"),
                         "initial_members": [sid]}, timeout=1)
    assert time.monotonic() - t0 < 2.0
    assert "load_timeout_ms" in str(ei.value)
    wait_for(lambda: ra.overview(node)["servers"][cname]["status"] == "failed", 10,
             "the node to give the load up")


def test_slow_import_does_not_block_the_node(loader_node, cname):
    """The user's case: an import that takes seconds (3 s here, under a longer load timeout
    than the fixture's: a node of its own) while the daemon serves everyone else."""
    node = loader_node.addrs[0]
    other = ra.ServerId(cname + "o", node)
    ra.start_cluster(cname + "o", COUNTER, [other])
    tmp = loader_node.tmp
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        slow_nodes = Nodes(os.path.join(tmp, "slow"), {"load_timeout_ms": 10_000})
        try:
            n2 = slow_nodes.start(0)
            sid = ra.ServerId(cname, n2)
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                t0 = time.monotonic()
                fut = ex.submit(ra.Client().start_cluster, cname, _module("slow:Counter"),
                                [sid], timeout=15)
                time.sleep(0.5)
                while not fut.done():
                    t1 = time.monotonic()
                    assert ra.overview(n2, timeout=1)["servers"][cname]["status"] == "loading"
                    assert time.monotonic() - t1 < 0.5
                    time.sleep(0.2)
                    if time.monotonic() - t0 > 2.5:
                        break
                assert fut.result()[0] == [sid]
            assert time.monotonic() - t0 >= 3.0
            assert ra.process_command(sid, 4)[0] == 4
        finally:
            slow_nodes.cleanup()
    assert ra.process_command(other, 1)[0] == 1


def test_machine_code_runs_only_in_server_processes(loader_node, cname):
    node = loader_node.addrs[0]
    daemon, forkserver = _daemon_pids(node)
    ids = [ra.ServerId(cname, node)]
    ra.start_cluster(cname, _module("marks:Counter"), ids)
    ra.process_command(ids, 1)
    mark_dir = loader_node.tmp
    pids = {int(line) for f in os.listdir(mark_dir) if f.startswith("imported-")
            for line in open(os.path.join(mark_dir, f)).read().split()}
    server = loader_node.server_pid(cname, 0)
    assert server in pids and daemon not in pids and forkserver not in pids


def test_restart_with_a_machine_that_fails_keeps_the_old_config(loader_node, cname):
    node = loader_node.addrs[0]
    sid = ra.ServerId(cname, node)
    ra.start_cluster(cname, COUNTER, [sid])
    ra.process_command(sid, 5)
    ra.stop_server(sid)
    assert ra.key_metrics(sid) == {"state": "stopped"}       # not stale figures
    with pytest.raises(ra.MachineLoadError, match="exits"):
        ra.restart_server(sid, {"machine": _module("exits:Machine")})
    assert ra.overview(node)["servers"][cname]["status"] == "failed"
    ra.restart_server(sid)            # the stored config still names the counter
    ra.trigger_election(sid)
    assert ra.process_command(sid, 1)[0] == 6


def test_start_cluster_with_a_machine_that_does_not_load_anywhere(loader_node, cname):
    node = loader_node.addrs[0]
    pids = _daemon_pids(node)
    t0 = time.monotonic()
    with pytest.raises(ra.MachineLoadError, match="not formed") as ei:
        ra.start_cluster(cname, _module("exits:Machine"), [ra.ServerId(cname, node)])
    assert time.monotonic() - t0 < 5 and "exits" in str(ei.value)
    _assert_node_fine(node, pids)
    assert cname not in ra.overview(node)["servers"]        # cleaned up: the name is free


def test_query_module_that_exits_is_a_query_error(cluster):
    with pytest.raises(ra.RaError, match="sys.exit"):
        ra.local_query(cluster[0], BAD + "exits:get")
    assert ra.process_command(cluster, 1)[0] == 1         # the server is still there


# --- addresses and errors that keep their type (issue 11 part 5) ------------------------------

@pytest.mark.parametrize("bad", ["foo:bar", ":0", "127.0.0.1", "127.0.0.1:", "h:0",
                                 "h:70000", "a b:1"])
def test_bad_node_address_is_invalid_config_at_once(bad):
    with pytest.raises(ra.InvalidConfig, match="host:port") as ei:
        ra.ServerId("x", bad)
    assert isinstance(ei.value, ValueError)
    t0 = time.monotonic()
    for call in (lambda: ra.ping(("x", bad)), lambda: ra.overview(bad),
                 lambda: ra.process_command([("x", bad)], 1),
                 lambda: ra.start_cluster("x", COUNTER, [("x", bad)]),
                 lambda: ra.key_metrics(("x", bad))):
        with pytest.raises(ra.InvalidConfig, match="host:port"):
            call()
    assert time.monotonic() - t0 < 0.5
    with pytest.raises(TypeError, match="name"):
        ra.ServerId("", "127.0.0.1:1")


def test_server_id_is_still_a_plain_named_tuple():
    sid = ra.ServerId("x", "127.0.0.1:1")
    assert sid == ("x", "127.0.0.1:1") and hash(sid) == hash(("x", "127.0.0.1:1"))
    assert sid.name == "x" and sid._replace(name="y") == ("y", "127.0.0.1:1")
    assert ra.ServerId(*sid) == sid and sid._asdict() == {"name": "x", "node": "127.0.0.1:1"}
    with pytest.raises(ra.InvalidConfig):
        sid._replace(node="nope")


def test_invalid_config_from_the_daemon_keeps_key_value_allowed(shared_three):
    from ra import messages as rm
    from ra.client.api import _daemon_error
    from ra.errors import error_reply
    node = shared_three.addrs[0]
    # a malformed config never reaches the handler: the daemon's door refuses it
    with pytest.raises(ra.BadRequest, match="StartServer") as br:
        ra.default_client()._daemon(node, rm.StartServer({"name": ""}), 5)
    assert br.value.reason.startswith("bad_field:StartServer")
    # an InvalidConfig raised in the daemon crosses the wire with its key, value and allowed
    _, tag, text, fields = error_reply(ra.InvalidConfig("id", "", "a non-empty name"))
    e = _daemon_error(node, tag, text, fields)
    assert isinstance(e, ra.InvalidConfig)
    assert (e.key, e.value, e.allowed) == ("id", "", "a non-empty name")


def test_key_metrics_of_unknown_server_is_not_found(shared_three):
    with pytest.raises(ra.NotFound):
        ra.key_metrics(shared_three.sid("nobody", 0))


def test_await_started_holds_its_reply_until_the_start_settles(loader_node, cname):
    """``AwaitStarted`` (what ``start_server`` waits with): answered as soon as the server
    registers, after ``wait_ms`` while it loads, at once once settled; bad waits refused."""
    from ra import messages as rm
    node = loader_node.addrs[0]
    pids = _daemon_pids(node)
    cl = ra.Client()
    try:
        # a hanging import: held for the whole wait, then "loading"
        hang = ra.ServerId(cname + "h", node)
        cl._daemon(node, rm.StartServer({
            "name": hang.name, "uid": hang.name + "UID", "cluster_name": hang.name,
            "initial_members": [[hang.name, node]], "machine": list(_module("hangs:Machine"))}),
            5)
        t0 = time.monotonic()
        st = cl._daemon(node, rm.AwaitStarted(hang.name, 400), 5)
        took = time.monotonic() - t0
        assert st[0] == "loading" and "hangs" in st[1]["machine"][1], st
        assert 0.35 <= took < 2.0, took
        # a server that starts: answered when it registers, long before the wait is over
        ok = ra.ServerId(cname, node)
        cl._daemon(node, rm.StartServer({
            "name": ok.name, "uid": ok.name + "UID", "cluster_name": ok.name,
            "initial_members": [[ok.name, node]], "machine": list(COUNTER)}), 5)
        t0 = time.monotonic()
        st = cl._daemon(node, rm.AwaitStarted(ok.name, 20_000), 25)
        assert st[0] == "running" and isinstance(st[1], int), st
        assert time.monotonic() - t0 < 10.0
        assert cl._call(ok, rm.PingCall(), 2.0) is not None    # registered: it answers
        t0 = time.monotonic()
        assert cl._daemon(node, rm.AwaitStarted(ok.name, 20_000), 5)[0] == "running"
        assert time.monotonic() - t0 < 1.0          # settled: at once
        with pytest.raises(ra.NotFound):
            cl._daemon(node, rm.AwaitStarted(cname + "never", 1000), 5)
        for bad in (-1, 10**9, "1", 1.5, None):
            with pytest.raises(ra.RaError, match="AwaitStarted"):
                cl._daemon(node, rm.AwaitStarted(ok.name, bad), 5)   # type: ignore[arg-type]
        # the hanging one fails at the node's load timeout: a waiter is told "failed"
        st = cl._daemon(node, rm.AwaitStarted(hang.name, 10_000), 15)
        assert st[0] == "failed", st
    finally:
        cl.close()
    _assert_node_fine(node, pids)


def test_server_up_registers_subscribes_and_counts_as_loaded(loader_node, cname):
    """``ServerUp`` (a server's one call once recovered): registers its endpoints, subscribes
    it to the failure detector (the answer is the detector's view), refuses a taken name, and
    counts as the ``ServerLoaded`` of a server still loading (a restart's cast may be lost)."""
    from ra import messages as rm
    from transport import messages as tm
    node = loader_node.addrs[0]
    pids = _daemon_pids(node)
    cl = ra.Client()
    eps = [f"ipc:///tmp/{cname}-up.sock"]
    try:
        res = cl._daemon(node, rm.ServerUp(cname + "u", eps, os.getpid(), eps[0], {}), 5)
        assert res[0] == "ok" and isinstance(res[1], dict), res
        assert cl._daemon(node, tm.RegWhereis(cname + "u"), 5) == eps
        with pytest.raises(ra.RaError, match="already_registered"):
            cl._daemon(node, rm.ServerUp(cname + "u", [f"ipc:///tmp/{cname}-2.sock"],
                                         os.getppid(), eps[0], {}), 5)   # another live pid
        cl._daemon(node, tm.RegUnregister(cname + "u"), 5)
        cl._daemon(node, tm.FdUnsubscribe(eps[0]), 5)
        # a server whose import hangs never sends ServerLoaded; its ServerUp counts as loaded
        hang = ra.ServerId(cname + "h", node)
        pid = cl._daemon(node, rm.StartServer({
            "name": hang.name, "uid": hang.name + "UID", "cluster_name": hang.name,
            "initial_members": [[hang.name, node]], "machine": list(_module("hangs:Machine"))}),
            5)[1]
        assert cl._daemon(node, rm.StartStatus(hang.name), 5)[0] == "loading"
        res = cl._daemon(node, rm.ServerUp(hang.name, eps, pid, eps[0], {"state": "x"}), 5)
        assert res[0] == "ok", res
        assert cl._daemon(node, rm.AwaitStarted(hang.name, 5_000), 10)[0] == "running"
        assert cl._daemon(node, rm.ServerMetrics(hang.name), 5) == {"state": "x"}
        cl._daemon(node, tm.FdUnsubscribe(eps[0]), 5)
        cl._daemon(node, rm.ForceDeleteServer(hang.name), 10)
    finally:
        cl.close()
    _assert_node_fine(node, pids)


def test_a_reply_naming_a_leader_serverid_refuses_is_a_bad_reply():
    # the wire's node check admits "tcp://h:1" and "h-:1" (daemon endpoints), ServerId does
    # not: such a leader in a reply used to surface as InvalidConfig from ServerId(*leader),
    # as if the caller's own configuration were wrong
    from ra.client.api import _answer
    from tests.fuzz.gen import forged_sid
    good = forged_sid("x", "127.0.0.1:1")
    assert _answer(("ok", 1, good), "s") == ("ok", 1, good)
    for node in ("tcp://127.0.0.1:1", "h-:1", "y"):
        bad = forged_sid("x", node)
        for reply in (("ok", 1, bad), ("redirect", bad)):
            with pytest.raises(ra.BadReply):
                _answer(reply, "s")
