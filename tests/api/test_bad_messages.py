"""Issue 11: no input from the network crashes a process. Each case a user reported is here:
the process stays up (same pid) and the caller gets a typed error within its timeout; the
dropped message is counted where an operator looks (``ra.overview()``, the daemon's status,
``key_metrics``, the WAL's overview)."""
from __future__ import annotations

import time

import pytest

import ra
import wal as walpkg
from ra import messages as rm
from ra.node import system
from ra.wire import codec
from tests.api.conftest import COUNTER, wait_for
from transport.direct import DirectMailbox
from transport.messages import FdHeartbeat, FdStatus, FdSubscribe
from transport.registry import resolve

pytestmark = pytest.mark.integration


def _daemon_pid(addr: str) -> int:
    return ra.default_client()._daemon(addr, rm.NodeStatus(), 5)["pid"]


def _wal_ep(data_dir: str) -> str:
    return system.wal_endpoint(system.system_config({"data_dir": data_dir}))


@pytest.fixture
def solo(nodes, cname):
    """One node, one single-member counter cluster."""
    nodes.start(0)
    sid = nodes.sid(cname, 0)
    ra.start_cluster(cname, COUNTER, [sid])
    return nodes, sid


def test_fd_subscribe_without_its_argument_is_a_bad_request(solo):
    nodes, sid = solo
    addr = nodes.addrs[0]
    dpid, spid = _daemon_pid(addr), nodes.server_pid(sid.name, 0)
    c = ra.default_client()
    t0 = time.monotonic()
    with pytest.raises(ra.BadRequest) as ei:
        c._daemon(addr, ("$ra_fd", "subscribe"), 2)         # the legacy tuple, one arg short
    assert ei.value.reason == "unknown_message" and time.monotonic() - t0 < 2
    with pytest.raises(ra.BadRequest, match=r"FdSubscribe\.addr"):
        c._daemon(addr, FdSubscribe(5), 2)                   # typed, wrong field type
    with pytest.raises(ra.BadRequest, match="bad_kind"):
        c._daemon(addr, rm.MetricsReport(sid.name, {}), 2)   # a cast sent as a call
    assert _daemon_pid(addr) == dpid and nodes.server_pid(sid.name, 0) == spid
    assert ra.process_command(sid, 1)[0] == 1                # and every server on it serves
    bad = c._daemon(addr, rm.NodeStatus(), 5)["bad_messages"]
    assert bad["unknown_message"] == 1 and bad["bad_field:FdSubscribe.addr"] == 1
    assert bad["bad_kind:MetricsReport"] == 1


def test_malformed_casts_to_a_server_do_not_crash_it(solo):
    nodes, sid = solo
    spid = nodes.server_pid(sid.name, 0)
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        ep = resolve(mb, sid.name, sid.node)
        # far more than the 3 crashes in 5 s after which the supervisor would give up
        for _ in range(10):
            mb.cast(ep, ("$ra", "command"))
            mb.cast(ep, ("$ra",))
            mb.cast(ep, rm.CommandCall("usr", 1, "urgent"))   # typed, a bad priority
            mb.cast(ep, rm.PingCall())                        # a call sent as a cast
        with pytest.raises(ra.BadRequest, match=r"CommandCall\.priority"):
            ra.default_client()._ok(sid, rm.CommandCall("usr", 1, "urgent"), 2)
    assert ra.process_command(sid, 2)[0] == 2
    assert nodes.server_pid(sid.name, 0) == spid
    row = ra.overview(nodes.addrs[0])["servers"][sid.name]
    assert row["pid"] == spid
    assert row["bad_messages"]["unknown_message"] == 20
    assert row["bad_messages"]["bad_field:CommandCall.priority"] == 11
    assert row["bad_messages"]["bad_kind:PingCall"] == 10
    km = wait_for(lambda: ra.key_metrics(sid).get("bad_messages", {}).get("unknown_message"),
                  5, "key_metrics to show the drops")
    assert km == 20


def test_server_ids_the_doors_admit_but_serverid_refuses_are_dropped(solo):
    # the doors check a server id's shape (two non-empty str; a node as valid_node spells it,
    # which admits "tcp://h:1" and "h-:1"); ServerId also checks the node and raised, from the
    # server's loop, for a peer message's sender, a join's member, a transfer's target: the
    # server crashed and was restarted, once per message
    from ra.core.messages import AppendEntriesReply
    nodes, sid = solo
    spid = nodes.server_pid(sid.name, 0)
    c = ra.default_client()
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        ep = resolve(mb, sid.name, sid.node)
        for bad in (("x", "no-port-here"), ("x", "tcp://127.0.0.1:9"), ("x", "h-:9")):
            mb.cast(ep, ("$rpc", AppendEntriesReply(1, True, 1, 1, 1, bad, 0)))
        for bad in (("x", "tcp://127.0.0.1:9"), ("x", "h-:9")):
            with pytest.raises(ra.BadRequest, match="bad_server_id:join"):
                c._ok(sid, rm.CommandCall("join", bad), 2)
            with pytest.raises(ra.BadRequest, match="bad_server_id:transfer_leadership"):
                c._ok(sid, rm.TransferLeadershipCall(bad), 2)
    assert ra.process_command(sid, 3)[0] == 3
    row = ra.overview(nodes.addrs[0])["servers"][sid.name]
    assert row["pid"] == spid == nodes.server_pid(sid.name, 0)
    assert row["bad_messages"]["bad_sender:AppendEntriesReply"] == 3
    assert row["bad_messages"]["bad_server_id:join"] == 2
    assert row["bad_messages"]["bad_server_id:transfer_leadership"] == 2


def test_a_packed_append_with_a_corrupt_payload_is_dropped_and_counted(solo):
    """A peer's append_entries carries each entry as its encoded bytes: one that does not
    decode to exactly one term is refused at the door, before the core or the WAL see it."""
    from ra.core.messages import AppendEntriesPacked
    nodes, sid = solo
    spid = nodes.server_pid(sid.name, 0)
    good = codec.encode(("usr", 5, None, 1))
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        ep = resolve(mb, sid.name, sid.node)
        for bad in (good[:-1], good + b"\x01", b"\xc1"):
            mb.cast(ep, ("$rpc", AppendEntriesPacked(10**6, ("x", "127.0.0.1:9"), 0, 0, 0,
                                                     [10**6, 10**6], [good, bad])))
    row = wait_for(lambda: (r := ra.overview(nodes.addrs[0])["servers"][sid.name])
                   ["bad_messages"].get("bad_payload:AppendEntriesPacked") == 3 and r,
                   5, "the drops to be counted")
    assert row["pid"] == spid and row["role"] == "leader"
    assert ra.process_command(sid, 4)[0] == 4     # nothing of it was written or applied


def test_garbage_cast_to_the_wal_is_dropped_and_counted(solo):
    nodes, sid = solo
    ep = _wal_ep(nodes.data_dir(0))
    pid = nodes.log_child_pid(0, "ra_log_wal")
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        mb.cast(ep, 5)
        mb.cast(ep, ("append", "u", 0, [[1, 1, b"x"]]))            # the old tuple form
        res = mb.call(ep, ("overview",), 5)
        assert res == ("error", "bad_request", "unknown_message")
        ov = wait_for(lambda: walpkg.overview(mb, ep), 5, "the WAL's overview")
    assert ov["dropped"]["unknown_message"] == 3 and not ov["failed"]
    assert nodes.log_child_pid(0, "ra_log_wal") == pid
    assert ra.process_command(sid, 3)[0] == 3


def test_query_with_a_typo_in_its_module_is_a_query_error(solo):
    nodes, sid = solo
    spid = nodes.server_pid(sid.name, 0)
    t0 = time.monotonic()
    with pytest.raises(ra.QueryError) as ei:
        ra.local_query(sid, "typo_module:get_state", timeout=2)
    assert time.monotonic() - t0 < 2
    assert ei.value.module == "typo_module"
    assert "typo_module" in str(ei.value) and "PYTHONPATH" in str(ei.value)
    with pytest.raises(ra.QueryError, match="typo_module"):
        ra.consistent_query(sid, "typo_module:get_state", timeout=2)
    with pytest.raises(ra.QueryError, match="typo_module"):
        ra.leader_query(sid, ("typo_module", "get_state", []), timeout=2)
    with pytest.raises(ra.QueryError, match="no 'nope'"):
        ra.local_query(sid, "ra.testing.machines:nope", timeout=2)
    with pytest.raises(ra.QueryError, match="not a term"):
        ra.local_query(sid, "builtins:type", timeout=2)    # type(state) cannot be sent back
    with pytest.raises(ra.QueryError, match="not a term"):
        ra.consistent_query(sid, "builtins:type", timeout=2)
    assert nodes.server_pid(sid.name, 0) == spid
    assert ra.local_query(sid, "ra.testing.machines:get_state")[1] == 0


def test_forged_heartbeat_of_a_daemon_s_own_node_is_ignored(solo):
    """A heartbeat naming the daemon's own node would later have told every server on the
    node that its own node is down (and kept saying it: a daemon never heartbeats itself)."""
    nodes, sid = solo
    addr = nodes.addrs[0]
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        mb.cast("tcp://" + addr, FdHeartbeat(addr))
        assert mb.call("tcp://" + addr, FdStatus(), 5) == {}
