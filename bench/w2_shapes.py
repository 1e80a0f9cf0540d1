"""No ra equivalent. W2 (BENCH.md: concurrent clients doing ``process_command`` back to back)
in the two program shapes of README's "Threads and asyncio", measured from this process:

* ``W2 threads``: ``n`` threads calling the *module functions* (``ra.process_command``), each
  thread on its own default client (``ra.default_client()``), as a threaded web server would;
* ``W2 asyncio``: ``n_tasks`` concurrent tasks on one event loop awaiting
  ``ra.aio.process_command`` (the default :class:`ra.aio.AsyncClient`: its worker threads carry
  the calls out, so at most that many are in flight and a task's latency includes its wait
  for a worker).

:func:`bench.workloads.measure` runs both after W2; ``python -m bench.w2_shapes [--quick]``
runs them alone on a fresh 3-node cluster (``bench.workloads.RaNodes``) and prints their rows,
killing every process it started on the way out. Figures taken on a shared machine are noise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

import ra
import ra.aio
from bench.procs import Reaper, progress, summary_ms

__all__ = ["threads_module", "asyncio_tasks", "measure", "main", "ASYNC_TASKS"]

ASYNC_TASKS = 1000   # issue 12: 1,000 concurrent asyncio tasks on one event loop


def threads_module(ids: list[ra.ServerId], n: int, secs: float) -> tuple[list[float], int]:
    """``n`` threads doing ``ra.process_command(ids, 1)`` back to back for ``secs`` seconds.
    Each thread's first call (its default client's connection and session) is made before the
    clock starts, which starts for all together. Returns every latency (s) and the error
    count."""
    lats: list[list[float]] = [[] for _ in range(n)]
    errs = [0] * n
    t_end = [0.0]
    # the barrier's action sets the end before any thread passes it: a thread that read the
    # end before the main thread set it would go on adding, uncounted, for a minute
    ready = threading.Barrier(n + 1, action=lambda: t_end.__setitem__(0, time.monotonic()
                                                                        + secs))

    def work(k: int) -> None:
        try:
            ra.process_command(ids, 0, timeout=30)
        finally:
            ready.wait()
        end = t_end[0]
        while True:
            t0 = time.monotonic()
            if t0 >= end:
                return
            try:
                ra.process_command(ids, 1, timeout=5)
                lats[k].append(time.monotonic() - t0)
            except ra.RaError:
                errs[k] += 1
    ths = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(n)]
    for t in ths:
        t.start()
    ready.wait(60)
    for t in ths:
        t.join(secs + 30)
        if t.is_alive():
            raise RuntimeError("W2 threads: a client thread did not stop")
    return [x for xs in lats for x in xs], sum(errs)


async def _tasks(ids: list[ra.ServerId], n_tasks: int, secs: float
                 ) -> tuple[list[float], int, int]:
    aio = ra.aio.default_client()
    workers = aio._pool._max_workers
    # warm every worker's client (connection and session) before the clock starts
    await asyncio.gather(*[ra.aio.process_command(ids, 0, timeout=30)
                           for _ in range(2 * workers)])
    loop = asyncio.get_running_loop()
    t_end = loop.time() + secs
    lats: list[float] = []
    errs = 0

    async def task() -> None:
        nonlocal errs
        while True:
            t0 = loop.time()
            if t0 >= t_end:
                return
            try:
                await ra.aio.process_command(ids, 1, timeout=5)
                lats.append(loop.time() - t0)
            except ra.RaError:
                errs += 1
    await asyncio.gather(*[task() for _ in range(n_tasks)])
    return lats, errs, workers


def asyncio_tasks(ids: list[ra.ServerId], n_tasks: int, secs: float
                  ) -> tuple[list[float], int, int]:
    """``n_tasks`` tasks on one new event loop, each awaiting ``ra.aio.process_command(ids, 1)``
    back to back for ``secs`` seconds. Returns the latencies (s), the error count and the
    default AsyncClient's worker count."""
    return asyncio.run(_tasks(ids, n_tasks, secs))


def measure(ids: list[ra.ServerId], n_threads: int, secs: float,
            counts: list[tuple[int, int]] | None = None
            ) -> dict[tuple[str, str], tuple[Any, str]]:
    """Both rows: ``{(workload, metric): (value, note)}`` as :func:`bench.workloads.measure`.
    ``(acknowledged, failed)`` adds of each row are appended to ``counts`` if given."""
    out: dict[tuple[str, str], tuple[Any, str]] = {}
    lat, err = threads_module(ids, n_threads, secs)
    if counts is not None:
        counts.append((len(lat), err))
    s = summary_ms(lat)
    note = (f"{n_threads} threads in one process through ra.process_command (a default client "
            f"per thread), {secs:g} s, {err} errors")
    out[("W2 threads", "ops/s")] = (len(lat) / secs, note)
    out[("W2 threads", "p50")] = (s["p50"], note)
    out[("W2 threads", "p99")] = (s["p99"], note)
    progress("ours", f"W2 threads (module functions) {len(lat) / secs:,.0f} ops/s "
                     f"p50 {s['p50']:.2f} ms p99 {s['p99']:.2f} ms")
    lat, err, workers = asyncio_tasks(ids, ASYNC_TASKS, secs)
    if counts is not None:
        counts.append((len(lat), err))
    s = summary_ms(lat)
    note = (f"{ASYNC_TASKS} tasks on one event loop through ra.aio.process_command "
            f"({workers} worker threads: a task's latency includes its wait for one), "
            f"{secs:g} s, {err} errors")
    out[("W2 asyncio", "ops/s")] = (len(lat) / secs, note)
    out[("W2 asyncio", "p50")] = (s["p50"], note)
    out[("W2 asyncio", "p99")] = (s["p99"], note)
    progress("ours", f"W2 asyncio {len(lat) / secs:,.0f} ops/s p50 {s['p50']:.2f} ms "
                     f"p99 {s['p99']:.2f} ms ({ASYNC_TASKS} tasks)")
    return out


def main(argv: list[str] | None = None) -> int:
    from bench.workloads import RaNodes, params

    ap = argparse.ArgumentParser(prog="python -m bench.w2_shapes", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="8 threads, 2 s (else 32, 10 s)")
    args = ap.parse_args(argv)
    P = params(args.quick)
    tmp = tempfile.mkdtemp(prefix="ra-bench-w2s-", dir="/tmp")
    with Reaper() as reaper:
        nodes = RaNodes(tmp, reaper)
        try:
            nodes.start_all()
            ordered = nodes.start_cluster("w2s")
            rows = measure(ordered, P["w2_clients"], P["w2_secs"])
        finally:
            nodes.close()
            reaper.kill_all()
            shutil.rmtree(tmp, ignore_errors=True)
    for (wl, metric), (v, note) in rows.items():
        print(json.dumps({"workload": wl, "metric": metric, "value": v, "note": note}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
