"""No ra equivalent. What security costs: W1-W3 with the default transport (PLAIN: the node
secret proven at the handshake, frames in clear) and with CURVE (``RA_TRANSPORT=curve``: every
frame encrypted and authenticated), side by side in one sitting.

Each run starts a fresh 3-node cluster in a child process whose environment selects the
transport (daemons, servers, WALs, W2's client processes and the client all inherit it) and
measures W1 (one client, sequential), W2 (client processes, and client threads) and W3
(pipelined), and W2's CPU time per command in the three node trees and in the clients (the
figure a shared machine distorts least). Runs alternate PLAIN, CURVE, CURVE, PLAIN... (``$BENCH_REPEAT`` or ``repeat``
rounds, default 1); figures are medians. Rows: ``value`` is CURVE's figure, ``peer`` PLAIN's,
so the ratio column of ``make bench`` is CURVE / PLAIN. A shared machine makes single runs
noisy (±30 % between runs of one mode): read the ratio of several rounds.

    python -m bench.security [--quick] [--repeat N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

__all__ = ["run", "measure_one", "main"]

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("plain", "curve")
#: (workload, metric, unit)
_ROWS = [("W1", "p50", "ms"), ("W1", "ops/s", "ops/s"), ("W2", "ops/s", "ops/s"),
         ("W2", "p50", "ms"), ("W2", "cluster CPU µs/cmd", "µs"),
         ("W2", "client CPU µs/cmd", "µs"), ("W2 threads", "ops/s", "ops/s"),
         ("W3", "commands/s", "cmd/s")]


def _sizes(quick: bool, smoke: bool) -> dict[str, Any]:
    if smoke:       # tests/bench: that it runs end to end, not a measurement
        return {"w1_n": 20, "w2_clients": 2, "w2_secs": 0.5, "w3_n": 500, "w3_window": 100}
    return {"w1_n": 300 if quick else 2000, "w2_clients": 8 if quick else 32,
            "w2_secs": 2.0 if quick else 10.0, "w3_n": 10_000 if quick else 100_000,
            "w3_window": 5000}


def measure_one(quick: bool, smoke: bool = False) -> dict[str, Any]:
    """W1-W3 on a fresh cluster with this process's transport (its environment); the
    ``"mechanism"`` key names the one the client's connections ran."""
    import logging

    import ra
    from bench.procs import Reaper, summary_ms
    from bench.w2_shapes import threads_module
    from bench.workloads import RaNodes, _w2, _w3
    from transport.cookie import default_mechanism

    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)
    P = _sizes(quick, smoke)
    out: dict[str, Any] = {"mechanism": default_mechanism()(False, {}).name.decode()}
    with Reaper() as reaper:
        nodes = RaNodes(tempfile.mkdtemp(prefix="ra-bench-sec-", dir="/tmp"), reaper)
        try:
            nodes.start_all()
            ordered = nodes.start_cluster("sec")
            leader = ordered[0]
            with ra.Client() as c:
                for _ in range(20):
                    c.process_command(ordered, 1, timeout=10)
                lat = []
                t0 = time.monotonic()
                for _ in range(P["w1_n"]):
                    t1 = time.monotonic()
                    c.process_command(ordered, 1, timeout=10)
                    lat.append(time.monotonic() - t1)
                out["W1 ops/s"] = P["w1_n"] / (time.monotonic() - t0)
                out["W1 p50"] = summary_ms(lat)["p50"]
                cpu: list[float] = []
                c0 = _cluster_cpu(nodes)
                lat2, _err, secs = _w2(ordered, P["w2_clients"], P["w2_secs"], reaper, cpu)
                done = max(1, len(lat2))
                out["W2 cluster CPU µs/cmd"] = (_cluster_cpu(nodes) - c0) / done * 1e6
                out["W2 client CPU µs/cmd"] = statistics.fmean(cpu)
                out["W2 ops/s"] = len(lat2) / secs
                out["W2 p50"] = summary_ms(lat2)["p50"]
                lat2t, _err = threads_module(ordered, P["w2_clients"], P["w2_secs"])
                out["W2 threads ops/s"] = len(lat2t) / P["w2_secs"]
                el3, _rej = _w3(c, leader, P["w3_n"], P["w3_window"], 120)
                out["W3 commands/s"] = P["w3_n"] / el3
        finally:
            nodes.close()
            reaper.kill_all()
    return out


def _cluster_cpu(nodes: Any) -> float:
    """CPU seconds so far of the three node trees (daemons, servers, WALs, segment writers):
    what a loaded machine distorts far less than a rate."""
    import psutil
    total = 0.0
    for proc in nodes.procs.values():
        try:
            root = psutil.Process(proc.pid)
            for p in [root, *root.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def _run_mode(mode: str, quick: bool, smoke: bool) -> dict[str, float]:
    """One run in a child process whose environment selects ``mode``."""
    env = dict(os.environ, RA_TRANSPORT=mode)
    args = [sys.executable, "-m", "bench.security", "--one"] + (["--quick"] if quick else []) \
        + (["--smoke"] if smoke else [])
    p = subprocess.run(args, env=env, cwd=_ROOT, capture_output=True, text=True,
                       timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"{mode} run failed: {p.stderr.strip()[-2000:]}")
    got: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    if got.pop("mechanism") != mode.upper():
        raise RuntimeError(f"the {mode} run did not run {mode.upper()}")
    return got


def run(quick: bool = False, repeat: int | None = None, smoke: bool = False
        ) -> list[dict[str, Any]]:
    """Rows for ``make bench`` (see the module docstring)."""
    from bench.procs import progress

    n = max(1, int(repeat or os.environ.get("BENCH_REPEAT") or 1))
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for r in range(n):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            got = _run_mode(mode, quick, smoke)
            runs[mode].append(got)
            progress(mode, "  ".join(f"{k} {v:,.4g}" for k, v in got.items()))
    rows = []
    for wl, metric, unit in _ROWS:
        k = f"{wl} {metric}"
        med = {m: statistics.median(x[k] for x in runs[m]) for m in MODES}
        per = "; ".join(f"{m}: " + ", ".join(f"{x[k]:.4g}" for x in runs[m]) for m in MODES)
        rows.append({"workload": f"{wl} CURVE vs PLAIN", "metric": metric, "value": med["curve"],
                     "unit": unit, "peer": med["plain"],
                     "note": f"median of {n} alternated run(s) per mode ({per})"})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.security",
                                 description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeat", type=int, default=None, help="rounds; figures are medians")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:       # one run with this environment's transport, as JSON on the last line
        print(json.dumps(measure_one(a.quick, a.smoke)))
        return 0
    for row in run(a.quick, a.repeat, a.smoke):
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
