"""A request too large for a frame (64 MiB) is refused before it is sent, with a typed error,
instead of being dropped by the receiver and timing out; a reply too large says so."""
from __future__ import annotations

import time

import pytest

import ra
from tests.api.conftest import leader_of, wait_for
from transport.direct import DirectMailbox
from transport.errors import MessageTooLarge


def test_mailbox_refuses_a_frame_over_its_limit():
    with DirectMailbox("tcp://127.0.0.1:0", max_frame_bytes=1000) as a, \
            DirectMailbox("tcp://127.0.0.1:0") as b:
        with pytest.raises(MessageTooLarge) as ei:
            a.call(b.address, b"x" * 2000, timeout=5)
        assert ei.value.size > 2000 and ei.value.limit == 1000
        with pytest.raises(MessageTooLarge):
            a.cast(b.address, b"x" * 2000)


def test_command_too_large_is_a_typed_error_at_once(cluster):
    ids = cluster
    leader_of(ids)
    t0 = time.monotonic()
    with pytest.raises(ra.CommandTooLarge) as ei:
        ra.process_command(ids, b"x" * (65 << 20), timeout=10)
    assert time.monotonic() - t0 < 5 and ei.value.limit == 64 << 20
    assert ra.process_command(ids, 1)[0] == 1       # nothing was applied meanwhile


def test_reply_too_large_says_so(cluster):
    ids = cluster
    leader = leader_of(ids)
    with pytest.raises(ra.RaError, match="exceeds the frame limit"):
        ra.local_query(leader, ("ra.testing.machines", "big", [65 << 20]), timeout=10)
    assert ra.local_query(leader, "ra.testing.machines:get_state")[1] == 0   # still serving


def test_a_follower_catches_up_over_more_than_a_frame_of_commands(cluster):
    # a follower that was down is sent what it lacks in appends of up to
    # max_append_entries_rpc_batch_size entries: 6 commands of 12 MiB are 72 MiB, more than a
    # frame, and leave in parts (ra.server.packed.pack_parts); sent whole, the append could not
    # leave at all and the follower would never catch up
    ids = cluster
    leader = leader_of(ids)
    lagging = next(s for s in ids if s != leader)
    ra.stop_server(lagging)
    for k in range(6):
        ra.process_command(leader, bytes([k]) * (12 << 20), timeout=30)
    top = ra.local_query(leader, "ra.testing.machines:get_state")[0][0]
    ra.restart_server(lagging)

    def caught_up() -> bool:
        try:
            return ra.local_query(lagging, "ra.testing.machines:get_state",
                                  timeout=2)[0][0] >= top
        except ra.RaError:
            return False
    wait_for(caught_up, 60, f"{lagging} caught up to index {top}")
    assert ra.process_command(ids, 1)[0] == 1       # the big ones were not ints: not added
