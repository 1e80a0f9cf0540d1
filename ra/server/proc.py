"""Mirrors ra_server_proc.erl. The process shell around the pure core: one OS process per server.

It owns the mailbox, the timers, the disk log and meta store; it turns what arrives into core
messages, steps the core, and carries the effects out in order (``_handle_effect``: one branch
per effect type). It contains no Raft rule: every decision about terms and indexes is the core's.

Loop contract:

* everything already queued in the mailbox is drained (up to a batch) and stepped in order;
  ``NextEvent`` effects run after that batch, so a burst of commands leaves as one
  ``AppendEntriesRpc`` per peer and one WAL write; consecutive ``usr`` commands, pipelined
  or called (``PipelineCast``, ``PipelineBatch``, ``CommandCall``, of one priority), are
  stepped as one core ``Commands`` message, before whatever arrived after them, or at the end
  of the drain;
* after each batch the log is flushed to the WAL (one message) and a pending term/vote store
  is confirmed (``DiskMeta`` syncs before returning), so held replies go out;
* timers (election, heartbeat, tick) fire from the poll timeout, never from sleeps.

What arrives (the door, :meth:`ServerProc._dispatch`):

* peers cast ``("$rpc", msg)``, ``msg`` a peer RPC of :mod:`ra.core.messages` (the core
  validates it in ``step``; the shell only needs its sender id to be one); an append_entries
  with entries comes packed (:mod:`ra.server.packed`: unpacked here, its payloads kept for
  the WAL, a malformed one dropped as ``bad_*:AppendEntriesPacked``);
* clients send the typed requests of :mod:`ra.messages` (``CommandCall``, ``PipelineCast``,
  ``PipelineBatch``, ``ConsistentQueryCall``, ``LocalQueryCall``, ``LeaderQueryCall``,
  ``MembersCall``, ``AuxCall``, ``AuxCast``, ``InitialMembersCall``, ``TransferLeadershipCall``,
  ``TriggerElectionCall``, ``OverviewCall``, ``KeyMetricsCall``, ``PingCall``);
* the WAL casts its notices (:mod:`wal.messages`: ``WalWritten``, ``WalResendWrite``,
  ``WalStarted``, ``WalError``), the node's failure detector ``NodeEvent`` casts (stepped as
  the core's ``NodeDown`` / ``NodeUp``; the suspicions current at start come with the
  subscription), and node daemons' ``RegResolved`` casts (where a peer is: see below).

Peers are found without waiting (``_send_peer``): a peer whose address is not known is asked of
its node's daemon by a ``RegResolve`` cast (:class:`transport.registry.Resolver`; one on
another node through our own daemon, ``RegRelay``, over the daemons' connection), and only the
newest message for it is kept meanwhile (Raft copes with loss, and an older append_entries or
heartbeat is superseded by the newer); it leaves when ``RegResolved`` arrives, unless older than
an election timeout. A known address is kept while it works: it is replaced by the address a
peer's message comes from, and forgotten when the peer's connection closes or is refused (the
mailbox says so) and when the peer's node comes back up (nodeup); never merely because a quiet
peer was not heard from.

Each is checked once, at the door, by one validator per type; anything else (garbage, a
malformed or truncated message, a call sent as a cast, a message of another protocol) is
dropped and counted per reason (``overview()["bad_messages"]``, ``key_metrics()``), and a call
gets ``("error", "bad_request", reason)``. No handler raises on a message's shape.

Query functions (``"pkg.mod:func"``) are imported and run inside a guard: an import that
fails, a query that raises or a result that is not a term gives the caller
:class:`ra.errors.QueryError` and the server keeps running. A reply that is not a term (a
machine's reply) is answered ``("error", "not_a_term", text)`` instead of crashing the server.

Start-up: the mailbox first, then the machine is imported and built (the only place user code
is loaded: :mod:`ra.server.usercode`) and the outcome reported to the node daemon (calls
``ServerLoaded(name, pid)`` / ``ServerLoadFailed(name, pid, info)``) before the log, meta
store and snapshots are opened (a restart whose record the node holds durably, conf
``loaded_cast``, casts ``ServerLoaded`` and does not wait). A machine that does not load
leaves nothing on disk; the process logs the traceback, reports it and exits 0 (its supervisor
must not restart it). Recovered, the server calls ``ServerUp`` once: registered, first
metrics, subscribed to the node's failure detector.
"""
from __future__ import annotations

import ctypes
import gc
import importlib
import itertools
import logging
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import ra.wire  # noqa: F401  (registers the core messages with the codec)
from ra.node import logs
from ra import messages as rm
from ra.core import server as core
from ra.core.config import SERVER_DEFAULTS
from ra.core.effects import (
    SHELL_MACHINE_EFFECTS, Aux, BadMachineEffects, Cast, DeleteAndTerminate, Demonitor,
    DurableReply, GarbageCollection, InvalidEffect, ModCall, Monitor, NextEvent, Notify,
    RecordLeaderMsg, Reply, SendMsg, SendRpc, StartElectionTimeout, StartHeartbeatTimeout, Timer, machine_effects,
)
from ra.core.machine import SimpleMachine
from ra.core.messages import (
    PEER_MSGS, AppendEntriesPacked, AppendEntriesReply, AppendEntriesRpc, Command, Commands,
    HeartbeatRpc, InstallSnapshotRpc, ConsistentQuery, ElectionTimeout, HeartbeatTimeout,
    LeaderDown,
    MetaWritten, NodeDown, NodeUp, Tick, TransferLeadership, TriggerElection,
)
from ra.core.types import ServerId
from ra.errors import NodeLost, RaError, Timeout
from ra.log.log import DiskLog
from ra.log.meta import DiskMeta
from ra.server import packed
from ra.node import system
from transport import curvekeys  # noqa: F401  (every mailbox's default mechanism imports it)
from transport import failure_detector as fd
from transport import messages as tm
from transport import registry
from transport.direct import DirectMailbox
from transport.mailbox import DEAD, probe_endpoint
import wal
from wal import messages as wm

__all__ = ["run", "load_machine", "resolve_query", "ServerProc", "DEFAULTS"]

_log = logging.getLogger("ra.server.proc")
#: what a follower hears from a leader (it counts its election timeout from the last one)
_FROM_LEADER = (AppendEntriesRpc, HeartbeatRpc, InstallSnapshotRpc)

#: a server config's defaults (the schema's: ra.core.config.SERVER)
DEFAULTS: dict[str, Any] = SERVER_DEFAULTS
_BATCH = 512                # messages drained per loop turn

_MEMTABLE_ROLL = 8192       # entries in memory before asking the WAL to roll over
_TRIM_AFTER = 4096          # entries dropped from memory before the heap is trimmed
_chain = itertools.chain.from_iterable
_KNOWN_IDS_MAX = 1024       # server ids found valid and kept (ServerProc._server_id)
_GC_GEN0 = 20_000           # allocations between young collections (CPython's default: 700)
_MONITOR_INTERVAL = 0.1     # how often the leader checks monitored client processes
_RESOLVE_TIMEOUT = 1.0      # s a peer's node has to answer a RegResolve (nothing waits on it)
_RESOLVE_BACKOFF = 0.5      # then it is not asked for that long, doubled per miss (up to 4 s)
_WAL_FENCE_TIMEOUT = 30.0   # s the node's WAL has to answer this process's WalFence at start

#: the one check of everything a server serves, by type (peer RPCs: the core's)
_check = tm.checker({k: rm.CHECKS[k] for k in rm.SERVER_CALLS + rm.SERVER_CASTS},
                    {k: wm.CHECKS[k] for k in wm.WAL_NOTICES},
                    {k: tm.CHECKS[k] for k in (tm.NodeEvent, tm.RegResolved)})
_CALLS = frozenset(rm.SERVER_CALLS)


def _door(p: Any, kind: str) -> str | None:
    """Why a server drops ``p`` arriving as ``kind`` (``None``: it is served). Peer RPCs
    (``("$rpc", msg)`` casts) do not come here: the core checks them."""
    reason = _check(p)
    if reason is None and (type(p) in _CALLS) != (kind == "call"):
        reason = f"bad_kind:{type(p).__name__}"
    return reason


def load_machine(spec: Any) -> Any:
    """Build the machine object from ``("module", "pkg.mod:Class", config)`` or
    ``("simple", "pkg.mod:func", initial_state)``. Raises ImportError/AttributeError/TypeError."""
    kind, path, arg = spec
    obj = _import_path(path)
    if kind == "module":
        return obj() if isinstance(obj, type) else obj
    if kind == "simple":
        return SimpleMachine(obj, arg)
    raise TypeError(f"machine kind must be 'module' or 'simple', not {kind!r}")


def _import_path(path: str) -> Any:
    if not isinstance(path, str) or ":" not in path:
        raise TypeError(f"expected 'pkg.module:name', got {path!r}")
    mod, _, name = path.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def resolve_query(q: Any) -> Callable[[Any], Any]:
    """A query sent over the wire: ``"pkg.mod:func"`` or ``("pkg.mod:func", args)`` (called as
    ``func(state, *args)``). An import that raises or exits (``SystemExit``) raises
    ``ImportError`` naming it: a query never ends the server; a module that imports but lacks
    the name raises ``AttributeError``."""
    path, args = (q, ()) if isinstance(q, str) else q
    mod, _, name = path.partition(":")
    try:
        obj: Any = importlib.import_module(mod)
    except (Exception, SystemExit) as e:
        from ra.server.usercode import describe
        raise ImportError(f"cannot import query function {path!r}: {describe(e)}") from None
    for part in name.split("."):
        obj = getattr(obj, part)
    fun = obj
    if isinstance(q, str):
        return fun          # type: ignore[no-any-return]
    return lambda state: fun(state, *args)


class _MachineNotLoaded(Exception):
    """The machine did not load; the daemon has been told (or could not be)."""

    def __init__(self, reported: bool) -> None:
        super().__init__("machine not loaded")
        self.reported = reported


class ServerProc:
    """One ra server process (see the module docstring)."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = {**DEFAULTS, **conf}
        c = self.conf
        self.node: str = c["node"]
        self.id = ServerId(c["name"], self.node)
        self.sys = _system_config(c["system"])
        # bound on the node's listen host, known by its node's (advertised) host: peers on
        # other hosts reach it there (a wildcard listen binds every interface)
        host = system.listen_host(self.sys.listen) or "127.0.0.1"
        bind = f"tcp://[{host}]:0" if ":" in host else f"tcp://{host}:0"
        # no libzmq I/O thread: on a loaded machine its two extra wake-ups per message cost
        # more than the work (transport/direct.py); peers on this host use the ipc address
        self.mb = DirectMailbox(bind, also=[system.server_ipc_endpoint(self.sys)],
                                blocking_connect=False,
                                advertise=f"{self.node.rpartition(':')[0]}:0")
        self.mb.on_peer_closed = self._on_peer_closed
        self.mb.on_peer_unreachable = self._forget_endpoint
        self.daemon_ep = registry.node_endpoint(self.node)
        #: when each step of this process's start ended (a slow start says which step)
        self.start_marks: list[tuple[str, float]] = [("began", time.monotonic())]
        try:
            machine = self._load_machine()
        except BaseException:
            self.mb.close()
            raise
        self.start_marks.append(("machine loaded", time.monotonic()))
        self.wal_ep = system.wal_endpoint(self.sys)
        self.log = DiskLog(c["uid"], self.sys.data_dir, wal_dir=system.wal_dir(self.sys),
                           send=self._send_wal, fence=self._fence_wal,
                           segment_max_entries=self.sys.segment_max_entries,
                           max_checkpoints=c["max_checkpoints"],
                           min_checkpoint_interval=c["min_checkpoint_interval"])
        self.meta = DiskMeta(os.path.join(self.sys.data_dir, c["uid"]))
        members = tuple(ServerId(*m) for m in c["initial_members"])
        self.cfg = core.ServerConfig(
            id=self.id, uid=c["uid"], cluster_name=c["cluster_name"], initial_members=members,
            machine=machine, log=self.log, meta=self.meta,
            machine_config=c["machine"][2] if c["machine"][0] == "module" else None,
            max_append_entries_rpc_batch_size=c["max_append_entries_rpc_batch_size"],
            max_pipeline_count=c["max_pipeline_count"],
            low_priority_batch_size=c["low_priority_batch_size"],
            snapshot_chunk_size=c["snapshot_chunk_size"], quiet_when_idle=c["quiet_when_idle"],
            durable_replies=c["durable_replies"])
        self.start_marks.append(("log opened", time.monotonic()))
        self.role, self.state, effects = core.init(self.cfg)
        self.start_marks.append(("state recovered", time.monotonic()))
        self.timers: dict[str, float] = {}
        self.next_events: list[Any] = []
        #: client-bound effects of this loop turn, carried out at its end (_answer_clients)
        self.to_clients: list[Any] = []
        self.hold_until = 0.0       # when a group-commit hold ends at the latest (_hold)
        self.peer_eps: dict[ServerId, str] = {}
        self.known_ids: dict[Any, ServerId] = {}
        self.leader_heard = 0.0
        # peers on other nodes are resolved through our own daemon (connected already),
        # not by a connection (and one back) to theirs: a node restart resolves thousands
        self.resolver = registry.Resolver(self.mb, timeout=_RESOLVE_TIMEOUT,
                                          backoff=_RESOLVE_BACKOFF, relay=self.daemon_ep)
        #: peer being resolved -> (when queued, its newest message, ready to cast)
        self.held: dict[ServerId, tuple[float, Any]] = {}
        self.running = True
        self.rng = random.Random()
        self.monitored_leader: Any = None
        self.reported_role = ""
        self.tick_written = -1
        self.tick_roll_asked = 0
        #: messages dropped at the door, by reason (overview, key_metrics)
        self.bad_messages: dict[str, int] = {}
        self.dropped_since_trim = 0
        self.proc_monitors: set[str] = set()
        self.node_monitors: set[str] = set()
        self.machine_timers: dict[Any, float] = {}
        #: monotone counts since this process started, reported with the metrics
        # (peer messages and election/heartbeat timeouts: an idle quiet server's stay still,
        # so they cost no metrics report; tests and bench.idle_wakes read them)
        self.counters = {"commands": 0, "elections": 0, "leader_changes": 0, "snapshots": 0,
                         "snapshots_installed": 0, "peer_msgs_in": 0, "peer_msgs_out": 0,
                         "durable_replies": 0,
                         "timeouts": 0, "resolve_requests": 0, "resolved": 0,
                         "resolve_timeouts": 0, "resolve_dropped": 0, "turns": 0,
                         "wal_msgs_out": 0}
        init_aux = getattr(self.state.machine, "init_aux", None)
        self.aux_state: Any = init_aux(c["cluster_name"]) if init_aux else None
        # ticks spread out: a random phase, then a jittered period, so the servers a node starts
        # together (or restarts: 1,000 of them) do not all wake in the same millisecond
        self.timers["tick"] = time.monotonic() + c["tick_ms"] / 1000 * self.rng.uniform(1, 2)
        self.last_metrics: Any = None
        self.fd_subscribed = False
        self.tick_scale = 1                    # ticks an idle server skips (see _tick)
        self.tick_commit = 0
        self.fd_watched: set[str] = set()      # nodes the detector was asked to watch
        #: pipelined commands of this loop turn not yet stepped (``Commands.cmds``) and their
        #: priority
        self.pipe_cmds: list[Any] = []
        self.pipe_prio = "low"
        self._handle_effects(effects)

    # -- start / stop ---------------------------------------------------------------------
    def _load_machine(self) -> Any:
        """Import and build the machine, and tell the daemon how it went (see the module
        docstring). Raises _MachineNotLoaded after a failure; RaError if the daemon cannot be
        told of a success (the process then exits abnormally and is restarted)."""
        spec = tuple(self.conf["machine"])
        try:
            machine = load_machine(spec)
        except BaseException as e:      # SystemExit and KeyboardInterrupt too: report them
            from ra.server.usercode import failure_info
            _log.error("cannot load machine %r (python %s)", spec[1], sys.executable,
                       exc_info=True)
            try:
                self.mb.call(self.daemon_ep, rm.ServerLoadFailed(self.id.name, os.getpid(),
                                                                 failure_info(spec, e)),
                             timeout=5.0)
            except RaError as err:
                _log.error("could not report it to the node daemon: %s", err)
                raise _MachineNotLoaded(False) from None
            raise _MachineNotLoaded(True) from None
        if self.conf.get("loaded_cast"):
            # a restart: the node holds our record durably, nothing to wait for (the cast
            # leaves with our first call, ServerUp, on the same connection; a ServerUp also
            # counts as loaded should the cast be lost)
            self.mb.cast(self.daemon_ep, rm.ServerLoaded(self.id.name, os.getpid()))
            return machine
        for attempt in range(3):    # a daemon restarting 1,000 servers may answer late
            try:
                self.mb.call(self.daemon_ep, rm.ServerLoaded(self.id.name, os.getpid()),
                             timeout=5.0)
                break
            except (Timeout, NodeLost):     # idempotent: asked again
                if attempt == 2:
                    raise
        return machine

    def register(self) -> None:
        """Tell the node we are up (``rm.ServerUp``: registered under our name, first metrics,
        subscribed to the failure detector), in one round trip; then have the detector watch
        our members' nodes. Raises if the name is taken or the node cannot be told."""
        metrics = self._metrics()
        self.last_metrics = metrics
        res = registry.call_daemon(self.mb, self.node, rm.ServerUp(
            self.id.name, list(self.mb.addresses), os.getpid(), self.mb.address, metrics),
            timeout=5.0)
        if not (isinstance(res, tuple) and len(res) == 2 and res[0] == "ok"
                and isinstance(res[1], dict)):
            raise RuntimeError(f"cannot register {self.id.name!r} on {self.node}: {res!r:.200}")
        status = res[1]
        self.fd_subscribed = True
        self.start_marks.append(("registered", time.monotonic()))
        # nodes the detector already watches (for another server of this node) need no
        # FdWatch of ours: two round trips less per server on a busy node
        self.fd_watched.update(n for n in status if isinstance(n, str))
        self._watch_member_nodes()
        # the core starts trusting every node: tell it what the detector suspects now
        for node, st in status.items():
            if st == fd.DOWN and isinstance(node, str):
                self._step(NodeDown(node))
        self.start_marks.append(("subscribed", time.monotonic()))
        marks = self.start_marks
        if marks[-1][1] - marks[0][1] > _SLOW_START_S:
            _log.info("slow start: %.2f s (%s)", marks[-1][1] - marks[0][1], ", ".join(
                f"{b[0]} +{b[1] - a[1]:.2f}" for a, b in itertools.pairwise(marks)))

    def _watch_member_nodes(self) -> None:
        """Have the node's failure detector watch every member's node (at start, and for a
        member added later: quiet mode counts on the detector to report its node down)."""
        for m in self.state.cluster:
            node = ServerId(*m).node
            if node != self.node and node not in self.fd_watched:
                try:
                    self.mb.call(self.daemon_ep, tm.FdWatch(node), timeout=2.0)
                except RaError as e:     # this node's leader is then replaced more slowly
                    _log.warning("%s: cannot watch node %s: %s", self.id, node, e)
                    continue
                self.fd_watched.add(node)

    def stop(self) -> None:
        self.running = False

    def close(self) -> None:
        # No unregister call: the daemon may be the one stopping us (and busy waiting for our
        # exit); it prunes the names of dead pids itself.
        try:
            self.meta.flush_last_applied()
            self.log.flush()
            self._answer_clients()
        except Exception:   # shutting down: nothing more can be done about it here
            _log.exception("%s: error while closing", self.id)
        self.log.close()
        self.mb.close()

    # -- the loop -------------------------------------------------------------------------
    def loop(self) -> int:
        # a signal (SIGTERM: stop) wakes the poll at once instead of at the next timer; the
        # mailbox polls the pipe with its sockets: one poll per loop turn
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)

        def drain_wake() -> None:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        self.mb.watch(wake_r, drain_wake)
        batch = _BATCH
        while self.running:
            now = time.monotonic()
            due = min(self.timers.values()) if self.timers else now + 1.0
            if self.machine_timers:
                due = min(due, min(self.machine_timers.values()))
            if self.hold_until and not self.mb.pending:
                wait = max(0.0, min(due, self.hold_until) - now)
            else:
                wait = 0 if (self.next_events or self.mb.pending) else max(0.0, due - now)
            if wait > 0:
                self.mb.wait_input(wait)
            envs = self.mb.recv_many(batch, 0)
            if envs:
                self.counters["turns"] += 1
                for env in envs:
                    self._dispatch(env)
            if self.pipe_cmds:
                self._step_pipes()
            if self.next_events and self._hold(time.monotonic()):
                if time.monotonic() >= due:
                    self._fire_timers()
                if self.to_clients:
                    self._answer_clients()
                continue
            if self.next_events:
                self._step_next_events()
            if time.monotonic() >= due:       # most wake-ups are messages, not timers
                self._fire_timers()
            self._after_batch()
        return 0

    def _step_next_events(self) -> None:
        """Step the queued next events (a leader's ``FlushCommands``: the append_entries of
        the batch), then send the turn's WAL write (:meth:`_after_batch` flushes again, for
        what the rest of the turn queues).

        The appends leave first: the commit waits for the quorum's second durable copy,
        which in W1 is a follower's in 89 % of commands (its reply, not our own ``Written``,
        was the last step before the answer in a trace of 2,000), and a follower's copy
        is two hops and its own WAL's fsync away while ours is one hop away. The WAL runs
        at a higher priority than servers: a WAL write sent first can take the CPU from the
        leader before the appends leave."""
        while self.next_events:
            evs, self.next_events = self.next_events, []
            for ev in evs:
                self._step(ev)
        self.log.flush()

    def _hold(self, now: float) -> bool:
        """Group commit: whether to hold the queued events back now. The core decides
        (``core.holds_flush``: a leader whose previous batch is not committed); the shell keeps
        the time cap, ``group_commit_ms``. The commands that arrive meanwhile leave together:
        one append per follower and one WAL write for all. Under load that means fewer, larger
        batches and fewer wake-ups of every process (W2 with 32 client processes: ≈ 20 % less
        CPU per command, 6.5 instead of 7.5-9 context switches); a leader with nothing
        uncommitted (one client at a time: W1) never waits. Timers still fire meanwhile."""
        if not self.conf["group_commit_ms"] or not core.holds_flush(self.state):
            self.hold_until = 0.0
            return False
        if not self.hold_until:
            self.hold_until = now + self.conf["group_commit_ms"] / 1000
        if now < self.hold_until:
            return True
        self.hold_until = 0.0
        return False

    def _after_batch(self) -> None:
        self.log.flush()
        if self.to_clients:
            self._answer_clients()
        if self.tick_scale > 1 and self.state.commit_index != self.tick_commit:
            # busy again: housekeeping (metrics, memory, WAL resends) at the normal pace
            self.tick_scale = 1
            self.timers["tick"] = min(self.timers.get("tick", math.inf),
                                      time.monotonic() + self.conf["tick_ms"] / 1000)

    def _answer_clients(self) -> None:
        """Carry out the effects addressed to clients (``Reply``, ``Notify``, ``Cast``), in
        their order, once the loop turn's own work has left: the WAL write and the appends of
        the next batch go first. Each answer wakes a client, and a woken client may take the
        CPU from this process at once (W2: 32 client processes on 2 cores; ≈ 40 % of the
        leader's context switches were such preemptions): the replication of the next batch
        then waited behind the clients of the last."""
        out, self.to_clients = self.to_clients, []
        for e in out:
            t = type(e)
            if t is Reply:
                self._reply(e.frm, e.value)
            elif t is Notify:
                # flat on the wire: a pair is a tuple the codec encodes and decodes through
                # Python hooks (0.9 us a command, leader and client); ra.Client pairs them
                self.mb.cast(e.pid, ("ra_event", e.leader,
                                     (rm.APPLIED_FLAT, list(_chain(e.applied)))))
            else:
                self.mb.cast(e.to, e.msg)

    def _fire_timers(self) -> None:
        now = time.monotonic()
        for name in [n for n, t in self.timers.items() if t <= now]:
            del self.timers[name]
            if name == "election":
                self.counters["timeouts"] += 1
                self._step(ElectionTimeout())
            elif name == "heartbeat":
                self.counters["timeouts"] += 1
                self._step(HeartbeatTimeout())
            elif name == "tick":
                self._tick(now)
            elif name == "metrics":
                self._report_metrics()
            elif name == "resolve":
                self._resolve_expired()
            elif name == "monitors":
                self._check_monitors()
                if self.proc_monitors:       # no timer while nothing is monitored
                    self.timers["monitors"] = now + _MONITOR_INTERVAL
        if self.machine_timers:
            self._fire_machine_timers(now)

    def _tick(self, now: float) -> None:
        """Housekeeping, every ``tick_ms`` (jittered): O(1) for an idle server (metrics sent
        only when changed, the segment directory listed only when it changed, nothing in
        memory to drop). A tick that found nothing to do doubles the next interval, up to
        ``_TICK_BACKOFF`` ticks, unless this server leads and its machine has a ``tick``
        callback (ra calls it every ``tick_ms``); a commit brings the pace back at once."""
        changed = self._report_metrics()
        self.meta.flush_last_applied()
        self._step(Tick(_now_ms()))
        dropped = self.log.tick()
        self.dropped_since_trim += dropped
        if self.dropped_since_trim >= _TRIM_AFTER:
            # thousands of entries just left memory for segment files: hand the freed heap
            # back to the OS, or the process keeps its peak size for good (W6)
            self.dropped_since_trim = 0
            _release_memory()
        if len(self.log.mem) > _MEMTABLE_ROLL and self.tick_roll_asked != len(self.log.mem):
            # entries leave memory once they are in segment files, and segments are made from
            # closed WAL files: ask the WAL to close its file when our tail grows large
            self.tick_roll_asked = len(self.log.mem)
            self.mb.cast(self.wal_ep, wm.WalRollOver())
        written = self.log.last_written()[0]
        if written < self.log.last_index_term()[0] and written == self.tick_written:
            # confirmations stalled for a whole tick: the WAL may have restarted while we were
            # idle (a busy server learns it from wal_started); resend what is unconfirmed
            self.log.resend_unconfirmed()
        self.tick_written = written
        self.tick_commit = self.state.commit_index
        machine_tick = self.role == "leader" \
            and getattr(self.state.machine, "tick", None) is not None
        if changed or dropped or machine_tick or written < self.log.last_index_term()[0]:
            self.tick_scale = 1
        else:
            self.tick_scale = min(2 * self.tick_scale, _TICK_BACKOFF)
        self.timers["tick"] = now + self.tick_scale * self.conf["tick_ms"] / 1000 \
            * self.rng.uniform(1 - _TICK_JITTER, 1 + _TICK_JITTER)

    def _metrics(self) -> dict[str, Any]:
        metrics = _key_metrics(self.state)
        metrics["bad_messages"] = self._bad_counts()
        metrics["counters"] = dict(self.counters)
        return metrics

    def _report_metrics(self) -> bool:
        """key_metrics are answered by the node daemon from these reports (no server call);
        an idle server's are the same every tick: only a change is sent (returns whether)."""
        self.reported_role = self.role
        metrics = self._metrics()
        if metrics == self.last_metrics:
            return False
        self.last_metrics = metrics
        self.mb.cast(self.daemon_ep, rm.MetricsReport(self.id.name, metrics))
        return True

    def _step(self, msg: Any) -> None:
        effects = self._core_step(msg)
        if self.state.meta_seq > self.state.meta_synced:
            # DiskMeta synced before returning from store(): confirm it at once
            for ev in self.meta.sync() or [MetaWritten(self.state.meta_seq)]:
                effects += self._core_step(ev)
        self._handle_effects(effects)

    def _core_step(self, msg: Any) -> list[Any]:
        """One step of the core, and what the shell notes about it: counters and log lines
        for role, leader, membership and snapshot changes."""
        role, cluster, leader = self.role, self.state.cluster, self.state.leader_id
        snap = self.log.snapshot_index_term()
        self.role, self.state, effects = core.step(self.role, msg, self.state)
        s = self.state
        if self.log.snapshot_index_term() != snap:
            self._snapshot_changed(msg)
        if s.leader_id != leader and s.leader_id is not None:
            self.counters["leader_changes"] += 1
        if self.role != role:
            if self.role == "candidate":
                self.counters["elections"] += 1
            _log.info("%s -> %s in term %d (leader %s)", role, self.role, s.current_term,
                      _sid(s.leader_id))
            self.timers["metrics"] = time.monotonic()    # report role changes promptly
            if role == "leader":
                self._leader_effects_lost()
        elif s.leader_id != leader and s.leader_id is not None:
            _log.info("leader is now %s in term %d", _sid(s.leader_id), s.current_term)
        if s.cluster is not cluster and s.cluster != cluster:
            _log.info("members now %s (as of index %d)", ", ".join(_sid(m) for m in s.cluster),
                      s.cluster_index_term[0])
            if self.fd_subscribed:
                self._watch_member_nodes()
        return effects

    def _snapshot_changed(self, msg: Any) -> None:
        """The step wrote a snapshot: taken here (release cursor, promoted checkpoint) or
        installed from the leader."""
        idx, term = self.log.snapshot_index_term()
        if type(msg) is InstallSnapshotRpc:
            self.counters["snapshots_installed"] += 1
            _log.info("installed the snapshot of leader %s at index %d, term %d",
                      _sid(msg.leader_id), idx, term)
        else:
            self.counters["snapshots"] += 1
            _log.info("snapshot taken at index %d, term %d", idx, term)

    # -- incoming -------------------------------------------------------------------------
    def _dispatch(self, env: Any) -> None:
        """The door: every envelope is checked once here, then served by one handler."""
        p = env.payload
        if self.pipe_cmds and type(p) not in _PIPE_TYPES:
            self._step_pipes()          # what arrived before this is stepped before it
        if (type(p) is tuple and len(p) == 2 and p[0] == "$rpc" and type(p[1]) in _PEER_TYPES
                and env.kind == "cast"):
            self._peer(env, p[1])
            return
        reason = _door(p, env.kind)
        if reason is not None:
            self._bad(env, reason)
            return
        _HANDLERS[type(p)](self, env, p)

    def _bad(self, env: Any, reason: str) -> None:
        n = self.bad_messages[reason] = self.bad_messages.get(reason, 0) + 1
        if n <= 3 or n % 1000 == 0:      # a flood of garbage is not a flood of log lines
            _log.warning("%s: dropped message (%s #%d): %.200r", self.id, reason, n, env.payload)
        if env.kind == "call":
            self.mb.reply(env.frm, ("error", tm.BAD_REQUEST, reason))

    def _bad_counts(self) -> dict[str, int]:
        """Everything this server dropped, by reason: at its door, in the core (a peer RPC
        that decoded but is malformed), and in its mailbox (frames that were not envelopes)."""
        out = dict(self.bad_messages)
        for k, v in self.state.dropped.items():
            out[f"core:{k}"] = v
        for k in ("garbage", "bad_version", "bad_envelope", "bad_frames", "oversize"):
            v = self.mb.counters.get(k, 0)
            if v:
                out[f"mailbox:{k}"] = v
        return out

    def _peer(self, env: Any, msg: Any) -> None:
        self.counters["peer_msgs_in"] += 1
        if type(msg) is AppendEntriesPacked:
            try:
                msg, cmds, payloads = packed.unpack(msg)
            except packed.BadPacked as e:
                self._bad(env, e.reason)
                return
            # the core writes these very entries (or drops them): their bytes go to the WAL
            self.log.carry(msg.prev_log_index + 1, cmds, payloads)
        sender = getattr(msg, "from_id", None) or getattr(msg, "leader_id", None) \
            or getattr(msg, "candidate_id", None)
        if sender is not None:
            sid = self._server_id(sender)
            if sid is None:
                self._bad(env, f"bad_sender:{type(msg).__name__}")
                return
            if isinstance(msg, _FROM_LEADER):
                self.leader_heard = time.monotonic()    # election timeouts count from here
            if env.frm and self.peer_eps.get(sid) != env.frm:
                # a cast carries its sender's mailbox address: a peer that restarted
                # and bound elsewhere is found again by its first message
                self.peer_eps[sid] = env.frm
                if sid in self.held:
                    self._send_held(sid, env.frm)
        self._step(msg)

    def _server_id(self, x: Any) -> ServerId | None:
        """``x`` from the network as a checked ``ServerId``, or None if it is not one (a node
        that is not "host:port": the doors' shape checks admit forms ``ServerId`` refuses).
        The few ids a server hears from are kept: each message's sender costs one lookup."""
        if not tm.sid(x):           # a tuple of two str: hashable
            return None
        sid = self.known_ids.get(x)
        if sid is not None:
            return sid
        try:
            sid = ServerId(*x)
        except (TypeError, ValueError):
            return None
        if len(self.known_ids) >= _KNOWN_IDS_MAX:
            self.known_ids.clear()
        self.known_ids[sid] = sid
        return sid

    def _on_wal(self, env: Any, msg: Any) -> None:
        for ev in self.log.handle_wal_event(msg):
            self._step(ev)

    def _on_node_event(self, env: Any, msg: tm.NodeEvent) -> None:
        fd.apply_node_event(self.mb, msg)
        node = msg.node
        for sid in [x for x in self.peer_eps if x.node == node]:
            del self.peer_eps[sid]        # re-resolve: its servers may have moved
        self.resolver.forget_node(node)
        # aten-style: a follower whose leader's node goes down campaigns; a quiet leader
        # counts the members there as unheard (ra.core.server, "Quiet when idle")
        self._step(NodeDown(node) if msg.event == "nodedown" else NodeUp(node))
        if node in self.node_monitors and self.role == "leader":
            self._step(Command("usr", (msg.event, node), None, "normal", _now_ms()))

    # -- client requests (one handler per message type; the door checked every field) ------
    def _on_command(self, env: Any, m: rm.CommandCall) -> None:
        if m.kind == "usr":
            # stepped with the other usr commands of this loop turn as one core Commands
            # message (W2: 32 callers), each answered at its own address
            if m.priority != self.pipe_prio:
                self._pipe_priority(m.priority)
            session = m.session
            if session is None:
                self.pipe_cmds += (m.payload, ("await", env.frm), None, 0, 0)
            else:
                self.pipe_cmds += (m.payload, ("await", env.frm), *session)
            return
        if self.pipe_cmds:
            self._step_pipes()          # what arrived before this is stepped before it
        self.counters["commands"] += 1
        frm = env.frm
        payload = m.payload
        if m.kind in ("join", "leave"):
            payload = self._server_id(payload)
            if payload is None:
                self._bad(env, f"bad_server_id:{m.kind}")
                return
            mode: Any = ("after_log_append", frm)
        else:
            mode = ("await", frm)
        self._step(Command(m.kind, payload, mode, m.priority, _now_ms(), m.session))

    def _on_pipeline(self, env: Any, m: rm.PipelineCast) -> None:
        mode = ("notify", m.correlation, m.pid) if m.correlation is not None else None
        if m.priority != self.pipe_prio:
            self._pipe_priority(m.priority)
        session = m.session
        if type(session) is tuple:      # the older triple; else the flat form, or None
            self.pipe_cmds += (m.payload, mode, *session)
        else:
            self.pipe_cmds += (m.payload, mode, session, m.seq, m.first_out)

    def _on_pipeline_batch(self, env: Any, m: rm.PipelineBatch) -> None:
        if m.priority != self.pipe_prio:
            self._pipe_priority(m.priority)
        # the session fields travel as Commands carries them: only the reply mode is made
        cs, pid, out = m.cmds, m.pid, self.pipe_cmds
        for i in range(0, len(cs), rm.PIPELINE_STRIDE):
            corr = cs[i + 1]
            out += (cs[i], None if corr is None else ("notify", corr, pid), cs[i + 2],
                    cs[i + 3], cs[i + 4])

    def _pipe_priority(self, prio: str) -> None:
        """Commands of another priority follow: step those gathered so far first."""
        if self.pipe_cmds:
            self._step_pipes()
        self.pipe_prio = prio

    def _step_pipes(self) -> None:
        """Step the pipelined commands gathered so far as one core message."""
        cmds, self.pipe_cmds = self.pipe_cmds, []
        self.counters["commands"] += len(cmds) // 5
        self._step(Commands(self.pipe_prio, _now_ms(), cmds))

    def _on_consistent_query(self, env: Any, m: rm.ConsistentQueryCall) -> None:
        self._step(ConsistentQuery(env.frm, self._query(m.query)))

    def _on_local_query(self, env: Any, m: Any) -> None:
        s = self.state
        if type(m) is rm.LeaderQueryCall and self.role != "leader":
            self.mb.reply(env.frm, ("redirect", s.leader_id))
            return
        fun = self._query(m.query)
        idx = s.last_applied
        term = s.log.fetch_term(idx) or 0
        self._reply(env.frm, ("ok", ((idx, term), fun(s.machine_state), s.leader_id),
                              s.leader_id))

    def _on_members(self, env: Any, m: rm.MembersCall) -> None:
        s = self.state
        if m.leader and self.role != "leader":
            self.mb.reply(env.frm, ("redirect", s.leader_id))
            return
        self.mb.reply(env.frm, ("ok", (list(s.cluster), s.leader_id), s.leader_id))

    def _on_aux(self, env: Any, m: Any) -> None:
        if type(m) is rm.AuxCall:
            self._aux("call", m.cmd, env.frm)
        else:
            self._aux("cast", m.cmd, None)

    def _on_initial_members(self, env: Any, m: rm.InitialMembersCall) -> None:
        self.mb.reply(env.frm, ("ok", list(self.cfg.initial_members), self.state.leader_id))

    def _on_transfer_leadership(self, env: Any, m: rm.TransferLeadershipCall) -> None:
        target = self._server_id(m.target)
        if target is None:
            self._bad(env, "bad_server_id:transfer_leadership")
            return
        self._step(TransferLeadership(env.frm, target))

    def _on_trigger_election(self, env: Any, m: rm.TriggerElectionCall) -> None:
        self._step(TriggerElection(env.frm))

    def _on_overview(self, env: Any, m: rm.OverviewCall) -> None:
        s = self.state
        ov = core.overview(s)
        ov["log"] = self.log.overview()
        ov["pid"] = os.getpid()
        ov["machine"] = _machine_overview(s)
        ov["bad_messages"] = self._bad_counts()
        ov["counters"] = dict(self.counters)
        self._reply(env.frm, ("ok", ov, s.leader_id))

    def _on_key_metrics(self, env: Any, m: rm.KeyMetricsCall) -> None:
        metrics = _key_metrics(self.state)
        metrics["bad_messages"] = self._bad_counts()
        self.mb.reply(env.frm, ("ok", metrics, self.state.leader_id))

    def _on_ping(self, env: Any, m: rm.PingCall) -> None:
        self.mb.reply(env.frm, ("ok", ("pong", self.role), self.state.leader_id))

    def _reply(self, frm: Any, value: Any) -> None:
        """``mb.reply``, except that a value that is not a term (a machine's reply, a query's
        result) is answered ``("error", "not_a_term", why)``: the caller learns it, the server
        keeps running."""
        try:
            self.mb.reply(frm, value)
        except TypeError as e:
            self.mb.reply(frm, ("error", "not_a_term", str(e)))

    def _query(self, q: Any) -> Callable[[Any], Any]:
        """A guarded query function: importing ``q`` (``"pkg.mod:func"`` or ``(path, args)``)
        and running it happen inside the guard, so a module that does not import here, a
        function that raises, anything, comes back as ``("$query_error", text, module)``
        (``ra.QueryError`` for the caller) instead of crashing the server."""
        node = self.node

        def safe(state: Any) -> Any:
            try:
                fun = resolve_query(q)
            except Exception as e:
                return _query_import_error(q, e, node)
            try:
                return fun(state)
            except Exception as e:   # a bad query must not crash the server
                return ("$query_error", f"{type(e).__name__}: {e}", None)
        return safe

    # -- effects --------------------------------------------------------------------------
    def _handle_effects(self, effects: list[Any]) -> None:
        n = len(effects)
        i = 0
        while i < n:
            e = effects[i]
            if type(e) is SendRpc and i + 1 < n and type(effects[i + 1]) is SendRpc \
                    and effects[i + 1].msg == e.msg:
                # the same RPC to several peers (append_entries to followers in step, votes):
                # encode it once
                j = i + 1
                while j < n and type(effects[j]) is SendRpc and effects[j].msg == e.msg:
                    j += 1
                self._send_peers([x.to for x in effects[i:j]], e.msg)
                i = j
                continue
            self._handle_effect(e)
            i += 1

    def _handle_effect(self, e: Any) -> None:
        t = type(e)
        if t is SendRpc:
            self._send_peer(e.to, e.msg)
        elif t is DurableReply:
            # a command that waits alone: the hop is its latency. A batch's answer is shared
            # by its commands; W2's (5-10 per append) ran 8-12 % slower in session 24's
            # sitting with each sent by the WAL, at par answered after Written: declined
            if e.entries == 1:
                self._durable_reply(e.to, e.msg)
        elif t is Reply or t is Notify or t is Cast:
            self.to_clients.append(e)       # at the end of the loop turn (_answer_clients)
        elif t is NextEvent:
            self.next_events.append(e.event)
        elif t is StartElectionTimeout:
            t0 = self.conf["election_timeout_ms"] / 1000
            if e.check_quorum:
                delay = t0
            elif e.since_leader:
                delay = (max(0.0, self.leader_heard + t0 - time.monotonic())
                         + e.turn * t0 / 5 + self.rng.uniform(0, t0 / 20))
            elif e.short:
                turn = 0 if e.at_once else e.turn
                delay = turn * t0 / 5 + self.rng.uniform(0, t0 / 20)
            else:
                delay = self.rng.uniform(t0, 2 * t0)
            self.timers["election"] = time.monotonic() + delay
        elif t is StartHeartbeatTimeout:
            # one-shot, as every timer here: one the core does not re-arm (an idle quiet leader's
            # heartbeat, a quiet follower's election timer) never wakes this process again
            self.timers["heartbeat"] = (time.monotonic()
                                        + e.periods * self.conf["heartbeat_ms"] / 1000)
        elif t is RecordLeaderMsg:
            self._monitor_leader(e.leader_id)
        elif t in _SHELL_MACHINE_EFFECTS:
            self._machine_effect(e)
        elif t is BadMachineEffects:
            _log.warning("%s: the machine's %s returned a malformed effect; its effects were "
                         "dropped: %s", self.id, e.callback, e.reason)
        elif t is DeleteAndTerminate:
            # the daemon stops this process (SIGTERM) and deletes its data and name
            self.log.flush()
            self.mb.cast(self.daemon_ep, rm.ForceDeleteServer(self.id.name))
        else:
            raise TypeError(f"unknown effect {e!r}")

    def _machine_effect(self, me: Any) -> None:
        """Carry out one typed machine effect of the shell's kinds (``ra.core.effects``)."""
        t = type(me)
        try:
            if t is SendMsg:
                msg = ("ra_event", self.id, ("machine", me.msg)) if "ra_event" in me.options \
                    else me.msg
                self.mb.cast(me.to, msg)
            elif t is Monitor:
                self._monitor(me.kind, me.target, True)
            elif t is Demonitor:
                self._monitor(me.kind, me.target, False)
            elif t is ModCall:
                _import_path(me.path)(*me.args)
            elif t is Timer:
                if me.ms is None:
                    self.machine_timers.pop(me.name, None)
                else:
                    self.machine_timers[me.name] = time.monotonic() + me.ms / 1000
            elif t is Aux:
                self._aux("cast", me.cmd, None)
            elif t is GarbageCollection:
                gc.collect()
            else:   # a core-side effect (release_cursor, append...) from handle_aux
                _log.warning("%s: machine effect %r is not carried out from handle_aux",
                             self.id, me)
        except Exception:   # an effect's failure is the machine's bug: report, keep serving
            _log.exception("%s: machine effect %r failed", self.id, me)

    # -- leader connection monitor (ra: a process monitor on the leader) --------------------
    def _monitor_leader(self, leader: Any) -> None:
        """Watch the connection to the leader's mailbox (the one our replies go through):
        when the leader's process dies the kernel closes it at once and the mailbox reports
        it. That is how a follower notices a dead leader in milliseconds (the node failure
        detector covers a node that vanishes without closing connections; the election
        timeout, the rest)."""
        self.monitored_leader = leader

    def _on_peer_closed(self, addr: str) -> None:
        leader = self.monitored_leader
        if (leader is not None and self.role == "follower" and self.state.leader_id == leader
                and self.peer_eps.get(ServerId(*leader)) == addr):
            # called from inside the mailbox: the core steps it with the next events.
            # monitored_leader stays: _stagger leaves the lost leader out of the turns
            self.next_events.append(LeaderDown(leader))
        self._forget_endpoint(addr)

    def _forget_endpoint(self, addr: str) -> None:
        """The process at ``addr`` is gone (called from inside the mailbox, which found its
        connection closed or refused): peers cached there are asked for again at the next
        send. Touches no socket."""
        for sid in [x for x, ep in self.peer_eps.items() if ep == addr]:
            del self.peer_eps[sid]
            registry.invalidate(self.mb, sid.name, sid.node)

    # -- monitors, machine timers, aux ------------------------------------------------------
    def _monitor(self, kind: str, target: Any, on: bool) -> None:
        if on and not (tm.valid_endpoint(target) if kind == "process" else tm.valid_node(target)):
            # a machine may monitor what a command named: a target that is no address is
            # reported down at once rather than probed for ever
            _log.warning("%s: cannot monitor %s %.100r: not an address", self.id, kind, target)
            if self.role == "leader" and kind == "process":
                self.next_events.append(Command("usr", ("down", target, "noproc"), None,
                                                "normal", _now_ms()))
            return
        if kind == "process":
            if on:
                self.proc_monitors.add(target)
                self.timers.setdefault("monitors", time.monotonic() + _MONITOR_INTERVAL)
            else:
                self.proc_monitors.discard(target)
        elif kind == "node":
            if on:
                self.node_monitors.add(target)
                if target != self.node:
                    try:
                        self.mb.call(self.daemon_ep, tm.FdWatch(target), timeout=1.0)
                    except RaError:
                        pass
            else:
                self.node_monitors.discard(target)

    def _check_monitors(self) -> None:
        """Leader only: a monitored client process whose mailbox refuses connections is down;
        the machine learns it through a ``("down", pid, "noproc")`` command (ra's DOWN)."""
        if self.role != "leader":
            return
        for pid in list(self.proc_monitors):
            if probe_endpoint(pid, 0.05) == DEAD:
                self.proc_monitors.discard(pid)
                self._step(Command("usr", ("down", pid, "noproc"), None, "normal", _now_ms()))

    def _fire_machine_timers(self, now: float) -> None:
        for name in [n for n, t in self.machine_timers.items() if t <= now]:
            del self.machine_timers[name]
            if self.role == "leader":
                self._step(Command("usr", ("timeout", name), None, "normal", _now_ms()))

    def _leader_effects_lost(self) -> None:
        """Monitors and timers are the leader's: a new leader re-creates them (state_enter)."""
        self.proc_monitors.clear()
        self.node_monitors.clear()
        self.machine_timers.clear()

    def _aux(self, kind: str, cmd: Any, frm: Any) -> None:
        """ra's aux: ``handle_aux(role, "call" | "cast", cmd, aux_state, machine_state)``
        returns ``("reply", reply, aux_state[, effects])`` or ``("no_reply", aux_state[,
        effects])``; the effects run here, on this member."""
        fn = getattr(self.state.machine, "handle_aux", None)
        if fn is None:
            if frm is not None:
                self.mb.reply(frm, ("error", "no_handle_aux"))
            return
        res = fn(self.role, kind, cmd, self.aux_state, self.state.machine_state)
        if res[0] == "reply":
            self.aux_state = res[2]
            effects = res[3] if len(res) > 3 else []
            reply = res[1]
        else:
            self.aux_state = res[1]
            effects = res[2] if len(res) > 2 else []
            reply = None
        if frm is not None:
            self.mb.reply(frm, ("ok", reply, self.state.leader_id))
        try:
            typed = machine_effects(effects)
        except InvalidEffect as e:
            _log.warning("%s: handle_aux returned a malformed effect; its effects were "
                         "dropped: %s", self.id, e)
            return
        for me in typed:
            self._machine_effect(me)

    def _send_peers(self, tos: list[Any], msg: Any) -> None:
        """Send ``msg`` to every peer of ``tos``, never waiting: see :meth:`_send_peer`."""
        self.counters["peer_msgs_out"] += len(tos)
        eps = []
        outs = None
        for to in tos:
            sid = to if type(to) is ServerId else ServerId(*to)
            ep = self.peer_eps.get(sid)
            if ep is not None:
                eps.append(ep)
                continue
            if outs is None:
                outs = self._wires(msg)
            self._keep_for(sid, ("$rpc", outs[0]))
        if eps:
            for w in outs if outs is not None else self._wires(msg):
                self.mb.cast_many(eps, ("$rpc", w))

    def _send_peer(self, to: Any, msg: Any) -> None:
        """Cast ``msg`` to peer ``to``, never waiting: to its known address, or else it is
        kept, as the newest message for that peer, until its node's daemon says where it is
        (the module docstring)."""
        self.counters["peer_msgs_out"] += 1
        sid = to if type(to) is ServerId else ServerId(*to)
        ep = self.peer_eps.get(sid)
        outs = self._wires(msg)
        if ep is not None:
            for w in outs:
                self.mb.cast(ep, ("$rpc", w))
        else:
            # only the first part waits (a later one alone would be refused as a gap): the
            # follower's answer brings the leader back for the rest
            self._keep_for(sid, ("$rpc", outs[0]))

    def _durable_reply(self, to: Any, msg: AppendEntriesReply) -> None:
        """Hand the reply to the WAL with the write it acknowledges (``DurableReply``): the
        WAL sends it once that write is synced, and the leader hears of it one process hop
        (a wake-up of this process) sooner. Packed here, as :meth:`_send_peer` would send
        it; the WAL sends the bytes on as they are, with the server key we expect there. A
        leader whose address is not known yet gets our own reply, after ``Written``."""
        sid = to if type(to) is ServerId else ServerId(*to)
        ep = self.peer_eps.get(sid)
        if ep is None:
            return
        self.counters["durable_replies"] += 1
        self.log.attach_reply(msg.last_index, msg.last_term,
                              [ep, self.mb.pack_cast(ep, ("$rpc", msg)), self.mb.peer_key(ep)])

    def _wires(self, msg: Any) -> list[Any]:
        """What ``msg`` leaves as. An append_entries with entries leaves packed: their payloads
        are the bytes already encoded for the WAL (``ra.server.packed``), in parts of at most
        ``ra.log.log.MAX_BYTES_PER_MESSAGE`` (a frame above the mailbox's limit would not
        leave at all)."""
        if type(msg) is AppendEntriesRpc and msg.entries:
            return packed.pack_parts(msg, self.log.payloads(msg.entries))
        return [msg]

    def _keep_for(self, sid: ServerId, out: Any) -> None:
        """Keep ``out`` as the one message for unresolved ``sid`` (replacing an older one) and
        ask where ``sid`` is, unless that is asked already or its node backs off."""
        now = time.monotonic()
        if self.held.get(sid) is not None:
            self.counters["resolve_dropped"] += 1       # superseded
        self.held[sid] = (now, out)
        if self.resolver.request(sid.name, sid.node):
            self.counters["resolve_requests"] += 1
            due = self.resolver.next_deadline()
            if due is not None:
                self.timers["resolve"] = min(self.timers.get("resolve", math.inf), due)
        elif not self.resolver.pending(sid.name, sid.node):
            # not asked (its node backs off, or it was not registered a moment ago): the
            # message has nowhere to wait for
            del self.held[sid]
            self.counters["resolve_dropped"] += 1

    def _send_held(self, sid: ServerId, ep: str) -> None:
        """Send the message kept for ``sid`` to ``ep``, unless an election timeout old."""
        t, out = self.held.pop(sid)
        if time.monotonic() - t > self.conf["election_timeout_ms"] / 1000:
            self.counters["resolve_dropped"] += 1
        else:
            self.mb.cast(ep, out)

    def _on_resolved(self, env: Any, msg: tm.RegResolved) -> None:
        res = self.resolver.on_resolved(msg)
        if res is None:
            return          # an answer to nothing we asked (late twice, or not ours)
        (name, node), ep = res
        sid = ServerId(name, node)
        if ep is None:      # not registered (restarting?): its first message will say where
            if self.held.pop(sid, None) is not None:
                self.counters["resolve_dropped"] += 1
            return
        self.counters["resolved"] += 1
        # an address its own message brought meanwhile is as good, and newer
        ep = self.peer_eps.setdefault(sid, ep)
        if sid in self.held:
            self._send_held(sid, ep)

    def _resolve_expired(self) -> None:
        """Requests nobody answered in time: their peers' messages are dropped."""
        for name, node in self.resolver.expire():
            self.counters["resolve_timeouts"] += 1
            if self.held.pop(ServerId(name, node), None) is not None:
                self.counters["resolve_dropped"] += 1
        due = self.resolver.next_deadline()
        if due is not None:
            self.timers["resolve"] = due

    def _send_wal(self, msg: Any) -> None:
        self.counters["wal_msgs_out"] += 1
        self.mb.cast(self.wal_ep, msg)

    def _fence_wal(self, seq: int) -> None:
        # before the log is read (ra.log.log): what this server's previous process sent and
        # the WAL has not read yet must never land under the recovered log; a WAL silent for
        # _WAL_FENCE_TIMEOUT fails the start (the supervisor restarts the server)
        wal.fence(self.mb, self.wal_ep, self.conf["uid"], seq, _WAL_FENCE_TIMEOUT)


_PEER_TYPES = frozenset(PEER_MSGS) | {AppendEntriesPacked}
#: what joins the commands gathered for one core ``Commands`` step (a ``CommandCall`` that is
#: not ``usr`` steps them first, in its handler)
_PIPE_TYPES = frozenset({rm.PipelineCast, rm.PipelineBatch, rm.CommandCall})
_SHELL_MACHINE_EFFECTS = frozenset(SHELL_MACHINE_EFFECTS)

_HANDLERS: dict[type, Callable[[ServerProc, Any, Any], None]] = {
    rm.CommandCall: ServerProc._on_command,
    rm.PipelineCast: ServerProc._on_pipeline,
    rm.PipelineBatch: ServerProc._on_pipeline_batch,
    rm.ConsistentQueryCall: ServerProc._on_consistent_query,
    rm.LocalQueryCall: ServerProc._on_local_query,
    rm.LeaderQueryCall: ServerProc._on_local_query,
    rm.MembersCall: ServerProc._on_members,
    rm.AuxCall: ServerProc._on_aux,
    rm.AuxCast: ServerProc._on_aux,
    rm.InitialMembersCall: ServerProc._on_initial_members,
    rm.TransferLeadershipCall: ServerProc._on_transfer_leadership,
    rm.TriggerElectionCall: ServerProc._on_trigger_election,
    rm.OverviewCall: ServerProc._on_overview,
    rm.KeyMetricsCall: ServerProc._on_key_metrics,
    rm.PingCall: ServerProc._on_ping,
    wm.WalWritten: ServerProc._on_wal,
    wm.WalResendWrite: ServerProc._on_wal,
    wm.WalStarted: ServerProc._on_wal,
    wm.WalError: ServerProc._on_wal,
    tm.NodeEvent: ServerProc._on_node_event,
    tm.RegResolved: ServerProc._on_resolved,
}


def _query_import_error(q: Any, e: Exception, node: str) -> tuple[str, str, Any]:
    """``("$query_error", text, module)`` for a query function that cannot be imported."""
    path = q if isinstance(q, str) else q[0]
    mod, _, name = path.partition(":")
    if isinstance(e, ImportError):
        text = (f"query function {path!r}: module {mod!r} cannot be imported by the server on "
                f"node {node} ({type(e).__name__}: {e}); it must be importable by the server's "
                "Python: put it on the node's PYTHONPATH (or install it) and start the node "
                "daemon again")
    elif isinstance(e, AttributeError):
        text = (f"query function {path!r}: module {mod!r} has no {name!r} on node {node} "
                f"({e})")
    else:
        text = f"query function {path!r} cannot be loaded on node {node}: {type(e).__name__}: {e}"
    return ("$query_error", text, mod)


def _machine_overview(s: Any) -> Any:
    ov = getattr(s.machine, "overview", None)
    if ov is None:
        return None
    try:
        return ov(s.machine_state)
    except Exception as e:
        return {"error": repr(e)}


#: s: a server whose start (fork to subscribed) took longer logs how long each step took
_SLOW_START_S = 1.0
#: ± share of ``tick_ms`` by which each tick is moved (ticks stay spread once spread)
_TICK_JITTER = 0.05
#: an idle server's tick interval grows up to this many ``tick_ms`` (32 s by default: at 1,000
#: clusters of 3 a node's idle servers then wake about 30 times a second in all for housekeeping)
_TICK_BACKOFF = 32


def _key_metrics(s: Any) -> dict[str, Any]:
    last_idx, _ = s.log.last_index_term()
    return {"state": s.role, "term": s.current_term, "commit_index": s.commit_index,
            "last_applied": s.last_applied, "last_index": last_idx,
            "last_written_index": s.log.last_written()[0],
            "snapshot_index": s.log.snapshot_index_term()[0], "membership": "voter"
            if s.id in s.cluster else "non_member"}


def _release_memory() -> None:
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _load_malloc_trim() -> Any:
    try:
        return ctypes.CDLL(None).malloc_trim     # glibc only; elsewhere nothing to do
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


#: ``[config, SystemConfig]`` of the node, built once in its fork server (:func:`prewarm`)
_SYSTEM: list[Any] = []


def _system_config(conf: dict[str, Any]) -> system.SystemConfig:
    """``system.system_config(conf)``; the fork server's object when ``conf`` is its node's
    (the same for every server of a node), not built and validated again."""
    if _SYSTEM and _SYSTEM[0] == conf:
        return _SYSTEM[1]       # type: ignore[no-any-return]
    return system.system_config(conf)


def prewarm(node_system: dict[str, Any]) -> None:
    """Run once by a node's fork server before it forks a server (an ``init`` call of
    :class:`supervisor.forkserver.ForkServer`): what each server would otherwise do at its
    start on its own copies of the pages it touches (issue 17: memory per server) is done
    here, once, and shared: the node config is built and validated (its regular expressions
    compiled and cached), the wire codec and the door are run over typical messages. Runs no
    user code, opens no socket or file, starts no thread; never raises (only a saving)."""
    try:
        _SYSTEM[:] = [dict(node_system), system.system_config(node_system)]
        from transport import codec
        sid = ServerId("prewarm", "127.0.0.1:1")
        for msg in (("$rpc", HeartbeatRpc(1, 1, sid)), rm.PingCall(),
                    rm.MetricsReport("prewarm", {"state": "follower", "term": 1})):
            codec.decode(codec.encode(msg))
            _door(msg, "cast")
    except Exception:
        _log.debug("prewarm failed", exc_info=True)


def _sid(sid: Any) -> str:
    """A server id as ``name@node`` in a log line."""
    return f"{sid.name}@{sid.node}" if isinstance(sid, ServerId) else str(sid)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _lower_priority(conf: dict[str, Any], starting: bool) -> None:
    """Take the node's ``server_nice``, in two steps: half of it while the server starts
    (``starting``: from its fork to its registration and subscription), the rest once it
    runs. The node's shared processes (daemon, WAL) keep the CPU they need however many servers
    run, and a node restart's few recovering servers (``restart_window``) go before its
    thousand running ones, whose elections and catch-up they would otherwise wait behind."""
    try:
        n = _system_config(conf["system"]).server_nice
    except Exception:        # no node config (tests that build a bare server): leave it
        return
    step = n // 2 if starting else n - n // 2
    if step:
        try:
            os.nice(step)
        except OSError as e:     # not allowed here: not fatal, the node merely loses a guard
            _log.warning("server_nice %d not applied: %s", n, e)


def run(conf: dict[str, Any]) -> int:
    """Body of a server process (the fork server's target ``ra.server.proc:run``). Returns 0
    after a machine that did not load was reported to the daemon (not to be restarted)."""
    if not logging.getLogger().handlers:    # not forked from a node's fork server (tests)
        logs.setup()
    logs.set_identity(str(conf.get("name")), conf.get("node"))
    _lower_priority(conf, starting=True)
    try:
        proc = ServerProc(conf)
    except _MachineNotLoaded as e:
        return 0 if e.reported else 1
    signal.signal(signal.SIGTERM, lambda *_: proc.stop())
    prof_dir = os.environ.get("RA_PROFILE_DIR")   # for `make bench` profiling: cProfile dumps
    try:
        proc.register()
        _lower_priority(conf, starting=False)
        # what exists now (modules, the recovered state) lives as long as the process: keep it
        # out of the collector's scans; and collect young objects less often, since the hot
        # path allocates many short-lived acyclic ones that reference counting frees anyway
        gc.freeze()
        gc.set_threshold(_GC_GEN0, 20, 20)
        if not prof_dir:
            return proc.loop()
        import cProfile
        prof = cProfile.Profile()
        try:
            return prof.runcall(proc.loop)
        finally:
            prof.dump_stats(os.path.join(prof_dir, f"{conf['name']}-{os.getpid()}.prof"))
    finally:
        proc.close()
