"""Mirrors ra_server_sup_sup.erl. The daemon side of starting, stopping, restarting and deleting
ra servers on a node.

The node daemon delegates its ``ra_*`` calls here. Each server is a transient child of the
server supervisor, spawned through the fork server as ``ra.server.proc:run(conf)``; its name,
uid and config are recorded in the node's :class:`ra.node.directory.Directory`, so it can be
restarted later (``restart_server``, ``start_or_restart_cluster``). The record is made durable
before the server may write anything: the daemon answers the process's ``ServerLoaded`` (after
which it opens its log and meta, and may vote) only once the directory is synced, one fsync for
all the servers of a batch (:meth:`ra.node.daemon.NodeDaemon._sync_directory`). A server whose
record the node already holds durably (a restart, its config unchanged) casts its
``ServerLoaded`` instead and goes on; its ``ServerUp`` (recovered, registering) also counts as
loaded, should the cast be lost.

User code never runs here (:mod:`ra.server.usercode`). A start spawns the server process and returns
its pid at once; the process imports and builds its machine and calls back ``ServerLoaded(name,
pid)`` or ``ServerLoadFailed(name, pid, info)``. Until then the server is *loading*; only once it
has loaded is a new server (or a restart's new config) recorded in the directory, so a machine
that does not load leaves nothing behind. A load that fails, or does not report within the
node's ``load_timeout_ms`` (the process is then killed), makes the server *failed*: it is not
restarted (its per-server supervisor is removed) and stays down, with the reason, until
``restart_server`` / ``start_server`` after the fix. The caller waits with ``AwaitStarted``. A process
that dies before reporting (``os._exit`` at import, a crash) is restarted by its supervisor until
it gives up, and is then failed with its exit reason.

Calls (the typed messages of :mod:`ra.messages`, checked at the daemon's door before they
reach :meth:`ServerSup.handle`):

* ``StartServer(conf)`` -> ``("ok", pid)``; errors: already started;
* ``RestartServer(name, add_config)`` -> ``("ok", pid)``; ``NotFound`` if never started here;
* ``StartStatus(name)`` -> ``("loading", {"machine", "elapsed_s", "load_timeout_s"})``,
  ``("failed", info)``, ``("running", pid)`` or ``("stopped", reason)``; ``NotFound``;
* ``AwaitStarted(name, wait_ms)`` -> the same once the start has settled (registered, failed,
  stopped) or ``wait_ms`` has passed (then also ``("starting", pid)``: loaded, not yet
  registered); the reply is held back meanwhile (no polling);
* ``StopServer(name)`` -> ``"ok"`` (data kept);
* ``ForceDeleteServer(name)`` -> ``"ok"`` (stopped, data deleted; idempotent; also cast by a
  server that applied its cluster's end of life);
* ``ListServers()`` -> ``{name: {"uid", "cluster_name", "pid", "restarts", "status"}}``,
  ``status`` one of ``loading``, ``running``, ``stopped``, ``failed`` (with ``error``);
  ``restarts`` counts its supervisor's restarts within the last period, kept once that
  supervisor gave up (then ``stopped`` with ``error``, the last exit);
* ``ServerMetrics(name)`` -> the metrics the server last reported (cast
  ``MetricsReport(name, metrics)``; kept only for servers this node knows), without calling
  the server; ``{"state": "stopped"}`` (or ``"failed"``, with ``error``; ``"loading"``) while
  it does not run.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from ra import messages as rm
from ra.node.directory import Directory
from ra.errors import AlreadyStarted, NotFound, RaError, error_reply
from ra.node import system
from ra.node.sup import server_child_spec
from ra.server.usercode import importable_hint
from supervisor.spec import ChildSpec, Fork, Nested, SupFlags

__all__ = ["ServerSup", "TARGET"]

TARGET = "ra.server.proc:run"
#: A server restarted this many times within SERVER_PERIOD seconds is given up on (ra_server_sup)
SERVER_INTENSITY = 3
SERVER_PERIOD = 5
#: a machine's module is given to the fork server only if its server loaded it this fast (s
#: from spawn): the daemon waits while the fork server imports it, at most _IMPORT_TIMEOUT
_SHARE_WITHIN = 0.5
_IMPORT_TIMEOUT = 1.0
#: servers a node restart forks before its loop serves its mail again
_RESTART_CHUNK = 16
#: how often a full ``restart_window`` (node key: servers a node restart lets recover at once,
#: forked and not yet registered) is looked at again (s). Forking all 1,000 at once made
#: 1,000 processes runnable on 2 cores: the daemons, one process each among them, then
#: accepted and answered so late that calls and handshakes timed out, were retried, and the
#: retries filled their accept queues.
_RESTART_POLL = 0.02
#: how often unanswered AwaitStarted calls are looked at (a failure, an exit, a deadline; a
#: registration answers at once)
_AWAIT_POLL = 0.05

_log = logging.getLogger("ra.server.sup")


@dataclass(eq=False)
class _Loading:
    """A server started by a call, whose process has not yet reported its machine loaded."""

    machine: Any
    register: dict[str, Any] | None      # config to record once loaded (None: keep the stored)
    since: float
    sup: Any                             # its per-server supervisor
    timer: Any = field(default=None)


class ServerSup:
    """Embedded in the node daemon; ``daemon`` gives ``address``, ``data_dir``, ``config``,
    ``server_sup()`` and ``start_server_child(spec)``."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.directory = Directory(daemon.data_dir, owner=True)
        self.metrics: dict[str, Any] = {}
        self.loading: dict[str, _Loading] = {}
        self.failed: dict[str, dict[str, Any]] = {}   # name -> why it could not load
        # name -> its latest per-server supervisor: one that gave up is gone from the server
        # supervisor (temporary), but the overview still reports its restarts and last exit
        self.subs: dict[str, Any] = {}
        self.shared: set[str] = set()                 # machine modules given to the fork server
        #: servers restart_all has still to fork (name -> since when), shown as loading
        self.restarting: dict[str, float] = {}
        #: servers restart_all forked that have not registered yet (node key restart_window),
        #: and the most there were at once
        self.recovering: set[str] = set()
        self.recovering_peak = 0
        #: AwaitStarted calls not answered yet: name -> [(caller, deadline)]
        self.waiters: dict[str, list[tuple[Any, float]]] = {}
        self._sweep_armed = False

    @property
    def load_timeout(self) -> float:
        return float(self.daemon.sys.load_timeout_ms) / 1000

    def handles(self, msg: Any) -> bool:
        return type(msg) in _HANDLED

    def handle(self, msg: Any) -> Any:
        """Serve one *valid* message (the daemon's door checked it)."""
        t = type(msg)
        if t is rm.MetricsReport:
            if self.directory.uid_of(msg.name) is not None:   # bounded: known servers only
                self.metrics[msg.name] = msg.metrics
            return None
        if t is rm.ServerLoaded:
            return self.loaded(msg.name, msg.pid)
        if t is rm.ServerLoadFailed:
            return self.load_failed(msg.name, msg.pid, dict(msg.info))
        if t is rm.StartStatus:
            return self.start_status(msg.name)
        if t is rm.AwaitStarted:
            return self.await_started(msg.name, msg.wait_ms)
        if t is rm.StartServer:
            return self.start_server(dict(msg.conf))
        if t is rm.RestartServer:
            return self.restart_server(msg.name, dict(msg.add_config) if msg.add_config
                                       else None)
        if t is rm.StopServer:
            return self.stop_server(msg.name)
        if t is rm.ForceDeleteServer:
            return self.force_delete_server(msg.name)
        if t is rm.ListServers:
            return self.servers()
        if t is rm.ServerMetrics:
            return self.key_metrics(msg.name)
        return ("error", "bad_request", "unknown_message")

    # -- helpers ------------------------------------------------------------------------------
    def _running(self) -> dict[Any, int | None]:
        """Server name -> pid of its process (None while not running), for every server that
        has a supervisor under the server supervisor."""
        sup = self.daemon.server_sup()
        out: dict[Any, int | None] = {}
        for c in sup.which_children():
            sub = sup.child(c.id)
            kids = sub.which_children() if sub is not None else []
            out[c.id] = kids[0].pid if kids else None
        return out

    def _pid_of(self, name: str) -> int | None:
        """Pid of ``name``'s process, None while it has none: one lookup, where
        :meth:`_running` walks every server (a node may host thousands)."""
        sub = self.daemon.server_sup().child(name)
        kids = sub.which_children() if sub is not None else []
        return kids[0].pid if kids else None

    def _share_machine(self, machine: Any) -> None:
        """Have the fork server import the module of a machine that loaded in one of our
        servers: the servers forked later share it instead of each importing it (which costs
        a process ~1 MB: :mod:`supervisor.forkserver`). Done after the current call's answer,
        for a module that loaded fast (``_SHARE_WITHIN``): a slow import would stall the daemon
        as long (the fork server runs it; past ``_IMPORT_TIMEOUT`` it is restarted without).
        A module changed on disk then reaches new servers only after the node restarts."""
        mod = _machine_module(machine)
        if mod is None or mod in self.shared or not self.daemon.sys.preload_machines:
            return
        self.shared.add(mod)

        def share() -> None:
            fs = self.daemon.forkserver
            if fs is not None:
                fs.import_more([mod], timeout=_IMPORT_TIMEOUT)
        self.daemon.loop.call_soon(share)

    def _system(self) -> dict[str, Any]:
        """The node's config as a server process gets it (what differs from the defaults)."""
        return system.as_dict(self.daemon.sys)

    def _spec(self, name: str, conf: dict[str, Any], durable: bool = False) -> ChildSpec:
        """The spec of ``name``'s own supervisor, with its one child: the server process.
        ``durable``: the node holds the server's record durably already (a restart with its
        config unchanged, nothing unsynced in the directory), so the process need not wait for
        the answer to its ``ServerLoaded``: it casts it and opens its log at once."""
        conf = dict(conf, node=self.daemon.address, system=self._system(),
                    loaded_cast=durable)
        env = {"RA_NODE": self.daemon.address or "", "RA_DATA_DIR": self.daemon.data_dir}
        server = server_child_spec("server", TARGET, (conf,), env, "transient", 5000)
        return ChildSpec(name, Nested(SupFlags("one_for_one", SERVER_INTENSITY, SERVER_PERIOD),
                                      (server,)),
                         restart="temporary", type="supervisor")

    def _spawn(self, name: str, conf: dict[str, Any],
               register: dict[str, Any] | None = None, spec: ChildSpec | None = None) -> int:
        """Start the server under a supervisor of its own (ra_server_sup): a server that keeps
        crashing (a machine that raises on a committed command) exhausts *its* supervisor's
        intensity and stops there, instead of the node-wide one, so other clusters on the node
        are not touched. The per-server supervisor is temporary: once it gives up, the server
        stays down (``overview`` shows it) until ``restart_server``."""
        sup = self.daemon.server_sup()
        if self._pid_of(name) is not None:
            raise AlreadyStarted(f"server {name!r} already runs on node {self.daemon.address}")
        if sup.has_child(name):
            sup.terminate_child(name)     # temporary: its spec goes with it
            if sup.has_child(name):
                sup.delete_child(name)
        spec = spec or self._spec(name, conf,
                                  durable=register is None and not self.directory.dirty)
        self._forget_load(name)
        self.failed.pop(name, None)
        self.metrics.pop(name, None)      # figures of an earlier run are not this one's
        sup.start_child(spec)
        pid = self._pid_of(name)
        if pid is None:
            raise RuntimeError(f"server {name!r} did not start")
        self.subs[name] = sup.child(name)
        ld = self.loading[name] = _Loading(conf["machine"], register, time.monotonic(),
                                           self.subs[name])
        ld.timer = self.daemon.loop.call_later(self.load_timeout,
                                               lambda: self._load_timed_out(name, ld))
        return int(pid)

    # -- loading ------------------------------------------------------------------------------
    def _forget_load(self, name: str) -> _Loading | None:
        ld = self.loading.pop(name, None)
        if ld is not None and ld.timer is not None:
            ld.timer.cancel()
        return ld

    def loaded(self, name: str, pid: int) -> str:
        """The server process ``pid`` has imported and built its machine."""
        ld = self.loading.get(name)
        if ld is None and self.directory.dirty:
            self.daemon.hold_reply = True   # a retried call: answered after the sync too
        if ld is not None and self._pid_of(name) == pid:
            _log.info("server %s started (pid %d, machine %s loaded)", name, pid, ld.machine[1])
            self._forget_load(name)
            if time.monotonic() - ld.since <= _SHARE_WITHIN:
                self._share_machine(ld.machine)
            if ld.register is not None:
                # durable before this call is answered: the daemon holds the reply until its
                # batch's directory sync (the process waits for it before it opens its log)
                c = ld.register
                self.directory.register(name, c["uid"], c["cluster_name"], c)
        return "ok"

    def up(self, name: str, pid: int) -> None:
        """``name``'s process ``pid`` says it is up (``ServerUp``): if it is still loading, it
        has loaded (its cast ``ServerLoaded`` was lost, or the node did not see it yet)."""
        if name in self.loading and self._pid_of(name) == pid:
            self.loaded(name, pid)

    def load_failed(self, name: str, pid: int, info: dict[str, Any]) -> str:
        """The server process ``pid`` could not load its machine (it exits 0 after this
        answer: not restarted). Recorded; its supervisor is removed."""
        if self._pid_of(name) != pid:
            return "ok"                   # an old process, stopped or deleted meanwhile
        self._fail(name, info)
        return "ok"

    def _fail(self, name: str, info: dict[str, Any], kill: bool = False) -> None:
        ld = self._forget_load(name)
        info = dict(info, node=self.daemon.address, at=time.time())
        info.setdefault("machine", ld.machine if ld is not None else None)
        self.failed[name] = info
        _log.error("server %r: cannot load its machine %r: %s", name, info.get("path"),
                   info.get("reason"))
        pid = self._pid_of(name)
        if kill and pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)      # our own unreaped child: no pid reuse
            except ProcessLookupError:
                pass
            self._remove_sup(name)     # now, before the loop sees the exit and restarts it
        else:
            # it exits 0 after this call's answer (not restarted); its supervisor goes then
            self.daemon.loop.call_soon(lambda: self._remove_sup(name))

    def _remove_sup(self, name: str) -> None:
        if name in self.failed and self.daemon.server_sup().has_child(name):
            sup = self.daemon.server_sup()
            sup.terminate_child(name)
            if sup.has_child(name):
                sup.delete_child(name)

    def _load_timed_out(self, name: str, ld: _Loading) -> None:
        if self.loading.get(name) is not ld:
            return
        if ld.sup is not None and ld.sup.stopped is not None:
            self._check_loading(name)     # it kept dying: say so, not "too slow"
            return
        path = ld.machine[1] if isinstance(ld.machine, (list, tuple)) else ld.machine
        self._fail(name, {"path": path, "kind": "timeout",
                          "reason": f"its import did not finish within {self.load_timeout:g} s "
                                    "(load_timeout_ms; the process was killed)"}, kill=True)

    def _check_loading(self, name: str) -> None:
        """A loading server whose supervisor gave up (the process kept dying before it
        reported) is failed, with the last exit reason."""
        ld = self.loading.get(name)
        if ld is None or ld.sup is None or ld.sup.stopped is None:
            return
        reason = ld.sup.last_exit[1] if ld.sup.last_exit else "exited"
        path = ld.machine[1] if isinstance(ld.machine, (list, tuple)) else ld.machine
        self._fail(name, {"path": path, "kind": "exit",
                          "reason": f"its process exited ({reason}) {SERVER_INTENSITY + 1} "
                                    "times while loading it, without a report (os._exit or a "
                                    "crash at import?)"})

    def start_status(self, name: str) -> Any:
        """Where a start of ``name`` is: loading, failed (with why), running, stopped."""
        self._check_loading(name)
        if name in self.failed:
            return ("failed", self._failure(name))
        ld = self.loading.get(name)
        if ld is not None:
            return ("loading", {"machine": ld.machine, "load_timeout_s": self.load_timeout,
                                "elapsed_s": round(time.monotonic() - ld.since, 3)})
        if name in self.restarting:      # queued by restart_all: forked soon
            conf = self.directory.config_of(name) or {}
            return ("loading", {"machine": conf.get("machine"), "load_timeout_s":
                                self.load_timeout, "elapsed_s":
                                round(time.monotonic() - self.restarting[name], 3)})
        pid = self._pid_of(name)
        if pid is not None:
            return ("running", pid)
        if self.directory.uid_of(name) is None:
            raise NotFound(f"no server {name!r} on node {self.daemon.address}")
        sub = self.daemon.server_sup().child(name)
        last = sub.last_exit[1] if sub is not None and sub.last_exit else None
        return ("stopped", last)

    def await_started(self, name: str, wait_ms: int) -> Any:
        """``AwaitStarted``: :meth:`start_status` once the start has settled (registered,
        failed or stopped), or once ``wait_ms`` has passed; a process that has loaded its
        machine but not registered yet is then ``("starting", pid)``. An unsettled start's
        caller is answered later, when the server registers (:meth:`registered`) or by a sweep
        every ``_AWAIT_POLL`` (a failure, an exit, the deadline)."""
        st, settled = self._await_status(name)   # NotFound for a server never started here
        if wait_ms <= 0 or settled:
            return st
        frm = self.daemon.defer_reply()
        self.waiters.setdefault(name, []).append((frm, time.monotonic() + wait_ms / 1000))
        if not self._sweep_armed:
            self._sweep_armed = True
            self.daemon.loop.call_later(_AWAIT_POLL, self._sweep_waiters)
        return None

    def _await_status(self, name: str) -> tuple[Any, bool]:
        st = self.start_status(name)
        if st[0] in ("failed", "stopped"):
            return st, True
        if st[0] == "running":
            return (st, True) if self._registered(name) else (("starting", st[1]), False)
        return st, False

    def _registered(self, name: str) -> bool:
        """Whether a live process of ``name`` has registered with the node (its last step)."""
        reg = self.daemon.registry
        return reg is not None and reg.registry.whereis(name) is not None

    def registered(self, name: str) -> None:
        """``name`` registered with the node: answer its ``AwaitStarted`` callers now."""
        if name in self.waiters:
            self._answer_waiters(name, time.monotonic())

    def _answer_waiters(self, name: str, now: float) -> None:
        """Answer ``name``'s waiters if its start has settled, else those whose wait is over."""
        try:
            st, settled = self._await_status(name)
        except RaError as e:                  # deleted meanwhile
            st, settled = error_reply(e), True
        keep = []
        for frm, deadline in self.waiters.pop(name, ()):
            if settled or now >= deadline:
                self.daemon.reply_later(frm, st)
            else:
                keep.append((frm, deadline))
        if keep:
            self.waiters[name] = keep

    def _sweep_waiters(self) -> None:
        self._sweep_armed = False
        now = time.monotonic()
        for name in list(self.waiters):
            self._answer_waiters(name, now)
        if self.waiters and not (self.daemon.root is None or self.daemon.root.stopped):
            self._sweep_armed = True
            self.daemon.loop.call_later(_AWAIT_POLL, self._sweep_waiters)

    def _failure(self, name: str) -> dict[str, Any]:
        info = dict(self.failed[name])
        info.setdefault("fix", importable_hint())
        return info

    def key_metrics(self, name: str) -> dict[str, Any]:
        """What the server last reported while it runs; its state otherwise."""
        st = self.start_status(name)
        if st[0] == "failed":
            return {"state": "failed", "error": st[1].get("reason")}
        if st[0] == "stopped":
            return {"state": "stopped"}
        m = self.metrics.get(name)
        if m is None:     # loading, or recovering: it reports once it is up
            raise NotFound(f"server {name!r} on node {self.daemon.address} is starting: no "
                           "metrics yet")
        return m

    # -- calls --------------------------------------------------------------------------------
    def start_server(self, conf: dict[str, Any]) -> Any:
        """``conf`` passed the door: the server schema (``ra.core.config.SERVER``) checked it."""
        name = conf["name"]
        if self.directory.uid_of(name) is not None:
            raise AlreadyStarted(
                f"server {name!r} already exists on node {self.daemon.address}: "
                "use restart_server, or force_delete_server first")
        if name in self.loading:
            raise AlreadyStarted(f"server {name!r} is being started on node "
                                 f"{self.daemon.address}")
        self.daemon.check_open_files(len(self.directory) + len(self.loading) + 1)
        # recorded in the directory once its process has loaded the machine (loaded())
        return ("ok", self._spawn(name, conf, register=conf))

    def restart_all(self) -> None:
        """At a node's start: restart every server of its directory that was not stopped on
        purpose (``stop_server``), so that a node restarted after a crash or a reboot rejoins
        its clusters by itself. A server that cannot be started is logged and left down.

        With ``preload_machines``, their machine modules are imported by the fork server first
        (they all loaded before, in servers of this node: :meth:`_share_machine`), so that none
        of the servers imports one itself: one import, not one per server. Their processes
        are then forked in chunks of ``_RESTART_CHUNK`` (``ForkServer.prefork``: no round trip
        per server, and the chunk's children are taken before this loop reaps any child),
        at most ``restart_window`` (node key) of them recovering at a time (forked, not yet
        registered),
        the loop serving its mail between two chunks: the daemon answers (its registry, the
        servers' ``ServerLoaded``, a client) while a thousand servers are being forked. Until
        its turn comes a server shows as ``loading``."""
        t0 = time.monotonic()
        names = [n for n in sorted(self.directory.names()) if not self.directory.stopped(n)]
        confs = {n: c for n in names if (c := self.directory.config_of(n)) is not None}
        mods = {m for c in confs.values() if (m := _machine_module(c.get("machine")))}
        fs = self.daemon.forkserver
        if mods - self.shared and fs is not None and self.daemon.sys.preload_machines:
            # their speed is not known here: a slow one delays the start by _IMPORT_TIMEOUT
            fs.import_more(sorted(mods - self.shared), timeout=_IMPORT_TIMEOUT)
            self.shared |= mods
        self.restarting = dict.fromkeys(names, t0)
        self._restart_chunk(names, confs, t0)

    def _restart_chunk(self, names: list[str], confs: dict[str, dict[str, Any]],
                       t0: float) -> None:
        if self.daemon.root is None or self.daemon.root.stopped:
            return                       # the node is going down
        room = self.daemon.sys.restart_window - self._still_recovering()
        if room <= 0:
            self.daemon.loop.call_later(_RESTART_POLL,
                                        lambda: self._restart_chunk(names, confs, t0))
            return
        chunk, rest = names[:min(_RESTART_CHUNK, room)], names[min(_RESTART_CHUNK, room):]
        chunk = [n for n in chunk if self.restarting.pop(n, None) is not None]
        durable = not self.directory.dirty
        specs = {n: self._spec(n, confs[n], durable) for n in chunk if n in confs}
        fs = self.daemon.forkserver
        if fs is not None and len(specs) > 1:
            fs.prefork([(f.target, f.args, f.env) for f in
                        (sp.start.children[0].start for sp in specs.values())   # type: ignore
                        if isinstance(f, Fork)])
        try:
            for name in chunk:
                try:
                    if name not in confs:
                        raise NotFound(f"no config for server {name!r}")
                    self._spawn(name, confs[name], spec=specs[name])
                    self.recovering.add(name)
                    self.recovering_peak = max(self.recovering_peak, len(self.recovering))
                    _log.info("server %s restarted with its node", name)
                except Exception as e:   # one bad server must not keep the others down
                    _log.error("server %s could not be restarted with its node: %s", name, e)
        finally:
            if fs is not None:
                fs.drop_preforked()
        if rest:
            # a timer, not call_soon: the loop runs every call_soon before it polls again
            self.daemon.loop.call_later(0.0, lambda: self._restart_chunk(rest, confs, t0))
        else:
            _log.info("%d servers restarted with the node, forked in %.2f s", len(confs),
                      time.monotonic() - t0)

    def _still_recovering(self) -> int:
        """How many servers restart_all forked are still recovering: not yet registered (the
        last step of a server's start, after its log is read and its state rebuilt), and
        still running (one that failed or exited no longer counts)."""
        done = [n for n in self.recovering
                if self._registered(n) or n in self.failed or self._pid_of(n) is None]
        self.recovering.difference_update(done)
        return len(self.recovering)

    def restart_server(self, name: str, add_config: dict[str, Any] | None = None) -> Any:
        conf = self.directory.config_of(name)
        if conf is None:
            raise NotFound(f"server {name!r} was never started on node {self.daemon.address}")
        self.restarting.pop(name, None)           # started here, not by restart_all
        self.directory.set_stopped(name, False)
        if add_config:
            if self._pid_of(name) is not None:
                raise AlreadyStarted(f"server {name!r} already runs on node "
                                     f"{self.daemon.address}")
            conf = dict(conf, **add_config)
            # the new config is recorded once its process has loaded the machine
            return ("ok", self._spawn(name, conf, register=conf))
        return ("ok", self._spawn(name, conf))

    def stop_server(self, name: str) -> Any:
        self.directory.set_stopped(name, True)     # a node restart leaves it down
        self.restarting.pop(name, None)
        if not self.daemon.server_sup().has_child(name):
            if self.directory.uid_of(name) is None and name not in self.failed:
                raise NotFound(f"no server {name!r} on node {self.daemon.address}")
            return "ok"
        # a temporary child's spec goes with it: restart_server starts a new supervisor
        pid = self._pid_of(name)
        self.daemon.server_sup().terminate_child(name)
        _log.info("server %s stopped (pid %s), requested by %s", name, pid, self.daemon.caller())
        self._forget_load(name)
        self.metrics.pop(name, None)
        self.subs.pop(name, None)
        return "ok"

    def force_delete_server(self, name: str) -> Any:
        _log.info("server %s deleted (data too), requested by %s", name, self.daemon.caller())
        if self.daemon.server_sup().has_child(name):
            sup = self.daemon.server_sup()
            sup.terminate_child(name)
            if sup.has_child(name):
                sup.delete_child(name)
        self.directory.delete(name)
        self.restarting.pop(name, None)
        self.metrics.pop(name, None)
        self.failed.pop(name, None)
        self.subs.pop(name, None)
        self._forget_load(name)
        return "ok"

    def servers(self) -> dict[str, Any]:
        """Every server this node knows: uid, cluster, pid (None: not running) and its
        supervisor's restarts within the last period (a crash-looping server shows here)."""
        for name in list(self.loading):
            self._check_loading(name)
        running = self._running()
        sup = self.daemon.server_sup()
        rows: dict[str, dict[str, Any]] = dict(self.directory.names())
        for name, ld in self.loading.items():
            if name not in rows and ld.register is not None:
                rows[name] = {"uid": ld.register["uid"],
                              "cluster_name": ld.register["cluster_name"]}
        for name, info in self.failed.items():
            if name not in rows:
                m = info.get("machine")
                rows[name] = {"uid": None, "cluster_name": None, "machine": m}
        out = {}
        for name, info in rows.items():
            sub = sup.child(name)
            gone = self.subs.get(name) if sub is None else None
            pid = running.get(name)
            status = ("failed" if name in self.failed else "loading" if name in self.loading
                      or name in self.restarting else "running" if pid is not None
                      else "stopped")
            held = sub or gone
            row = dict(info, pid=pid, status=status,
                       restarts=len(held.restarts) if held else 0)
            if status == "failed":
                row["error"] = self.failed[name].get("reason")
            elif status == "stopped" and gone is not None and gone.last_exit is not None:
                row["error"] = (f"its process kept exiting ({gone.last_exit[1]}) and its "
                                "supervisor gave up; restart_server starts it again")
            out[name] = row
        return out

    def data_dir_of(self, name: str) -> str | None:
        uid = self.directory.uid_of(name)
        return None if uid is None else os.path.join(self.daemon.data_dir, uid)


def _machine_module(machine: Any) -> str | None:
    """The module of a machine spec (``(kind, "pkg.mod:name", arg)``), None if it has none."""
    if isinstance(machine, (list, tuple)) and len(machine) == 3 and isinstance(machine[1], str):
        mod = machine[1].partition(":")[0]
        return mod or None
    return None


_HANDLED = frozenset((rm.MetricsReport, rm.StartServer, rm.RestartServer, rm.StopServer,
                      rm.ForceDeleteServer, rm.ListServers, rm.ServerMetrics, rm.ServerLoaded,
                      rm.ServerLoadFailed, rm.StartStatus, rm.AwaitStarted))
