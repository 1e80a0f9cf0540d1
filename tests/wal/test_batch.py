"""wal/batch.py: the pure batching decision, no disk."""
from __future__ import annotations

from wal.batch import Append, WriterState, needs_roll, plan_batch
from wal.format import HEADER_SIZE, encode_header, scan


def _e(frm: int, to: int, term: int = 1) -> list:
    return [(i, term, b"p%d" % i) for i in range(frm, to + 1)]


def test_one_buffer_many_writers_and_notices() -> None:
    w: dict = {}
    reqs = [Append(b"a", "A", 0, _e(1, 3)), Append(b"b", "B", 0, _e(1, 2)),
            Append(b"a", "A", 0, _e(4, 5))]
    p = plan_batch(reqs, w, True)
    assert p.n_entries == 7
    recs = scan(encode_header(True) + p.buffer).records
    assert [(u, i) for u, i, _, _ in recs] == [(b"a", 1), (b"a", 2), (b"a", 3), (b"b", 1),
                                               (b"b", 2), (b"a", 4), (b"a", 5)]
    assert p.written == {("A", b"a"): [(1, 1, 5)], ("B", b"b"): [(1, 1, 2)]}
    assert w[b"a"].next_idx == 6 and w[b"b"].next_idx == 3
    assert p.resends == []


def test_term_change_splits_ranges_and_overwrite_goes_back() -> None:
    w = {b"a": WriterState(next_idx=6, addr="A")}
    reqs = [Append(b"a", "A", 5, [(6, 1, b""), (7, 2, b"")]), Append(b"a", "A", 5, _e(4, 4, 3))]
    p = plan_batch(reqs, w, False)
    assert p.written[("A", b"a")] == [(1, 6, 6), (2, 7, 7), (3, 4, 4)]
    assert w[b"a"].next_idx == 5


def test_gap_from_known_writer_asks_resend_once() -> None:
    w = {b"a": WriterState(next_idx=6, addr="A")}
    p = plan_batch([Append(b"a", "A", 3, _e(8, 9)), Append(b"a", "A", 3, _e(10, 10))], w, True)
    assert p.n_entries == 0 and p.buffer == b""
    assert p.resends == [("A", b"a", 6)]
    # the resend arrives: accepted, resend marker cleared
    p = plan_batch([Append(b"a", "A", 3, _e(6, 10))], w, True)
    assert p.n_entries == 5 and p.resends == [] and w[b"a"].resend_from is None


def test_unknown_writer_must_start_at_or_below_lw_plus_one() -> None:
    """After a WAL restart nothing is assumed about in-flight writes: a writer confirmed up to 4
    whose batch starts at 9 must resend from 5."""
    w: dict = {}
    p = plan_batch([Append(b"a", "A", 4, _e(9, 9))], w, True)
    assert p.resends == [("A", b"a", 5)] and p.n_entries == 0
    p = plan_batch([Append(b"a", "A", 4, _e(5, 9))], w, True)
    assert p.n_entries == 5 and p.written[("A", b"a")] == [(1, 5, 9)]
    # overwrite below lw is fine (a follower truncating confirmed-but-uncommitted entries)
    p = plan_batch([Append(b"z", "Z", 4, _e(2, 2, 5))], w, True)
    assert p.n_entries == 1


def test_needs_roll() -> None:
    assert not needs_roll(HEADER_SIZE, 10_000, 1000)   # empty file takes any batch
    assert needs_roll(HEADER_SIZE + 1, 1000, 1000)
    assert not needs_roll(500, 400, 1000)
