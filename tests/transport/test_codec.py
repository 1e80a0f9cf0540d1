"""Codec: exact round trips of every term, registered dataclasses, TypeError paths."""
from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ra.core.types import ServerId
from transport import codec
from transport.envelope import From


@dataclasses.dataclass(frozen=True, slots=True)
class _Rpc:
    term: int
    entries: list[Any]
    leader: Any = None


class _Pair(NamedTuple):
    a: Any
    b: Any


codec.register_dataclass(_Rpc, 120)
codec.register_namedtuple(_Pair, 121)
codec.register_server_id(ServerId)  # as ra/wire.py does: the codec imports nothing of ra


def same(a: Any, b: Any) -> bool:
    """Equal and of exactly the same types all the way down."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if type(a) in (list, tuple) or isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is dict:
        if len(a) != len(b):
            return False
        bk = {k: k for k in b}
        return all(k in bk and same(k, bk[k]) and same(v, b[k]) for k, v in a.items())
    if type(a) in (set, frozenset):
        return a == b
    if dataclasses.is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    return bool(a == b)


# server ids users can make: a name and a "host:port" node (ServerId checks both)
_sids = st.builds(ServerId, st.text(min_size=1, max_size=4),
                  st.from_regex(r"[a-z]{1,4}:[1-9][0-9]{0,3}", fullmatch=True))
hashable = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.binary(max_size=5),
    lambda c: st.tuples(c, c) | st.frozensets(c, max_size=3)
    | _sids,
    max_leaves=6,
)
terms = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=8) | st.binary(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.lists(c, max_size=4).map(tuple)
    | st.dictionaries(hashable, c, max_size=4) | st.sets(hashable, max_size=3)
    | st.frozensets(hashable, max_size=3)
    | _sids
    | st.builds(_Rpc, st.integers(), st.lists(c, max_size=3), c)
    | st.builds(_Pair, c, c),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(terms)
def test_roundtrip_any_term(t: Any) -> None:
    assert same(codec.decode(codec.encode(t)), t)


@pytest.mark.parametrize("v", [
    0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -2**63, -2**63 - 1, 10**40, -10**40,
    True, False, None, 1.0, -0.0, float("inf"), "", "é", b"", b"\x00\xff",
    (), (1,), ((),), [()], [[]], {(): ()}, set(), frozenset(), {frozenset({1}): {(1, 2)}},
    ServerId("a", "127.0.0.1:1"), (ServerId("a", "b:2"),), From("ipc:///x", 7),
])
def test_roundtrip_edges(v: Any) -> None:
    out = codec.decode(codec.encode(v))
    assert same(out, v), (v, out)


def test_server_ids_decode_unchecked() -> None:
    """ServerId() checks the addresses users give; what arrives is decoded as it came (the
    message validators judge it), so a peer cannot make decoding itself fail."""
    odd = tuple.__new__(ServerId, ("s9", "sim"))
    out = codec.decode(codec.encode([odd]))
    assert type(out[0]) is ServerId and out[0] == ("s9", "sim")


def test_namedtuples_stay_themselves_and_plain_tuples_stay_plain() -> None:
    sid = ServerId("n", "h:1")
    out = codec.decode(codec.encode([sid, ("n", "h:1"), _Pair(1, (2,))]))
    assert type(out[0]) is ServerId and out[0] == sid
    assert type(out[1]) is tuple
    assert type(out[2]) is _Pair and type(out[2].b) is tuple


def test_server_id_code_is_owned_by_one_class() -> None:
    class Other(NamedTuple):
        name: str
        node: str

    codec.register_server_id(ServerId)  # again: a no-op
    with pytest.raises(ValueError, match="server id"):
        codec.register_server_id(Other)
    with pytest.raises(TypeError):
        codec.register_server_id(dict)
    assert codec.decode(codec.encode(ServerId("a", "h:1"))) == ServerId("a", "h:1")


def test_a_process_without_ra_reads_a_server_id_as_a_plain_pair() -> None:
    """The WAL never registers ServerId; a message carrying one still decodes (its door then
    judges it) instead of being garbage whose call would never be answered."""
    import subprocess
    import sys
    data = codec.encode(("x", ServerId("a", "h:1")))
    out = subprocess.run(
        [sys.executable, "-c", ("import sys; from transport import codec; "
         "v = codec.decode(bytes.fromhex(sys.argv[1])); "
         "print(type(v[1]).__name__, v, 'ra' in sys.modules)"), data.hex()],
        capture_output=True, text=True, check=True).stdout.strip()
    assert out == "tuple ('x', ('a', 'h:1')) False"


def test_dataclass_roundtrip_nested() -> None:
    v = _Rpc(3, [(1, 3, ("usr", {"k": b"v"}, None, 5)), _Rpc(1, [], None)], ServerId("x", "y:3"))
    out = codec.decode(codec.encode(v))
    assert out == v and type(out.entries[0][2]) is tuple and type(out.entries[1]) is _Rpc


class _Weird:
    pass


@pytest.mark.parametrize("value, where", [
    (_Weird(), "<top>"),
    ([1, 2, {"k": _Weird()}], "[2]['k']"),
    ((1, [2, (3, _Weird())]), "[1][1][1]"),
    ({"a": {(1, 2): [_Weird()]}}, "['a'][(1, 2)][0]"),
    (_Rpc(1, [0, _Weird()]), ".entries[1]"),
    ({_Weird(): 1}, "<key"),
    ([lambda: 1], "[0]"),
])
def test_type_error_names_type_and_path(value: Any, where: str) -> None:
    with pytest.raises(TypeError) as ei:
        codec.encode(value)
    msg = str(ei.value)
    assert "cannot encode" in msg and where in msg, msg
    if "lambda" not in repr(value):
        assert "_Weird" in msg


@pytest.mark.parametrize("value", [
    __import__("collections").OrderedDict(a=1),  # subclasses are not terms: no silent widening
    __import__("enum").IntEnum("E", "A").A,
    _Pair,  # a class
])
def test_subclasses_and_other_types_are_rejected(value: Any) -> None:
    with pytest.raises(TypeError, match="cannot encode"):
        codec.encode(value)


def test_bytes_like_values_arrive_as_bytes() -> None:
    # msgpack packs bytearray/memoryview natively; documented widening to bytes.
    assert codec.decode(codec.encode([bytearray(b"ab"), memoryview(b"cd")])) == [b"ab", b"cd"]


@pytest.mark.parametrize("data", [
    b"", b"\xc1", codec.encode([1, 2, 3])[:-1], codec.encode("abc") + b"\x00",
    b"\xc7\x00\x63",  # unknown ext code
    b"\xc7\x00\x01",  # a bare tuple marker
    codec.encode([1, [2, 3]])[:-1],
])
def test_decode_rejects_malformed(data: bytes) -> None:
    with pytest.raises(codec.DecodeError):
        codec.decode(data)


def test_register_rejects_bad_input() -> None:
    @dataclasses.dataclass
    class NotFrozen:
        x: int

    with pytest.raises(TypeError):
        codec.register_dataclass(NotFrozen, 122)
    with pytest.raises(ValueError):
        codec.register_dataclass(_Rpc, 5)  # codec-reserved code
    with pytest.raises(ValueError):
        codec.register_namedtuple(_Pair, 120)  # taken by _Rpc
    codec.register_dataclass(_Rpc, 120)  # same class, same code: idempotent
    assert codec.registered()[120] is _Rpc


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_escape_as_anything_but_bad_envelope(data: bytes) -> None:
    from transport import envelope
    try:
        kind, frm, ref, payload = envelope.unpack(data)
    except envelope.BadEnvelope as exc:
        assert exc.reason in ("garbage", "bad_version", "bad_envelope")
    else:
        assert kind in (envelope.CAST, envelope.CALL, envelope.REPLY)


@settings(max_examples=200, deadline=None)
@given(terms, st.data())
def test_truncated_encodings_raise_decode_error(t: Any, data: st.DataObject) -> None:
    enc = codec.encode(t)
    cut = data.draw(st.integers(0, len(enc) - 1))
    with pytest.raises(codec.DecodeError):
        codec.decode(enc[:cut])


def test_decode_many_reads_terms_back_to_back() -> None:
    terms: list[Any] = [("usr", 1, ("notify", 7, "tcp://h:1"), 5), "a", [3, (4,)], None, {1: (2,)}]
    blob = b"".join(codec.encode(t) for t in terms)
    assert codec.decode_many(blob, len(terms)) == terms
    assert codec.decode_many(b"", 0) == []


@pytest.mark.parametrize("cut, n", [(0, 4), (0, 6), (-1, 5), (None, 5)])
def test_decode_many_refuses_anything_but_exactly_n_terms(cut: Any, n: int) -> None:
    blob = b"".join(codec.encode(t) for t in [(1, 2), "a", [3], None, 5])
    if cut is None:
        blob += b"\x01"          # a trailing byte: a sixth term, or garbage
    elif cut:
        blob = blob[:cut]        # the last term torn
    with pytest.raises(codec.DecodeError):
        codec.decode_many(blob, n)


def test_decode_many_refuses_a_bare_marker() -> None:
    blob = codec.encode(1) + codec.encode((1,))[1:4]    # the tuple's marker alone
    with pytest.raises(codec.DecodeError):
        codec.decode_many(blob, 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(terms, max_size=6))
def test_encode_each_and_decode_each_round_trip_exact_terms(ts: list[Any]) -> None:
    parts = codec.encode_each(ts)
    assert parts == [codec.encode(t) for t in ts]
    out = codec.decode_each(parts)
    assert len(out) == len(ts) and all(same(a, b) for a, b in zip(out, ts))


def test_encode_each_names_the_bad_value() -> None:
    with pytest.raises(TypeError, match=r"cannot encode <class 'object'> at \[1\]"):
        codec.encode_each([(1,), (2, object())])


@pytest.mark.parametrize("parts", [
    [codec.encode(1) + codec.encode(2)],                   # two terms in one part
    [codec.encode((1, 2))[:2], codec.encode((1, 2))[2:]],  # one term split over two parts
    [codec.encode(1), b""],                                # an empty part
    [b"\xc1"],                                             # never used by msgpack
    [codec.encode((1,))[1:4]],                             # a bare tuple marker
])
def test_decode_each_refuses_a_part_that_is_not_one_term(parts: list[bytes]) -> None:
    # a follower stores each part as one entry's payload: the parts must not merely decode
    # together, each must be one term
    with pytest.raises(codec.DecodeError):
        codec.decode_each(parts)


_ENCODER = codec.Encoder()


@settings(max_examples=300, deadline=None)
@given(terms)
def test_an_encoder_gives_the_bytes_of_encode(t: Any) -> None:
    """One Encoder reused for every term (its packer kept) gives encode's bytes each time."""
    assert _ENCODER.encode(t) == codec.encode(t)


@pytest.mark.parametrize("value, where", [
    ([1, 2, {"k": _Weird()}], "[2]['k']"),
    (_Rpc(1, [0, _Weird()]), ".entries[1]"),
])
def test_an_encoder_raises_as_encode_and_goes_on(value: Any, where: str) -> None:
    """A term that cannot be encoded raises encode's TypeError (type and path); nothing of
    it is left in the packer for the next term."""
    enc = codec.Encoder()
    assert enc.encode([1, "a"]) == codec.encode([1, "a"])
    with pytest.raises(TypeError, match="cannot encode") as ei:
        enc.encode(value)
    assert where in str(ei.value)
    assert enc.encode((2, "b")) == codec.encode((2, "b"))


def test_an_encoder_drops_a_packer_grown_by_a_large_term() -> None:
    """A term larger than the packer's kept buffer leaves that packer behind (its buffer
    would stay that large in every process that once sent one)."""
    enc = codec.Encoder()
    first = enc._pack
    enc.encode(b"x" * 100)
    assert enc._pack is first
    big = b"x" * (codec._KEEP_BYTES + 1)
    assert codec.decode(enc.encode(big)) == big
    assert enc._pack is not first
    assert enc.encode([1]) == codec.encode([1])


def test_an_encode_inside_an_encode_gets_its_own_packer() -> None:
    """An encode started while another is under way on the same Encoder (a signal handler
    that sends, run from the middle of a ``default`` callback) does not touch the packer in
    use: both terms come out whole."""
    enc = codec.Encoder()
    inner: list[bytes] = []

    @dataclasses.dataclass(frozen=True)
    class _Nested:
        v: int

    def fields(x: _Nested) -> tuple[Any, ...]:
        inner.append(enc.encode(["inner", x.v]))
        return (x.v,)

    code = 120
    codec._encoders[_Nested] = (codec.msgpack.ExtType(code, b""), fields)
    codec._marks[code] = codec._Mark(code, lambda items: _Nested(*items))
    try:
        out = enc.encode(["outer", _Nested(7), "end"])
    finally:
        del codec._encoders[_Nested], codec._marks[code]
    assert inner == [codec.encode(["inner", 7])]
    assert out[-4:] == codec.encode("end")
