"""Hypothesis strategies for fuzzing the processes' doors: random terms, valid messages of a
protocol (exemplars), and those messages mutated — a field replaced by a random or an edge
value (wrong type, wrong range), a value deep inside a field replaced, the arity changed (only
possible on the raw wire: the codec never builds such an object), a legacy tuple form, the
wrong envelope kind — plus raw frames: a valid envelope with bytes flipped or cut, and random
bytes. :func:`zmtp_streams` goes one layer down: raw connections carrying garbage, a cut
greeting, or frames with random flags and lengths.

An :class:`Item` is what one send does: a ``call`` or ``cast`` of ``payload`` through a
mailbox, or a ``raw`` frame written to the socket as it is.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable, Sequence

import msgpack
from hypothesis import strategies as st

from ra.core.types import ServerId
from transport import codec
from transport import envelope as env

__all__ = ["Item", "terms", "items", "mutants", "raw_frame", "FUZZ_BATCH", "fuzz_count",
           "zmtp_streams", "send_stream"]

#: messages per hypothesis example (one liveness check after each)
FUZZ_BATCH = 25


def fuzz_count(default: int, soak: int = 20_000) -> int:
    """Messages per process kind: ``default`` in ``make test``, ``soak`` under ``RA_SOAK``
    (a number larger than 1 there is taken as the count itself)."""
    import os
    v = os.environ.get("RA_SOAK", "")
    if not v:
        return default
    return int(v) if v.isdigit() and int(v) > 1 else soak


@dataclass(frozen=True)
class Item:
    kind: str             # "call" | "cast" | "raw"
    payload: Any = None
    raw: bytes = b""
    how: str = ""         # which generator made it (for failure reports)


_WORDS = ["", "$ra", "$rpc", "ok", "error", "redirect", "ra_event", "applied", "rejected",
          "usr", "join", "leave", "normal", "low", "append", "written", "nodeup", "nodedown",
          "ra.testing.machines:get_state", "typo_module:get_state", ":", "a:", "os:getcwd",
          "tcp://127.0.0.1:1", "tcp://127.0.0.1:99999", "tcp://:1", "ipc://", "ipc:///tmp/x",
          "127.0.0.1:1", "127.0.0.1", "x" * 300, "../evil", ".hidden", "a/b", "\x00",
          "bad_request", "unknown_message", "pong"]
def forged_sid(name: str, node: str) -> ServerId:
    """A ServerId as the codec decodes one from the wire: unchecked (``ServerId(...)`` made
    in Python refuses a bad node, a peer's bytes do not)."""
    return tuple.__new__(ServerId, (name, node))


_EDGE = [None, True, False, 0, -1, 1, 2 ** 63, 2 ** 64 + 1, -(2 ** 70), 1.5, float("inf"),
         "", "x", "x" * 5000, b"", b"\x00\xff", [], [None], (), ("a",), ("a", "b", "c"), {},
         set(), frozenset({1}), forged_sid("", ""),
         forged_sid("a", "b:1"),
         [[1, 1, b"x"], [3, 1, b"y"]], [[1, 1, "str"]], [[0, 1, b""]], [["1", 1, b""]],
         ("ok",), ("ok", 1, 2, 3), ("error",)]


_atoms = (st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.integers(-3, 3)
          | st.floats(allow_nan=True) | st.text(max_size=12) | st.binary(max_size=12)
          | st.sampled_from(_WORDS)
          | st.builds(forged_sid, st.sampled_from(["", "a", "c0"]),
                      st.sampled_from(["", "b", "127.0.0.1:1"])))
_hashable = (st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5)
             | st.binary(max_size=5))


@functools.cache
def terms(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Any term the codec can carry, nested (one strategy object per size: hypothesis
    validates a strategy on first use, which costs more than drawing from it)."""
    return st.recursive(
        _atoms,
        lambda c: (st.lists(c, max_size=4) | st.lists(c, max_size=4).map(tuple)
                   | st.dictionaries(_hashable, c, max_size=3)
                   | st.frozensets(_hashable, max_size=3) | st.sets(_hashable, max_size=3)),
        max_leaves=max_leaves)


def _fields(m: Any) -> list[Any]:
    return [getattr(m, f.name) for f in dataclasses.fields(m)]


@st.composite
def _deep(draw: Any, t: Any) -> Any:
    """``t`` with one value somewhere inside it replaced."""
    if type(t) in (list, tuple) and t and draw(st.booleans()):
        i = draw(st.integers(0, len(t) - 1))
        out = list(t)
        out[i] = draw(_deep(t[i]))
        return tuple(out) if type(t) is tuple else out
    if type(t) is dict and t and draw(st.booleans()):
        k = draw(st.sampled_from(sorted(t, key=repr)))
        return {**t, k: draw(_deep(t[k]))}
    return draw(terms(4) | st.sampled_from(_EDGE))


def _encode_raw(kind: int, frm: str | None, ref: int | None, payload: Any) -> bytes:
    return msgpack.packb([env.VERSION, kind, frm, ref, payload], default=codec._default,
                         use_bin_type=True, strict_types=True)


def raw_frame(m: Any, fields: Sequence[Any], frm: str, call: bool) -> bytes:
    """The frame of a message of ``type(m)`` carrying ``fields`` as they are (any arity)."""
    marker, _ = codec._encoders[type(m)]
    kind = env.CALL if call else env.CAST
    return _encode_raw(kind, frm, 1 if call else None, [marker, *fields])


def _same(p: Any) -> Any:
    return p


@st.composite
def mutants(draw: Any, exemplars: Sequence[Any], frm: str,
            skip: Callable[[Any], bool] = lambda m: False,
            wrap: Callable[[Any], Any] = _same) -> Item:
    """One fuzz item, built from the valid ``exemplars`` of a protocol (``frm``: the sender's
    address, for raw frames). ``skip(msg)`` says a valid message must not be sent (it would do
    what it asks: stop the node, change the cluster...); it is replaced by a random term.
    ``wrap`` puts a message in the envelope its protocol uses (peer RPCs: ``("$rpc", m)``)."""
    how = draw(st.sampled_from(["term", "valid", "field", "edge", "deep", "arity", "tuple",
                                "flip", "cut", "bytes"]))
    call = draw(st.booleans())
    kind = "call" if call else "cast"
    if how == "bytes":
        return Item("raw", raw=draw(st.binary(max_size=64)), how=how)
    if how == "term":
        return Item(kind, draw(terms()), how=how)
    m = draw(st.sampled_from(list(exemplars)))
    fs = _fields(m)
    if how in ("field", "edge", "deep") and fs:
        i = draw(st.integers(0, len(fs) - 1))
        if how == "field":
            fs[i] = draw(terms())
        elif how == "edge":
            fs[i] = draw(st.sampled_from(_EDGE))
        else:
            fs[i] = draw(_deep(fs[i]))
        m = type(m)(*fs)
    elif how == "arity":
        if fs and draw(st.booleans()):
            fs = fs[:draw(st.integers(0, len(fs) - 1))]
        else:
            fs = fs + draw(st.lists(terms(3), min_size=1, max_size=3))
        return _raw(draw, raw_frame(m, fs, frm, call), skip, f"arity:{type(m).__name__}")
    elif how == "tuple":
        tag = draw(st.sampled_from(["$ra", "$ra_fd", "$ra_registry", type(m).__name__]))
        return Item(kind, (tag, *fs), how=how)
    elif how in ("flip", "cut"):
        data = bytearray(env.pack(env.CALL if call else env.CAST, frm, 1 if call else None, m))
        if how == "cut":
            data = data[:draw(st.integers(0, max(0, len(data) - 1)))]
        else:
            for _ in range(draw(st.integers(1, 4))):
                data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return _raw(draw, bytes(data), skip, how)
    if skip(m):
        return Item(kind, draw(terms()), how="term")
    return Item(kind, wrap(m), how=f"{how}:{type(m).__name__}")


def _raw(draw: Any, data: bytes, skip: Callable[[Any], bool], how: str) -> Item:
    """A raw frame, unless it decodes to a message ``skip`` refuses (a truncated message may
    be a valid one with its defaults, a flipped byte may leave it valid)."""
    try:
        payload = env.unpack(data, check_from=False)[3]
    except Exception:
        return Item("raw", raw=data, how=how)
    if skip(payload) or (type(payload) is tuple and len(payload) == 2 and skip(payload[1])):
        return Item("raw", raw=draw(st.binary(max_size=64)), how="bytes")
    return Item("raw", raw=data, how=how)


def items(exemplars: Sequence[Any], frm: str, skip: Callable[[Any], bool] = lambda m: False,
          wrap: Callable[[Any], Any] = _same, n: int = FUZZ_BATCH
          ) -> st.SearchStrategy[list[Item]]:
    """A batch of ``n`` items."""
    return st.lists(mutants(exemplars, frm, skip, wrap), min_size=n, max_size=n)


_GREETING = (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00")
             + b"\x00" * 32)
_READY_BODY = b"\x05READY\x0bSocket-Type\x00\x00\x00\x06DEALER"
_READY = bytes([0x04, len(_READY_BODY)]) + _READY_BODY


@st.composite
def zmtp_streams(draw: Any) -> bytes:
    """A byte stream for a raw connection to a mailbox: garbage from the first byte, or a good
    greeting (and READY) followed by frames with random flags, lengths and bodies, cut
    anywhere."""
    how = draw(st.sampled_from(["bytes", "greeting", "frames", "long"]))
    if how == "bytes":
        return draw(st.binary(min_size=1, max_size=200))
    out = _GREETING if how == "greeting" else _GREETING + _READY
    if how == "greeting":
        return out[:draw(st.integers(0, 64))] + draw(st.binary(max_size=100))
    for _ in range(draw(st.integers(1, 5))):
        flags = draw(st.integers(0, 255))
        body = draw(st.binary(max_size=40))
        if how == "long" or flags & 0x02:
            size = draw(st.sampled_from([len(body), 2 ** 63, 2 ** 40, 65 << 20, 0]))
            out += bytes([flags | 0x02]) + size.to_bytes(8, "big") + body
        else:
            out += bytes([flags, draw(st.sampled_from([len(body), 255, 0]))]) + body
    return out[:draw(st.integers(len(out) // 2, len(out)))]


def send_stream(endpoint: str, data: bytes) -> None:
    """Write ``data`` on a fresh raw connection to ``endpoint`` and close it."""
    import socket
    if endpoint.startswith("ipc://"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr: Any = endpoint[6:]
    else:
        host, _, port = endpoint[6:].rpartition(":")
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        addr = (host, int(port))
    s.settimeout(2)
    try:
        s.connect(addr)
        s.sendall(data)
    except OSError:
        pass
    finally:
        s.close()
