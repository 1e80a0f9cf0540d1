"""Mirrors ra_system.erl (start/stop of a ra system) and ra.erl's start/0,1 and start_in/1.

The node daemon: root supervisor, name registry host, fork server owner.

One daemon per data directory. Start-up, in this order:

0. check ``data_dir`` and the WAL directory (:func:`ra.node.system.prepare_dirs`: a directory this
   process can write, or ``InvalidConfig`` naming the key, the path and the OS error); build the
   log supervisor's children (a ``log_children`` factory named in the config is user code: it
   runs in a throwaway child, :func:`ra.server.usercode.call_in_child`);
1. lock the data directory (``flock`` on ``DIR/ra_node.lock``, non-blocking): a second daemon on
   the same directory fails at once with :class:`~ra.errors.AlreadyStarted` naming the holder;
   raise the open-file limit (:func:`raise_open_files_limit`);
2. become a child subreaper and install the reap-all loop (no zombie is ever left);
3. start the fork server (before any ZeroMQ context exists in this process);
4. read the node secret (:func:`load_secret`, the ``cookie_file`` key) and pin it in this
   process and, over their socketpair, in the fork server (every child inherits it in memory;
   ``RA_COOKIE`` is removed from their environment); bind the mailbox on ``listen`` (``host:port``, port 0 = ephemeral) and embed the name
   registry (:mod:`transport.registry`) and the node failure detector
   (:mod:`transport.failure_detector`, ticked by a loop timer);
5. start the supervision tree of :mod:`ra.node.sup` (log supervisor, then server supervisor) and
   wait until the WAL answers (or report why it could not start: a WAL that exits while
   starting fails the start, so ``ra.start`` never returns for a node whose WAL crash-loops);
6. report readiness (``{"ok": true, "address": ..., "pid": ...}`` as one JSON line on the ready
   fd, or ``{"ok": false, "error": tag, "message": text, "fields": {...}}``, the fields of
   :func:`ra.errors.error_reply`, from which the caller rebuilds the typed error).

The daemon never imports user code: machines are imported and built in their server processes
(:mod:`ra.server.usercode` has the contract), so a machine that exits, raises or hangs at import
cannot take the daemon down or block it.

What arrives is checked once, at the door (:meth:`NodeDaemon._handle`), against one validator
per message type: the daemon's own calls and the server supervisor's (:mod:`ra.messages`), the
name registry's and the failure detector's (:mod:`transport.messages`). A malformed message
(garbage, wrong arity or field types, a call sent as a cast, a message of another protocol) is
dropped and counted per reason (``status()["bad_messages"]``), and a call is answered
``("error", "bad_request", reason)``. Every handler (registry, failure detector, supervisor)
runs inside the door's guard: an exception there is answered ``("error", Type, text)`` and
logged, never fatal to the daemon and the servers it hosts.
SIGTERM/SIGINT, a ``stop`` call, EOF on the lifeline fd (the parent that ran :func:`start` died)
or the root supervisor giving up all lead to the same orderly shutdown: the tree in reverse start
order (servers, then the log), then the fork server, the mailbox, the lock. Children carry
``PR_SET_PDEATHSIG`` so a ``kill -9`` of the daemon takes them along.

Daemon calls (``Mailbox.call(address, msg)``; ``address`` is ``tcp://host:port``; the
messages of :mod:`ra.messages`): ``NodePing()`` -> ``"pong"``, ``NodeStatus()``,
``NodeStop()``, ``StartChild(id, target, args, env, restart="transient", shutdown=5000)`` -> pid,
``TerminateChild(id)``, ``RestartChild(id)``, ``DeleteChild(id)``, ``WhichChildren()``, and the
server supervisor's (:mod:`ra.server.sup`). Errors come back as ``("error", tag, text)``
(supervisor errors, ``"bad_request"``) or ``("error", tag, text, fields)``
(:func:`ra.errors.error_reply`: an ``InvalidConfig`` keeps its key, value and allowed).
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import faulthandler
import fcntl
import functools
import importlib.util
import json
import logging
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ra.wire  # noqa: F401  (registers ServerId and ra's messages with the codec)
from ra.node import logs
from ra import messages as rm
from ra.node import system
from ra.core.types import check_node
from ra.errors import (
    AlreadyStarted, InvalidConfig, NodeDown, NoProc, RaError, SystemNotStarted, error_from_reply,
    error_reply,
)
from ra.node.sup import LOG_SUP, SERVER_SUP, SYSTEM_SUP, build_tree, server_child_spec, wal_child_specs
from supervisor import memmerge
from supervisor.child import set_child_subreaper
from supervisor.forkserver import ForkServer
from supervisor.loop import Loop
from supervisor.spec import ChildSpec, Nested, SupFlags, SupervisorError
from supervisor.supervisor import Supervisor
from transport import messages as tm

__all__ = [
    "NodeDaemon",
    "start",
    "start_in",
    "stop",
    "node_call",
    "spawn_daemon",
    "main",
    "lock_data_dir",
    "validate_env",
    "to_endpoint",
    "ENV_KEYS",
    "LOCK_FILE",
    "raise_open_files_limit",
    "FDS_BASE",
    "FDS_PER_SERVER",
]

_log = logging.getLogger("ra.node")

LOCK_FILE = "ra_node.lock"
WAL_CHILD = "ra_log_wal"            # the log supervisor's child that must answer before ready
_LOG_READY_TIMEOUT = 20.0           # s; spawn_daemon waits 30 s for the ready line
#: s a reply waits at most for its directory change's sync (a server waits 5 s for the reply
#: to its ServerLoaded: a batch of 1,000 starts must not hold the first one that long)
_HOLD_MAX = 0.05
#: s a directory change waits for others to share its fsync (group commit)
_GROUP_S = 0.01
#: s of mail one turn of the loop serves before its timers run again (_on_mail)
_TURN_S = 0.05
ENV_KEYS = system.KEYS              # the node config's keys: its one schema is ra.node.system.NODE
# -c rather than -m: ra/__init__ will import this module (runpy would warn)
_BOOT = "import sys; from ra.node.daemon import main; sys.exit(main(sys.argv[1:]))"
# What a server process imports, so that it shares it (every import after the fork costs the
# process private memory). encodings.idna: socket.getaddrinfo() encodes host names with it, and
# it imports stringprep and unicodedata (~2 MB per server when imported after the fork). The
# machine modules of the node's servers are added at run time (ServerSup._share_machine).
_DEFAULT_PRELOAD = ("ra", "ra.errors", "transport", "supervisor", "ra.server.proc", "ra.log",
                    "wal", "encodings.idna")


IDENTITY_FILE = "node_address"


def remembered_listen(data_dir: str, listen: str, advertise: str | None = None) -> str:
    """The address to bind: ``listen``, except that a port 0 on the host the node had before
    becomes that earlier port. A node restarted with its data dir so keeps its address, which
    is part of every server id it hosts (its clusters know it by that address). An explicit
    port, or another host, is taken as given (and logged if it changes the identity). With
    ``advertise``, the node's address is the advertised one (:func:`ra.node.system.node_address`):
    its host is compared, and a port 0 in both takes the earlier port."""
    try:
        with open(os.path.join(data_dir, IDENTITY_FILE)) as f:
            before = f.read().strip()
    except (FileNotFoundError, NotADirectoryError):
        return listen
    host, _, port = listen.rpartition(":")
    ihost, _, iport = (advertise or listen).rpartition(":")
    bhost, _, bport = before.rpartition(":")
    if port == "0" and iport == "0" and ihost == bhost and bport.isdigit():
        return f"{host}:{bport}"
    if iport != "0" and system.node_address(listen, advertise) != before:
        _log.warning("node %s of data dir %s is now %s: the servers it hosts have ids "
                     "with the old address, which their clusters still use", before, data_dir,
                     system.node_address(listen, advertise))
    return listen


def remember_address(data_dir: str, address: str) -> None:
    """Keep the bound address in the data dir (see :func:`remembered_listen`)."""
    from wal import osio
    path = os.path.join(data_dir, IDENTITY_FILE)
    try:
        with open(path) as f:
            if f.read().strip() == address:
                return
    except FileNotFoundError:
        pass
    osio.atomic_write(path, address.encode() + b"\n")


def to_endpoint(addr: str) -> str:
    """``"host:port"`` -> ``"tcp://host:port"`` (endpoints pass through unchanged)."""
    return addr if "://" in addr else f"tcp://{addr}"


def _from_endpoint(ep: str) -> str:
    return ep[len("tcp://"):] if ep.startswith("tcp://") else ep


#: ``ra.start(**env)``'s check: the node config's one validator
validate_env = system.validate_env


def load_secret(cookie_file: str | None = None) -> bytes:
    """The node secret (:mod:`transport.cookie`: ``RA_COOKIE``, else ``cookie_file``, else
    ``RA_COOKIE_FILE``, else ``~/.ra/cookie``, created at first use). An unusable cookie file
    raises InvalidConfig("cookie_file", path, what to do)."""
    from transport import cookie
    from transport.errors import BadSecret

    try:
        return cookie.read_secret(cookie_file)
    except BadSecret as e:
        raise InvalidConfig("cookie_file", e.path or cookie.ENV_SECRET, str(e)) from None


def load_curve_keys(config: Mapping[str, Any]) -> tuple[bytes, list[Any]] | None:
    """The node's own CURVE key pair and allow-list (``curve_secret_key_file`` / ``curve_allow``,
    else ``RA_CURVE_SECRET_KEY[_FILE]`` / ``RA_CURVE_ALLOW``; :mod:`transport.curvekeys`) as
    ``(raw secret key, allow-list entries)``, or ``None`` when the node has no key pair. An
    unusable file raises InvalidConfig naming its key and what to do."""
    from transport import curvekeys as ck
    from transport.errors import BadSecret

    key_file = config.get("curve_secret_key_file") or os.environ.get(ck.ENV_SECRET_KEY_FILE)
    key_env = None if config.get("curve_secret_key_file") else os.environ.get(ck.ENV_SECRET_KEY)
    allow_file = config.get("curve_allow") or os.environ.get(ck.ENV_ALLOW)
    if not key_file and not key_env:
        if config.get("curve_allow"):
            raise InvalidConfig("curve_allow", config["curve_allow"],
                                "an allow-list needs the node's own key pair: set "
                                "curve_secret_key_file too")
        return None
    try:
        kp = (ck.parse_secret_key(key_env.strip().encode(), ck.ENV_SECRET_KEY) if key_env
              else ck.load_secret_key(key_file or ""))
    except (BadSecret, ValueError) as e:
        raise InvalidConfig("curve_secret_key_file", key_file or ck.ENV_SECRET_KEY,
                            str(e)) from None
    try:
        allow = ck.load_allow(allow_file) if allow_file else []
    except BadSecret as e:
        raise InvalidConfig("curve_allow", allow_file, str(e)) from None
    return kp.secret, allow


def set_cpu_scheduling(policy: str) -> None:
    """``"batch"`` (the default): this process and every process it starts (fork server, WAL,
    servers) run as SCHED_BATCH. The kernel then does not let a woken server preempt the
    process that woke it, so under load messages are taken in batches rather than one wake-up
    each: W2 with 32 client processes does 10-15 % more with 25-30 % fewer context switches,
    while W1 (idle CPUs: a woken task runs at once) is unchanged. ``"normal"``: SCHED_OTHER."""
    if policy != "batch" or not hasattr(os, "SCHED_BATCH"):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except OSError as e:     # not permitted here (a container's policy): run as normal
        _log.warning("cpu_scheduling batch not available: %s", e)


def raise_node_priority(by: int) -> int:
    """Lower this process's niceness by ``by`` (the node key ``server_nice``) where it is
    allowed (root, ``CAP_SYS_NICE``, ``RLIMIT_NICE``), before it starts any child: the fork
    server, the WAL and the segment writer inherit it, and the servers, which add
    ``server_nice`` back, run at the priority the node was started with, level with the
    machine's other processes; the node's shared processes still go first. Returns how much it
    was raised (0: not allowed, and then the servers run ``by`` below the node instead)."""
    if by <= 0:
        return 0
    cur = os.getpriority(os.PRIO_PROCESS, 0)
    target = max(-20, cur - by)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, target)
    except OSError:
        _log.info("server_nice %d: this node may not raise its own priority; its servers run "
                  "%d below it", by, by)
        return 0
    return cur - target


def set_memory_merge(enabled: bool) -> None:
    """The node key ``memory_merge``: mark this process for kernel same-page merging before it
    starts any child (every process of the node inherits the mark, across fork and exec; see
    :mod:`supervisor.memmerge`). Raises :class:`InvalidConfig` where the kernel refuses; logs a
    warning when KSM is off machine-wide, which only the machine's administrator may change."""
    if not enabled:
        return
    try:
        memmerge.enable()
    except OSError as e:
        raise InvalidConfig("memory_merge", True, f"{e.strerror}: set it to False on this "
                            "machine") from None
    run = memmerge.machine_state()
    if run != "1":
        _log.warning("memory_merge: KSM is not running on this machine (%s is %s), so nothing "
                     "is merged until it is: `echo 1 > %s` as root", memmerge.KSM_RUN,
                     "unreadable" if run is None else repr(run), memmerge.KSM_RUN)


#: open files a node daemon needs besides its servers' (WAL, fork server, clients, files)
FDS_BASE = 256
#: open files a node daemon holds per server it hosts, measured with clusters of 3 over 3 nodes:
#: the server's pidfd, its connection to the daemon and the daemon's back to it, and those of
#: the servers on other nodes that resolve it through this daemon (about 2 per remote member),
#: rounded up for larger clusters
FDS_PER_SERVER = 8


def raise_open_files_limit(servers: int = 0) -> tuple[int, int]:
    """Raise this process's open-file limit (``RLIMIT_NOFILE``) from its soft value to its hard
    one (processes started later inherit it), and log a warning when the hard limit is below
    what ``servers`` servers need: ``FDS_BASE + FDS_PER_SERVER * servers`` (the daemon holds
    the most: every connection of its servers' clusters to this node passes through it).
    Returns the ``(soft, hard)`` limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            _log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, e)
    open_files_enough(soft, hard, servers)
    return soft, hard


def open_files_enough(soft: int, hard: int, servers: int) -> bool:
    """Whether the limit suffices for ``servers`` servers (the rule of
    :func:`raise_open_files_limit`); logs a warning when it does not."""
    if _enough(soft, servers):
        return True
    need = FDS_BASE + FDS_PER_SERVER * servers
    _log.warning("open-file limit %d (hard %d) is too low for %d servers on this node: they "
                 "need about %d (%d + %d per server); raise it (ulimit -Hn, LimitNOFILE=) or "
                 "new connections will fail with EMFILE", soft, hard, servers, need,
                 FDS_BASE, FDS_PER_SERVER)
    return False


def _enough(soft: int, servers: int) -> bool:
    return soft == resource.RLIM_INFINITY or soft >= FDS_BASE + FDS_PER_SERVER * servers


def lock_data_dir(data_dir: str) -> int:
    """Create ``data_dir`` and take its exclusive lock; return the lock fd (keep it open).

    Raises AlreadyStarted at once if another process holds it, naming its pid and address.
    """
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise AlreadyStarted(
            f"data directory {data_dir} is in use by another ra node daemon ({holder}); "
            "stop it first or use another --data-dir") from None
    return fd


def _write_lock_info(fd: int, info: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, info.encode(), 0)


class NodeDaemon:
    """One node daemon, run in this process's main thread by :meth:`run`.

    ``log_children`` are the child specs of the log supervisor (WAL, segment writer), passed in
    by the caller; ``preload`` the modules the fork server imports.
    """

    def __init__(self, data_dir: str, listen: str | None = None,
                 config: Mapping[str, Any] | None = None,
                 log_children: Sequence[ChildSpec] = (),
                 preload: Sequence[str] | None = None) -> None:
        self.data_dir = os.path.abspath(data_dir)
        #: the node's config, checked by its schema (ra.node.system.NODE), every key filled in
        self.sys = system.system_config(dict(config or {}, data_dir=self.data_dir,
                                             **({"listen": listen} if listen else {})))
        self.listen = self.sys.listen
        self.config = dataclasses.asdict(self.sys)
        self.log_children = list(log_children)
        self._metrics_server: Any = None
        self.metrics_address: str | None = None       # host:port of the Prometheus endpoint
        mods = _DEFAULT_PRELOAD if preload is None else preload
        self.preload = [m for m in mods if _importable(m)]
        self.address: str | None = None
        self.loop: Loop | None = None
        self.root: Supervisor | None = None
        self.forkserver: ForkServer | None = None
        self.mailbox: Any = None
        self.started_at = time.monotonic()
        self.exit_code = 0
        self._lock_fd: int | None = None
        self._lifeline: int | None = None
        self.registry: Any = None
        self.detector: Any = None
        self.servers: Any = None
        #: messages dropped at the door, by reason (``status()["bad_messages"]``)
        self.bad_messages: dict[str, int] = {}
        self._from: Any = None        # who sent the request being served (a From, an address)
        #: replies held back until the directory's changes are durable (_sync_directory)
        self._held: list[tuple[Any, Any]] = []
        self._held_since = 0.0
        self._sync_pending = False     # a _sync_directory timer is set
        #: set by a handler whose reply must wait for the directory's sync like a change's
        self.hold_reply = False
        #: set by a handler that answers later itself (``defer_reply``)
        self._deferred = False
        self.nofile = (0, 0)     # RLIMIT_NOFILE (soft, hard) after raise_open_files_limit
        self._nofile_warned = False

    # ------------------------------------------------------------------ lifecycle

    def run(self, ready_fd: int | None = None, lifeline_fd: int | None = None) -> int:
        """Start, serve until told to stop, shut down in order; return the exit code."""
        try:
            self._start(lifeline_fd)
            self._await_log(_LOG_READY_TIMEOUT)
        except BaseException as e:
            _report(ready_fd, _failure(e))
            self._teardown()
            if isinstance(e, RaError):
                _log.error("%s", e)
                return 2
            raise
        _report(ready_fd, {"ok": True, "address": self.address, "pid": os.getpid()})
        _log.info("ra node %s up (pid %d, data_dir %s)", self.address, os.getpid(), self.data_dir)
        if self.sys.restart_servers and self.servers is not None:
            self.servers.restart_all()
        if self.sys.metrics:
            self._serve_metrics(self.sys.metrics)
        assert self.loop is not None
        try:
            self.loop.run_forever()
        finally:
            self._teardown()
        _log.info("ra node %s stopped", self.address)
        return self.exit_code

    def _start(self, lifeline_fd: int | None) -> None:
        system.prepare_dirs(self.data_dir, self.sys.wal_data_dir)
        system.check_idle_poll(self.sys.idle_poll_ms)
        self._lock_fd = lock_data_dir(self.data_dir)
        _write_lock_info(self._lock_fd, f"pid {os.getpid()}")
        # before the fork server starts: every process of the node inherits the limit
        from ra.node.directory import Directory
        n = len(Directory(self.data_dir))
        self.nofile = raise_open_files_limit(n)
        self._nofile_warned = not _enough(self.nofile[0], n)     # said so just now
        set_child_subreaper()
        given, self.listen = self.listen, remembered_listen(self.data_dir, self.listen,
                                                           self.sys.advertise)
        # socket files of servers SIGKILLed with an earlier daemon (we hold the data dir lock)
        system.remove_stale_server_sockets(self.sys)
        self.loop = loop = Loop(reap_all=True)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, functools.partial(_on_signal, loop))
        # the secret every connection proves (transport/cookie.py); children get it from the
        # fork server's memory, not from an environment that `ps e` or /proc shows
        from transport import cookie
        secret = load_secret(self.config.get("cookie_file"))
        cookie.use_secret(secret)
        env = dict(os.environ, RA_DATA_DIR=self.data_dir)
        if env.pop(cookie.ENV_SECRET, None) is None:
            # programs exec'd by the tree (ChildSpec exec) read the same file; a path is no secret
            env[cookie.ENV_FILE] = cookie.cookie_file_path(self.config.get("cookie_file"))
        init: list[tuple[str, Any]] = [("transport.cookie:use_secret", (secret,)),
                                       ("ra.node.logs:setup", self._log_setup("forkserver")),
                                       ("ra.server.proc:prewarm", (system.as_dict(self.sys),))]
        # the node's own CURVE key pair, if it has one: pinned here and, the same way as the
        # secret, in every process of the tree (transport/curvekeys.py)
        keys = load_curve_keys(self.config)
        if keys is not None:
            from transport import curvekeys
            curvekeys.use_keys(*keys)
            init.append(("transport.curvekeys:use_keys", keys))
            curvekeys.env_for_children(env, self.config.get("curve_secret_key_file"),
                                       self.config.get("curve_allow"))
        self.forkserver = ForkServer(self.preload, env=env, init=init)
        # before this process creates any ZeroMQ context; its imports overlap with ours
        self.forkserver.start(wait=False)
        # imported late: keep the import cost off lock failures
        from transport.direct import DirectMailbox, hub_max_peers

        # the hand-written ZMTP, as every ra process (issue 13): PLAIN with the node secret;
        # never blocks the loop on a connect (frames wait for the handshake)
        try:
            # max_peers: it answers every server of the node (FDS_PER_SERVER counts its
            # connection back to each); at the default 256 a node of more servers closed and
            # reopened connections to them all the time (issue 17); hub_max_peers: half the
            # open-file limit
            self.mailbox = DirectMailbox(to_endpoint(self.listen), blocking_connect=False,
                                         advertise=self.sys.advertise,
                                         max_peers=hub_max_peers())
        except ValueError as e:
            why = f"cannot bind: {e}"
            if given != self.listen:
                why += (f" (this data dir's node had address {self.listen}, kept so that its "
                        "clusters still reach it: free that port, or pass an explicit listen "
                        "port to give the node a new identity)")
            raise InvalidConfig("listen", self.listen, why) from None
        self.mailbox.linger = 1.0    # the reply to the call that stopped us still leaves
        host = self.listen.rpartition(":")[0].strip("[]")
        if host not in ("127.0.0.1", "::1", "localhost") and keys is None \
                and os.environ.get(cookie.ENV_TRANSPORT, "plain") != "curve":
            # allowed because authentication is always on; its PLAIN password is not encrypted
            _log.warning("listening on %s, beyond loopback: peers must prove the node secret, "
                         "but PLAIN sends its derived password in clear (see README, Security)",
                         self.listen)
        self.address = _from_endpoint(self.mailbox.address)
        remember_address(self.data_dir, self.address)
        logs.set_identity("node", self.address)
        self._rotate_logs()
        _write_lock_info(self._lock_fd, f"pid {os.getpid()}, address {self.address}")
        loop.add_reader(self.mailbox.fileno(), self._on_mail,
                        pending=lambda: bool(self.mailbox and self.mailbox.pending))
        if lifeline_fd is not None:
            self._lifeline = lifeline_fd
            loop.add_reader(lifeline_fd, self._on_lifeline)
        self._attach_transport_services()
        from ra.server.sup import ServerSup   # ra servers: start/stop/restart/delete, metrics
        self.servers = ServerSup(self)
        self.forkserver.wait_ready()
        flags, children = build_tree(self.log_children)
        self.root = Supervisor(loop, flags, children, name=SYSTEM_SUP,
                               forkserver=self.forkserver, on_exit=self._root_exit).start()

    def _await_log(self, timeout: float) -> None:
        """Run the loop until the WAL answers a call; raise if a log child exits first (the
        WAL's directory is checked again for the OS error, else the exit reason is given).
        Returns after ``timeout`` s anyway (a long recovery), with a warning in the log."""
        assert self.root is not None and self.loop is not None
        log_sup = self.root.child(LOG_SUP)
        if log_sup is None or WAL_CHILD not in {c.id for c in log_sup.which_children()}:
            return                  # log_children of a test: nothing that answers
        from wal.messages import WalOverview
        cfg = self.sys
        ep = system.wal_endpoint(cfg)
        up = False

        def settled() -> bool:
            nonlocal up
            if self.root is None or self.root.stopped or log_sup.stopped or log_sup.restarts:
                return True
            try:
                self.mailbox.call(ep, WalOverview(), timeout=0.1)
                up = True
            except RaError:
                pass
            return up

        self.loop.run_until(settled, timeout, step=0.05)
        if up:
            return
        if not (log_sup.stopped or log_sup.restarts or self.root.stopped):
            _log.warning("the WAL has not answered after %g s: reporting ready anyway", timeout)
            return
        system.prepare_dir("wal_data_dir" if cfg.wal_data_dir else "data_dir",
                           system.wal_dir(cfg))
        who, reason = log_sup.last_exit or (WAL_CHILD, "exited")
        raise SystemNotStarted(
            f"the node's {who} process exited ({reason}) while starting, WAL directory "
            f"{system.wal_dir(cfg)}: its traceback is in the node's log")

    def _log_setup(self, who: str) -> tuple[Any, ...]:
        return _log_args(self.sys, who)

    def _rotate_logs(self) -> None:
        """Every second: rotate the log file if due (every process of the node appends to it;
        this one alone rotates it)."""
        logs.maybe_rotate()
        if self.loop is not None:
            self.loop.call_later(1.0, self._rotate_logs)

    def _attach_transport_services(self) -> None:
        """Embed the name registry and the node failure detector on the daemon's mailbox."""
        from transport.failure_detector import FailureDetector
        from transport.registry import RegistryServer

        self.registry = RegistryServer()
        assert self.address is not None
        self.detector = FailureDetector(self.mailbox, self.address)
        # a node that went down or came back answers no question relayed to it before
        self.detector.callbacks.append(lambda _ev, node: self.registry.forget_node(node))
        self._fd_tick()

    def _fd_tick(self) -> None:
        """Heartbeat and check the watched nodes, then sleep until the detector's next deadline."""
        fd, loop = self.detector, self.loop
        if fd is None or loop is None or self.mailbox is None:
            return
        fd.tick()
        loop.call_later(max(0.001, fd.next_deadline() - fd.clock.current_time()), self._fd_tick)

    def _root_exit(self, reason: str) -> None:
        _log.error("root supervisor gave up (%s): node going down", reason)
        self.exit_code = 1
        assert self.loop is not None
        self.loop.stop()

    def _on_lifeline(self) -> None:
        assert self._lifeline is not None and self.loop is not None
        try:
            data = os.read(self._lifeline, 4096)
        except BlockingIOError:
            return
        if not data:
            _log.warning("parent process gone: shutting down")
            self.loop.remove_reader(self._lifeline)
            self.loop.stop()

    def stop(self) -> None:
        """Ask the loop to stop; the orderly shutdown follows in :meth:`run`."""
        if self.loop is not None:
            self.loop.stop()

    def _serve_metrics(self, listen: str) -> None:
        """The Prometheus endpoint (:mod:`ra.node.metrics`): a snapshot refreshed by this loop
        every second, read by the HTTP thread, which asks the WAL with a mailbox of its own."""
        from ra.node import metrics
        from transport.direct import DirectMailbox
        from wal.messages import WalOverview
        ep = system.wal_endpoint(self.sys)
        local = threading.local()

        def wal_overview() -> Any:
            if not hasattr(local, "mb"):
                local.mb = DirectMailbox(None)      # this thread's own, the node secret's
            return local.mb.call(ep, WalOverview(), timeout=1.0)
        nm = metrics.NodeMetrics(self.address or "", wal_overview)

        def refresh() -> None:
            if self.servers is not None and self.root is not None and not self.root.stopped:
                nm.refresh(self.servers.servers(), dict(self.servers.metrics))
            if self.loop is not None:
                self.loop.call_later(1.0, refresh)
        refresh()
        try:
            self._metrics_server, self.metrics_address = metrics.serve(nm, listen)
        except OSError as e:
            _log.error("metrics endpoint %s: cannot listen: %s (the node runs without it)",
                       listen, e)
            return
        _log.info("metrics at http://%s/metrics", self.metrics_address)

    def _teardown(self) -> None:
        if self.servers is not None:
            try:
                self.servers.directory.sync()
            except OSError as e:
                _log.error("cannot sync the node's directory in %s: %s", self.data_dir, e)
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server = None
        if self.root is not None and self.root.stopped is None:
            self.root.shutdown()
        if self.forkserver is not None:
            self.forkserver.stop()
            self.forkserver = None
        self.detector = None
        if self.mailbox is not None:
            self.mailbox.close()
            self.mailbox = None
        if self.loop is not None:
            self.loop.close()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ servers

    def check_open_files(self, servers: int) -> None:
        """Warn (once) when the open-file limit is too low for ``servers`` servers."""
        if not self._nofile_warned and not open_files_enough(*self.nofile, servers):
            self._nofile_warned = True

    def server_sup(self) -> Supervisor:
        """The server supervisor (raises SystemNotStarted if the tree is down)."""
        sup = self.root.child(SERVER_SUP) if self.root is not None else None
        if sup is None:
            raise SystemNotStarted("the server supervisor is not running")
        return sup

    def start_server_child(self, spec: rm.StartChild) -> int:
        """Spawn a process through the fork server under the server supervisor.

        ``spec``: ``id``, ``target`` (``"pkg.mod:func"``), ``args``, ``env``, ``restart``
        (default transient), ``shutdown`` (default 5000 ms). The child's environment gets
        ``RA_NODE`` (this daemon's address) and ``RA_DATA_DIR``. Returns the pid.

        The child runs under a supervisor of its own (temporary, as each ra server's): a
        child that keeps crashing (a target that does not import, a function that raises)
        exhausts that supervisor and is gone, instead of the node-wide server supervisor and,
        with it, every server of the node.
        """
        env = {"RA_NODE": self.address or "", "RA_DATA_DIR": self.data_dir}
        env.update(spec.env)
        cs = server_child_spec(spec.id, spec.target, tuple(spec.args), env,
                               spec.restart,  # type: ignore[arg-type]  # checked at the door
                               spec.shutdown)
        sup = self.server_sup()
        self._prune_raw(spec.id)
        from ra.server.sup import SERVER_INTENSITY, SERVER_PERIOD
        sup.start_child(ChildSpec(spec.id, Nested(SupFlags("one_for_one", SERVER_INTENSITY,
                                                           SERVER_PERIOD), (cs,)),
                                  restart="temporary", type="supervisor"))
        pid = self._raw(spec.id).which_children()[0].pid
        assert pid is not None
        return pid

    def _raw(self, cid: str) -> Supervisor:
        """The own supervisor of raw child ``cid`` (``NotFound`` if there is none)."""
        from supervisor.spec import NotFound as SupNotFound
        sub = self.server_sup().child(cid)
        if sub is None or not sub.which_children():
            raise SupNotFound(cid)
        return sub

    def _prune_raw(self, cid: str) -> None:
        """Drop ``cid``'s own supervisor if its child is gone (a temporary child that exited):
        the id is free again."""
        sup = self.server_sup()
        sub = sup.child(cid)
        if sub is not None and not sub.which_children():
            sup.terminate_child(cid)

    def status(self) -> dict[str, Any]:
        """Node overview: address, pid, data dir, uptime, fork server, the whole tree."""
        return {
            "node": self.address,
            "pid": os.getpid(),
            "data_dir": self.data_dir,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "forkserver_pid": self.forkserver.pid if self.forkserver else None,
            # imported by the fork server after its start (machine modules): servers share them
            "forkserver_imported": list(self.forkserver.imported) if self.forkserver else [],
            "open_files_limit": self.nofile[0],
            "orphans_reaped": self.loop.orphans_reaped if self.loop else 0,
            # fsyncs of the server directory so far (one per batch of starts: directory.py)
            "directory_syncs": self.servers.directory.syncs if self.servers else 0,
            # the most servers the node's restart had recovering at once (restart_window)
            "restart_recovering_peak": self.servers.recovering_peak if self.servers else 0,
            # frames its mailbox could not send (a peer gone, a queue full) and connections
            # closed past max_peers: a caller that timed out on a live node looks here first
            "mailbox": {k: v for k, v in self.mailbox.counters.items()
                        if k in ("sent", "received", "send_dropped", "peers_evicted")}
            if self.mailbox is not None else {},
            "nodes": self.detector.detector.statuses() if self.detector else {},
            # names on other nodes its servers resolved through it (RegRelay)
            "relays": dict(self.registry.relay_counters) if self.registry else {},
            # why its detector forgave the other nodes' silence: checks of its own that came
            # late (the daemon not scheduled), turns that left mail unread (heartbeats in it)
            "detector": {"stalls": self.detector.detector.stalls,
                         "behind_on_mail": self.detector.detector.behinds}
            if self.detector else {},
            "bad_messages": self._bad_counts(),
            "metrics": self.metrics_address,
            "tree": _describe(self.root) if self.root is not None else None,
        }

    # ------------------------------------------------------------------ mailbox

    def _on_mail(self) -> None:
        mb = self.mailbox
        # a turn of the loop takes at most _TURN_S of mail: the failure detector's heartbeats
        # are timers, and a daemon that served 1,000 resolves in one go (a node restart's
        # servers asking for their peers) sent none for a second: its peers reported it down
        until = time.monotonic() + _TURN_S
        try:
            for _ in range(1000):
                if mb is None:
                    return
                if time.monotonic() > until:
                    break
                env = mb.recv(0)
                if env is None:
                    return
                self._handle(env)
                if self._held and time.monotonic() - self._held_since > _HOLD_MAX:
                    self._sync_directory()      # a long batch: its first replies go now
            # mail left for the next turn: the peers' heartbeats may be queued in it, unread;
            # their silence must not count meanwhile (a node restart's thousand servers can
            # keep this loop behind for seconds)
            if self.detector is not None:
                self.detector.behind()
        finally:
            self._sync_soon()

    def _sync_soon(self) -> None:
        """Group commit: a directory change is synced ``_GROUP_S`` after the batch that made
        it (the servers started meanwhile share the fsync), or at once when its reply has
        waited ``_HOLD_MAX``."""
        dirty = self.servers is not None and self.servers.directory.dirty
        if not dirty and not self._held:
            return
        if self._held and (not dirty or time.monotonic() - self._held_since > _HOLD_MAX):
            self._sync_directory()          # (a delete syncs its record itself)
        elif not self._sync_pending and self.loop is not None:
            self._sync_pending = True
            self.loop.call_later(_GROUP_S, self._sync_directory)

    def _sync_directory(self) -> None:
        """Make the directory's changes durable (one fsync for all the servers registered,
        stopped or started since the last: :mod:`ra.node.directory`; ``_sync_soon`` says
        when), then send the replies of the requests that made them, held back until now. A request's reply is so never sent before its change is
        durable: a server's ``ServerLoaded`` is answered, and the server opens its log and
        meta and may vote, only once a node restart would bring it back; a ``stop_server`` is
        acknowledged once a restart would leave it down. The other replies are not held."""
        held, self._held = self._held, []
        self._sync_pending = False
        if self.servers is not None:
            try:
                self.servers.directory.sync()
            except Exception as e:   # the changes stay in memory; the callers are told (a
                # reply taken from _held and not sent would leave its caller waiting forever)
                _log.error("cannot sync the node's directory in %s: %s", self.data_dir, e,
                           exc_info=not isinstance(e, OSError))
                held = [(frm, ("error", type(e).__name__, f"node directory not synced: {e}"))
                        for frm, _ in held]
        for frm, result in held:
            self._reply(frm, result)

    def _handle(self, env: Any) -> None:
        """The door: check the message once, serve it inside the guard, answer a call."""
        msg = env.payload
        self._from = env.frm
        writes = self.servers.directory.writes if self.servers is not None else 0
        try:
            reason = _door(msg, env.kind)
            if reason is not None:
                self._bad(msg, reason)
                result: Any = ("error", tm.BAD_REQUEST, reason)
            else:
                result = self._serve(msg)
        except SupervisorError as e:
            result = ("error", e.tag, str(e))
        except RaError as e:
            result = error_reply(e)
        except Exception as e:  # a request must not take the daemon down
            _log.exception("daemon request %s failed", type(msg).__name__)
            result = ("error", type(e).__name__, str(e))
        self._from = None
        deferred, self._deferred = self._deferred, False
        hold, self.hold_reply = self.hold_reply, False    # (a cast's must not reach a call)
        if env.kind != "call" or deferred:
            return
        if hold or (self.servers is not None and self.servers.directory.writes != writes):
            if not self._held:
                self._held_since = time.monotonic()
            self._held.append((env.frm, result))     # after the sync (_sync_directory)
        else:
            self._reply(env.frm, result)

    def _reply(self, frm: Any, result: Any) -> None:
        if self.mailbox is None:
            return
        try:
            self.mailbox.reply(frm, result)
        except TypeError as e:
            self.mailbox.reply(frm, ("error", "not_a_term", str(e)))

    def _bad(self, msg: Any, reason: str) -> None:
        n = self.bad_messages[reason] = self.bad_messages.get(reason, 0) + 1
        if n <= 3 or n % 1000 == 0:      # a flood of garbage is not a flood of log lines
            _log.warning("dropped message (%s #%d): %.200r", reason, n, msg)

    def _bad_counts(self) -> dict[str, int]:
        out = dict(self.bad_messages)
        if self.mailbox is not None:
            for k in ("garbage", "bad_version", "bad_envelope", "bad_frames", "oversize",
                      "refused", "refused_by_peer"):
                v = self.mailbox.counters.get(k, 0)
                if v:
                    out[f"mailbox:{k}"] = v
        return out

    def _serve(self, msg: Any) -> Any:
        """Act on one *valid* message; the reply if it was a call."""
        t = type(msg)
        if t in tm.REGISTRY_MSGS:
            if self.registry is None:
                return ("error", "not_ready", "")
            result = self.registry.answer(msg)
            if t is tm.RegRegister and self.servers is not None:
                self.servers.registered(msg.name)      # its AwaitStarted callers are answered
            return result
        if t is tm.RegResolve:      # a cast: answered by a cast to its reply_to
            if self.registry is not None and self.mailbox is not None:
                self.registry.resolve_to(self.mailbox, msg)
            return None
        if t is tm.RegRelay:        # one of ours asks about another node: we ask that node's
            if self.registry is not None and self.mailbox is not None:
                self.registry.relay(self.mailbox, msg)
            return None
        if t is tm.RegResolved:     # another node's answer to a question we relayed
            if self.registry is not None and self.mailbox is not None:
                self.registry.on_relayed(self.mailbox, msg)
            return None
        if t is tm.FdHeartbeat or t in tm.FD_CALLS:
            return self.detector.serve(msg) if self.detector else ("error", "not_ready", "")
        handler = _HANDLERS.get(t)
        if handler is not None:
            return handler(self, msg)
        if self.servers is None:
            raise SystemNotStarted("the server supervisor is not running")
        return self.servers.handle(msg)

    def _on_server_up(self, msg: rm.ServerUp) -> Any:
        """A server has recovered: register it, take its first metrics, subscribe it to the
        failure detector's events (``rm.ServerUp``); a loading one has loaded too (its cast
        ``ServerLoaded`` went before, on the same connection, unless that was lost)."""
        if self.registry is None or self.servers is None or self.detector is None:
            return ("error", "not_ready", "")
        self.servers.up(msg.name, msg.pid)
        # the requests it stands for, served as they would be one by one
        result = self._serve(tm.RegRegister(msg.name, list(msg.endpoints), msg.pid))
        if result != "ok":
            return result
        self.servers.handle(rm.MetricsReport(msg.name, dict(msg.metrics)))
        return ("ok", self.detector.serve(tm.FdSubscribe(msg.subscriber)))

    def _on_ping(self, msg: rm.NodePing) -> Any:
        return "pong"

    def _on_status(self, msg: rm.NodeStatus) -> Any:
        return self.status()

    def caller(self) -> str:
        """Who sent the request being served, for the log."""
        return _caller(self._from)

    def defer_reply(self) -> Any:
        """Called by a handler of a call it answers later: the request's sender, to be
        passed to :meth:`reply_later` (the handler's return value is then not sent)."""
        self._deferred = True
        return self._from

    def reply_later(self, frm: Any, result: Any) -> None:
        """Answer a call whose handler deferred its reply (:meth:`defer_reply`)."""
        self._reply(frm, result)

    def _on_stop(self, msg: rm.NodeStop) -> Any:
        _log.info("node stop requested by %s", self.caller())
        self.stop()
        return ("ok", os.getpid())

    def _on_start_child(self, msg: rm.StartChild) -> Any:
        return self.start_server_child(msg)

    # raw children: each under its own supervisor (start_server_child); these act on the
    # child inside it, and DeleteChild removes both
    def _on_terminate_child(self, msg: rm.TerminateChild) -> Any:
        self._raw(msg.id).terminate_child(msg.id)
        self._prune_raw(msg.id)
        return "ok"

    def _on_restart_child(self, msg: rm.RestartChild) -> Any:
        return self._raw(msg.id).restart_child(msg.id)

    def _on_delete_child(self, msg: rm.DeleteChild) -> Any:
        self._raw(msg.id).delete_child(msg.id)
        self._prune_raw(msg.id)
        return "ok"

    def _on_which_children(self, msg: rm.WhichChildren) -> Any:
        """``[(id, pid, restart)]`` of the children under the server supervisor: raw children
        and ra servers (the process inside each one's own supervisor; pid None while it does
        not run)."""
        sup = self.server_sup()
        out = []
        for c in sup.which_children():
            sub = sup.child(c.id)
            kids = sub.which_children() if sub is not None else []
            if sub is not None and not kids:
                continue      # a temporary child that exited: pruned at the next start
            out.append((c.id, kids[0].pid, kids[0].restart) if kids else
                       (c.id, None, c.restart))
        return out


_HANDLERS: dict[type, Any] = {
    rm.ServerUp: NodeDaemon._on_server_up,
    rm.NodePing: NodeDaemon._on_ping,
    rm.NodeStatus: NodeDaemon._on_status,
    rm.NodeStop: NodeDaemon._on_stop,
    rm.StartChild: NodeDaemon._on_start_child,
    rm.TerminateChild: NodeDaemon._on_terminate_child,
    rm.RestartChild: NodeDaemon._on_restart_child,
    rm.DeleteChild: NodeDaemon._on_delete_child,
    rm.WhichChildren: NodeDaemon._on_which_children,
}

#: the one check of everything a node daemon serves
_check = tm.checker({k: rm.CHECKS[k] for k in rm.DAEMON_CALLS + rm.DAEMON_CASTS},
                    {k: tm.CHECKS[k] for k in tm.REGISTRY_MSGS + tm.REGISTRY_CASTS
                     + tm.FD_CALLS + (tm.FdHeartbeat,)})
#: ``ServerLoaded`` is a call, or a cast from a restarted server (nothing to wait for)
_CALLS = frozenset(rm.DAEMON_CALLS + tm.REGISTRY_MSGS + tm.FD_CALLS) - {rm.ServerLoaded}
_CASTS = frozenset((rm.MetricsReport, tm.FdHeartbeat) + tm.REGISTRY_CASTS)


def _door(msg: Any, kind: str) -> str | None:
    """Why the daemon drops ``msg`` (``None``: it is served)."""
    reason = _check(msg)
    if reason is not None:
        return reason
    t = type(msg)
    if (t in _CALLS and kind != "call") or (t in _CASTS and kind != "cast"):
        return f"bad_kind:{t.__name__}"
    return None


def _describe(sup: Supervisor) -> dict[str, Any]:
    kids = []
    for c in sup.which_children():
        row: dict[str, Any] = {"id": c.id, "pid": c.pid, "type": c.type, "restart": c.restart}
        sub = sup.child(c.id)
        if sub is not None:
            row["sup"] = _describe(sub)
        kids.append(row)
    return {"name": sup.name, "strategy": sup.flags.strategy, "intensity": sup.flags.intensity,
            "period": sup.flags.period, "restarts": len(sup.restarts), "children": kids}


def _log_args(c: system.SystemConfig, who: str) -> tuple[Any, ...]:
    """The arguments of :func:`ra.node.logs.setup` for a process of this node (the daemon alone
    rotates the file)."""
    return (c.log_level, c.log_file, c.log_max_bytes, c.log_backups, who == "node", who)


def _on_signal(loop: Loop, signum: int, _frame: Any) -> None:
    _log.info("node stop requested by signal %s", signal.Signals(signum).name)
    loop.stop()


def _caller(frm: Any) -> str:
    """Who sent a request, for the log: the caller's mailbox address (``tcp://host:port``, or
    an ``ipc://`` path for a caller on this host)."""
    addr = getattr(frm, "addr", frm)
    return str(addr) if addr else "an unknown caller"


def _importable(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def _failure(e: BaseException) -> dict[str, Any]:
    """The ready line of a daemon that could not start."""
    if isinstance(e, RaError):
        _, tag, text, fields = error_reply(e)
        return {"ok": False, "error": tag, "message": text, "fields": fields}
    return {"ok": False, "error": type(e).__name__, "message": str(e)}


def _report(fd: int | None, info: Mapping[str, Any]) -> None:
    if fd is None:
        if info.get("ok"):
            print(f"ra node listening on {info['address']} (pid {info['pid']})", flush=True)
        return
    try:
        os.write(fd, (json.dumps(info, default=repr) + "\n").encode())
        os.close(fd)
    except OSError:
        pass


# ---------------------------------------------------------------------- client side

_children: dict[str, subprocess.Popen[bytes]] = {}
_ERRORS: dict[str, type[RaError]] = {"AlreadyStarted": AlreadyStarted,
                                     "SystemNotStarted": SystemNotStarted}


def node_call(addr: str, msg: Any, timeout: float = 5.0) -> Any:
    """Call the daemon at ``addr`` (``host:port``) from a throwaway mailbox. A malformed
    ``addr`` raises InvalidConfig at once."""
    from transport.direct import DirectMailbox

    ep = to_endpoint(check_node(addr, "node"))
    with DirectMailbox(None, mechanism=_client_mechanism()) as mb:
        mb.note_node(ep, ep)  # a refused daemon endpoint is NodeDown, not NoProc
        try:
            return mb.call(ep, msg, timeout=timeout)
        except NoProc:
            raise NodeDown(f"node {addr} is down") from None


def _client_mechanism() -> Any:
    """This process's mechanism (:func:`transport.cookie.default_mechanism`: PLAIN with the
    node secret, or CURVE); InvalidConfig if the secret or a key file is unusable."""
    from transport.cookie import default_mechanism
    from transport.errors import BadSecret

    try:
        return default_mechanism()
    except BadSecret as e:
        raise InvalidConfig(e.key, e.path or "RA_COOKIE", str(e)) from None


def spawn_daemon(env: Mapping[str, Any], *, lifeline: bool,
                 log_path: str | None = None, timeout: float = 30.0,
                 argv_prefix: Sequence[str] = ()
                 ) -> tuple[str, subprocess.Popen[bytes], int | None]:
    """Launch a daemon (:func:`main` in a fresh interpreter) and wait for its ready line.

    ``argv_prefix`` runs the interpreter through a wrapper that must ``exec`` it in place (same
    pid, inherited fds), e.g. ``["ip", "netns", "exec", NAME]`` for a daemon in a network
    namespace. ``log_path``: the node's log file unless its config names one (``log_file``);
    what its processes write outside of logging (a ``print``, a crash in C code, the stacks of
    ``kill -USR1``) goes beside it, to ``<log_path without .log>.out``; without it both stay
    on this process's stderr. Returns ``(address, popen, lifeline_write_fd)``. Raises
    AlreadyStarted / RaError with the daemon's own message when it fails to start.
    """
    cfg = validate_env(env)
    data_dir = os.path.abspath(cfg.get("data_dir") or system.DEFAULT_DATA_DIR)
    system.prepare_dirs(data_dir, cfg.get("wal_data_dir"))   # before node.log is made there
    system.check_idle_poll(cfg.get("idle_poll_ms"))
    out_path = None
    if log_path:
        cfg.setdefault("log_file", os.path.abspath(log_path))
        out_path = os.path.splitext(log_path)[0] + ".out"
    r_ready, w_ready = os.pipe()
    fds = [w_ready]
    argv = [*argv_prefix, sys.executable, "-c", _BOOT, "--data-dir", data_dir,
            "--ready-fd", str(w_ready),
            "--config", json.dumps({k: v for k, v in cfg.items() if k != "data_dir"})]
    life_w = None
    if lifeline:
        life_r, life_w = os.pipe()
        fds.append(life_r)
        argv += ["--lifeline-fd", str(life_r)]
    out: Any = None
    if out_path:
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        out = open(out_path, "ab")
    try:
        proc = subprocess.Popen(argv, pass_fds=fds, start_new_session=True,
                                stdin=subprocess.DEVNULL,
                                stdout=out, stderr=out if out else None, close_fds=True)
    finally:
        os.close(w_ready)
        if lifeline:
            os.close(life_r)
        if out:
            out.close()
    try:
        line = _read_line(r_ready, timeout)
    finally:
        os.close(r_ready)
    info: dict[str, Any] = json.loads(line) if line else {
        "ok": False, "error": "RaError", "message": "node daemon exited before it was ready"}
    if not info.get("ok"):
        proc.wait()
        if life_w is not None:
            os.close(life_w)
        text = str(info.get("message", "start failed"))
        raise error_from_reply(info.get("error"), text, info.get("fields"), _ERRORS) \
            or RaError(f"the node daemon did not start: {info.get('error')}: {text}")
    return str(info["address"]), proc, life_w


def _read_line(fd: int, timeout: float) -> str:
    import select

    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise SystemNotStarted(f"node daemon not ready within {timeout} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


_lifelines: dict[str, int] = {}
_dirs: dict[str, str] = {}          # address -> data dir, of the daemons started here


def start(**env: Any) -> str:
    """Start a node daemon for ``data_dir`` as a child of this process; return its
    ``"host:port"``.

    One daemon per data dir: a daemon this process started before for the *same* data dir is
    stopped first (ra's start or restart); daemons of other data dirs keep running (a process
    may run several nodes). The daemon watches a lifeline pipe and shuts down in order when
    this process exits or dies. It logs to ``DATA_DIR/node.log``; ``data_dir`` defaults to
    ``./ra_data``. ``env``: see :data:`ENV_KEYS`. Raises InvalidConfig, AlreadyStarted (the
    data directory is locked by a daemon this process did not start) or SystemNotStarted.
    """
    cfg = validate_env(env)
    data_dir = os.path.abspath(cfg.get("data_dir") or system.DEFAULT_DATA_DIR)
    system.prepare_dirs(data_dir, cfg.get("wal_data_dir"))   # before the old daemon is stopped
    system.check_idle_poll(cfg.get("idle_poll_ms"))
    for addr, d in list(_dirs.items()):
        if d == data_dir:
            stop_node(addr)
    addr, proc, life_w = spawn_daemon(dict(env, data_dir=data_dir), lifeline=True,
                                      log_path=os.path.join(data_dir, "node.log"))
    _children[addr] = proc
    _dirs[addr] = data_dir
    if life_w is not None:
        _lifelines[addr] = life_w
    return addr


def start_in(data_dir: str) -> str:
    """``start(data_dir=data_dir)``."""
    return start(data_dir=data_dir)


def stop(timeout: float = 30.0) -> None:
    """Stop (SIGTERM, orderly) every daemon this process started, and reap it."""
    for addr in list(_children):
        stop_node(addr, timeout)


def stop_node(addr: str, timeout: float = 30.0) -> None:
    """Stop (SIGTERM, orderly) the daemon at ``addr`` that this process started, and reap it
    (nothing if this process did not start it)."""
    proc = _children.pop(addr, None)
    _dirs.pop(addr, None)
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    fd = _lifelines.pop(addr, None)
    if fd is not None:
        os.close(fd)


atexit.register(stop)


# ---------------------------------------------------------------------- entry point

def _log_children(cfg: system.SystemConfig) -> list[ChildSpec]:
    """The log supervisor's children: ours (WAL, segment writer: :func:`ra.node.sup.wal_child_specs`),
    or those of the config's ``log_children`` factory, which is user code and runs in a
    throwaway child (this process has no thread yet, so it may fork), given the config as a
    dict."""
    system.prepare_dirs(cfg.data_dir, cfg.wal_data_dir)
    if not cfg.log_children:
        return wal_child_specs(cfg)
    from ra.server.usercode import call_in_child
    specs = call_in_child(cfg.log_children, (dataclasses.asdict(cfg),),
                          cfg.load_timeout_ms / 1000, "log_children")
    if not isinstance(specs, (list, tuple)) or not all(isinstance(c, ChildSpec) for c in specs):
        raise InvalidConfig("log_children", cfg.log_children, "a factory that returns a list of "
                                                              "supervisor.spec.ChildSpec")
    return list(specs)


def main(argv: Sequence[str] | None = None) -> int:
    """Daemon entry: ``--data-dir DIR [--listen HOST:PORT] [--config JSON] [--ready-fd N]
    [--lifeline-fd N]``; ``--config`` holds the other keys of the node config."""
    p = argparse.ArgumentParser(prog="ra-node")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--listen", default=None, help="default: the node config's")
    p.add_argument("--ready-fd", type=int)
    p.add_argument("--lifeline-fd", type=int)
    p.add_argument("--config", default="{}")
    a = p.parse_args(argv)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack
    logs.setup(who="node")           # stderr, until the config says where
    if a.lifeline_fd is not None:
        os.set_blocking(a.lifeline_fd, False)
    raw = dict(json.loads(a.config), data_dir=os.path.abspath(a.data_dir))
    if a.listen is not None:
        raw["listen"] = a.listen
    try:
        cfg = system.system_config(raw)
        logs.setup(*_log_args(cfg, "node"))
        logs.set_identity(node=cfg.listen)      # until the bound address is known
        set_cpu_scheduling(cfg.cpu_scheduling)     # before any child is started
        set_memory_merge(cfg.memory_merge)          # the same: children inherit both
        raise_node_priority(cfg.server_nice)        # the same
        children = _log_children(cfg)
    except RaError as e:
        _log.error("%s", e)
        _report(a.ready_fd, _failure(e))
        return 2
    daemon = NodeDaemon(cfg.data_dir, cfg.listen, dataclasses.asdict(cfg),
                        log_children=children)
    return daemon.run(a.ready_fd, a.lifeline_fd)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
