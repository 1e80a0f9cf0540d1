"""No ra equivalent (ra's own scale runs use its benchmark tooling). W7 of BENCH.md, the multi-Raft
workload of issue 17: C clusters of 3 members over 3 local node daemons.

For each C (10, 100, 1,000; ``--quick``: 10 only) on fresh nodes:

* **start**: seconds for every cluster to be started (``start_cluster`` from 16 threads at once)
  and to have a leader (one command answered by each);
* **USS per server**: the median unique set size of the server processes (psutil), MB;
* **idle CPU**: cores used by the three node trees (daemons, fork servers, WALs, servers) over
  10 s with no client traffic, after 3 s to settle (35 s at C = 1,000: :func:`_settle`);
* **throughput** and **p99**: W3-style pipelined load on every cluster at once for 10 s: 16
  client threads (one ``ra.Client`` each), each with a share of the clusters and up to 256
  commands in flight over them; p99 from pipeline to applied event;
* **fsyncs per second per node** against commands per second: the WALs' fsync counters
  (the metrics endpoint, ``ra_wal_syncs_total``) over the loaded 10 s. One WAL per node batches
  all its servers: the fewer fsyncs per command, the better;
* **TCP connections per node pair**: after the load, the most established connections from one
  node's processes to another node's listening sockets (:func:`node_pair_connections`). A server
  talks to the other members of its own cluster only, so this grows with the servers a node pair
  shares (about one per cluster), not with servers².

A larger C runs only while the smaller one stayed within bounds (started in 60 s and idled under
1.5 cores): otherwise its row says why it was skipped. When ``erl`` is present (see
:mod:`bench.erlang_peer`) the peer column is Erlang ra 2.15.4 with the same C on one BEAM node
(``driver/rascale.erl``: start time, idle CPU, memory per server), run in the same sitting.

``python -m bench.scale [--quick] [--clusters 10,100] [--memory-merge]`` runs this suite alone
(``--memory-merge``: the node key, KSM; 3,000 servers took about 15 GB of USS without it
on CPython 3.11, 7.5 GB on 3.12).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from typing import Any

import psutil

import ra
from bench import erlang_peer
from bench.procs import Reaper, progress
from bench.workloads import COUNTER, RaNodes
from ra import messages as rm
from ra.client.api import default_client

__all__ = ["run", "measure"]

SIZES = (10, 100, 1000)
THREADS = 16
#: commands each client keeps in flight (over its share of the clusters)
WINDOW = 256
IDLE_S = 10.0
LOAD_S = 10.0
#: with --quick (make test's bench smoke runs it): shorter windows
QUICK_S = 3.0
#: a size runs only if the one before started within this many seconds ...
MAX_START_S = 60.0
#: ... and idled under this many cores
MAX_IDLE_CORES = 1.5


def _tree(pid: int) -> list[psutil.Process]:
    try:
        p = psutil.Process(pid)
        return [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _server_pids(nodes: RaNodes) -> list[int]:
    pids = []
    for i in range(3):
        table = default_client()._daemon(nodes.addrs[i], rm.ListServers(), 30.0)
        pids += [int(v["pid"]) for v in table.values() if v.get("pid")]
    return pids


def node_pair_connections(roots: list[int]) -> dict[tuple[int, int], int]:
    """Established TCP connections from the process tree of node ``i`` (root pid ``roots[i]``)
    to a socket that a process of node ``j`` listens on, per ordered pair ``(i, j)``, i != j.
    Each connection is counted once, on its connecting side."""
    trees = {i: _tree(pid) for i, pid in enumerate(roots)}
    node_of = {p.pid: i for i, procs in trees.items() for p in procs}
    # one read of the machine's table (each process's own would re-read it: 3,000 servers
    # took minutes)
    by_node: dict[int, list[Any]] = {i: [] for i in trees}
    for c in psutil.net_connections(kind="tcp"):
        if c.pid in node_of:
            by_node[node_of[c.pid]].append(c)
    owner: dict[int, int] = {}                   # listening port -> node
    conns: list[tuple[int, list[Any]]] = list(by_node.items())
    for i, cs in conns:
        owner.update((c.laddr.port, i) for c in cs if c.status == psutil.CONN_LISTEN)
    out = {(i, j): 0 for i in trees for j in trees if i != j}
    for i, cs in conns:
        for c in cs:
            if c.status == psutil.CONN_ESTABLISHED and c.raddr:
                j = owner.get(c.raddr.port)
                if j is not None and j != i:
                    out[(i, j)] += 1
    return out


def _wal_syncs(nodes: RaNodes, wait: float = 30.0) -> list[int]:
    """Each node's WAL fsyncs so far, from its metrics endpoint (a WAL still busy with a
    burst may not answer the scrape in time: asked again, for up to ``wait`` s)."""
    out = []
    for i in range(3):
        st = default_client()._daemon(nodes.addrs[i], rm.NodeStatus(), 60.0)
        deadline = time.monotonic() + wait
        while True:
            with urllib.request.urlopen(f"http://{st['metrics']}/metrics", timeout=10) as r:
                text = r.read().decode()
            got = [int(float(ln.split()[-1])) for ln in text.splitlines()
                   if ln.startswith("ra_wal_syncs_total")]
            if got:
                out.append(got[0])
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {nodes.addrs[i]}: its WAL's metrics never came")
            time.sleep(0.5)
    return out


def _load(clusters: list[list[ra.ServerId]], secs: float) -> tuple[int, list[float]]:
    """W3-style load on every cluster at once: THREADS clients, each pipelining to its share of
    the clusters (cluster k goes to client k mod THREADS) with up to WINDOW commands in flight,
    for ``secs``. Returns the commands applied within ``secs`` and their latencies (pipeline
    to applied event). Sessions and leaders are set up before the clock starts."""
    lat: list[float] = []
    lock = threading.Lock()
    shares = [clusters[w::THREADS] for w in range(min(THREADS, len(clusters)))]
    stop = [0.0]
    # the barrier's action sets the end before any client passes it (a client reading it
    # first would see 0 and stop at once)
    ready = threading.Barrier(len(shares) + 1,
                              action=lambda: stop.__setitem__(0, time.monotonic() + secs))

    def worker(mine: list[list[ra.ServerId]]) -> None:
        c = ra.Client()
        got: list[float] = []
        try:
            leaders = []
            for ids in mine:        # the session with each cluster, and its leader
                _r, leader = c.process_command(ids, 0, timeout=60)
                leaders.append(leader)
            ready.wait()
            sent: dict[int, float] = {}
            n = 0
            end = stop[0]
            while True:
                now = time.monotonic()
                if now >= end:
                    break
                while len(sent) < WINDOW:
                    n += 1
                    c.pipeline_command(leaders[n % len(leaders)], 1, correlation=n)
                    sent[n] = time.monotonic()
                try:
                    ev = c.receive(timeout=max(0.001, end - now))
                except ra.Timeout:
                    break
                if isinstance(ev.event, tuple) and ev.event[0] == "applied":
                    t = time.monotonic()
                    for corr, _reply in ev.event[1]:
                        t0 = sent.pop(corr, None)
                        if t0 is not None and t <= end:
                            got.append(t - t0)
                elif isinstance(ev.event, tuple) and ev.event[0] == "rejected":
                    sent.pop(ev.event[1][2], None)    # a leader change: not counted
        finally:
            c.close()
            with lock:
                lat.extend(got)
    ts = [threading.Thread(target=worker, args=(m,), daemon=True) for m in shares]
    for t in ts:
        t.start()
    ready.wait(300)
    for t in ts:
        t.join(secs + 60)
    return len(lat), lat


def _settle(c: int) -> float:
    """Seconds between the start and the idle window: 3 s (elections and first ticks over);
    at C >= 1,000, 35 s: a server's tick backs off from 1 to 32 s over its first 31 idle
    seconds, and a start of 3,000 servers lasts about a minute, so after 3 s most of the last
    ones would still tick every second or two (C = 1,000 idled at 0.21 cores after 3 s)."""
    return 35.0 if c >= 1000 else 3.0


def measure(c: int, reaper: Reaper, idle_s: float = IDLE_S, load_s: float = LOAD_S,
            env: dict[str, Any] | None = None) -> dict[str, float]:
    """W7 with ``c`` clusters on 3 fresh nodes: the figures of the module docstring.
    ``env``: more node keys for the three daemons (e.g. ``memory_merge``)."""
    tmp = tempfile.mkdtemp(prefix=f"ra-w7-{c}-", dir="/tmp")
    try:
        nodes = RaNodes(tmp, reaper, env={"metrics": "127.0.0.1:0", **(env or {})})
        nodes.start_all()
        clusters = [[nodes.sid(f"c{k}", i) for i in range(3)] for k in range(c)]

        def start(ids: list[ra.ServerId]) -> None:
            ra.start_cluster(ids[0].name, COUNTER, ids, timeout=120)
            ra.process_command(ids, 0, timeout=120)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(THREADS) as ex:
            list(ex.map(start, clusters))
        start_s = time.monotonic() - t0
        progress("ours", f"W7 C={c}: started in {start_s:.1f} s")
        pids = _server_pids(nodes)
        uss = statistics.median(psutil.Process(p).memory_full_info().uss for p in pids) / 2**20
        time.sleep(_settle(c))
        trees = [p for i in range(3) for p in _tree(nodes.procs[i].pid)]
        cpu0 = _cpu(trees)
        time.sleep(idle_s)
        idle = (_cpu(trees) - cpu0) / idle_s
        progress("ours", f"W7 C={c}: idle {idle:.3f} cores, USS {uss:.1f} MB per server")
        s0 = _wal_syncs(nodes)
        n, lat = _load(clusters, load_s)
        # after a load on 1,000 clusters a WAL drains its backlog for a minute or more
        s1 = _wal_syncs(nodes, 30.0 + 0.1 * c)
        lat.sort()
        fsyncs = statistics.mean(b - a for a, b in zip(s0, s1)) / load_s
        conns = max(node_pair_connections([nodes.procs[i].pid for i in range(3)]).values())
        return {"conns": float(conns), "start_s": start_s, "uss_mb": uss, "idle_cores": idle,
                "ops": n / load_s, "p99_ms": lat[int(0.99 * (len(lat) - 1))] * 1000 if lat else
                float("nan"), "fsyncs": fsyncs, "servers": float(len(pids))}
    finally:
        reaper.kill_all()
        shutil.rmtree(tmp, ignore_errors=True)


def erlang(c: int) -> dict[str, float] | None:
    """Erlang ra's rascale with ``c`` clusters (None when it cannot run here)."""
    if erlang_peer.available() is not None:
        return None
    drv = os.path.join(erlang_peer.ANCHOR, "driver", "rascale.erl")
    eb = os.path.join(erlang_peer.ANCHOR, "ebin")
    with tempfile.TemporaryDirectory(prefix="ra-rascale-") as d:
        subprocess.run(["erlc", drv], cwd=d, check=True, capture_output=True, timeout=120)
        pa = [a for lib in ("ra", "aten", "gen_batch_server", "seshat")
              for a in ("-pa", os.path.join(eb, lib))]
        node = f"rascale{os.getpid()}"
        out = subprocess.run(["erl", "-noshell", "-sname", node, *pa, "-pa", ".", "-eval",
                              f'rascale:main(["{c}", "{int(IDLE_S)}"]), init:stop().'],
                             cwd=d, capture_output=True, text=True, timeout=600)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("{")), None)
    if line is None:
        progress("ours", f"W7 Erlang C={c}: no result ({out.stderr.strip()[-200:]})")
        return None
    r = json.loads(line)
    return {"start_s": r["start_s"], "idle_cores": r["idle_cpu_cores"],
            "uss_mb": r["erlang_memory_mb"] / (3 * c)}


def run(quick: bool = False, sizes: tuple[int, ...] | None = None,
        env: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    sizes = sizes or ((10,) if quick else SIZES)
    rows: list[dict[str, Any]] = []
    skip: str | None = None
    peer_note = "Erlang ra 2.15.4, rascale.erl, C clusters on one BEAM node, same sitting"
    for c in sizes:
        wl = f"W7 C={c} ({3 * c} servers)"
        if skip:
            rows.append({"workload": wl, "metric": "skipped", "value": None, "unit": "",
                         "peer": None, "note": skip})
            continue
        with Reaper() as reaper:
            r = measure(c, reaper, *((QUICK_S, QUICK_S) if quick else (IDLE_S, LOAD_S)), env=env)
        e = erlang(c)
        ep = e or {}
        for metric, key, unit in (("start all", "start_s", "s"),
                                  ("USS per server", "uss_mb", "MB"),
                                  ("idle CPU, 3 nodes", "idle_cores", "cores"),
                                  ("commands/s, pipelined", "ops", "cmd/s"),
                                  ("p99", "p99_ms", "ms"),
                                  ("WAL fsyncs/s per node", "fsyncs", "/s"),
                                  ("TCP connections per node pair", "conns", "")):
            note = peer_note if key in ep else ""
            if key == "uss_mb" and key in ep:
                note = "peer: Erlang memory / servers (one BEAM node holds all)"
            if key == "conns":
                note = "the most, one direction, over the 6 ordered pairs (one per cluster ≈ C)"
            rows.append({"workload": wl, "metric": metric, "value": r[key], "unit": unit,
                         "peer": ep.get(key), "note": note})
        # every command is fsynced once on each node (a cluster has a member on each)
        rows.append({"workload": wl, "metric": "commands per fsync", "unit": "",
                     "value": r["ops"] / r["fsyncs"] if r["fsyncs"] else None,
                     "peer": None, "note": "commands/s ÷ one node's fsyncs/s (target ≥ 10)"})
        if r["start_s"] > MAX_START_S or r["idle_cores"] > MAX_IDLE_CORES:
            skip = (f"skipped: C={c} started in {r['start_s']:.0f} s and idled at "
                    f"{r['idle_cores']:.2f} cores (bounds {MAX_START_S:.0f} s, "
                    f"{MAX_IDLE_CORES} cores)")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--clusters", help="sizes, e.g. 10,100")
    ap.add_argument("--memory-merge", action="store_true",
                    help="the node key memory_merge (KSM)")
    a = ap.parse_args(argv)
    sizes = tuple(int(x) for x in a.clusters.split(",")) if a.clusters else None
    for row in run(a.quick, sizes, {"memory_merge": True} if a.memory_merge else None):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
