"""CURVE in real processes (issue 13 part 2): with RA_TRANSPORT=curve every mailbox of the
deployment (daemons, servers, WALs, segment writers, clients) runs ZMTP CURVE with the key pair
derived from the node secret: a 3-node cluster works end to end, encrypted, and a PLAIN peer
(the default mechanism) is refused at the handshake. (Interop with libzmq's CURVE is proven at
the mechanism level, both ways, in tests/transport/test_curve.py.)"""
from __future__ import annotations

import ra
from ra.testing import machines as M
from tests.api.conftest import COUNTER, Nodes, wait_for
from transport import cookie
from transport.direct import DirectMailbox
from transport.errors import HandshakeRefused
from transport.mechanism import plain_factory


def test_a_curve_cluster_works_and_refuses_plain(tmp_path, monkeypatch):
    monkeypatch.setenv(cookie.ENV_TRANSPORT, "curve")     # inherited by the daemons
    ns = Nodes(str(tmp_path), {})
    try:
        for i in range(3):
            ns.start(i)
        ids = [ns.sid("cv", i) for i in range(3)]
        with ra.Client() as c:                            # made after the switch: CURVE too
            c.start_cluster("cv", COUNTER, ids)
            assert [c.process_command(ids, 1)[0] for _ in range(20)] == list(range(1, 21))
            leader = c.members(ids)[1]
            assert c.consistent_query(ids, M.get_state)[0] == 20
            for sid in ids:
                wait_for(lambda s=sid: c.local_query(s, M.get_state)[1] == 20, 10,
                         f"{sid} replicated over CURVE")
        # a PLAIN peer (what every process uses by default) is refused at the handshake
        plain = plain_factory(cookie.default_password())
        with DirectMailbox("tcp://127.0.0.1:0", mechanism=plain) as mb:
            try:
                mb.call("tcp://" + leader.node, ("anything",), timeout=5)
                raise AssertionError("a PLAIN call got through to a CURVE node")
            except HandshakeRefused as e:
                assert "mechanism" in str(e)
    finally:
        ns.cleanup()


def test_a_libzmq_curve_caller_is_answered_at_its_from_address(tmp_path, monkeypatch):
    """Why a pyzmq CURVE DEALER calling a CURVE daemon once "got no reply": replies never come
    back on the caller's connection. A mailbox answers the call's From address over a
    connection of its own (as every ra process listens for its replies), so a DEALER waiting on
    itself gets nothing; a CURVE ROUTER at the From address, holding the key pair the daemon
    expects there, gets the reply."""
    import zmq

    from ra import messages as rm
    from transport import curve, envelope

    monkeypatch.setenv(cookie.ENV_TRANSPORT, "curve")
    monkeypatch.setenv(cookie.ENV_SECRET, "s" * 40)
    kp = curve.keypair_from_secret(b"s" * 40)
    ns = Nodes(str(tmp_path), {})
    ctx = zmq.Context()
    socks = []

    def sock(kind: int) -> zmq.Socket:
        s = ctx.socket(kind)
        s.linger = 0
        s.curve_publickey, s.curve_secretkey = kp.public, kp.secret
        socks.append(s)
        return s
    try:
        addr = ns.start(0)
        dealer = sock(zmq.DEALER)
        dealer.curve_serverkey = kp.public
        dealer.connect("tcp://" + addr)
        router = sock(zmq.ROUTER)
        router.curve_server = True
        back = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
        dealer.send(envelope.pack(envelope.CALL, back, 7, rm.NodePing()))
        assert router.poll(10_000), "no reply at the From address"
        assert envelope.unpack(router.recv_multipart()[1])[1:] == ("tcp://" + addr, 7, "pong")
        assert not dealer.poll(0)            # nothing ever arrives on the caller's connection
    finally:
        for s in socks:
            s.close()
        ctx.term()
        ns.cleanup()
