"""No ra equivalent. The W1–W6 suite of ``make bench``: this project beside PySyncObj and,
where ``erl`` is installed, beside Erlang ra itself (:mod:`bench.erlang_peer`).

Runs :func:`bench.workloads.measure` (ours: 3 node daemons, default durability) and then
:func:`bench.pysyncobj_peer.measure` (PySyncObj 0.3.17, 3 member processes, client in a
follower, **no fsync**) in the same run, and pairs the figures into rows
``{"workload", "metric", "value", "unit", "peer", "erlang", "note"}`` (``value`` ours, ``peer``
PySyncObj's, ``erlang`` Erlang ra's, None where a side has no such figure).
Every process either side starts is killed (whole trees) before :func:`run` returns, raises, or
is interrupted.

``python -m bench.raft [--quick]`` runs this suite alone.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from typing import Any

from bench import erlang_peer, pysyncobj_peer, workloads
from bench.procs import Reaper, progress

__all__ = ["run", "LABELS", "main"]

#: workload id -> label in the table
LABELS = {
    "W1": "W1 1 client, sequential",
    "W2": "W2 concurrent clients",
    "W2 threads": "W2 threads, module functions",
    "W2 asyncio": "W2 1,000 asyncio tasks (ra.aio)",
    "W1 no sessions": "W1 without sessions (raw commands)",
    "W1 idle poll": f"W1, idle_poll_ms={workloads.IDLE_POLL_MS} (root)",
    "W2 no sessions": "W2 without sessions",
    "W3": "W3 pipelined, 5,000 in flight",
    "W3 no sessions": "W3 without sessions",
    "W3 batched": "W3 peer with its batching",
    "W4": "W4 failover (SIGKILL leader's node; loopback: connections close at once)",
    "W4 silent": "W4 failover, leader's server SIGSTOPped (silent)",
    "W5": "W5 restart all 3 nodes",
    "W6": "W6 memory at idle after W3",
    "check": "check",
}
_ORDER = ["W1", "W1 no sessions", "W1 idle poll", "W2", "W2 no sessions", "W2 threads",
          "W2 asyncio", "W3",
          "W3 no sessions", "W3 batched", "W4", "W4 silent", "W5", "W6", "check"]


def _unit(metric: str) -> str:
    if metric in ("p50", "p99", "mean"):
        return "ms"
    if metric.endswith("/s"):
        return metric
    if "RSS" in metric or "USS" in metric or "bytes" in metric:
        return "MB"
    if metric in ("counter total", "entries replayed"):
        return ""
    if metric.startswith("µs"):
        return "µs"
    return "s"


def _pair(ours: dict[tuple[str, str], tuple[Any, str]],
          peer: dict[tuple[str, str], tuple[Any, str]], peer_why: str,
          erl: dict[tuple[str, str], tuple[Any, str]] | None = None,
          erl_why: str = "") -> list[dict[str, Any]]:
    erl = erl or {}
    keys = list(ours) + [k for k in peer if k not in ours]
    keys += [k for k in erl if k not in keys]
    keys.sort(key=lambda k: (_ORDER.index(k[0]) if k[0] in _ORDER else 99))
    rows = []
    for k in keys:
        wl, metric = k
        ov, on = ours.get(k, (None, ""))
        if wl == "W3 batched":
            ov, on = ours.get(("W3", "commands/s"), (None, ""))
            on = "ours: the W3 figure"
        pv, pn = peer.get(k, (None, peer_why))
        if wl == "W2 threads":       # the peer's W2 is threads already
            pv, pn = peer.get(("W2", metric), (None, peer_why))
            pn = "its W2 figure" if pv is not None else pn
        note = "; ".join(x for x in (f"ours: {on}" if on and not on.startswith("ours") else on,
                                     f"peer: {pn}" if pn else "") if x)
        ev, en = erl.get(k, (None, ""))
        if wl == "W1 idle poll":     # Erlang ra's own W1: the BEAM keeps its CPUs awake itself
            ev, en = erl.get(("W1", metric), (None, ""))
            en = "its W1 figure" if ev is not None else en
        if ev is not None or erl_why:
            note = "; ".join(x for x in (note, f"erlang: {en or erl_why}") if x)
        rows.append({"workload": LABELS.get(wl, wl), "metric": metric, "value": ov,
                     "unit": _unit(metric), "peer": pv, "erlang": ev, "note": note})
    return rows


def _median(runs: list[dict[tuple[str, str], tuple[Any, str]]]
            ) -> dict[tuple[str, str], tuple[Any, str]]:
    """Per figure: the median over the runs that have it; the note lists every run."""
    if len(runs) == 1:
        return runs[0]
    out: dict[tuple[str, str], tuple[Any, str]] = {}
    for k in dict.fromkeys(k for r in runs for k in r):
        vals = [r[k][0] for r in runs if k in r and isinstance(r[k][0], (int, float))]
        # every run's note (errors, rejections, W4's repetitions), each distinct one once
        notes = list(dict.fromkeys(r[k][1] for r in runs if k in r and r[k][1]))
        note = notes[0] if len(notes) == 1 else " | ".join(
            f"run {i + 1}: {r[k][1]}" for i, r in enumerate(runs) if k in r)
        if not vals:
            out[k] = (None, note)
            continue
        failed = [r[k][1] for r in runs if k in r and not isinstance(r[k][0], (int, float))]
        if failed:
            note += f"; {len(failed)} run(s) without a figure: {failed[0]}"
        out[k] = (statistics.median(vals), f"median of {len(vals)} runs ("
                  + ", ".join(f"{v:.4g}" for v in vals) + f"); {note}")
    return out


def _side(name: str, fn: Any, quick: bool, repeat: int, errors: list[str]
          ) -> dict[tuple[str, str], tuple[Any, str]]:
    runs = []
    for i in range(repeat):
        if repeat > 1:
            progress(name, f"run {i + 1} of {repeat}")
        with Reaper() as reaper:
            try:
                runs.append(fn(quick, reaper))
            except Exception as e:  # reported; the other side still runs
                errors.append(f"{name}: {type(e).__name__}: {e}")
                progress(name, f"FAILED: {type(e).__name__}: {e}")
            reaper.kill_all()
    return _median(runs) if runs else {}


def run(quick: bool = False, repeat: int | None = None) -> list[dict[str, Any]]:
    """W1–W6 on ours, then on PySyncObj, ``repeat`` times each (default: ``$BENCH_REPEAT`` or
    1; figures are then medians); rows as described in the module docstring."""
    n = max(1, int(repeat or os.environ.get("BENCH_REPEAT") or 1))
    errors: list[str] = []
    ours = _side("ours", workloads.measure, quick, n, errors)
    peer: dict[tuple[str, str], tuple[Any, str]] = {}
    peer_why = ""
    if pysyncobj_peer.available() is None:
        peer_why = "PySyncObj not installed (pip install -e '.[bench]')"
        progress("peer", peer_why)
    else:
        peer_errors: list[str] = []
        peer = _side("peer", pysyncobj_peer.measure, quick, n, peer_errors)
        if peer_errors:
            peer_why = "; ".join(peer_errors)
    erl: dict[tuple[str, str], tuple[Any, str]] = {}
    erl_why = erlang_peer.available() or ""
    if erl_why:
        progress("erlang", f"Erlang ra not run: {erl_why}")
    else:
        erl_errors: list[str] = []
        erl = _side("erlang", erlang_peer.measure, quick, n, erl_errors)
        erl_why = "; ".join(erl_errors)
    rows = _pair(ours, peer, peer_why, erl, "" if erl else erl_why)
    if not erl and erl_why:
        for r in rows[:1]:
            r["note"] = "; ".join(x for x in (r["note"], f"erlang: {erl_why}") if x)
    if errors:
        err = RuntimeError("; ".join(errors))
        err.rows = rows  # type: ignore[attr-defined]  # the aggregator still prints them
        raise err
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.raft", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=None, help="runs per side; medians")
    args = ap.parse_args(argv)
    for r in run(args.quick, args.repeat):
        print(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
