"""Simulated clients and the admin client of the simulator. No ra equivalent.

A client has at most one call outstanding. It issues commands (awaited, or pipelined with a
``notify`` reply mode), consistent queries, and (the admin client) joins, leaves and leadership
transfers. Client <-> server traffic is a reliable call channel (no loss, no duplication), but a
call to a crashed server fails with ``noproc`` (not delivered), a server that crashes holding a
call answers ``("error", "nodedown")`` (sent, outcome unknown), and a call may time out (outcome
unknown). A ``("redirect", leader)`` answer means the request was not taken, so it is re-sent to
the named leader (or another member).

Most clients (all but every fifth) open a session first and send every command with
``(session, seq, first_outstanding)``; after an unknown outcome they send *the same* command
again (same payload, same seq) until it is answered, as ``ra.Client`` does: the session table
must apply it once and answer every retry with the first reply (the checker's
``state_machine_safety`` and ``ack_applied`` catch a second apply). Session-less clients never
re-send a command whose outcome is unknown; they issue a fresh one.

This module is a mixin of ``SimCluster``; it relies on the cluster's ``rng``, ``now``,
``schedule``, ``checker``, ``trace`` and server table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ra.core.messages import Command, Commands, ConsistentQuery, TransferLeadership

__all__ = ["SimClient", "Op", "ClientDriver", "query_state"]


def query_state(state: Any) -> Any:
    """The consistent query every simulated client runs: the whole (tiny) machine state."""
    return state


@dataclass(slots=True)
class Op:
    kind: str                    # "cmd" | "pipe" | "query" | "join" | "leave" | "transfer"
    req: int
    arg: Any                     # command payload, query id, or server id
    issued: int
    attempt: int = 0
    hops: int = 0
    target: Any = None
    final: bool = False
    low: bool = False            # low-priority command (batched by the leader)
    sseq: int = 0                # the command's seq in the client's session (0: no session)
    unknown: bool = False        # an earlier attempt's outcome is unknown


@dataclass(slots=True)
class SimClient:
    name: str
    seq: int = 0
    leader: Any = None
    op: Op | None = None
    pipes: dict[Any, int] = field(default_factory=dict)   # corr -> issue time
    issued: dict[int, tuple[str, Any]] = field(default_factory=dict)  # req -> (kind, arg)
    acked: int = 0
    unknown: int = 0
    final_done: bool = False
    final_pending: bool = False
    admin: bool = False
    results: list[tuple[Any, Any]] = field(default_factory=list)   # (arg, ok reply)
    scripted: bool = False       # driven by a script (demo, tests): no ops of its own
    sessions: bool = False       # uses a client session (exactly-once retries)
    session: int | None = None   # its id, once opened
    sseq: int = 0                # last session seq used
    pipe_seqs: dict[Any, int] = field(default_factory=dict)   # pipelined corr -> session seq


class ClientDriver:
    """Client behaviour; mixed into ``SimCluster``."""

    # provided by SimCluster
    rng: Any
    now: int
    checker: Any
    profile: Any
    clients: dict[str, SimClient]
    stats: dict[str, int]
    servers: dict[Any, Any]
    n_initial: int
    faults_over: bool

    if TYPE_CHECKING:
        def schedule(self, delay: int, kind: str, *args: Any) -> None: ...
        def spawn_server(self, members: list[Any]) -> Any: ...
        def random_member(self, exclude: Any = None) -> Any: ...
        def current_leader(self) -> Any: ...
        def trace_client(self, c: SimClient, text: str) -> None: ...
        def _call(self, c: SimClient, target: Any, msg: Any, frm: Any) -> None: ...

    # -- issuing ---------------------------------------------------------------------------------
    def client_wakeup(self, c: SimClient) -> None:
        if c.op is not None:
            return
        if self.faults_over:
            if c.final_done or c.admin:
                return
            c.final_pending = True
            self._issue_cmd(c, final=True)
            return
        if c.admin:
            self._admin_op(c)
            return
        if c.sessions and c.session is None:
            c.seq += 1
            c.op = Op("open", c.seq, None, self.now)
            self._send_op(c)
            return
        p = self.profile
        r = self.rng.random()
        if r < p.query_ratio:
            c.seq += 1
            qid = (c.name, "q", c.seq)
            c.op = Op("query", c.seq, qid, self.now)
            self.checker.on_query_issued(qid)
            self._send_op(c)
        elif r < p.query_ratio + p.notify_ratio and c.leader is not None:
            c.seq += 1
            cmd = (c.name, c.seq)
            c.pipes[cmd] = self.now
            self.stats["commands"] += 1
            low = self.rng.random() < p.low_ratio
            session = None
            if c.session is not None:
                c.sseq += 1
                c.pipe_seqs[cmd] = c.sseq
                session = (c.session, c.sseq, self._first_outstanding(c, c.sseq))
            mode = ("notify", cmd, c.name)
            prio = "low" if low else "normal"
            # every other one arrives as the shell steps a pipelined batch (Commands): both
            # paths into the core run under every seed, with no draw of the seeded RNG more
            msg: Any = Command("usr", cmd, mode, prio, self.now, session)
            if c.seq % 2:
                msg = Commands(prio, self.now, [cmd, mode, *(session or (None, 0, 0))])
            self._call(c, c.leader, msg, None)
            self.trace_client(c, f"pipeline {cmd} -> {_n(c.leader)}")
            self._next_wakeup(c)
        else:
            self._issue_cmd(c)

    def _issue_cmd(self, c: SimClient, final: bool = False) -> None:
        if c.sessions and c.session is None:
            c.seq += 1
            c.op = Op("open", c.seq, None, self.now, final=final)
            self._send_op(c)
            return
        c.seq += 1
        c.op = Op("cmd", c.seq, (c.name, c.seq), self.now, final=final,
                  low=self.rng.random() < self.profile.low_ratio)
        if c.session is not None:
            c.sseq += 1
            c.op.sseq = c.sseq
        self.stats["commands"] += 1
        self._send_op(c)

    @staticmethod
    def _first_outstanding(c: SimClient, new: int) -> int:
        """The lowest session seq still awaited: the open call's and the pipelined ones'."""
        low = new
        if c.op is not None and c.op.sseq and c.op.sseq < low:
            low = c.op.sseq
        for q in c.pipe_seqs.values():
            if q < low:
                low = q
        return low

    def _admin_op(self, c: SimClient) -> None:
        p, rng = self.profile, self.rng
        total = p.membership_rate + p.transfer_rate
        if total <= 0:
            return
        leader = self.current_leader()
        if leader is None:
            self._next_wakeup(c)
            return
        members = list(self.servers[leader].state.cluster)
        if rng.random() < p.membership_rate / total:
            n0 = self.n_initial
            if len(members) < n0 or (len(members) == n0 and rng.random() < 0.6):
                sid = self.spawn_server(members)
                c.seq += 1
                c.op = Op("join", c.seq, sid, self.now)
            elif len(members) > 1:
                victims = [m for m in members if m != leader] or members
                if rng.random() < 0.15:
                    victims = [leader]
                c.seq += 1
                c.op = Op("leave", c.seq, rng.choice(victims), self.now)
            else:
                self._next_wakeup(c)
                return
        else:
            others = [m for m in members if m != leader and self.servers[m].alive]
            if not others:
                self._next_wakeup(c)
                return
            c.seq += 1
            c.op = Op("transfer", c.seq, rng.choice(others), self.now)
        c.op.target = leader
        self._send_op(c)

    def _send_op(self, c: SimClient) -> None:
        op = c.op
        assert op is not None
        op.attempt += 1
        if op.target is None:
            op.target = c.leader if c.leader is not None else self.random_member()
        frm = ("call", c.name, op.req, op.attempt)
        if op.kind == "cmd":
            session = None
            if op.sseq:
                session = (c.session, op.sseq, self._first_outstanding(c, op.sseq))
            msg: Any = Command("usr", op.arg, ("await", frm), "low" if op.low else "normal",
                               self.now, session)
        elif op.kind == "open":
            msg = Command("open_session", None, ("await", frm), "normal", self.now)
        elif op.kind == "query":
            msg = ConsistentQuery(frm, query_state)
        elif op.kind in ("join", "leave"):
            msg = Command(op.kind, op.arg, ("after_log_append", frm))
        else:
            msg = TransferLeadership(frm, op.arg)
        if op.attempt == 1:
            c.issued[op.req] = (op.kind, op.arg)
        if op.attempt == 1 or op.unknown:
            self.schedule(self.profile.call_timeout_ms, "ctimeout", c.name, op.req)
            op.unknown = False
        self.trace_client(c, f"{op.kind} {_arg(op)} -> {_n(op.target)}"
                          + (f" (try {op.attempt})" if op.attempt > 1 else ""))
        self._call(c, op.target, msg, frm)

    def submit(self, name: str, target: Any = None, kind: str = "cmd", arg: Any = None) -> Op:
        """Scripted: client ``name`` (created on first use) sends one fresh command now; or,
        with ``kind="query"``, a consistent query; with ``"join"``/``"leave"``/``"transfer"``,
        that admin request about server ``arg``."""
        c = self.clients.get(name)
        if c is None:
            c = self.clients[name] = SimClient(name, scripted=True)
        assert c.op is None, f"client {name} already has a call outstanding"
        c.seq += 1
        if kind == "query":
            arg = (name, "q", c.seq)
            self.checker.on_query_issued(arg)
        elif kind == "cmd":
            arg = (name, c.seq)
            self.stats["commands"] += 1
        c.op = op = Op(kind, c.seq, arg, self.now, target=target)
        self._send_op(c)
        return op

    def _next_wakeup(self, c: SimClient) -> None:
        if c.scripted:
            return
        lo, hi = self.profile.think_ms
        if c.admin:
            total = self.profile.membership_rate + self.profile.transfer_rate
            mean = int(1000 / total) if total else 10**9
            lo, hi = mean // 2, mean * 3 // 2
        self.schedule(self.rng.randint(lo, hi), "wake", c.name)

    # -- answers ---------------------------------------------------------------------------------
    def client_reply(self, name: str, frm: Any, value: Any) -> None:
        c = self.clients[name]
        _, _, req, attempt = frm
        op = c.op
        kind = value[0] if isinstance(value, tuple) and value else value
        if kind == "ok" and len(value) > 2 and value[2] is not None:
            c.leader = value[2]
        if op is None or op.req != req or op.attempt != attempt:
            # a late answer to a call we gave up on: still evidence for the checker
            if kind == "ok":
                self._late_ok(c, req, value)
            return
        assert op is not None
        self.trace_client(c, f"{op.kind} {_arg(op)} <- {_val(value)}")
        if kind == "ok":
            self._op_ok(c, op, value)
            c.op = None
            if op.kind == "open" and op.final:
                self._issue_cmd(c, final=True)      # the final command follows at once
                return
            self._next_wakeup(c)
        elif kind == "redirect" or kind == "noproc":
            leader = value[1] if kind == "redirect" else None
            op.hops += 1
            if leader is not None and leader != op.target and leader in self.servers:
                op.target = leader
                c.leader = leader
                self._send_op(c)
            else:
                c.leader = None
                op.target = self.random_member(exclude=op.target)
                backoff = min(10 * op.hops, 80)
                self.schedule(self.rng.randint(1, backoff), "resend", c.name, op.req)
        elif kind == "error" and op.sseq and value[1] == "nodedown" \
                and op.attempt < _MAX_ATTEMPTS:
            # the server died holding the call: outcome unknown, the session makes a retry safe
            self._retry_unknown(c, op)
        elif kind == "error" and isinstance(value[1], tuple) and value[1][0] == "machine_error":
            # applied as a no-op: a definite outcome; a final command is replaced by another
            assert op.kind == "cmd", (op, value)
            self.stats["machine_errors"] += 1
            c.op = None
            if op.final:
                self._issue_cmd(c, final=True)
            else:
                self._next_wakeup(c)
        else:
            if kind == "error" and value[1] == "session_expired":
                c.session = None         # open a new one for the next command
            if op.kind in ("cmd",):
                c.unknown += 1
            c.op = None
            if op.final:
                c.final_pending = False
            self._next_wakeup(c)

    def _retry_unknown(self, c: SimClient, op: Op) -> None:
        """Send the same session command again, elsewhere if need be, after a short pause."""
        self.trace_client(c, f"{op.kind} {_arg(op)}: outcome unknown, retrying")
        op.unknown = True
        self.stats["retries"] += 1
        op.target = self.random_member(exclude=op.target)
        self.schedule(self.rng.randint(1, 20), "resend", c.name, op.req)

    def _op_ok(self, c: SimClient, op: Op, value: Any) -> None:
        c.results.append((op.arg, value))
        if op.kind == "open":
            c.session = value[1]
            self.stats["sessions"] += 1
        elif op.kind == "cmd":
            idx = value[1][0]
            self.checker.on_ack(op.arg, idx, value[1][1])
            c.acked += 1
            self.stats["acked"] += 1
            if op.final:
                c.final_done = True
                c.final_pending = False
        elif op.kind == "query":
            self.checker.on_query_result(op.arg, value[1][1], value[1][0])
            self.stats["queries"] += 1
        elif op.kind == "join":
            self.stats["joins"] += 1
        elif op.kind == "leave":
            self.stats["leaves"] += 1
        elif op.kind == "transfer":
            self.stats["transfers"] += 1

    def _late_ok(self, c: SimClient, req: int, value: Any) -> None:
        kind, arg = c.issued.get(req, ("", None))
        self.trace_client(c, f"late answer to {kind} {arg!r}: {_val(value)}")
        if kind == "cmd":
            self.checker.on_ack(arg, value[1][0], value[1][1])
        elif kind == "query":
            self.checker.on_query_result(arg, value[1][1], value[1][0])

    def client_resend(self, name: str, req: int) -> None:
        c = self.clients[name]
        if c.op is not None and c.op.req == req:
            self._send_op(c)

    def client_timeout(self, name: str, req: int) -> None:
        c = self.clients[name]
        op = c.op
        if op is None or op.req != req:
            return
        if op.sseq and op.attempt < _MAX_ATTEMPTS:
            c.leader = None
            self._retry_unknown(c, op)
            return
        self.trace_client(c, f"{op.kind} {_arg(op)} timed out (outcome unknown)")
        if op.kind == "cmd":
            c.unknown += 1
            self.stats["unknown"] += 1
        c.leader = None              # whoever we talked to may be cut off: look again
        c.op = None
        self._next_wakeup(c)

    def client_mail(self, name: str, msg: Any) -> None:
        """A ``Notify`` (pipelined commands applied) or ``Cast`` (e.g. rejected) for a client."""
        c = self.clients[name]
        tag = msg[0]
        if tag == "applied":
            for corr, reply in msg[2]:
                self.checker.on_ack(corr, reply[0], reply[1])
                c.pipes.pop(corr, None)
                c.pipe_seqs.pop(corr, None)
                c.acked += 1
                self.stats["acked"] += 1
            self.trace_client(c, f"applied {[corr for corr, _ in msg[2]]}")
        else:
            self.trace_client(c, f"mail {msg!r}")
            c.leader = None
            if tag == "rejected":
                # not appended (not leader) or not applied (session error): no longer awaited
                c.pipe_seqs.pop(msg[1][2], None)
                if msg[1][0] == "session_expired":
                    c.session = None


#: attempts of one session command before the client gives up on it (outcome unknown)
_MAX_ATTEMPTS = 12


def _n(sid: Any) -> str:
    return str(getattr(sid, "name", sid))


def _arg(op: Op) -> str:
    if op.kind in ("join", "leave", "transfer"):
        return _n(op.arg)
    return repr(op.arg)


def _val(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 3 and v[0] == "ok":
        return f"ok {v[1]!r} (leader {_n(v[2])})"
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "redirect":
        return f"redirect to {_n(v[1]) if v[1] is not None else '?'}"
    return repr(v)
