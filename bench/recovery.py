"""No ra equivalent. W5's recovery per log entry, in CPU seconds of one process.

Writes ``N`` entries of W3's shape (a session's pipelined counter command, ``("usr", 1,
("notify", corr, addr), ts, session, seq, first_outstanding)``) for one server through the real
storage code: :class:`ra.log.log.DiskLog` -> :class:`wal.wal.Wal` (fdatasync per batch) ->
roll-overs flushed to segments by :func:`wal.segment_writer.flush_closed` (the segment writer's
code), as W1-W3 leave a server's directory; the newest WAL file keeps a ``--tail`` of
entries, as a SIGTERM leaves it. ``last_applied`` is stored as a stopped server stores it.

Then it times, several times over (``time.process_time``, median), each phase of what a
restarted node runs before its servers can vote:

* ``wal``: the WAL process's start (:meth:`wal.wal.Wal.recover`: scan every WAL file, write its
  entries to segments, delete it) — once per node, whatever its servers;
* ``log``: a server's :class:`DiskLog` constructor (snapshot, segment indexes, WAL files);
* ``init``: the core's :func:`ra.core.server.init` (replay up to ``last_applied`` through the
  machine, the configuration from the tail).

``wal`` runs on a copy of the data (it consumes the WAL file); ``log`` and ``init`` on the state
the WAL leaves (all in segments) and, with ``--tail``, also before it (the WAL file still
there: a server may start before its WAL has flushed). Run ``python -m bench.recovery N
[--reps R] [--tail T] [--profile PHASE]``; ``--profile`` prints cProfile's top functions of
one run of that phase. CPU time of one process depends on the machine's load far less than
wall time, but not at all only on a quiet machine: compare A/B runs taken alternately.

``python -m bench.recovery R --cluster SIZES`` runs W5's own sequence on a real 3-node cluster
instead (:func:`cluster`), to separate its fixed costs from what grows with the log.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

from ra.core import server as core
from ra.core.types import ServerId
from ra.log.log import DiskLog
from ra.log.meta import DiskMeta
from ra.testing.machines import Counter
from wal.batch import Append
from wal.segment_writer import flush_closed
from wal.wal import Wal

__all__ = ["main", "write_log", "measure"]

UID = "srv_recovery_bench"
ADDR = "tcp://127.0.0.1:40123"
SEG_MAX = 4096
#: entries between roll-overs (a server asks for one at its tick once more than 8,192 sit in
#: its memory, ra/server/proc.py: under W3's load that is tens of thousands of entries)
ROLL_EVERY = 32768
#: entries per append message (a W3 leader's batch is a few hundred to a few thousand)
BATCH = 1024
TS0 = 1_764_000_000_000


def _entry(i: int) -> tuple[Any, ...]:
    # session 3 (opened at index 3), seq from 1, 200 commands outstanding
    return ("usr", 1, ("notify", i, ADDR), TS0 + i, 3, i - 3, max(1, i - 203))


def write_log(data_dir: str, n: int, tail: int) -> None:
    """Write entries 1..n for :data:`UID` (see the module docstring); the last ``tail`` stay in
    the open WAL file."""
    wal_dir = os.path.join(data_dir, "wal")
    wal = Wal(wal_dir, data_dir, lambda addr, msg: pending.append(msg),
              segment_max_entries=SEG_MAX)
    pending: list[Any] = []
    wal.recover()
    log = DiskLog(UID, data_dir, wal_dir=wal_dir, segment_max_entries=SEG_MAX)
    members = (ServerId("a", "127.0.0.1:7001"), ServerId("b", "127.0.0.1:7002"),
               ServerId("c", "127.0.0.1:7003"))
    log.append((1, 1, ("cluster", members, None)))
    log.append((2, 1, ("noop", 0)))
    log.append((3, 1, ("session", "open_session", None, None, TS0)))
    i = 4
    since_roll = 0
    while i <= n:
        hi = min(n, i + BATCH - 1, i + ROLL_EVERY - since_roll - 1)
        if i <= n - tail:
            hi = min(hi, n - tail)   # the tail starts in a fresh file
        for k in range(i, hi + 1):
            log.append((k, 1, _entry(k)))
        log.flush()
        reqs = [Append(UID.encode(), ADDR, m.lw, [tuple(e) for e in m.entries], m.seq)
                for m in log.outbox]
        log.outbox.clear()
        wal.handle_appends(reqs)
        for msg in pending:
            for w in log.handle_wal_event(msg):
                log.handle_written(w)
        pending.clear()
        since_roll += hi - i + 1
        i = hi + 1
        if (since_roll >= ROLL_EVERY and i <= n - tail) or (tail and i == n - tail + 1):
            wal.roll_over()
            flush_closed(wal_dir, data_dir, SEG_MAX)
            log.tick()
            since_roll = 0
    wal.close()
    log.close()
    meta = DiskMeta(os.path.join(data_dir, UID))
    meta.store(1, None)
    meta.store_last_applied(n)
    meta.flush_last_applied()


def _recover_wal(data_dir: str) -> None:
    wal = Wal(os.path.join(data_dir, "wal"), data_dir, lambda a, m: None,
              segment_max_entries=SEG_MAX)
    wal.recover()
    wal.close()


def _open_log(data_dir: str) -> DiskLog:
    return DiskLog(UID, data_dir, wal_dir=os.path.join(data_dir, "wal"),
                   segment_max_entries=SEG_MAX)


def _init(data_dir: str, log: DiskLog) -> Any:
    members = (ServerId("a", "127.0.0.1:7001"), ServerId("b", "127.0.0.1:7002"),
               ServerId("c", "127.0.0.1:7003"))
    cfg = core.ServerConfig(id=members[0], uid=UID, cluster_name="bench",
                            initial_members=members, machine=Counter(), log=log,
                            meta=DiskMeta(os.path.join(data_dir, UID)))
    _role, st, _eff = core.init(cfg)
    return st


def _cpu(fn: Any) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def measure(n: int, reps: int = 5, tail: int = 0, root: str | None = None) -> dict[str, Any]:
    """CPU seconds (median of ``reps``) of each recovery phase for a log of ``n`` entries."""
    tmp = tempfile.mkdtemp(prefix="ra-recovery-", dir=root)
    try:
        pristine = os.path.join(tmp, "pristine")
        t0 = time.monotonic()
        write_log(pristine, n, tail)
        wrote = time.monotonic() - t0
        out: dict[str, Any] = {"entries": n, "tail": tail, "write_s": wrote, "reps": reps}
        work = os.path.join(tmp, "work")
        phases: dict[str, list[float]] = {"wal": [], "log": [], "init": []}
        if tail:
            phases["log (WAL file present)"] = []
            phases["init (WAL file present)"] = []
        for _ in range(reps):
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(pristine, work)
            if tail:
                box: list[DiskLog] = []
                phases["log (WAL file present)"].append(_cpu(lambda: box.append(_open_log(work))))
                st: list[Any] = []
                phases["init (WAL file present)"].append(
                    _cpu(lambda: st.append(_init(work, box[0]))))
                assert st[0].last_applied == n, (st[0].last_applied, n)
                box[0].close()
            phases["wal"].append(_cpu(lambda: _recover_wal(work)))
            box = []
            phases["log"].append(_cpu(lambda: box.append(_open_log(work))))
            st = []
            phases["init"].append(_cpu(lambda: st.append(_init(work, box[0]))))
            assert st[0].last_applied == n, (st[0].last_applied, n)
            assert st[0].machine_state == n - 3, st[0].machine_state
            box[0].close()
        for k, v in phases.items():
            out[k] = statistics.median(v)
        out["server_total"] = out["log"] + out["init"]
        out["us_per_entry"] = {k: out[k] / n * 1e6 for k in (*phases, "server_total")}
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _profile(n: int, tail: int, phase: str, top: int) -> None:
    tmp = tempfile.mkdtemp(prefix="ra-recovery-")
    try:
        d = os.path.join(tmp, "d")
        write_log(d, n, tail)
        prof = cProfile.Profile()
        if phase != "wal":
            _recover_wal(d)
        if phase == "wal":
            prof.runcall(_recover_wal, d)
        elif phase == "log":
            prof.runcall(_open_log, d).close()
        else:
            log = _open_log(d)
            prof.runcall(_init, d, log)
            log.close()
        pstats.Stats(prof).sort_stats("tottime").print_stats(top)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _tree_cpu(nodes: Any, name: str) -> dict[str, float]:
    """CPU seconds (user + system) each kind of process used since its start, summed over
    the 3 nodes: daemon, fork server, WAL, segment writer, server (load-independent, unlike
    the wall times)."""
    import psutil
    out = {"daemon": 0.0, "fork server": 0.0, "WAL": 0.0, "segment writer": 0.0, "server": 0.0}
    for i, proc in nodes.procs.items():
        kinds = {nodes.server_pid(name, i): "server",
                 nodes.log_child_pid(i, "ra_log_wal"): "WAL",
                 nodes.log_child_pid(i, "ra_log_segment_writer"): "segment writer"}
        top = psutil.Process(proc.pid)
        for p in [top, *top.children(recursive=True)]:
            kind = "daemon" if p.pid == proc.pid else kinds.get(p.pid, "fork server")
            try:
                ct = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            out[kind] += ct.user + ct.system
    return out


def cluster(sizes: list[int], reps: int) -> list[dict[str, Any]]:
    """W5's sequence on a real 3-node cluster (``bench.workloads``: daemons, counter machine,
    W3's pipelined session commands) at growing log sizes: for each size, fill the log up to
    it, let the servers move it to segments (3 s idle), then ``reps`` times: SIGTERM the 3
    daemons, start them again, ``start_or_restart_cluster``, the first ``process_command``.
    Wall seconds, so load-dependent: what it separates is the fixed part (the smallest size)
    from the part that grows with the log."""
    import logging

    import ra
    from bench.procs import Reaper
    from bench.workloads import COUNTER, RaNodes, _w3

    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)
    rows: list[dict[str, Any]] = []
    with Reaper() as reaper:
        tmp = tempfile.mkdtemp(prefix="ra-recovery-w5-", dir="/tmp")
        nodes = RaNodes(tmp, reaper)
        name = "rec"
        try:
            nodes.start_all()
            ids = [nodes.sid(name, i) for i in range(3)]
            ra.start_cluster(name, COUNTER, ids, timeout=30)
            c = ra.Client()
            for size in sorted(sizes):
                have = ra.key_metrics(ids[0]).get("last_index", 0)
                if size > have:
                    _m, leader = ra.members(ids, timeout=10)
                    _w3(c, leader, size - have, 2000, 600)
                time.sleep(3.0)
                n = ra.key_metrics(ids[0]).get("last_index", 0)
                for _ in range(reps):
                    for i in range(3):
                        nodes.stop(i)
                    t0 = time.monotonic()
                    nodes.start_all()
                    t_d = time.monotonic() - t0
                    ra.start_or_restart_cluster(name, COUNTER, ids, timeout=60)
                    t_s = time.monotonic() - t0
                    c.process_command(ids, 1, timeout=60)
                    t = time.monotonic() - t0
                    cpu = _tree_cpu(nodes, name)
                    rows.append({"entries": n, "daemons_s": t_d, "restart_cluster_s": t_s,
                                 "first_commit_s": t, "cpu_s": cpu})
                    print(f"{n:>9,} entries: daemons ready {t_d:.2f} s, "
                          f"start_or_restart_cluster {t_s:.2f} s, first commit {t:.2f} s; "
                          "CPU s summed over the 3 nodes: "
                          + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()), flush=True)
            c.close()
        finally:
            for i in list(nodes.procs):
                nodes.stop(i)
            shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.recovery", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("n", type=int, help="entries in the log")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--tail", type=int, default=0,
                    help="entries left in the open WAL file (default 0)")
    ap.add_argument("--profile", choices=("wal", "log", "init"),
                    help="print cProfile's top functions of one run of this phase instead")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--cluster", type=str, default=None, metavar="SIZES",
                    help="instead: W5 on a real 3-node cluster at these log sizes "
                         "(comma-separated, e.g. 1000,100000; N is then the repetitions)")
    a = ap.parse_args(argv)
    if a.cluster:
        cluster([int(x) for x in a.cluster.split(",")], a.n)
        return 0
    if a.n < 4:
        ap.error("n must be at least 4")
    if a.profile:
        _profile(a.n, a.tail, a.profile, a.top)
        return 0
    r = measure(a.n, a.reps, a.tail)
    print(f"{a.n:,} entries (tail {a.tail:,} in the open WAL file), written in "
          f"{r['write_s']:.1f} s; CPU seconds per phase, median of {a.reps} (µs per entry of "
          "the whole log, also for the WAL's, which flushes only the tail):")
    for k, us in r["us_per_entry"].items():
        print(f"  {k:<26} {r[k]:8.3f} s  {us:6.2f} µs/entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
