"""No ra equivalent. What a growing log costs a server: memory per entry and CPU per command.
``python -m bench.log_growth [--steps 0,100000,200000,300000] [--seq 1000]``.

Starts 3 node daemons and a counter cluster as ``make bench`` does (the counter never
snapshots: the log only grows), then for each log size of ``--steps``: pipelines commands
until the log holds that many entries, waits for the servers' housekeeping ticks (entries
move to segments and leave the memtable), and prints one JSON line with

* the RSS / USS and open file descriptors of the leader, a follower, the leader's WAL and its
  segment writer (psutil);
* the leader's CPU per command (µs, its ``cpu_times``) over ``--seq`` sequential
  ``process_command`` calls: the per-command cost at that log size.

The last line is the slope between the second and the last step (the first and the last with
two steps): bytes per log entry of each process. Not from the first step: the first burst
raises each process's heap to its high-water mark once (the memtable of a burst faster than the
housekeeping tick), which is a cost per burst, not per entry. Memory is machine-independent (bytes); the CPU figure is one process's CPU seconds, so
a shared machine disturbs it much less than a rate, but compare it within one sitting.
Every process it starts is killed at the end (``bench.procs.Reaper``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

import psutil

import ra
from bench import workloads
from bench.procs import Reaper, progress

__all__ = ["measure", "main", "TracedCounter"]

SIDE = "growth"
TRACED = ("module", "bench.log_growth:TracedCounter", None)


class TracedCounter:
    """The bench counter, plus tracemalloc inside the server process (``--trace``): started
    when the machine is initialised (an empty log), and a snapshot dumped by the command
    ``("dump", path_prefix)`` to ``<path_prefix>-<pid>.tm`` (every member applies it)."""

    def __init__(self) -> None:
        from ra.testing.machines import Counter
        self._c = Counter()

    def init(self, config: Any) -> Any:
        import tracemalloc
        if not tracemalloc.is_tracing():
            tracemalloc.start(4)
        return self._c.init(config)

    def apply(self, meta: dict[str, Any], cmd: Any, state: int) -> tuple[Any, ...]:
        if isinstance(cmd, (list, tuple)) and len(cmd) == 2 and cmd[0] == "dump":
            import gc
            import tracemalloc
            gc.collect()
            tracemalloc.take_snapshot().dump(f"{cmd[1]}-{os.getpid()}.tm")
            return state, "ok"
        return self._c.apply(meta, cmd, state)


def _proc_mem(pid: int | None) -> dict[str, float]:
    if not pid:
        return {}
    p = psutil.Process(pid)
    m = p.memory_full_info()
    return {"rss": m.rss, "uss": m.uss, "fds": p.num_fds()}


def _leader_cpu_per_cmd(c: ra.Client, ordered: list[ra.ServerId], pid: int, n: int) -> float:
    p = psutil.Process(pid)
    t0 = p.cpu_times()
    for _ in range(n):
        c.process_command(ordered, 1, timeout=10)
    t1 = p.cpu_times()
    return (t1.user + t1.system - t0.user - t0.system) / n * 1e6


def measure(steps: list[int], seq: int, reaper: Reaper, settle: float = 4.0,
            trace: str | None = None) -> list[dict[str, Any]]:
    """One row per log size of ``steps`` (ascending), then the slope row. With ``trace`` (a
    directory), each server also dumps a tracemalloc snapshot there at every step."""
    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="ra-bench-growth-", dir="/tmp")
    nodes = workloads.RaNodes(tmp, reaper)
    name = "growth"
    rows: list[dict[str, Any]] = []
    try:
        nodes.start_all()
        ordered = nodes.start_cluster(name, TRACED if trace else workloads.COUNTER)
        leader = ordered[0]
        li = nodes.node_of(leader)
        fi = next(i for i in range(3) if i != li)
        c = ra.Client()
        for target in steps:
            have = int(ra.key_metrics(leader)["last_index"])
            if target > have:
                el, _rej = workloads._w3(c, leader, target - have, 5000, 1200)
                progress(SIDE, f"log grown to {target:,} in {el:.1f} s")
            time.sleep(settle)      # housekeeping ticks: segments adopted, memtable dropped
            pid = nodes.server_pid(name, li)
            assert pid is not None
            row: dict[str, Any] = {"entries": int(ra.key_metrics(leader)["last_index"])}
            row["leader"] = _proc_mem(pid)
            row["follower"] = _proc_mem(nodes.server_pid(name, fi))
            row["wal"] = _proc_mem(nodes.log_child_pid(li, "ra_log_wal"))
            row["segment_writer"] = _proc_mem(nodes.log_child_pid(li, "ra_log_segment_writer"))
            row["leader_cpu_us_per_cmd"] = round(_leader_cpu_per_cmd(c, ordered, pid, seq), 1)
            if trace:
                c.process_command(ordered, ("dump", os.path.join(trace, f"step{target}")),
                                  timeout=60)
            rows.append(row)
            progress(SIDE, json.dumps(row))
        c.close()
    finally:
        nodes.close()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    if len(rows) >= 2:
        a, b = rows[1 if len(rows) >= 3 else 0], rows[-1]
        dn = b["entries"] - a["entries"]
        slope: dict[str, Any] = {"slope_from": a["entries"], "slope_to": b["entries"]}
        for who in ("leader", "follower", "wal", "segment_writer"):
            if a[who] and b[who]:
                slope[who] = {k: round((b[who][k] - a[who][k]) / dn, 2)
                              for k in ("rss", "uss")}
        rows.append(slope)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.log_growth", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default="0,100000,200000,300000",
                    help="log sizes (entries), ascending, comma-separated")
    ap.add_argument("--seq", type=int, default=1000,
                    help="sequential commands timed at each size (leader CPU per command)")
    ap.add_argument("--trace", help="directory: tracemalloc snapshots of every server")
    args = ap.parse_args(argv)
    steps = sorted(int(x) for x in args.steps.split(","))
    with Reaper() as reaper:
        try:
            for r in measure(steps, args.seq, reaper, trace=args.trace):
                print(json.dumps(r), flush=True)
        finally:
            reaper.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
