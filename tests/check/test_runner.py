"""End-to-end ``ra check`` runs (ra/check/runner.py): real node daemons, client threads and
processes, faults, a recorded history and the checker's verdict.

Each test asserts that the run leaves nothing behind: no process whose command line names the
run's output directory (node daemons, their trees, client processes), no child of this process,
no network namespace or link of this process's runs.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import psutil
import pytest

from ra.client import cli
from ra.check import netns
from ra.check.history import Op, load

pytestmark = pytest.mark.integration


def _strays(out_dir: str) -> list[str]:
    """Live processes whose command line mentions ``out_dir``."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if out_dir in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{p.info['pid']} {cmd[:120]}")
    return found


def _live_children() -> list[psutil.Process]:
    return [c for c in psutil.Process().children(recursive=True)
            if c.status() != psutil.STATUS_ZOMBIE]


@pytest.fixture
def no_leaks(tmp_path: Any) -> Any:
    """The run's output directory; after the test, nothing of the run may be left."""
    before = {c.pid for c in _live_children()}
    out = str(tmp_path / "out")
    yield out
    assert _strays(out) == []
    assert [c for c in _live_children() if c.pid not in before] == []
    if os.geteuid() == 0:
        assert netns.leftovers(f"rck{os.getpid()}") == []


def _well_formed(ops: list[Op]) -> None:
    """Each process id is sequential (invoke, then its completion for the same f and key),
    retired after an ``info``; times never go back within a process; fields have their types."""
    open_: dict[int, Op] = {}
    retired: set[int] = set()
    last: dict[int, float] = defaultdict(float)
    for op in ops:
        assert op.type in ("invoke", "ok", "fail", "info"), op
        assert isinstance(op.process, int) and op.process not in retired, op
        assert op.time >= last[op.process], op
        last[op.process] = op.time
        if op.type == "invoke":
            assert op.process not in open_, f"two invokes in a row: {op}"
            open_[op.process] = op
            continue
        inv = open_.pop(op.process)
        assert (inv.f, inv.key) == (op.f, op.key), (inv, op)
        if op.type == "info":
            retired.add(op.process)


def _result(out: str, workload: str) -> dict[str, Any]:
    with open(os.path.join(out, workload, "result.json")) as fh:
        r: dict[str, Any] = json.load(fh)
    return r


def test_short_check_of_every_workload(no_leaks: str) -> None:
    """counter, set and register, 8 s each with kill-leader and pause every 1.5 s: the runs
    complete, the histories are well formed, and every verdict is valid (exactly-once: no add
    counted twice; the register linearizable)."""
    code = cli.main(["check", "--workload", "all", "--time", "8", "--interval", "1.5",
                     "--nemesis", "kill-leader,pause", "--clients", "3", "--processes", "2",
                     "--out", no_leaks, "--seed", "7"])
    assert code == 0
    for w in ("set", "counter", "register"):
        r = _result(no_leaks, w)
        assert r["valid"] is True, (w, r["counterexample"])
        assert r["stats"]["leaked"] == {"processes": [], "namespaces": []}
        assert r["stats"]["faults"] >= 2, r["stats"]["nemesis_log"]
        assert "nemesis_error" not in r["stats"]
        assert r["stats"]["recovered_s"] is not None
        ops = load(r["history"])
        _well_formed(ops)
        assert {op.process for op in ops} >= {0, 1, 2, 3, 4}   # threads and processes
        assert r["stats"]["ops"]["ok"] > 20
        if w != "register":
            assert r["stats"]["final_read"] is True
            assert ops[-1].f == "read" and ops[-1].type == "ok"


def test_stale_local_reads_under_partition_are_caught(no_leaks: str) -> None:
    """The control: register reads through ``local_query`` on any member while the leader is
    cut off from the majority return old values; the checker must call the history invalid."""
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(f"partitions unavailable: {reason}")
    code = cli.main(["check", "--workload", "register", "--reads", "local", "--time", "12",
                     "--interval", "2", "--nemesis", "partition",
                     "--partition-mode", "isolate-leader", "--keys", "2", "--clients", "4",
                     "--processes", "1", "--out", no_leaks, "--seed", "3"])
    r = _result(no_leaks, "register")
    assert r["stats"]["skipped"] == {}
    assert r["stats"]["faults"] >= 2
    assert r["stats"]["leaked"] == {"processes": [], "namespaces": []}
    _well_formed(load(r["history"]))
    assert r["valid"] is False, r["stats"]["nemesis_log"]
    assert code == 1


@pytest.mark.slow
@pytest.mark.parametrize("nodes", [3, 5])
def test_long_check_under_every_nemesis(no_leaks: str, nodes: int) -> None:
    """``make soak``: every workload, 60 s each, every nemesis (partitions where the machine
    allows them), 3 and 5 nodes: every verdict valid."""
    code = cli.main(["check", "--workload", "all", "--time", "60", "--interval", "3",
                     "--nodes", str(nodes),
                     "--nemesis", "kill-node,kill-leader,kill-wal,pause,partition",
                     "--out", no_leaks, "--seed", str(nodes)])
    for w in ("set", "counter", "register"):
        r = _result(no_leaks, w)
        assert r["valid"] is True, (w, r["counterexample"])
        assert r["stats"]["leaked"] == {"processes": [], "namespaces": []}
        assert r["stats"]["faults"] >= 8, r["stats"]["nemesis_log"]
    assert code == 0
