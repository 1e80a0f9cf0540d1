"""Drives a fuzz of one process: hypothesis draws batches of items, each batch is sent to the
real process, and after each batch the process must be the same one (same pid) and still serve
a real request. Every call must be answered within its timeout; a call the process's door
refuses must be answered ``("error", "bad_request", reason)`` with the door's own reason."""
from __future__ import annotations

import math
import time
from typing import Any
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.gen import FUZZ_BATCH, Item

__all__ = ["run_fuzz", "send_items", "run_streams"]


def send_items(mb: Any, ep: str, batch: list[Item],
               door: Callable[[Any, str], str | None] | None = None,
               timeout: float = 5.0) -> int:
    """Send every item of ``batch`` to ``ep``; check the answer to each call against ``door``
    (``door(payload, kind) -> reason | None``). Returns the number of calls answered."""
    calls = 0
    for it in batch:
        if it.kind == "raw":
            mb._send(ep, it.raw)
        elif it.kind == "cast":
            mb.cast(ep, it.payload)
        else:
            reply = mb.call(ep, it.payload, timeout)    # a Timeout fails the test
            calls += 1
            reason = door(it.payload, "call") if door is not None else None
            if reason is not None:
                assert reply == ("error", "bad_request", reason), (it, reply)
    return calls


def run_fuzz(strategy: st.SearchStrategy[list[Item]], n_messages: int,
             send: Callable[[list[Item]], int], alive: Callable[[], None],
             label: str) -> dict[str, Any]:
    """Run ``ceil(n_messages / FUZZ_BATCH)`` batches; ``alive()`` after each (it asserts).
    Returns counts and the time taken (printed too: ``pytest -s`` shows it)."""
    stats: dict[str, Any] = {"messages": 0, "calls": 0, "batches": 0}
    kinds: dict[str, int] = {}
    t0 = time.monotonic()

    @settings(max_examples=math.ceil(n_messages / FUZZ_BATCH), deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def one(batch: list[Item]) -> None:
        stats["calls"] += send(batch)
        alive()
        stats["messages"] += len(batch)
        stats["batches"] += 1
        for it in batch:
            k = it.how.split(":")[0]
            kinds[k] = kinds.get(k, 0) + 1

    one()
    stats["seconds"] = round(time.monotonic() - t0, 2)
    stats["by_generator"] = dict(sorted(kinds.items()))
    print(f"\nfuzz {label}: {stats}")
    assert stats["messages"] >= n_messages, stats
    return stats


def run_streams(endpoints: list[str], n: int, alive: Callable[[], None], label: str) -> None:
    """``n`` raw connections (:func:`tests.fuzz.gen.zmtp_streams`) to each endpoint, in
    batches; ``alive()`` after each batch."""
    from tests.fuzz.gen import send_stream, zmtp_streams
    t0 = time.monotonic()
    count = [0]

    @settings(max_examples=math.ceil(n / FUZZ_BATCH), deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(zmtp_streams(), min_size=FUZZ_BATCH, max_size=FUZZ_BATCH))
    def one(streams: list[bytes]) -> None:
        for data in streams:
            for ep in endpoints:
                send_stream(ep, data)
        alive()
        count[0] += len(streams)

    one()
    print(f"\nraw connections {label}: {count[0]} x {len(endpoints)} endpoints, "
          f"{time.monotonic() - t0:.2f} s")
    assert count[0] >= n
