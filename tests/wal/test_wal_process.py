"""The WAL as a real process: 10 writer processes append while the WAL is SIGKILLed at random
moments (seeded); after restarts every confirmed entry is present and intact."""
from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import threading
import time
from typing import Any

import pytest

from ra.log import DiskLog
from tests.wal.procs import Procs, wait_for, wait_written, wal_overview
from transport import Mailbox
import wal as walpkg
from wal.messages import WalAppend, WalWritten
from wal.wal import Wal

PAD = b"p" * 64


def _progress(path: str) -> int:
    try:
        with open(path, "rb") as f:
            lines = f.read().split()
        return int(lines[-1]) if lines else 0
    except FileNotFoundError:
        return 0


def _verify(data: str, reports: dict[str, dict[str, Any]]) -> None:
    # a last recovery flushes every WAL file into segments, then each log is read from disk
    w = Wal(os.path.join(data, "wal"), data, lambda a, m: None)
    w.recover()
    w.close()
    for uid, rep in reports.items():
        lg = DiskLog(uid, data)
        lw = rep["last_written"]
        terms = {int(k): v for k, v in rep["terms"].items()}
        last = lg.last_index_term()[0]
        assert last >= lw, (uid, lg.overview(), "writer's terms near the end:",
                            [(i, terms.get(i)) for i in range(max(1, lw - 20), lw + 1)],
                            "on disk:", [(i, t) for i, t, _ in lg.take(max(1, last - 20), 21)])
        got = lg.take(1, lg.last_index_term()[0])
        assert len(got) == lg.last_index_term()[0], uid
        for i, t, cmd in got:
            # every entry returned is intact (nothing torn or made up) ...
            assert cmd == (uid, i, t, PAD), (uid, i)
            # ... and every confirmed one is exactly the writer's final log
            if i <= lw:
                assert t == terms[i], (uid, i, t, terms[i])
        lg.close()


def run_kill_scenario(tmp: str, procs: Procs, seed: int, writers: int = 10, n: int = 300,
                      kills: int = 3, kill_writers: bool = False) -> None:
    rng = random.Random(seed)
    data = os.path.join(tmp, "data")
    os.makedirs(data, exist_ok=True)
    wal_ep = f"ipc://{tmp}/wal.sock"
    sw_ep = f"ipc://{tmp}/sw.sock"
    wal_args = ["-m", "wal.wal", "--wal-dir", os.path.join(data, "wal"), "--data-dir", data,
                "--endpoint", wal_ep, "--segment-writer", sw_ep,
                "--max-size-bytes", str(rng.choice([16_000, 64_000, 1 << 20])),
                "--segment-max-entries", "64"]
    sw_args = ["-m", "wal.segment_writer", "--wal-dir", os.path.join(data, "wal"),
               "--data-dir", data, "--segment-max-entries", "64", "--endpoint", sw_ep]
    log = os.path.join(tmp, "procs.log")
    mb = Mailbox(None)
    try:
        wal = procs.spawn(*wal_args, log=log)
        wait_for(lambda: wal_overview(mb, wal_ep), 20, "WAL ready")
        sw = procs.spawn(*sw_args, log=log)
        reports = {f"w{i}": os.path.join(tmp, f"w{i}.json") for i in range(writers)}
        def writer(i: int, uid: str, rep: str) -> Any:
            return procs.spawn("-m", "tests.wal.writer_proc", "--wal", wal_ep, "--uid", uid,
                               "--data-dir", data, "--n", str(n), "--seed", str(seed * 100 + i),
                               "--report", rep, "--deadline", "90", log=log)
        ws = [writer(i, uid, rep) for i, (uid, rep) in enumerate(reports.items())]
        total = writers * n
        recovered: list[int] = []
        points = sorted(rng.uniform(0.05, 0.9) * total for _ in range(kills))
        for pt in points:
            def reached() -> bool:
                done = sum(_progress(r + ".progress") for r in reports.values())
                return done >= pt or all(p.poll() is not None for p in ws)
            try:
                wait_for(reached, 60, f"{pt:.0f} confirmed entries")
            except AssertionError:
                prog = {u: _progress(r + ".progress") for u, r in reports.items()}
                raise AssertionError(f"stalled: progress {prog}, writers "
                                     f"{[p.poll() for p in ws]}, wal {wal_overview(mb, wal_ep)}")
            procs.kill(wal, signal.SIGKILL)       # the WAL dies ...
            procs.kill(sw, signal.SIGKILL)        # ... rest_for_one takes the writer down too
            wal = procs.spawn(*wal_args, log=log)
            try:
                ov = wait_for(lambda: wal_overview(mb, wal_ep), 30, "WAL ready after restart")
            except AssertionError:
                tail = b""
                if log and os.path.exists(log):
                    with open(log, "rb") as f:
                        tail = f.read()[-3000:]
                raise AssertionError(f"the restarted WAL is not ready after 30 s: exit code "
                                     f"{wal.poll()}, its log ends {tail!r}") from None
            recovered.append(ov["recovered_entries"])
            sw = procs.spawn(*sw_args, log=log)
            if kill_writers:                      # a server dies alone and restarts from disk
                k = rng.randrange(writers)
                uid, rep = list(reports.items())[k]
                if ws[k].poll() is None:
                    procs.kill(ws[k], signal.SIGKILL)
                    confirmed = _progress(rep + ".progress")
                    # a writer killed while still starting has no start file yet
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(rep + ".start")
                    ws[k] = writer(k, uid, rep)
                    wait_for(lambda: os.path.exists(rep + ".start"), 30, "writer restart")
                    with open(rep + ".start") as f:
                        st = json.load(f)
                    assert st["pid"] == ws[k].pid, (uid, st)    # this incarnation's report
                    # every entry confirmed before the kill is in the recovered log
                    assert st["last"] >= confirmed, (uid, st, confirmed)
        for p in ws:
            p.wait(90)
        rcs = [p.returncode for p in ws]
        assert rcs == [0] * writers, rcs
        procs.kill(wal, signal.SIGTERM)
        procs.kill(sw, signal.SIGTERM)
        reps = {}
        for uid, path in reports.items():
            with open(path) as f:
                reps[uid] = json.load(f)
            # the writer stops once it has n entries and all are confirmed (an overwrite near
            # the end may leave a few more than n)
            assert reps[uid]["last_written"] == reps[uid]["last"] >= n
        _verify(data, reps)
        # the kills landed while data was in flight: restarts had WAL files to recover
        assert sum(recovered) > 0, recovered
        print("recovered per restart", recovered)
    finally:
        mb.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sigkill_wal_with_10_writers(tmp_path: Any, procs: Procs, seed: int) -> None:
    run_kill_scenario(str(tmp_path), procs, seed)


def test_sigkill_wal_and_writers(tmp_path: Any, procs: Procs) -> None:
    """Also SIGKILL single writer processes (a server restarting alone while the WAL runs):
    its log is recovered from segments + the live WAL files, nothing confirmed is missing."""
    run_kill_scenario(str(tmp_path), procs, 7, kills=3, kill_writers=True)


def test_a_dead_writers_unread_append_never_lands_under_its_successor(
        tmp_path: Any, procs: Procs) -> None:
    """Writer process A overwrites 5..6 and dies while the WAL is stopped (SIGSTOP): its append
    waits unread. Its successor B opens the log: the fence call (answered once the WAL runs
    again) makes A's append stale, so the disk keeps exactly the log B recovered. Without the
    fence the WAL would write it after B had read 1..10 in term 1."""
    tmp = str(tmp_path)
    wal, data, ep = procs.spawn_wal(tmp)
    mb_a, mb_b = Mailbox(None), Mailbox(None)
    try:
        # both connections are open before the WAL stops: it finds both readable at once
        wait_for(lambda: wal_overview(mb_a, ep) and wal_overview(mb_b, ep), 20, "WAL ready")

        def opened(mb: Any) -> DiskLog:
            return DiskLog("u", data, send=lambda m: mb.cast(ep, m),
                           fence=lambda seq: walpkg.fence(mb, ep, "u", seq, 20))

        a = opened(mb_a)
        for i in range(1, 11):
            a.append((i, 1, ("u", i, 1)))
        a.flush()
        wait_written(mb_a, a, 10, 10, "1..10 confirmed to A")
        os.kill(wal.pid, signal.SIGSTOP)
        resume = threading.Timer(0.5, os.kill, (wal.pid, signal.SIGCONT))
        try:
            a.write([(5, 2, ("u", 5, 2)), (6, 2, ("u", 6, 2))])   # A's last words ...
            a.flush()                                            # ... then A is gone
            resume.start()
            b = opened(mb_b)          # its fence is answered once the WAL runs again
        finally:
            resume.cancel()
            os.kill(wal.pid, signal.SIGCONT)
        recovered = [(i, t) for i, t, _ in b.take(1, 10)]
        assert recovered == [(i, 1) for i in range(1, 11)]
        ov = wait_for(lambda: (o := wal_overview(mb_b, ep)) and o["stale_appends"] == 1 and o,
                      10, "A's append counted stale")
        assert ov["entries"] == 10, ov
        procs.kill(wal, signal.SIGTERM)
        w = Wal(os.path.join(data, "wal"), data, lambda a, m: None)
        w.recover()
        w.close()
        c = DiskLog("u", data)
        assert [(i, t) for i, t, _ in c.take(1, 10)] == recovered
        assert c.last_index_term() == (10, 1)
        c.close()
    finally:
        mb_a.close()
        mb_b.close()


def test_fence_waits_for_a_late_wal_and_says_so_when_there_is_none(
        tmp_path: Any, procs: Procs) -> None:
    tmp = str(tmp_path)
    data = os.path.join(tmp, "data")
    ep = f"ipc://{tmp}/wal.sock"
    mb = Mailbox(None)
    try:
        with pytest.raises(RuntimeError, match="did not answer WalFence for 'u' within 1 s"):
            walpkg.fence(mb, ep, "u", 1, timeout=1.0)
        late = threading.Timer(0.5, procs.spawn, ("-m", "wal.wal", "--wal-dir",
                                                  os.path.join(data, "wal"), "--data-dir", data,
                                                  "--endpoint", ep))
        late.start()
        try:
            walpkg.fence(mb, ep, "u", 2, timeout=30.0)    # returns once the WAL answers
        finally:
            late.join()
        assert wal_overview(mb, ep)["writers"] == 1
    finally:
        mb.close()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("RA_SOAK"), reason="soak only (make soak / RA_SOAK=1)")
@pytest.mark.parametrize("seed", range(4, 24))
def test_sigkill_wal_with_10_writers_many_seeds(tmp_path: Any, procs: Procs, seed: int) -> None:
    run_kill_scenario(str(tmp_path), procs, seed, n=600, kills=5, kill_writers=seed % 2 == 0)


@pytest.mark.parametrize("fault", ["fdatasync:EIO:3", "write:ENOSPC:3"])
def test_fault_reported_then_restart_carries_on(tmp_path: Any, procs: Procs, fault: str) -> None:
    """A real WAL process hits EIO/ENOSPC (injected at the OS seam): it stops confirming,
    reports the error in its overview and to writers, exits 1; restarted (as its supervisor
    would), the writers carry on and no confirmed entry is lost."""
    tmp = str(tmp_path)
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    ep = f"ipc://{tmp}/wal.sock"
    args = ["-m", "wal.wal", "--wal-dir", os.path.join(data, "wal"), "--data-dir", data,
            "--endpoint", ep]
    log = os.path.join(tmp, "procs.log")
    mb = Mailbox(None)
    try:
        wal = procs.spawn(*args, "--inject-fault", fault, "--error-exit-after", "3", log=log)
        wait_for(lambda: wal_overview(mb, ep), 20, "WAL ready")
        reports = {f"w{i}": os.path.join(tmp, f"w{i}.json") for i in range(3)}
        ws = [procs.spawn("-m", "tests.wal.writer_proc", "--wal", ep, "--uid", uid,
                          "--data-dir", data, "--n", "400", "--seed", str(i), "--report", rep,
                          "--deadline", "60", log=log)
              for i, (uid, rep) in enumerate(reports.items())]
        ov = wait_for(lambda: (o := wal_overview(mb, ep)) and o["failed"] and o, 30,
                      "WAL to report the fault")
        assert fault.split(":")[1] in ov["error"] or "Errno" in ov["error"]
        confirmed_at_fault = {u: _progress(r + ".progress") for u, r in reports.items()}
        assert wal.wait(20) == 1                  # exits 1 so that its supervisor restarts it
        with open(log) as f:                      # and said why, in its log
            text = f.read()
        assert "no more confirmations from this WAL" in text and "exiting after the failure" \
            in text, text[-2000:]
        wal = procs.spawn(*args, log=log)
        wait_for(lambda: wal_overview(mb, ep), 20, "WAL ready after restart")
        for p in ws:
            assert p.wait(60) == 0
        procs.kill(wal, signal.SIGTERM)
        reps = {}
        for uid, path in reports.items():
            with open(path) as f:
                reps[uid] = json.load(f)
            assert reps[uid]["last_written"] >= confirmed_at_fault[uid]
        assert any(r["saw_wal_error"] for r in reps.values())   # writers were told
        _verify(data, reps)
    finally:
        mb.close()


def test_client_calls_roll_over_overview_forget(tmp_path: Any, procs: Procs) -> None:
    import wal as walpkg
    tmp = str(tmp_path)
    _, data, ep = procs.spawn_wal(tmp)
    mb = Mailbox(None)
    try:
        wait_for(lambda: wal_overview(mb, ep), 20, "WAL ready")
        lg = DiskLog("u1", data, send=lambda m: mb.cast(ep, m))
        lg.append((1, 1, "a"))
        lg.flush()
        wait_written(mb, lg, 1, 10, "confirmation")
        assert lg.last_written() == (1, 1)
        seq = walpkg.overview(mb, ep)["seq"]
        assert walpkg.force_roll_over(mb, ep) == "ok"
        ov = walpkg.overview(mb, ep)
        assert ov["seq"] == seq + 1 and ov["roll_overs"] == 1 and ov["writers"] == 1
        assert walpkg.forget_writer(mb, ep, "u1") == "ok"
        assert walpkg.overview(mb, ep)["writers"] == 0
        lg.close()
    finally:
        mb.close()


def test_a_held_notice_leaves_with_the_next_batch_or_at_its_deadline(
        tmp_path: Any, procs: Procs) -> None:
    """A real WAL process with ``--notice-defer-ms 400``: the reply a write carries reaches
    its address at the sync; the writer's notice does not come with it, but with the next
    batch (first, then that batch's own), or 400 ms after the sync when no batch comes."""
    tmp = str(tmp_path)
    _, data, ep = procs.spawn_wal(tmp, "--notice-defer-ms", "400")
    leader_ep = f"ipc://{tmp}/leader.sock"
    mb, leader = Mailbox(f"ipc://{tmp}/writer.sock"), Mailbox(leader_ep)
    try:
        wait_for(lambda: wal_overview(mb, ep), 20, "WAL ready")
        lg = DiskLog("u1", data, send=lambda m: mb.cast(ep, m))

        def write(i: int, reply: bool) -> None:
            lg.append((i, 1, ("u1", i)))
            if reply:
                lg.attach_reply(i, 1, [leader_ep, mb.pack_cast(leader_ep, ("ack", i)), b""])
            lg.flush()

        def notices(until: float, n: int) -> list[Any]:
            out = []
            while len(out) < n and (env := mb.recv(max(0.0, until - time.monotonic()))):
                out.append(env.payload)
            return out

        write(1, True)
        env = leader.recv(10)
        assert env is not None and env.payload == ("ack", 1)
        assert notices(time.monotonic() + 0.2, 1) == []          # held
        write(2, False)
        got = notices(time.monotonic() + 10, 2)
        assert [(type(m), m.ranges, m.replied) for m in got] == [
            (WalWritten, [[1, 1, 1]], 1), (WalWritten, [[1, 2, 2]], 0)]
        write(3, True)
        env = leader.recv(10)
        t0 = time.monotonic()
        assert env is not None and env.payload == ("ack", 3)
        got = notices(t0 + 10, 1)
        waited = time.monotonic() - t0
        assert [(m.ranges, m.replied) for m in got] == [([[1, 3, 3]], 3)]
        assert 0.3 <= waited < 5, waited
    finally:
        mb.close()
        leader.close()


def test_malformed_appends_are_dropped_not_fatal(tmp_path: Any, procs: Procs) -> None:
    tmp = str(tmp_path)
    _, data, ep = procs.spawn_wal(tmp)
    mb = Mailbox(None)
    try:
        wait_for(lambda: wal_overview(mb, ep), 20, "WAL ready")
        for bad in [WalAppend("../evil", 0, [[1, 1, b"x"]], 1),
                    WalAppend("u", 0, [[1, 1, b"x"], [3, 1, b"y"]], 2),
                    WalAppend("u", 0, [[1, 1, "str"]], 3), ("append", "u"),
                    WalAppend("u", 0, [], 4), 5]:
            mb.cast(ep, bad)
        mb.cast(ep, WalAppend("u", 0, [[1, 1, b"ok"]], 5))
        env = wait_for(lambda: mb.recv(0.1), 10, "written notice")
        assert env.payload == WalWritten("u", [[1, 1, 1]])
        ov = wal_overview(mb, ep)
        assert ov["dropped_bad_messages"] == 6 and not ov["failed"]
        assert ov["dropped"] == {"bad_field:WalAppend.uid": 1, "bad_field:WalAppend.entries": 3,
                                 "unknown_message": 2}
        assert not os.path.exists(os.path.join(tmp, "evil"))
    finally:
        mb.close()
