"""wal/format.py: framing, torn tails at every offset, zero fill, bit flips, overwrite rule."""
from __future__ import annotations

import random

import pytest

from wal.format import (HEADER_SIZE, RECORD_HEADER_SIZE, BadHeader, decode_header,
                        encode_header, encode_records, resolve, scan)


def _recs(n: int, uid: bytes = b"srv_a", term: int = 1, size: int = 37) -> list:
    return [(uid, i, term, bytes([i % 251]) * size) for i in range(1, n + 1)]


@pytest.mark.parametrize("checksums", [True, False])
def test_round_trip(checksums: bool) -> None:
    recs = _recs(5) + _recs(3, uid=b"other", term=2, size=0)
    data = encode_header(checksums) + encode_records(recs, checksums)
    assert decode_header(data) is checksums
    res = scan(data)
    assert res.records == recs
    assert res.reason == "eof" and res.valid_end == len(data)


def test_bad_header() -> None:
    with pytest.raises(BadHeader):
        decode_header(b"NOTAWAL!" + bytes(8))
    with pytest.raises(BadHeader):
        decode_header(b"RAPYWAL\x00\x09\x00" + bytes(6))


@pytest.mark.parametrize("checksums", [True, False])
def test_torn_tail_every_offset(checksums: bool) -> None:
    recs = _recs(4, size=50)
    data = encode_header(checksums) + encode_records(recs, checksums)
    last_len = RECORD_HEADER_SIZE + len(b"srv_a") + 50
    good_end = len(data) - last_len
    for cut in range(good_end, len(data)):
        res = scan(data[:cut])
        assert res.records == recs[:3], cut
        assert res.valid_end == good_end
        assert res.reason in ("eof", "torn_header", "torn_record")


@pytest.mark.parametrize("checksums", [True, False])
@pytest.mark.parametrize("zeros", [1, 8, 30, 4096])
def test_zero_filled_tail(checksums: bool, zeros: int) -> None:
    recs = _recs(3)
    data = encode_header(checksums) + encode_records(recs, checksums)
    res = scan(data + bytes(zeros))
    assert res.records == recs
    assert res.valid_end == len(data)


def test_flipped_bit_with_checksums_ends_log_there() -> None:
    rng = random.Random(7)
    recs = _recs(6, size=40)
    data = bytearray(encode_header(True) + encode_records(recs, True))
    rec_len = RECORD_HEADER_SIZE + 5 + 40
    for _ in range(200):
        k = rng.randrange(6)  # record to damage
        off = HEADER_SIZE + k * rec_len + rng.randrange(rec_len)
        bit = 1 << rng.randrange(8)
        bad = bytearray(data)
        bad[off] ^= bit
        res = scan(bytes(bad))
        # never returns the damaged record or anything after it
        assert res.records == recs[:k], (k, off)
        assert res.valid_end == HEADER_SIZE + k * rec_len


def test_flipped_bit_without_checksums_documented() -> None:
    """Without checksums a flipped payload bit is NOT detected: the altered record is returned
    (documented limitation). Structural damage (lengths) still ends the log."""
    recs = _recs(3, size=40)
    data = bytearray(encode_header(False) + encode_records(recs, False))
    rec_len = RECORD_HEADER_SIZE + 5 + 40
    # payload bit of record 1
    bad = bytearray(data)
    bad[HEADER_SIZE + rec_len + RECORD_HEADER_SIZE + 5 + 3] ^= 1
    res = scan(bytes(bad))
    assert len(res.records) == 3 and res.records[1] != recs[1]
    # uid_len high byte of record 1 -> implausible -> log ends before it
    bad = bytearray(data)
    bad[HEADER_SIZE + rec_len + 8 + 4 + 1] ^= 0x80
    res = scan(bytes(bad))
    assert res.records == recs[:1]


def test_resolve_overwrites() -> None:
    a, b = b"a", b"b"
    recs = [(a, i, 1, b"x") for i in range(1, 11)]
    recs += [(b, 1, 1, b"y")]
    recs += [(a, 5, 2, b"z"), (a, 6, 2, b"z")]  # overwrite at 5: 7..10 of term 1 dropped
    out = resolve(recs)
    assert [(i, t) for i, t, _ in out[a]] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 2), (6, 2)]
    assert out[b] == [(1, 1, b"y")]
    # overwrite below this file's first index: the truncation point moves down
    out = resolve([(a, 10, 1, b""), (a, 11, 1, b""), (a, 7, 3, b"")])
    assert out[a] == [(7, 3, b"")]


def test_scan_only_uid_still_ends_at_first_bad_record() -> None:
    recs = _recs(3) + _recs(2, uid=b"zz") + _recs(2, uid=b"srv_a")
    data = bytearray(encode_header(True) + encode_records(recs, True))
    res = scan(bytes(data), only_uid=b"zz")
    assert res.records == recs[3:5] and res.valid_end == len(data)
    data[HEADER_SIZE + 5] ^= 1                  # damage record 0 (another writer's)
    res = scan(bytes(data), only_uid=b"zz")
    assert res.records == [] and res.valid_end == HEADER_SIZE
