"""No ra equivalent. CPU seconds per command of every process in W3 (pipelined commands), for
A/B comparisons of per-entry costs: one JSON line per run, ``{role: us_per_command, ...}``.

Alternate two versions of the code in one sitting by running this with ``PYTHONPATH`` set to
each tree (the node daemons inherit it)::

    PYTHONPATH=/path/to/other/tree .venv/bin/python -m bench.w3_cpu --n 30000
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

import psutil

import ra
from bench.procs import Reaper
from bench.profile_w import _cpu, _roles
from bench.workloads import COUNTER, RaNodes, _w3

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.w3_cpu", description=__doc__)
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--tag", default="")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="ra-w3cpu-", dir="/tmp")
    name = "bench"
    with Reaper() as reaper:
        nodes = RaNodes(tmp, reaper)
        try:
            nodes.start_all()
            ids = [nodes.sid(name, i) for i in range(3)]
            ra.start_cluster(name, COUNTER, ids, timeout=30)
            _m, leader = ra.members(ids, timeout=10)
            c = ra.Client()
            _w3(c, leader, 2000, 5000, 120)          # warm-up
            roles = _roles(nodes, name, leader)
            cpu0 = _cpu(list(roles))
            el, _rej = _w3(c, leader, args.n, 5000, 600)
            cpu1 = _cpu(list(roles))
            out: dict[str, float] = {}
            for pid, lbl in roles.items():
                if pid in cpu0 and pid in cpu1:
                    key = lbl.replace(" (this process)", "")
                    out[key] = round(1e6 * (cpu1[pid] - cpu0[pid]) / args.n, 2)
            out["total"] = round(sum(out.values()), 2)
            out["cmd_per_s"] = round(args.n / el)
            out["load1"] = os.getloadavg()[0]
            out["tag"] = args.tag  # type: ignore[assignment]
            out["ra"] = os.path.dirname(os.path.dirname(ra.__file__))  # type: ignore[assignment]
            # which tree the servers run: their cwd and PYTHONPATH decide it
            sp = nodes.server_pid(name, 0)
            out["srv"] = (f"{os.readlink(f'/proc/{sp}/cwd')} "  # type: ignore[assignment]
                          f"{psutil.Process(sp).environ().get('PYTHONPATH')}")
            print(json.dumps(out), flush=True)
            c.close()
        finally:
            nodes.close()
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
