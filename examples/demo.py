"""``make demo``: ra for Python on real processes, in under a minute.

Starts three node daemons in a temporary directory, starts a replicated key-value cluster
(:mod:`examples.kv`, a snapshot every 50 commands) on them, writes and reads consistently,
SIGKILLs the leader's node (the daemon and its whole process tree, as a machine crash would),
measures the failover, restarts the node and watches its server catch up, adds a member on a
fourth node and removes it again, prints the ``ra overview`` table of a node, stops everything
and checks with psutil that no process of the run is left.

Every figure printed is measured in this run. ``--workdir DIR`` runs in ``DIR`` (kept) instead of
a temporary directory.

Run: ``make demo`` or ``python -m examples.demo``. (``make demo-sim`` runs the simulated
5-member timeline of :mod:`ra.testing.demo`.)
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import psutil

import ra
from examples import kv
from examples._nodes import LocalNodes, wait_for
from ra.client.cli import format_overview

__all__ = ["run", "main"]

NAME = "kv"
T = 15.0            # seconds: generous, for a loaded machine (the demo measures, not asserts)
SIZE = "examples.kv:size"


class _Clock:
    """Elapsed time since the start of the demo, as a line prefix."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.t0 = time.monotonic()
        self.out = out

    def say(self, text: str) -> None:
        self.out(f"[{time.monotonic() - self.t0:5.2f}s] {text}")


def _ms(xs: list[float]) -> str:
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return f"p50 {statistics.median(xs) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def _puts(ids: list[ra.ServerId], keys: range, timeout: float = 10.0) -> list[float]:
    lat = []
    for i in keys:
        t = time.monotonic()
        reply, _ = ra.process_command(ids, ("put", f"k{i}", i), timeout=timeout)
        lat.append(time.monotonic() - t)
        assert reply == "ok", reply
    return lat


def run(workdir: str, out: Callable[[str], None] = print, n_keys: int = 100) -> int:
    """The scripted demo in ``workdir``; returns the number of leftover processes (0)."""
    clock = _Clock(out)
    say = clock.say
    with LocalNodes(workdir) as nodes:
        def nm(sid: ra.ServerId) -> str:
            return f"{sid.name}@n{nodes.index_of(sid)}"

        # -- three daemons, one cluster -------------------------------------------------------
        t = time.monotonic()
        nodes.start_many(range(3))
        say(f"3 node daemons up in {time.monotonic() - t:.2f} s (started in parallel): "
            + ", ".join(f"n{i} {nodes.addrs[i]}" for i in range(3)))
        ids = [nodes.sid(NAME, i) for i in range(3)]
        t = time.monotonic()
        ra.start_cluster(NAME, kv.machine(snapshot_every=50), ids, timeout=30)
        members, leader = ra.members(ids, timeout=T)
        say(f"cluster '{NAME}' (examples.kv:KV, a snapshot every 50 commands) on n0, n1, n2 "
            f"in {time.monotonic() - t:.2f} s; leader {nm(leader)}")
        nodes.note_pids()

        # -- writes and consistent reads ------------------------------------------------------
        t = time.monotonic()
        lat = _puts(ids, range(n_keys))
        say(f"{n_keys} puts, one at a time, each acknowledged once applied: {_ms(lat)}, "
            f"{time.monotonic() - t:.2f} s in all")
        r1, _ = ra.process_command(ids, ("cas", "k7", 7, 700), timeout=T)
        r2, _ = ra.process_command(ids, ("cas", "k7", 7, 1), timeout=T)
        r3, _ = ra.process_command(ids, ("delete", "k8"), timeout=T)
        say(f"cas k7 7->700: {r1}; cas k7 7->1: {r2}; delete k8: {r3}")
        v, leader = ra.consistent_query(ids, ("examples.kv", "get", ["k7"]), timeout=T)
        n, _ = ra.consistent_query(ids, SIZE, timeout=T)
        say(f"consistent query on the leader {nm(leader)}: k7 = {v}, {n} keys")
        expected = n

        # -- SIGKILL the leader's node ---------------------------------------------------------
        victim = nodes.index_of(leader)
        old_leader = leader
        old_term = ra.overview(leader.node, timeout=T)["servers"][NAME]["current_term"]
        rest = [s for s in ids if s != old_leader]
        nodes.note_pids()
        t_kill = time.monotonic()
        killed = nodes.kill(victim)
        say(f"SIGKILL node n{victim} (the leader's): its daemon and {killed - 1} child processes")
        reply, new_leader = ra.process_command(rest, ("put", "after_kill", 1), timeout=30)
        failover = time.monotonic() - t_kill
        term = ra.overview(new_leader.node, timeout=T)["servers"][NAME]["current_term"]
        say(f"failover: {nm(new_leader)} leads (term {old_term} -> {term}); the first write after "
            f"the kill was committed {failover:.2f} s after it")
        expected += 1
        lat = _puts(rest, range(n_keys, n_keys + 50))
        expected += 50
        say(f"50 more puts with n{victim} down: all acknowledged by the 2 remaining members "
            f"({_ms(lat)})")

        # -- restart it and watch it catch up -------------------------------------------------
        (target, _), _, _ = ra.local_query(new_leader, SIZE, timeout=T)
        t = time.monotonic()
        nodes.start(victim)
        say(f"node n{victim} restarted on {nodes.addrs[victim]} (its address, kept in its data "
            f"dir) in {time.monotonic() - t:.2f} s; it restarts {nm(old_leader)} by itself")
        t = time.monotonic()
        wait_for(lambda: ra.local_query(old_leader, SIZE, timeout=T)[0][0] >= target, 20.0,
                 f"{nm(old_leader)} to catch up")
        caught = time.monotonic() - t
        (idx, _), n, led = ra.local_query(old_leader, SIZE, timeout=T)
        snap = ra.overview(old_leader.node, timeout=T)["servers"][NAME]["snapshot_index"]
        say(f"{nm(old_leader)} caught up {caught:.2f} s after its node's restart: applied index "
            f"{idx} (the leader's), {n} keys, following {nm(led) if led else '-'}, "
            f"snapshot at index {snap}")
        assert n == expected, (n, expected)
        nodes.note_pids()

        # -- a fourth member, added and removed ------------------------------------------------
        t = time.monotonic()
        nodes.start(3)
        say(f"node n3 started on {nodes.addrs[3]} in {time.monotonic() - t:.2f} s")
        new = nodes.sid(NAME, 3)
        (target, _), _, _ = ra.local_query(new_leader, SIZE, timeout=T)
        t = time.monotonic()
        ra.add_member(ids, new, timeout=T)
        ra.start_server({"cluster_name": NAME, "id": new, "machine": kv.machine(50),
                         "initial_members": ids + [new]}, timeout=T)
        wait_for(lambda: ra.local_query(new, SIZE, timeout=T)[0][0] >= target, 20.0,
                 f"{nm(new)} to catch up")
        caught = time.monotonic() - t
        members, leader = ra.members(ids + [new], timeout=T)
        snap = ra.overview(new.node, timeout=T)["servers"][NAME]["snapshot_index"]
        n = ra.local_query(new, SIZE, timeout=T)[1]
        say(f"add_member {nm(new)}, start_server: caught up in {caught:.2f} s ({n} keys, "
            f"snapshot at index {snap}); members: "
            + ", ".join(nm(m) for m in sorted(members, key=nm)))
        nodes.note_pids()
        t = time.monotonic()
        ra.leave_and_delete_server(ids, new, timeout=T)
        members, leader = ra.members(ids, timeout=T)
        say(f"leave_and_delete_server {nm(new)} in {time.monotonic() - t:.2f} s; members: "
            f"{', '.join(nm(m) for m in sorted(members, key=nm))}; leader {nm(leader)}")
        r, _ = ra.process_command(ids, ("put", "last", 1), timeout=T)
        expected += 1
        n, _ = ra.consistent_query(ids, SIZE, timeout=T)
        say(f"one more put: {r}; consistent query: {n} keys (expected {expected})")

        # -- the overview, then stop everything -----------------------------------------------
        say(f"ra overview {nodes.addrs[nodes.index_of(leader)]}  (the leader's node):")
        for line in format_overview(ra.overview(leader.node, timeout=T)).splitlines():
            out(("    " + line).rstrip())
        nodes.note_pids()
        t = time.monotonic()
        running = len(nodes.procs)
        nodes.stop_all()
        say(f"stopped {running} node daemons (orderly shutdown) in {time.monotonic() - t:.2f} s")
        nodes.close()
        left = nodes.leftovers()
        children = psutil.Process().children(recursive=True)
        say(f"psutil: processes of this run still alive: {len(left)} (of {len(nodes.seen)} "
            f"seen); children of this process: {len(children)}")
        return len(left) + len(children)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m examples.demo [--workdir DIR] [--keys N]``."""
    # a reply arriving after its call gave up (the dead leader's redirects) is expected here
    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(prog="python -m examples.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", help="run in DIR (kept) instead of a temporary directory")
    ap.add_argument("--keys", type=int, default=100, help="keys written before the kill")
    a = ap.parse_args(argv)
    print("ra demo: 3 node daemons, a replicated key-value store, the leader's node SIGKILLed")
    t0 = time.monotonic()
    if a.workdir:
        print(f"work dir {a.workdir}")
        left = run(a.workdir, n_keys=a.keys)
    else:
        with tempfile.TemporaryDirectory(prefix="ra-demo-") as tmp:
            print(f"work dir {tmp} (removed at the end)")
            left = run(tmp, n_keys=a.keys)
    print(f"done in {time.monotonic() - t0:.1f} s" + ("" if not left else
                                                      f"; {left} PROCESSES LEFT BEHIND"))
    return 0 if left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
