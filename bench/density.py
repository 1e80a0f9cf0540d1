"""No ra equivalent. Issue 17's memory per idle server: C clusters on fresh local nodes, each
started and sent one command, then left idle; the figure is the median USS (unique set size,
psutil ``memory_full_info().uss``) of the server processes.

Memory, not time: the figures do not depend on the machine's load (only on the code paths a
server ran, which an idle cluster's are the same each run).

``python -m bench.density [--clusters 10] [--members 3] [--idle 4] [--preload-machines]
[--memory-merge] [--detail]``: one line per run with the median, min and max USS per server in KiB; ``--detail``
adds, for the median server, its private pages per mapping (``/proc/PID/smaps``: heap,
anonymous, stacks, each ``.so``'s data) and (as root) how its copied pages differ from its fork
server's (:func:`words_changed`): the place to look for what a server copies.
``--memory-merge`` runs the nodes with the node key ``memory_merge`` (KSM, which must run
machine-wide): the figure is taken once ``ksmd`` has scanned everything twice, and the line
after it says how long that took and what ``ksmd`` costs at idle with the machine's settings.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections import Counter
from typing import Any

import psutil

import ra
from bench.procs import Reaper, wait_for
from bench.workloads import COUNTER
from ra import messages as rm
from ra.client.api import default_client
from ra.node import spawn_daemon
from supervisor import memmerge

__all__ = ["measure", "private_by_mapping"]


def private_by_mapping(pid: int) -> Counter[str]:
    """Private (dirty and clean) KiB of ``pid`` per mapping name (``[heap]``, ``[anon]``,
    ``[stack]``, a file's base name)."""
    out: Counter[str] = Counter()
    name = "?"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                parts = line.split()
                name = os.path.basename(parts[5]) if len(parts) > 5 else "[anon]"
            elif head in ("Private_Dirty:", "Private_Clean:"):
                out[name] += int(line.split()[1])
    return out


def _pagemap(pid: int, start: int, end: int) -> tuple[int, ...]:
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(start // 4096 * 8)
        data = f.read((end - start) // 4096 * 8)
    return struct.unpack(f"{len(data) // 8}Q", data)


def words_changed(child: int, parent: int) -> Counter[str]:
    """The child's private pages that it copied from ``parent`` (its fork server), in KiB, by
    how many 8-byte words of each now differ from the parent's page: ``0`` (written and
    restored: a reference count raised and dropped again), ``1-4`` (a few reference counts),
    ``5-16``, ``>16``; ``fresh``: pages the parent does not have. Needs root (page frame
    numbers of /proc/PID/pagemap)."""
    out: Counter[str] = Counter()
    with open(f"/proc/{child}/maps") as f:
        spans = [tuple(int(x, 16) for x in line.split()[0].split("-")) for line in f]
    with open(f"/proc/{child}/mem", "rb", buffering=0) as mc, \
            open(f"/proc/{parent}/mem", "rb", buffering=0) as mp:
        for start, end in spans:
            if end - start > 1 << 32:
                continue
            try:
                pc, pp = _pagemap(child, start, end), _pagemap(parent, start, end)
            except OSError:
                continue
            for i, c in enumerate(pc):
                if not (c >> 63) or not (c >> 56) & 1:      # not present, or not exclusive
                    continue
                p = pp[i] if i < len(pp) else 0
                pfn = (1 << 55) - 1
                if not (p >> 63) or (p & pfn) == (c & pfn):
                    out["fresh"] += 4
                    continue
                try:
                    mc.seek(start + i * 4096)
                    a = struct.unpack("512Q", mc.read(4096))
                    mp.seek(start + i * 4096)
                    b = struct.unpack("512Q", mp.read(4096))
                except (OSError, struct.error):
                    continue
                d = sum(1 for x, y in zip(a, b) if x != y)
                out["0" if d == 0 else "1-4" if d <= 4 else "5-16" if d <= 16 else ">16"] += 4
    return out


def _server_pids(addrs: list[str]) -> list[int]:
    pids = []
    for a in addrs:
        table = default_client()._daemon(a, rm.ListServers(), 30.0)
        pids += [int(v["pid"]) for v in table.values() if v.get("pid")]
    return pids


def _ksm(name: str) -> int:
    with open(f"/sys/kernel/mm/ksm/{name}") as f:
        return int(f.read())


def _ksmd_cpu_s() -> float:
    """CPU seconds ``ksmd`` has used (0.0 where there is no ksmd)."""
    for p in psutil.process_iter(["name"]):
        if p.info["name"] == "ksmd":
            t = p.cpu_times()
            return float(t.user + t.system)
    return 0.0


def ksm_settle(window_s: float, deadline_s: float) -> dict[str, Any]:
    """With ``memory_merge``: wait until ``ksmd`` has finished two full scans (a page merges at
    the earliest on the scan after the one that first saw it), then measure ``ksmd``'s CPU over
    ``window_s`` of idle. Raises where KSM is off machine-wide (the figure would be the
    unmerged one)."""
    if memmerge.machine_state() != "1":
        raise SystemExit(f"--memory-merge: KSM is off ({memmerge.KSM_RUN} is not 1); as root: "
                         f"echo 1 > {memmerge.KSM_RUN}")
    first = _ksm("full_scans")
    t0 = time.monotonic()
    wait_for(lambda: _ksm("full_scans") >= first + 2, deadline_s, "two full ksmd scans")
    settle = time.monotonic() - t0
    c0, w0 = _ksmd_cpu_s(), time.monotonic()
    time.sleep(window_s)    # the steady cost of scanning, merged pages and all
    return {"settle_s": settle, "ksmd_cores": (_ksmd_cpu_s() - c0) / (time.monotonic() - w0),
            "pages_sharing": _ksm("pages_sharing"), "pages_shared": _ksm("pages_shared"),
            "pages_to_scan": _ksm("pages_to_scan"), "sleep_millisecs": _ksm("sleep_millisecs")}


def measure(clusters: int = 10, members: int = 3, idle_s: float = 4.0,
            config: dict[str, Any] | None = None, detail: bool = False,
            merge_deadline_s: float = 600.0) -> dict[str, Any]:
    """Start ``members`` nodes and ``clusters`` clusters of ``members`` servers (one command
    each), wait ``idle_s`` s, and return the USS per server in KiB (``median``, ``min``,
    ``max``, ``n``; ``detail``: the median server's private KiB per mapping). With
    ``config["memory_merge"]``, first :func:`ksm_settle` (its figures under ``ksm``)."""
    tmp = tempfile.mkdtemp(prefix="ra-density-", dir="/tmp")
    reaper = Reaper()
    try:
        addrs = []
        for i in range(members):
            env = dict(config or {}, data_dir=os.path.join(tmp, f"n{i}"))
            addr, proc, _lw = spawn_daemon(env, lifeline=True,
                                           log_path=os.path.join(tmp, f"n{i}.log"))
            reaper.add(proc.pid)
            addrs.append(addr)

        def start(k: int) -> None:
            ids = [ra.ServerId(f"d{k}", a) for a in addrs]
            ra.start_cluster(ids[0].name, COUNTER, ids, timeout=120)
            ra.process_command(ids, 1, timeout=120)
        start(0)     # alone: with preload_machines, the others find its module preloaded
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(start, range(1, clusters)))
        wait_for(lambda: len(_server_pids(addrs)) == clusters * members, 60, "server pids")
        time.sleep(idle_s)     # a memory figure: the idle period's ticks and heartbeats run
        ksm: dict[str, Any] = {}
        if (config or {}).get("memory_merge"):
            ksm = ksm_settle(idle_s, merge_deadline_s)
        pids = _server_pids(addrs)
        uss = {p: psutil.Process(p).memory_full_info().uss // 1024 for p in pids}
        med = statistics.median_low(uss.values())
        out: dict[str, Any] = {"median": statistics.median(uss.values()),
                               "min": min(uss.values()), "max": max(uss.values()), "n": len(uss),
                               "ksm": ksm}
        if detail:
            pid = next(p for p, v in uss.items() if v == med)
            out["detail"] = private_by_mapping(pid)
            fs = [c.pid for c in psutil.Process(pid).parent().children()
                  if "supervisor.forkserver" in " ".join(c.cmdline())]
            if fs and os.geteuid() == 0:
                out["words"] = words_changed(pid, fs[0])
        return out
    finally:
        reaper.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.density", description=__doc__)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--idle", type=float, default=4.0)
    ap.add_argument("--preload-machines", action="store_true")
    ap.add_argument("--detail", action="store_true")
    ap.add_argument("--memory-merge", action="store_true",
                    help="the node key memory_merge (KSM must run machine-wide)")
    a = ap.parse_args(argv)
    config: dict[str, Any] = {"preload_machines": True} if a.preload_machines else {}
    if a.memory_merge:
        config["memory_merge"] = True
    r = measure(a.clusters, a.members, a.idle, config, a.detail)
    print(f"USS per server (KiB), {r['n']} servers: median {r['median']:.0f}, "
          f"min {r['min']}, max {r['max']}", flush=True)
    k = r["ksm"]
    if k:
        print(f"  KSM: settled in {k['settle_s']:.1f} s (two full scans), then ksmd used "
              f"{k['ksmd_cores']:.3f} cores over {a.idle:g} s idle; pages_sharing "
              f"{k['pages_sharing']}, pages_shared {k['pages_shared']} (pages_to_scan "
              f"{k['pages_to_scan']}, sleep_millisecs {k['sleep_millisecs']})", flush=True)
    for name, kib in (r.get("detail") or Counter()).most_common(25):
        if kib:
            print(f"  {kib:7d} KiB  {name}")
    words = r.get("words")
    if words:
        print("  copied pages by 8-byte words that differ from the fork server's: "
              + ", ".join(f"{k}: {words[k]} KiB" for k in ("0", "1-4", "5-16", ">16", "fresh")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
