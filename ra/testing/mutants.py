"""Test-side mutants of the Raft core and the mutation run. No ra equivalent.

A *mutant* is a textual edit ``(name, old, new)`` of the source of ``ra/core/server.py`` (with
further edits in ``also`` for a bug that lives in two places) that breaks one of its safety
rules. Nothing in the core knows about mutants: the edited source is compiled into a fresh
module object under the real module name (``ra.core.server``, with the real file name, so
tracebacks point at the right lines) and swapped into the simulator (``ra.testing.sim.server``)
for the run; the real module is never touched. They are also the simulator's planted core bugs:
``SimCluster(bugs={name})`` and ``python -m ra.testing.sim --bug NAME`` run the core with those
mutants applied (the core itself has no bug switches).

Contract:

* ``mutated_source(m)`` raises ``MutantError`` naming the mutant unless each of its snippets
  (``m.old`` and those of ``m.also``) occurs in the source exactly once: code moves, and a
  mutant whose edit no longer applies must fail loudly, never be skipped (a mutant that runs
  the unmodified core would look "survived" or, worse, "caught" by an unrelated failure).
* ``load(m, ...)`` returns the module with the given mutants (or mutant names) applied;
  ``patched(m)`` is a context manager that runs the simulator on it (in-process; tests use it).
* The mutation run (``python -m ra.testing.mutants``, ``make mutants``, and the soak test
  ``tests/mutation/test_mutants.py``) runs each mutant in its own fresh interpreter over seeds
  ``0 .. N-1`` of the default scenario rotation (``scenario_for_seed``: exactly what ``make test``
  runs for N = its seed count), records every seed that fails and which check failed, prints a
  score table and writes it as JSON. The real core runs first over the same seeds; a seed it
  fails too proves nothing about a mutant and is skipped for all of them. A mutant counts as
  caught if any other seed fails, whatever the check (``make test`` would fail); the table says
  which checks did. The exit status is 1 if a snippet is missing or a mutant survives.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from collections.abc import Iterator

__all__ = ["Mutant", "MUTANTS", "MutantError", "mutant", "mutated_source", "load", "patched",
           "run_mutant", "main", "edited_module"]

SERVER_MODULE = "ra.core.server"
REAL = "(real core)"          # the baseline run's name
NOT_SAFETY = ("liveness", "exception")


class MutantError(RuntimeError):
    """A mutant's edit does not apply to the current source (the message names the mutant)."""


@dataclass(frozen=True, slots=True)
class Mutant:
    name: str
    old: str          # occurs exactly once in ra/core/server.py
    new: str
    why: str          # the safety rule it breaks
    also: tuple[tuple[str, str], ...] = ()     # further (old, new) edits, each as ``old``


MUTANTS: tuple[Mutant, ...] = (
    # -- membership and snapshots: the two that a plain `make test` barely caught ----------------
    Mutant("membership_while_uncommitted",
           "if not (s.noop_committed and s.commit_index >= s.cluster_index_term[0]):",
           "if not s.noop_committed:",
           "a membership change is accepted while the previous one is uncommitted"),
    Mutant("snapshot_guard_on_last_applied",
           "if meta.index <= s.commit_index or s.log.fetch_term(meta.index) == meta.term:",
           "if meta.index <= s.last_applied:",
           "a follower installs a snapshot its commit index already covers, if not yet applied"),
    Mutant("snapshot_at_or_below_commit",
           "if meta.index <= s.commit_index or s.log.fetch_term(meta.index) == meta.term:",
           "if meta.index < 0:",
           "a follower installs a snapshot at or below its commit index"),
    Mutant("snapshot_drops_acknowledged_tail",
           "if meta.index <= s.commit_index or s.log.fetch_term(meta.index) == meta.term:",
           "if meta.index <= s.commit_index:",
           "a follower whose log holds a snapshot's last entry, not yet written, installs the "
           "snapshot: the entries past it, which a DurableReply acknowledged, are gone"),
    Mutant("snapshot_ack_not_durable",
           "written >= meta.index and s.log.fetch_term",
           "True and s.log.fetch_term",
           "a follower answers a snapshot with entries it holds but has not written"),
    # -- elections -----------------------------------------------------------------------------
    Mutant("vote_without_log_check",
           "msg.last_log_term):",
           "msg.last_log_term) or True:",
           "a vote is granted to a candidate whose log is behind"),
    Mutant("vote_twice_in_a_term",
           "s.voted_for in (None, msg.candidate_id)",
           "True",
           "a server votes for two candidates in one term"),
    Mutant("forget_voted_for",
           "term, voted_for = meta.fetch()",
           "term, voted_for = meta.fetch()[0], None",
           "a restarted server forgets whom it voted for"),
    # -- pre-vote (prevote_no_disruption) -----------------------------------------------------
    Mutant("pre_vote_grant_bumps_term",
           "msg.token, grant, s.id)))",
           "msg.token, grant, s.id)))\n    if grant:\n        _update_term(s, msg.term, effects)",
           "granting a pre-vote moves the granter to the candidate's term (deposes its leader)"),
    Mutant("follower_ignores_leader_contact",
           'if s.role == "follower" and s.heard_from_leader:',
           "if False:",
           "a follower that hears from its leader still times out and campaigns"),
    Mutant("stale_pre_vote_result_counts",
           'if s.role != "pre_vote" or msg.token != s.pre_vote_token or not msg.vote_granted:',
           "if not msg.vote_granted:",
           "a stale pre-vote grant turns a follower into a candidate"),
    # -- quiet when idle (the quiet profiles: ra.testing.sim_detector) -------------------------
    Mutant("quiet_follower_ignores_node_down",
           "    s.down_nodes.add(msg.node)\n    lid = s.leader_id\n",
           ("    lid = s.leader_id\n    if not (s.role == \"follower\" and lid is not None\n"
            "            and lid[1] == msg.node):\n        s.down_nodes.add(msg.node)\n"),
           "a quiet follower ignores the failure detector's report that its leader's node is "
           "down: a leader lost silently is never replaced",
           also=(('if s.role == "follower" and lid is not None and lid[1] == msg.node:',
                  "if False:"),)),
    Mutant("quiet_leader_ignores_lagging_follower",
           "return p.match_index >= last and p.commit_known >= s.commit_index and p.snapshot",
           "return p.snapshot",
           "a leader takes a peer for idle without checking that it holds the log and knows the "
           "commit index: it goes quiet while a follower is behind (nothing resends)"),
    Mutant("quiet_follower_trusts_a_silent_leader",
           "            # timeout (any message of its would have ended the probe): hung, campaign\n"
           "            s.probing = False\n            s.leader_id = None\n",
           "            # timeout (any message of its would have ended the probe): hung, campaign\n"
           "            s.probing = False\n            s.election_off = True\n            return\n",
           "a quiet follower whose probe its leader left unanswered goes back to trusting it: a "
           "leader process that hangs with its node and links up is never replaced, whatever "
           "its clients ask"),
    Mutant("quiet_leader_keeps_heartbeating",
           "    if s.cfg.quiet_when_idle and _leader_idle(s):\n        # quiet: no heartbeat",
           "    if False:\n        # quiet: no heartbeat",
           "an idle quiet leader keeps sending heartbeats (periodic AppendEntries at the "
           "heartbeat rate, answered by every follower): idle is not free"),
    Mutant("quiet_leader_skips_lagging_peers",
           "        if busy_only and _peer_idle(s, p, last):\n",
           "        if busy_only:\n",
           "a leader with no work of its own heartbeats none of its peers, not even those that lack "
           "entries or the commit index: a follower whose append or answer was lost stays behind"),
    Mutant("quiet_leader_forgets_silent_peers",
           "            if s.beats % SILENT_EVERY:\n                continue\n",
           "            continue\n",
           "a leader stops heartbeating a peer that answered none of its last heartbeats instead "
           "of slowing down: a member that was cut off, hung or down and counts on the leader "
           "(no election timer) is left behind for good"),
    Mutant("new_leader_counts_its_log_in_flight",
           "        in_flight = p.next_index - 1 - max(p.match_index, p.sent_floor)\n",
           "        in_flight = p.next_index - 1 - p.match_index\n",
           "a new leader counts every entry below its noop as in flight to each follower (its "
           "match index is 0): with a log longer than max_pipeline_count it sends nothing "
           "until its next heartbeat, and every failover waits for it (W4)"),
    Mutant("quiet_leader_loses_the_silent_pace",
           "            s.beats = (s.beats // SILENT_EVERY + 1) * SILENT_EVERY - 1\n",
           "",
           "a slow heartbeat timer cut short restarts the silent peers' count: whenever the "
           "leader's work comes and goes, a silent peer waits ever longer for its next append"),
    Mutant("quiet_follower_keeps_its_election_timer",
           "            s.heard_from_leader = False\n            s.election_off = True\n"
           "            return\n",
           "            s.heard_from_leader = False\n"
           "            effects.append(StartElectionTimeout())\n"
           "            return\n",
           "a quiet follower of an unsuspected leader keeps re-arming its election timer: it "
           "wakes every election timeout for nothing"),
    Mutant("quiet_leader_ignores_lost_members",
           "    if s.role == \"leader\" and s.cfg.quiet_when_idle and candidate in s.peers:",
           "    if False:",
           "an idle leader ignores a member's pre-vote instead of answering it with an append: "
           "a restarted follower (or one that lost its connection) never finds the leader again "
           "while the cluster stays idle"),
    Mutant("quiet_leader_ignores_probes",
           "if msg.from_id in s.peers and msg.term <= s.current_term:",
           "if False:",
           "a leader leaves a follower's probe unanswered: a client that asks a follower of a "
           "live, idle leader has it deposed"),
    Mutant("quiet_follower_ignores_clients",
           "    probe = LeaderProbe(s.current_term, s.leader_id, s.id)\n",
           "    return\n",
           "a quiet follower asked by a client does not check its leader: a hung leader is "
           "replaced only after the quiet timeout, and the clients time out meanwhile"),
    Mutant("quiet_leader_ignores_down_nodes",
           "up = pid[1] not in s.down_nodes",
           "up = True",
           "a quiet leader's quorum check ignores the detector: cut off, it keeps leading"),
    Mutant("quiet_leader_keeps_slow_quorum_checks",
           "        elif s.role != \"leader\" or not _quorum_idle(s):\n            s.quorum_off = False",
           "        elif s.role != \"leader\":\n            s.quorum_off = False",
           "an idle quiet leader arms no quorum check again after its detector reports a peer's "
           "node down: cut off, it keeps leading"),
    # -- commit and durability ------------------------------------------------------------------
    Mutant("commit_old_term_by_count",
           "if s.log.fetch_term(new) == s.current_term:",
           "if True:",
           "a leader commits an entry of an earlier term by counting replicas (Raft fig. 8)"),
    Mutant("leader_counts_unwritten_self",
           "idxs.append(s.log.last_written()[0])",
           "idxs.append(s.log.last_index_term()[0])",
           "a leader counts its own entries toward commit before they are durable"),
    Mutant("ack_before_written",
           "w_idx = min(s.log.last_written()[0], s.verified_index)",
           "w_idx = min(s.log.last_index_term()[0], s.verified_index)",
           "a follower acknowledges entries before they are durable"),
    Mutant("apply_beyond_commit",
           "upto = min(s.commit_index, s.log.last_written()[0])",
           "upto = s.log.last_written()[0]",
           "a follower applies entries that are not committed"),
    Mutant("apply_before_commit",
           "upto = min(s.commit_index, s.log.last_written()[0])",
           "upto = s.log.last_index_term()[0]",
           "every member applies entries as soon as it holds them: a follower before they are "
           "committed or written, a leader as it sends them",
           also=(("    _replicate_all(s, effects)\n    s.batch_end",
                  ("    _replicate_all(s, effects)\n    _apply_to(s, s.log.last_index_term()[0], "
                   "effects)\n    s.batch_end")),)),
    Mutant("commit_beyond_verified",
           "min(msg.leader_commit, s.verified_index)",
           "msg.leader_commit",
           "a follower adopts the leader's commit index beyond what it verified matches"),
    # -- log replication --------------------------------------------------------------------------
    Mutant("append_ignores_stale_term",
           "    if msg.term < s.current_term:\n        last_idx, last_term = log.last_index_term()",
           "    if False:\n        last_idx, last_term = log.last_index_term()",
           "a follower accepts entries from a leader of an older term"),
    Mutant("append_skips_prev_check",
           "if local != msg.prev_log_term:",
           "if False:",
           "a follower appends after a previous entry whose term does not match"),
    Mutant("keep_conflicting_entries",
           "log.fetch_term(idx) != term",
           "False",
           "a follower keeps its own conflicting entries instead of the leader's"),
)

_BY_NAME = {m.name: m for m in MUTANTS}


def _source_path() -> str:
    spec = importlib.util.find_spec(SERVER_MODULE)
    assert spec is not None and spec.origin is not None
    return spec.origin


def mutated_source(m: Mutant, source: str | None = None) -> str:
    """The core's source with ``m`` applied (``MutantError`` unless each of its snippets occurs
    exactly once, in the source as the edits before it left it)."""
    if source is None:
        with open(_source_path(), encoding="utf-8") as f:
            source = f.read()
    for old, new in ((m.old, m.new),) + m.also:
        n = source.count(old)
        if n != 1:
            raise MutantError(
                f"mutant {m.name!r}: its snippet occurs {n} times in {SERVER_MODULE} (needs "
                f"exactly 1; the code moved? update the mutant in ra/testing/mutants.py):\n{old}")
        source = source.replace(old, new)
    return source


def mutant(name: str) -> Mutant:
    """The mutant called ``name`` (``KeyError`` naming the known ones otherwise)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no mutant {name!r}; known: {sorted(_BY_NAME)}") from None


def load(*ms: Mutant | str) -> ModuleType:
    """A fresh module object compiled from the source with ``ms`` (mutants or their names)
    applied in turn, under the real module name."""
    with open(_source_path(), encoding="utf-8") as f:
        source = f.read()
    for m in ms:
        source = mutated_source(mutant(m) if isinstance(m, str) else m, source)
    return edited_module(SERVER_MODULE, source)


def edited_module(name: str, source: str) -> ModuleType:
    """``source``, an edit of module ``name``'s own, compiled into a fresh module object under
    the real name and file (tracebacks point at the right lines); the real module is left as
    it is, in ``sys.modules`` too."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    path = spec.origin
    code = compile(source, path, "exec")
    mod = ModuleType(name)
    mod.__file__ = path
    # dataclasses resolve names through sys.modules[cls.__module__] while the class is built
    real = sys.modules.get(name)
    sys.modules[name] = mod
    try:
        exec(code, mod.__dict__)  # noqa: S102 - the mutant is our own source, edited once
    finally:
        if real is not None:
            sys.modules[name] = real
        else:
            del sys.modules[name]
    return mod


@contextlib.contextmanager
def patched(m: Mutant | str) -> Iterator[ModuleType]:
    """Run the simulator on the mutated core inside the ``with`` block."""
    from ra.testing import sim
    mut = load(m)
    real = sim.server
    sim.server = mut          # type: ignore[assignment]
    try:
        yield mut
    finally:
        sim.server = real


# -- the mutation run --------------------------------------------------------------------------

def run_mutant(name: str, seeds: range, first_only: bool = False,
               skip: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Run mutant ``name`` (``REAL``: the unmodified core) over ``seeds`` of the default
    rotation in this interpreter, except ``skip``; the result is ``{"name", "seeds", "caught":
    [[seed, check, profile, servers], ...], "seconds"}``."""
    from ra.testing.checkers import Violation
    from ra.testing.sim import run_seed
    from ra.testing.sim_net import scenario_for_seed
    t0 = time.perf_counter()
    caught: list[list[Any]] = []
    with contextlib.nullcontext() if name == REAL else patched(name):
        for seed in seeds:
            if seed in skip:
                continue
            try:
                run_seed(seed)
            except Violation as v:
                n, p = scenario_for_seed(seed)
                caught.append([seed, v.check, p, n])
                if first_only:
                    break
    return {"name": name, "seeds": len(seeds) - len(skip), "caught": caught,
            "seconds": round(time.perf_counter() - t0, 1)}


def _worker_cmd(name: str, n: int, first_only: bool, skip: frozenset[int]) -> list[str]:
    cmd = [sys.executable, "-m", "ra.testing.mutants", "--worker", name, "--seeds", str(n)]
    if skip:
        cmd += ["--skip", ",".join(str(x) for x in sorted(skip))]
    return cmd + (["--first-only"] if first_only else [])


def run_all(names: list[str], n: int, jobs: int = 1, first_only: bool = False,
            out: Any = print) -> list[dict[str, Any]]:
    """The real core first, then each mutant, each in a fresh interpreter (mutants ``jobs`` at
    once); results in that order, each also passed to ``out`` as a table row as soon as it is
    in. Seeds on which the real core fails too prove nothing about a mutant: they are skipped."""
    for name in names:           # every snippet must apply before anything runs
        mutated_source(mutant(name))
    base = _worker(REAL, n, False, frozenset())
    out(_row(base))
    skip = frozenset(c[0] for c in base["caught"])

    def one(name: str) -> dict[str, Any]:
        r = _worker(name, n, first_only, skip)
        out(_row(r))
        return r

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return [base] + list(pool.map(one, names))


def _worker(name: str, n: int, first_only: bool, skip: frozenset[int]) -> dict[str, Any]:
    p = subprocess.run(_worker_cmd(name, n, first_only, skip), capture_output=True, text=True,
                       check=False)
    if p.returncode != 0:
        raise MutantError(f"mutant {name!r}: worker failed (exit {p.returncode}):\n"
                          f"{p.stderr[-3000:]}")
    r: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return r


def _summary(r: dict[str, Any]) -> tuple[bool, str, str]:
    caught = r["caught"]
    if r["name"] == REAL:
        return False, (f"{caught[0][0]} ({caught[0][2]}/{caught[0][3]}: {caught[0][1]})"
                       if caught else "-"), "failing seeds, skipped for the mutants"
    if not caught:
        return False, "-", "-"
    checks = Counter(c[1] for c in caught)
    first = caught[0]
    return True, f"{first[0]} ({first[2]}/{first[3]}: {first[1]})", \
        ", ".join(f"{k} {v}" for k, v in checks.most_common())


def _row(r: dict[str, Any]) -> str:
    ok, first, checks = _summary(r)
    result = "-" if r["name"] == REAL else "CAUGHT" if ok else "SURVIVED"
    return (f"{r['name']:32s} {result:8s} {len(r['caught']):>6d}/"
            f"{r['seeds']:<5d} {first:55s} {checks}   ({r['seconds']}s)")


def table(results: list[dict[str, Any]]) -> str:
    head = (f"{'mutant':32s} {'result':8s} {'caught/seeds':>12s} "
            f"{'first seed (profile/servers: check)':55s} checks that caught it")
    lines = [head, "-" * len(head)] + [_row(r) for r in results]
    muts = [r for r in results if r["name"] != REAL]
    caught = sum(1 for r in muts if r["caught"])
    lines.append(f"score: {caught}/{len(muts)} mutants caught")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ra.testing.mutants",
                                 description="Mutation run: each mutant of the core over N "
                                             "seeds of the default scenario rotation.")
    ap.add_argument("--seeds", type=int, default=2600, help="seeds 0..N-1 (default 2600, the "
                                                            "make test count)")
    ap.add_argument("--only", action="append", default=[], choices=sorted(_BY_NAME))
    ap.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    ap.add_argument("--first-only", action="store_true", help="stop a mutant at its first catch")
    ap.add_argument("--json", default=os.path.join("build", "mutants.json"),
                    help="where to write the results (default build/mutants.json)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--skip", default="", help=argparse.SUPPRESS)
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = ap.parse_args(argv)
    if args.list:
        for m in MUTANTS:
            print(f"{m.name:32s} {m.why}")
        return 0
    if args.worker:
        skip = frozenset(int(x) for x in args.skip.split(",") if x)
        print(json.dumps(run_mutant(args.worker, range(args.seeds), args.first_only, skip)))
        return 0
    names = args.only or [m.name for m in MUTANTS]
    print(f"mutation run: {len(names)} mutants x seeds 0..{args.seeds - 1} of the default "
          f"rotation, {args.jobs} at once")
    try:
        results = run_all(names, args.seeds, args.jobs, args.first_only)
    except MutantError as e:
        print(f"FAILED: {e}")
        return 1
    print()
    print(table(results))
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump({"seeds": args.seeds, "first_only": args.first_only,
                   "python": sys.version.split()[0], "cwd": os.getcwd(),
                   "results": results}, f, indent=1)
    print(f"written to {args.json}")
    return 0 if all(r["caught"] for r in results if r["name"] != REAL) else 1


if __name__ == "__main__":
    sys.exit(main())
