"""RA_TRANSPORT=curve's mechanism (transport.curve.secret_factory) in a real DirectMailbox,
against libzmq's own CURVE: a pyzmq DEALER holding the key pair derived from the secret is let
in and its messages arrive; one with other keys is refused at the handshake."""
from __future__ import annotations

import threading
import time

import zmq
from zmq.utils import z85

from transport import curve, envelope
from transport.direct import DirectMailbox

SECRET = b"s" * 40


def _serve(mb: DirectMailbox, got: list, stop: threading.Event) -> None:
    while not stop.is_set():
        e = mb.recv(0.05)
        if e is not None:
            got.append(e.payload)


def _dealer(ctx: zmq.Context, kp: curve.Keypair, server: bytes, to: str) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.curve_publickey = z85.encode(kp.public)
    s.curve_secretkey = z85.encode(kp.secret)
    s.curve_serverkey = z85.encode(server)
    s.linger = 0
    s.connect(to)
    return s


def test_libzmq_curve_with_the_derived_keys_gets_in_and_others_do_not() -> None:
    kp = curve.keypair_from_secret(SECRET)
    assert curve.keypair_from_secret(SECRET) == kp            # every holder derives the same
    other = curve.keypair_from_secret(b"t" * 40)
    got: list = []
    stop = threading.Event()
    ctx = zmq.Context()
    with DirectMailbox("tcp://127.0.0.1:0", mechanism=curve.secret_factory(SECRET)) as mb:
        t = threading.Thread(target=_serve, args=(mb, got, stop))
        t.start()
        good = _dealer(ctx, kp, kp.public, mb.address)
        bad = _dealer(ctx, other, kp.public, mb.address)   # knows the server key, not the pair
        try:
            try:        # its handshake is refused whether or not this leaves its queue
                bad.send(envelope.pack(envelope.CAST, "tcp://127.0.0.1:1", None, ("x", 0)),
                         zmq.NOBLOCK)
            except zmq.Again:
                pass
            for i in range(100):
                good.send(envelope.pack(envelope.CAST, "tcp://127.0.0.1:1", None, ("m", i)))
            deadline = time.monotonic() + 10
            while len(got) < 100 or mb.counters.get("refused", 0) < 1:
                assert time.monotonic() < deadline, (len(got), mb.counters)
                time.sleep(0.02)
            assert got == [("m", i) for i in range(100)]     # in order, nothing from `bad`
        finally:
            stop.set()
            t.join(5)
            good.close()
            bad.close()
            ctx.term()
