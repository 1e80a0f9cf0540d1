"""``ra check``: Jepsen/Knossos-style checkers of client histories. No ra equivalent.

Pure apart from reading and writing history files (:mod:`ra.check.history`): record ops with
:class:`History`, then ``check(workload, ops)`` gives a :class:`Verdict` and ``render`` a text.
"""
from __future__ import annotations

from ra.check.checkers import check, check_counter, check_register, check_set, render
from ra.check.history import History, Op, Pair, load, merge, pairs, save
from ra.check.linear import Budget
from ra.check.verdict import Verdict

__all__ = [
    "Budget",
    "History",
    "Op",
    "Pair",
    "Verdict",
    "check",
    "check_counter",
    "check_register",
    "check_set",
    "load",
    "merge",
    "pairs",
    "render",
    "save",
]
