"""Fuzz a real node daemon, a real ra server and a real ``ra.Client`` (spawned as in
tests/api): random terms, mutated and truncated valid messages of every protocol the process
serves, valid messages with fields of the wrong type, raw frames. After each batch the process
is the same one (same pid) and still serves a real request; every call is answered, and a call
its door refuses is answered ``("error", "bad_request", reason)``.

Valid requests that would do what they ask — stop the node, start processes, change the
cluster's membership or delete it, impersonate a peer or the real server's name — are not
fuzz input: the generator replaces them (a malformed one of each type is still sent).
"""
from __future__ import annotations

import threading
import time
from typing import Any
from collections.abc import Callable

import pytest
from hypothesis import strategies as st

import ra
from ra import messages as rm
from ra.node import daemon as ranode
from ra.server import proc as server_proc
from ra.core import messages as cm
from ra.core import validate
from ra.core.types import ServerId
from tests.api.conftest import COUNTER, Nodes
from tests.fuzz.gen import FUZZ_BATCH, forged_sid, fuzz_count, items, terms
from tests.fuzz.runner import run_fuzz, run_streams, send_items
from transport import messages as tm
from transport import registry
from transport import Mailbox
from transport.direct import DirectMailbox
from wal import messages as wm

pytestmark = pytest.mark.integration

N = fuzz_count(2000)
NAME = "fz"


def _applies(res: Any, sid: Any) -> bool:
    """The cluster applied the command: the counter's reply is an int and the leader is the
    one member (the fuzz sends valid commands with any int, so the value's sign means
    nothing)."""
    reply, leader = res
    return type(reply) is int and leader == sid


@pytest.fixture(scope="module")
def node(tmp_path_factory: Any) -> Any:
    ns = Nodes(str(tmp_path_factory.mktemp("fuzz")), {})
    try:
        ns.start(0)
        sid = ns.sid(NAME, 0)
        ra.start_cluster(NAME, COUNTER, [sid])
        yield ns, sid
    finally:
        ns.cleanup()


def _daemon_pid(addr: str) -> int:
    return ra.default_client()._daemon(addr, rm.NodeStatus(), 5)["pid"]


def _drain(mb: Any) -> None:
    while mb.recv(0) is not None:
        pass
    mb._queue.clear()


# --- node daemon ----------------------------------------------------------------------------

def test_fuzz_node_daemon(node: Any, tmp_path: Any) -> None:
    ns, sid = node
    addr = ns.addrs[0]
    ep = "tcp://" + addr
    dpid, spid = _daemon_pid(addr), ns.server_pid(NAME, 0)
    fz = DirectMailbox("tcp://127.0.0.1:0")
    try:
        exemplars = [
            rm.NodePing(), rm.NodeStatus(), rm.NodeStop(), rm.WhichChildren(), rm.ListServers(),
            rm.ServerMetrics(NAME), rm.ServerMetrics("nope"), rm.StopServer("fzx"),
            rm.ForceDeleteServer("fzx"), rm.TerminateChild("fzx"), rm.RestartChild("fzx"),
            rm.DeleteChild("fzx"),
            rm.StartChild("fzx", "tests.node.children:sleeper", [], {}, "temporary", 100),
            rm.StartServer({"name": "fzx", "uid": "fzxUID", "cluster_name": "fzx",
                            "initial_members": [["fzx", addr]], "machine": list(COUNTER)}),
            rm.RestartServer("fzx", {"tick_ms": 500}), rm.MetricsReport("fzx", {"state": 1}),
            tm.RegRegister("fzx", ["ipc:///tmp/fzx.sock"], 4_000_000), tm.RegUnregister("fzx"),
            tm.RegWhereis(NAME), tm.RegRegistered(), tm.FdHeartbeat("127.0.0.1:1"),
            tm.FdHeartbeat(addr), tm.FdSubscribe(fz.address), tm.FdUnsubscribe(fz.address),
            tm.FdWatch("127.0.0.1:1"), tm.FdStatus(), rm.PingCall(), wm.WalOverview(),
            rm.StartStatus(NAME), rm.StartStatus("fzx"), rm.AwaitStarted(NAME, 50),
            rm.AwaitStarted("fzx", 0), rm.ServerLoaded("fzx", 1),
            rm.ServerUp("fzx", ["ipc:///tmp/fzx.sock"], 4_000_000, fz.address, {}),
            rm.ServerLoadFailed("fzx", 1, {"reason": "x"}),
        ]
        destructive = (rm.NodeStop, rm.StartServer, rm.StartChild)

        def skip(m: Any) -> bool:
            if ranode._check(m) is not None:
                return False
            return type(m) in destructive or getattr(m, "name", getattr(m, "id", None)) == NAME

        def alive() -> None:
            assert _daemon_pid(addr) == dpid, "the node daemon restarted"
            assert registry.whereis(fz, NAME, addr, 5)           # the registry serves
            assert ns.server_pid(NAME, 0) == spid                # its server did not die
            assert _applies(ra.process_command(sid, 1, timeout=10), sid)
            _drain(fz)

        run_fuzz(items(exemplars, fz.address, skip), N,
                 lambda b: send_items(fz, ep, b, ranode._door), alive, "node daemon")
        st_ = ra.default_client()._daemon(addr, rm.NodeStatus(), 5)
        assert sum(st_["bad_messages"].values()) > 0
    finally:
        fz.close()


# --- ra server ------------------------------------------------------------------------------

def _server_exemplars(sid: ServerId, me: str) -> list[Any]:
    other = ServerId("nobody", "127.0.0.1:1")
    q = "ra.testing.machines:get_state"
    return [
        rm.CommandCall("usr", 1), rm.CommandCall("usr", 2, "low", (1, 1, 1)),
        rm.CommandCall("join", other), rm.CommandCall("leave", sid),
        rm.CommandCall("delete_cluster", None), rm.CommandCall("open_session", None),
        rm.CommandCall("close_session", 99),
        rm.PipelineCast(1, "c1", me, "low", None), rm.PipelineCast(1, None, me, "normal", None),
        rm.PipelineBatch(me, "low", [1, "c2", None, 0, 0, 2, None, None, 0, 0]),
        rm.ConsistentQueryCall(q), rm.LocalQueryCall((q, [])), rm.LeaderQueryCall(q),
        rm.LocalQueryCall("typo_module:get_state"), rm.MembersCall(True), rm.MembersCall(False),
        rm.AuxCall(("x", 1)), rm.AuxCast(1), rm.InitialMembersCall(),
        rm.TransferLeadershipCall(other), rm.TriggerElectionCall(), rm.OverviewCall(),
        rm.KeyMetricsCall(), rm.PingCall(),
        wm.WalWritten("fzuid", [[1, 1, 1]]), wm.WalResendWrite("fzuid", 1),
        wm.WalStarted(1), wm.WalError("fzuid", "boom"),
        tm.NodeEvent("nodedown", "127.0.0.1:1"), tm.NodeEvent("nodeup", "127.0.0.1:1"),
        cm.AppendEntriesRpc(1, other, 0, 0, 0, [(1, 1, ("usr", 1))]),
        cm.AppendEntriesReply(1, True, 2, 1, 1, other), cm.RequestVoteRpc(1, other, 0, 0),
        cm.PreVoteRpc(1, 1, other, 0, 0), cm.HeartbeatRpc(1, 1, other),
        cm.TimeoutNow(1, other), tm.NodeEvent("nodeup", "127.0.0.1:1"),
        rm.NodeStatus(), tm.RegRegistered(),
    ]


def _server_skip(m: Any) -> bool:
    """Valid requests that change the cluster, and valid peer RPCs (Raft trusts its peers: a
    valid vote request with a higher term makes the leader step down, as it must)."""
    if type(m) in cm.PEER_MSGS:
        return validate.check(m) is None
    return (type(m) is rm.CommandCall and m.kind in ("join", "leave", "delete_cluster")
            and server_proc._check(m) is None)


def _server_door(p: Any, kind: str) -> str | None:
    return server_proc._door(p, kind)


def _wrap_peer(m: Any) -> Any:
    return ("$rpc", m) if type(m) in cm.PEER_MSGS else m


def test_fuzz_server(node: Any) -> None:
    ns, sid = node
    spid = ns.server_pid(NAME, 0)
    fz = DirectMailbox("tcp://127.0.0.1:0")
    try:
        ep = registry.resolve(fz, sid.name, sid.node)

        def alive() -> None:
            assert ns.server_pid(NAME, 0) == spid, "the server restarted"
            assert _applies(ra.process_command(sid, 1, timeout=10), sid)
            _drain(fz)

        run_fuzz(items(_server_exemplars(sid, fz.address), fz.address, _server_skip,
                       _wrap_peer), N,
                 lambda b: send_items(fz, ep, b, _server_door), alive, "server")
        row = ra.overview(ns.addrs[0])["servers"][NAME]
        assert row["pid"] == spid and sum(row["bad_messages"].values()) > 0
    finally:
        fz.close()


def test_fuzz_raw_connections_to_daemon_and_server(node: Any) -> None:
    """One layer down: raw connections with garbage, cut greetings and frames of random
    flags and lengths, to the daemon (libzmq) and to the server (our own ZMTP parser, on its
    tcp and its ipc address)."""
    ns, sid = node
    addr = ns.addrs[0]
    dpid, spid = _daemon_pid(addr), ns.server_pid(NAME, 0)
    with DirectMailbox("tcp://127.0.0.1:0") as mb:
        eps = registry.whereis(mb, NAME, addr)
    assert eps and any(e.startswith("ipc://") for e in eps)

    def alive() -> None:
        assert _daemon_pid(addr) == dpid and ns.server_pid(NAME, 0) == spid
        assert _applies(ra.process_command(sid, 1, timeout=10), sid)

    run_streams(["tcp://" + addr, *eps], N // 4, alive, "daemon + server")


# --- ra.Client ------------------------------------------------------------------------------

_EVENTS = [("ra_event", ServerId(NAME, "127.0.0.1:1"), ("applied", [("c1", 1)])),
           ("ra_event", None, ("rejected", ("not_leader", None, "c1"))),
           ("ra_event", ServerId(NAME, "127.0.0.1:1"), ("rejected", ("session_expired",
                                                                     None, "c9"))),
           ("ra_event", None, ("machine", 1)),
           ("ra_event", ServerId(NAME, "127.0.0.1:1"), ("applied_flat", ["c1", 1, ("c", 2), 2])),
           ("ra_event", ("x", "tcp://127.0.0.1:1"), ("applied_flat", ["c1", 1]))]


def _reply_exemplars(sid: ServerId) -> list[Any]:
    return [("ok", 1, sid), ("ok", 1, None), ("redirect", sid), ("redirect", None),
            ("error", "bad_request", "x"), ("error", "session_expired"),
            ("error", "not_a_term", "x"), ("error", ("machine_error", "E", "x")),
            ("ok", ((1, 1), 5, None), None), ("ok", ("pong", "leader"), sid),
            ("ok", ([sid], sid), sid), ("ok", {"peers": {}, "last_written_index": 1,
                                               "last_index": 1}, sid),
            ("ok", ("$query_error", "x", "mod"), sid), ("ok", 7, sid), ["ok", 1, None]]


@st.composite
def _mutated(draw: Any, exemplars: list[Any]) -> Any:
    t = draw(st.sampled_from(exemplars))
    how = draw(st.sampled_from(["same", "elem", "cut", "term"]))
    if how == "term":
        return draw(terms())
    if how == "cut" and type(t) in (tuple, list):
        return t[:draw(st.integers(0, len(t)))]
    if how == "elem" and type(t) in (tuple, list) and t:
        i = draw(st.integers(0, len(t) - 1))
        out = list(t)
        out[i] = draw(terms() | st.sampled_from([None, "ok", 5, ("a",), [], sid_like(),
                                                 sid_like("tcp://127.0.0.1:1"),
                                                 sid_like("h-:1")]))
        return tuple(out) if type(t) is tuple else out
    return t


def sid_like(node: str = "y") -> Any:
    """A server id whose node is not an address, as a forged reply can carry one (the
    defaults: no port; "tcp://h:1" and "h-:1" pass the wire's node check, not ServerId's)."""
    return forged_sid("x", node)


_API: list[tuple[str, Callable[[Any, ServerId], Any]]] = [
    ("process_command", lambda c, s: c.process_command(s, 1, timeout=0.2)),
    ("process_command_raw", lambda c, s: _without_sessions(c, s)),
    ("local_query", lambda c, s: c.local_query(s, "ra.testing.machines:get_state", 0.2)),
    ("leader_query", lambda c, s: c.leader_query(s, "ra.testing.machines:get_state", 0.2)),
    ("consistent_query", lambda c, s: c.consistent_query(s, "ra.testing.machines:get_state",
                                                         0.2)),
    ("members", lambda c, s: c.members(s, 0.2)),
    ("members_info", lambda c, s: c.members_info(s, 0.2)),
    ("initial_members", lambda c, s: c.initial_members(s, 0.2)),
    ("ping", lambda c, s: c.ping(s, 0.2)),
    ("aux_command", lambda c, s: c.aux_command(s, 1, 0.2)),
    ("transfer_leadership", lambda c, s: c.transfer_leadership(s, s, 0.2)),
    ("trigger_election", lambda c, s: c.trigger_election(s, 0.2)),
    ("add_member", lambda c, s: c.add_member(s, ServerId("x", "127.0.0.1:1"), 0.2)),
]


def _without_sessions(c: Any, s: ServerId) -> Any:
    c.sessions = False
    try:
        return c.process_command(s, 1, timeout=0.2)
    finally:
        c.sessions = True


class _FakeServer:
    """A mailbox registered as a server on the real node, answering every call with the next
    reply of ``replies`` (garbage, mostly)."""

    def __init__(self, node: str) -> None:
        self.mb = DirectMailbox("tcp://127.0.0.1:0")
        assert registry.register(self.mb, "fake", node) == "ok"
        self.replies: list[Any] = []
        self.answered = 0
        self.stop = False
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            env = self.mb.recv(0.05)
            if env is None or env.kind != "call":
                continue
            with self.lock:
                # out of garbage: a reply that ends the call at once
                reply = self.replies.pop(0) if self.replies else ("error", "bad_request", "-")
            self.mb.reply(env.frm, reply)
            self.answered += 1

    def close(self) -> None:
        self.stop = True
        self.thread.join(5)
        self.mb.close()


def test_fuzz_client_events_and_replies(node: Any) -> None:
    """Garbage casts (events) to a client's mailbox and garbage replies to its calls: its
    ``receive`` returns every message or raises ``Timeout``, every API call returns or raises
    a ``RaError`` — and the same client then works against the real cluster."""
    ns, sid = node
    fake = _FakeServer(ns.addrs[0])
    fsid = ServerId("fake", ns.addrs[0])
    client = ra.Client()
    # libzmq's I/O thread does the handshake with the client's mailbox, which only moves
    # when the client reads: a DirectMailbox here would wait for it in this very thread
    fz = Mailbox(None)
    sent = {"events": 0, "replies": 0}
    try:
        event_items = items([rm.PipelineCast(1, "c", fz.address), rm.PingCall()], fz.address)
        strategy = st.tuples(
            st.lists(st.sampled_from(_EVENTS) | _mutated(_EVENTS), min_size=FUZZ_BATCH // 2,
                     max_size=FUZZ_BATCH // 2),
            event_items.map(lambda b: b[:FUZZ_BATCH // 4]),
            st.lists(_mutated(_reply_exemplars(fsid)), min_size=FUZZ_BATCH // 3,
                     max_size=FUZZ_BATCH // 3),
            st.lists(st.sampled_from(range(len(_API))), min_size=4, max_size=4))

        def send(batch: Any) -> int:
            events, raw_items, replies, apis = batch
            for e in events:
                fz.cast(client.address, e)
            send_items(fz, client.address, [i for i in raw_items if i.kind != "call"])
            n = len(events) + len([i for i in raw_items if i.kind != "call"])
            # everything that arrived comes out of receive(), as an RaEvent, until Timeout
            got = 0
            while True:
                try:
                    ev = client.receive(timeout=0.02)
                except ra.Timeout:
                    break
                assert isinstance(ev, ra.RaEvent)
                got += 1
            assert got <= n
            with fake.lock:
                fake.replies[:] = list(replies)
            for k in apis:
                name, fn = _API[k]
                try:
                    fn(client, fsid)
                except ra.RaError:
                    pass           # any typed error: the point is that nothing else escapes
            sent["events"] += n
            sent["replies"] += len(replies) - len(fake.replies)
            return 0

        k = [0]

        def alive() -> None:
            assert _applies(client.process_command(sid, 1, timeout=10), sid)
            k[0] += 1
            corr = f"alive-{k[0]}"
            client.pipeline_command(sid, 1, correlation=corr)
            deadline = time.monotonic() + 10
            while True:      # the real event arrives, whatever garbage is still queued
                ev = client.receive(timeout=max(0.01, deadline - time.monotonic()))
                if (ev.leader == sid and ev.event[0] == "applied"
                        and corr in [c for c, _ in ev.event[1]]):
                    break

        _run_client(strategy, send, alive, sent)
    finally:
        fz.close()
        fake.close()
        client.close()


def _run_client(strategy: Any, send: Callable[[Any], int], alive: Callable[[], None],
                sent: dict[str, int]) -> None:
    import math

    from hypothesis import HealthCheck, Phase, given, settings
    t0 = time.monotonic()

    @settings(max_examples=math.ceil(N / (FUZZ_BATCH * 3 // 4)), deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(batch: Any) -> None:
        send(batch)
        alive()

    one()
    print(f"\nfuzz client: {sent}, {time.monotonic() - t0:.2f} s")
    assert sent["events"] + sent["replies"] >= N, sent

