"""No ra equivalent. Where the time goes in W1 and W3 (ours): py-spy samples every process.

Starts the W1–W6 setup (3 node daemons, a counter cluster), then for each of W1 and W3 runs
``py-spy record --subprocesses --nonblocking --gil --format raw`` (only samples holding
the GIL: Python CPU time, not waits) on each node daemon (so the servers,
WAL and segment writer of that node are sampled) and on this client process while the workload
runs, and prints, per process (leader server, follower server, WAL, ...), the CPU samples and the
top functions by self time and by inclusive time; and the CPU seconds each process used
(psutil) per command.

py-spy is not a dependency of the project: install it in a throwaway venv and pass its path::

    python3 -m venv /tmp/spy && /tmp/spy/bin/pip install py-spy
    .venv/bin/python -m bench.profile_w --py-spy /tmp/spy/bin/py-spy [--w1 2000] [--w3 100000]
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil

import ra
from bench.procs import Reaper, kill_tree
from bench.workloads import RaNodes, _w3

__all__ = ["main", "parse_raw", "report"]

_PROC = re.compile(r'process (\d+):"[^"]*"')
#: leaf frames that are a process waiting for work, not working
_IDLE = ("Poller.poll", "poll (", "Socket.recv_multipart", "select (")


def parse_raw(path: str) -> dict[int, list[tuple[list[str], int]]]:
    """py-spy raw (collapsed) output -> {pid: [(frames root..leaf, samples)]}. With
    ``--subprocesses`` a stack starts with one ``process PID:"cmdline"`` frame per ancestor
    (the command lines may hold ';'): the last one names the sampled process."""
    out: dict[int, list[tuple[list[str], int]]] = collections.defaultdict(list)
    try:
        f = open(path)
    except OSError:
        return out
    with f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, n = line.rpartition(" ")
            pids = _PROC.findall(stack)
            stack = _PROC.sub("", stack)
            frames = [fr for fr in stack.split(";") if fr and not fr.startswith("thread (")]
            out[int(pids[-1]) if pids else 0].append((frames, int(n)))
    return out


def _short(frame: str) -> str:
    # "func (path/to/mod.py:123)" -> "func (mod.py)"
    m = re.match(r"^(.*) \((.*?):\d+\)$", frame)
    if not m:
        return frame
    fn, path = m.groups()
    parts = path.split("/")
    return f"{fn} ({'/'.join(parts[-2:])})"


def report(samples: list[tuple[list[str], int]], top: int = 8) -> tuple[int, int, list[str]]:
    """(busy samples, idle samples, lines): top functions by self and inclusive time, as a
    share of the busy samples (idle = waiting in poll)."""
    busy = [(f, n) for f, n in samples if f and not _short(f[-1]).startswith(_IDLE)]
    idle = sum(n for _f, n in samples) - sum(n for _f, n in busy)
    total = sum(n for _f, n in busy) or 1
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    for frames, n in busy:
        self_t[_short(frames[-1])] += n
        for fr in {_short(x) for x in frames}:
            incl[fr] += n
    lines = ["  self:"] + [f"    {100 * n / total:5.1f}%  {fn}" for fn, n in
                           self_t.most_common(top)]
    skip = ("<module>", "run (", "main (", "_main (", "_bootstrap", "_run_module", "_run_code",
            "_serve (", "run_target (", "loop (", " ")
    inc = [(fn, n) for fn, n in incl.most_common(80) if not fn.startswith(skip)][:top]
    lines += ["  inclusive:"] + [f"    {100 * n / total:5.1f}%  {fn}" for fn, n in inc]
    return sum(n for _f, n in busy), idle, lines


def _roles(nodes: RaNodes, name: str, leader: ra.ServerId) -> dict[int, str]:
    roles: dict[int, str] = {os.getpid(): "client (this process)"}
    for i in range(3):
        tag = "leader" if nodes.addrs[i] == leader.node else "follower"
        roles[nodes.procs[i].pid] = f"node{i} daemon"
        sp = nodes.server_pid(name, i)
        if sp:
            roles[sp] = f"node{i} server ({tag})"
        for child, lbl in (("ra_log_wal", "WAL"), ("ra_log_segment_writer", "segment writer")):
            p = nodes.log_child_pid(i, child)
            if p:
                roles[p] = f"node{i} {lbl} ({tag}'s node)"
    return roles


def _record(spy: str, pids: list[int], tmp: str, tag: str, rate: int,
            reaper: Reaper, native: bool = False, children: bool = True
            ) -> list[tuple[subprocess.Popen[bytes], str]]:
    """Start py-spy on each of ``pids`` (and, with ``children``, its children, but for this
    process's); ``native``: C frames too (extension modules, the interpreter's own)."""
    recs = []
    for pid in pids:
        out = os.path.join(tmp, f"{tag}-{pid}.txt")
        argv = [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking", "--gil",
                "--rate", str(rate), "-o", out]
        if children and pid != os.getpid():
            argv.append("--subprocesses")
        if native:
            argv.append("--native")
        p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reaper.add(p.pid)
        recs.append((p, out))
    time.sleep(1.0)   # py-spy attaches
    return recs


def _stop(recs: list[tuple[subprocess.Popen[bytes], str]]) -> list[str]:
    for p, _o in recs:
        p.send_signal(signal.SIGINT)
    for p, _o in recs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            kill_tree(p.pid)
    return [o for _p, o in recs]


def _cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            out[pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def _print_cpu(before: dict[int, float], after: dict[int, float], roles: dict[int, str],
               n: int, secs: float) -> None:
    print(f"\nCPU per process over the workload (user+sys; {secs:.1f} s wall, {n:,} commands):")
    rows = sorted(((after[p] - before[p], p) for p in before if p in after), reverse=True)
    for d, p in rows:
        print(f"  {roles.get(p, str(p)):<36} {d:6.2f} s  {100 * d / secs:5.1f}% of a core  "
              f"{1e6 * d / n:8.1f} us/command")
    print(f"  {'total':<36} {sum(d for d, _p in rows):6.2f} s  "
          f"{1e6 * sum(d for d, _p in rows) / n:8.1f} us/command")


def _print(title: str, files: list[str], roles: dict[int, str], secs: float) -> None:
    merged: dict[int, list[tuple[list[str], int]]] = collections.defaultdict(list)
    own = os.getpid()
    for f in files:
        # samples without a process frame are of the process recorded (no --subprocesses)
        m = re.search(r"-(\d+)\.txt$", f)
        recorded = int(m.group(1)) if m and int(m.group(1)) in roles else own
        for pid, s in parse_raw(f).items():
            merged[pid or recorded].extend(s)
    print(f"\n### {title} ({secs:.1f} s of workload)")
    ranked = sorted(merged.items(), key=lambda kv: -report(kv[1])[0])
    for pid, s in ranked:
        busy, idle, lines = report(s)
        if busy < 20:
            continue
        print(f"\n{roles.get(pid, f'pid {pid}')}: {busy} busy samples ({idle} idle in poll)")
        print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.profile_w", description=__doc__)
    ap.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    ap.add_argument("--w1", type=int, default=2000)
    ap.add_argument("--w3", type=int, default=100_000)
    ap.add_argument("--rate", type=int, default=200)
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="ra-prof-", dir="/tmp")
    name = "bench"
    with Reaper() as reaper:
        nodes = RaNodes(tmp, reaper)
        try:
            nodes.start_all()
            ordered = nodes.start_cluster(name)
            leader = ordered[0]
            c = ra.Client()
            for _ in range(100):
                c.process_command(ordered, 1)
            roles = _roles(nodes, name, leader)
            daemons = [nodes.procs[i].pid for i in range(3)]
            recs = _record(args.py_spy, daemons + [os.getpid()], tmp, "w1", args.rate, reaper)
            cpu0 = _cpu(list(roles))
            t0 = time.monotonic()
            for _ in range(args.w1):
                c.process_command(ordered, 1, timeout=10)
            el1 = time.monotonic() - t0
            _print_cpu(cpu0, _cpu(list(roles)), roles, args.w1, el1)
            _print(f"W1: {args.w1} process_command, {args.w1 / el1:,.0f} ops/s under py-spy",
                   _stop(recs), roles, el1)
            recs = _record(args.py_spy, daemons + [os.getpid()], tmp, "w3", args.rate, reaper)
            cpu0 = _cpu(list(roles))
            el3, _rej = _w3(c, leader, args.w3, 5000, 600)
            _print_cpu(cpu0, _cpu(list(roles)), roles, args.w3, el3)
            _print(f"W3: {args.w3} pipeline_command, {args.w3 / el3:,.0f} commands/s under "
                   "py-spy", _stop(recs), roles, el3)
            c.close()
        finally:
            nodes.close()
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
