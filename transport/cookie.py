"""No ra equivalent (Erlang's ``~/.erlang.cookie``). The node secret every ra process proves at
the ZMTP handshake, where it lives, and the PLAIN password derived from it.

Where the secret comes from, first match wins:

1. ``RA_COOKIE``: the secret itself (for containers and CI; it is visible in the process's
   environment to its owner and root);
2. a cookie file given by the caller (a node's ``cookie_file`` setting);
3. ``RA_COOKIE_FILE``: a cookie file;
4. ``~/.ra/cookie``, the per-user default.

A missing cookie file is created at first use (by a daemon or a client, whichever comes first)
with ``secrets.token_urlsafe(32)``: directory 0700 if we make it, file 0400, written under a
temporary name and hard-linked into place, so two processes starting together both end up with
the one that won the link and never read a half-written file. A cookie file readable or writable
by group or others, or owned by another user, is refused (:class:`~transport.errors.BadSecret`),
as ssh refuses such a key.

The process's secret is read once and cached (keyed by the two environment variables, so a test
that changes them sees the change); :func:`use_secret` pins it instead: a node daemon does that,
and hands it to its fork server over their private socketpair, so servers, WALs and segment
writers get the daemon's secret without it ever appearing in an environment or a command line.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat

from transport.errors import BadSecret
from transport.mechanism import MechanismFactory, plain_factory

__all__ = ["ENV_SECRET", "ENV_FILE", "default_cookie_file", "cookie_file_path", "read_secret",
           "use_secret", "process_secret", "plain_password", "default_password",
           "default_mechanism", "read_private"]

ENV_SECRET = "RA_COOKIE"
ENV_FILE = "RA_COOKIE_FILE"
_PLAIN_LABEL = b"ra-plain-1"

_pinned: bytes | None = None
_cache: tuple[tuple[str | None, str | None], bytes] | None = None


def default_cookie_file() -> str:
    """``~/.ra/cookie``."""
    return os.path.join(os.path.expanduser("~"), ".ra", "cookie")


def cookie_file_path(cookie_file: str | None = None) -> str:
    """The cookie file in effect when ``RA_COOKIE`` is unset: ``cookie_file``, else
    ``RA_COOKIE_FILE``, else :func:`default_cookie_file`."""
    return os.path.abspath(os.path.expanduser(
        cookie_file or os.environ.get(ENV_FILE) or default_cookie_file()))


def read_secret(cookie_file: str | None = None, *, create: bool = True) -> bytes:
    """The secret from ``RA_COOKIE`` or the cookie file (see the module docstring), created if
    missing and ``create``. Raises BadSecret saying the fix."""
    env = os.environ.get(ENV_SECRET)
    if env is not None:
        if not env.strip():
            raise BadSecret(f"{ENV_SECRET} is set but empty: unset it or give it the secret")
        return env.strip().encode()
    path = cookie_file_path(cookie_file)
    try:
        data = read_private(path, "cookie file").strip()
    except FileNotFoundError:
        if not create:
            raise BadSecret(f"no cookie file at {path}: start a node once (it creates one) or "
                            f"copy the cluster's cookie there (mode 0400)", path) from None
        _create(path)
        data = read_private(path, "cookie file").strip()
    if not data:
        raise BadSecret(f"cookie file {path} is empty: delete it (a new one is made at the "
                        f"next start) or write the cluster's secret into it", path)
    return data


def read_private(path: str, what: str) -> bytes:
    """The content (at most 4 KiB) of a file that only its owner may read: ``BadSecret`` if
    group or others can access it, another user owns it, or it cannot be read (the message
    says the fix); ``FileNotFoundError`` if it is missing. Symbolic links are not followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise BadSecret(f"cannot read the {what} {path}: {e.strerror}", path) from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            raise BadSecret(
                f"{what} {path} is accessible by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}): run `chmod 400 {path}`", path)
        if st.st_uid != os.geteuid():
            raise BadSecret(f"{what} {path} is owned by uid {st.st_uid}, not by this user "
                            f"(uid {os.geteuid()}): give each user a file of their own", path)
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def _create(path: str) -> None:
    d = os.path.dirname(path)
    try:
        os.makedirs(d, mode=0o700, exist_ok=True)
        tmp = os.path.join(d, f".cookie-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        try:
            os.write(fd, secrets.token_urlsafe(32).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)      # exclusive, like O_EXCL, and the file is complete
        except FileExistsError:
            pass                    # another process won: everyone uses its cookie
        finally:
            os.unlink(tmp)
    except OSError as e:
        if e.errno == errno.EEXIST:
            return
        raise BadSecret(f"cannot create the cookie file {path}: {e.strerror}; set "
                        f"{ENV_FILE} to a writable place or {ENV_SECRET}", path) from None


def use_secret(secret: bytes | str | None) -> None:
    """Pin this process's secret (``None``: back to reading it from the environment/file)."""
    global _pinned
    _pinned = secret.encode() if isinstance(secret, str) else secret


def process_secret() -> bytes:
    """This process's secret: the pinned one, else :func:`read_secret` (cached)."""
    global _cache
    if _pinned is not None:
        return _pinned
    key = (os.environ.get(ENV_SECRET), os.environ.get(ENV_FILE))
    if _cache is None or _cache[0] != key:
        _cache = (key, read_secret())
    return _cache[1]


def plain_password(secret: bytes) -> bytes:
    """The PLAIN password that proves ``secret``: HMAC-SHA256(secret, "ra-plain-1") in hex. A
    sniffer of a PLAIN handshake learns this, not the secret (from which other keys derive)."""
    return hmac.new(secret, _PLAIN_LABEL, hashlib.sha256).hexdigest().encode()


def default_password() -> bytes:
    """The PLAIN password of this process's secret."""
    return plain_password(process_secret())


#: ``RA_TRANSPORT=curve``: every mailbox of the process (and of the processes it starts) runs
#: CURVE with the key pair derived from the secret instead of PLAIN; every process of a
#: deployment must agree (a PLAIN peer is refused: "security mechanism mismatch")
ENV_TRANSPORT = "RA_TRANSPORT"


def default_mechanism() -> MechanismFactory:
    """The mechanism a mailbox runs unless told otherwise: CURVE with this process's own key
    pair when it has one (:func:`transport.curvekeys.process_keyring`: pinned by its node, or
    ``RA_CURVE_SECRET_KEY[_FILE]``), else CURVE with the key pair derived from the secret
    (:func:`transport.curve.secret_factory`) when ``RA_TRANSPORT=curve``, else PLAIN with the
    secret. Raises BadSecret for an unusable secret or key file, ValueError for another
    ``RA_TRANSPORT``."""
    from transport.curvekeys import process_keyring
    ring = process_keyring()
    if ring is not None:
        return ring
    kind = os.environ.get(ENV_TRANSPORT, "plain")
    if kind == "curve":
        from transport.curve import secret_factory
        return secret_factory(process_secret())  # type: ignore[no-any-return]
    if kind != "plain":
        raise ValueError(f"{ENV_TRANSPORT}={kind!r}: 'plain' (the default) or 'curve'")
    return plain_factory(default_password())
