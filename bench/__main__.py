"""`make bench`: run every benchmark suite, print one table, write JSON under bench/results/.

Each suite is a module ``bench.<name>`` with ``run(quick: bool) -> list[dict]``; a row is
``{"workload", "metric", "value", "unit", "peer", "note"}`` where ``peer`` is the figure of the
reference measured side by side in the same run (raw pyzmq, raw fdatasync, PySyncObj...).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
from typing import Any

SUITES = ("transport", "runtime", "wal")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 1000:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3g}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short runs for development and CI")
    ap.add_argument("--only", action="append", help="run only these suites")
    args = ap.parse_args(argv)
    suites = args.only or list(SUITES)
    rows: list[dict[str, Any]] = []
    failed = []
    for name in suites:
        print(f"== {name} ...", flush=True)
        t0 = time.monotonic()
        try:
            mod = importlib.import_module(f"bench.{name}")
            got = mod.run(args.quick)
        except Exception as e:  # a broken suite is reported, the others still run
            print(f"   {name} FAILED: {type(e).__name__}: {e}", flush=True)
            failed.append(name)
            continue
        for r in got:
            r.setdefault("suite", name)
        rows += got
        print(f"   done in {time.monotonic() - t0:.1f} s", flush=True)
    print()
    hdr = f"{'suite':<10} {'workload':<34} {'metric':<22} {'ours':>12} {'peer':>12} {'ratio':>7}  unit"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        v, p = r.get("value"), r.get("peer")
        ratio = f"{v / p:.2f}" if isinstance(v, (int, float)) and isinstance(p, (int, float)) and p else "-"
        print(f"{r['suite']:<10} {str(r['workload'])[:34]:<34} {str(r['metric'])[:22]:<22} "
              f"{_fmt(v):>12} {_fmt(p):>12} {ratio:>7}  {r.get('unit', '')}")
        if r.get("note"):
            print(f"{'':<10} {'':<34} note: {r['note']}")
    os.makedirs(os.path.join(os.path.dirname(__file__), "results"), exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    out = os.path.join(os.path.dirname(__file__), "results", f"bench-{stamp}{'-quick' if args.quick else ''}.json")
    with open(out, "w") as f:
        json.dump({"when": stamp, "quick": args.quick, "python": sys.version.split()[0],
                   "machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows,
                   "failed": failed}, f, indent=1, default=str)
    print(f"\nJSON: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
