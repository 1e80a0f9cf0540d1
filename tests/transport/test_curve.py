"""transport.curve: the CURVE mechanism's state machine alone (client against server in memory),
its key files, and interop with libzmq's own CURVE over real TCP sockets, both ways, driven by
a minimal ZMTP 3.0 framing written here (greeting, command and message frames)."""
from __future__ import annotations

import os
import random
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth
from hypothesis import given, settings
from hypothesis import strategies as st
from zmq.auth.thread import ThreadAuthenticator

from tests.transport.conftest import REPO
from transport.curve import (
    CurveClient, CurveServer, Keypair, create_keypair_files, decode_metadata, encode_metadata,
    error_body, generate_keypair, load_allowed_keys, load_keypair, load_public_key)
from transport.errors import HandshakeRefused

DEALER = {"Socket-Type": b"DEALER"}
ROUTER = {"Socket-Type": b"ROUTER"}
IO_TIMEOUT = 10.0       # any blocking read or write of a test connection; a hang fails the test


@pytest.fixture(scope="module")
def server_keys() -> Keypair:
    return generate_keypair()


@pytest.fixture(scope="module")
def client_keys() -> Keypair:
    return generate_keypair()


def handshake(cl: CurveClient, sv: CurveServer) -> None:
    """Run the whole handshake in memory, each side's output fed to the other."""
    to_server = cl.start()
    assert sv.start() == []
    while to_server:
        to_client = [out for body in to_server for out in sv.on_command(body)]
        to_server = [out for body in to_client for out in cl.on_command(body)]
    assert cl.ready and sv.ready


def pair(client_keys: Keypair, server_keys: Keypair) -> tuple[CurveClient, CurveServer]:
    cl = CurveClient(DEALER, keypair=client_keys, server_key=server_keys.public)
    sv = CurveServer(ROUTER, keypair=server_keys, allowed={client_keys.public})
    return cl, sv


def flip(body: bytes, i: int) -> bytes:
    return body[:i] + bytes((body[i] ^ 0x01,)) + body[i + 1:]


# -- the state machine alone -------------------------------------------------------------------
def test_handshake_exchanges_metadata_and_proves_keys(client_keys: Keypair,
                                                      server_keys: Keypair) -> None:
    cl = CurveClient({"Socket-Type": b"DEALER", "Identity": b"me"}, keypair=client_keys,
                     server_key=server_keys.public)
    sv = CurveServer(ROUTER, keypair=server_keys, allowed={client_keys.public})
    hello = cl.start()
    assert [len(b) for b in hello] == [200]
    welcome = sv.on_command(hello[0])
    assert [len(b) for b in welcome] == [168] and not sv.ready
    initiate = cl.on_command(welcome[0])
    assert initiate[0].startswith(b"\x08INITIATE") and len(initiate[0]) >= 257
    ready = sv.on_command(initiate[0])
    assert sv.ready and ready[0].startswith(b"\x05READY")
    assert cl.on_command(ready[0]) == [] and cl.ready
    assert sv.peer_properties == {"Socket-Type": b"DEALER", "Identity": b"me"}
    assert cl.peer_properties == ROUTER
    assert sv.peer_key == client_keys.public
    assert (cl.name, cl.as_server, sv.name, sv.as_server) == (b"CURVE", False, b"CURVE", True)


def test_messages_both_ways_with_more_flag_and_increasing_nonces(client_keys: Keypair,
                                                                 server_keys: Keypair) -> None:
    cl, sv = pair(client_keys, server_keys)
    handshake(cl, sv)
    nonces = []
    for frame, more in [(b"", False), (b"a", True), (b"x" * 5000, False), (bytes(255), True)]:
        body, is_command = cl.seal(frame, more)
        assert is_command is False and body.startswith(b"\x07MESSAGE")
        assert len(body) == 8 + 8 + 16 + 1 + len(frame)
        nonces.append(int.from_bytes(body[8:16], "big"))
        assert sv.unseal(body, False) == (frame, more)
        back, _ = sv.seal(frame, more)
        assert cl.unseal(back, True) == (frame, more)   # a command frame's MESSAGE also opens
    assert nonces == [3, 4, 5, 6]                       # after HELLO 1 and INITIATE 2


def test_seal_before_ready_is_a_programming_error(client_keys: Keypair,
                                                  server_keys: Keypair) -> None:
    cl, sv = pair(client_keys, server_keys)
    with pytest.raises(RuntimeError):
        cl.seal(b"x", False)
    with pytest.raises(RuntimeError):
        sv.unseal(b"\x07MESSAGE" + bytes(30), False)


def test_wrong_server_key_is_refused_at_hello(client_keys: Keypair, server_keys: Keypair) -> None:
    cl = CurveClient(DEALER, keypair=client_keys, server_key=generate_keypair().public)
    sv = CurveServer(ROUTER, keypair=server_keys, allowed={client_keys.public})
    with pytest.raises(HandshakeRefused, match="HELLO box"):
        sv.on_command(cl.start()[0])


def test_client_key_not_allowed_is_refused(client_keys: Keypair, server_keys: Keypair) -> None:
    cl = CurveClient(DEALER, keypair=client_keys, server_key=server_keys.public)
    sv = CurveServer(ROUTER, keypair=server_keys, allowed={generate_keypair().public})
    initiate = cl.on_command(sv.on_command(cl.start()[0])[0])
    with pytest.raises(HandshakeRefused, match="not allowed") as e:
        sv.on_command(initiate[0])
    assert e.value.reason == "client key not allowed" and not sv.ready
    # a predicate works as well as a set
    seen = []
    cl2 = CurveClient(DEALER, keypair=client_keys, server_key=server_keys.public)
    sv2 = CurveServer(ROUTER, keypair=server_keys, allowed=lambda k: seen.append(k) or True)
    handshake(cl2, sv2)
    assert seen == [client_keys.public]


def test_allow_list_from_a_key_directory(tmp_path: Path, server_keys: Keypair) -> None:
    _, sec = create_keypair_files(tmp_path, "c1")
    zmq.auth.create_certificates(str(tmp_path), "c2")
    ok = load_keypair(sec)
    for allowed in (tmp_path, str(tmp_path), load_allowed_keys(tmp_path)):
        cl = CurveClient(DEALER, keypair=ok, server_key=server_keys.public)
        handshake(cl, CurveServer(ROUTER, keypair=server_keys, allowed=allowed))
        stranger = CurveClient(DEALER, keypair=generate_keypair(), server_key=server_keys.public)
        sv = CurveServer(ROUTER, keypair=server_keys, allowed=allowed)
        with pytest.raises(HandshakeRefused, match="not allowed"):
            sv.on_command(stranger.on_command(sv.on_command(stranger.start()[0])[0])[0])


def test_server_error_refuses_the_client(client_keys: Keypair, server_keys: Keypair) -> None:
    cl, _ = pair(client_keys, server_keys)
    cl.start()
    with pytest.raises(HandshakeRefused, match="peer sent ERROR: 400"):
        cl.on_command(error_body("400"))
    assert error_body("x" * 300)[6] == 255


@pytest.mark.parametrize("step", ["hello", "welcome", "initiate", "ready"])
def test_any_tampered_handshake_command_is_refused(client_keys: Keypair, server_keys: Keypair,
                                                   step: str) -> None:
    rng = random.Random(step)
    cl, sv = pair(client_keys, server_keys)
    hello = cl.start()[0]
    if step == "hello":
        # the padding and version are checked too, not only the box
        for i in sorted({6, 8, 79, 80, 111, 112, 119, 120, 199, *rng.sample(range(6, 200), 20)}):
            fresh = CurveServer(ROUTER, keypair=server_keys, allowed={client_keys.public})
            with pytest.raises(HandshakeRefused):
                fresh.on_command(flip(hello, i))
        return
    welcome = sv.on_command(hello)[0]
    if step == "welcome":
        for i in range(8, 168, 7):
            c2 = CurveClient(DEALER, keypair=client_keys, server_key=server_keys.public)
            s2 = CurveServer(ROUTER, keypair=server_keys, allowed={client_keys.public})
            w2 = s2.on_command(c2.start()[0])[0]
            with pytest.raises(HandshakeRefused):
                c2.on_command(flip(w2, i))
        return
    initiate = cl.on_command(welcome)[0]
    if step == "initiate":
        for i in sorted({9, 24, 25, 104, 105, 112, 113, len(initiate) - 1,
                         *rng.sample(range(9, len(initiate)), 20)}):
            c2 = CurveClient(DEALER, keypair=client_keys, server_key=server_keys.public)
            s2 = CurveServer(ROUTER, keypair=server_keys, allowed={client_keys.public})
            i2 = c2.on_command(s2.on_command(c2.start()[0])[0])[0]
            with pytest.raises(HandshakeRefused):
                s2.on_command(flip(i2, i))
            assert not s2.ready
        return
    ready = sv.on_command(initiate)[0]
    for i in range(6, len(ready)):
        with pytest.raises(HandshakeRefused):
            cl.on_command(flip(ready, i))
    assert not cl.ready
    cl.on_command(ready)            # the true READY still completes it
    assert cl.ready


def test_cookie_and_initiate_of_another_connection_are_refused(client_keys: Keypair,
                                                               server_keys: Keypair) -> None:
    # connection 1's INITIATE replayed on connection 2: its cookie key was made for
    # connection 1 only
    c1, s1 = pair(client_keys, server_keys)
    initiate1 = c1.on_command(s1.on_command(c1.start()[0])[0])[0]
    c2, s2 = pair(client_keys, server_keys)
    s2.on_command(c2.start()[0])
    with pytest.raises(HandshakeRefused, match="cookie"):
        s2.on_command(initiate1)
    # and once connection 1 is ready, its INITIATE again is an unexpected command
    s1.on_command(initiate1)
    with pytest.raises(HandshakeRefused, match="unexpected"):
        s1.on_command(initiate1)


def test_initiate_nonce_must_exceed_hellos(client_keys: Keypair, server_keys: Keypair) -> None:
    cl, sv = pair(client_keys, server_keys)
    welcome = sv.on_command(cl.start()[0])[0]
    cl._nonce = 1           # a client reusing HELLO's short nonce for INITIATE
    with pytest.raises(HandshakeRefused, match="nonce"):
        sv.on_command(cl.on_command(welcome)[0])


def test_tampered_replayed_and_reordered_messages_are_refused(client_keys: Keypair,
                                                              server_keys: Keypair) -> None:
    cl, sv = pair(client_keys, server_keys)
    handshake(cl, sv)
    body, _ = cl.seal(b"payload" * 10, False)
    for i in range(len(body)):
        with pytest.raises(HandshakeRefused):
            sv.unseal(flip(body, i), False)
    assert sv.unseal(body, False) == (b"payload" * 10, False)   # tampering advanced nothing
    with pytest.raises(HandshakeRefused, match="replayed"):
        sv.unseal(body, False)
    first, _ = cl.seal(b"1", False)
    second, _ = cl.seal(b"2", False)
    assert sv.unseal(second, False) == (b"2", False)
    with pytest.raises(HandshakeRefused, match="out of order"):
        sv.unseal(first, False)
    # the server's direction has its own nonce prefix: a client's MESSAGE reflected back
    # to the client does not open
    third, _ = cl.seal(b"3", False)
    with pytest.raises(HandshakeRefused):
        cl.unseal(third, False)
    for bad in (b"", b"\x07MESSAGE", b"\x07MESSAGX" + bytes(40), body[:32]):
        with pytest.raises(HandshakeRefused):
            sv.unseal(bad, False)


@pytest.mark.parametrize("size", [0, 100, 222, 223, 5000])
def test_seal_frame_and_open_frame_are_seal_and_unseal_framed(client_keys: Keypair,
                                                              server_keys: Keypair,
                                                              size: int) -> None:
    """The mailbox's fast path: the same MESSAGE as seal's, with ZMTP's frame header (short up
    to 255 bytes of body, long above), opened in place; tampering and replay still refused."""
    cl, sv = pair(client_keys, server_keys)
    handshake(cl, sv)
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = bytes(cl.seal_frame(payload))
    h = 2 if wire[0] == 0 else 9
    assert wire[0] == (0 if size + 33 < 256 else 2)
    assert int.from_bytes(wire[1:h], "big") == len(wire) - h == size + 33
    buf = b"junk" + wire + b"more"      # opened where it lies, whatever surrounds it
    for i in (h, h + 9, h + 16, h + 20, len(wire) - 1):
        with pytest.raises(HandshakeRefused):
            sv.open_frame(b"junk" + flip(wire, i) + b"more", 4 + h, 4 + len(wire))
    assert sv.open_frame(bytearray(buf), 4 + h, 4 + len(wire)) == (payload, False)
    with pytest.raises(HandshakeRefused, match="replayed"):
        sv.open_frame(buf, 4 + h, 4 + len(wire))
    assert sv.unseal(cl.seal(b"x", True)[0], False) == (b"x", True)    # the two interleave
    assert cl.open_frame(sv.seal_frame(b"back"), 2, 2 + 33 + 4) == (b"back", False)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["hello", "initiate", "welcome", "ready", "message"]),
       st.binary(max_size=400), st.integers(0, 255))
def test_garbage_only_ever_refuses(client_keys: Keypair, server_keys: Keypair, step: str,
                                   junk: bytes, first: int) -> None:
    """Whatever a peer sends, the only exception is HandshakeRefused."""
    cl, sv = pair(client_keys, server_keys)
    body = bytes((first,)) + junk
    names = {"hello": b"\x05HELLO", "initiate": b"\x08INITIATE", "welcome": b"\x07WELCOME",
             "ready": b"\x05READY", "message": b"\x07MESSAGE"}
    named = names[step] + junk      # the right name, garbage after it
    if step == "message":
        handshake(cl, sv)
        targets: list[Callable[[bytes], object]] = [lambda b: sv.unseal(b, False),
                                                     lambda b: cl.unseal(b, True)]
    hello = b"" if step == "message" else cl.start()[0]
    if step == "hello":
        targets = [sv.on_command]
    elif step == "welcome":
        targets = [cl.on_command]
    elif step == "initiate":
        sv.on_command(hello)
        targets = [sv.on_command]
    elif step == "ready":
        cl.on_command(sv.on_command(hello)[0])
        targets = [cl.on_command]
    for target in targets:
        for b in (body, named):
            try:
                target(b)
            except HandshakeRefused:
                pass


def test_low_order_short_term_key_is_refused(client_keys: Keypair, server_keys: Keypair) -> None:
    cl, sv = pair(client_keys, server_keys)
    hello = cl.start()[0]
    zero_key = hello[:80] + bytes(32) + hello[112:]     # C' = 0: libsodium refuses the box
    with pytest.raises(HandshakeRefused):
        sv.on_command(zero_key)


def test_metadata_round_trip_and_validation() -> None:
    md = {"Socket-Type": b"DEALER", "Identity": b"", "X-Big": b"v" * 70000}
    assert decode_metadata(encode_metadata(md)) == md
    for bad in (b"\x00", b"\x05ab", b"\x01a\x00\x00\x00\x09xy", b"\x01\xff\x00\x00\x00\x00"):
        with pytest.raises(HandshakeRefused):
            decode_metadata(bad)
    with pytest.raises(ValueError):
        encode_metadata({"": b"x"})
    with pytest.raises(ValueError):
        encode_metadata({"a" * 256: b"x"})
    with pytest.raises(ValueError):
        encode_metadata({"Socket-Type": "DEALER"})  # type: ignore[dict-item]


def test_bad_arguments_are_typed_errors(client_keys: Keypair) -> None:
    with pytest.raises(ValueError, match="server_key"):
        CurveClient(DEALER, keypair=client_keys, server_key=b"short")
    with pytest.raises(ValueError, match="allowed"):
        CurveServer(ROUTER, keypair=client_keys, allowed={b"x" * 31})
    with pytest.raises(TypeError):
        CurveServer(ROUTER, keypair=(b"a", b"b"), allowed=set())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not belong"):
        Keypair(generate_keypair().public, client_keys.secret)
    assert client_keys.secret.hex() not in repr(client_keys)


# -- key files ---------------------------------------------------------------------------------
def test_key_files_interoperate_with_pyzmq(tmp_path: Path) -> None:
    pub, sec = create_keypair_files(tmp_path, "node1")
    assert stat.S_IMODE(os.stat(sec).st_mode) == 0o600
    mine = load_keypair(sec)
    assert load_public_key(pub) == mine.public
    z_pub, z_sec = zmq.auth.load_certificate(sec)       # pyzmq reads ours
    assert (z_pub, z_sec) == (zmq.utils.z85.encode(mine.public),
                              zmq.utils.z85.encode(mine.secret))
    assert zmq.auth.load_certificate(pub) == (z_pub, None)
    zpub_file, zsec_file = zmq.auth.create_certificates(str(tmp_path), "node2")   # we read its
    theirs = load_keypair(zsec_file)
    assert load_public_key(zpub_file) == theirs.public
    assert load_allowed_keys(tmp_path) == {mine.public, theirs.public}
    with pytest.raises(FileExistsError):
        create_keypair_files(tmp_path, "node1")
    with pytest.raises(ValueError, match="no secret-key"):
        load_keypair(pub)
    bad = tmp_path / "bad.key_secret"
    bad.write_text(Path(sec).read_text().replace(
        zmq.utils.z85.encode(mine.public).decode(), zmq.utils.z85.encode(theirs.public).decode()))
    with pytest.raises(ValueError, match="does not belong"):
        load_keypair(bad)
    (tmp_path / "junk.key").write_text('curve\n    public-key = "tooshort"\n')
    with pytest.raises(ValueError, match="40 Z85"):
        load_allowed_keys(tmp_path)
    for junk in ("~" * 40, "#" * 40):      # not Z85; Z85 above 2^32 per 5 characters
        (tmp_path / "junk.key").write_text(f'curve\n    public-key = "{junk}"\n')
        with pytest.raises(ValueError, match="not Z85"):
            load_allowed_keys(tmp_path)
    with pytest.raises(ValueError, match="directory"):
        load_allowed_keys(tmp_path / "nope")


def test_keygen_command(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "transport.curve", "keygen", str(tmp_path / "keys"), "n1"]
    r = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    sec = tmp_path / "keys" / "n1.key_secret"
    assert r.stdout.split() == [str(tmp_path / "keys" / "n1.key"), str(sec)]
    assert stat.S_IMODE(sec.stat().st_mode) == 0o600
    load_keypair(sec)
    again = subprocess.run(run, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert again.returncode == 1 and "exists" in again.stderr
    usage = subprocess.run(run[:3], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert usage.returncode == 2 and "usage" in usage.stderr


# -- a minimal ZMTP 3.0 connection over a real socket, driven by a mechanism -------------------
_SIGNATURE = b"\xff" + bytes(8) + b"\x7f"
_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04


class Zmtp:
    """One ZMTP 3.0 connection on a blocking socket (every read and write bounded by
    IO_TIMEOUT) whose security is the given mechanism."""

    def __init__(self, sock: socket.socket, mech: CurveClient | CurveServer) -> None:
        sock.settimeout(IO_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.mech = sock, mech

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ConnectionError("peer closed the connection")
            buf += chunk
        return bytes(buf)

    def write_frame(self, flags: int, body: bytes) -> None:
        n = len(body)
        head = bytes((flags, n)) if n < 256 else bytes((flags | _LONG,)) + n.to_bytes(8, "big")
        self.sock.sendall(head + body)

    def read_frame(self) -> tuple[int, bytes]:
        flags = self._read(1)[0]
        n = self._read(8 if flags & _LONG else 1)
        return flags, self._read(int.from_bytes(n, "big"))

    def handshake(self) -> None:
        mech = self.mech
        self.sock.sendall(_SIGNATURE + b"\x03\x00" + mech.name.ljust(20, b"\x00")
                          + bytes((mech.as_server,)) + bytes(31))
        greeting = self._read(64)
        if greeting[:1] != b"\xff" or greeting[9:10] != b"\x7f" or greeting[10] != 3:
            raise ConnectionError(f"not a ZMTP 3 greeting: {greeting!r}")
        if greeting[12:32].rstrip(b"\x00") != mech.name:
            raise HandshakeRefused(f"peer mechanism {greeting[12:32]!r}")
        for body in mech.start():
            self.write_frame(_COMMAND, body)
        while not mech.ready:
            flags, body = self.read_frame()
            if not flags & _COMMAND:
                raise HandshakeRefused("message frame during the handshake")
            try:
                out = mech.on_command(body)
            except HandshakeRefused as e:
                if mech.as_server:      # RFC 26: only the server sends ERROR
                    self.write_frame(_COMMAND, error_body(e.reason))
                raise
            for b in out:
                self.write_frame(_COMMAND, b)

    def send(self, frames: list[bytes]) -> None:
        for i, frame in enumerate(frames):
            more = i < len(frames) - 1
            body, is_command = self.mech.seal(frame, more)
            self.write_frame(_COMMAND if is_command else (_MORE if more else 0), body)

    def recv(self) -> list[bytes]:
        frames = []
        while True:
            flags, body = self.read_frame()
            frame, more = self.mech.unseal(body, bool(flags & _COMMAND))
            frames.append(frame)
            if not more:
                return frames


class Listener:
    """A thread that accepts ONE connection on 127.0.0.1, runs ``mech`` as the server, then
    echoes every message until the peer closes. What it raised is kept in ``error``."""

    def __init__(self, mech: CurveServer) -> None:
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(IO_TIMEOUT)
        self.port = self.lsock.getsockname()[1]
        self.mech = mech
        self.error: BaseException | None = None
        self.echoed = 0
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.conn, _ = self.lsock.accept()
            z = Zmtp(self.conn, self.mech)
            z.handshake()
            while True:
                m = z.recv()
                self.echoed += 1        # before the echo: the client checks it on receipt
                z.send(m)
        except BaseException as e:
            self.error = e
        finally:
            if self.conn is not None:
                self.conn.close()

    def join(self) -> BaseException | None:
        self.thread.join(IO_TIMEOUT + 5)
        assert not self.thread.is_alive(), "listener thread hung"
        return self.error

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.lsock.close()
        self.thread.join(IO_TIMEOUT + 5)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _dealer(ctx: zmq.Context, keys: Keypair, server_key: bytes, port: int) -> zmq.Socket:
    d = ctx.socket(zmq.DEALER)
    d.linger = 0
    d.reconnect_ivl = 60_000        # one attempt: a refused handshake is not retried at once
    d.curve_publickey, d.curve_secretkey, d.curve_serverkey = keys.public, keys.secret, server_key
    d.connect(f"tcp://127.0.0.1:{port}")
    return d


def _workload(seed: int, n: int) -> list[list[bytes]]:
    """n messages of 1 to 3 frames, 0 B to 1 MB, each frame's content distinct."""
    rng = random.Random(seed)
    sizes = [0, 1, 17, 255, 256, 1000, 4096, 65536]
    msgs = []
    for i in range(n):
        frames = []
        for j in range(rng.choice([1, 1, 2, 3])):
            size = (1 << 20) if (i * 3 + j) % 500 == 0 else rng.choice(sizes)
            frames.append(rng.randbytes(size) if size < 64 else
                          (f"{i}.{j}.".encode() + rng.randbytes(32)).ljust(size, bytes((i % 256,))))
        msgs.append(frames)
    return msgs




# -- (a) a libzmq CURVE client against our server ----------------------------------------------
@pytest.mark.integration
def test_libzmq_client_to_our_server(ctx: zmq.Context, client_keys: Keypair,
                                     server_keys: Keypair) -> None:
    lis = Listener(CurveServer(ROUTER, keypair=server_keys, allowed={client_keys.public}))
    try:
        d = _dealer(ctx, client_keys, server_keys.public, lis.port)
        msgs = _workload(1, 2500)
        for start in range(0, len(msgs), 100):      # a window: neither side's HWM fills
            batch = msgs[start:start + 100]
            for m in batch:
                d.send_multipart(m)
            for m in batch:
                assert d.poll(int(IO_TIMEOUT * 1000)), f"no echo of message {start}"
                assert d.recv_multipart() == m
        assert lis.mech.peer_properties["Socket-Type"] == b"DEALER"
        assert lis.mech.peer_key == client_keys.public
        d.close()
        assert isinstance(lis.join(), ConnectionError)  # the DEALER closed: nothing else
        # counted after the thread ended: it counts an echo after sending it, so the last
        # echo can reach us before its count
        assert lis.echoed == len(msgs)
    finally:
        lis.close()


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["wrong server key", "client not allowed"])
def test_our_server_refuses_libzmq_client(ctx: zmq.Context, client_keys: Keypair,
                                          server_keys: Keypair, fault: str) -> None:
    allowed = {client_keys.public} if fault == "wrong server key" else {generate_keypair().public}
    server_key = generate_keypair().public if fault == "wrong server key" else server_keys.public
    lis = Listener(CurveServer(ROUTER, keypair=server_keys, allowed=allowed))
    try:
        d = _dealer(ctx, client_keys, server_key, lis.port)
        d.send_multipart([b"must not arrive"])
        err = lis.join()
        assert isinstance(err, HandshakeRefused), err
        assert ("HELLO box" if fault == "wrong server key" else "not allowed") in err.reason
        assert not lis.mech.ready and lis.echoed == 0
    finally:
        lis.close()


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["tampered", "replayed"])
def test_our_server_refuses_tampered_or_replayed_message_on_the_wire(
        client_keys: Keypair, server_keys: Keypair, fault: str) -> None:
    """Our client writes one good MESSAGE, then a bad one: the server echoes the first and
    refuses the connection at the second."""
    lis = Listener(CurveServer(ROUTER, keypair=server_keys, allowed={client_keys.public}))
    sock = socket.create_connection(("127.0.0.1", lis.port), timeout=IO_TIMEOUT)
    try:
        z = Zmtp(sock, CurveClient(DEALER, keypair=client_keys, server_key=server_keys.public))
        z.handshake()
        good, _ = z.mech.seal(b"first", False)
        z.write_frame(0, good)
        assert z.recv() == [b"first"]
        if fault == "tampered":
            bad, _ = z.mech.seal(b"second", False)
            bad = flip(bad, len(bad) - 1)
        else:
            bad = good
        z.write_frame(0, bad)
        err = lis.join()
        assert isinstance(err, HandshakeRefused), err
        assert ("does not open" if fault == "tampered" else "replayed") in err.reason
        assert lis.echoed == 1
        with pytest.raises((ConnectionError, OSError)):
            z.read_frame()          # the server closed the connection
    finally:
        sock.close()
        lis.close()


# -- (b) our client against a libzmq CURVE server with a ZAP authenticator ---------------------
class RouterEcho:
    """A libzmq ROUTER, CURVE server, echoing in a thread until stopped."""

    def __init__(self, ctx: zmq.Context, server_keys: Keypair) -> None:
        self.router = ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        self.router.curve_server = True
        self.router.curve_secretkey = server_keys.secret
        self.port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.stop = threading.Event()
        self.received = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            if self.router.poll(50):
                msg = self.router.recv_multipart()
                self.received += 1
                self.router.send_multipart(msg)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.router.close()


@pytest.fixture
def zap(ctx: zmq.Context, tmp_path: Path) -> Iterator[tuple[ThreadAuthenticator, Path]]:
    auth = ThreadAuthenticator(ctx)
    auth.start()
    keydir = tmp_path / "allowed"
    keydir.mkdir()
    yield auth, keydir
    auth.stop()


def _connect(port: int, client_keys: Keypair, server_key: bytes) -> Zmtp:
    sock = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
    return Zmtp(sock, CurveClient(DEALER, keypair=client_keys, server_key=server_key))


@pytest.mark.integration
def test_our_client_to_libzmq_server(ctx: zmq.Context, zap: tuple[ThreadAuthenticator, Path],
                                     tmp_path: Path) -> None:
    auth, keydir = zap
    # our key files in the ZAP allow-list, pyzmq's server key file read by us
    _, z_sec = zmq.auth.create_certificates(str(tmp_path), "server")
    server_keys = load_keypair(z_sec)
    pub, sec = create_keypair_files(keydir, "client")
    client_keys = load_keypair(sec)
    auth.configure_curve(domain="*", location=str(keydir))
    echo = RouterEcho(ctx, server_keys)
    z = _connect(echo.port, client_keys, server_keys.public)
    try:
        z.handshake()
        assert z.mech.peer_properties["Socket-Type"] == b"ROUTER"
        msgs = _workload(2, 2500)
        for start in range(0, len(msgs), 100):
            batch = msgs[start:start + 100]
            for m in batch:
                z.send(m)
            for m in batch:
                assert z.recv() == m
        assert echo.received == len(msgs)
        # a tampered MESSAGE makes libzmq drop the connection: the box format is exact
        bad, _ = z.mech.seal(b"x", False)
        z.write_frame(0, flip(bad, 20))
        with pytest.raises((ConnectionError, OSError)):
            z.read_frame()
        assert echo.received == len(msgs)
    finally:
        z.sock.close()
        echo.close()


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["not in the ZAP allow-list", "wrong server key"])
def test_libzmq_server_refuses_our_client(ctx: zmq.Context, zap: tuple[ThreadAuthenticator, Path],
                                          client_keys: Keypair, server_keys: Keypair,
                                          fault: str) -> None:
    auth, keydir = zap
    create_keypair_files(keydir, "someone-else")
    if fault == "wrong server key":
        (keydir / "client.key").write_text(
            f'curve\n    public-key = "{zmq.utils.z85.encode(client_keys.public).decode()}"\n')
    auth.configure_curve(domain="*", location=str(keydir))
    echo = RouterEcho(ctx, server_keys)
    server_key = generate_keypair().public if fault == "wrong server key" else server_keys.public
    z = _connect(echo.port, client_keys, server_key)
    try:
        if fault == "wrong server key":
            # libzmq cannot open HELLO and closes the connection without a word
            with pytest.raises((ConnectionError, OSError)):
                z.handshake()
        else:
            with pytest.raises(HandshakeRefused, match="ERROR: 400"):   # ZAP's status code
                z.handshake()
        assert not z.mech.ready and echo.received == 0
    finally:
        z.sock.close()
        echo.close()
