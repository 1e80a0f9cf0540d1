"""A seeded simulation of one node's WAL and the processes that write to it.

The WAL's batching rule (:func:`wal.batch.plan_batch`) and ra's overwrite rule
(:func:`wal.format.resolve`) run for real; the writers are a model of ``ra.log.DiskLog``'s WAL
client (append, overwrite a tail with a higher term, flush what is unsent, confirm on
``WalWritten`` only if the term still matches, resend on ``WalResendWrite``/``WalStarted`` or a
stall). What the world may do, each step chosen by the seed:

* a writer process dies (SIGKILL) and restarts from what is on disk; what it sent stays
  queued on its connection, unread (a socket's buffered data outlives its sender);
* a writer drops its connection and reconnects (the old one still holds unread data);
* the WAL reads its connections in any order (in order within one connection);
* the WAL dies before syncing a batch (that batch and every queued message are lost) and
  restarts, telling the live writers to resend.

Invariant, checked after every step: each entry a live writer holds as confirmed
(``written``) is on disk with the writer's term. At the end the incremental disk view is
checked against :func:`wal.format.resolve` of every synced record.

Replay a seed: ``python -m tests.wal.sim --seed N [--steps S]``; ``run(seed, plan=...)`` takes
another ``plan_batch`` (a mutant of it, in the tests)."""
from __future__ import annotations

import argparse
import random
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ra.testing.mutants import edited_module
from wal.batch import Append, WriterState, fence, plan_batch
from wal.format import encode_header, resolve, scan

Plan = Callable[[list[Append], dict[bytes, WriterState], bool], Any]
Fence = Callable[[dict[bytes, WriterState], bytes, int], None]


class Violation(AssertionError):
    """A confirmed entry is missing from disk or has another term there."""


@dataclass
class Writer:
    """One process of a writer (uid): its log is a list of terms (index i at ``log[i - 1]``)."""

    uid: bytes
    inc: int                        # incarnation: the address notices go to
    log: list[int]
    written: int
    conn: int
    seq: int                        # the last request's (consecutive within a process)
    unsent_from: int | None = None

    def last(self) -> int:
        return len(self.log)

    def on_written(self, term: int, to: int) -> None:
        # DiskLog.handle_written: only forward, only if the entry still has that term
        if to <= self.written or to > self.last() or self.log[to - 1] != term:
            return
        self.written = to

    def resend_from(self, frm: int) -> None:
        if frm <= self.last() and (self.unsent_from is None or frm < self.unsent_from):
            self.unsent_from = frm


@dataclass
class World:
    rng: random.Random
    plan: Plan
    fence: Fence
    writers: dict[bytes, Writer] = field(default_factory=dict)
    terms: dict[bytes, int] = field(default_factory=dict)       # a writer's durable term
    conns: dict[int, tuple[bytes, deque[Append]]] = field(default_factory=dict)
    notices: dict[tuple[int, int], deque[Any]] = field(default_factory=dict)
    wal_inc: int = 0
    wal_state: dict[bytes, WriterState] = field(default_factory=dict)
    synced: list[tuple[bytes, int, int, bytes]] = field(default_factory=list)
    disk: dict[bytes, list[int]] = field(default_factory=dict)   # resolve(synced), kept up
    clock: int = 0                  # CLOCK_MONOTONIC of the host: where a process's seq starts
    next_id: int = 0
    trace: list[str] = field(default_factory=list)

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- writers ---------------------------------------------------------------------------
    def start_writer(self, uid: bytes) -> None:
        """A writer process (re)starts: it fences the WAL (a call: served before anything it
        reads), then its log is what the disk holds, all of it confirmed."""
        self.clock += 1_000_000             # a process's count starts at the host's clock
        self.fence(self.wal_state, uid, self.clock)
        log = list(self.disk.get(uid, []))
        w = Writer(uid, self._id(), log, len(log), self._id(), self.clock)
        self.conns[w.conn] = (uid, deque())
        self.writers[uid] = w
        self.trace.append(f"start {uid.decode()} inc={w.inc} last={len(log)}")

    def append(self, w: Writer, k: int) -> None:
        t = self.terms.setdefault(w.uid, 1)
        frm = w.last() + 1
        w.log += [t] * k
        w.resend_from(frm)

    def overwrite(self, w: Writer, frm: int, k: int) -> None:
        """A follower's log takes a new leader's entries from ``frm``: its tail is replaced."""
        self.terms[w.uid] = t = self.terms.get(w.uid, 1) + 1
        del w.log[frm - 1:]
        w.log += [t] * k
        if w.written >= frm:
            w.written = frm - 1
        if w.unsent_from is None or frm < w.unsent_from:
            w.unsent_from = frm
        self.trace.append(f"overwrite {w.uid.decode()} {frm}..{frm + k - 1} t={t}")

    def flush(self, w: Writer) -> None:
        if w.unsent_from is None:
            return
        frm = w.unsent_from
        w.unsent_from = None
        if frm > w.last():
            return
        w.seq += 1
        entries = [(i, w.log[i - 1], b"") for i in range(frm, w.last() + 1)]
        self.conns[w.conn][1].append(Append(w.uid, w.inc, w.written, entries, w.seq))

    def deliver_notice(self) -> bool:
        live = {w.inc: w for w in self.writers.values()}
        keys = [k for k, q in self.notices.items() if q and k[0] in live]
        if not keys:
            return False
        q = self.notices[self.rng.choice(keys)]
        w = live[q[0][0]]
        kind, arg = q.popleft()[1:]
        if kind == "written":
            for term, _frm, to in arg:
                w.on_written(term, to)
        else:                       # resend, or the WAL restarted
            w.resend_from(arg if kind == "resend" else w.written + 1)
        return True

    # -- the WAL ---------------------------------------------------------------------------
    def wal_batch(self, crash: bool) -> None:
        ready = [c for c, (_, q) in self.conns.items() if q]
        if not ready:
            return
        reqs = []
        for _ in range(self.rng.randint(1, 6)):
            ready = [c for c, (_, q) in self.conns.items() if q]
            if not ready:
                break
            reqs.append(self.conns[self.rng.choice(ready)][1].popleft())
        plan = self.plan(reqs, self.wal_state, False)
        if crash:
            self.wal_restart()
            return
        recs = scan(encode_header(False) + plan.buffer).records if plan.buffer else []
        for uid, idx, term, payload in recs:
            self.synced.append((uid, idx, term, payload))
            lst = self.disk.setdefault(uid, [])
            if idx <= len(lst) + 1:
                del lst[idx - 1:]
                lst.append(term)
            else:                   # resolve's forward jump: the run restarts there
                self.disk[uid] = [0] * (idx - 1) + [term]
        for (addr, uid), ranges in plan.written.items():
            self._notify(addr, "written", ranges)
        for addr, uid, frm in plan.resends:
            self._notify(addr, "resend", frm)

    def _notify(self, addr: int, kind: str, arg: Any) -> None:
        self.notices.setdefault((addr, self.wal_inc), deque()).append((addr, kind, arg))

    def wal_restart(self) -> None:
        """The WAL dies: its unsynced batch and every connection to it are gone."""
        self.wal_inc += 1
        self.wal_state = {}
        for c in list(self.conns):
            self.conns[c][1].clear()
        for w in self.writers.values():
            self._notify(w.inc, "started", None)
        self.trace.append(f"wal restart {self.wal_inc}")

    # -- the invariant ---------------------------------------------------------------------
    def check(self) -> None:
        for w in self.writers.values():
            disk = self.disk.get(w.uid, [])
            if w.written > len(disk) or disk[:w.written] != w.log[:w.written]:
                raise Violation(f"{w.uid.decode()} (inc {w.inc}) holds 1..{w.written} "
                                f"confirmed but the disk has {len(disk)} entries, first "
                                f"difference at {_first_diff(disk, w.log[:w.written])}")

    def check_resolve(self) -> None:
        got = {u: {i: t for i, t, _ in es} for u, es in resolve(self.synced).items()}
        mine = {u: {i: t for i, t in enumerate(ts, 1) if t} for u, ts in self.disk.items()
                if ts}
        if got != mine:
            raise Violation(f"incremental disk view differs from resolve(): {got} != {mine}")


def _first_diff(a: list[int], b: list[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i + 1
    return min(len(a), len(b)) + 1


def run(seed: int, steps: int = 300, plan: Plan = plan_batch, fence: Fence = fence,
        uids: int = 2) -> World:
    """Run one seeded scenario; raises :class:`Violation` (with the seed) if the invariant
    breaks. Returns the world (its ``trace`` says what happened)."""
    rng = random.Random(seed)
    world = World(rng, plan, fence)
    for k in range(uids):
        world.start_writer(b"w%d" % k)
    for step in range(steps):
        w = world.writers[rng.choice(sorted(world.writers))]
        r = rng.random()
        if r < 0.30:
            world.append(w, rng.randint(1, 4))
        elif r < 0.38 and w.last() > 0:
            frm = rng.randint(max(1, w.last() - 5), w.last())
            world.overwrite(w, frm, rng.randint(1, 4))
        elif r < 0.55:
            world.flush(w)
        elif r < 0.60:
            w.resend_from(w.written + 1)        # confirmations stalled
            world.flush(w)
        elif r < 0.64:
            w.conn = world._id()                # the connection dropped; the old one's data stays
            world.conns[w.conn] = (w.uid, deque())
        elif r < 0.68:
            world.start_writer(w.uid)           # SIGKILL and restart from disk
        elif r < 0.90:
            world.wal_batch(crash=rng.random() < 0.04)
        else:
            world.deliver_notice()
        try:
            world.check()
        except Violation as exc:
            raise Violation(f"seed {seed}, step {step}: {exc}\n  last events: "
                            f"{world.trace[-8:]}") from None
    world.check_resolve()
    return world


def mutated(old: str, new: str) -> tuple[Plan, Fence]:
    """``plan_batch`` and ``fence`` from wal/batch.py's source with ``old`` (which must occur
    exactly once) replaced by ``new``: a planted bug for the simulation to catch, compiled as
    the core's mutants are (:func:`ra.testing.mutants.edited_module`)."""
    import wal.batch as real
    assert real.__file__ is not None
    with open(real.__file__) as f:
        src = f.read()
    if src.count(old) != 1:
        raise ValueError(f"the mutant's snippet occurs {src.count(old)} times in "
                         f"{real.__file__}: {old!r}")
    mod = edited_module("wal.batch", src.replace(old, new))
    return mod.plan_batch, mod.fence


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args(argv)
    try:
        world = run(a.seed, a.steps)
    except Violation as exc:
        print(exc)
        return 1
    print("\n".join(world.trace))
    print(f"seed {a.seed}: ok, {len(world.synced)} records synced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
