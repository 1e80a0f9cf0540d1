"""No ra equivalent (Erlang distribution offers TLS). ZeroMQ's CURVE security mechanism (ZMTP
3.0, RFC 25/ZMTP-CURVE over RFC 26/CurveZMQ), sans I/O: one side of one connection's handshake,
then the boxing of its message frames. Wire-compatible with libzmq's own CURVE.

Every primitive is libsodium's, through PyNaCl (``crypto_box`` for the handshake boxes,
``crypto_box_beforenm`` + ``*_afternm`` for the messages, ``crypto_secretbox`` for the server's
cookie); this module writes only the protocol's framing.

The handshake (C, S: the long-term keys; C', S': short-term keys made per connection)::

    client                                   server
    HELLO    C', Box[64 zeros](C'->S)   ->             (server keeps no state but a cookie key)
             <-   WELCOME  Box[S' + cookie](S->C'),  cookie = Box[C' + s'](cookie key)
    INITIATE cookie, Box[C + vouch + metadata](C'->S'),  vouch = Box[C' + S](C->S')  ->
             <-   READY    Box[metadata](S'->C')
    MESSAGE  Box[flags + frame](C'->S')  <->  MESSAGE Box[flags + frame](S'->C')

Contract of both roles (the Mechanism interface the mailboxes drive):

* :meth:`start` gives the command bodies to send after both greetings (the client's HELLO;
  nothing for the server), :meth:`on_command` takes each handshake command body received and
  gives what to answer; :attr:`ready` turns True when the handshake is over on this side.
* Anything wrong with the peer (a box that does not open, a bad length or name, a short nonce
  that does not increase, a client key not on the allow-list, the server's ERROR) raises
  :class:`~transport.errors.HandshakeRefused` with a reason, and nothing else: the caller
  then closes the connection, after sending ERROR with the reason if it is the server (RFC 26:
  a client never sends ERROR; :func:`error_body` builds it).
* After the handshake :meth:`seal` turns an outgoing frame into a MESSAGE body, to be sent in a
  *message* frame (``is_command`` False). The more flag travels inside the box; the frame's
  own MORE bit may be clear (libzmq sends it so) or equal to ``more`` (libzmq ORs the two).
  Not in a command frame: libzmq 4.3 then takes the opened message for a command, and its
  socket drops it (tried: the peer never receives it). :meth:`unseal`
  takes a received MESSAGE body (in either kind of frame) and gives ``(frame, more)``; a box
  that does not open or a replayed nonce raises ``HandshakeRefused`` (the caller closes).

Keys are kept in files in libzmq's text format (Z85 inside ``name.key`` / ``name.key_secret``,
as pyzmq's ``zmq.auth.create_certificates`` writes them): :func:`load_keypair`,
:func:`load_public_key`, :func:`load_allowed_keys` (every ``*.key`` of a directory, as pyzmq's
authenticator reads it) and :func:`create_keypair_files` (also ``python -m transport.curve
keygen DIR NAME``). Not thread-safe: one mechanism per connection.
"""
from __future__ import annotations

import hashlib
import datetime
import hmac
import os
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nacl import bindings as _nacl
from nacl.exceptions import CryptoError

try:
    # PyNaCl's own cffi binding of libsodium, which nacl.bindings wraps: the message path
    # calls it directly, to box a frame in place in the buffer that goes on the wire (the
    # wrappers check, zero-fill and copy each buffer: most of a small frame's cost)
    from nacl._sodium import ffi as _ffi, lib as _lib  # type: ignore[import-not-found]
except ImportError:     # pragma: no cover - another PyNaCl layout: the wrappers still work
    _ffi = _lib = None
from zmq.utils import z85

from transport.errors import HandshakeRefused

__all__ = ["Keypair", "CurveClient", "CurveServer", "generate_keypair", "load_keypair",
           "load_public_key", "load_allowed_keys", "create_keypair_files", "error_body",
           "encode_metadata", "decode_metadata"]

KEY_BYTES = 32
_HELLO = b"\x05HELLO"
_WELCOME = b"\x07WELCOME"
_INITIATE = b"\x08INITIATE"
_READY = b"\x05READY"
_MESSAGE = b"\x07MESSAGE"
_ERROR = b"\x05ERROR"
_HELLO_LEN = 200          # name 6, version 2, anti-amplification padding 72, C' 32, nonce 8,
_HELLO_PAD = bytes(72)    # box 80: larger than WELCOME (168), so HELLO cannot amplify
_WELCOME_LEN = 168
_INITIATE_MIN = 257       # name 9, cookie 96, nonce 8, box of C + vouch (16 + 128)
_READY_MIN = 30
_MESSAGE_MIN = 33         # name 8, nonce 8, box of the flags byte (16 + 1)
_MORE = 0x01
_NONCE_END = 1 << 64      # short nonces are 8 octets: a connection ends before they wrap
_EASY_FROM = 32 << 10
_MAC_FLAGS = bytes(17)    # room for the MAC, then the flags byte (0: the last frame)


@dataclass(frozen=True, slots=True)
class Keypair:
    """A long-term CURVE key pair (raw 32-byte keys). The secret is left out of ``repr``."""
    public: bytes
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        for what, key in (("public", self.public), ("secret", self.secret)):
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ValueError(f"a CURVE {what} key is {KEY_BYTES} bytes, got {key!r:.60}")
        if _nacl.crypto_scalarmult_base(self.secret) != self.public:
            raise ValueError("this CURVE public key does not belong to this secret key")


def generate_keypair() -> Keypair:
    """A fresh long-term key pair from libsodium."""
    public, secret = _nacl.crypto_box_keypair()
    return Keypair(public, secret)


def _check_key(key: object, what: str) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ValueError(f"{what} must be a {KEY_BYTES}-byte CURVE key, got {key!r:.60}")
    return key


# -- key files (libzmq's / pyzmq's text format) --------------------------------------------------
def _read_key_file(path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The ``public-key`` / ``secret-key`` entries of a key file, decoded from Z85."""
    with open(path, "rb") as f:
        return parse_key_text(f.read(), path)


def parse_key_text(text: bytes, path: str | os.PathLike[str]) -> dict[str, bytes]:
    """The ``public-key`` / ``secret-key`` entries of a key file's content (libzmq's format),
    decoded from Z85; ``ValueError`` naming ``path`` if malformed or without a public key."""
    keys: dict[str, bytes] = {}
    for raw in text.splitlines():
        line = raw.strip()
        for entry in ("public-key", "secret-key"):
            if line.startswith(entry.encode()) and b"=" in line:
                value = line.split(b"=", 1)[1].strip(b" \t'\"")
                if len(value) != 40:
                    raise ValueError(f"{os.fspath(path)}: {entry} is not 40 Z85 characters")
                try:
                    keys[entry] = z85.decode(value)
                except (ValueError, KeyError, IndexError, struct.error):
                    raise ValueError(f"{os.fspath(path)}: {entry} is not Z85") from None
    if "public-key" not in keys:
        raise ValueError(f"{os.fspath(path)}: no public-key in this CURVE key file")
    return keys


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The raw public key of a key file (``name.key`` or ``name.key_secret``)."""
    return _read_key_file(path)["public-key"]


def load_keypair(path: str | os.PathLike[str]) -> Keypair:
    """The key pair of a secret key file (``name.key_secret``); raises ``ValueError`` if the
    file holds no secret key or keys that do not match."""
    keys = _read_key_file(path)
    if "secret-key" not in keys:
        raise ValueError(f"{os.fspath(path)}: no secret-key (is it the .key_secret file?)")
    try:
        return Keypair(keys["public-key"], keys["secret-key"])
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from None


def load_allowed_keys(directory: str | os.PathLike[str]) -> frozenset[bytes]:
    """The public keys of every ``*.key`` file in ``directory``, as pyzmq's authenticator reads
    an allow-list (load once per process: a :class:`CurveServer` is made per connection)."""
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"no such CURVE key directory: {os.fspath(directory)}")
    return frozenset(load_public_key(p) for p in sorted(d.glob("*.key")))


_BANNER = "#   ****  Generated on {now} by ra (transport.curve)  ****\n#   ZeroMQ CURVE {kind}\n"


def _write_key_file(path: Path, kind: str, keys: dict[str, bytes], mode: int) -> None:
    body = _BANNER.format(now=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                          kind=kind)
    body += "metadata\ncurve\n" + "".join(
        f'    {name} = "{z85.encode(key).decode()}"\n' for name, key in keys.items())
    # O_EXCL: never overwrite a node's key by accident; the mode is set at creation, so the
    # secret is never readable by others, not even for an instant
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(body)


def create_keypair_files(directory: str | os.PathLike[str], name: str) -> tuple[str, str]:
    """Generate a key pair into ``directory/name.key`` (public, mode 0644) and
    ``directory/name.key_secret`` (both keys, mode 0600), the format of pyzmq's
    ``zmq.auth.create_certificates``. Raises ``FileExistsError`` rather than replace a key."""
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"bad key name {name!r}: a plain file name")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    for p in (public, secret):
        if p.exists():
            raise FileExistsError(f"{p} exists: remove it first to replace the key")
    pair = generate_keypair()
    _write_key_file(secret, "**Secret** Certificate: DO NOT share this file",
                    {"public-key": pair.public, "secret-key": pair.secret}, 0o600)
    os.chmod(secret, 0o600)         # whatever the umask
    _write_key_file(public, "Public Certificate",
                    {"public-key": pair.public}, 0o644)
    return str(public), str(secret)


# -- framing helpers ---------------------------------------------------------------------------
def error_body(reason: str) -> bytes:
    """The body of a ZMTP ERROR command (at most 255 ASCII characters of reason)."""
    r = reason.encode("ascii", "replace")[:255]
    return _ERROR + bytes((len(r),)) + r


def encode_metadata(metadata: dict[str, bytes]) -> bytes:
    """ZMTP metadata: per property a 1-byte name length, the name, a 4-byte value length."""
    out = bytearray()
    for name, value in metadata.items():
        n = name.encode("ascii") if isinstance(name, str) else b""
        if not 0 < len(n) < 256 or not isinstance(value, bytes):
            raise ValueError(f"bad metadata property {name!r}: 1-255 ASCII chars -> bytes")
        out += bytes((len(n),)) + n + len(value).to_bytes(4, "big") + value
    return bytes(out)


def decode_metadata(data: bytes) -> dict[str, bytes]:
    """The inverse of :func:`encode_metadata`; raises ``HandshakeRefused`` if malformed."""
    props: dict[str, bytes] = {}
    i, end = 0, len(data)
    while i < end:
        n = data[i]
        j = i + 1 + n
        if n == 0 or j + 4 > end:
            raise HandshakeRefused("malformed metadata")
        vlen = int.from_bytes(data[j:j + 4], "big")
        if j + 4 + vlen > end:
            raise HandshakeRefused("malformed metadata")
        try:
            name = data[i + 1:j].decode("ascii")
        except UnicodeDecodeError:
            raise HandshakeRefused("malformed metadata (name not ASCII)") from None
        props[name] = data[j + 4:j + 4 + vlen]
        i = j + 4 + vlen
    return props


def _open(fn: Callable[..., bytes], *args: bytes, what: str) -> bytes:
    """Open a box; any failure of libsodium (forged, tampered, wrong key, low-order key) is the
    peer's doing, so it is a refusal."""
    try:
        return fn(*args)
    except CryptoError:
        raise HandshakeRefused(f"{what} does not open") from None


def _command_name(body: bytes) -> bytes:
    if not body or len(body) < 1 + body[0]:
        raise HandshakeRefused("malformed command")
    return body[:1 + body[0]]


def _refuse_error(body: bytes) -> HandshakeRefused:
    reason = body[7:7 + body[6]].decode("ascii", "replace") if len(body) > 6 else ""
    return HandshakeRefused(f"peer sent ERROR: {reason}")


def keypair_from_secret(secret: bytes) -> Keypair:
    """The cluster's CURVE key pair derived from the node secret (the cookie): seed =
    HMAC-SHA256(secret, "ra-curve-1"), keys from libsodium's ``crypto_box_seed_keypair``. Every
    holder of the secret derives the same pair, so it both presents it and accepts it (see
    :func:`secret_factory`); the PLAIN password (another HMAC of the secret) does not reveal
    it."""
    seed = hmac.new(secret, b"ra-curve-1", hashlib.sha256).digest()
    public, sec = _nacl.crypto_box_seed_keypair(seed)
    return Keypair(public, sec)


def secret_factory(secret: bytes) -> Any:
    """A mechanism factory (``transport.mechanism.MechanismFactory``) of CURVE with the key pair
    derived from ``secret``: the accepting side lets in exactly the holders of the secret, the
    connecting side checks that its peer holds it too, and every message is encrypted. What
    ``RA_TRANSPORT=curve`` selects for every mailbox of a process."""
    kp = keypair_from_secret(secret)
    allowed = frozenset({kp.public})

    def make(as_server: bool, metadata: dict[str, bytes], peer: str | None = None) -> Any:
        if as_server:
            return CurveServer(metadata, keypair=kp, allowed=allowed)
        return CurveClient(metadata, keypair=kp, server_key=kp.public)
    return make


# -- the mechanism -----------------------------------------------------------------------------
class _Curve:
    """What both roles share: metadata, the per-connection precomputed key and nonces, and the
    boxing of messages."""

    def __init__(self, metadata: dict[str, bytes], keypair: Keypair, as_server: bool) -> None:
        if not isinstance(keypair, Keypair):
            raise TypeError(f"keypair must be a transport.curve.Keypair, got {keypair!r:.60}")
        self.name = b"CURVE"
        self.as_server = as_server
        self.ready = False
        self.peer_properties: dict[str, bytes] = {}
        self._metadata = encode_metadata(metadata)
        self._keypair = keypair
        self._nonce = 1                 # our next short nonce
        self._peer_nonce = -1           # the last short nonce the peer used
        self._k = b""                   # crypto_box_beforenm(peer's S'/C', our c'/s')
        s, c = b"CurveZMQMESSAGES", b"CurveZMQMESSAGEC"
        self._send_prefix, self._recv_prefix = (s, c) if as_server else (c, s)

    def _next_nonce(self) -> bytes:
        n = self._nonce
        if n >= _NONCE_END:
            raise HandshakeRefused("short nonces exhausted: reconnect")
        self._nonce = n + 1
        return n.to_bytes(8, "big")

    def _take_peer_nonce(self, short: bytes) -> None:
        n = int.from_bytes(short, "big")
        if n <= self._peer_nonce:
            raise HandshakeRefused("short nonce replayed or out of order")
        self._peer_nonce = n

    def seal(self, frame: bytes, more: bool) -> tuple[bytes, bool]:
        """An outgoing message frame -> (MESSAGE body, False): send it in a message frame (see
        the module docstring for why not a command frame)."""
        if not self.ready:
            raise RuntimeError("CURVE seal before the handshake is over")
        n = self._nonce
        if n >= _NONCE_END:
            raise HandshakeRefused("short nonces exhausted: reconnect")
        self._nonce = n + 1
        short = n.to_bytes(8, "big")
        box = _nacl.crypto_box_easy_afternm(
            (b"\x01" if more else b"\x00") + frame, self._send_prefix + short, self._k)
        return b"".join((_MESSAGE, short, box)), False

    def seal_frame(self, frame: bytes) -> bytes | bytearray:
        """``seal(frame, False)`` framed as the ZMTP message frame that carries it: the bytes
        to write. One copy of ``frame``, boxed in place (what a mailbox sends per message)."""
        if _lib is None or not self.ready:
            body = self.seal(frame, False)[0]
            n = len(body)
            return (bytes((0, n)) if n < 256 else b"\x02" + n.to_bytes(8, "big")) + body
        n = self._nonce
        if n >= _NONCE_END:
            raise HandshakeRefused("short nonces exhausted: reconnect")
        self._nonce = n + 1
        short = n.to_bytes(8, "big")
        size = _MESSAGE_MIN + len(frame)
        # frame header, MESSAGE, short nonce, 16 bytes for the MAC, flags 0 (no more), frame
        out = bytearray((b"\x00" + bytes((size,)) if size < 256
                         else b"\x02" + size.to_bytes(8, "big")) + _MESSAGE + short + _MAC_FLAGS)
        h = len(out) - 33
        out += frame
        p = _ffi.from_buffer(out)
        # the box (MAC + ciphertext) starts at the MAC; its ciphertext lands exactly on the
        # plaintext it encrypts, which libsodium allows
        if _lib.crypto_box_easy_afternm(p + h + 16, p + h + 32, len(frame) + 1,
                                        self._send_prefix + short, self._k) != 0:
            raise RuntimeError("libsodium failed to box a message")
        return out

    def open_frame(self, buf: bytes | bytearray, start: int, end: int) -> tuple[bytes, bool]:
        """``unseal(buf[start:end], False)`` without copying the body out of ``buf`` first."""
        if _lib is None:
            return self.unseal(bytes(buf[start:end]), False)
        if not self.ready:
            raise RuntimeError("CURVE unseal before the handshake is over")
        if end - start < _MESSAGE_MIN or buf[start:start + 8] != _MESSAGE:
            raise HandshakeRefused("not a well-formed MESSAGE")
        short = bytes(buf[start + 8:start + 16])
        n = int.from_bytes(short, "big")
        if n <= self._peer_nonce:
            raise HandshakeRefused("MESSAGE nonce replayed or out of order")
        clen = end - start - 16
        out = bytearray(clen - 16)
        if _lib.crypto_box_open_easy_afternm(_ffi.from_buffer(out),
                                             _ffi.from_buffer(buf) + start + 16, clen,
                                             self._recv_prefix + short, self._k) != 0:
            raise HandshakeRefused("MESSAGE box does not open")
        self._peer_nonce = n
        flags = out[0]
        if flags & ~_MORE:
            raise HandshakeRefused(f"MESSAGE flags {flags:#x}: reserved bits set")
        return bytes(memoryview(out)[1:]), bool(flags & _MORE)

    def unseal(self, body: bytes, is_command: bool) -> tuple[bytes, bool]:
        """A received MESSAGE body -> (frame, more); ``HandshakeRefused`` if it is not one, its
        box does not open, or its nonce does not increase (replay). The nonce is taken only once
        the box opened, so a forged frame cannot push the expected nonce ahead."""
        if not self.ready:
            raise RuntimeError("CURVE unseal before the handshake is over")
        if len(body) < _MESSAGE_MIN or body[:8] != _MESSAGE:
            raise HandshakeRefused("not a well-formed MESSAGE")
        short = body[8:16]
        n = int.from_bytes(short, "big")
        if n <= self._peer_nonce:
            raise HandshakeRefused("MESSAGE nonce replayed or out of order")
        # same box either way; PyNaCl's *_easy_* open formats an error text on every call
        # (~2 µs) while the other copies the box once more: cheaper below some 32 KB
        try:
            plain = (_nacl.crypto_box_open_afternm if len(body) < _EASY_FROM
                     else _nacl.crypto_box_open_easy_afternm)(
                body[16:], self._recv_prefix + short, self._k)
        except CryptoError:
            raise HandshakeRefused("MESSAGE box does not open") from None
        self._peer_nonce = n
        flags = plain[0]
        if flags & ~_MORE:
            # bit 1 marks a ZMTP 3.1 command (PING...): never sent to a 3.0 peer as we are
            raise HandshakeRefused(f"MESSAGE flags {flags:#x}: reserved bits set")
        return plain[1:], bool(flags & _MORE)


class CurveClient(_Curve):
    """The CURVE client (the connecting side, greeting as-server 0). ``metadata``: our
    properties (``{"Socket-Type": b"DEALER"}``...); ``keypair``: our long-term keys;
    ``server_key``: the server's long-term public key (raw 32 bytes), which it must prove it
    holds. Raises ``ValueError``/``TypeError`` on bad arguments."""

    def __init__(self, metadata: dict[str, bytes], *, keypair: Keypair,
                 server_key: bytes) -> None:
        super().__init__(metadata, keypair, as_server=False)
        self._server_key = _check_key(server_key, "server_key")
        self._cn_public, self._cn_secret = _nacl.crypto_box_keypair()   # C', c'
        self._state = "start"
        self._server_cn = b""           # S'

    def start(self) -> list[bytes]:
        if self._state != "start":
            raise RuntimeError("CURVE start called twice")
        self._state = "welcome"
        short = self._next_nonce()
        box = _nacl.crypto_box(bytes(64), b"CurveZMQHELLO---" + short, self._server_key,
                               self._cn_secret)
        return [_HELLO + b"\x01\x00" + _HELLO_PAD + self._cn_public + short + box]

    def on_command(self, body: bytes) -> list[bytes]:
        name = _command_name(body)
        if name == _ERROR:
            raise _refuse_error(body)
        if self._state == "welcome" and name == _WELCOME:
            return [self._on_welcome(body)]
        if self._state == "ready" and name == _READY:
            self._on_ready(body)
            return []
        raise HandshakeRefused(f"unexpected command {name[1:]!r} from the CURVE server")

    def _on_welcome(self, body: bytes) -> bytes:
        if len(body) != _WELCOME_LEN:
            raise HandshakeRefused("malformed WELCOME")
        plain = _open(_nacl.crypto_box_open, body[24:], b"WELCOME-" + body[8:24],
                      self._server_key, self._cn_secret, what="WELCOME box (wrong server key?)")
        self._server_cn, cookie = plain[:32], plain[32:128]
        try:
            self._k = _nacl.crypto_box_beforenm(self._server_cn, self._cn_secret)
        except CryptoError:
            raise HandshakeRefused("server short-term key rejected") from None
        vouch_nonce = _nacl.randombytes(16)
        vouch = _nacl.crypto_box(self._cn_public + self._server_key, b"VOUCH---" + vouch_nonce,
                                 self._server_cn, self._keypair.secret)
        short = self._next_nonce()
        box = _nacl.crypto_box_easy_afternm(
            self._keypair.public + vouch_nonce + vouch + self._metadata,
            b"CurveZMQINITIATE" + short, self._k)
        self._state = "ready"
        return _INITIATE + cookie + short + box

    def _on_ready(self, body: bytes) -> None:
        if len(body) < _READY_MIN:
            raise HandshakeRefused("malformed READY")
        short = body[6:14]
        plain = _open(_nacl.crypto_box_open_easy_afternm, body[14:],
                      b"CurveZMQREADY---" + short, self._k, what="READY box")
        self._take_peer_nonce(short)
        self.peer_properties = decode_metadata(plain)
        self._cn_secret = b""           # the precomputed key is all the connection needs now
        self._state = "done"
        self.ready = True


class CurveServer(_Curve):
    """The CURVE server (the accepting side, greeting as-server 1). ``metadata``: our
    properties; ``keypair``: our long-term keys (clients know our public key); ``allowed``:
    the client long-term public keys let in: raw 32-byte keys (a set: load a directory once
    per mailbox with :func:`load_allowed_keys`, a server is made per connection), a predicate,
    or the directory of ``*.key`` files itself (read here, at each connection, as pyzmq's
    authenticator reads it). A client proves it holds its key's secret
    (the vouch) before the allow-list is checked. After the handshake :attr:`peer_key` is
    the client's long-term public key, and ``on_ready(peer_key, peer_properties)`` is called
    if given (a keyring learns there where the client can be reached back)."""

    def __init__(self, metadata: dict[str, bytes], *, keypair: Keypair,
                 allowed: Iterable[bytes] | Callable[[bytes], bool] | str | os.PathLike[str],
                 on_ready: Callable[[bytes, dict[str, bytes]], None] | None = None,
                 ) -> None:
        super().__init__(metadata, keypair, as_server=True)
        if callable(allowed):
            self._allowed: Callable[[bytes], bool] = allowed
        elif isinstance(allowed, (str, os.PathLike)):
            self._allowed = load_allowed_keys(allowed).__contains__
        else:
            keys = frozenset(allowed)   # a frozenset is taken as is, not copied
            for k in keys:
                _check_key(k, "an allowed client key")
            self._allowed = keys.__contains__
        self._state = "hello"
        self._on_ready = on_ready
        self._client_cn = b""           # C'
        self._cookie_key = b""
        self.peer_key: bytes | None = None

    def start(self) -> list[bytes]:
        return []                       # the client speaks first

    def on_command(self, body: bytes) -> list[bytes]:
        name = _command_name(body)
        if self._state == "hello" and name == _HELLO:
            return [self._on_hello(body)]
        if self._state == "initiate" and name == _INITIATE:
            return [self._on_initiate(body)]
        raise HandshakeRefused(f"unexpected command {name[1:]!r} from the CURVE client")

    def _on_hello(self, body: bytes) -> bytes:
        if len(body) != _HELLO_LEN or body[6:8] != b"\x01\x00" or body[8:80] != _HELLO_PAD:
            raise HandshakeRefused("malformed HELLO (or not CurveZMQ 1.0)")
        client_cn, short = body[80:112], body[112:120]
        plain = _open(_nacl.crypto_box_open, body[120:], b"CurveZMQHELLO---" + short,
                      client_cn, self._keypair.secret, what="HELLO box (wrong server key?)")
        if plain != bytes(64):
            raise HandshakeRefused("HELLO signature is not 64 zeros")
        self._take_peer_nonce(short)
        self._client_cn = client_cn
        # S' lives on only inside the cookie, under a key made for this connection alone
        cn_public, cn_secret = _nacl.crypto_box_keypair()
        self._cookie_key = _nacl.randombytes(_nacl.crypto_secretbox_KEYBYTES)
        cookie_nonce = _nacl.randombytes(16)
        cookie = cookie_nonce + _nacl.crypto_secretbox(
            client_cn + cn_secret, b"COOKIE--" + cookie_nonce, self._cookie_key)
        welcome_nonce = _nacl.randombytes(16)
        box = _nacl.crypto_box(cn_public + cookie, b"WELCOME-" + welcome_nonce, client_cn,
                               self._keypair.secret)
        self._state = "initiate"
        return _WELCOME + welcome_nonce + box

    def _on_initiate(self, body: bytes) -> bytes:
        if len(body) < _INITIATE_MIN:
            raise HandshakeRefused("malformed INITIATE")
        cookie = _open(_nacl.crypto_secretbox_open, body[25:105], b"COOKIE--" + body[9:25],
                       self._cookie_key, what="INITIATE cookie")
        if not hmac.compare_digest(cookie[:32], self._client_cn):
            raise HandshakeRefused("INITIATE cookie is for another connection")
        cn_secret = cookie[32:64]
        self._cookie_key = b""          # RFC 26: forget the cookie key once INITIATE is valid
        short = body[105:113]
        try:
            k = _nacl.crypto_box_beforenm(self._client_cn, cn_secret)
        except CryptoError:
            raise HandshakeRefused("client short-term key rejected") from None
        plain = _open(_nacl.crypto_box_open_easy_afternm, body[113:],
                      b"CurveZMQINITIATE" + short, k, what="INITIATE box")
        self._take_peer_nonce(short)    # above HELLO's
        client_key, vouch_nonce, vouch = plain[:32], plain[32:48], plain[48:128]
        proof = _open(_nacl.crypto_box_open, vouch, b"VOUCH---" + vouch_nonce, client_key,
                      cn_secret, what="INITIATE vouch")
        if not (hmac.compare_digest(proof[:32], self._client_cn)
                and hmac.compare_digest(proof[32:], self._keypair.public)):
            raise HandshakeRefused("INITIATE vouch is for another connection or server")
        if not self._allowed(client_key):
            raise HandshakeRefused("client key not allowed")
        self.peer_properties = decode_metadata(plain[128:])
        self.peer_key = client_key
        self._k = k
        ready_short = self._next_nonce()
        box = _nacl.crypto_box_easy_afternm(self._metadata, b"CurveZMQREADY---" + ready_short, k)
        self._state = "done"
        self.ready = True
        if self._on_ready is not None:
            self._on_ready(client_key, self.peer_properties)
        return _READY + ready_short + box


def _main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] != "keygen":
        print("usage: python -m transport.curve keygen DIR NAME\n"
              "  writes DIR/NAME.key (public) and DIR/NAME.key_secret (mode 0600)",
              file=sys.stderr)
        return 2
    try:
        public, secret = create_keypair_files(argv[1], argv[2])
    except (OSError, ValueError) as e:
        print(f"keygen: {e}", file=sys.stderr)
        return 1
    print(f"{public}\n{secret}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main(sys.argv[1:]))
