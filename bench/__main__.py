"""No ra equivalent. `make bench`: run every benchmark suite, print one table, write JSON under
bench/results/.

Each suite is a module ``bench.<name>`` with ``run(quick: bool) -> list[dict]``; a row is
``{"workload", "metric", "value", "unit", "peer", "note"}`` where ``peer`` is the figure of the
reference measured side by side in the same run (PySyncObj for W1–W6, raw pyzmq, raw
fdatasync...). Progress lines are printed while the suites run; the table has ours, the
peer's figure and the ratio ours/peer. Whatever happens (a failing suite, ^C, SIGTERM), every
process the run started is killed before it exits.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import signal
import sys
import sysconfig
import time
import traceback
from types import FrameType
from typing import Any

import psutil

__all__ = ["SUITES", "PEERS", "main", "machine"]

SUITES = ("raft", "security", "transport", "runtime", "wal", "scale", "w2_long")
#: what the ``peer`` column of each suite is
PEERS = {
    "raft": "PySyncObj 0.3.17 (3 processes, client in a follower, NO fsync)",
    "security": "PLAIN, the default transport (ours: CURVE, RA_TRANSPORT=curve)",
    "transport": "raw pyzmq",
    "runtime": "no fork server (cold interpreter)",
    "wal": "raw write + fdatasync limit",
    "scale": "Erlang ra 2.15.4 (rascale.erl: C clusters on one BEAM node)",
    "w2_long": "none: ours over time (last minute / first); skipped with --quick",
}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v >= 1000:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def machine() -> dict[str, Any]:
    """What the figures were taken on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for ln in f:
                if ln.startswith("model name"):
                    cpu = ln.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    # the interpreter's build moves every CPU-bound figure by 25-40 % (a distribution's PGO+LTO
    # build against an unoptimized one of pyenv: BENCHMARKS.md, session 19), so say which ran
    args = sysconfig.get_config_var("CONFIG_ARGS") or ""
    return {"python": sys.version.split()[0], "python_path": os.path.realpath(sys.executable),
            "python_configure": [a for a in ("--enable-optimizations", "--with-lto") if a in args],
            "platform": platform.platform(), "cpu": cpu,
            "cpus": os.cpu_count(), "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def _sweep(before: set[int]) -> list[int]:
    """Kill every descendant of this process that was not there when the run began."""
    me = psutil.Process()
    left = [c for c in me.children(recursive=True) if c.pid not in before]
    for c in left:
        try:
            c.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(left, timeout=5)
    return [c.pid for c in left]


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _ratio(v: Any, p: Any) -> str:
    ok = isinstance(v, (int, float)) and isinstance(p, (int, float)) and p and not math.isnan(p)
    return f"{v / p:.2f}" if ok else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short runs for development and CI")
    ap.add_argument("--only", action="append", help="run only these suites")
    ap.add_argument("--out", help="JSON file to write (default bench/results/bench-STAMP.json)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="W1-W6: runs per side, figures are medians (also $BENCH_REPEAT)")
    args = ap.parse_args(argv)
    if args.repeat:
        os.environ["BENCH_REPEAT"] = str(args.repeat)
    suites = args.only or list(SUITES)
    before = {c.pid for c in psutil.Process().children(recursive=True)}
    signal.signal(signal.SIGTERM, _on_term)
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    mach = machine()
    t_run = time.monotonic()
    print(f"bench{' --quick' if args.quick else ''}: suites {', '.join(suites)}; "
          f"{mach['cpus']} CPUs ({mach['cpu']}), load average {mach['loadavg']}; "
          f"Python {mach['python']} ({mach['python_path']})", flush=True)
    if len(mach["python_configure"]) < 2:
        print("note: this interpreter was not configured with --enable-optimizations --with-lto "
              "(pyenv's builds are not; a distribution's may use PGO its own way); on an "
              "unoptimized build CPU-bound figures are 25-40 % worse: `make bench-opt`", flush=True)
    interrupted = False
    try:
        for name in suites:
            print(f"== {name} ... (peer: {PEERS.get(name, '-')})", flush=True)
            t0 = time.monotonic()
            try:
                mod = importlib.import_module(f"bench.{name}")
                got = mod.run(args.quick)
            except Exception as e:  # a broken suite is reported, the others still run
                print(f"   {name} FAILED: {type(e).__name__}: {e}", flush=True)
                traceback.print_exc(file=sys.stdout)
                sys.stdout.flush()
                failed.append(name)
                got = list(getattr(e, "rows", []))
            for r in got:
                r.setdefault("suite", name)
            rows += got
            print(f"   {name} done in {time.monotonic() - t0:.1f} s", flush=True)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping every process of the run", flush=True)
    finally:
        left = _sweep(before)
        if left:
            print(f"   killed {len(left)} leftover processes: {left}", flush=True)
    print()
    print("ratio = ours / peer (latency, time and memory: lower is better; rates: higher)")
    for name in suites:
        if any(r["suite"] == name for r in rows):
            print(f"  peer of {name}: {PEERS.get(name, '-')}")
    erl = any(isinstance(r.get("erlang"), (int, float)) for r in rows)
    if erl:
        print("  erlang: Erlang ra 2.15.4 in the same sitting; ratio ours / Erlang ra")
    hdr = (f"{'suite':<9} {'workload':<34} {'metric':<22} {'ours':>10} {'peer':>10} "
           f"{'ratio':>6}" + (f" {'erlang':>10} {'ratio':>6}" if erl else "") + "  unit")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        v, p, e = r.get("value"), r.get("peer"), r.get("erlang")
        extra = f" {_fmt(e):>10} {_ratio(v, e):>6}" if erl else ""
        print(f"{r['suite']:<9} {str(r['workload'])[:34]:<34} {str(r['metric'])[:22]:<22} "
              f"{_fmt(v):>10} {_fmt(p):>10} {_ratio(v, p):>6}{extra}  {r.get('unit', '')}")
        if r.get("note"):
            print(f"{'':<9} {'':<34} note: {r['note']}")
    res_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(res_dir, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = args.out or os.path.join(res_dir, f"bench-{stamp}{'-quick' if args.quick else ''}.json")
    with open(out, "w") as f:
        json.dump({"when": stamp, "quick": args.quick, "command": " ".join(sys.argv),
                   "repeat": int(os.environ.get("BENCH_REPEAT") or 1),
                   "suites": suites, "peers": PEERS, "machine": mach,
                   "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                   "seconds": round(time.monotonic() - t_run, 1), "rows": rows,
                   "failed": failed, "interrupted": interrupted}, f, indent=1, default=str)
    print(f"\nJSON: {out}  ({time.monotonic() - t_run:.0f} s)")
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
