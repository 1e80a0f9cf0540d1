"""No ra equivalent. The W1–W6 suite of ``make bench``: this project beside PySyncObj.

Runs :func:`bench.workloads.measure` (ours: 3 node daemons, default durability) and then
:func:`bench.pysyncobj_peer.measure` (PySyncObj 0.3.17, 3 member processes, client in a
follower, **no fsync**) in the same run, and pairs the figures into rows
``{"workload", "metric", "value", "unit", "peer", "note"}`` (``value`` ours, ``peer`` theirs).
Every process either side starts is killed (whole trees) before :func:`run` returns, raises, or
is interrupted.

``python -m bench.raft [--quick]`` runs this suite alone.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bench import pysyncobj_peer, workloads
from bench.procs import Reaper, progress

__all__ = ["run", "LABELS", "main"]

#: workload id -> label in the table
LABELS = {
    "W1": "W1 1 client, sequential",
    "W2": "W2 concurrent clients",
    "W3": "W3 pipelined, 5,000 in flight",
    "W3 batched": "W3 peer with its batching",
    "W4": "W4 failover (SIGKILL leader)",
    "W5": "W5 restart all 3 nodes",
    "W6": "W6 memory at idle after W3",
    "check": "check",
}
_ORDER = ["W1", "W2", "W3", "W3 batched", "W4", "W5", "W6", "check"]


def _unit(metric: str) -> str:
    if metric in ("p50", "p99", "mean"):
        return "ms"
    if metric.endswith("/s"):
        return metric
    if "RSS" in metric or "USS" in metric or "bytes" in metric:
        return "MB"
    if metric == "counter total":
        return ""
    return "s"


def _pair(ours: dict[tuple[str, str], tuple[Any, str]],
          peer: dict[tuple[str, str], tuple[Any, str]], peer_why: str) -> list[dict[str, Any]]:
    keys = list(ours) + [k for k in peer if k not in ours]
    keys.sort(key=lambda k: (_ORDER.index(k[0]) if k[0] in _ORDER else 99))
    rows = []
    for k in keys:
        wl, metric = k
        ov, on = ours.get(k, (None, ""))
        if wl == "W3 batched":
            ov, on = ours.get(("W3", "commands/s"), (None, ""))
            on = "ours: the W3 figure"
        pv, pn = peer.get(k, (None, peer_why))
        note = "; ".join(x for x in (f"ours: {on}" if on and not on.startswith("ours") else on,
                                     f"peer: {pn}" if pn else "") if x)
        rows.append({"workload": LABELS.get(wl, wl), "metric": metric, "value": ov,
                     "unit": _unit(metric), "peer": pv, "note": note})
    return rows


def run(quick: bool = False) -> list[dict[str, Any]]:
    """W1–W6 on ours, then on PySyncObj; rows as described in the module docstring."""
    ours: dict[tuple[str, str], tuple[Any, str]] = {}
    peer: dict[tuple[str, str], tuple[Any, str]] = {}
    peer_why = ""
    errors = []
    with Reaper() as reaper:
        try:
            ours = workloads.measure(quick, reaper)
        except Exception as e:  # noqa: BLE001 - reported; the peer still runs
            errors.append(f"ours: {type(e).__name__}: {e}")
            progress("ours", f"FAILED: {type(e).__name__}: {e}")
        reaper.kill_all()
    version = pysyncobj_peer.available()
    if version is None:
        peer_why = "PySyncObj not installed (pip install -e '.[bench]')"
        progress("peer", peer_why)
    else:
        with Reaper() as reaper:
            try:
                peer = pysyncobj_peer.measure(quick, reaper)
            except Exception as e:  # noqa: BLE001
                peer_why = f"peer failed: {type(e).__name__}: {e}"
                progress("peer", f"FAILED: {type(e).__name__}: {e}")
            reaper.kill_all()
    rows = _pair(ours, peer, peer_why)
    if errors:
        err = RuntimeError("; ".join(errors))
        err.rows = rows  # type: ignore[attr-defined]  # the aggregator still prints them
        raise err
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.raft", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    for r in run(args.quick):
        print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
