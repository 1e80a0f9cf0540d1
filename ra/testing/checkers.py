"""Raft safety checkers fed by the simulator after every step. No ra equivalent.

The checker knows nothing about the simulator: it is fed observations through ``on_*`` hooks and
raises :class:`Violation` the moment one contradicts Raft's guarantees. The hooks are cheap and
incremental (they look only at what changed), so they can run after *every* step.

Invariants (names are what ``Violation.check`` carries and what ``disabled`` accepts):

``election_safety``
    At most one leader per term, ever.
``log_matching``
    Two logs that hold an entry with the same index and term hold the same command there and the
    same prefix before it. Checked when entries are written: every ``(index, term)`` maps to one
    command and one previous term, across all logs and all time.
``commit_monotonic``
    A server's commit index never goes back within one incarnation (process lifetime).
``commit_in_log``
    A server's commit index never points past the end of its own log (or its snapshot).
``committed_prefix``
    Once an entry is seen committed anywhere, the entry committed at that index never changes
    anywhere (cluster-wide committed prefix is stable).
``leader_completeness``
    Every committed entry is in the log (or snapshot) of every leader of a later term.
``apply_committed``
    A server never has applied beyond its commit index.
``state_machine_safety``
    One command per index on every member and every incarnation; one index per command (a command
    is applied exactly once); within an incarnation indexes are applied in increasing order; what is
    applied equals what is committed at that index.
``ack_applied``
    An acknowledged command was applied at exactly the index its reply names.
``query_linearizable``
    A consistent query sees every command acknowledged before the query was issued.
``durable_ack``
    A follower acknowledges (``AppendEntriesReply.last_index``, ``InstallSnapshotResult
    .last_index``) only entries its storage holds durably; a vote is granted only once the
    voter's term and vote are durable (or superseded by a durable later term).
``durable_commit``
    When a leader advances its commit index, a majority of its configuration holds every newly
    committed entry durably.
``check_quorum``
    (checked by the simulator, which sees the network) A leader that no majority of its
    configuration has answered for more than two election timeouts is no longer leader.
``single_config_change``
    At most one configuration change is uncommitted at a time: when a leader appends a
    configuration entry (``("cluster", members, ...)``), every earlier configuration entry in its
    log is at or below its commit index (or inside its snapshot).
``prevote_no_disruption``
    A healthy leader is never deposed. The harness opens a *quiet window* for leader L of term T
    only when nothing can legitimately end L's term: L and every member are alive and connected
    both ways with no loss, each member follows L in term T and has heard from it since the
    network healed, no leadership transfer is under way, no crash, restart or membership change
    happens. While the window is open, no member's term rises above T, whatever stale pre-vote
    traffic is delivered (a pre-vote never changes the receiver's term; a follower that hears
    from its leader never campaigns; a stale pre-vote grant starts no candidacy).
``prompt_replication``
    (checked by the simulator, which sees the effects) The step that makes a server leader sends
    every other member of its configuration an append or a snapshot: its noop and what that
    member lacks leave at once, not at the next heartbeat, however long the log.

The ``quiet_*`` checks are the simulator's too (:mod:`ra.testing.sim_detector`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["Violation", "LogView", "SafetyChecker", "CHECKS", "usr_payload", "check_cluster"]

CHECKS: tuple[str, ...] = (
    "election_safety", "log_matching", "commit_monotonic", "commit_in_log", "committed_prefix",
    "leader_completeness", "apply_committed", "state_machine_safety", "ack_applied",
    "query_linearizable", "durable_ack", "durable_commit", "check_quorum",
    "single_config_change", "prevote_no_disruption", "quiet_failover", "quiet_hang", "quiet_probe",
    "quiet_lag", "quiet_rejoin", "quiet_idle", "prompt_replication",
)


class Violation(AssertionError):
    """A broken Raft invariant. ``str()`` gives a readable report including, once the simulator
    has filled them in, the seed, the replay command and the trace tail."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check
        self.message = message
        self.seed: int | None = None
        self.time: int | None = None
        self.step: int | None = None
        self.replay: str | None = None
        self.trace_tail: list[str] = []

    def __str__(self) -> str:
        head = f"[{self.check}] {self.message}"
        where = []
        if self.seed is not None:
            where.append(f"seed={self.seed}")
        if self.step is not None:
            where.append(f"step={self.step}")
        if self.time is not None:
            where.append(f"t={self.time}ms")
        out = [head + (f"  ({', '.join(where)})" if where else "")]
        if self.replay:
            out.append(f"replay: {self.replay}")
        if self.trace_tail:
            out.append("last events:")
            out.extend("  " + line for line in self.trace_tail)
        return "\n".join(out)


class LogView(Protocol):
    """What the checker reads from a server's log (``MemoryLog`` satisfies it)."""

    def fetch(self, idx: int) -> tuple[int, int, Any] | None: ...

    def snapshot_index_term(self) -> tuple[int, int]: ...

    def last_index_term(self) -> tuple[int, int]: ...


def usr_payload(command: Any) -> Any:
    """The machine command inside a log command ``("usr", cmd, reply_mode, ts)``, else None."""
    if isinstance(command, tuple) and command and command[0] == "usr":
        return command[1]
    return None


class _SessionOracle:
    """Which committed usr entries a machine must apply, with client sessions, written from the
    rules in ``ra.core.sessions``' docstring and not from its code: a session command is applied
    iff its session was opened (an earlier committed open entry, whose index is the id), its
    seq was not applied before, and its seq is not below the highest ``first_outstanding`` the
    session's commands have carried so far. (Expiry and the reply cap are not modelled: a
    simulated run lasts seconds and a few hundred commands.)"""

    def __init__(self) -> None:
        self.opened: set[int] = set()
        self.applied: dict[int, set[int]] = {}
        self.first_out: dict[int, int] = {}

    def applies(self, idx: int, command: Any) -> bool:
        if not isinstance(command, tuple) or not command:
            return False
        if command[0] == "session":
            if command[1] == "open_session":
                self.opened.add(idx)
            return False
        if command[0] != "usr":
            return False
        if len(command) < 7:
            return True
        sid, seq, first_out = command[4:7]
        if sid not in self.opened:
            return False
        fo = max(self.first_out.get(sid, 1), first_out)
        self.first_out[sid] = fo
        done = self.applied.setdefault(sid, set())
        if seq in done or seq < fo:
            return False
        done.add(seq)
        return True


@dataclass(slots=True)
class _Committed:
    term: int
    command: Any
    commit_term: int  # lowest term at which any server was seen to have it committed
    seen_by: Any


@dataclass(slots=True)
class _ServerTrack:
    incarnation: int = -1
    commit_index: int = 0
    applied_index: int = 0  # last index applied by the machine in this incarnation
    role: str = ""
    term: int = 0
    log: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


class SafetyChecker:
    """Incremental Raft invariant checker (see the module docstring for the list)."""

    def __init__(self, disabled: frozenset[str] | set[str] = frozenset(),
                 raises: Callable[[Any], bool] | None = None) -> None:
        unknown = set(disabled) - set(CHECKS)
        if unknown:
            raise ValueError(f"unknown checks {sorted(unknown)}")
        self.disabled = frozenset(disabled)
        #: which machine commands the machine raises on (applied as no-ops: not counted)
        self.raises = raises or (lambda cmd: False)
        self.leaders: dict[int, Any] = {}                     # term -> leader
        self.entry_cmd: dict[tuple[int, int], Any] = {}       # (idx, term) -> command
        self.entry_prev: dict[tuple[int, int], int] = {}      # (idx, term) -> term at idx - 1
        self.committed: dict[int, _Committed] = {}
        self.applied: dict[int, tuple[int, Any, Any]] = {}    # idx -> (term, cmd, server)
        self.cmd_index: dict[Any, int] = {}                   # cmd -> idx applied at
        self.acked: dict[Any, int] = {}                       # cmd -> idx named in the ack
        self.max_acked_index = 0
        self.counted: list[tuple[int, int, str]] = []          # (index, count seen, by what)
        self.queries: dict[Any, int] = {}                     # query id -> required index
        self.servers: dict[Any, _ServerTrack] = {}
        self.quiet: tuple[Any, int, tuple[Any, ...]] | None = None   # (leader, term, members)
        self.counts: dict[str, int] = {c: 0 for c in CHECKS}

    # -- helpers --------------------------------------------------------------------------------
    def _fail(self, check: str, message: str) -> None:
        if check in self.disabled:
            return
        raise Violation(check, message)

    def _on(self, check: str) -> bool:
        self.counts[check] += 1
        return check not in self.disabled

    def _track(self, server: Any) -> _ServerTrack:
        t = self.servers.get(server)
        if t is None:
            t = self.servers[server] = _ServerTrack()
        return t

    # -- log matching ---------------------------------------------------------------------------
    def on_entries_written(self, server: Any, entries: list[tuple[int, int, Any]],
                           prev_term: int | None) -> None:
        """``server`` wrote ``entries`` (consecutive) into its log; ``prev_term`` is the term its
        log holds just before the first one (None if unknown, e.g. inside a snapshot)."""
        if not self._on("log_matching"):
            return
        prev = prev_term
        for idx, term, cmd in entries:
            key = (idx, term)
            known = self.entry_cmd.get(key, _MISSING)
            if known is _MISSING:
                self.entry_cmd[key] = cmd
            elif known != cmd:
                self._fail("log_matching",
                           f"{_s(server)} wrote index {idx} term {term} = {cmd!r} but another log "
                           f"holds {known!r} at the same index and term")
            if prev is not None:
                kp = self.entry_prev.get(key)
                if kp is None:
                    self.entry_prev[key] = prev
                elif kp != prev:
                    self._fail("log_matching",
                               f"{_s(server)} holds index {idx} term {term} after an entry of term "
                               f"{prev} at {idx - 1}, another log has term {kp} there: prefixes "
                               f"differ")
            prev = term

    # -- per-step server state ------------------------------------------------------------------
    def on_server_state(self, server: Any, incarnation: int, role: str, term: int,
                        commit_index: int, last_applied: int, log: LogView) -> None:
        """Called after every step of ``server`` with its current state."""
        t = self._track(server)
        if t.incarnation != incarnation:
            _switch(t, incarnation)
        t.log = log
        # election safety + leader completeness on a new leader
        if role == "leader":
            if self._on("election_safety"):
                other = self.leaders.get(term)
                if other is None:
                    self.leaders[term] = server
                elif other != server:
                    self._fail("election_safety",
                               f"two leaders in term {term}: {_s(other)} and {_s(server)}")
            if t.role != "leader" or t.term != term:
                self._check_leader_complete(server, term, log)
        t.role, t.term = role, term
        q = self.quiet
        if q is not None and self._on("prevote_no_disruption") and term > q[1] \
                and server in q[2]:
            self._fail("prevote_no_disruption",
                       f"{_s(server)} reached term {term} while {_s(q[0])} led term {q[1]} in a "
                       f"quiet window (every member alive, connected and following it)")
        self.on_commit_progress(server, incarnation, term, commit_index, log)
        if self._on("commit_in_log"):
            last = max(log.last_index_term()[0], log.snapshot_index_term()[0])
            if commit_index > last:
                self._fail("commit_in_log",
                           f"{_s(server)} commit index {commit_index} is past its last log "
                           f"index {last}")
        if last_applied > commit_index and self._on("apply_committed"):
            self._fail("apply_committed",
                       f"{_s(server)} applied up to {last_applied} but its commit index is "
                       f"{commit_index}")

    def on_commit_progress(self, server: Any, incarnation: int, term: int, commit_index: int,
                           log: LogView) -> None:
        """``server``'s commit index is now ``commit_index``: check it did not go back and record
        the newly committed entries. Called after every step, and also mid-step just before the
        log compacts entries into a snapshot (so that no committed entry goes unrecorded)."""
        t = self._track(server)
        if t.incarnation != incarnation:
            _switch(t, incarnation)
        if commit_index < t.commit_index and self._on("commit_monotonic"):
            self._fail("commit_monotonic",
                       f"{_s(server)} commit index went back from {t.commit_index} to "
                       f"{commit_index} (incarnation {incarnation})")
        if commit_index > t.commit_index:
            self._record_committed(server, term, t.commit_index + 1, commit_index, log)
            t.commit_index = commit_index

    def _record_committed(self, server: Any, term: int, lo: int, hi: int, log: LogView) -> None:
        snap_idx = log.snapshot_index_term()[0]
        new: list[tuple[int, _Committed]] = []
        check = self._on("committed_prefix")
        for idx in range(max(lo, snap_idx + 1), hi + 1):
            e = log.fetch(idx)
            if e is None:
                continue
            c = self.committed.get(idx)
            if c is None:
                c = self.committed[idx] = _Committed(e[1], e[2], term, server)
                new.append((idx, c))
            else:
                if check and (c.term != e[1] or c.command != e[2]):
                    self._fail("committed_prefix",
                               f"{_s(server)} committed index {idx} = (term {e[1]}, {e[2]!r}) "
                               f"but {_s(c.seen_by)} had committed (term {c.term}, "
                               f"{c.command!r}) there")
                if term < c.commit_term:
                    c.commit_term = term
            a = self.applied.get(idx)
            if a is not None and self._on("state_machine_safety"):
                payload = usr_payload(e[2])
                if payload != a[1] or a[0] != e[1]:
                    self._fail("state_machine_safety",
                               f"{_s(a[2])} applied {a[1]!r} (term {a[0]}) at index {idx} but "
                               f"{_s(server)} committed {e[2]!r} (term {e[1]}) there")
        if new and self._on("leader_completeness"):
            for other, ot in self.servers.items():
                if ot.role != "leader" or ot.log is None:
                    continue
                for idx, c in new:
                    if ot.term > c.commit_term:
                        self._check_has(other, ot.term, ot.log, idx, c)

    def _check_leader_complete(self, server: Any, term: int, log: LogView) -> None:
        if not self._on("leader_completeness"):
            return
        for idx, c in self.committed.items():
            if c.commit_term < term:
                self._check_has(server, term, log, idx, c)

    def _check_has(self, server: Any, term: int, log: LogView, idx: int, c: _Committed) -> None:
        snap_idx, snap_term = log.snapshot_index_term()
        if idx <= snap_idx:
            return  # covered by a snapshot of applied (hence committed) entries
        e = log.fetch(idx)
        if e is None or e[1] != c.term or e[2] != c.command:
            have = "nothing" if e is None else f"(term {e[1]}, {e[2]!r})"
            self._fail("leader_completeness",
                       f"{_s(server)} is leader of term {term} but lacks committed index {idx} "
                       f"(term {c.term}, {c.command!r}, committed by term {c.commit_term}); "
                       f"it has {have}")

    # -- the state machine ----------------------------------------------------------------------
    def on_apply(self, server: Any, incarnation: int, index: int, term: int, cmd: Any) -> None:
        """``server`` (in ``incarnation``) applied machine command ``cmd`` at ``index``."""
        if not self._on("state_machine_safety"):
            return
        t = self._track(server)
        if t.incarnation != incarnation:
            _switch(t, incarnation)
        if index <= t.applied_index:
            self._fail("state_machine_safety",
                       f"{_s(server)} applied index {index} after index {t.applied_index} "
                       f"(out of order or twice)")
        t.applied_index = index
        known = self.applied.get(index)
        if known is None:
            self.applied[index] = (term, cmd, server)
        elif known[1] != cmd or known[0] != term:
            self._fail("state_machine_safety",
                       f"{_s(server)} applied {cmd!r} (term {term}) at index {index} but "
                       f"{_s(known[2])} applied {known[1]!r} (term {known[0]}) there")
        other = self.cmd_index.get(cmd)
        if other is None:
            self.cmd_index[cmd] = index
        elif other != index:
            self._fail("state_machine_safety",
                       f"command {cmd!r} applied twice: at index {other} and at index {index} "
                       f"(by {_s(server)})")
        c = self.committed.get(index)
        if c is not None and (usr_payload(c.command) != cmd or c.term != term):
            self._fail("state_machine_safety",
                       f"{_s(server)} applied {cmd!r} at index {index} but (term {c.term}, "
                       f"{c.command!r}) is committed there")

    # -- clients --------------------------------------------------------------------------------
    def on_ack(self, cmd: Any, index: int, count: int | None = None) -> None:
        """A client got a success reply for ``cmd`` naming ``index`` as where it was applied
        (and, for the simulator's counter machine, ``count``: commands applied up to there)."""
        if count is not None:
            self.counted.append((index, count, f"the reply to {cmd!r}"))
        if not self._on("ack_applied"):
            return
        prev = self.acked.get(cmd)
        if prev is not None and prev != index:
            self._fail("ack_applied", f"command {cmd!r} acknowledged at {prev} and at {index}")
        self.acked[cmd] = index
        a = self.applied.get(index)
        if a is None or a[1] != cmd:
            self._fail("ack_applied",
                       f"command {cmd!r} acknowledged at index {index} but "
                       + ("nothing was applied there" if a is None else
                          f"{_s(a[2])} applied {a[1]!r} there"))
        if index > self.max_acked_index:
            self.max_acked_index = index

    def check_counts(self) -> None:
        """End of run: every counter value a client saw (``count`` commands applied up to
        ``index``) equals the number of machine commands in the committed log up to that index,
        i.e. the machine applied each committed command exactly once, in log order (a session
    command only the first time its session seq is committed: see :class:`_SessionOracle`). Indexes past
        a gap in what was seen committed are skipped."""
        if not self.counted:
            return
        top = max(i for i, _, _ in self.counted)
        prefix = [0] * (top + 1)
        n, known = 0, 0
        sessions = _SessionOracle()
        for idx in range(1, top + 1):
            c = self.committed.get(idx)
            if c is None:
                break
            if sessions.applies(idx, c.command) and not self.raises(usr_payload(c.command)):
                n += 1
            prefix[idx] = n
            known = idx
        for idx, count, what in self.counted:
            if idx <= known and count != prefix[idx] and self._on("state_machine_safety"):
                self._fail("state_machine_safety",
                           f"{what} says {count} commands were applied up to index {idx}, but "
                           f"the committed log holds {prefix[idx]} commands up to there")

    def check_acked_committed(self) -> None:
        """End of run: every acknowledged command is the committed entry at its index."""
        self.check_counts()
        for cmd, idx in self.acked.items():
            c = self.committed.get(idx)
            if (c is None or usr_payload(c.command) != cmd) and self._on("ack_applied"):
                self._fail("ack_applied",
                           f"command {cmd!r} was acknowledged at index {idx} but "
                           + ("no commit of that index was ever seen" if c is None else
                              f"{c.command!r} is committed there"))

    # -- durability (fed by a harness that can see what storage holds durably) ------------------
    def on_ack_sent(self, server: Any, last_index: int, last_term: int,
                    durable_term: int | None) -> None:
        """``server`` told a leader it durably holds ``last_index`` at ``last_term``;
        ``durable_term`` is the term its durable storage really holds there (None: nothing)."""
        if last_index > 0 and durable_term != last_term and self._on("durable_ack"):
            self._fail("durable_ack",
                       f"{_s(server)} acknowledged index {last_index} term {last_term} but its "
                       f"durable storage holds "
                       + ("nothing there" if durable_term is None else f"term {durable_term}"))

    def on_vote_sent(self, server: Any, term: int, candidate: Any,
                     durable: tuple[int, Any]) -> None:
        """``server`` granted ``candidate`` its vote in ``term``; ``durable`` is the (term,
        voted_for) its meta store holds durably."""
        # a durable later term also settles it: the voter can never vote in ``term`` again
        if durable != (term, candidate) and durable[0] <= term and self._on("durable_ack"):
            self._fail("durable_ack",
                       f"{_s(server)} granted its vote in term {term} to {_s(candidate)} but "
                       f"durably holds term {durable[0]} voted_for {_s(durable[1])}")

    def on_leader_commit(self, leader: Any, term: int, lo: int, hi: int,
                         holders: dict[Any, Any]) -> None:
        """Leader ``leader`` advanced its commit index over ``lo..hi``. ``holders`` maps each
        member of its configuration to a function ``idx -> durable term at idx | None``, or
        ``"snapshot"`` when a durable snapshot covers ``idx``."""
        if not self._on("durable_commit") or not holders:
            return
        need = len(holders) // 2 + 1
        for idx in range(lo, hi + 1):
            c = self.committed.get(idx)
            if c is None:
                continue
            have = [m for m, f in holders.items() if f(idx) in (c.term, "snapshot")]
            if len(have) < need:
                self._fail("durable_commit",
                           f"{_s(leader)} (term {term}) committed index {idx} (term {c.term}) "
                           f"but only {[_s(m) for m in have]} of {len(holders)} members hold "
                           f"it durably")

    def on_query_issued(self, qid: Any) -> None:
        """A consistent query was issued; it must see every command acknowledged so far."""
        self.queries[qid] = self.max_acked_index

    def on_query_result(self, qid: Any, seen_index: int, count: int | None = None) -> None:
        """The query ``qid`` returned a machine state whose last applied command index is
        ``seen_index`` (and whose command count is ``count``)."""
        if count is not None:
            self.counted.append((seen_index, count, f"query {qid!r}"))
        need = self.queries.pop(qid, 0)
        if seen_index < need and self._on("query_linearizable"):
            self._fail("query_linearizable",
                       f"query {qid!r} saw state up to index {seen_index}, but a command at "
                       f"index {need} had been acknowledged before it was issued")

    def on_config_appended(self, server: Any, index: int, commit_index: int,
                           log: LogView) -> None:
        """Leader ``server`` appended a configuration entry at ``index`` while its commit index
        was ``commit_index``; ``log`` already holds the new entry."""
        if not self._on("single_config_change"):
            return
        for idx in range(max(commit_index, log.snapshot_index_term()[0]) + 1, index):
            e = log.fetch(idx)
            if e is not None and _is_config(e[2]):
                self._fail("single_config_change",
                           f"{_s(server)} appended a configuration change at index {index} while "
                           f"the one at index {idx} ({e[2][1]!r}) is uncommitted (commit index "
                           f"{commit_index})")

    def open_quiet_window(self, leader: Any, term: int, members: tuple[Any, ...]) -> None:
        """From now on no server of ``members`` may reach a term above ``term`` (see
        ``prevote_no_disruption``) until ``close_quiet_window``."""
        self.quiet = (leader, term, tuple(members))

    def close_quiet_window(self) -> None:
        self.quiet = None

    def on_snapshot_installed(self, server: Any, index: int, term: int) -> None:
        """``server`` took or received a snapshot covering ``index`` (at ``term``)."""
        c = self.committed.get(index)
        if c is not None and c.term != term and self._on("committed_prefix"):
            self._fail("committed_prefix",
                       f"{_s(server)} has a snapshot at index {index} term {term} but term "
                       f"{c.term} is committed there")


def _is_config(command: Any) -> bool:
    return isinstance(command, tuple) and bool(command) and command[0] == "cluster"


def _switch(t: _ServerTrack, incarnation: int) -> None:
    # a new process: its commit index restarts from what it recovers (rechecked from index 1)
    t.incarnation = incarnation
    t.commit_index = 0
    t.applied_index = 0
    t.role = ""


def check_cluster(servers: list[tuple[Any, str, int, int, LogView]]) -> None:
    """Whole-state check of a cluster at one instant (independent of the incremental checker):
    ``servers`` is ``[(id, role, term, commit_index, log), ...]`` of the live servers. At most one
    leader per term; log matching over every pair of logs (same index and term => same entries
    from there down to where both logs start); committed prefixes agree where both hold them."""
    leaders: dict[int, Any] = {}
    for sid, role, term, _, _ in servers:
        if role == "leader":
            if term in leaders:
                raise Violation("election_safety",
                                f"{_s(leaders[term])} and {_s(sid)} both lead term {term}")
            leaders[term] = sid
    for i, (a, _, _, ca, la) in enumerate(servers):
        for b, _, _, cb, lb in servers[i + 1:]:
            lo = max(la.snapshot_index_term()[0], lb.snapshot_index_term()[0]) + 1
            hi = min(la.last_index_term()[0], lb.last_index_term()[0])
            matched = False
            for idx in range(hi, lo - 1, -1):
                ea, eb = la.fetch(idx), lb.fetch(idx)
                if ea is None or eb is None:
                    continue
                if matched and ea != eb:
                    raise Violation("log_matching",
                                    f"{_s(a)} and {_s(b)} share a later entry but differ at "
                                    f"index {idx}: {ea!r} vs {eb!r}")
                if ea[1] == eb[1]:
                    if ea != eb:
                        raise Violation("log_matching",
                                        f"{_s(a)} and {_s(b)} hold different commands at index "
                                        f"{idx} term {ea[1]}: {ea[2]!r} vs {eb[2]!r}")
                    matched = True
                if idx <= min(ca, cb) and ea != eb:
                    raise Violation("committed_prefix",
                                    f"{_s(a)} and {_s(b)} both committed index {idx} but hold "
                                    f"{ea!r} vs {eb!r}")


class _Missing:
    pass


_MISSING = _Missing()


def _s(server: Any) -> str:
    name = getattr(server, "name", None)
    return str(name) if name is not None else repr(server)
