"""Real processes under a supervisor: strategies, restart types, intensity, shutdown modes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supervisor import (
    ChildSpec, Exec, Fork, ForkServer, Loop, Nested, StartError, SupFlags, Supervisor,
    start_link,
)
from supervisor import spec as S
from supervisor.child import OsChild

from .conftest import REPO

pytestmark = pytest.mark.integration

T = "tests.supervisor.children:"
SLEEP = Fork(T + "sleeper")


def pids(sup: Supervisor) -> dict:
    return {c.id: c.pid for c in sup.which_children()}


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def changed(loop: Loop, sup: Supervisor, key, old: int, timeout: float = 5.0) -> bool:
    return loop.run_until(lambda: pids(sup).get(key) not in (None, old), timeout)


def three(strategy: str, fs: ForkServer, loop: Loop, **kw) -> Supervisor:
    specs = [ChildSpec(k, SLEEP, shutdown="brutal_kill") for k in "abc"]
    return start_link(loop, SupFlags(strategy, intensity=10, period=5), specs, forkserver=fs, **kw)


# ------------------------------------------------------------------- strategies

def test_one_for_one_restarts_only_the_dead_child(loop, forkserver):
    sup = three("one_for_one", forkserver, loop)
    before = pids(sup)
    kill(before["b"])
    assert changed(loop, sup, "b", before["b"])
    after = pids(sup)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert gone(before["b"])
    sup.shutdown()
    assert all(gone(p) for p in after.values())


def test_one_for_all_restarts_everyone(loop, forkserver):
    sup = three("one_for_all", forkserver, loop)
    before = pids(sup)
    kill(before["b"])
    assert loop.run_until(lambda: all(pids(sup)[k] not in (None, before[k]) for k in "abc"), 5)
    assert all(gone(p) for p in before.values())
    sup.shutdown()


def test_rest_for_one_restarts_the_later_ones(loop, forkserver):
    sup = three("rest_for_one", forkserver, loop)
    before = pids(sup)
    kill(before["b"])
    assert loop.run_until(lambda: all(pids(sup)[k] not in (None, before[k]) for k in "bc"), 5)
    assert pids(sup)["a"] == before["a"]
    assert gone(before["c"])
    sup.shutdown()


def test_simple_one_for_one(loop, forkserver):
    tmpl = ChildSpec("w", Fork(T + "sleeper"), restart="transient", shutdown=1000)
    sup = start_link(loop, SupFlags("simple_one_for_one", 5, 5), [tmpl], forkserver=forkserver)
    p1, p2 = sup.start_child(()), sup.start_child(())
    assert sup.count_children() == {"specs": 1, "active": 2, "supervisors": 0, "workers": 2}
    kill(p1)
    assert loop.run_until(lambda: sorted(c.pid for c in sup.which_children()) != sorted([p1, p2])
                          and len(sup.which_children()) == 2, 5)
    assert p2 in [c.pid for c in sup.which_children()]
    sup.terminate_child(p2)  # by pid, removed
    assert gone(p2) and len(sup.which_children()) == 1
    with pytest.raises(S.SimpleOneForOne):
        sup.restart_child(1)
    with pytest.raises(S.NotFound):
        sup.terminate_child(p2)
    last = sup.which_children()[0].pid
    sup.shutdown()
    assert gone(last)


def test_simple_one_for_one_extra_args_and_temporary(loop, forkserver):
    tmpl = ChildSpec("w", Fork(T + "exit_with"), restart="temporary")
    sup = start_link(loop, SupFlags("simple_one_for_one"), [tmpl], forkserver=forkserver)
    sup.start_child((3,))
    assert loop.run_until(lambda: sup.which_children() == [], 5)
    assert sup.stopped is None


# ------------------------------------------------------------------- restart types

def test_restart_types(loop, forkserver):
    specs = [
        ChildSpec("perm_normal", Fork(T + "exit_with", (0,)), restart="permanent"),
        ChildSpec("trans_normal", Fork(T + "exit_with", (0,)), restart="transient"),
        ChildSpec("trans_killed", SLEEP, restart="transient", shutdown="brutal_kill"),
        ChildSpec("temp_killed", SLEEP, restart="temporary", shutdown="brutal_kill"),
    ]
    # perm_normal exits at once each time: give it room, then check it was restarted
    sup = start_link(loop, SupFlags("one_for_one", intensity=1000, period=1), specs,
                     forkserver=forkserver)
    before = pids(sup)
    kill(before["trans_killed"])
    kill(before["temp_killed"])
    assert changed(loop, sup, "trans_killed", before["trans_killed"])
    assert loop.run_until(lambda: "temp_killed" not in pids(sup), 5)
    assert loop.run_until(lambda: pids(sup)["trans_normal"] is None, 5)
    assert loop.run_until(lambda: len(sup.restarts) >= 2, 5)  # permanent exit 0 restarts
    assert sup.stopped is None
    ids = [c.id for c in sup.which_children()]
    assert ids == ["perm_normal", "trans_normal", "trans_killed"]
    sup.shutdown()


def test_sigterm_from_someone_else_is_abnormal_for_transient(loop, forkserver):
    sup = start_link(loop, SupFlags(), [ChildSpec("t", SLEEP, restart="transient")],
                     forkserver=forkserver)
    old = pids(sup)["t"]
    os.kill(old, signal.SIGTERM)
    assert changed(loop, sup, "t", old)
    sup.shutdown()


# ------------------------------------------------------------------- intensity / escalation

def test_intensity_exceeded_escalates(loop, forkserver):
    exits: list[str] = []
    specs = [ChildSpec(k, SLEEP, shutdown="brutal_kill") for k in "ab"]
    sup = start_link(loop, SupFlags("one_for_one", intensity=2, period=30), specs,
                     forkserver=forkserver, on_exit=exits.append)
    for _ in range(2):
        old = pids(sup)["a"]
        kill(old)
        assert changed(loop, sup, "a", old)
    survivors = list(pids(sup).values())
    kill(pids(sup)["a"])
    assert loop.run_until(lambda: exits == ["shutdown"], 5)
    assert sup.stopped == "shutdown"
    assert all(gone(p) for p in survivors)


def test_nested_supervisor_escalates_to_parent(loop, forkserver):
    inner = Nested(SupFlags("one_for_one", intensity=0, period=5),
                   (ChildSpec("w", SLEEP, shutdown="brutal_kill"),))
    specs = [ChildSpec("x", SLEEP, shutdown="brutal_kill"),
             ChildSpec("inner", inner, type="supervisor")]
    sup = start_link(loop, SupFlags("one_for_one", intensity=5, period=5), specs,
                     forkserver=forkserver)
    x = pids(sup)["x"]
    sub = sup.child("inner")
    assert sub is not None
    w = pids(sub)["w"]
    kill(w)  # inner intensity 0: inner escalates, the root restarts inner (a new w)
    assert loop.run_until(lambda: sup.child("inner") not in (None, sub), 5)
    assert sub.stopped == "shutdown"
    new_sub = sup.child("inner")
    assert pids(new_sub)["w"] not in (None, w)
    assert pids(sup)["x"] == x and sup.restarts != ()
    sup.shutdown()
    assert gone(x)


def test_rest_for_one_nested_escalation_restarts_later_siblings(loop, forkserver):
    inner = Nested(SupFlags("one_for_one", intensity=0), (ChildSpec("w", SLEEP),))
    specs = [ChildSpec("log", inner, type="supervisor"), ChildSpec("srv", SLEEP)]
    sup = start_link(loop, SupFlags("rest_for_one", 5, 5), specs, forkserver=forkserver)
    srv = pids(sup)["srv"]
    kill(pids(sup.child("log"))["w"])
    assert changed(loop, sup, "srv", srv)
    sup.shutdown()


# ------------------------------------------------------------------- shutdown modes

def wait_sigterm_handled(pid: int, timeout: float = 5.0) -> bool:
    bit = 1 << (signal.SIGTERM - 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as f:
            masks = [int(ln.split()[1], 16) for ln in f if ln.startswith(("SigIgn", "SigCgt"))]
        if any(m & bit for m in masks):
            return True
    return False


@pytest.mark.parametrize("target,mode,reason,min_s,max_s", [
    ("sleeper", "brutal_kill", "killed", 0, 2),
    ("stubborn", 300, "killed", 0.29, 3),
    ("graceful", 5000, "normal", 0, 3),
    ("sleeper", "infinity", "shutdown", 0, 3),
])
def test_shutdown_modes(forkserver, target, mode, reason, min_s, max_s):
    proc = OsChild(forkserver.spawn(T + target))
    if target != "sleeper":  # poll /proc until its SIGTERM handler is installed
        assert wait_sigterm_handled(proc.pid)
    t0 = time.monotonic()
    assert proc.shutdown(mode) == reason
    assert min_s <= time.monotonic() - t0 <= max_s
    assert gone(proc.pid)


def test_start_order_and_reverse_stop(loop, forkserver, tmp_path: Path):
    log = tmp_path / "order.log"
    specs = [ChildSpec(n, Fork(T + "logger", (str(log), n))) for n in ("one", "two", "three")]
    sup = start_link(loop, SupFlags("one_for_one"), specs, forkserver=forkserver)
    assert loop.run_until(lambda: log.exists() and len(log.read_text().split("\n")) > 3, 5)
    sup.shutdown()
    lines = log.read_text().split("\n")[:-1]
    starts = [ln for ln in lines if ln.startswith("start")]
    assert sorted(starts) == sorted(["start one", "start two", "start three"])
    assert [ln for ln in lines if ln.startswith("stop")] == ["stop three", "stop two", "stop one"]


# ------------------------------------------------------------------- OTP API

def test_child_api(loop, forkserver):
    sup = start_link(loop, SupFlags(), [ChildSpec("a", SLEEP, shutdown="brutal_kill")],
                     forkserver=forkserver)
    pb = sup.start_child(ChildSpec("b", SLEEP, shutdown="brutal_kill"))
    assert [c.id for c in sup.which_children()] == ["a", "b"]
    with pytest.raises(S.ChildAlreadyStarted):
        sup.start_child(ChildSpec("b", SLEEP))
    with pytest.raises(S.Running):
        sup.delete_child("b")
    with pytest.raises(S.Running):
        sup.restart_child("b")
    sup.terminate_child("b")
    assert gone(pb) and pids(sup)["b"] is None
    with pytest.raises(S.AlreadyPresent):
        sup.start_child(ChildSpec("b", SLEEP))
    pb2 = sup.restart_child("b")
    assert pb2 not in (None, pb)
    sup.terminate_child("b")
    sup.delete_child("b")
    with pytest.raises(S.NotFound):
        sup.delete_child("b")
    with pytest.raises(S.NotFound):
        sup.terminate_child("zz")
    sup.start_child(ChildSpec("t", SLEEP, restart="temporary", shutdown="brutal_kill"))
    sup.terminate_child("t")  # temporary: the spec goes too
    assert [c.id for c in sup.which_children()] == ["a"]
    assert sup.count_children() == {"specs": 1, "active": 1, "supervisors": 0, "workers": 1}
    with pytest.raises(S.InvalidRestartType):
        sup.start_child(ChildSpec("bad", SLEEP, restart="never"))  # type: ignore[arg-type]
    sup.shutdown()


def test_failed_start_stops_the_started_ones(loop, forkserver):
    specs = [ChildSpec("a", SLEEP, shutdown="brutal_kill"),
             ChildSpec("b", Fork(T + "sleeper", (lambda: 0,)))]  # unpicklable: spawn fails
    sup = Supervisor(loop, SupFlags(), specs, forkserver=forkserver)
    with pytest.raises(StartError) as ei:
        sup.start()
    assert ei.value.value[0] == "b"
    assert [k.pid for k in psutil.Process().children()] == [forkserver.pid]


def test_child_that_cannot_run_ends_in_escalation(loop, forkserver):
    inner = Nested(SupFlags(intensity=2, period=30), (ChildSpec("x", Exec(("/nonexistent/x",))),))
    exits: list[str] = []
    sup = start_link(loop, SupFlags(intensity=0), [
        ChildSpec("a", SLEEP, shutdown="brutal_kill"),
        ChildSpec("b", inner, type="supervisor")], forkserver=forkserver, on_exit=exits.append)
    a = pids(sup)["a"]
    # exec fails in the child (exit 127), restarted until inner gives up and escalates; the
    # root (intensity 0) escalates in turn and stops a.
    assert loop.run_until(lambda: exits == ["shutdown"], 10)
    assert gone(a)
    assert [k.pid for k in psutil.Process().children()] == [forkserver.pid]


def test_exec_and_cold_fork_children(loop):
    specs = [ChildSpec("e", Exec((sys.executable, "-c", "import signal; signal.pause()")),
                       shutdown=2000),
             ChildSpec("f", Fork(T + "exit_with", (7,)), restart="transient")]
    exits: list[str] = []
    sup = start_link(loop, SupFlags(intensity=0), specs, on_exit=exits.append)
    e = pids(sup)["e"]
    assert loop.run_until(lambda: exits == ["shutdown"], 10)  # exit:7 is abnormal: escalate
    assert gone(e)


def test_no_zombies_after_restarts(loop, forkserver):
    sup = three("one_for_all", forkserver, loop)
    for _ in range(3):
        before = pids(sup)
        kill(before["a"])
        assert loop.run_until(lambda b=before: all(pids(sup)[k] not in (None, b[k]) for k in "abc"),
                              5)
    kids = psutil.Process().children(recursive=True)
    assert not [k for k in kids if k.status() == psutil.STATUS_ZOMBIE]
    sup.shutdown()
    assert [k.pid for k in psutil.Process().children()] == [forkserver.pid]


def test_kill_9_of_the_supervising_process_leaves_no_orphan(tmp_path: Path, cleanup):
    script = tmp_path / "host.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {REPO!r})\n"
        "from supervisor import *\n"
        "loop = Loop(reap_all=True)\n"
        "fs = ForkServer(preload=['tests.supervisor.children']); fs.start()\n"
        "inner = Nested(SupFlags(), (ChildSpec('w', Fork('tests.supervisor.children:sleeper')),))\n"
        "sup = start_link(loop, SupFlags(), ["
        "ChildSpec('a', Fork('tests.supervisor.children:stubborn')),"
        " ChildSpec('e', Exec(('sleep', '1000'))), ChildSpec('n', inner, type='supervisor')],"
        " forkserver=fs)\n"
        "print(' '.join(map(str, sup.pids() + [fs.pid])), flush=True)\n"
        "loop.run_forever()\n")
    env = dict(os.environ, PYTHONPATH=REPO)
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env,
                            cwd=REPO)
    assert host.stdout is not None
    line = host.stdout.readline().decode()
    kids = [int(p) for p in line.split()]
    assert len(kids) == 4
    assert all(psutil.Process(k).ppid() == host.pid for k in kids)
    host.kill()
    host.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not all(gone(k) for k in kids):
        psutil.wait_procs([psutil.Process(k) for k in kids if not gone(k)], timeout=0.1)
    assert all(gone(k) for k in kids)


def test_auto_shutdown_any_significant(loop, forkserver):
    exits: list[str] = []
    specs = [ChildSpec("other", SLEEP, shutdown="brutal_kill"),
             ChildSpec("key", Fork(T + "sleeper"), restart="transient", significant=True)]
    sup = start_link(loop, SupFlags(auto_shutdown="any_significant"), specs,
                     forkserver=forkserver, on_exit=exits.append)
    other, key = pids(sup)["other"], pids(sup)["key"]
    os.kill(key, signal.SIGKILL)  # abnormal: a transient child is restarted, no shutdown
    assert changed(loop, sup, "key", key)
    assert exits == []
    key = pids(sup)["key"]
    sup.terminate_child("key")  # an explicit terminate_child does not trigger auto_shutdown
    assert exits == [] and pids(sup)["other"] == other
    assert sup.restart_child("key") not in (None, key)
    # a normal exit of the significant transient child shuts the supervisor down
    graceful = ChildSpec("g", Fork(T + "exit_with", (0,)), restart="transient", significant=True)
    sup.start_child(graceful)
    assert loop.run_until(lambda: exits == ["shutdown"], 5)
    assert gone(other) and sup.stopped == "shutdown"


def test_exec_child_through_the_fork_server(loop, forkserver, tmp_path: Path):
    exits: list[str] = []
    specs = [ChildSpec("sh", Exec(("sh", "-c", 'test "$X" = y && exit 5'),
                                  env={"X": "y", "PATH": os.environ["PATH"]}, cwd=str(tmp_path)),
                       restart="transient")]
    sup = start_link(loop, SupFlags(intensity=0), specs, forkserver=forkserver,
                     on_exit=exits.append)
    pid = pids(sup)["sh"]
    assert pid is not None
    # exit 5 (env and cwd arrived: `test` passed) is abnormal for transient: intensity 0 gives up
    assert loop.run_until(lambda: exits == ["shutdown"], 5)
    assert gone(pid)


def test_spawn_exec_status_reaches_us(forkserver):
    proc = OsChild(forkserver.spawn_exec(["sh", "-c", "exit 5"]))
    assert proc.wait(5) == 5 and proc.reason == "exit:5"
    proc = OsChild(forkserver.spawn_exec(["sleep", "100"]))
    assert psutil.Process(proc.pid).ppid() == os.getpid()  # CLONE_PARENT: our child
    assert proc.shutdown(2000) == "shutdown"
    proc = OsChild(forkserver.spawn_exec(["/nonexistent/prog"]))
    assert proc.wait(5) == 127
