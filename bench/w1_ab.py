"""No ra equivalent. W1 of two or more versions of the code, interleaved in one sitting:
``python -m bench.w1_ab [--rounds R] [--block B] [--node-key K=V ...] DIR_A DIR_B [DIR ...]``.

Each ``DIR`` is a tree of this project (``git archive COMMIT | tar -x -C DIR``); each gets its
own 3 node daemons and counter cluster (W1's setup, ``bench.workloads``), started from that
tree (``PYTHONPATH=DIR``: the daemons inherit it) and idle while the others run. Then ``R``
rounds: in each, every version runs a block of ``B`` ``process_command`` one after another
(W1's loop, after 100 warm-up commands), in an order reversed every round (A B, B A, ...).
Prints per version the p50 of each block and the median of those p50s; a disturbance of the
machine then falls on blocks of every version alike instead of on one whole run (runs of
``python -m bench`` a minute apart differ by 10-30 % on a shared machine). Every process it
starts is killed at the end (``bench.procs.Reaper``, in each worker).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

__all__ = ["main"]


def _worker(node_env: dict[str, object]) -> int:
    """One version's side: its cluster; reads a block size per line, answers the latencies."""
    import ra
    from bench.procs import Reaper
    from bench.workloads import RaNodes

    tmp = tempfile.mkdtemp(prefix="ra-w1ab-", dir="/tmp")
    with Reaper() as reaper:
        nodes = RaNodes(tmp, reaper, node_env)
        try:
            nodes.start_all()
            ordered = nodes.start_cluster("bench")
            c = ra.Client()
            for _ in range(100):
                c.process_command(ordered, 1)
            print("ready", flush=True)
            for line in sys.stdin:
                n = int(line)
                if n <= 0:
                    break
                lat = []
                c0 = os.times()
                for _ in range(n):
                    t = time.monotonic()
                    c.process_command(ordered, 1, timeout=10)
                    lat.append(time.monotonic() - t)
                c1 = os.times()
                cpu = (c1.user + c1.system - c0.user - c0.system) / n
                print(json.dumps({"lat": lat, "cpu": cpu}), flush=True)
            c.close()
        finally:
            nodes.close()
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.w1_ab", description=__doc__)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--block", type=int, default=400)
    ap.add_argument("--node-key", action="append", default=[], metavar="KEY=VALUE",
                    help="a node config key of every version's nodes (a JSON value, else a "
                         "string), e.g. idle_poll_ms=20")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("dirs", nargs="*")
    args = ap.parse_args(argv)
    node_env: dict[str, object] = {}
    for kv in args.node_key:
        k, _, v = kv.partition("=")
        try:
            node_env[k] = json.loads(v)
        except ValueError:
            node_env[k] = v
    if args.worker:
        return _worker(node_env)
    if len(args.dirs) < 2:
        ap.error("give at least two trees to compare")
    dirs = [os.path.abspath(d) for d in args.dirs]
    procs = {}
    try:
        for d in dirs:
            # this file runs in the tree under test (which may not have it), importing
            # that tree's ra and bench.workloads
            keys = "".join(f", '--node-key', {kv!r}" for kv in args.node_key)
            boot = (f"import runpy, sys; sys.argv = ['w1_ab', '--worker'{keys}]; "
                    f"runpy.run_path({os.path.abspath(__file__)!r}, run_name='__main__')")
            procs[d] = subprocess.Popen(
                [sys.executable, "-c", boot], cwd=d, text=True,
                env=dict(os.environ, PYTHONPATH=d), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for d, p in procs.items():
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise SystemExit(f"the cluster of {d} did not start")
        p50s: dict[str, list[float]] = {d: [] for d in dirs}
        cpus: dict[str, list[float]] = {d: [] for d in dirs}
        loads = []
        order = list(dirs)
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for d in order:
                p = procs[d]
                assert p.stdin is not None and p.stdout is not None
                p.stdin.write(f"{args.block}\n")
                p.stdin.flush()
                out = json.loads(p.stdout.readline())
                p50s[d].append(statistics.median(out["lat"]) * 1e3)
                cpus[d].append(out["cpu"] * 1e6)
            order.reverse()
    finally:
        for p in procs.values():
            try:
                assert p.stdin is not None
                p.stdin.write("0\n")
                p.stdin.close()
                p.wait(60)
            except Exception:       # the worker's Reaper cleans up on its way out
                p.kill()
    print(f"{time.strftime('%H:%M:%S', time.gmtime())} UTC, load average {min(loads):.1f}"
          f"-{max(loads):.1f}, {args.rounds} rounds of {args.block} commands")
    for d in dirs:
        blocks = " ".join(f"{x:.3f}" for x in p50s[d])
        print(f"{d}: W1 p50 {statistics.median(p50s[d]):.3f} ms (blocks: {blocks}); "
              f"client CPU {statistics.median(cpus[d]):.0f} us/command")
    return 0


if __name__ == "__main__":
    sys.exit(main())
