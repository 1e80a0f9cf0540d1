"""No ra equivalent. Issue 17's start and restart targets, alone: C clusters of 3 members over 3
local node daemons started at once, then one node restarted with its C servers.

* **start**: seconds until every cluster is started (``start_cluster`` from ``--threads``
  threads at once) and has answered one command; servers started per second; the node
  daemons' CPU seconds per server started and their directory fsyncs (``NodeStatus``'s
  ``directory_syncs``: one per batch of starts, :mod:`ra.node.directory`), and the frames
  their mailboxes dropped and the connections they evicted (``NodeStatus``'s ``mailbox``);
* **restart**: node 0 is killed (``--how kill``: SIGKILL of its whole tree, a crash) or stopped
  (``stop``: SIGTERM, orderly) and started again on its data dir; seconds until its daemon is
  ready, until every one of its C servers answers a ping, and until every one has its log
  back (``last_index`` as before the restart) and knows its cluster's leader (``rejoined``);
  the CPU seconds its daemon and its servers used for that, per server, and the cores the
  other nodes' servers used meanwhile (their clusters lost a member, a third their leader).

``python -m bench.massstart --clusters 10,100 [--how kill|stop] [--threads 16]
[--memory-merge]`` prints one
JSON line per C. Timings on a shared machine are only indicative; the CPU seconds and fsync
counts are the machine-independent part.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import shutil
import sys
import tempfile
import time
from typing import Any

import psutil

import ra
from bench.procs import Reaper, progress
from bench.workloads import COUNTER, RaNodes
from ra import messages as rm
from ra.client.api import default_client

__all__ = ["measure"]


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def _status(nodes: RaNodes, i: int) -> dict[str, Any]:
    return dict(default_client()._daemon(nodes.addrs[i], rm.NodeStatus(), 30.0))


def _server_pids(nodes: RaNodes, i: int) -> list[int]:
    table = default_client()._daemon(nodes.addrs[i], rm.ListServers(), 30.0)
    return [int(v["pid"]) for v in table.values() if v.get("pid")]


def _until_all(sids: list[ra.ServerId], ask: Any, threads: int, timeout: float) -> float:
    """Seconds until ``ask(sid)`` returned for every sid (each retried until it does)."""
    t0 = time.monotonic()
    deadline = t0 + timeout

    def one(sid: ra.ServerId) -> None:
        while True:
            try:
                ask(sid)
                return
            except ra.RaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, sids))
    return time.monotonic() - t0


def measure(c: int, reaper: Reaper, threads: int = 16, how: str = "kill",
            keep: bool = False, env: dict[str, Any] | None = None) -> dict[str, Any]:
    """``env``: node keys for the three daemons (e.g. ``memory_merge``)."""
    tmp = tempfile.mkdtemp(prefix=f"ra-massstart-{c}-", dir="/tmp")
    try:
        nodes = RaNodes(tmp, reaper, env=env)
        nodes.start_all()
        daemons = [nodes.procs[i].pid for i in range(3)]
        syncs0 = [_status(nodes, i).get("directory_syncs", 0) for i in range(3)]
        clusters = [[nodes.sid(f"c{k}", i) for i in range(3)] for k in range(c)]

        def start(ids: list[ra.ServerId]) -> None:
            ra.start_cluster(ids[0].name, COUNTER, ids, timeout=300)
            ra.process_command(ids, 1, timeout=300)
        # the daemon alone (its children's CPU is counted once they are reaped: not here)
        cpu0 = sum(psutil.Process(p).cpu_times().user + psutil.Process(p).cpu_times().system
                   for p in daemons)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(start, clusters))
        start_s = time.monotonic() - t0
        cpu1 = sum(psutil.Process(p).cpu_times().user + psutil.Process(p).cpu_times().system
                   for p in daemons)
        sts = [_status(nodes, i) for i in range(3)]
        syncs = [st.get("directory_syncs", 0) - s for st, s in zip(sts, syncs0)]
        # frames the daemons could not send and connections they closed past max_peers
        # (issue 17: replies lost so; a call to the WAL before it listened counts one each)
        drops = [st.get("mailbox", {}).get("send_dropped") for st in sts]
        evicted = [st.get("mailbox", {}).get("peers_evicted") for st in sts]
        progress("ours", f"C={c}: started in {start_s:.2f} s ({3 * c / start_s:.0f} servers/s), "
                         f"directory fsyncs per node {syncs}")
        mine = [ids[0] for ids in clusters]       # node 0's servers
        cl = default_client()
        before = {sid: cl._ok(sid, rm.OverviewCall(), 10.0)["last_index"] for sid in mine}
        # the other nodes' servers, which go on serving (and electing) while node 0 is back
        others = _server_pids(nodes, 1) + _server_pids(nodes, 2)
        others_cpu0 = _cpu(others)
        if how == "kill":
            nodes.kill(0)
        else:
            nodes.stop(0)
        t1 = time.monotonic()
        nodes.start(0)
        ready_s = time.monotonic() - t1
        def answers(sid: ra.ServerId) -> None:
            # held by its node until the server registers (no polling of a busy node)
            default_client()._await_started(sid, time.monotonic() + 10)
            default_client()._call(sid, rm.PingCall(), 2.0)
        ping_s = _until_all(mine, answers, threads, 300)
        ping_s += ready_s
        pids = _server_pids(nodes, 0)

        def rejoined(sid: ra.ServerId) -> None:
            ov = default_client()._ok(sid, rm.OverviewCall(), 2.0)
            if ov["leader_id"] is None or ov["last_index"] < before[sid]:
                raise ra.RaError("not yet")
        members_s = _until_all(mine, rejoined, threads, 300) + ping_s
        others_cores = (_cpu(others) - others_cpu0) / (time.monotonic() - t1)
        # the restarted node's daemon, its fork server and WAL, and its servers, since start
        tree = [nodes.procs[0].pid, *pids]
        try:
            tree += [p.pid for p in psutil.Process(nodes.procs[0].pid).children()]
        except psutil.NoSuchProcess:
            pass
        cpu_restart = _cpu(sorted(set(tree)))
        progress("ours", f"C={c}: node 0 {how}ed and back: ready {ready_s:.2f} s, all {c} "
                         f"answer ping at {ping_s:.2f} s, rejoined at {members_s:.2f} s, "
                         f"{cpu_restart:.1f} CPU s; the other nodes' servers meanwhile "
                         f"{others_cores:.2f} cores")
        return {"clusters": c, "servers": 3 * c, "start_s": start_s,
                "servers_per_s": 3 * c / start_s,
                "daemon_cpu_ms_per_server": (cpu1 - cpu0) * 1000 / (3 * c),
                "directory_fsyncs_per_node": syncs,
                "daemon_send_dropped": drops, "daemon_peers_evicted": evicted,
                "restart": how, "restart_ready_s": ready_s, "restart_ping_s": ping_s,
                "restart_rejoined_s": members_s,
                "restart_cpu_ms_per_server": cpu_restart * 1000 / c,
                "restart_other_servers_cores": others_cores}
    finally:
        reaper.kill_all()
        if keep:
            progress("ours", f"C={c}: data dirs and node logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.massstart",
                                 description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--clusters", default="10,100", help="sizes, e.g. 10,100")
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--how", choices=("kill", "stop"), default="kill")
    ap.add_argument("--keep", action="store_true", help="keep the data dirs and node logs")
    ap.add_argument("--memory-merge", action="store_true",
                    help="the node key memory_merge (KSM)")
    ap.add_argument("--node-key", action="append", default=[], metavar="KEY=VALUE",
                    help="a node key for the three daemons (VALUE as JSON), e.g. "
                         "restart_window=64; repeatable")
    a = ap.parse_args(argv)
    env: dict[str, Any] = {"memory_merge": True} if a.memory_merge else {}
    for kv in a.node_key:
        k, _, v = kv.partition("=")
        env[k] = json.loads(v)
    for c in (int(x) for x in a.clusters.split(",")):
        with Reaper() as reaper:
            print(json.dumps(measure(c, reaper, a.threads, a.how, a.keep, env)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
