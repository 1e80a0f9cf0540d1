"""ZMTP NULL and PLAIN mechanisms, sans I/O: the handshakes run command by command, the refusals,
and the password derived from the node secret."""
from __future__ import annotations

import hashlib
import hmac

import pytest

from transport.cookie import plain_password
from transport.errors import HandshakeRefused
from transport.mechanism import (Null, Plain, command, decode_metadata, encode_metadata,
                                 error_body, parse_command)

META_C = {"Socket-Type": b"DEALER"}
META_S = {"Socket-Type": b"ROUTER"}


def run(client, server) -> None:
    """Deliver each side's commands to the other until neither has anything to send."""
    to_server, to_client = client.start(), server.start()
    while to_server or to_client:
        nxt_c: list[bytes] = []
        for body in to_server:
            nxt_c += server.on_command(body)
        nxt_s: list[bytes] = []
        for body in to_client:
            nxt_s += client.on_command(body)
        to_server, to_client = nxt_s, nxt_c


def test_null_handshake_exchanges_metadata() -> None:
    c, s = Null(META_C), Null(META_S, as_server=True)
    assert not c.as_server and not s.as_server          # NULL has no server role
    run(c, s)
    assert c.ready and s.ready
    assert c.peer_properties == META_S and s.peer_properties == META_C
    assert c.seal(b"x", False) == (b"x", False) and s.unseal(b"x", False) == (b"x", False)


def test_plain_handshake_hello_welcome_initiate_ready() -> None:
    c = Plain(META_C, as_server=False, password=b"pw")
    s = Plain(META_S, as_server=True, password=b"pw")
    hello = c.start()
    assert s.start() == []
    assert hello == [command(b"HELLO", b"\x02ra\x02pw")]     # RFC 24: username, password
    welcome = s.on_command(hello[0])
    assert welcome == [command(b"WELCOME")] and not s.ready
    initiate = c.on_command(welcome[0])
    assert initiate == [command(b"INITIATE", encode_metadata(META_C))]
    ready = s.on_command(initiate[0])
    assert s.ready and s.peer_properties == META_C
    assert ready == [command(b"READY", encode_metadata(META_S))]
    assert c.on_command(ready[0]) == [] and c.ready and c.peer_properties == META_S


@pytest.mark.parametrize("user,pw", [(b"ra", b"wrong"), (b"root", b"pw"), (b"ra", b"")])
def test_plain_server_refuses_wrong_credentials(user: bytes, pw: bytes) -> None:
    s = Plain(META_S, as_server=True, password=b"pw")
    c = Plain(META_C, as_server=False, password=pw, username=user)
    with pytest.raises(HandshakeRefused, match="invalid credentials"):
        s.on_command(c.start()[0])
    assert not s.ready


@pytest.mark.parametrize("body", [
    b"", b"\x05HELLO", b"\x05HELLO\x02ra", b"\x05HELLO\x02ra\x05pw", b"\x05HELLO\x02ra\x02pwXX",
    b"\x09HELLO", command(b"INITIATE"), command(b"READY"), command(b"MESSAGE", b"x"),
])
def test_plain_server_refuses_malformed_or_out_of_order_commands(body: bytes) -> None:
    s = Plain(META_S, as_server=True, password=b"pw")
    with pytest.raises(HandshakeRefused):
        s.on_command(body)


def test_an_error_from_the_peer_is_a_refusal_with_its_reason() -> None:
    for m in (Plain(META_C, as_server=False, password=b"pw"), Null(META_C)):
        m.start()
        with pytest.raises(HandshakeRefused, match="invalid credentials"):
            m.on_command(error_body("invalid credentials"))


def test_client_refuses_ready_before_welcome_and_commands_after_ready() -> None:
    c = Plain(META_C, as_server=False, password=b"pw")
    c.start()
    with pytest.raises(HandshakeRefused):
        c.on_command(command(b"READY", encode_metadata(META_S)))
    n = Null(META_C)
    n.on_command(command(b"READY"))
    with pytest.raises(HandshakeRefused):
        n.on_command(command(b"READY"))


def test_metadata_round_trip_and_malformed() -> None:
    props = {"Socket-Type": b"ROUTER", "Identity": b"", "X": b"\x00" * 300}
    assert decode_metadata(encode_metadata(props)) == props
    for bad in (b"\x05abc", b"\x01X\x00\x00\x00\x05ab", b"\x00"):
        with pytest.raises(HandshakeRefused):
            decode_metadata(bad)
    assert parse_command(command(b"PING", b"ab")) == (b"PING", b"ab")


def test_plain_password_is_derived_not_the_secret() -> None:
    pw = plain_password(b"cookie")
    assert pw == hmac.new(b"cookie", b"ra-plain-1", hashlib.sha256).hexdigest().encode()
    assert b"cookie" not in pw and len(pw) == 64 and plain_password(b"other") != pw
