"""No ra equivalent (Erlang distribution's cookie challenge). ZMTP 3.0 security mechanisms, sans
I/O: one side of a connection's handshake, fed the peer's command bodies and answering with the
bodies to send. :class:`~transport.direct.DirectMailbox` runs them on its sockets, both as the
connecting side (client) and the accepting side (server).

* :class:`Null` is ZMTP's NULL mechanism (RFC 23): both sides send READY with their metadata.
  No authentication: only for tests and the peers of a socket that asks for nothing.
* :class:`Plain` is ZMTP's PLAIN mechanism (RFC 24): the client sends HELLO(username,
  password), the server answers WELCOME, the client INITIATE(metadata), the server
  READY(metadata). A server refusing the credentials answers ERROR(reason) and closes. The
  password crosses the wire in clear: ra sends one *derived* from the node secret
  (:func:`transport.cookie.plain_password`), never the secret itself.

A command body is ``name-length byte + name + data``; the caller frames it (flag ``0x04``). A
mechanism raises :class:`~transport.errors.HandshakeRefused` to refuse a peer; the caller then
sends ``error_body(reason)`` (when :attr:`sends_error`) and closes the connection. Metadata is
ZMTP's property list: ``name-length byte + name + 4-byte value length + value``.
"""
from __future__ import annotations

import hmac
import struct
from typing import Protocol

from transport.errors import HandshakeRefused

__all__ = ["Mechanism", "MechanismFactory", "Null", "Plain", "command", "parse_command",
           "encode_metadata", "decode_metadata", "error_body", "null_factory", "plain_factory",
           "PLAIN_USERNAME"]

#: the PLAIN username every ra process presents (the password is what proves the secret)
PLAIN_USERNAME = b"ra"


class Mechanism(Protocol):
    """One side of a ZMTP 3.0 security handshake (see the module docstring)."""

    name: bytes
    as_server: bool
    ready: bool
    peer_properties: dict[str, bytes]

    def start(self) -> list[bytes]:
        """Command bodies to send right after the greetings."""
        ...

    def on_command(self, body: bytes) -> list[bytes]:
        """One handshake command received -> bodies to send; raises HandshakeRefused."""
        ...

    def seal(self, frame: bytes, more: bool) -> tuple[bytes, bool]:
        """After ready: an outgoing message frame -> (wire body, is_command)."""
        ...

    def unseal(self, body: bytes, is_command: bool) -> tuple[bytes, bool]:
        """After ready: an incoming frame body -> (message frame, more flag)."""
        ...


class MechanismFactory(Protocol):
    """Builds the mechanism of one connection. ``as_server``: we accepted it; ``metadata``: our
    ZMTP properties; ``peer``: the address we are connecting to (``None`` when accepting), by
    which a mechanism that authenticates the server (CURVE with per-node keys) picks the key
    to expect. A factory may also have ``note_node(endpoint, node_endpoint)``: the mailbox
    then tells it which node each destination lives on (:meth:`BaseMailbox.note_node`)."""

    def __call__(self, as_server: bool, metadata: dict[str, bytes],
                 peer: str | None = None) -> Mechanism:
        ...


# libzmq 4.3 writes its ERROR command's prefix as the C string "\x05ERROR", which C reads as
# the byte 0x5E followed by "RROR": that is how a libzmq server's refusal arrives
_LIBZMQ_ERROR = b"^RROR"


def command(name: bytes, data: bytes = b"") -> bytes:
    """A command body: name-length byte, name, data."""
    return bytes((len(name),)) + name + data


def parse_command(body: bytes) -> tuple[bytes, bytes]:
    """``(name, data)`` of a command body; HandshakeRefused if it is malformed."""
    if body[:5] == _LIBZMQ_ERROR:
        return b"ERROR", bytes(body[5:])
    if not body or len(body) < 1 + body[0]:
        raise HandshakeRefused("malformed command")
    n = body[0]
    return bytes(body[1:1 + n]), bytes(body[1 + n:])


def encode_metadata(props: dict[str, bytes]) -> bytes:
    """ZMTP properties: name-length byte, name, 4-byte big-endian value length, value."""
    out = bytearray()
    for k, v in props.items():
        kb = k.encode("ascii")
        out += bytes((len(kb),)) + kb + struct.pack(">I", len(v)) + v
    return bytes(out)


def decode_metadata(data: bytes) -> dict[str, bytes]:
    """The properties of a READY/INITIATE; HandshakeRefused if they are malformed."""
    props: dict[str, bytes] = {}
    i, n = 0, len(data)
    while i < n:
        klen = data[i]
        if klen == 0 or i + 1 + klen + 4 > n:
            raise HandshakeRefused("malformed metadata")
        key = data[i + 1:i + 1 + klen].decode("ascii", "replace")
        i += 1 + klen
        (vlen,) = struct.unpack_from(">I", data, i)
        i += 4
        if i + vlen > n:
            raise HandshakeRefused("malformed metadata")
        props[key] = bytes(data[i:i + vlen])
        i += vlen
    return props


def error_body(reason: str) -> bytes:
    """An ERROR command body (reason at most 255 bytes)."""
    r = reason.encode("utf-8", "replace")[:255]
    return command(b"ERROR", bytes((len(r),)) + r)


def _peer_error(data: bytes) -> HandshakeRefused:
    reason = data[1:1 + data[0]].decode("utf-8", "replace") if data else ""
    return HandshakeRefused(f"refused by the peer: {reason or 'no reason given'}")


class _Clear:
    """NULL and PLAIN carry message frames as they are."""

    ready: bool

    def seal(self, frame: bytes, more: bool) -> tuple[bytes, bool]:
        return frame, False

    def unseal(self, body: bytes, is_command: bool) -> tuple[bytes, bool]:
        return body, False


class Null(_Clear):
    """ZMTP's NULL mechanism: both sides send READY(metadata); no authentication."""

    name = b"NULL"
    #: a refusal is answered with ERROR before closing (RFC 23 allows it for NULL)
    sends_error = True

    def __init__(self, metadata: dict[str, bytes], *, as_server: bool = False) -> None:
        self.metadata = dict(metadata)
        self.as_server = False   # NULL has no server role: the greeting's flag is 0
        self.ready = False
        self.peer_properties: dict[str, bytes] = {}

    def start(self) -> list[bytes]:
        return [command(b"READY", encode_metadata(self.metadata))]

    def on_command(self, body: bytes) -> list[bytes]:
        name, data = parse_command(body)
        if name == b"ERROR":
            raise _peer_error(data)
        if name != b"READY" or self.ready:
            raise HandshakeRefused(f"unexpected {name!r} command in the NULL handshake")
        self.peer_properties = decode_metadata(data)
        self.ready = True
        return []


class Plain(_Clear):
    """ZMTP's PLAIN mechanism. The client (``as_server=False``) presents ``username`` and
    ``password``; the server accepts only a HELLO carrying exactly those (compared in constant
    time) and refuses anything else with ERROR."""

    name = b"PLAIN"
    sends_error = True

    def __init__(self, metadata: dict[str, bytes], *, as_server: bool, password: bytes,
                 username: bytes = PLAIN_USERNAME) -> None:
        if len(username) > 255 or len(password) > 255:
            raise ValueError("PLAIN username and password are at most 255 bytes")
        self.metadata = dict(metadata)
        self.as_server = as_server
        self.ready = False
        self.peer_properties: dict[str, bytes] = {}
        self._username = username
        self._password = password
        # client: 0 sent HELLO, 1 sent INITIATE; server: 0 awaiting HELLO, 1 awaiting INITIATE
        self._step = 0

    def start(self) -> list[bytes]:
        if self.as_server:
            return []
        u, p = self._username, self._password
        return [command(b"HELLO", bytes((len(u),)) + u + bytes((len(p),)) + p)]

    def on_command(self, body: bytes) -> list[bytes]:
        name, data = parse_command(body)
        if name == b"ERROR":
            raise _peer_error(data)
        if self.ready:
            raise HandshakeRefused(f"unexpected {name!r} command after the PLAIN handshake")
        if self.as_server:
            if self._step == 0 and name == b"HELLO":
                self._check_hello(data)
                self._step = 1
                return [command(b"WELCOME")]
            if self._step == 1 and name == b"INITIATE":
                self.peer_properties = decode_metadata(data)
                self.ready = True
                return [command(b"READY", encode_metadata(self.metadata))]
        else:
            if self._step == 0 and name == b"WELCOME":
                self._step = 1
                return [command(b"INITIATE", encode_metadata(self.metadata))]
            if self._step == 1 and name == b"READY":
                self.peer_properties = decode_metadata(data)
                self.ready = True
                return []
        raise HandshakeRefused(f"unexpected {name!r} command in the PLAIN handshake")

    def _check_hello(self, data: bytes) -> None:
        try:
            ulen = data[0]
            user = data[1:1 + ulen]
            plen = data[1 + ulen]
            password = data[2 + ulen:2 + ulen + plen]
            if len(password) != plen or len(data) != 2 + ulen + plen:
                raise IndexError
        except IndexError:
            raise HandshakeRefused("malformed HELLO") from None
        # both compared, in constant time, whatever the first one says
        ok_user = hmac.compare_digest(user, self._username)
        ok_password = hmac.compare_digest(password, self._password)
        if not (ok_user and ok_password):
            raise HandshakeRefused("invalid credentials")


def null_factory(as_server: bool, metadata: dict[str, bytes],
                 peer: str | None = None) -> Mechanism:
    """A :data:`MechanismFactory` of :class:`Null` mechanisms."""
    return Null(metadata, as_server=as_server)


def plain_factory(password: bytes, username: bytes = PLAIN_USERNAME) -> MechanismFactory:
    """A :data:`MechanismFactory` of :class:`Plain` mechanisms sharing one credential: what a
    mailbox presents to the peers it connects to, and demands of the peers it accepts."""
    def make(as_server: bool, metadata: dict[str, bytes], peer: str | None = None) -> Mechanism:
        return Plain(metadata, as_server=as_server, password=password, username=username)
    return make
