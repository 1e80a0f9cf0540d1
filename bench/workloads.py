"""No ra equivalent (ra measures itself with ra_bench). W1–W6 of BENCH.md on this project.

Setup: 3 node daemons on 127.0.0.1 (``ra.node.spawn_daemon``, own data dir and WAL each), one
cluster of 3 members whose machine is the counter (``ra.testing.machines:Counter``: command N
adds N, reply = new total); default durability (fdatasync per WAL batch). Order: W1, W2, W3,
W6 (idle after W3), W5 (stop all, start again), W4 (SIGKILL the leader's daemon tree, 3 times).

:func:`measure` returns ``{(workload, metric): (value, note)}``; :mod:`bench.raft` pairs it
with :mod:`bench.pysyncobj_peer`. Every process started is killed (whole trees) at the end,
on failure and on ^C. ``BENCH_PROFILE=DIR`` makes the server processes write cProfile dumps
there (see :mod:`bench.profile_hook`).
"""
from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import psutil

import ra
from bench import w2_shapes
from bench.procs import Reaper, kill_tree, progress, summary_ms, wait_for
from ra import messages as rm
from ra.client.api import default_client
from ra.node import spawn_daemon

__all__ = ["measure", "RaNodes", "COUNTER", "Params", "params", "du"]

COUNTER = ("module", "ra.testing.machines:Counter", None)
SIDE = "ours"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

Result = dict[tuple[str, str], tuple[Any, str]]


class Params(dict):  # type: ignore[type-arg]
    """Sizes of the workloads (quick or full)."""


def params(quick: bool) -> Params:
    return Params(w1_n=300 if quick else 2000, w2_clients=8 if quick else 32,
                  w2_secs=2.0 if quick else 10.0, w3_n=10_000 if quick else 100_000,
                  w3_window=5000, w4_reps=1 if quick else 3, warmup=20 if quick else 100)


def du(path: str) -> int:
    """Bytes used on disk under ``path`` (allocated blocks, as ``du``)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
                total += st.st_blocks * 512
            except FileNotFoundError:
                pass
    return total


class RaNodes:
    """Three node daemons in ``tmp``; every tree is registered with ``reaper``."""

    def __init__(self, tmp: str, reaper: Reaper, env: dict[str, Any] | None = None) -> None:
        self.tmp, self.reaper, self.env = tmp, reaper, dict(env or {})
        self.procs: dict[int, Any] = {}
        self.addrs: dict[int, str] = {}
        self.lifelines: dict[int, int] = {}

    def data_dir(self, i: int) -> str:
        return os.path.join(self.tmp, f"n{i}")

    def start(self, i: int) -> str:
        env = dict(self.env, data_dir=self.data_dir(i))
        if i in self.addrs:
            env["listen"] = self.addrs[i]
        addr, proc, lw = spawn_daemon(env, lifeline=True,
                                      log_path=os.path.join(self.tmp, f"n{i}.log"))
        self.reaper.add(proc.pid)
        self.procs[i], self.addrs[i] = proc, addr
        if lw is not None:
            self.lifelines[i] = lw
        return addr

    def start_all(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            list(ex.map(self.start, range(3)))

    def _close_lifeline(self, i: int) -> None:
        lw = self.lifelines.pop(i, None)
        if lw is not None:
            os.close(lw)

    def kill(self, i: int) -> None:
        """SIGKILL the daemon and its whole process tree."""
        proc = self.procs.pop(i)
        kill_tree(proc.pid)
        proc.wait(10)
        self._close_lifeline(i)

    def stop(self, i: int) -> None:
        """SIGTERM the daemon (orderly shutdown of its tree)."""
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except Exception:
            kill_tree(proc.pid)
            proc.wait(5)
        self._close_lifeline(i)

    def start_cluster(self, name: str, machine: Any = COUNTER) -> list[ra.ServerId]:
        """Start cluster ``name`` with one member on each node; its members, leader first."""
        ids = [self.sid(name, i) for i in range(3)]
        ra.start_cluster(name, machine, ids, timeout=30)
        _m, leader = ra.members(ids, timeout=10)
        return [leader] + [s for s in ids if s != leader]

    def sid(self, name: str, i: int) -> ra.ServerId:
        return ra.ServerId(name, self.addrs[i])

    def node_of(self, sid: ra.ServerId) -> int:
        return next(i for i, a in self.addrs.items() if a == sid.node)

    def server_pid(self, name: str, i: int) -> int | None:
        pid = default_client()._daemon(self.addrs[i], rm.ListServers(), 5.0)[name]["pid"]
        return int(pid) if pid else None

    def log_child_pid(self, i: int, child: str) -> int | None:
        st = default_client()._daemon(self.addrs[i], rm.NodeStatus(), 5.0)
        for sup in st["tree"]["children"]:
            for c in (sup.get("sup") or {}).get("children", []):
                if c["id"] == child:
                    return int(c["pid"]) if c["pid"] else None
        return None

    def close(self) -> None:
        for i in list(self.procs):
            try:
                self.kill(i)
            except Exception:  # best effort, the reaper sweeps after
                pass


# -- W2 client processes ----------------------------------------------------------------------
_W2_CHILD = """
import json, os, sys, time
import ra
ids = [ra.ServerId(*s) for s in json.loads(sys.argv[1])]
secs = float(sys.argv[2])
c = ra.Client()
c.process_command(ids, 0, timeout=30)       # connected and warm before the clock starts
print("ready", flush=True)
t_start = float(sys.stdin.readline())
while time.monotonic() < t_start:
    time.sleep(0.0005)
t_end = t_start + secs
lat = []
errors = 0
c0 = os.times()
while True:
    t0 = time.monotonic()
    if t0 >= t_end:
        break
    try:
        c.process_command(ids, 1, timeout=5)
        lat.append(time.monotonic() - t0)
    except ra.RaError:
        errors += 1
c1 = os.times()
cpu_us = (c1.user + c1.system - c0.user - c0.system) / max(1, len(lat)) * 1e6
print(json.dumps([lat, errors, cpu_us]), flush=True)
c.close()
"""


def start_clients(code: str, args: list[str], n: int, reaper: Reaper, what: str = "W2"
                  ) -> tuple[list[subprocess.Popen[str]], float]:
    """``n`` client processes running ``python -c code *args``, each of which prints "ready"
    once connected and then waits for the start time on its stdin; returns them and the start
    time, given to all at once (0.2 s ahead) once every one is ready."""
    procs = [subprocess.Popen([sys.executable, "-c", code, *args],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=_ROOT) for _ in range(n)]
    try:
        for p in procs:
            reaper.add(p.pid)
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{what} client failed to start")
        t_start = time.monotonic() + 0.2
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(f"{t_start}\n")
            p.stdin.flush()
    except BaseException:
        for p in procs:
            if p.poll() is None:
                kill_tree(p.pid)
                p.wait(5)
        raise
    return procs, t_start


def _w2(ids: list[ra.ServerId], n_clients: int, secs: float, reaper: Reaper,
        client_cpu: list[float] | None = None) -> tuple[list[float], int, float]:
    """``n_clients`` client processes doing process_command one after another for ``secs``;
    the clock starts for all at once once every one is connected. Each client's CPU per
    command (µs, its own ``os.times``) is appended to ``client_cpu`` if given."""
    arg = json.dumps([list(s) for s in ids])
    procs, _t_start = start_clients(_W2_CHILD, [arg, str(secs)], n_clients, reaper)
    try:
        lat: list[float] = []
        errors = 0
        for p in procs:
            out, _ = p.communicate(timeout=secs + 30)
            got, err, cpu_us = json.loads(out.strip().splitlines()[-1])
            lat += got
            errors += err
            if client_cpu is not None:
                client_cpu.append(cpu_us)
    finally:
        for p in procs:
            if p.poll() is None:
                kill_tree(p.pid)
                p.wait(5)
    return lat, errors, secs


# -- W3 ----------------------------------------------------------------------------------------
def _w3(c: ra.Client, leader: ra.ServerId, n: int, window: int, limit: float
        ) -> tuple[float, int]:
    sent = applied = rejected = 0
    inflight = 0
    pending_resend: list[int] = []
    t0 = time.monotonic()
    deadline = t0 + limit
    while applied < n:
        while inflight < window and (pending_resend or sent < n):
            if pending_resend:
                corr = pending_resend.pop()
            else:
                corr = sent
                sent += 1
            c.pipeline_command(leader, 1, correlation=corr)
            inflight += 1
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"W3: {applied}/{n} applied after {limit}s")
        ev = c.receive(timeout=min(left, 10.0))
        kind = ev.event[0] if isinstance(ev.event, tuple) else None
        if kind == "applied":
            k = len(ev.event[1])
            applied += k
            inflight -= k
        elif kind == "rejected":
            _why, new_leader, corr = ev.event[1]
            rejected += 1
            inflight -= 1
            if new_leader is not None:
                leader = ra.ServerId(*new_leader)
            pending_resend.append(corr)
    return time.monotonic() - t0, rejected


# -- W4 ----------------------------------------------------------------------------------------
class _Issuer(threading.Thread):
    """A client issuing commands one after another; records (t_applied, leader)."""

    def __init__(self, ids: list[ra.ServerId], leader: ra.ServerId) -> None:
        super().__init__(daemon=True)
        self.ids, self.hint = ids, leader
        self.done: list[tuple[float, ra.ServerId]] = []
        self.stop_ev = threading.Event()

    def run(self) -> None:
        c = ra.Client()
        try:
            while not self.stop_ev.is_set():
                order = [self.hint] + [s for s in self.ids if s != self.hint]
                try:
                    _reply, leader = c.process_command(order, 1, timeout=0.5)
                    self.done.append((time.monotonic(), leader))
                    self.hint = leader
                except ra.RaError:
                    i = self.ids.index(self.hint)
                    self.hint = self.ids[(i + 1) % len(self.ids)]
                    time.sleep(0.002)
        finally:
            c.close()


def _w4_once(nodes: RaNodes, name: str, ids: list[ra.ServerId], silent: bool = False
             ) -> tuple[float, float]:
    """(kill -> first command applied by a new leader, kill -> a survivor reports leader).

    The leader's whole node is SIGKILLed: on loopback its peers see the connections close at
    once. ``silent``: the leader's server process is SIGSTOPped instead (a hung process: its
    node and connections stay up, nothing tells the peers), then SIGCONTed once a new leader
    answered."""
    _m, leader = ra.members(ids, timeout=10)
    iss = _Issuer(ids, leader)
    iss.start()
    try:
        wait_for(lambda: len(iss.done) >= 20, 10, "commands before the kill")
        li = nodes.node_of(leader)
        others = [s for s in ids if s != leader]
        stopped = nodes.server_pid(name, li) if silent else None
        t_kill = time.monotonic()
        if stopped is not None:
            os.kill(stopped, signal.SIGSTOP)
        else:
            nodes.kill(li)
        elected: float | None = None
        got: float | None = None
        deadline = t_kill + 20
        while got is None and time.monotonic() < deadline:
            if elected is None:
                for s in others:   # answered by the node daemon: cheap
                    try:
                        if ra.key_metrics(s, timeout=1).get("state") == "leader":
                            elected = time.monotonic()
                    except ra.RaError:
                        pass
            got = next((t for t, ld in list(iss.done) if t > t_kill and ld != leader), None)
            time.sleep(0.005)
        if got is None:
            raise TimeoutError("W4: no command applied by a new leader within 20 s")
        took = (got - t_kill, min(elected or got, got) - t_kill)
    finally:
        iss.stop_ev.set()
        iss.join(5)
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
    if stopped is None:
        nodes.start(li)                 # the node restarts its servers by itself
        try:
            ra.restart_server(nodes.sid(name, li), timeout=10)
        except ra.AlreadyStarted:
            pass
    # caught up: the restarted member's last_applied reaches the leader's commit index
    def caught_up() -> bool:
        km = ra.key_metrics(nodes.sid(name, li))
        _m2, ld = ra.members(ids, timeout=5)
        return bool(km.get("last_applied", 0) >= ra.key_metrics(ld).get("commit_index", 1))
    wait_for(caught_up, 30, "the restarted member to catch up", every=0.05)
    return took


# -- the whole run -------------------------------------------------------------------------------
def _mem(pid: int | None) -> tuple[float, float]:
    if not pid:
        return float("nan"), float("nan")
    m = psutil.Process(pid).memory_full_info()
    return m.rss / 2**20, m.uss / 2**20


def _print_logs(tmp: str, lines: int = 15) -> None:
    for i in range(3):
        path = os.path.join(tmp, f"n{i}.log")
        try:
            with open(path, errors="replace") as f:
                tail = f.readlines()[-lines:]
        except OSError:
            continue
        progress(SIDE, f"--- last lines of node {i}'s log ---")
        for ln in tail:
            progress(SIDE, "  " + ln.rstrip())


def _w1(client: Any, ids: list[Any], n: int) -> tuple[list[float], float]:
    """W1's loop: ``n`` commands one after another; their latencies (s) and the elapsed time."""
    lat: list[float] = []
    t0 = time.monotonic()
    for _ in range(n):
        t1 = time.monotonic()
        client.process_command(ids, 1, timeout=10)
        lat.append(time.monotonic() - t1)
    return lat, time.monotonic() - t0


#: the node key idle_poll_ms of the "W1 idle poll" row (its README paragraph, *Latency*)
IDLE_POLL_MS = 20


def _w1_idle_poll(P: Params, reaper: Reaper) -> Result:
    """W1 again on 3 fresh nodes started with ``idle_poll_ms`` (their own cluster, while the
    suite's stays idle), when this process may make the PM QoS request; else a row saying
    why not."""
    from wal.idle_poll import DEVICE
    key = ("W1 idle poll", "p50")
    if not os.access(DEVICE, os.W_OK):
        return {key: (None, f"not run: idle_poll_ms needs write access to {DEVICE} (root)")}
    tmp = tempfile.mkdtemp(prefix="ra-bench-w1p-", dir="/tmp")
    nodes = RaNodes(tmp, reaper, {"idle_poll_ms": IDLE_POLL_MS})
    try:
        nodes.start_all()
        ordered = nodes.start_cluster("bench_poll")
        c = ra.Client()
        for _ in range(P["warmup"]):
            c.process_command(ordered, 1)
        lat, _ = _w1(c, ordered, P["w1_n"])
        c.close()
        s = summary_ms(lat)
        note = f"n={P['w1_n']}, nodes with idle_poll_ms={IDLE_POLL_MS}"
        progress(SIDE, f"W1 with idle_poll_ms={IDLE_POLL_MS} p50 {s['p50']:.2f} ms "
                       f"p99 {s['p99']:.2f} ms")
        return {key: (s["p50"], note), ("W1 idle poll", "p99"): (s["p99"], note)}
    finally:
        nodes.close()
        shutil.rmtree(tmp, ignore_errors=True)


def measure(quick: bool, reaper: Reaper) -> Result:
    """Run W1–W6 on a fresh 3-node cluster; see the module docstring."""
    # late replies to the W4 client's abandoned calls are expected: not worth a warning line
    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)
    P = params(quick)
    out: Result = {}
    tmp = tempfile.mkdtemp(prefix="ra-bench-w-", dir="/tmp")
    nodes = RaNodes(tmp, reaper)
    name = "bench"
    try:
        t = time.monotonic()
        nodes.start_all()
        ids = [nodes.sid(name, i) for i in range(3)]
        ordered = nodes.start_cluster(name)
        leader = ordered[0]
        progress(SIDE, f"3 daemons + cluster up in {time.monotonic() - t:.1f} s; "
                       f"leader {leader.node}")
        c = ra.Client()
        for _ in range(P["warmup"]):
            c.process_command(ordered, 1)
        # every add of 1 acknowledged, and those whose outcome is unknown (a client error), for
        # the counter check after W3
        acked, unknown = P["warmup"], 0
        # W1
        lat, el = _w1(c, ordered, P["w1_n"])
        acked += P["w1_n"]
        s = summary_ms(lat)
        n1 = f"n={P['w1_n']}"
        out[("W1", "p50")] = (s["p50"], n1)
        out[("W1", "p99")] = (s["p99"], n1)
        out[("W1", "mean")] = (s["mean"], n1)
        out[("W1", "ops/s")] = (P["w1_n"] / el, n1)
        progress(SIDE, f"W1 p50 {s['p50']:.2f} ms p99 {s['p99']:.2f} ms "
                       f"{P['w1_n'] / el:,.0f} ops/s")
        # the cost of sessions: each of W1-W3 again right after, with raw commands
        raw = ra.Client(sessions=False)
        lat, el = _w1(raw, ordered, P["w1_n"])
        acked += P["w1_n"]
        s = summary_ms(lat)
        out[("W1 no sessions", "p50")] = (s["p50"], n1)
        out[("W1 no sessions", "ops/s")] = (P["w1_n"] / el, n1)
        progress(SIDE, f"W1 without sessions p50 {s['p50']:.2f} ms {P['w1_n'] / el:,.0f} ops/s")
        out.update(_w1_idle_poll(P, reaper))
        # W2
        lat2, err2, secs = _w2(ordered, P["w2_clients"], P["w2_secs"], reaper)
        acked, unknown = acked + len(lat2), unknown + err2
        s2 = summary_ms(lat2)
        n2 = f"{P['w2_clients']} client processes, {secs:g} s, {err2} errors"
        out[("W2", "ops/s")] = (len(lat2) / secs, n2)
        out[("W2", "p50")] = (s2["p50"], n2)
        out[("W2", "p99")] = (s2["p99"], n2)
        progress(SIDE, f"W2 {len(lat2) / secs:,.0f} ops/s p50 {s2['p50']:.2f} ms "
                       f"p99 {s2['p99']:.2f} ms ({n2})")
        os.environ["RA_SESSIONS"] = "0"         # the client processes inherit it
        try:
            lat2, err2, secs = _w2(ordered, P["w2_clients"], P["w2_secs"], reaper)
        finally:
            del os.environ["RA_SESSIONS"]
        acked, unknown = acked + len(lat2), unknown + err2
        s2 = summary_ms(lat2)
        out[("W2 no sessions", "ops/s")] = (len(lat2) / secs, n2)
        out[("W2 no sessions", "p50")] = (s2["p50"], n2)
        progress(SIDE, f"W2 without sessions {len(lat2) / secs:,.0f} ops/s "
                       f"p50 {s2['p50']:.2f} ms")
        # W2 as programs run it: threads through the module functions, asyncio tasks
        shapes: list[tuple[int, int]] = []
        out.update(w2_shapes.measure(ordered, P["w2_clients"], P["w2_secs"], shapes))
        acked += sum(a for a, _ in shapes)
        unknown += sum(u for _, u in shapes)
        # W3
        el3, rej = _w3(c, leader, P["w3_n"], P["w3_window"], 60 if quick else 300)
        n3 = (f"n={P['w3_n']:,}, window {P['w3_window']}, priority low "
              f"(ra's pipeline_command/3 default), {rej} rejected")
        out[("W3", "commands/s")] = (P["w3_n"] / el3, n3)
        progress(SIDE, f"W3 {P['w3_n'] / el3:,.0f} commands/s ({el3:.1f} s)")
        el3, rej = _w3(raw, leader, P["w3_n"], P["w3_window"], 60 if quick else 300)
        out[("W3 no sessions", "commands/s")] = (P["w3_n"] / el3, n3)
        progress(SIDE, f"W3 without sessions {P['w3_n'] / el3:,.0f} commands/s")
        raw.close()
        acked += 2 * P["w3_n"]             # W3 counts its adds as their events arrive
        total, _ld = ra.consistent_query(ids, "ra.testing.machines:get_state", timeout=10)
        # every acknowledged add applied once; a failed call may or may not have been
        if not acked <= total <= acked + unknown:
            raise AssertionError(f"counter check: total {total}, acknowledged adds {acked}, "
                                 f"unknown outcomes {unknown}")
        # W6: idle after W3. A server's housekeeping runs on its 1 s tick: the first moves
        # the burst's entries to segments (a WAL roll-over), the next drops them from memory
        # and trims the heap; three ticks is idle.
        time.sleep(3.0)
        srv = [_mem(nodes.server_pid(name, i)) for i in range(3)]
        wal = [_mem(nodes.log_child_pid(i, "ra_log_wal")) for i in range(3)]
        for lbl, rows in (("server", srv), ("WAL", wal)):
            rss = [r[0] for r in rows]
            uss = [r[1] for r in rows]
            out[("W6", f"{lbl} RSS max")] = (max(rss), "per process: "
                                              + ", ".join(f"{x:.1f}" for x in rss))
            out[("W6", f"{lbl} USS max")] = (max(uss), "per process: "
                                              + ", ".join(f"{x:.1f}" for x in uss))
        progress(SIDE, f"W6 server RSS {max(r[0] for r in srv):.1f} MB "
                       f"USS {max(r[1] for r in srv):.1f} MB; WAL RSS "
                       f"{max(r[0] for r in wal):.1f} MB")
        c.close()
        # W5: stop all, start again
        # entries each server replays at its restart: its whole log (the counter never
        # snapshots), up to the last applied index it stores at its SIGTERM
        log_n = ra.key_metrics(leader).get("last_applied", 0)
        for i in range(3):
            nodes.stop(i)
        size = sum(du(nodes.data_dir(i)) for i in range(3))
        t0 = time.monotonic()
        nodes.start_all()
        t_daemons = time.monotonic() - t0
        ra.start_or_restart_cluster(name, COUNTER, ids, timeout=30)
        ra.process_command(ids, 1, timeout=30)
        t5 = time.monotonic() - t0
        n5 = (f"{log_n:,} entries in the log; daemons ready in {t_daemons:.2f} s, then "
              "start_or_restart_cluster + first process_command")
        out[("W5", "start -> first commit")] = (t5, n5)
        out[("W5", "entries replayed")] = (log_n, "per server (its last applied index)")
        # the daemons' start (interpreters, fork server, the WAL flushing its last file) does
        # not grow with the log; what follows does, but for the servers' start and the
        # election (≈ 0.2-0.3 s: bench.recovery --cluster measures them with a tiny log)
        gross = t5 / max(log_n, 1) * 1e6
        note5 = (f"(start -> first commit - daemons ready) / entries; {gross:.1f} with the "
                 "daemons' start")
        out[("W5", "µs per entry")] = ((t5 - t_daemons) / max(log_n, 1) * 1e6, note5)
        out[("W5", "bytes on disk (3 nodes)")] = (size / 1e6, "data dirs after SIGTERM, du")
        progress(SIDE, f"W5 restart -> first commit {t5:.2f} s; {size / 1e6:.1f} MB on disk "
                       f"({log_n:,} entries; daemons ready in {t_daemons:.2f} s, then "
                       f"{(t5 - t_daemons) / max(log_n, 1) * 1e6:.1f} µs per entry)")
        # W4
        fo: list[tuple[float, float]] = []
        for r in range(P["w4_reps"]):
            fo.append(_w4_once(nodes, name, ids))
            progress(SIDE, f"W4 failover #{r + 1}: {fo[-1][0]:.3f} s (new leader elected after "
                           f"{fo[-1][1]:.3f} s)")
        out[("W4", "failover median")] = (statistics.median(x[0] for x in fo),
                                          "runs: " + ", ".join(f"{x[0]:.3f}" for x in fo)
                                          + "; client: process_command timeout 0.5 s")
        out[("W4", "kill -> leader elected")] = (
            statistics.median(x[1] for x in fo),
            ("median; a survivor's key_metrics says leader (polled every 5 ms; the "
             "report can lag, so at most the failover figure)"))
        # the silent failure: a hung leader process, detected by timeouts only
        fs: list[tuple[float, float]] = []
        for r in range(P["w4_reps"]):
            fs.append(_w4_once(nodes, name, ids, silent=True))
            progress(SIDE, f"W4 silent failover #{r + 1}: {fs[-1][0]:.3f} s")
        out[("W4 silent", "failover median")] = (
            statistics.median(x[0] for x in fs),
            "leader's server SIGSTOPped (node and connections up); runs: "
            + ", ".join(f"{x[0]:.3f}" for x in fs))
        out[("check", "counter total")] = (
            total, f"after W3 (consistent_query): {acked} acknowledged adds"
            + (f" and {unknown} of unknown outcome" if unknown else "")
            + ", each applied once (checked)")
    except Exception:
        _print_logs(tmp)
        raise
    finally:
        nodes.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out
