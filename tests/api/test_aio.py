"""ra.aio (issue 12): the API as coroutines for asyncio programs. 1,000 concurrent tasks on one
event loop, each command applied exactly once; pipelined commands' events through an async
iterator; the event loop never blocked by a call."""
from __future__ import annotations

import asyncio

import pytest

import ra
import ra.aio
from tests.api.conftest import leader_of

TASKS = 1000


def test_1000_concurrent_tasks_on_one_loop(cluster):
    ids = cluster
    leader_of(ids)

    async def main() -> tuple[list[int], float]:
        gaps = []
        done = asyncio.Event()

        async def ticker() -> None:       # the loop must keep running while calls are out
            loop = asyncio.get_running_loop()
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = loop.time()
                gaps.append(now - last)
                last = now
        t = asyncio.create_task(ticker())
        res = await asyncio.gather(*[ra.aio.process_command(ids, 1, timeout=60)
                                     for _ in range(TASKS)])
        done.set()
        await t
        return [r for r, _leader in res], max(gaps)
    replies, worst_gap = asyncio.run(main())
    print(f"aio: worst event-loop gap {worst_gap:.3f} s")
    assert sorted(replies) == list(range(1, TASKS + 1))     # each applied once
    assert ra.consistent_query(ids, "ra.testing.machines:get_state")[0] == TASKS
    assert worst_gap < 0.5, f"the event loop was blocked for {worst_gap:.2f} s"


def test_pipeline_events_as_an_async_iterator(cluster):
    ids = cluster
    leader = leader_of(ids)

    async def main() -> dict:
        async with ra.aio.AsyncClient(workers=4) as c:
            for i in range(50):
                await c.pipeline_command(leader, 2, correlation=i)
            got: dict = {}
            async for ev in c.events():
                if ev.event[0] == "applied":
                    got.update(dict(ev.event[1]))
                if len(got) == 50:
                    break
            members = await c.members(ids)
            assert members[1] == leader
            return got
    got = asyncio.run(asyncio.wait_for(main(), 60))
    assert sorted(got) == list(range(50))
    assert sorted(got.values()) == list(range(2, 101, 2))   # the running totals, once each


def test_errors_are_ra_errors_and_closed_client_refuses(shared_three):
    async def main() -> None:
        c = ra.aio.AsyncClient(workers=2)
        with pytest.raises(ra.NodeDown):
            await c.ping(ra.ServerId("x", "127.0.0.1:1"), timeout=2)
        with pytest.raises(AttributeError):
            c.no_such_function      # noqa: B018
        await c.close()
        with pytest.raises(RuntimeError, match="closed"):
            await c.members([ra.ServerId("x", "127.0.0.1:1")])
        with pytest.raises(ValueError, match="workers"):
            ra.aio.AsyncClient(workers=0)
    asyncio.run(main())
