"""No ra equivalent (Erlang distribution's TLS certificates). CURVE with a key pair per node and
an allow-list of peer keys: a process's identity, whom it lets in, and which server key it
expects at each address it connects to.

Files:

* **Secret key file** (a node's ``curve_secret_key_file``, a client's
  ``RA_CURVE_SECRET_KEY_FILE``): libzmq's ``NAME.key_secret`` (what ``python -m transport.curve
  keygen DIR NAME`` writes) or a file whose one line is the Z85 secret key (40 characters).
  Refused, as the cookie file is, if group or others can access it or another user owns it.
  ``RA_CURVE_SECRET_KEY`` (the Z85 secret key itself) takes its place for containers and CI.
* **Allow-list** (``curve_allow``, ``RA_CURVE_ALLOW``): one peer per line, its Z85 public key
  (40 characters) optionally followed by an address: the node daemon holding that key
  (``host:port``) or any mailbox endpoint (``tcp://host:port``, ``ipc:///path``); ``#`` starts
  a comment at the start of a line or after a space (``#`` is a Z85 character too: a key
  that begins with it is still read as a key). Every key listed may connect (plus our own: the processes of one node share its
  pair); a line with an address also says which server key to expect there. Refused if group
  or others may write it (they could add their keys).

The contract of the connecting side, which must know the server's key before it says HELLO
(:meth:`Keyring.server_key`), first match wins:

1. the allow-list's address: the node daemons one talks to first;
2. the node the address lives on (the mailbox is told by ``transport.registry.resolve``, which
   asked that node's daemon over a connection authenticated with the node's key): every
   process of a node (servers, WAL, segment writer) presents the node's key pair;
3. an address an authenticated peer announced at its handshake (the ``X-Ra-Addresses``
   property of its INITIATE, inside the box that its key vouches for): replies and casts back
   to a caller go to the key that called. A peer could announce another's address, but it is
   on the allow-list already, and the worst it gets is a refused handshake there;
4. our own public key: the processes of one node reach each other at addresses no allow-list
   names. A process elsewhere then fails the handshake: refused, never let in.

The keys of a process, first match wins: the pinned ones (:func:`use_keys`: a node daemon and,
through its fork server's memory, every process of its tree), else ``RA_CURVE_SECRET_KEY`` /
``RA_CURVE_SECRET_KEY_FILE`` with ``RA_CURVE_ALLOW`` (clients). :func:`process_keyring` gives
``None`` when neither is set: the process then runs PLAIN or the secret-derived CURVE
(:func:`transport.cookie.default_mechanism`). Loads PyNaCl only when keys are in use.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from transport.cookie import read_private
from transport.errors import BadSecret
from transport.messages import valid_endpoint

if TYPE_CHECKING:
    from transport.curve import Keypair
    from transport.mechanism import Mechanism

__all__ = ["ENV_SECRET_KEY", "ENV_SECRET_KEY_FILE", "ENV_ALLOW", "ADDRESSES_PROPERTY",
           "Keyring", "load_secret_key", "parse_secret_key", "load_allow", "parse_allow",
           "use_keys", "process_keyring", "env_for_children"]

ENV_SECRET_KEY = "RA_CURVE_SECRET_KEY"
ENV_SECRET_KEY_FILE = "RA_CURVE_SECRET_KEY_FILE"
ENV_ALLOW = "RA_CURVE_ALLOW"
#: the ZMTP property in which a connecting mailbox announces where it can be reached
ADDRESSES_PROPERTY = "X-Ra-Addresses"
# the node config key each file stands for, which BadSecret names (ra turns it into InvalidConfig)
_KEY = "curve_secret_key_file"
_ALLOW = "curve_allow"
_LEARNED_MAX = 4096
_ANNOUNCED_MAX = 8

#: an allow-list: (public key, endpoint or None) per line
Allow = list[tuple[bytes, "str | None"]]


def _z85_key(text: str, what: str, where: str) -> bytes:
    from zmq.utils import z85
    if len(text) != 40:
        raise ValueError(f"{where}: {what} is not 40 Z85 characters: {text[:50]!r}")
    try:
        return z85.decode(text.encode("ascii"))
    except (ValueError, KeyError, IndexError, UnicodeEncodeError):
        raise ValueError(f"{where}: {what} is not Z85: {text[:50]!r}") from None
    except Exception:   # struct.error: a group beyond 32 bits
        raise ValueError(f"{where}: {what} is not Z85: {text[:50]!r}") from None


def _fields(line: str) -> list[str]:
    """The fields of a line before its comment. ``#`` is a Z85 character too, so a comment
    starts at a field that begins with ``#`` and is not the line's first 40-character one."""
    fields = line.split()
    for i, f in enumerate(fields):
        if f.startswith("#") and not (i == 0 and len(f) == 40):
            return fields[:i]
    return fields


def parse_secret_key(data: bytes, where: str) -> Keypair:
    """The key pair of a secret key file's content: libzmq's format, or one Z85 secret key
    line (comments and blank lines ignored). ``ValueError`` naming ``where`` if malformed."""
    from nacl.bindings import crypto_scalarmult_base

    from transport.curve import Keypair, parse_key_text
    if b"secret-key" in data or b"public-key" in data:     # libzmq's format
        keys = parse_key_text(data, where)
        if "secret-key" not in keys:
            raise ValueError(f"{where}: no secret-key")
        try:
            return Keypair(keys["public-key"], keys["secret-key"])
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    lines = [f for f in (_fields(raw.decode("ascii", "replace")) for raw in data.splitlines())
             if f]
    if len(lines) != 1 or len(lines[0]) != 1:
        raise ValueError(f"{where}: a secret key file holds one Z85 secret key (or is "
                         f"libzmq's NAME.key_secret), found {len(lines)} lines")
    secret = _z85_key(lines[0][0], "the secret key", where)
    return Keypair(crypto_scalarmult_base(secret), secret)


def load_secret_key(path: str | os.PathLike[str]) -> Keypair:
    """The key pair in the secret key file at ``path`` (see the module docstring). Raises
    ``BadSecret`` (with the path) if it is missing, malformed, or readable by others."""
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        data = read_private(p, "CURVE secret key file")
    except FileNotFoundError:
        raise BadSecret(f"no CURVE secret key file at {p}: make one with `python -m "
                        "transport.curve keygen DIR NAME`", p, _KEY) from None
    except BadSecret as e:
        raise BadSecret(str(e), p, _KEY) from None
    try:
        return parse_secret_key(data, p)
    except ValueError as e:
        raise BadSecret(str(e), p, _KEY) from None


def parse_allow(text: str, where: str) -> Allow:
    """The entries of an allow-list's content; ``ValueError`` naming the line if malformed."""
    out: Allow = []
    for n, raw in enumerate(text.splitlines(), 1):
        fields = _fields(raw)
        if not fields:
            continue
        at = f"{where}:{n}"
        if len(fields) > 2:
            raise ValueError(f"{at}: a line is KEY [ADDRESS], got {len(fields)} fields")
        key = _z85_key(fields[0], "the public key", at)
        addr = None
        if len(fields) == 2:
            addr = fields[1] if "://" in fields[1] else f"tcp://{fields[1]}"
            if not valid_endpoint(addr):
                raise ValueError(f"{at}: {fields[1]!r} is not host:port nor a mailbox "
                                 "endpoint (tcp://host:port, ipc:///path)")
        out.append((key, addr))
    return out


def load_allow(path: str | os.PathLike[str]) -> Allow:
    """The allow-list at ``path``. Raises ``BadSecret`` (with the path) if it is missing,
    malformed, or writable by group or others."""
    p = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError as e:
        raise BadSecret(f"cannot read the CURVE allow-list {p}: {e.strerror}", p,
                        _ALLOW) from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o022:
            raise BadSecret(f"CURVE allow-list {p} is writable by group or others (mode "
                            f"{stat.S_IMODE(st.st_mode):04o}): run `chmod 644 {p}`", p, _ALLOW)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(1 << 20)
    finally:
        os.close(fd)
    try:
        return parse_allow(data.decode("utf-8", "replace"), p)
    except ValueError as e:
        raise BadSecret(str(e), p, _ALLOW) from None


class Keyring:
    """A process's CURVE identity and trust (see the module docstring), and the mechanism
    factory (:class:`transport.mechanism.MechanismFactory`) of its mailboxes: accepted
    connections run :class:`~transport.curve.CurveServer` letting in the allowed keys, opened
    ones :class:`~transport.curve.CurveClient` expecting :meth:`server_key`. Shared by every
    mailbox of a process (what one learns, all use); thread-safe as dict operations are."""

    def __init__(self, keypair: Keypair, allow: Iterable[tuple[bytes, str | None]] = ()) -> None:
        from transport.curve import Keypair
        if not isinstance(keypair, Keypair):
            raise TypeError(f"keypair must be a transport.curve.Keypair, got {keypair!r:.60}")
        self.keypair = keypair
        allow = list(allow)
        self.allowed = frozenset([keypair.public] + [k for k, _ in allow])
        self._static: dict[str, bytes] = {a: k for k, a in allow if a is not None}
        self._nodes: dict[str, str] = {}
        self._learned: dict[str, bytes] = {}

    def __call__(self, as_server: bool, metadata: dict[str, bytes],
                 peer: str | None = None) -> Mechanism:
        from transport.curve import CurveClient, CurveServer
        if as_server:
            return CurveServer(metadata, keypair=self.keypair, allowed=self.allowed,
                               on_ready=self._learn)
        return CurveClient(metadata, keypair=self.keypair,
                           server_key=self.keypair.public if peer is None
                           else self.server_key(peer))

    def server_key(self, to: str) -> bytes:
        """The long-term key the process at ``to`` must prove (the module docstring's order)."""
        key = self._static.get(to)
        if key is None:
            node = self._nodes.get(to)
            key = self._static.get(node) if node is not None else None
            if key is None:
                key = self._learned.get(to) or (
                    self._learned.get(node) if node is not None else None)
        return key if key is not None else self.keypair.public

    def set_server_key(self, address: str, key: bytes) -> None:
        """Expect ``key`` at ``address`` (``host:port`` or an endpoint), as an allow-list line
        with that address says (it does not let the key in)."""
        from transport.curve import KEY_BYTES
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ValueError(f"a CURVE public key is {KEY_BYTES} bytes, got {key!r:.60}")
        self._static[address if "://" in address else f"tcp://{address}"] = key

    def learn_server_key(self, address: str, key: bytes) -> None:
        """Expect ``key`` at endpoint ``address``, as if the process there had announced it
        (kept as those are, a bounded number; an allow-list line or the node's key for it
        wins): another process of this node, which knows that peer, vouches for it."""
        from transport.curve import KEY_BYTES
        if not isinstance(key, bytes) or len(key) != KEY_BYTES:
            raise ValueError(f"a CURVE public key is {KEY_BYTES} bytes, got {key!r:.60}")
        if valid_endpoint(address) and address not in self._static:
            if len(self._learned) >= _LEARNED_MAX:
                self._learned.clear()
            self._learned[address] = key

    def note_node(self, endpoint: str, node_endpoint: str) -> None:
        """``endpoint`` is a process of the node whose daemon is at ``node_endpoint``."""
        if endpoint != node_endpoint:
            self._nodes[endpoint] = node_endpoint

    def _learn(self, key: bytes, props: dict[str, bytes]) -> None:
        announced = props.get(ADDRESSES_PROPERTY)
        if not announced:
            return
        if len(self._learned) >= _LEARNED_MAX:
            self._learned.clear()
        for addr in announced.decode("utf-8", "replace").split()[:_ANNOUNCED_MAX]:
            if valid_endpoint(addr) and addr not in self._static:
                self._learned[addr] = key


_pinned: Keyring | None = None
_cache: tuple[tuple[str | None, ...], Keyring | None] | None = None


def use_keys(secret: bytes | None, allow: Allow | None = None) -> None:
    """Pin this process's CURVE identity: ``secret``, the raw 32-byte secret key (``None``:
    unpin), and the allow-list entries. A node daemon does this, and its fork server does it
    in every process of its tree (over their private socketpair, never an environment)."""
    global _pinned
    if secret is None:
        _pinned = None
        return
    from nacl.bindings import crypto_scalarmult_base

    from transport.curve import Keypair
    _pinned = Keyring(Keypair(crypto_scalarmult_base(secret), secret), allow or [])


def process_keyring() -> Keyring | None:
    """This process's keyring: the pinned one, else the one the environment names (cached),
    else ``None``. Raises ``BadSecret`` for an unusable key file or allow-list."""
    global _cache
    if _pinned is not None:
        return _pinned
    env = (os.environ.get(ENV_SECRET_KEY), os.environ.get(ENV_SECRET_KEY_FILE),
           os.environ.get(ENV_ALLOW))
    if _cache is not None and _cache[0] == env:
        return _cache[1]
    ring = None
    if env[0] or env[1]:
        if env[0]:
            try:
                kp = parse_secret_key(env[0].strip().encode(), ENV_SECRET_KEY)
            except ValueError as e:
                raise BadSecret(str(e), ENV_SECRET_KEY, _KEY) from None
        else:
            kp = load_secret_key(env[1] or "")
        ring = Keyring(kp, load_allow(env[2]) if env[2] else [])
    _cache = (env, ring)
    return ring


def env_for_children(env: dict[str, Any], secret_key_file: str | None,
                      allow: str | None) -> None:
    """What programs exec'd by a node's tree need to find its keys: the paths, never a key."""
    env.pop(ENV_SECRET_KEY, None)
    if secret_key_file:
        env[ENV_SECRET_KEY_FILE] = os.path.abspath(secret_key_file)
    if allow:
        env[ENV_ALLOW] = os.path.abspath(allow)
