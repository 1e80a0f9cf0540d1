"""CURVE with a key pair per process and an allow-list (transport/curvekeys.py): the key and
allow-list files, and real DirectMailboxes on tcp: allowed peers talk both ways (the caller's
address is learned at its handshake, so the reply finds its key), a key not on the allow-list
and a wrong server key are refused at the handshake while the mailbox keeps serving, and libzmq's
own CURVE sockets holding the keys interoperate in both directions."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from zmq.utils import z85

from transport import curve, envelope
from transport import curvekeys as ck
from transport.curvekeys import Keyring
from transport.direct import DirectMailbox
from transport.errors import BadSecret, HandshakeRefused

from .conftest import wait_until


def _z(k: bytes) -> str:
    return z85.encode(k).decode()


# -- files -------------------------------------------------------------------------------------
def test_secret_key_file_in_either_format_and_its_mode_checked(tmp_path: Path) -> None:
    pub, sec = curve.create_keypair_files(tmp_path, "n1")
    kp = curve.load_keypair(sec)
    assert ck.load_secret_key(sec) == kp                       # libzmq's .key_secret
    bare = tmp_path / "bare"
    bare.write_text(f"# node 1\n{_z(kp.secret)}\n")
    bare.chmod(0o400)
    assert ck.load_secret_key(bare) == kp                      # one Z85 line
    bare.chmod(0o640)
    with pytest.raises(BadSecret, match="chmod 400"):
        ck.load_secret_key(bare)
    with pytest.raises(BadSecret, match="no CURVE secret key file"):
        ck.load_secret_key(tmp_path / "missing")
    junk = tmp_path / "junk"
    junk.write_text("not a key\n")
    junk.chmod(0o400)
    with pytest.raises(BadSecret, match="one Z85 secret key"):
        ck.load_secret_key(junk)
    junk.chmod(0o600)
    junk.write_text("tooshort\n")
    with pytest.raises(BadSecret, match="40 Z85"):
        ck.load_secret_key(junk)
    with pytest.raises(BadSecret, match="no secret-key"):
        os.chmod(pub, 0o400)
        ck.load_secret_key(pub)                                # the public half only


def test_allow_list_lines_comments_addresses_and_errors(tmp_path: Path) -> None:
    a, b = curve.generate_keypair(), curve.generate_keypair()
    text = (f"# the cluster\n\n{_z(a.public)}  127.0.0.1:5001   # node 1\n"
            f"{_z(b.public)}\n{_z(b.public)} ipc:///tmp/x.sock\n")
    assert ck.parse_allow(text, "f") == [(a.public, "tcp://127.0.0.1:5001"), (b.public, None),
                                         (b.public, "ipc:///tmp/x.sock")]
    for bad, why in ((f"{_z(a.public)} nohost", "not host:port"), ("short", "40 Z85"),
                     (f"{_z(a.public)} h:1 extra", "KEY \\[ADDRESS\\]")):
        with pytest.raises(ValueError, match=why):
            ck.parse_allow(bad, "f")
    f = tmp_path / "allow"
    f.write_text(text)
    f.chmod(0o666)
    with pytest.raises(BadSecret, match="writable by group or others"):
        ck.load_allow(f)
    f.chmod(0o644)
    assert len(ck.load_allow(f)) == 3


def test_server_key_order() -> None:
    me, n1, c = curve.generate_keypair(), curve.generate_keypair(), curve.generate_keypair()
    ring = Keyring(me, [(n1.public, "tcp://h:1"), (c.public, None)])
    assert ring.allowed == {me.public, n1.public, c.public}
    assert ring.server_key("tcp://h:1") == n1.public              # the allow-list's address
    assert ring.server_key("tcp://h:2") == me.public              # unknown: our own node's
    ring.note_node("tcp://h:2", "tcp://h:1")
    assert ring.server_key("tcp://h:2") == n1.public              # a process of node h:1
    ring._learn(c.public, {ck.ADDRESSES_PROPERTY: b"tcp://h:3 ipc:///p tcp://h:1 junk"})
    assert ring.server_key("tcp://h:3") == c.public               # announced at a handshake
    assert ring.server_key("ipc:///p") == c.public
    assert ring.server_key("tcp://h:1") == n1.public              # never over the allow-list


# -- mailboxes ---------------------------------------------------------------------------------
class Serving:
    """A mailbox answering every call with ("ok", payload) in a thread of its own."""

    def __init__(self, mb: DirectMailbox) -> None:
        self.mb, self.got = mb, []
        self.frm: list = []         # each message's sender address
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            e = self.mb.recv(0.02)
            if e is not None:
                self.got.append(e.payload)
                self.frm.append(e.frm)
                if e.kind == "call":
                    self.mb.reply(e.frm, ("ok", e.payload))

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)


@pytest.fixture
def keys() -> dict[str, curve.Keypair]:
    return {n: curve.generate_keypair() for n in ("node", "client", "rogue")}


def _node(keys: dict[str, curve.Keypair]) -> DirectMailbox:
    return DirectMailbox("tcp://127.0.0.1:0", mechanism=Keyring(
        keys["node"], [(keys["client"].public, None)]))


def _client(kp: curve.Keypair, node: DirectMailbox, node_key: bytes) -> DirectMailbox:
    return DirectMailbox("tcp://127.0.0.1:0", mechanism=Keyring(
        kp, [(node_key, node.address)]))


def test_allowed_peers_call_both_ways_and_a_key_not_allowed_is_refused(keys) -> None:
    with _node(keys) as node:
        srv = Serving(node)
        try:
            with _client(keys["client"], node, keys["node"].public) as cl:
                # the reply connects back to the client: its key was learned at the handshake
                assert cl.call(node.address, "hello", timeout=5) == ("ok", "hello")
                assert cl.counters["refused"] == 0
            with _client(keys["rogue"], node, keys["node"].public) as rogue, \
                    pytest.raises(HandshakeRefused, match="not allowed"):
                rogue.call(node.address, ("start_server_child", "evil"), timeout=5)
            # right keys but the wrong server key: the node cannot open the HELLO
            with _client(keys["client"], node, keys["rogue"].public) as lost, \
                    pytest.raises(HandshakeRefused, match="HELLO"):
                lost.call(node.address, "x", timeout=5)
            wait_until(lambda: node.counters["refused"] >= 2)
            with _client(keys["client"], node, keys["node"].public) as cl:
                assert cl.call(node.address, "again", timeout=5) == ("ok", "again")
        finally:
            srv.stop()
    assert srv.got == ["hello", "again"]          # nothing of the refused ones


def test_pyzmq_with_wrong_keys_is_refused(keys) -> None:
    ctx = zmq.Context()
    with _node(keys) as node:
        srv = Serving(node)
        socks = []
        try:
            for kp, server in ((keys["rogue"], keys["node"]), (keys["client"], keys["rogue"])):
                d = ctx.socket(zmq.DEALER)
                d.linger = 0
                d.curve_publickey, d.curve_secretkey = kp.public, kp.secret
                d.curve_serverkey = server.public
                d.connect(node.address)
                try:
                    d.send(envelope.pack(envelope.CAST, None, None, "sneak"), zmq.NOBLOCK)
                except zmq.Again:
                    pass                # refused before its queue even opened
                socks.append(d)
            wait_until(lambda: node.counters["refused"] >= 2, 10)
        finally:
            srv.stop()
            for d in socks:
                d.close()
            ctx.term()
    assert srv.got == [] and node.counters["received"] == 0


def test_libzmq_interop_both_ways(keys) -> None:
    """A pyzmq DEALER with the client's keys calls our mailbox; the reply goes to a pyzmq ROUTER
    (a CURVE server with the same keys) whose address the DEALER announced in its handshake
    metadata, as our own mailboxes do. Then our mailbox casts to that ROUTER by itself."""
    ctx = zmq.Context()
    cl = keys["client"]
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.curve_server = True
    router.curve_publickey, router.curve_secretkey = cl.public, cl.secret
    port = router.bind_to_random_port("tcp://127.0.0.1")
    back = f"tcp://127.0.0.1:{port}"
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.curve_publickey, dealer.curve_secretkey = cl.public, cl.secret
    dealer.curve_serverkey = keys["node"].public
    dealer.setsockopt(zmq.METADATA, f"{ck.ADDRESSES_PROPERTY}:{back}".encode())
    try:
        with _node(keys) as node:
            srv = Serving(node)
            try:
                dealer.connect(node.address)
                for i in range(50):
                    dealer.send(envelope.pack(envelope.CALL, back, i, ("n", i)))
                got = []
                while len(got) < 50:
                    assert router.poll(10_000), f"no reply after {len(got)}"
                    _ident, frame = router.recv_multipart()
                    kind, frm, ref, payload = envelope.unpack(frame)
                    got.append((kind, ref, payload))
                assert got == [(envelope.REPLY, i, ("ok", ("n", i))) for i in range(50)]
            finally:
                srv.stop()
            # our mailbox -> libzmq: a cast to the ROUTER (its key learned above)
            node.cast(back, "from the node")
            deadline = time.monotonic() + 10
            while True:
                node.recv(0.01)           # runs the non-blocking parts of the connection
                if router.poll(10):
                    _ident, frame = router.recv_multipart()
                    assert envelope.unpack(frame)[3] == "from the node"
                    break
                assert time.monotonic() < deadline, node.counters
    finally:
        dealer.close()
        router.close()
        ctx.term()


def test_the_readme_allow_list_example_parses() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = "# allow-list of cluster" + readme.split("# allow-list of cluster", 1)[1]
    entries = ck.parse_allow(block.split("```", 1)[0], "README.md")
    assert [a for _k, a in entries] == ["tcp://10.0.0.1:4001", "tcp://10.0.0.2:4001", None]


_Z85 = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
        " \n")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300),
                 st.lists(st.text(_Z85, min_size=38, max_size=42), max_size=4).map(" ".join)))
def test_any_allow_list_or_key_text_parses_or_is_a_value_error(text: str) -> None:
    for parse in (lambda: ck.parse_allow(text, "f"),
                  lambda: ck.parse_secret_key(text.encode("utf-8", "replace"), "f")):
        try:
            parse()
        except ValueError:
            pass


def test_a_frame_packed_by_one_process_of_a_node_is_forwarded_by_another(keys) -> None:
    """The WAL's DurableReply path: a follower packs its cast for a leader on another node
    (``pack_cast``) and hands it, with the key it expects there (``peer_key``), to the node's
    WAL, whose keyring knows nothing of the leader. The WAL forwards it (``forward``): the
    leader sees the follower's cast, from the follower's address. Without the key the WAL's
    handshake is refused and nothing arrives; with a wrong one likewise."""
    here, there = keys["node"], keys["client"]
    leader = DirectMailbox("tcp://127.0.0.1:0", mechanism=Keyring(there, [(here.public, None)]))
    srv = Serving(leader)
    try:
        with DirectMailbox("tcp://127.0.0.1:0", mechanism=Keyring(
                here, [(there.public, leader.address)])) as follower:
            frame = follower.pack_cast(leader.address, ("$rpc", "ack", 7))
            key = follower.peer_key(leader.address)
            assert key == there.public
            for k in (b"", keys["rogue"].public):
                with DirectMailbox("tcp://127.0.0.1:0", blocking_connect=False,
                                   mechanism=Keyring(here, [(there.public, None)])) as wal:
                    wal.forward(leader.address, frame, k)
                    deadline = time.monotonic() + 5
                    while wal.counters.get("refused_by_peer", 0) < 1:
                        assert time.monotonic() < deadline, wal.counters
                        wal.recv(0.02)
            assert srv.got == []
            with DirectMailbox("tcp://127.0.0.1:0", blocking_connect=False,
                               mechanism=Keyring(here, [(there.public, None)])) as wal:
                assert wal.forward(leader.address, frame, key)
                deadline = time.monotonic() + 5
                while not srv.got:
                    assert time.monotonic() < deadline, wal.counters
                    wal.recv(0.02)
                assert srv.got == [("$rpc", "ack", 7)]
                assert srv.frm == [follower.reply_address(leader.address)]
                # refused, whatever the key: a frame over the limit, an address that is not one
                assert not wal.forward("nowhere", frame, key)
                wal.max_frame_bytes = len(frame) - 1
                assert not wal.forward(leader.address, frame, key)
    finally:
        srv.stop()
        leader.close()
