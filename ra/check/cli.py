"""No ra equivalent: the ``ra check`` subcommand (its arguments, its output, its exit code).

``ra check`` runs :func:`ra.check.runner.run_check` once per workload (``--workload all``: set,
counter, register, in that order, each on a cluster of its own in ``OUT/<workload>``) and prints,
per workload, the verdict, the operation counts, the faults injected, a short counterexample when
the history is invalid, and where the history was written.

Exit code: 0 every verdict valid, 1 one is invalid, 2 none invalid but one unknown, 3 the check
could not be set up (one line on stderr, no traceback). SIGTERM stops a run as ^C does: every
process is killed and every namespace deleted before the command exits.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
from typing import Any

__all__ = ["add_arguments", "run", "ALL"]

ALL = ("set", "counter", "register")
_EXIT = {True: 0, False: 1, None: 2}
_COUNTEREXAMPLE_CHARS = 600


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``ra check`` options. A bad option exits 3 (a setup error), not argparse's 2, which
    here means "unknown"."""

    def error(message: str) -> Any:
        print(f"ra check: {message}", file=sys.stderr)
        sys.exit(3)

    p.error = error  # type: ignore[method-assign]  # exit 3 on a usage error, not argparse's 2
    p.add_argument("--workload", default="all", choices=(*ALL, "all"))
    p.add_argument("--nodes", type=int, default=3, choices=(3, 5))
    p.add_argument("--clients", type=int, default=5, help="client threads (default 5)")
    p.add_argument("--processes", type=int, default=2, help="client OS processes (default 2)")
    p.add_argument("--time", type=float, default=30.0, help="seconds of load and faults")
    p.add_argument("--nemesis", default="",
                   help="comma-separated: kill-node,kill-leader,kill-wal,pause,partition,none")
    p.add_argument("--interval", type=float, default=3.0,
                   help="seconds between a fault and its heal, and between faults")
    p.add_argument("--reads", default="consistent", choices=("consistent", "command", "local"),
                   help="register reads: consistent_query, a read command, or local_query")
    p.add_argument("--partition-mode", default="mixed",
                   choices=("isolate-leader", "halves", "mixed"))
    p.add_argument("--rate", type=_rate, default="auto",
                   help="operations per second per client; 0: back to back; auto (default): "
                        "20 for the register, back to back for set and counter")
    p.add_argument("--keys", type=int, default=5, help="register keys")
    p.add_argument("--out", default=None, help="where histories and results go (default: tmp)")
    p.add_argument("--seed", type=int, default=None)


def _rate(text: str) -> float | None | str:
    if text == "auto":
        return text
    v = float(text)
    return v if v > 0 else None


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(a: argparse.Namespace) -> int:
    """Run the checks that ``a`` asks for and print their verdicts; returns the exit code."""
    from ra.check.nemesis import NEMESES   # lazy: `ra node ...` need not load the check

    workloads = list(ALL) if a.workload == "all" else [a.workload]
    nemesis = [n.strip() for n in a.nemesis.split(",") if n.strip()]
    bad = [n for n in nemesis if n not in NEMESES]
    if bad:
        print(f"ra check: unknown nemesis {', '.join(bad)}; known: {', '.join(NEMESES)}",
              file=sys.stderr)
        return 3
    out = os.path.abspath(a.out or tempfile.mkdtemp(prefix="ra-check-"))
    quiet_stale_replies()
    if threading.current_thread() is not threading.main_thread():
        return _run_all(a, workloads, nemesis, out)
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _run_all(a, workloads, nemesis, out)
    finally:
        signal.signal(signal.SIGTERM, old)


def quiet_stale_replies() -> None:
    """Under faults a reply often arrives after its call timed out: the mailbox's warning
    about each such stale reply is noise here (errors are still shown)."""
    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)


def _run_all(a: argparse.Namespace, workloads: list[str], nemesis: list[str], out: str) -> int:
    from ra.check import runner

    codes = []
    for w in workloads:
        try:
            res = runner.run_check(
                w, nodes=a.nodes, clients=a.clients, processes=a.processes, duration=a.time,
                nemesis=nemesis, interval=a.interval, reads=a.reads,
                out_dir=os.path.join(out, w), seed=a.seed, keys=a.keys,
                rate=a.rate, partition_mode=a.partition_mode)
        except (ValueError, runner.SetupError) as e:
            print(f"ra check: {w}: setup failed: {e}", file=sys.stderr)
            return 3
        except KeyboardInterrupt:
            print(f"ra check: {w}: interrupted (everything stopped and cleaned up)",
                  file=sys.stderr)
            return 3
        print(report(res))
        codes.append(_EXIT[res.valid])
    return 1 if 1 in codes else 2 if 2 in codes else 0


def report(res: Any) -> str:
    """The lines printed for one workload's :class:`~ra.check.runner.Result`."""
    from ra.check.checkers import render

    s = res.stats
    word = {True: "VALID", False: "INVALID", None: "UNKNOWN"}[res.valid]
    head = (f"{res.workload:<9} {word}   ops ok {s['ops']['ok']} fail {s['ops']['fail']} "
            f"info {s['ops']['info']}   faults {s.get('faults', 0)} "
            f"({', '.join(s['nemesis']) or 'none'})   recovered in "
            f"{s.get('recovered_s')} s   seed {s['seed']}")
    lines = [head]
    for name, reason in s["skipped"].items():
        lines.append(f"          {name}: skipped ({reason})")
    if s.get("nemesis_error"):
        lines.append(f"          nemesis stopped early: {s['nemesis_error']}")
    if s.get("unhealthy"):
        lines.append(f"          cluster not healthy after 60 s: {s['unhealthy']}")
    if s.get("final_read") is False:
        lines.append("          final read never answered")
    if res.valid is not True:
        text = render(res.verdict)
        if len(text) > _COUNTEREXAMPLE_CHARS:
            text = text[:_COUNTEREXAMPLE_CHARS] + " ..."
        lines += ["          " + line for line in text.splitlines()]
    leaked = [x for v in s.get("leaked", {}).values() for x in v]
    if leaked:
        lines.append(f"          LEFT BEHIND: {', '.join(leaked)}")
    lines.append(f"          history {res.history_path}")
    return "\n".join(lines)
