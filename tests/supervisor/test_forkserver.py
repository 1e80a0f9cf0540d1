"""The fork server's late imports (ForkServer.import_more): shared by the children forked after,
failures left out, a module that starts a thread refused, kept across a fork server restart."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor import ForkServer
from supervisor.child import OsChild
from supervisor.forkserver import _immortal_word, immortalize

from .conftest import REPO

pytestmark = pytest.mark.integration

T = "tests.supervisor.children:"
MOD = "colorsys"      # small, stdlib, imported by nothing of ours


@pytest.fixture
def fs(cleanup: None, tmp_path: Path) -> Iterator[ForkServer]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, str(tmp_path), env.get("PYTHONPATH", "")])
    f = ForkServer(preload=["tests.supervisor.children"], env=env)
    f.start()
    yield f
    f.stop()


def child_has(fs: ForkServer, mod: str) -> bool:
    code = OsChild(fs.spawn(T + "has_module", (mod,))).wait(10)
    assert code in (0, 3), code
    return code == 0


def test_import_more_is_shared_by_later_children(fs: ForkServer):
    assert not child_has(fs, MOD)
    assert fs.import_more([MOD, "no_such_module_here"]) == [MOD]
    assert fs.imported == [MOD]
    assert child_has(fs, MOD)
    assert fs.import_more([MOD]) == []          # already there: not asked again


def test_imports_survive_a_fork_server_restart(fs: ForkServer):
    fs.import_more([MOD])
    old = fs.pid
    fs.stop()
    fs.start()
    assert fs.pid != old and child_has(fs, MOD)


def test_a_module_that_starts_a_thread_is_refused(fs: ForkServer, tmp_path: Path):
    (tmp_path / "threaded_mod.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n")
    old = fs.pid
    assert fs.import_more(["threaded_mod"]) == []
    assert not fs.alive() and "threaded_mod" not in fs.imported
    # the next spawn starts a clean fork server, without it
    assert not child_has(fs, "threaded_mod")
    assert fs.pid != old


def test_an_import_that_hangs_costs_the_fork_server_not_the_caller(fs: ForkServer,
                                                                   tmp_path: Path):
    (tmp_path / "slow_mod.py").write_text("import time\ntime.sleep(60)\n")
    assert fs.import_more(["slow_mod"], timeout=0.5) == []
    assert "slow_mod" not in fs.imported
    assert not child_has(fs, "slow_mod")


def test_prefork_starts_many_in_one_go_and_spawn_takes_them(fs: ForkServer):
    import psutil
    reqs = [(T + "exit_with", (i,), None) for i in range(40)]
    assert fs.prefork(reqs) == 40          # more than one window of requests in flight
    pids = [fs.spawn(*r) for r in reqs[:39]]
    assert len(set(pids)) == 39
    assert [OsChild(p).wait(10) for p in pids] == list(range(39))   # each ran its own request
    fs.drop_preforked()                    # the one not taken is killed and reaped
    me = psutil.Process()
    assert {c.pid for c in me.children()} == {fs.pid}
    again = fs.spawn(*reqs[39])            # nothing preforked left: a fork of its own
    assert again not in pids and OsChild(again).wait(10) == 39


needs_immortal = pytest.mark.skipif(
    _immortal_word() is None,
    reason="no immortal objects here (CPython < 3.12 or another build): the step is skipped")


@needs_immortal
def test_children_find_the_preloads_immortal(fs: ForkServer):
    # a child's reference counting then writes nothing to the pages it shares (issue 17)
    assert OsChild(fs.spawn(T + "shares_immortal", ())).wait(10) == 0


@needs_immortal
def test_late_imports_are_made_immortal_too(fs: ForkServer, tmp_path: Path):
    (tmp_path / "late_mod.py").write_text(
        "K = ('late', 2.5)\n"
        "def f(x):\n    return x * 3.25\n")
    assert fs.import_more(["late_mod"]) == ["late_mod"]
    assert OsChild(fs.spawn(T + "shares_immortal", ("late_mod",))).wait(10) == 0


def test_immortalize_is_a_no_op_without_immortal_objects():
    if _immortal_word() is not None:
        pytest.skip("this CPython has immortal objects (the tests above cover it)")
    assert immortalize() == 0


_FILL_CHECK = """
import gc, sys
from supervisor.forkserver import _pool_holes, fill_pool_holes
garbage = [[object() for _ in range(50)] for _ in range(2000)]
del garbage[::3]                         # holes in many pools
gc.collect()
before = _pool_holes(sys._debugmallocstats)
assert sum(before.values()) > 0
fill_pool_holes()
after = _pool_holes(sys._debugmallocstats)
pool = 16 * 1024                         # CPython 3.11's pools on 64-bit Linux
scattered = {size: n for size, n in after.items() if n * size > pool}
assert not scattered, (scattered, before)
"""


def test_fill_pool_holes_leaves_no_scattered_free_block():
    """After the fill, a size class has free blocks in at most one (fresh) pool: a child's
    small allocations go to fresh pages instead of the holes all over the shared heap. Run in
    a fresh interpreter, as in the fork server: a long test process's heap churns on its own
    (every object freed between the fill and the check, e.g. while parsing the allocator's
    figures, makes a new hole)."""
    import subprocess
    import sys

    if not hasattr(sys, "_debugmallocstats"):
        pytest.skip("not CPython")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = subprocess.run([sys.executable, "-c", _FILL_CHECK], cwd=root, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-3000:]
