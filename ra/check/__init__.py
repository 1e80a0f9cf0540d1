"""``ra check``: an end-to-end, Jepsen-style check of a real cluster. No ra equivalent.

Node daemons, a cluster, concurrent clients recording a history, faults injected on a schedule,
and a Knossos-style checker's verdict on the history. Modules, one job each: ``history`` (the
recorded ops and their file format), ``linear`` (the register linearizability search),
``checkers`` and ``verdict`` (register, set and counter verdicts), ``machines`` (the state
machines), ``workloads`` (clients and their operations), ``nodes`` (the daemons), ``netns``
(namespaces and partitions), ``nemesis`` (faults and their schedule), ``runner``
(:func:`ra.check.runner.run_check`) and ``cli`` (``ra check``).

Only the pure checker API is imported here; ``import ra.check.runner`` loads the rest.
"""
from __future__ import annotations

from ra.check.checkers import check, check_counter, check_register, check_set, render
from ra.check.history import History, Op, Pair, load, merge, pairs, save
from ra.check.linear import Budget
from ra.check.verdict import Verdict

__all__ = [
    "Budget", "History", "Op", "Pair", "Verdict", "check", "check_counter", "check_register",
    "check_set", "load", "merge", "pairs", "render", "save",
]
