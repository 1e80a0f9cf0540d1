"""No ra equivalent. Erlang ra itself as a peer of ``make bench``: rabbitmq/ra 2.15.4 on OTP 25,
run by ``../shared/anchor-ra/run.sh`` (its README says what it measures: BENCH.md's W1-W6 with
the same shapes as ours, 3 BEAM nodes on loopback, fdatasync per WAL batch, 32 client
processes on a 4th node) in the same sitting as ours, so that ratios compare runs made back to
back.

:func:`available` says why it cannot run here (no ``erl``: ``apt-get install -y erlang-nox``; no
anchor directory), or None. :func:`measure` runs it (``w123``: W1-W3 and W6, about 50 s; with
``full``, ``all``: W4 and W5 too, about 100 s) and returns its figures under our keys
(``("W1", "p50")``...), as medians of its repetitions.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
from typing import Any

__all__ = ["ANCHOR", "available", "measure", "figures"]

#: the anchor directory: $RA_ANCHOR, else ../shared/anchor-ra beside the repository
ANCHOR = os.environ.get("RA_ANCHOR") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "anchor-ra"))
_NOTE = "Erlang ra 2.15.4 (OTP 25), anchor-ra/run.sh, same sitting"


def available() -> str | None:
    """None if Erlang ra can run here, else a one-line reason."""
    if os.environ.get("RA_BENCH_ERLANG") == "0":
        return "RA_BENCH_ERLANG=0"
    if not os.path.isfile(os.path.join(ANCHOR, "run.sh")):
        return f"no Erlang ra anchor at {ANCHOR} (set RA_ANCHOR)"
    if shutil.which("erl") is None:
        return "no erl on this machine (apt-get install -y erlang-nox)"
    return None


def _med(rows: list[Any], key: str, scale: float = 1.0) -> float | None:
    vals = [r[key] * scale for r in rows if isinstance(r, dict)
            and isinstance(r.get(key), (int, float))]
    return statistics.median(vals) if vals else None


def figures(data: dict[str, Any]) -> dict[tuple[str, str], tuple[Any, str]]:
    """run.sh's JSON -> ``{(workload, metric): (value, note)}`` in our units (ms, s, MB)."""
    out: dict[tuple[str, str], tuple[Any, str]] = {}

    def put(k: tuple[str, str], v: float | None, note: str = _NOTE) -> None:
        if v is not None:
            out[k] = (v, note)
    w1 = data.get("w1") or []
    put(("W1", "p50"), _med(w1, "p50_us", 1e-3))
    put(("W1", "p99"), _med(w1, "p99_us", 1e-3))
    put(("W1", "ops/s"), _med(w1, "ops_per_s"))
    w2 = _med(data.get("w2") or [], "ops_per_s")
    put(("W2", "ops/s"), w2, _NOTE + "; 32 client processes on a 4th node")
    put(("W2 threads", "ops/s"), w2, _NOTE + "; its W2 (32 Erlang processes)")
    put(("W3", "commands/s"), _med(data.get("w3") or [], "cmds_per_s"))
    put(("W4", "failover median"), _med(data.get("w4") or [], "failover_ms", 1e-3))
    w5 = data.get("w5") or []
    n5 = _med(w5, "log_last_index")
    put(("W5", "start -> first commit"), _med(w5, "restart_to_commit_ms", 1e-3),
        _NOTE + (f"; {n5:,.0f} entries in its log" if n5 else ""))
    put(("W5", "entries replayed"), n5, _NOTE + "; its log's last index")
    t5 = _med(w5, "restart_to_commit_ms", 1e3)
    if n5 and t5 is not None:
        ready = _med(w5, "ra_ready_to_commit_ms", 1e3)
        put(("W5", "µs per entry"), t5 / n5, _NOTE + "; start -> first commit / entries, its "
            "BEAM nodes' start included" + (f" ({ready / n5:.1f} from ra ready)" if ready else ""))
    w6 = [x for r in data.get("w6") or [] for x in (r if isinstance(r, list) else [r])]
    kib = [v.get("rss_kib") if isinstance(v, dict) else v for v in w6]
    kib = [v for v in kib if isinstance(v, (int, float))]
    if kib:
        put(("W6", "node RSS max"), max(kib) / 1024, _NOTE + "; a whole BEAM node (every "
            "process of a member), ours: per process")
    return out


def measure(quick: bool, reaper: Any = None) -> dict[tuple[str, str], tuple[Any, str]]:
    """Run Erlang ra's W1-W3 and W6 (and W4, W5 unless ``quick``); raise RuntimeError with
    the tail of its output if it fails."""
    why = available()
    if why is not None:
        raise RuntimeError(why)
    with tempfile.TemporaryDirectory(prefix="ra-erl-") as tmp:
        out = os.path.join(tmp, "ra.json")
        p = subprocess.run([os.path.join(ANCHOR, "run.sh"), out, "w123" if quick else "all"],
                           capture_output=True, text=True, timeout=600, check=False)
        if p.returncode != 0 or not os.path.isfile(out):
            tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"run.sh exited {p.returncode}: {' | '.join(tail)}")
        with open(out) as f:
            return figures(json.load(f))
