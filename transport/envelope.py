"""No ra equivalent (BEAM distribution carries these). The versioned wire envelope.

Every frame on the wire is one codec term ``[version, kind, from, ref, payload]``:

* ``version`` is :data:`VERSION`; a frame with another version is dropped by the receiver.
* ``kind`` is :data:`CAST`, :data:`CALL` or :data:`REPLY`.
* ``from`` is the sender's mailbox address, one that can be connected to
  (:func:`transport.messages.valid_endpoint`); ``None`` is allowed for casts. A frame whose
  ``from`` is anything else is dropped (``bad_envelope``): a process never stores, casts or
  replies to an address that its socket layer would refuse.
* ``ref`` is the call reference (an int) for CALL and REPLY, ``None`` for CAST.
* ``payload`` is any term.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from transport import codec
from transport.messages import valid_endpoint

__all__ = ["VERSION", "CAST", "CALL", "REPLY", "From", "Envelope", "pack", "unpack", "BadEnvelope"]

VERSION = 1
CAST = 1
CALL = 2
REPLY = 3
_KIND_NAMES = {CAST: "cast", CALL: "call", REPLY: "reply"}


class From(NamedTuple):
    """Who to answer for a call: the caller's mailbox ``addr`` and the call's ``ref``.

    Opaque to users but a term: it can be stored (in state, in the log), sent elsewhere, and
    answered later, by any process, with ``Mailbox.reply(frm, value)``.
    """

    addr: str
    ref: int


class Envelope(NamedTuple):
    """One received message. ``kind`` is ``"cast"`` or ``"call"``; ``frm`` is a :class:`From`
    for calls and the sender's address (or ``None``) for casts."""

    kind: str
    frm: Any
    payload: Any


class BadEnvelope(ValueError):
    """A frame decoded to a term that is not a valid envelope; ``reason`` is a counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def pack(kind: int, frm: str | None, ref: int | None, payload: Any,
         encode: Callable[[Any], bytes] = codec.encode) -> bytes:
    """Encode one envelope (with ``encode``: a :meth:`codec.Encoder.encode`, or
    :func:`codec.encode`). Raises ``TypeError`` if ``payload`` is not a term, with the path
    relative to ``payload``."""
    try:
        return encode([VERSION, kind, frm, ref, payload])
    except TypeError:
        codec.encode(payload)  # re-raise with a path the caller recognises
        raise


def unpack(frame: bytes, check_from: bool = True) -> tuple[int, Any, Any, Any]:
    """Decode one frame to ``(kind, from, ref, payload)``. ``check_from=False`` (the simulated
    network, whose addresses are not sockets) skips the sender address check.

    Raises :class:`BadEnvelope` with reason ``"garbage"`` (not a term), ``"bad_version"`` or
    ``"bad_envelope"`` (wrong shape).
    """
    try:
        t = codec.decode(frame)
    except codec.DecodeError as exc:
        raise BadEnvelope("garbage", str(exc)) from None
    if type(t) is not list or len(t) != 5:
        if type(t) is list and t and type(t[0]) is int and t[0] != VERSION:
            raise BadEnvelope("bad_version", f"version {t[0]!r}")
        raise BadEnvelope("bad_envelope", f"not a 5-item envelope: {type(t).__name__}")
    version, kind, frm, ref, payload = t
    if version != VERSION or type(version) is not int:
        if type(version) is int:
            raise BadEnvelope("bad_version", f"version {version!r}")
        raise BadEnvelope("bad_envelope", f"version field {version!r}")
    if type(kind) is not int or kind not in _KIND_NAMES:     # type first: a dict is unhashable
        raise BadEnvelope("bad_envelope", f"kind {kind!r}")
    if kind != CAST and type(ref) is not int:
        raise BadEnvelope("bad_envelope", f"ref {ref!r}")
    if check_from and kind != REPLY and (type(frm) is not str or frm not in _good_addrs):
        if kind == CALL and type(frm) is not str:
            raise BadEnvelope("bad_envelope", f"call without a reply address: {frm!r:.100}")
        if frm is not None:
            if not valid_endpoint(frm):
                raise BadEnvelope("bad_envelope", f"bad sender address {frm!r:.100}")
            if len(_good_addrs) >= _GOOD_ADDRS_MAX:
                _good_addrs.clear()
            _good_addrs.add(frm)
    return kind, frm, ref, payload


#: :func:`reply_value`'s answer for a frame that is not the reply looked for
NOT_THE_REPLY: Any = object()


def reply_value(frame: bytes, ref: int) -> Any:
    """The payload of ``frame`` if it is a valid reply envelope to the call ``ref``, else
    :data:`NOT_THE_REPLY` (for any other frame, valid or not: :func:`unpack` then judges it).
    A caller's hot path: one decode and the checks :func:`unpack` makes of a reply."""
    try:
        t = codec.decode(frame)
    except codec.DecodeError:
        return NOT_THE_REPLY
    if (type(t) is list and len(t) == 5 and t[3] == ref and t[1] == REPLY and t[0] == VERSION
            and type(t[3]) is int and type(t[1]) is int and type(t[0]) is int):
        return t[4]
    return NOT_THE_REPLY


# senders' addresses already found valid: the hot path pays one set lookup per frame
_good_addrs: set[str] = set()
_GOOD_ADDRS_MAX = 4096


# From is a transport term every layer stores (reply modes in the log), so the codec owns
# its wire code (6, below the user range).
codec._install(From, 6, tuple, ("addr", "ref"))
