"""Authentication at the ZMTP handshake, on real sockets: a DirectMailbox refuses a peer with no
or wrong credentials before reading any of its frames, and speaks PLAIN with libzmq both ways
(a pyzmq PLAIN client to our mailbox; our mailbox to a pyzmq PLAIN server checked by ZAP)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest
import zmq
from zmq.auth.thread import ThreadAuthenticator

from tests.transport.conftest import wait_until
from transport import envelope
from transport.cookie import plain_password
from transport.direct import DirectMailbox
from transport.envelope import CAST
from transport.errors import HandshakeRefused
from transport.mechanism import null_factory, plain_factory

pytestmark = pytest.mark.integration

SECRET = b"the-cluster-secret"
PW = plain_password(SECRET)


@pytest.fixture
def server() -> Iterator[DirectMailbox]:
    m = DirectMailbox("tcp://127.0.0.1:0", mechanism=plain_factory(PW),
                      blocking_connect=False)
    yield m
    m.close()


@pytest.fixture
def ctx() -> Iterator[zmq.Context[zmq.Socket[bytes]]]:
    c: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    yield c
    c.destroy(linger=0)


def _raw_dealer(ctx: zmq.Context[zmq.Socket[bytes]], to: str,
                password: bytes | None) -> zmq.Socket[bytes]:
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    if password is not None:
        s.plain_username = b"ra"
        s.plain_password = password
    s.connect(to)
    return s


def _pump(mb: DirectMailbox, until: float) -> list[object]:
    """Run ``mb`` until ``until``; what it received."""
    got = []
    while time.monotonic() < until:
        env = mb.recv(0.02)
        if env is not None:
            got.append(env.payload)
    return got


@pytest.mark.parametrize("password", [None, b"wrong", PW[:-1] + b"0"],
                         ids=["null", "wrong", "near-miss"])
def test_a_libzmq_peer_without_the_password_is_refused_before_any_frame(
        server: DirectMailbox, ctx: zmq.Context[zmq.Socket[bytes]], password: bytes | None,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "transport.direct")
    raw = _raw_dealer(ctx, server.address, password)
    raw.send(envelope.pack(CAST, "tcp://127.0.0.1:1", None, ("attack", 1)))
    deadline = time.monotonic() + 10
    got: list[object] = []
    while server.counters["refused"] < 1 and time.monotonic() < deadline:
        got += _pump(server, time.monotonic() + 0.05)
    assert server.counters["refused"] >= 1
    # a refused connection is closed before its frames are read: whatever libzmq retries
    # meanwhile is refused as well, and the frame never arrives
    got += _pump(server, time.monotonic() + 0.5)
    assert got == [] and server.counters["received"] == 0
    assert "handshake with 127.0.0.1:" in caplog.text
    # and the mailbox keeps serving a peer that has the password
    good = _raw_dealer(ctx, server.address, PW)
    good.send(envelope.pack(CAST, "tcp://127.0.0.1:1", None, ("hello", 2)))
    env = server.recv(5)
    assert env is not None and env.payload == ("hello", 2)


def test_a_libzmq_plain_client_with_the_derived_password_talks_to_our_mailbox(
        server: DirectMailbox, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
    raw = _raw_dealer(ctx, server.address, PW)
    for i in range(100):
        raw.send(envelope.pack(CAST, "tcp://127.0.0.1:1", None, i))
    got = [server.recv(5) for _ in range(100)]
    assert [e.payload for e in got if e is not None] == list(range(100))
    assert server.counters["refused"] == 0


@pytest.fixture
def zap_router(ctx: zmq.Context[zmq.Socket[bytes]]
               ) -> Iterator[tuple[zmq.Socket[bytes], str, ThreadAuthenticator]]:
    """A libzmq ROUTER as PLAIN server, its ZAP handler accepting only ("ra", PW)."""
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_plain("ra-test", {"ra": PW.decode()})   # pyzmq has no wildcard domain
    r = ctx.socket(zmq.ROUTER)
    r.linger = 0
    r.plain_server = True
    r.zap_domain = b"ra-test"
    r.bind("tcp://127.0.0.1:*")
    yield r, r.last_endpoint.decode(), auth
    r.close(0)
    auth.stop()


def test_our_mailbox_talks_to_a_libzmq_plain_server_checked_by_zap(
        zap_router: tuple[zmq.Socket[bytes], str, ThreadAuthenticator]) -> None:
    router, addr, _ = zap_router
    with DirectMailbox("tcp://127.0.0.1:0", mechanism=plain_factory(PW)) as me:
        me.cast(addr, ("over", "plain"))
        assert router.poll(5000)
        ident, frame = router.recv_multipart()
        assert envelope.unpack(frame)[3] == ("over", "plain")
        assert me.counters["refused_by_peer"] == 0


def test_a_libzmq_plain_server_refusing_our_password_is_a_handshake_refusal(
        zap_router: tuple[zmq.Socket[bytes], str, ThreadAuthenticator]) -> None:
    router, addr, _ = zap_router
    with DirectMailbox("tcp://127.0.0.1:0", mechanism=plain_factory(b"wrong")) as me:
        t0 = time.monotonic()
        with pytest.raises(HandshakeRefused, match="refused the connection at the handshake"):
            me.call(addr, "hello", timeout=5)
        assert time.monotonic() - t0 < 2          # told at once, not a 5 s Timeout
        assert me.counters["refused_by_peer"] == 1
    assert not router.poll(100)


class Pumped:
    """Runs a mailbox in a thread (the only one touching it) until stopped: what it got."""

    def __init__(self, mb: DirectMailbox) -> None:
        self.mb, self.got, self._stop = mb, [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.got += _pump(self.mb, time.monotonic() + 0.02)

    def stop(self) -> list[object]:
        self._stop.set()
        self._t.join(5)
        return self.got


@pytest.mark.parametrize("mech", [null_factory, plain_factory(b"wrong")], ids=["null", "wrong"])
@pytest.mark.parametrize("blocking", [True, False], ids=["client", "server-side"])
def test_our_mailbox_without_the_secret_gets_handshake_refused(
        server: DirectMailbox, mech: object, blocking: bool) -> None:
    pumped = Pumped(server)
    try:
        with DirectMailbox("tcp://127.0.0.1:0", mechanism=mech,  # type: ignore[arg-type]
                           blocking_connect=blocking) as bad:
            t0 = time.monotonic()
            with pytest.raises(HandshakeRefused, match="refused the connection"):
                bad.call(server.address, "x", timeout=5)
            assert time.monotonic() - t0 < 2          # told at once, not a 5 s Timeout
            assert bad.counters["refused_by_peer"] + bad.counters["refused"] == 1
            bad.cast(server.address, "y")     # a cast is never delivered either
            bad.recv(0.2)                     # (a non-blocking one: let its handshake run)
        wait_until(lambda: server.counters["refused"] >= 2)
    finally:
        got = pumped.stop()
    assert got == [] and server.counters["received"] == 0


def test_a_greeting_offering_another_mechanism_is_refused_with_error(
        server: DirectMailbox) -> None:
    import socket

    host, port = server.address[6:].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    # a NULL greeting and READY, then a message frame: the frame must never be read
    greet = b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" * 32
    ready = b"\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER"
    frame = envelope.pack(CAST, "tcp://127.0.0.1:1", None, "sneak")
    s.sendall(greet + bytes((4, len(ready))) + ready + bytes((0, len(frame))) + frame)
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _pump(server, time.monotonic() + 0.02)
        try:
            s.settimeout(0.02)
            chunk = s.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            break                      # closed by the server
        data += chunk
    s.close()
    assert data[:10] == greet[:10] and data[12:17] == b"PLAIN" and data[32] == 1  # as-server
    assert b"\x05ERROR" in data[64:] and b"mechanism mismatch" in data[64:]
    assert server.counters["refused"] == 1 and server.counters["received"] == 0
