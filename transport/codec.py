"""No ra equivalent (Erlang's external term format does this for BEAM). msgpack codec for terms.

Contract:

* ``decode(encode(t)) == t`` *and* every container keeps its exact type, for every term of
  ``shared/ra-api.md``: ``None``, ``bool``, ``int`` of any size, ``float``, ``str``, ``bytes``,
  ``list``, ``tuple``, ``dict`` (keys may be any hashable term), ``set``, ``frozenset``,
  ``ra.core.types.ServerId`` (once ``ra/wire.py`` has registered it: :func:`register_server_id`),
  nested freely; plus frozen dataclasses and NamedTuples registered
  with :func:`register_dataclass` / :func:`register_namedtuple`, which come back as themselves.
  ``bytearray`` and ``memoryview`` are accepted and arrive as ``bytes`` (msgpack packs them
  natively; rejecting them would cost a walk of every value).
* Any other value (including subclasses of the types above, e.g. ``IntEnum`` or ``OrderedDict``)
  raises ``TypeError`` naming the type and where it sits: ``cannot encode <class 'object'> at
  [2]['k']``. Nothing is produced for such a value, so callers fail before sending or writing.
* ``decode`` of bytes that are not one complete encoded term raises :class:`DecodeError`
  (a ``ValueError``); it never returns a partial value.

This is the only module that imports msgpack. Ext type codes 0..15 are reserved for the codec
itself; registered classes use 16..127.
"""
from __future__ import annotations

import dataclasses
import functools
import operator
from itertools import islice
from collections.abc import Callable
from typing import Any

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type hints

__all__ = [
    "encode",
    "Encoder",
    "decode",
    "decode_many",
    "encode_each",
    "decode_each",
    "register_dataclass",
    "register_namedtuple",
    "registered",
    "DecodeError",
    "FIRST_USER_CODE",
    "SERVER_ID_CODE",
    "register_server_id",
]

FIRST_USER_CODE = 16

# Codec-owned ext codes.
_TUPLE = 1
_SET = 2
_FROZENSET = 3
_BIGINT = 4
SERVER_ID_CODE = 5



class DecodeError(ValueError):
    """The bytes are not one complete, well-formed encoded term."""


# Containers other than list/dict are sent as an array whose first item is a 0-length ext
# "marker" naming the type: msgpack then packs the items natively, with no nested Packer
# (about 4x faster than an ext wrapping a separately packed payload). Only big ints use a
# real ext payload. On decode, list_hook turns a marked array back into its type.
class _Mark:
    __slots__ = ("code", "build")

    def __init__(self, code: int, build: Callable[[list[Any]], Any]) -> None:
        self.code = code
        self.build = build


# type -> (wire marker, to_fields); code -> _Mark.  Plain dicts: the hot path does one lookup.
_encoders: dict[type, tuple[msgpack.ExtType, Callable[[Any], Any]]] = {}
_marks: dict[int, _Mark] = {}
_names: dict[int, type] = {}
_TUPLE_MARK = msgpack.ExtType(_TUPLE, b"")
_SET_MARK = msgpack.ExtType(_SET, b"")
_FROZENSET_MARK = msgpack.ExtType(_FROZENSET, b"")


def _default(obj: Any) -> Any:
    # Called by msgpack for everything it does not pack natively under strict_types.
    t = type(obj)
    if t is tuple:
        return [_TUPLE_MARK, *obj]
    enc = _encoders.get(t)
    if enc is not None:
        return [enc[0], *enc[1](obj)]
    if t is int:  # only reaches here when outside the 64-bit range
        n = (obj.bit_length() + 8) // 8
        return msgpack.ExtType(_BIGINT, obj.to_bytes(n, "big", signed=True))
    if t is set:
        return [_SET_MARK, *obj]
    if t is frozenset:
        return [_FROZENSET_MARK, *obj]
    raise TypeError(f"cannot encode {t!r}")


def _ext_hook(code: int, data: bytes) -> Any:
    if not data:
        mark = _marks.get(code)
        if mark is not None:
            return mark
    elif code == _BIGINT:
        return int.from_bytes(data, "big", signed=True)
    raise DecodeError(f"unknown ext type code {code} (payload {len(data)} bytes)")


def _list_hook(items: list[Any]) -> Any:
    if items:
        mark = items[0]
        if type(mark) is _Mark:
            del items[0]  # the list is fresh from the unpacker: cheaper than slicing a copy
            return mark.build(items)
    return items


def encode(term: Any) -> bytes:
    """Encode ``term`` to bytes. Raises ``TypeError`` (type and path) for a non-term value."""
    try:
        out: bytes = _Packer(default=_default, use_bin_type=True, strict_types=True).pack(term)
        return out
    except (TypeError, OverflowError, ValueError) as exc:
        try:
            where = _find_bad(term, "")
        except RecursionError:
            where = None
        if where is None:  # not a type problem we can locate (e.g. too deeply nested)
            raise TypeError(f"cannot encode value: {exc}") from exc
        bad, path = where
        raise TypeError(f"cannot encode {type(bad)!r} at {path or '<top>'}") from None


class Encoder:
    """:func:`encode` with a packer kept between calls: making and freeing one costs about
    1,500 instructions, and a mailbox encodes every frame it sends. For one thread (a
    mailbox's); a call made while another is under way (a signal handler sending from the
    middle of an encode) gets a packer of its own. A term of more than ``_KEEP_BYTES`` leaves
    the packer behind: its buffer would stay that large."""

    __slots__ = ("_pack", "_busy")

    def __init__(self) -> None:
        self._pack = _new_packer()
        self._busy = False

    def encode(self, term: Any) -> bytes:
        """As :func:`encode`."""
        if self._busy:
            return encode(term)
        self._busy = True
        try:
            out: bytes = self._pack(term)
        except (TypeError, OverflowError, ValueError):
            self._pack = _new_packer()      # msgpack empties it, but nothing promises that
            return encode(term)             # raises with the type and path
        finally:
            self._busy = False
        if len(out) > _KEEP_BYTES:
            self._pack = _new_packer()
        return out


_KEEP_BYTES = 256 << 10


def _new_packer() -> Callable[[Any], bytes]:
    return _Packer(default=_default, use_bin_type=True, strict_types=True,  # type: ignore[no-any-return]
                   buf_size=_KEEP_BYTES).pack


def decode(data: bytes) -> Any:
    """Decode bytes produced by :func:`encode`. Raises :class:`DecodeError` on anything else."""
    try:
        out = _unpackb(data, ext_hook=_ext_hook, list_hook=_list_hook, raw=False,
                       strict_map_key=False, use_list=True)
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises a zoo: ExtraData, ValueError, TypeError, ...
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None
    if type(out) is _Mark:
        raise DecodeError("bare type marker")
    return out


def decode_many(data: bytes, n: int) -> list[Any]:
    """Decode the ``n`` terms that :func:`encode` produced and that lie back to back in
    ``data``, with one unpacker (a log's recovery reads a segment's payloads in bulk: this
    spares a call per term). Raises :class:`DecodeError` unless ``data`` holds exactly ``n``
    complete terms, nothing else; a caller that must know which term is bad decodes one by one
    then."""
    up = _Unpacker(None, ext_hook=_ext_hook, list_hook=_list_hook, raw=False,
                   strict_map_key=False, use_list=True, max_buffer_size=max(len(data), 1))
    try:
        up.feed(data)
        out = list(islice(up, n))
    except Exception as exc:  # the zoo again (see decode)
        raise DecodeError(f"{type(exc).__name__}: {exc}") from None
    if len(out) != n or up.tell() != len(data):
        raise DecodeError(f"expected {n} terms in {len(data)} bytes, found {len(out)} "
                          f"ending at {up.tell()}")
    if _Mark in map(type, out):
        raise DecodeError("bare type marker")
    return out


def encode_each(terms: list[Any]) -> list[bytes]:
    """``[encode(t) for t in terms]``, with one packer for them all (a log encodes each entry's
    payload once, for its WAL and its followers). Raises as :func:`encode` does, for the first
    term that is not one."""
    pack = _Packer(default=_default, use_bin_type=True, strict_types=True).pack
    try:
        return [pack(t) for t in terms]
    except (TypeError, OverflowError, ValueError):
        for t in terms:
            encode(t)      # raises with the type and path of the bad value
        raise


def decode_each(parts: list[bytes]) -> list[Any]:
    """``[decode(p) for p in parts]``: each part must hold exactly one complete term (a part
    that holds two, or half of one, is refused even when the parts together would decode: a
    follower stores each part as one entry's payload). Raises :class:`DecodeError` naming the
    first bad part. (One ``unpackb`` per part: faster than one streaming unpacker over the
    joined parts, which ``decode_many`` needs for lack of boundaries.)"""
    out: list[Any] = []
    append = out.append
    try:
        for p in parts:
            append(_unpackb(p, ext_hook=_ext_hook, list_hook=_list_hook, raw=False,
                            strict_map_key=False, use_list=True))
    except DecodeError as exc:
        raise DecodeError(f"part {len(out)}: {exc}") from None
    except Exception as exc:  # the zoo again (see decode)
        raise DecodeError(f"part {len(out)}: {type(exc).__name__}: {exc}") from None
    if _Mark in map(type, out):
        raise DecodeError("bare type marker")
    return out


_Packer = msgpack.Packer
_unpackb = msgpack.unpackb
_Unpacker = msgpack.Unpacker


_ATOMS = (type(None), bool, int, float, str, bytes)


def _find_bad(obj: Any, path: str) -> tuple[Any, str] | None:
    """Slow walk run only after a failed encode: the first non-term and its path."""
    t = type(obj)
    if t in _ATOMS:
        return None
    if t in (list, tuple):
        for i, v in enumerate(obj):
            r = _find_bad(v, f"{path}[{i}]")
            if r is not None:
                return r
        return None
    if t in (set, frozenset):
        for v in obj:
            r = _find_bad(v, f"{path}{{{v!r}}}")
            if r is not None:
                return r
        return None
    if t is dict:
        for k, v in obj.items():
            r = _find_bad(k, f"{path}<key {k!r}>")
            if r is not None:
                return r
            r = _find_bad(v, f"{path}[{k!r}]")
            if r is not None:
                return r
        return None
    enc = _encoders.get(t)
    if enc is not None:
        fields = enc[1](obj)
        names = _field_names.get(t, ())
        for i, v in enumerate(fields):
            label = f".{names[i]}" if i < len(names) else f"[{i}]"
            r = _find_bad(v, f"{path}{label}")
            if r is not None:
                return r
        return None
    return obj, path


_field_names: dict[type, tuple[str, ...]] = {}


def _check_code(cls: type, code: int) -> None:
    if not isinstance(code, int) or not FIRST_USER_CODE <= code <= 127:
        raise ValueError(
            f"ext code for {cls.__name__} must be in {FIRST_USER_CODE}..127, got {code}")
    other = _names.get(code)
    if other is not None and other is not cls:
        raise ValueError(f"ext code {code} already registered for {other.__qualname__}")
    if cls in _encoders and (old := _encoders[cls][0].code) != code:
        raise ValueError(f"{cls.__qualname__} already registered with code {old}")


def register_dataclass(cls: type, code: int) -> None:
    """Make instances of the frozen dataclass ``cls`` round-trip as themselves.

    Fields are carried positionally in declaration order and passed back to ``cls(*fields)``,
    so every field must be an ``__init__`` parameter and itself a term. Registering the same
    class with the same code again is a no-op; reusing a code for another class is an error.
    """
    if not dataclasses.is_dataclass(cls) or not isinstance(cls, type):
        raise TypeError(f"{cls!r} is not a dataclass")
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__qualname__} must be a frozen dataclass")
    _check_code(cls, code)
    names = tuple(f.name for f in dataclasses.fields(cls))
    to_fields = operator.attrgetter(*names) if len(names) > 1 else (
        (lambda obj: (getattr(obj, names[0]),)) if names else (lambda obj: ()))

    _install(cls, code, to_fields, names)


def register_namedtuple(cls: type, code: int) -> None:
    """Make instances of the NamedTuple ``cls`` round-trip as themselves (not as plain tuples)."""
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise TypeError(f"{cls!r} is not a NamedTuple class")
    _check_code(cls, code)
    _install(cls, code, tuple, tuple(cls._fields))


def register_server_id(cls: type) -> None:
    """Make the server id NamedTuple ``cls`` (``ra.core.types.ServerId``) round-trip as itself.

    Server ids travel under a codec-owned code (:data:`SERVER_ID_CODE`, below
    :data:`FIRST_USER_CODE`) because every layer carries them; the class is handed in by ra
    (``ra/wire.py``) so that this package imports nothing of ``ra``. Before that, encoding a
    server id raises ``TypeError`` (as for any unregistered tuple subclass) and decoding one
    gives the plain tuple ``(name, node)``: a process that never registers the class (the WAL)
    still reads a message that carries one, and its door judges it. Registering the same class
    again is a no-op; another class under the same code is an error.
    """
    if not (isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")):
        raise TypeError(f"{cls!r} is not a NamedTuple class")
    if _server_id_cls:
        if cls not in _encoders or _encoders[cls][0].code != SERVER_ID_CODE:
            raise ValueError("the server id code is already registered for another class")
        return
    _install(cls, SERVER_ID_CODE, tuple, tuple(cls._fields))
    # decoded as received, unchecked (a ServerId made by a user checks its node address): what
    # a peer sends is judged by the validators of the messages that carry it
    _marks[SERVER_ID_CODE] = _Mark(SERVER_ID_CODE, functools.partial(tuple.__new__, cls))
    _server_id_cls.append(cls)


def registered() -> dict[int, type]:
    """Snapshot of the user ext codes in use, ``{code: class}``."""
    return dict(_names)


def _install(cls: type, code: int, to_fields: Callable[[Any], Any], names: tuple[str, ...]) -> None:
    _encoders[cls] = (msgpack.ExtType(code, b""), to_fields)
    _marks[code] = _Mark(code, lambda fields: cls(*fields))
    _field_names[cls] = names
    if code >= FIRST_USER_CODE:
        _names[code] = cls


_marks[_TUPLE] = _Mark(_TUPLE, tuple)
_marks[SERVER_ID_CODE] = _Mark(SERVER_ID_CODE, tuple)    # until ra registers its class
_server_id_cls: list[type] = []
_marks[_SET] = _Mark(_SET, set)
_marks[_FROZENSET] = _Mark(_FROZENSET, frozenset)
