"""No ra equivalent. W2-long (issue 14): W2 for 10 minutes on one cluster, to see whether
throughput holds as the log grows. ``python -m bench.w2_long [--secs S] [--interval I]
[--clients N]``; in ``make bench`` (not with ``--quick``) as the suite ``w2_long``.

Setup as :mod:`bench.workloads`: 3 node daemons, one counter cluster (the counter never
snapshots, so the log only grows: about ``ops/s x secs`` entries). ``N`` client processes
(default 32) do ``process_command`` back to back for ``S`` seconds (default 600, or
``$BENCH_W2_LONG_SECS``); each counts the commands it completed in each ``I``-second interval
(default: about 60, dividing ``S`` evenly: one row a minute). Rows:

* ``ops/s <from>-<to> s``: every client's commands completed in that interval / ``I``;
* ``last / first``: the last interval's ops/s over the first's (1.0: flat; the goal is >= 0.9);
* ``leader CPU us/cmd <from>-<to> s`` for the first and the last interval: the leader process's
  CPU seconds (psutil) per command completed; unlike a rate, it barely depends on how busy the
  rest of the machine is, so a per-command cost growing with the log shows here;
* leader and WAL RSS / USS at the end, and the log's size (the applied index).

At the end the counter's total is checked against the acknowledged adds (each applied once).

Every process it starts is killed at the end (``bench.procs.Reaper``). On a shared machine the
ops/s rows follow the other load; read them with the CPU rows.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

import ra
from bench import workloads
from bench.procs import Reaper, kill_tree, progress

__all__ = ["run", "measure", "main", "default_interval", "DEFAULT_SECS", "DEFAULT_INTERVAL",
           "WORKLOAD"]

DEFAULT_SECS = 600.0
DEFAULT_INTERVAL = 60.0
WORKLOAD = "W2-long: W2 for 10 minutes"
SIDE = "w2-long"

_CHILD = """
import json, sys, time
import ra
ids = [ra.ServerId(*s) for s in json.loads(sys.argv[1])]
secs, iv = float(sys.argv[2]), float(sys.argv[3])
c = ra.Client()
c.process_command(ids, 0, timeout=30)       # connected and warm before the clock starts
print("ready", flush=True)
t_start = float(sys.stdin.readline())
while time.monotonic() < t_start:
    time.sleep(0.0005)
t_end = t_start + secs
counts = [0] * max(1, round(secs / iv))
errors = acked = 0
while True:
    t0 = time.monotonic()
    if t0 >= t_end:
        break
    try:
        c.process_command(ids, 1, timeout=5)
    except ra.RaError:
        errors += 1
        continue
    acked += 1
    k = int((time.monotonic() - t_start) / iv)
    if k < len(counts):            # a command completed after the end is not counted
        counts[k] += 1
print(json.dumps([counts, errors, acked]), flush=True)
c.close()
"""


def _mem(pid: int | None) -> tuple[float, float]:
    if not pid:
        return float("nan"), float("nan")
    m = psutil.Process(pid).memory_full_info()
    return m.rss / 2**20, m.uss / 2**20


def _cpu(pid: int | None) -> float:
    if not pid:
        return float("nan")
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def _label(k: int, iv: float) -> str:
    return f"{k * iv:g}-{(k + 1) * iv:g} s"


def measure(secs: float, interval: float, n_clients: int, reaper: Reaper
            ) -> list[dict[str, Any]]:
    """Run W2-long once (see the module docstring); returns its rows."""
    if interval <= 0 or secs < interval:
        raise ValueError(f"need 0 < interval <= secs, not interval {interval}, secs {secs}")
    n_iv = max(1, round(secs / interval))
    if abs(n_iv * interval - secs) > 1e-6:
        raise ValueError(f"secs ({secs}) must be a multiple of interval ({interval})")
    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)
    tmp = tempfile.mkdtemp(prefix="ra-bench-w2long-", dir="/tmp")
    nodes = workloads.RaNodes(tmp, reaper)
    name = "w2long"
    procs: list[subprocess.Popen[str]] = []
    try:
        nodes.start_all()
        ids = [nodes.sid(name, i) for i in range(3)]
        ordered = nodes.start_cluster(name)
        leader = ordered[0]
        li = nodes.node_of(leader)
        pid = nodes.server_pid(name, li)
        wal_pid = nodes.log_child_pid(li, "ra_log_wal")
        arg = json.dumps([list(s) for s in ordered])
        procs, t_start = workloads.start_clients(_CHILD, [arg, str(secs), str(interval)],
                                                 n_clients, reaper, "W2-long")
        # the leader's CPU at each interval's boundary (the clients count commands per interval)
        while time.monotonic() < t_start:
            time.sleep(0.001)
        cpu = [_cpu(pid)]
        for k in range(n_iv):
            time.sleep(max(0.0, t_start + (k + 1) * interval - time.monotonic()))
            cpu.append(_cpu(pid))
        counts = [0] * n_iv
        errors = acked = 0
        for p in procs:
            out, _ = p.communicate(timeout=60)
            got, err, ack = json.loads(out.strip().splitlines()[-1])
            counts = [a + b for a, b in zip(counts, got)]
            errors += err
            acked += ack
        total, leader_end = ra.consistent_query(ids, "ra.testing.machines:get_state",
                                                timeout=30)
        # every acknowledged add of 1 applied once; a failed call may or may not have been
        if not acked <= total <= acked + errors:
            raise AssertionError(f"counter check: total {total}, acknowledged adds {acked}, "
                                 f"unknown outcomes {errors}")
        entries = int(ra.local_query(leader_end, "ra.testing.machines:get_state",
                                     timeout=10)[0][0])
        l_rss, l_uss = _mem(pid)
        w_rss, w_uss = _mem(wal_pid)
    finally:
        for p in procs:
            if p.poll() is None:
                kill_tree(p.pid)
                p.wait(5)
        nodes.close()
        shutil.rmtree(tmp, ignore_errors=True)
    note = (f"{n_clients} client processes, {secs:g} s, {errors} errors; one counter cluster "
            f"(never snapshots): {entries:,} log entries at the end; counter total {total:,} "
            "(checked: each acknowledged add applied once)")
    if leader_end != leader:
        note += "; the leader changed during the run (CPU and memory rows: the first leader's)"
    rows = []
    rate = [n / interval for n in counts]
    for k, r in enumerate(rate):
        rows.append(_row(f"ops/s {_label(k, interval)}", r, "ops/s", note))
        progress(SIDE, f"{_label(k, interval)}: {r:,.0f} ops/s, leader CPU "
                       f"{_us(cpu[k + 1] - cpu[k], counts[k]):.0f} us/cmd")
    ratio = rate[-1] / rate[0] if rate[0] else float("nan")
    rows.append(_row("last / first", ratio, "ratio",
                     f"ops/s of the last interval over the first ({interval:g} s each)"))
    for k in sorted({0, n_iv - 1}):
        rows.append(_row(f"leader CPU us/cmd {_label(k, interval)}",
                         _us(cpu[k + 1] - cpu[k], counts[k]), "us",
                         "the leader process's CPU (psutil) per command completed"))
    rows.append(_row("leader RSS at end", l_rss, "MB", note))
    rows.append(_row("leader USS at end", l_uss, "MB", note))
    rows.append(_row("WAL RSS at end", w_rss, "MB", "the leader's node's WAL process"))
    rows.append(_row("WAL USS at end", w_uss, "MB", "the leader's node's WAL process"))
    rows.append(_row("log entries at end", entries, "entries", note))
    progress(SIDE, f"last / first {ratio:.2f}; leader RSS {l_rss:.1f} MB USS {l_uss:.1f} MB, "
                   f"WAL RSS {w_rss:.1f} MB; {entries:,} entries, {errors} errors")
    return rows


def default_interval(secs: float) -> float:
    """About a minute, dividing ``secs`` evenly (``secs`` itself when shorter)."""
    return secs / max(1, round(secs / DEFAULT_INTERVAL))


def _us(cpu_s: float, n: int) -> float:
    return cpu_s / n * 1e6 if n else float("nan")


def _row(metric: str, value: Any, unit: str, note: str) -> dict[str, Any]:
    return {"workload": WORKLOAD, "metric": metric, "value": value, "unit": unit,
            "peer": None, "note": note}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """The ``make bench`` suite: ``$BENCH_W2_LONG_SECS`` (default 600) seconds of W2, one row a
    minute; skipped with ``--quick`` unless that variable is set."""
    env = os.environ.get("BENCH_W2_LONG_SECS")
    if quick and not env:
        progress(SIDE, "skipped with --quick (set BENCH_W2_LONG_SECS to run it)")
        return []
    secs = float(env or DEFAULT_SECS)
    interval = default_interval(secs)
    clients = workloads.params(quick)["w2_clients"]
    with Reaper() as reaper:
        try:
            return measure(secs, interval, clients, reaper)
        finally:
            reaper.kill_all()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.w2_long", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=float,
                    default=float(os.environ.get("BENCH_W2_LONG_SECS") or DEFAULT_SECS))
    ap.add_argument("--interval", type=float, default=None,
                    help="seconds per row; must divide --secs (default: about 60)")
    ap.add_argument("--clients", type=int, default=workloads.params(False)["w2_clients"])
    args = ap.parse_args(argv)
    interval = args.interval or default_interval(args.secs)
    with Reaper() as reaper:
        try:
            rows = measure(args.secs, interval, args.clients, reaper)
        finally:
            reaper.kill_all()
    for r in rows:
        print(json.dumps(r, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
