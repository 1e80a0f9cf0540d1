"""No ra equivalent. Wake-ups of idle server processes (issue 17: idle is free), counted rather
than timed, so that a shared machine gives the same answer as a quiet one.

C clusters of 3 (default 20) on 3 local node daemons (``bench.workloads.RaNodes``), the default
configuration (``quiet_when_idle``), one command each, then ``--settle`` seconds for the last
heartbeats and the ticks' back-off; then over ``--seconds`` (default 30) for every server
process:

* **wake-ups**: voluntary context switches of all its threads (``/proc/<pid>/task/*/status``):
  each time it goes back to sleep in its poll after something woke it, whatever that was
  (involuntary ones, preemptions, depend on the machine's load and are left out);
* **peer in / peer out / timeouts**: its ``peer_msgs_in``, ``peer_msgs_out`` and ``timeouts``
  counters (``ra.key_metrics``; the Prometheus ``ra_server_peer_messages_*_total`` and
  ``ra_server_timeouts_total``), read again ``16 * tick_ms`` after the window so that a change
  in it is reported; absent in a tree without them (shown as ``-``).

Per second per server process, medians and totals, leaders and followers apart (role from
``key_metrics``). ``python -m bench.idle_wakes [--clusters 20] [--seconds 30]``. Results:
``BENCHMARKS.md``, "Idle wake-ups".
"""
from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import shutil
import statistics
import tempfile
import time
from typing import Any

import ra
from bench.procs import Reaper, progress
from bench.workloads import COUNTER, RaNodes
from ra import messages as rm
from ra.client.api import default_client

__all__ = ["measure", "main"]

_COUNTERS = ("peer_msgs_in", "peer_msgs_out", "timeouts")


def _switches(pid: int) -> int:
    """Voluntary context switches of every thread of ``pid`` so far."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path, encoding="ascii") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except OSError:
            pass                   # a thread that just ended
    return total


def _servers(nodes: RaNodes) -> dict[ra.ServerId, int]:
    out = {}
    for i in range(3):
        table = default_client()._daemon(nodes.addrs[i], rm.ListServers(), 30.0)
        for name, v in table.items():
            if v.get("pid"):
                out[nodes.sid(name, i)] = int(v["pid"])
    return out


def _counts(sids: list[ra.ServerId]) -> dict[ra.ServerId, tuple[int, ...] | None]:
    out: dict[ra.ServerId, tuple[int, ...] | None] = {}
    for s in sids:
        c = ra.key_metrics(s).get("counters") or {}
        out[s] = tuple(c[k] for k in _COUNTERS) if all(k in c for k in _COUNTERS) else None
    return out


def measure(clusters: int, seconds: float, settle: float, reaper: Reaper) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix=f"ra-idle-{clusters}-", dir="/tmp")
    try:
        nodes = RaNodes(tmp, reaper)
        nodes.start_all()
        ids = [[nodes.sid(f"c{k}", i) for i in range(3)] for k in range(clusters)]

        def start(m: list[ra.ServerId]) -> None:
            ra.start_cluster(m[0].name, COUNTER, m, timeout=120)
            ra.process_command(m, 1, timeout=120)
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(start, ids))
        progress("ours", f"idle wake-ups: {clusters} clusters started; settling {settle:.0f} s")
        time.sleep(settle)
        pids = _servers(nodes)
        sids = list(pids)
        c0 = _counts(sids)
        s0 = {s: _switches(p) for s, p in pids.items()}
        time.sleep(seconds)
        s1 = {s: _switches(p) for s, p in pids.items()}
        roles = {s: ra.key_metrics(s).get("state") for s in sids}
        time.sleep(16 * 1.0 + 1)               # changed counters are reported within 16 ticks
        c1 = _counts(sids)
        rows: dict[str, dict[str, float]] = {}
        for role in ("leader", "follower"):
            mine = [s for s in sids if roles[s] == role]
            if not mine:
                continue
            row = {"servers": float(len(mine)),
                   "wakeups": statistics.median((s1[s] - s0[s]) / seconds for s in mine),
                   "wakeups_max": max((s1[s] - s0[s]) / seconds for s in mine)}
            for j, k in enumerate(_COUNTERS):
                have = [s for s in mine if c0[s] is not None and c1[s] is not None]
                row[k] = (statistics.mean((c1[s][j] - c0[s][j]) / seconds for s in have)  # type: ignore[index]
                          if have else float("nan"))
            rows[role] = row
        return {"clusters": clusters, "seconds": seconds, "rows": rows}
    finally:
        reaper.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clusters", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--settle", type=float, default=40.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    with Reaper() as reaper:
        r = measure(a.clusters, a.seconds, a.settle, reaper)
    if a.json:
        print(json.dumps(r))
        return 0
    print(f"C = {r['clusters']} clusters of 3, {r['seconds']:.0f} s idle; per server process "
          f"per second (wake-ups: median and max; counters: mean)")
    print(f"{'role':9s} {'servers':>7s} {'wake-ups':>9s} {'max':>6s} {'peer in':>8s} "
          f"{'peer out':>9s} {'timeouts':>9s}")
    for role, row in r["rows"].items():
        print(f"{role:9s} {row['servers']:7.0f} {row['wakeups']:9.2f} {row['wakeups_max']:6.2f} "
              f"{row['peer_msgs_in']:8.2f} {row['peer_msgs_out']:9.2f} {row['timeouts']:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
