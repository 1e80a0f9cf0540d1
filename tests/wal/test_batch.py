"""wal/batch.py: the pure batching decision, no disk."""
from __future__ import annotations

from wal.batch import Append, WriterState, fence, needs_roll, plan_batch
from wal.format import HEADER_SIZE, encode_header, scan


def _e(frm: int, to: int, term: int = 1) -> list:
    return [(i, term, b"p%d" % i) for i in range(frm, to + 1)]


def test_one_buffer_many_writers_and_notices() -> None:
    w: dict = {}
    reqs = [Append(b"a", "A", 0, _e(1, 3), 1), Append(b"b", "B", 0, _e(1, 2), 1),
            Append(b"a", "A", 0, _e(4, 5), 2)]
    p = plan_batch(reqs, w, True)
    assert p.n_entries == 7
    recs = scan(encode_header(True) + p.buffer).records
    assert [(u, i) for u, i, _, _ in recs] == [(b"a", 1), (b"a", 2), (b"a", 3), (b"b", 1),
                                               (b"b", 2), (b"a", 4), (b"a", 5)]
    assert p.written == {("A", b"a"): [(1, 1, 5)], ("B", b"b"): [(1, 1, 2)]}
    assert w[b"a"].next_idx == 6 and w[b"b"].next_idx == 3
    assert p.resends == []


def test_term_change_splits_ranges_and_overwrite_goes_back() -> None:
    w = {b"a": WriterState(next_idx=6, addr="A", seq=0)}
    reqs = [Append(b"a", "A", 5, [(6, 1, b""), (7, 2, b"")], 1),
            Append(b"a", "A", 5, _e(4, 4, 3), 2)]
    p = plan_batch(reqs, w, False)
    assert p.written[("A", b"a")] == [(1, 6, 6), (2, 7, 7), (3, 4, 4)]
    assert w[b"a"].next_idx == 5


def test_gap_from_known_writer_asks_resend_once() -> None:
    w = {b"a": WriterState(next_idx=6, addr="A", seq=0)}
    p = plan_batch([Append(b"a", "A", 3, _e(8, 9), 1), Append(b"a", "A", 3, _e(10, 10), 2)], w,
                   True)
    assert p.n_entries == 0 and p.buffer == b""
    assert p.resends == [("A", b"a", 4)]
    # the resend arrives: accepted, resend marker cleared
    p = plan_batch([Append(b"a", "A", 3, _e(4, 10), 3)], w, True)
    assert p.n_entries == 7 and p.resends == [] and w[b"a"].resend_from is None


def test_unknown_writer_must_start_at_or_below_lw_plus_one() -> None:
    """After a WAL restart nothing is assumed about in-flight writes: a writer confirmed up to 4
    whose batch starts at 9 must resend from 5."""
    w: dict = {}
    p = plan_batch([Append(b"a", "A", 4, _e(9, 9), 1)], w, True)
    assert p.resends == [("A", b"a", 5)] and p.n_entries == 0
    p = plan_batch([Append(b"a", "A", 4, _e(5, 9), 2)], w, True)
    assert p.n_entries == 5 and p.written[("A", b"a")] == [(1, 5, 9)]
    # overwrite below lw is fine (a follower truncating confirmed-but-uncommitted entries)
    p = plan_batch([Append(b"z", "Z", 4, _e(2, 2, 5), 1)], w, True)
    assert p.n_entries == 1


def test_needs_roll() -> None:
    assert not needs_roll(HEADER_SIZE, 10_000, 1000)   # empty file takes any batch
    assert needs_roll(HEADER_SIZE + 1, 1000, 1000)
    assert not needs_roll(500, 400, 1000)


def test_a_request_sent_before_one_written_is_stale() -> None:
    """Process A of writer a sent 6..9 then died; its successor B (fenced, numbering from 100)
    wrote 6..12. A's request, read late, would cut B's confirmed 10..12: it is dropped."""
    w = {b"a": WriterState(next_idx=6, addr="A", seq=5)}
    p = plan_batch([Append(b"a", "B", 5, _e(6, 12), 101), Append(b"a", "A", 5, _e(6, 9), 6)],
                   w, True)
    assert p.written == {("B", b"a"): [(1, 6, 12)]} and p.stale == 1
    assert [i for _, i, _, _ in scan(encode_header(True) + p.buffer).records] == list(range(6, 13))
    # in a later batch as well
    p = plan_batch([Append(b"a", "A", 5, _e(6, 9), 7)], w, True)
    assert p.n_entries == 0 and p.stale == 1 and p.resends == []


def test_a_request_not_next_in_order_needs_its_prefix_confirmed() -> None:
    """Request 7 (9..12 on top of an overwrite of 7..8 in request 6, not arrived yet: its
    connection dropped) is written only if it starts at or below lw + 1; else a resend from
    lw + 1 is asked, and request 6, arriving after the resend was written, is stale."""
    w = {b"a": WriterState(next_idx=11, addr="A", seq=5)}
    p = plan_batch([Append(b"a", "A", 6, _e(9, 12, 7), 7)], w, True)
    assert p.n_entries == 0 and p.resends == [("A", b"a", 7)]
    p = plan_batch([Append(b"a", "A", 6, _e(7, 12, 7), 8), Append(b"a", "A", 6, _e(7, 8, 7), 6)],
                   w, True)
    assert p.written == {("A", b"a"): [(7, 7, 12)]} and p.stale == 1 and p.resends == []
    # the next one in order may continue from where the WAL is (not only from lw + 1)
    p = plan_batch([Append(b"a", "A", 6, _e(13, 13, 7), 9)], w, True)
    assert p.n_entries == 1


def test_fence_makes_the_predecessors_requests_stale_and_the_successor_unseen() -> None:
    w = {b"a": WriterState(next_idx=21, addr="A", seq=5)}
    fence(w, b"a", 100)
    # the predecessor's last request, read after the fence: never written
    p = plan_batch([Append(b"a", "A", 10, _e(11, 20), 6)], w, True)
    assert p.n_entries == 0 and p.stale == 1
    # the successor's first request: only from its own confirmed prefix (lw + 1)
    p = plan_batch([Append(b"a", "B", 10, _e(15, 16), 101)], w, True)
    assert p.n_entries == 0 and p.resends == [("B", b"a", 11)]
    p = plan_batch([Append(b"a", "B", 10, _e(11, 16), 102)], w, True)
    assert p.written == {("B", b"a"): [(1, 11, 16)]}
    # an older fence (a slow call of a process that is gone) changes nothing
    fence(w, b"a", 50)
    assert w[b"a"].seq == 102 and w[b"a"].next_idx == 17


_R1 = ["tcp://127.0.0.1:1", b"r1", b""]
_R2 = ["tcp://127.0.0.1:1", b"r2", b""]


def test_the_last_reply_of_a_writer_in_a_batch_is_the_one_sent() -> None:
    """Appends may carry a reply to send once written (WalAppend.reply): of one writer's
    batch, the last accepted one's, with the last index of its append."""
    w: dict = {}
    reqs = [Append(b"a", "A", 0, _e(1, 3), 1, _R1), Append(b"b", "B", 0, _e(1, 2), 1),
            Append(b"a", "A", 0, _e(4, 5), 2, _R2), Append(b"a", "A", 0, _e(6, 6), 3)]
    p = plan_batch(reqs, w, True)
    assert p.replies == {("A", b"a"): (5, _R2)}


def test_a_reply_whose_entries_a_later_append_overwrites_is_not_sent() -> None:
    """What the reply claims is no longer what the batch leaves on disk."""
    w: dict = {}
    reqs = [Append(b"a", "A", 0, _e(1, 5), 1, _R1), Append(b"a", "A", 0, _e(5, 5, 2), 2)]
    assert plan_batch(reqs, w, True).replies == {}
    # an append that starts past it keeps it
    w = {}
    reqs = [Append(b"a", "A", 0, _e(1, 5), 1, _R1), Append(b"a", "A", 0, _e(6, 7, 2), 2)]
    assert plan_batch(reqs, w, True).replies == {("A", b"a"): (5, _R1)}


def test_a_reply_on_an_append_not_written_is_not_sent() -> None:
    """A gapped (resend asked) or stale append's reply goes nowhere."""
    w = {b"a": WriterState(next_idx=6, addr="A", seq=5)}
    p = plan_batch([Append(b"a", "A", 3, _e(8, 9), 6, _R1), Append(b"a", "A", 5, _e(6, 6), 5, _R2)],
                   w, True)
    assert p.n_entries == 0 and p.replies == {}
