"""The packed append_entries (ra/server/packed.py) and the payloads a DiskLog keeps for it:
exact terms through the carried bytes, corrupt payloads refused with a typed error, the plain
form still read, and bytes never handed out for another entry than the one they encode."""
from __future__ import annotations

from typing import Any

import pytest

from ra.core.messages import AppendEntriesPacked, AppendEntriesRpc
from ra.core.types import ServerId
from ra.server import packed
from ra.wire import codec
from tests.wal.harness import InProcNode

L = ServerId("l", "127.0.0.1:1")
CMDS: list[Any] = [
    ("usr", (1, [2, (3,)]), ("notify", 7, "tcp://h:1"), 5),
    ("usr", {(1, 2): frozenset({(3,)})}, None, 6),
    ("cluster", (L, ServerId("f", "127.0.0.1:2")), None),
    ("usr", 2**70, ("await", ("tcp://h:1", 3)), 7),
    ("noop", 1),
]


def _ae(prev: int = 4) -> AppendEntriesRpc:
    es = [(prev + 1 + k, 3 if k < 2 else 4, c) for k, c in enumerate(CMDS)]
    return AppendEntriesRpc(4, L, 2, prev, 3, es)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(v, b[k]) for k, v in a.items())
    return bool(a == b)


def test_packed_append_entries_round_trips_exact_terms_over_the_wire() -> None:
    msg = _ae()
    payloads = codec.encode_each([e[2] for e in msg.entries])
    wire = codec.decode(codec.encode(("$rpc", packed.pack(msg, payloads))))
    assert type(wire[1]) is AppendEntriesPacked
    back, cmds, carried = packed.unpack(wire[1])
    assert back == msg and _same(back.entries, msg.entries)
    assert carried == payloads and all(c is e[2] for c, e in zip(cmds, back.entries))


def test_the_plain_form_still_decodes() -> None:
    msg = _ae()
    back = codec.decode(codec.encode(("$rpc", msg)))[1]
    assert type(back) is AppendEntriesRpc and _same(back.entries, msg.entries)


@pytest.mark.parametrize("corrupt", [
    lambda p: p[:-1],                 # torn
    lambda p: p + b"\x01",            # a second term
    lambda p: b"\xc1" + p[1:],        # not msgpack
    lambda p: b"",
])
def test_a_corrupt_payload_is_refused_with_a_typed_error(corrupt: Any) -> None:
    msg = _ae()
    payloads = codec.encode_each([e[2] for e in msg.entries])
    payloads[2] = corrupt(payloads[2])
    with pytest.raises(packed.BadPacked) as ei:
        packed.unpack(packed.pack(msg, payloads))
    assert ei.value.reason == "bad_payload:AppendEntriesPacked" and "part 2" in str(ei.value)


@pytest.mark.parametrize("field, value", [
    ("terms", [3, 3, -1, 4, 4]), ("terms", [3, 3, 2**63, 4, 4]), ("terms", [3, 3, True, 4, 4]),
    ("terms", [3]), ("terms", []), ("payloads", [b"\x01"] * 4 + [1]),
    ("payloads", "x"), ("prev_log_index", -1), ("leader_id", 5), ("term", 1.5),
])
def test_a_malformed_packed_message_is_refused_by_field(field: str, value: Any) -> None:
    msg = _ae()
    p = packed.pack(msg, codec.encode_each([e[2] for e in msg.entries]))
    bad = AppendEntriesPacked(**{**{f: getattr(p, f) for f in p.__dataclass_fields__},
                                 field: value})
    with pytest.raises(packed.BadPacked, match="AppendEntriesPacked"):
        packed.unpack(bad)


def test_a_leader_encodes_each_entry_once_for_its_wal_and_its_followers(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    for k, c in enumerate(CMDS):
        lg.append((k + 1, 1, c))
    lg.flush()
    sent = node.queue[-1].entries
    entries = lg.take(1, 10)
    pls = lg.payloads(entries)
    assert pls == [e[2] for e in sent] == [codec.encode(_stored(c)) for c in CMDS]
    # the very bytes objects made for the WAL: not encoded again
    assert all(a is b[2] for a, b in zip(pls, sent))


def _stored(c: Any) -> Any:
    """How the log stores a command: a usr one's reply mode (a tuple) as its own encoding."""
    if c[0] == "usr" and type(c[2]) is tuple:
        return ("usr", c[1], codec.encode(c[2]), *c[3:])
    return c


def test_a_usr_entrys_reply_mode_is_stored_encoded_and_decoded_only_on_demand(
        tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    for k, c in enumerate(CMDS):
        lg.append((k + 1, 1, c))
    node.pump()
    lg.close()
    back = node.log("a")                    # read back from the WAL file: as stored
    got = [e[2] for e in back.take(1, len(CMDS))]
    assert got == [_stored(c) for c in CMDS]
    assert any(type(c[2]) is bytes for c in got)          # there was a tuple reply mode
    for c, want in zip(got, CMDS):
        if c[0] == "usr" and type(c[2]) is bytes:
            assert back.reply_mode(c[2]) == want[2]
    # garbage in the reply mode's place answers no one: it never raises
    assert back.reply_mode(b"\xc1") is None and back.reply_mode(codec.encode(5)) is None
    assert back.reply_mode(codec.encode(())) is None


def test_a_follower_writes_the_bytes_it_received(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path))
    lg = node.log("f")
    msg = _ae(prev=0)
    payloads = codec.encode_each([e[2] for e in msg.entries])
    back, cmds, carried = packed.unpack(packed.pack(msg, payloads))
    lg.carry(1, cmds, carried)
    lg.write(back.entries)
    lg.flush()
    sent = node.queue[-1].entries
    assert all(s[2] is c for s, c in zip(sent, carried))     # the very objects received
    node.pump()
    assert lg.last_written() == (5, 4)
    assert lg._payloads == {}        # durable: kept no longer (memory per entry unchanged)


def test_carried_bytes_of_entries_not_written_are_never_used(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path))
    lg = node.log("f")
    lg.write([(1, 1, ("usr", 1, None, 1)), (2, 1, ("usr", 2, None, 1))])
    # a carry whose entries the core then refused (or overwrote): other command objects
    lg.carry(2, [("usr", 99, None, 1)], [codec.encode(("usr", 99, None, 1))])
    lg.flush()
    assert [codec.decode(e[2]) for e in node.queue[-1].entries] == \
        [("usr", 1, None, 1), ("usr", 2, None, 1)]
    # an overwrite at 2 with another term: its own bytes, not those kept for the old entry
    lg.write([(2, 2, ("usr", 3, None, 1))])
    assert codec.decode(lg.payloads(lg.take(2, 1))[0]) == ("usr", 3, None, 1)
    lg.flush()
    assert codec.decode(node.queue[-1].entries[-1][2]) == ("usr", 3, None, 1)


def test_tick_forgets_the_bytes_of_entries_that_left_memory(tmp_path: Any) -> None:
    node = InProcNode(str(tmp_path), max_size_bytes=4096)
    lg = node.log("a")
    for i in range(1, 41):
        lg.append((i, 1, ("c", i)))
    lg.carry(99, [("c", 99)], [codec.encode(("c", 99))])     # never written
    node.pump()
    node.wal.roll_over()
    node.flush_segments()
    assert lg.tick() == 40 and len(lg.mem) == 0
    assert lg._payloads == {}


def test_a_large_flush_is_cut_into_messages_of_consecutive_entries(tmp_path: Any) -> None:
    from ra.log.log import MAX_ENTRIES_PER_MESSAGE as MAX
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    for i in range(1, MAX + 905):
        lg.append((i, 1, ("c", i)))
    assert lg.flush() == MAX + 904
    sizes = [len(m.entries) for m in node.queue]
    assert sizes == [MAX, 904]
    got = [e for m in node.queue for e in m.entries]
    assert [e[0] for e in got] == list(range(1, MAX + 905))
    assert all(codec.decode(e[2]) == ("c", e[0]) for e in got)


def test_a_flush_of_large_entries_is_cut_by_bytes_and_written_whole(tmp_path: Any) -> None:
    # a WalAppend above the mailbox's frame limit (64 MiB) would not leave at all: a flush
    # sends at most MAX_BYTES_PER_MESSAGE of payloads per message (an entry above it alone)
    from ra.log.log import MAX_BYTES_PER_MESSAGE as MAXB
    node = InProcNode(str(tmp_path))
    lg = node.log("a")
    big = MAXB // 3 + 1                     # two fit in a message, a third does not
    for i in range(1, 6):
        lg.append((i, 1, ("c", bytes([i]) * big)))
    lg.append((6, 1, ("c", b"x" * (MAXB + 1))))
    lg.append((7, 1, ("c", 7)))
    assert lg.flush() == 7
    msgs = list(node.queue)
    assert [[e[0] for e in m.entries] for m in msgs] == [[1, 2], [3, 4], [5], [6], [7]]
    assert [m.seq for m in msgs] == list(range(msgs[0].seq, msgs[0].seq + 5))
    assert all(sum(len(e[2]) for e in m.entries) <= MAXB for m in msgs if len(m.entries) > 1)
    node.pump()
    assert lg.last_written()[0] == 7        # the WAL wrote and confirmed every part, in order


def test_a_resend_reaching_below_memory_reads_segments_then_memory(tmp_path: Any) -> None:
    from wal.messages import WalResendWrite
    node = InProcNode(str(tmp_path), max_size_bytes=4096)
    lg = node.log("a")
    for i in range(1, 41):
        lg.append((i, 1, ("c", i)))
    node.pump()
    node.wal.roll_over()
    node.flush_segments()
    assert lg.tick() == 40 and len(lg.mem) == 0
    for i in range(41, 51):
        lg.append((i, 2, ("d", i)))
    lg.handle_wal_event(WalResendWrite("a", 35))
    assert lg.flush() == 16
    es = node.queue[-1].entries
    assert [(e[0], e[1]) for e in es] == [(i, 1) for i in range(35, 41)] + \
        [(i, 2) for i in range(41, 51)]
    assert [codec.decode(e[2]) for e in es] == [("c", i) for i in range(35, 41)] + \
        [("d", i) for i in range(41, 51)]


def test_a_large_batch_leaves_in_parts_that_chain() -> None:
    msg = _ae(prev=9)
    payloads = codec.encode_each([e[2] for e in msg.entries])
    assert packed.pack_parts(msg, payloads) == [packed.pack(msg, payloads)]
    limit = max(map(len, payloads)) + 1          # at most one entry and a bit per part
    parts = packed.pack_parts(msg, payloads, max_bytes=limit)
    assert len(parts) > 2
    prev, prev_term = msg.prev_log_index, msg.prev_log_term
    got: list[Any] = []
    for p in parts:
        assert sum(map(len, p.payloads)) <= limit or len(p.payloads) == 1
        assert (p.prev_log_index, p.prev_log_term) == (prev, prev_term)
        assert (p.term, p.leader_id, p.leader_commit) == (msg.term, msg.leader_id, msg.leader_commit)
        back, _cmds, _carried = packed.unpack(codec.decode(codec.encode(p)))
        got += back.entries
        prev, prev_term = back.entries[-1][0], back.entries[-1][1]
    assert _same(got, list(msg.entries))
    # an entry above the limit goes alone, never dropped
    alone = packed.pack_parts(msg, payloads, max_bytes=1)
    assert [len(p.payloads) for p in alone] == [1] * len(CMDS)
