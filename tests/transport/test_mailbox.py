"""Mailbox between real processes on loopback: cast, call, deferred reply, errors, bad frames.

The ``mb`` under test is either kind of mailbox: the libzmq :class:`Mailbox` or the
:class:`DirectMailbox` (ZMTP on plain sockets) that clients, servers and WALs use; the peers
are libzmq mailboxes unless a test says otherwise."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import zmq

from ra.errors import NodeDown, NoProc, Timeout
from tests.transport.conftest import Peers, wait_until
from transport.cookie import default_password
from transport import From, Mailbox, codec
from transport.direct import DirectMailbox
from transport.mailbox import BaseMailbox
from transport.envelope import CALL, VERSION

pytestmark = pytest.mark.integration


@pytest.fixture(params=["tcp", "ipc"])
def endpoint(request: pytest.FixtureRequest, ipc_dir: Path) -> str:
    if request.param == "tcp":
        return "tcp://127.0.0.1:0"
    return f"ipc://{ipc_dir}/peer.sock"


@pytest.fixture(params=["zmq", "direct"])
def mb(request: pytest.FixtureRequest, ipc_dir: Path):
    kind = Mailbox if request.param == "zmq" else DirectMailbox
    m = kind(f"ipc://{ipc_dir}/me.sock")
    yield m
    m.close()


def test_call_and_cast_roundtrip(peers: Peers, endpoint: str, mb: BaseMailbox) -> None:
    _, addr = peers.start("echo", endpoint)
    assert addr.startswith(endpoint.split(":")[0])
    if endpoint.startswith("tcp"):
        assert not addr.endswith(":0") and int(addr.rsplit(":", 1)[1]) > 0
    msg = {"k": (1, b"v", {2, 3}), 2**70: [None, 1.5]}
    assert mb.call(addr, msg) == ("echo", msg)
    # cast: ask the peer to cast something back to us; it must arrive with the peer as sender
    mb.cast(addr, ("cast_back", mb.address, ("hello", 1)))
    env = mb.recv(timeout=5)
    assert env is not None and env.kind == "cast"
    assert env.payload == ("hello", 1) and env.frm == addr


def test_deferred_reply_answered_later(peers: Peers, mb: BaseMailbox, ipc_dir: Path) -> None:
    """The peer stores the caller's From and answers only when a third party releases it."""
    _, addr = peers.start("echo", "tcp://127.0.0.1:0")
    errors: list[BaseException] = []

    def releaser() -> None:
        try:
            with Mailbox(f"ipc://{ipc_dir}/rel.sock") as rel:
                # the peer has 1 received message (our defer call) before we release it
                wait_until(lambda: rel.call(addr, "counters")["received"] >= 2)
                rel.cast(addr, ("release", "late"))
        except BaseException as exc:  # surfaced in the main thread
            errors.append(exc)

    t = threading.Thread(target=releaser)
    t.start()
    try:
        assert mb.call(addr, ("defer",), timeout=5) == ("deferred", "late")
    finally:
        t.join(5)
    assert not errors


def test_from_is_a_storable_term(peers: Peers, mb: BaseMailbox) -> None:
    _, addr = peers.start("echo", "tcp://127.0.0.1:0")
    frm = mb.call(addr, ("from",))  # the peer replies with the From it received
    assert type(frm) is From and frm.addr == mb.address
    assert codec.decode(codec.encode(frm)) == frm


def test_abandoned_call_reply_is_dropped_as_stale(peers: Peers, mb: BaseMailbox) -> None:
    _, addr = peers.start("echo", "tcp://127.0.0.1:0")
    with pytest.raises(Timeout):
        mb.call(addr, ("defer",), timeout=0.2)
    mb.cast(addr, ("release", "too late"))
    assert mb.call(addr, "next") == ("echo", "next")  # not the stale deferred reply
    wait_until(lambda: mb.recv(0) is None and mb.counters["stale_reply"] == 1)


def test_call_to_dead_process_is_noproc_quickly(peers: Peers, endpoint: str, mb: BaseMailbox) -> None:
    p, addr = peers.start("echo", endpoint)
    assert mb.call(addr, 1) == ("echo", 1)
    peers.kill(p)
    t0 = time.monotonic()
    with pytest.raises(NoProc):
        mb.call(addr, 2, timeout=5)
    assert time.monotonic() - t0 < 0.5


def test_a_slow_callee_is_probed_after_a_few_of_its_reply_times(peers: Peers,
                                                                mb: BaseMailbox) -> None:
    p, addr = peers.start("echo", "tcp://127.0.0.1:0")
    # a callee that takes 40 ms: the first call probes it (after probe_after, 10 ms)...
    assert mb.call(addr, ("sleep", 0.04, 0)) == ("slept", 0)
    first = mb.counters["probes"]
    assert first >= 1
    # ...later calls wait 4x its usual reply time first: a loaded server is not probed on
    # every call (each probe is a TCP connection it has to accept)
    for k in range(1, 6):
        assert mb.call(addr, ("sleep", 0.04, k)) == ("slept", k)
    assert mb.counters["probes"] == first
    # and it is still found dead quickly
    peers.kill(p)
    t0 = time.monotonic()
    with pytest.raises(NoProc):
        mb.call(addr, 9, timeout=5)
    assert time.monotonic() - t0 < 0.5


def test_call_to_never_bound_address_is_noproc(mb: BaseMailbox, ipc_dir: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(NoProc):
        mb.call(f"ipc://{ipc_dir}/nobody.sock", 1, timeout=5)
    assert time.monotonic() - t0 < 0.5


def test_call_timeout_when_peer_does_not_answer(peers: Peers, mb: BaseMailbox) -> None:
    _, addr = peers.start("echo", "tcp://127.0.0.1:0")
    t0 = time.monotonic()
    with pytest.raises(Timeout) as ei:
        mb.call(addr, ("defer",), timeout=0.3)
    assert 0.3 <= time.monotonic() - t0 < 1.5
    assert ei.value.server == addr


def test_messages_arriving_during_a_call_are_kept_in_order(peers: Peers, ipc_dir: Path) -> None:
    _, a = peers.start("echo", f"ipc://{ipc_dir}/a.sock")
    me = Mailbox(f"ipc://{ipc_dir}/me.sock")
    try:
        # Ask the peer to cast three messages to us, then call it: the casts arrive while
        # we wait for the reply and must come out of recv() afterwards, in order.
        for i in range(3):
            me.cast(a, ("cast_back", me.address, i))
        assert me.call(a, "x") == ("echo", "x")
        assert me.pending
        got = [me.recv(1).payload for _ in range(3)]
        assert got == [0, 1, 2]
        assert not me.pending
    finally:
        me.close()


def test_server_can_call_out_while_serving(peers: Peers, ipc_dir: Path, mb: BaseMailbox) -> None:
    _, a = peers.start("echo", f"ipc://{ipc_dir}/a.sock")
    _, b = peers.start("echo", "tcp://127.0.0.1:0")
    assert mb.call(a, ("call", b, ("q", 1))) == ("relayed", ("echo", ("q", 1)))


def test_unencodable_message_raises_before_sending(peers: Peers, mb: BaseMailbox) -> None:
    _, addr = peers.start("echo", "tcp://127.0.0.1:0")
    with pytest.raises(TypeError, match=r"at \[1\]"):
        mb.call(addr, [1, object()])
    with pytest.raises(TypeError):
        mb.cast(addr, {1: object()})
    assert mb.call(addr, "counters")["received"] == 1  # only this call reached the peer


def test_calling_self_is_refused(mb: BaseMailbox) -> None:
    with pytest.raises(ValueError, match="calling_self"):
        mb.call(mb.address, 1)


def test_malformed_frames_are_dropped_counted_and_survived(peers: Peers, mb: BaseMailbox) -> None:
    _, addr = peers.start("echo", "tcp://127.0.0.1:0", f"max={1 << 16}")
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.plain_username, raw.plain_password = b"ra", default_password()  # the node secret
    raw.connect(addr)
    try:
        good = codec.encode([VERSION, CALL, mb.address, 1, "x"])
        raw.send(b"\xc1\xc1garbage")                                 # garbage
        raw.send(codec.encode([VERSION + 1, CALL, mb.address, 1, "x"]))  # wrong version
        raw.send(good[:-1])                                          # truncated msgpack
        raw.send(b"\x00" * ((1 << 16) + 1))                          # oversize (limit 64 KiB)
        raw.send_multipart([b"\xc1", good])                          # bad first of two: all dropped
        raw.send_multipart([good, b"extra"])  # valid first frame accepted, the extra dropped
        raw.send(codec.encode(["not", "an", "envelope"]))            # wrong shape
        raw.send(codec.encode([VERSION, 9, None, 1, "x"]))           # unknown kind
        drops = ("garbage", "bad_version", "oversize", "bad_frames", "bad_envelope")
        # raw and mb are different connections, unordered with each other: poll the counters.
        c = wait_until(lambda: c if sum((c := mb.call(addr, "counters"))[k] for k in drops) >= 8
                       else None)
        assert c["garbage"] == 2 and c["bad_version"] == 1 and c["oversize"] == 1, c
        assert c["bad_frames"] == 2 and c["bad_envelope"] == 2
        assert mb.call(addr, "still alive?") == ("echo", "still alive?")
    finally:
        raw.close(0)


def test_tcp_port_zero_and_default_ipc() -> None:
    with Mailbox("tcp://127.0.0.1:0") as a, Mailbox() as b:
        assert a.address.startswith("tcp://127.0.0.1:") and not a.address.endswith(":0")
        assert b.address.startswith("ipc://")
        path = b.address[6:]
        assert Path(path).exists()
    assert not Path(path).exists()


def test_multiple_endpoints_reply_address_follows_destination(peers: Peers, ipc_dir: Path) -> None:
    _, tcp_peer = peers.start("echo", "tcp://127.0.0.1:0")
    _, ipc_peer = peers.start("echo", f"ipc://{ipc_dir}/p.sock")
    with Mailbox(f"ipc://{ipc_dir}/me.sock", also=["tcp://127.0.0.1:0"]) as me:
        assert len(me.addresses) == 2 and me.addresses[0] == me.address
        my_tcp = me.addresses[1]
        assert my_tcp.startswith("tcp://127.0.0.1:")
        assert me.call(tcp_peer, ("from",)).addr == my_tcp
        assert me.call(ipc_peer, ("from",)).addr == me.address
        me.cast(tcp_peer, ("cast_back", my_tcp, "over tcp"))
        env = me.recv(5)
        assert env is not None and env.payload == "over tcp" and env.frm == tcp_peer
        with pytest.raises(ValueError, match="calling_self"):
            me.call(my_tcp, 1)


def test_node_marked_down_fails_calls_at_once(peers: Peers, mb: BaseMailbox) -> None:
    _, addr = peers.start("echo", "tcp://127.0.0.1:0")
    mb.note_node(addr, "tcp://127.0.0.1:1")  # pretend a daemon there owns the peer
    assert mb.call(addr, 1) == ("echo", 1)
    mb.set_node_down("tcp://127.0.0.1:1", True)
    t0 = time.monotonic()
    with pytest.raises(NodeDown):
        mb.call(addr, 2, timeout=5)
    assert time.monotonic() - t0 < 0.05
    mb.set_node_down("tcp://127.0.0.1:1", False)
    assert mb.call(addr, 3) == ("echo", 3)


def test_outgoing_sockets_are_bounded_lru(peers: Peers, ipc_dir: Path) -> None:
    _, keep = peers.start("echo", "tcp://127.0.0.1:0")
    with Mailbox(f"ipc://{ipc_dir}/me.sock", max_peers=3) as me:
        assert me.call(keep, 0) == ("echo", 0)
        for i in range(5):  # casts to nobody: each needs a DEALER
            me.cast(f"ipc://{ipc_dir}/gone{i}.sock", i)
            me.call(keep, i)  # keeps `keep` most recently used
        assert len(me.peers) == 3 and me.peers[-1] == keep
        assert me.counters["peers_evicted"] == 3


def test_ipc_file_removed_at_exit_without_close_but_not_by_forked_child(ipc_dir: Path) -> None:
    import os
    import subprocess
    import sys
    code = (
        "import os, sys\n"
        "from transport import Mailbox\n"
        f"m = Mailbox('ipc://{ipc_dir}/x.sock')\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sys.exit(0)\n"  # a normal exit: the child runs the inherited finalizer
        "os.waitpid(pid, 0)\n"
        "print(os.path.exists(m.address[6:]), flush=True)\n"  # parent's file survives child
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    assert not os.path.exists(ipc_dir / "x.sock")  # removed when the parent exited


def test_cast_to_dead_or_absent_peer_neither_blocks_nor_raises(peers: Peers, mb: BaseMailbox,
                                                               endpoint: str) -> None:
    p, addr = peers.start("echo", endpoint)
    assert mb.call(addr, 0) == ("echo", 0)
    peers.kill(p)
    t0 = time.monotonic()
    for i in range(2000):
        mb.cast(addr, ("lost", i))
        mb.cast("tcp://127.0.0.1:1", i)  # nobody ever listened there
    assert time.monotonic() - t0 < 2.0
    c = mb.counters
    assert c["sent"] + c["send_dropped"] == 4001
    with Mailbox("tcp://127.0.0.1:0", sndhwm=10) as small:
        for i in range(50):
            small.cast("tcp://127.0.0.1:1", i)  # beyond the queue limit: dropped, counted
        assert small.counters["send_dropped"] >= 40


def test_hub_max_peers_follows_the_open_file_limit(monkeypatch):
    import resource

    from transport.direct import hub_max_peers
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    for soft, want in ((20000, 10000), (1024, 512), (100, 256),
                       (resource.RLIM_INFINITY, 65536)):
        monkeypatch.setattr(resource, "getrlimit", lambda _r, s=soft: (s, hard))
        assert hub_max_peers() == want
