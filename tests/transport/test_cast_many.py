"""Mailbox.cast_many: one message to several mailboxes, encoded once."""
from __future__ import annotations

from transport.mailbox import Mailbox


def test_cast_many_delivers_the_same_message_to_each(tmp_path):
    a = Mailbox("tcp://127.0.0.1:0")
    b = Mailbox("tcp://127.0.0.1:0")
    c = Mailbox(None)
    src = Mailbox("tcp://127.0.0.1:0")
    try:
        msg = ("$rpc", (1, [(1, 2, ("usr", (3,), None, 0))]))
        src.cast_many([a.address, b.address, c.address], msg)
        for mb in (a, b, c):
            env = mb.recv(5)
            assert env is not None and env.kind == "cast" and env.payload == msg
            assert env.frm in (src.address, getattr(src, "_tcp_addr", src.address))
    finally:
        for mb in (a, b, c, src):
            mb.close()
