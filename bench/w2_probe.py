"""No ra equivalent. Where W2's time goes:
``python -m bench.w2_probe [--secs S] [--clients N] [--server-config JSON]``.

Starts 3 node daemons and a counter cluster as the bench does, runs W2 (``N`` client processes
doing ``process_command`` back to back for ``S`` seconds) and prints, beside ops/s and p50:

* how busy the machine was and how many context switches it made per command (``/proc/stat``);
* the CPU per command of each cluster process (psutil: daemons, fork servers, WALs, servers),
  and of the average client (each client measures its own loop with ``os.times``);
* how each server batched: commands per loop turn that took messages, per message sent to a
  peer and per message sent to its WAL (the servers' counters);
* with ``--py-spy PATH``: where the servers and WALs spend their CPU (py-spy samples while W2
  runs, ``--native`` with ``--native``; the report of :mod:`bench.profile_w`; ``--keep DIR``
  keeps the raw samples).

A diagnostic, not a benchmark: the machine is shared, so compare versions by alternating them
in one sitting. Every process it starts is killed at the end (``bench.procs.Reaper``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

import psutil

import ra
from bench import workloads
from ra import messages as rm
from bench.procs import Reaper
from bench import profile_w


def _proc_stat() -> tuple[int, int, int]:
    """(all jiffies, idle jiffies, context switches) of the whole machine."""
    with open("/proc/stat") as f:
        lines = f.read().splitlines()
    v = [int(x) for x in lines[0].split()[1:]]
    ctxt = next(int(line.split()[1]) for line in lines if line.startswith("ctxt"))
    return sum(v), v[3] + v[4], ctxt


def _cpu(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            pass
    return out


def _counters(ids: list[ra.ServerId]) -> list[dict[str, int]]:
    """Each server's counters (``overview()["counters"]``), asked of the server itself."""
    c = ra.default_client()
    return [c._ok(s, rm.OverviewCall(), 5.0).get("counters", {}) for s in ids]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.w2_probe")
    ap.add_argument("--secs", type=float, default=8.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--server-config", default="{}",
                    help='JSON of server config keys, e.g. \'{"group_commit_ms": 0}\'')
    ap.add_argument("--py-spy", default=None, help="py-spy's path: profile the cluster")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples a second")
    ap.add_argument("--keep", default=None, help="copy py-spy's raw samples to this directory")
    a = ap.parse_args(argv)
    # the processes are reaped before their directory is removed (they write to it to the end)
    with tempfile.TemporaryDirectory(prefix="ra-w2-") as tmp, Reaper() as reaper:
        nodes = workloads.RaNodes(tmp, reaper)
        nodes.start_all()
        ids = [nodes.sid("w2", i) for i in range(3)]
        extra = json.loads(a.server_config)
        ra.start_cluster([{"cluster_name": "w2", "id": s, "machine": workloads.COUNTER,
                           "initial_members": ids, **extra} for s in ids], timeout=30)
        _, leader = ra.process_command(ids, 1)
        ordered = [leader] + [s for s in ids if s != leader]
        roles = {}
        for i in range(3):
            st = ra.default_client()._daemon(nodes.addrs[i], rm.NodeStatus(), 5.0)
            roles[st["pid"]] = f"daemon {i}"
            roles[st["forkserver_pid"]] = f"fork server {i}"
            wal = nodes.log_child_pid(i, "ra_log_wal")
            if wal:
                roles[wal] = f"WAL {i}"
            seg = nodes.log_child_pid(i, "ra_log_segment_writer")
            if seg:
                roles[seg] = f"seg writer {i}"
            pid = nodes.server_pid("w2", i)
            if pid:
                roles[pid] = ("leader" if nodes.sid("w2", i) == leader else "follower") + f" {i}"
        procs = [psutil.Process(p) for p in roles]
        client_cpu: list[float] = []
        k0 = _counters(ordered)
        recs = []
        if a.py_spy:
            busy = [p for p, r in roles.items() if r.split()[0] in ("leader", "follower", "WAL")]
            recs = profile_w._record(a.py_spy, busy, tmp, "w2", a.rate, reaper,
                                     native=a.native, children=False)
        c0, s0 = _cpu(procs), _proc_stat()
        lat, errors, secs = workloads._w2(ordered, a.clients, a.secs, reaper, client_cpu)
        c1, s1 = _cpu(procs), _proc_stat()
        files = profile_w._stop(recs) if recs else []
        k1 = _counters(ordered)
        n = max(1, len(lat))
        busy = 1 - (s1[1] - s0[1]) / max(1, s1[0] - s0[0])
        print(f"W2 {len(lat) / secs:,.0f} ops/s, p50 {statistics.median(lat) * 1e3:.1f} ms, "
              f"{errors} errors; machine {busy * 100:.0f} % busy, "
              f"{(s1[2] - s0[2]) / n:.1f} context switches per command")
        total = 0.0
        for pid in sorted(roles, key=lambda p: roles[p]):
            if pid in c0 and pid in c1:
                us = (c1[pid] - c0[pid]) / n * 1e6
                total += us
                print(f"  {roles[pid]:<14} {us:6.0f} us/command")
        print(f"  {'cluster':<14} {total:6.0f} us/command")
        if client_cpu:
            print(f"  {'each client':<14} {statistics.mean(client_cpu):6.0f} us/command of "
                  f"its own")
        # how well each server batches: commands per loop turn that took messages, per
        # message to a peer, per message to its WAL
        for i, (a0, a1) in enumerate(zip(k0, k1)):
            d = {k: a1.get(k, 0) - a0.get(k, 0) for k in a1}
            print(f"  {'leader' if i == 0 else 'follower':<9} {len(lat) / max(1, d['turns']):5.1f} "
                  f"commands per loop turn, {len(lat) / max(1, d['peer_msgs_out']):5.1f} per "
                  f"peer message sent, {len(lat) / max(1, d['wal_msgs_out']):5.1f} per WAL "
                  f"message")
        if files and a.keep:
            os.makedirs(a.keep, exist_ok=True)
            for f in files:
                if os.path.exists(f):
                    shutil.copy(f, a.keep)
        if files:
            profile_w._print(f"W2: {len(lat):,} commands under py-spy", files, roles, secs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
