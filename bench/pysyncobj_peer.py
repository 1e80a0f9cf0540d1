"""No ra equivalent. The peer of W1–W6: PySyncObj 0.3.17 (PyPI), 3 members as 3 processes.

PySyncObj has no client protocol: a command is a call of a ``@replicated`` method inside a
member process, which forwards it to the leader when that member is a follower. So each member
process also serves a small control channel (a unix socket, one JSON line per request and per
answer) and the workload runs inside a *follower* (BENCH.md: "client in a follower"): W1 one
thread of sync calls, W2 32 threads of sync calls (its only kind of concurrent client), W3
callbacks with at most 5,000 in flight, W4 a thread issuing sync calls while the driver SIGKILLs
the leader process. Members keep a journal file and full dumps (so W5 can restart them) but
PySyncObj never fsyncs: its journal is an mmap'd file. ``appendEntriesUseBatch`` is off (each
command is sent at once; the reference figures of BENCH.md use that for latency); W3 is also
run with its default batching on (row "W3 batched").

``python -c 'from bench.pysyncobj_peer import member_main; member_main()' ...`` is a member;
:func:`measure` drives a whole run and returns ``{(workload, metric): (value, note)}``.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from bench.procs import Reaper, closed_loop, kill_tree, progress, summary_ms, wait_for

__all__ = ["measure", "member_main", "PeerCluster", "available"]

SIDE = "peer"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Result = dict[tuple[str, str], tuple[Any, str]]
#: the longest a control request may take (the W3 limit is 300 s)
_ASK_TIMEOUT = 420.0


def available() -> str | None:
    """The PySyncObj version, or None when it is not installed (``pip install -e .[bench]``).
    Read from the installed package's metadata, not by importing it: importing pysyncobj
    replaces ``socket.inet_ntop`` process-wide with a Windows-only function (its
    ``win_inet_pton``), which broke every later suite of the same ``make bench`` that reads
    connection tables (psutil)."""
    import importlib.metadata
    try:
        return importlib.metadata.version("pysyncobj")
    except importlib.metadata.PackageNotFoundError:
        return None


# == the member process ============================================================================
def _make_counter(self_addr: str, partners: list[str], data: str, batch: bool) -> Any:
    from pysyncobj import SyncObj, SyncObjConf, replicated  # type: ignore[import-untyped,unused-ignore]

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            conf = SyncObjConf(appendEntriesUseBatch=batch,
                               journalFile=os.path.join(data, "journal"),
                               fullDumpFile=os.path.join(data, "dump"))
            super().__init__(self_addr, partners, conf)
            self.value = 0

        @replicated  # type: ignore[misc,untyped-decorator,unused-ignore]
        def add(self, n: int) -> int:
            self.value += n
            return self.value

    return Counter()


class _Member:
    def __init__(self, obj: Any, self_addr: str) -> None:
        self.obj, self.self_addr = obj, self_addr
        self.loop_stop = threading.Event()
        self.loop_thread: threading.Thread | None = None
        self.loop_done: list[tuple[float, str | None]] = []

    def leader(self) -> str | None:
        ld = self.obj._getLeader()
        return None if ld is None else str(getattr(ld, "address", ld))

    def sync_add(self, timeout: float) -> Any:
        return self.obj.add(1, sync=True, timeout=timeout)

    def handle(self, req: dict[str, Any]) -> Any:
        op = req["op"]
        if op == "status":
            st = self.obj.getStatus()
            return {"pid": os.getpid(), "self": self.self_addr, "leader": self.leader(),
                    "ready": bool(self.obj.isReady()), "last_applied": st["last_applied"],
                    "commit_idx": st["commit_idx"], "log_len": st["log_len"],
                    "value": self.obj.value}
        if op == "conf":
            setattr(self.obj._SyncObj__conf, req["key"], req["value"])
            return True
        if op == "w1":
            for _ in range(req["warmup"]):
                self.sync_add(10)
            lat = []
            t0 = time.monotonic()
            for _ in range(req["n"]):
                t1 = time.monotonic()
                self.sync_add(10)
                lat.append(time.monotonic() - t1)
            return {"lat": lat, "elapsed": time.monotonic() - t0}
        if op == "w2":
            return self.w2(req["clients"], req["secs"])
        if op == "w3":
            return self.w3(req["n"], req["window"], req["limit"])
        if op == "first":
            deadline = time.monotonic() + req["limit"]
            while time.monotonic() < deadline:
                try:
                    self.sync_add(1.0)
                    return {"t": time.monotonic()}
                except Exception:  # SyncObjException: no leader yet
                    time.sleep(0.005)
            raise TimeoutError("no command applied")
        if op == "loop_start":
            self.loop_done = []
            self.loop_stop.clear()
            self.loop_thread = threading.Thread(target=self.loop, daemon=True)
            self.loop_thread.start()
            return True
        if op == "loop_stop":
            self.loop_stop.set()
            if self.loop_thread:
                self.loop_thread.join(5)
            return self.loop_done
        if op == "loop_count":
            return len(self.loop_done)
        if op == "loop_peek":
            return [d for d in list(self.loop_done) if d[0] > req["since"]]
        raise ValueError(f"unknown op {op!r}")

    def loop(self) -> None:
        while not self.loop_stop.is_set():
            try:
                self.sync_add(0.5)
                self.loop_done.append((time.monotonic(), self.leader()))
            except Exception:  # timeout / no leader during the failover
                time.sleep(0.002)

    def w2(self, clients: int, secs: float) -> dict[str, Any]:
        lat, errors = closed_loop(clients, secs, lambda k: self.sync_add(5))
        return {"lat": lat, "errors": errors}

    def w3(self, n: int, window: int, limit: float) -> dict[str, Any]:
        """``n`` commands with callbacks (its correlations), at most ``window`` in flight,
        until ``n`` are applied here. Progress is read from the counter this member applied,
        not from the callbacks: PySyncObj drops the callback of a forwarded command whose
        answer reaches the follower after it applied that entry (counted as "lost"). Commands
        that fail (error callback) are resubmitted after 1 s without progress."""
        cond = threading.Condition()
        st = {"fired": 0, "failed": 0}

        def cb(result: Any, err: Any) -> None:
            with cond:
                st["fired"] += 1
                if err != 0:
                    st["failed"] += 1
                cond.notify()

        v0 = self.obj.value
        submitted = 0
        t0 = time.monotonic()
        deadline = t0 + limit
        last_applied, last_progress = 0, t0
        while True:
            applied = self.obj.value - v0
            if applied >= n:
                break
            now = time.monotonic()
            if now > deadline:
                st2 = self.obj.getStatus()
                raise TimeoutError(f"W3 stalled: {applied}/{n} applied after {limit}s (leader "
                                   f"{self.leader()}, commit {st2['commit_idx']}, applied "
                                   f"{st2['last_applied']}, {st['failed']} error callbacks)")
            if applied != last_applied:
                last_applied, last_progress = applied, now
            elif now - last_progress > 1.0:
                submitted, last_progress = applied, now     # resubmit what never applied
            k = min(window - (submitted - applied), n - submitted)
            if k > 0:
                for _ in range(k):
                    self.obj.add(1, callback=cb)
                submitted += k
            else:
                with cond:
                    cond.wait(0.002)
        return {"elapsed": time.monotonic() - t0, "errors": st["failed"],
                "lost": max(0, submitted - st["fired"])}


def member_main(argv: list[str] | None = None) -> None:
    """A member: ``SELF PARTNERS(comma) CTL_PATH DATA_DIR BATCH(0|1)``."""
    a = argv if argv is not None else sys.argv[1:]
    self_addr, partners, ctl, data, batch = a[0], a[1].split(","), a[2], a[3], a[4] == "1"
    os.makedirs(data, exist_ok=True)
    obj = _make_counter(self_addr, partners, data, batch)
    m = _Member(obj, self_addr)

    def on_term(signum: int, frame: Any) -> None:
        obj.destroy()
        time.sleep(0.2)
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(ctl):
        os.unlink(ctl)
    srv.bind(ctl)
    srv.listen(4)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_serve_conn, args=(m, conn), daemon=True).start()


def _serve_conn(m: _Member, conn: socket.socket) -> None:
    f = conn.makefile("rw")
    for line in f:
        try:
            res = {"ok": m.handle(json.loads(line))}
        except Exception as e:  # reported to the driver
            res = {"error": f"{type(e).__name__}: {e}"}
        f.write(json.dumps(res) + "\n")
        f.flush()


# == the driver ====================================================================================
def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class PeerCluster:
    """Three PySyncObj member processes on 127.0.0.1, each with a control socket."""

    def __init__(self, tmp: str, reaper: Reaper, batch: bool = False) -> None:
        self.tmp, self.reaper, self.batch = tmp, reaper, batch
        self.addrs = [f"127.0.0.1:{_free_port()}" for _ in range(3)]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.conns: dict[int, Any] = {}

    def start(self, i: int) -> None:
        ctl = os.path.join(self.tmp, f"ctl{i}.sock")
        if os.path.exists(ctl):
            os.unlink(ctl)
        partners = ",".join(a for j, a in enumerate(self.addrs) if j != i)
        log = open(os.path.join(self.tmp, f"m{i}.log"), "ab")
        try:
            p = subprocess.Popen(
                [sys.executable, "-c", ("from bench.pysyncobj_peer import member_main; "
                                         "member_main()"), self.addrs[i], partners, ctl,
                 os.path.join(self.tmp, f"m{i}"), "1" if self.batch else "0"],
                cwd=_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        self.reaper.add(p.pid)
        self.procs[i] = p
        wait_for(lambda: os.path.exists(ctl) or p.poll() is not None, 30, "member control socket")
        if p.poll() is not None:
            raise RuntimeError(f"PySyncObj member {i} exited ({p.returncode})")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(_ASK_TIMEOUT)   # no answer in time: socket.timeout, never a hang
        s.connect(ctl)
        self.conns[i] = (s, s.makefile("rw"))

    def start_all(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            list(ex.map(self.start, range(3)))

    def ask(self, i: int, op: str, **kw: Any) -> Any:
        _s, f = self.conns[i]
        f.write(json.dumps(dict(kw, op=op)) + "\n")
        f.flush()
        line = f.readline()
        if not line:
            raise RuntimeError(f"member {i} closed its control channel")
        res = json.loads(line)
        if "error" in res:
            raise RuntimeError(f"member {i}: {res['error']}")
        return res["ok"]

    def _drop(self, i: int) -> subprocess.Popen[bytes]:
        s, f = self.conns.pop(i)
        try:
            f.close()
            s.close()
        except OSError:
            pass
        return self.procs.pop(i)

    def kill(self, i: int) -> None:
        p = self._drop(i)
        kill_tree(p.pid)
        p.wait(10)

    def stop(self, i: int) -> None:
        p = self._drop(i)
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            kill_tree(p.pid)
            p.wait(5)
        kill_tree(p.pid)   # its dump-writer child, if one is running

    def leader(self, timeout: float = 30) -> int:
        """Index of the member every live member agrees leads."""
        def agreed() -> int | None:
            lds = {self.ask(i, "status")["leader"] for i in self.procs}
            if len(lds) == 1:
                ld = lds.pop()
                if ld in self.addrs and self.addrs.index(ld) in self.procs:
                    return self.addrs.index(ld) + 1
            return None
        return int(wait_for(agreed, timeout, "a PySyncObj leader")) - 1

    def follower(self) -> int:
        ld = self.leader()
        return next(i for i in sorted(self.procs) if i != ld)

    def close(self) -> None:
        for i in list(self.procs):
            try:
                self.kill(i)
            except Exception:  # the reaper sweeps after
                pass


def _mem(pid: int) -> tuple[float, float]:
    import psutil
    m = psutil.Process(pid).memory_full_info()
    return m.rss / 2**20, m.uss / 2**20


def _w4_once(pc: PeerCluster) -> float:
    ld = pc.leader()
    fo = pc.follower()
    old = pc.addrs[ld]
    pc.ask(fo, "loop_start")
    wait_for(lambda: pc.ask(fo, "loop_count") >= 20, 10, "peer commands before the kill")
    t_kill = time.monotonic()
    pc.kill(ld)
    try:
        def first() -> float | None:
            done = pc.ask(fo, "loop_peek", since=t_kill)
            return next((t for t, ldr in done if ldr != old), None)
        got = float(wait_for(first, 20, "a peer command applied by a new leader", every=0.01))
    finally:
        pc.ask(fo, "loop_stop")
    pc.start(ld)
    wait_for(lambda: pc.ask(ld, "status")["ready"], 30, "the restarted peer member to catch up")
    return got - t_kill


def _w3(pc: PeerCluster, fo: int, P: dict[str, Any], quick: bool, label: str, note: str
        ) -> tuple[Any, str]:
    """One W3 in follower ``fo``; a stall is reported in the row, the run goes on."""
    try:
        r = pc.ask(fo, "w3", n=P["w3_n"], window=P["w3_window"], limit=60 if quick else 150)
    except RuntimeError as e:      # the member's TimeoutError: PySyncObj stopped applying
        progress(SIDE, f"{label} FAILED: {e}")
        return None, f"{note}; FAILED: {e}"
    rate = P["w3_n"] / r["elapsed"]
    progress(SIDE, f"{label} {rate:,.0f} commands/s ({r['elapsed']:.1f} s)")
    return rate, f"{note}, {r['errors']} errors, {r['lost']} callbacks not fired"


def measure(quick: bool, reaper: Reaper) -> Result:
    """Run W1–W6 (what applies) on a fresh PySyncObj cluster; see the module docstring."""
    from bench.workloads import du, params
    P = params(quick)
    out: Result = {}
    tmp = tempfile.mkdtemp(prefix="ra-bench-p-", dir="/tmp")
    pc = PeerCluster(tmp, reaper)
    nofs = "no fsync"
    try:
        t = time.monotonic()
        pc.start_all()
        ld = pc.leader()
        fo = pc.follower()
        wait_for(lambda: all(pc.ask(i, "status")["ready"] for i in range(3)), 30, "peer ready")
        progress(SIDE, f"PySyncObj {available()}: 3 members up in {time.monotonic() - t:.1f} s; "
                       f"leader {pc.addrs[ld]}; client in follower {pc.addrs[fo]} (no fsync)")
        r = pc.ask(fo, "w1", n=P["w1_n"], warmup=P["warmup"])
        s = summary_ms(r["lat"])
        n1 = f"n={P['w1_n']}, client in a follower, {nofs}"
        for k in ("p50", "p99", "mean"):
            out[("W1", k)] = (s[k], n1)
        out[("W1", "ops/s")] = (P["w1_n"] / r["elapsed"], n1)
        progress(SIDE, f"W1 p50 {s['p50']:.2f} ms p99 {s['p99']:.2f} ms "
                       f"{P['w1_n'] / r['elapsed']:,.0f} ops/s")
        r = pc.ask(fo, "w2", clients=P["w2_clients"], secs=P["w2_secs"])
        s = summary_ms(r["lat"])
        n2 = (f"{P['w2_clients']} client threads in a follower, {P['w2_secs']:g} s, "
              f"{r['errors']} errors, {nofs}")
        out[("W2", "ops/s")] = (len(r["lat"]) / P["w2_secs"], n2)
        out[("W2", "p50")] = (s["p50"], n2)
        out[("W2", "p99")] = (s["p99"], n2)
        progress(SIDE, f"W2 {len(r['lat']) / P['w2_secs']:,.0f} ops/s p50 {s['p50']:.2f} ms "
                       f"p99 {s['p99']:.2f} ms")
        out[("W3", "commands/s")] = _w3(pc, fo, P, quick, "W3",
                                        f"callbacks in a follower, window {P['w3_window']}, "
                                        f"appendEntriesUseBatch off, {nofs}")
        total = pc.ask(ld, "status")["value"]
        time.sleep(3.0)   # idle: as long as ours waits (bench.workloads)
        mem = [_mem(pc.ask(i, "status")["pid"]) for i in range(3)]
        out[("W6", "server RSS max")] = (max(m[0] for m in mem), "member process; per process: "
                                         + ", ".join(f"{m[0]:.1f}" for m in mem))
        out[("W6", "server USS max")] = (max(m[1] for m in mem), "per process: "
                                         + ", ".join(f"{m[1]:.1f}" for m in mem))
        progress(SIDE, f"W6 member RSS {max(m[0] for m in mem):.1f} MB "
                       f"USS {max(m[1] for m in mem):.1f} MB (no WAL process)")
        # W5
        log_n = pc.ask(ld, "status")["commit_idx"]
        for i in range(3):
            pc.stop(i)
        size = sum(du(os.path.join(tmp, f"m{i}")) for i in range(3))
        t0 = time.monotonic()
        pc.start_all()
        t_up = time.monotonic() - t0
        r = pc.ask(0, "first", limit=60)
        t5 = r["t"] - t0
        out[("W5", "start -> first commit")] = (
            t5, (f"{log_n:,} entries committed; processes up in {t_up:.2f} s; journal + "
                 "full dump every 5,000 entries (its log compaction)"))
        out[("W5", "bytes on disk (3 nodes)")] = (size / 1e6, "journals + dumps, du")
        progress(SIDE, f"W5 restart -> first commit {t5:.2f} s; {size / 1e6:.1f} MB on disk")
        # W4
        fos: list[float] = []
        for rep in range(P["w4_reps"]):
            fos.append(_w4_once(pc))
            progress(SIDE, f"W4 failover #{rep + 1}: {fos[-1]:.3f} s")
        out[("W4", "failover median")] = (statistics.median(fos),
                                          "runs: " + ", ".join(f"{x:.3f}" for x in fos))
        # W3 with PySyncObj's default batching
        for i in range(3):
            pc.ask(i, "conf", key="appendEntriesUseBatch", value=True)
        fo = pc.follower()
        out[("W3 batched", "commands/s")] = _w3(pc, fo, P, quick, "W3 batched",
                                                "appendEntriesUseBatch on (its default)")
        out[("check", "counter total")] = (total, "after W3")
    finally:
        pc.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out
