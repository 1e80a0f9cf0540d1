"""Mirrors ra.erl: the public API, as methods of :class:`Client` and module functions that use a
default client per process.

Conventions (``shared/ra-api.md``): where Erlang returns ``{ok, ...}`` we return the value; where
it returns ``{error, ...}`` or ``{timeout, ...}`` we raise a typed :class:`ra.errors.RaError`.
Server ids are ``ServerId(name, node)`` or plain ``(name, node)`` tuples; a *server loc* is one
id or a list tried in turn. Timeouts are seconds (``None``: wait forever).

Each client owns one mailbox; ``pipeline_command`` notifications and machine ``send_msg``
effects addressed to it arrive there and are read with :meth:`Client.receive`.

Requests travel as the typed messages of :mod:`ra.messages`. Whatever comes back is checked
before it is used: a reply that is not one of the protocol raises :class:`ra.errors.BadReply`
(outcome unknown), a refused request (``("error", "bad_request", reason)``)
:class:`ra.errors.BadRequest`, a query that could not be run :class:`ra.errors.QueryError`;
:meth:`Client.receive` returns whatever arrives and never raises on it (a malformed
``ra_event`` is returned as a plain message). No answer can make a client raise anything
but a :class:`ra.errors.RaError`.
"""
from __future__ import annotations

import inspect
import os
import random
import threading
import time
from typing import Any, NamedTuple, Self
from collections.abc import Callable

import ra.wire  # noqa: F401  (codec registration of core messages)
from ra import messages as rm
from ra.core import quorum
from ra.core.config import SERVER
from ra.core.types import ServerId, check_node
from ra.errors import (
    AlreadyStarted, BadConfig, BadReply, BadRequest, ClusterNotFormed, InvalidConfig, MachineError,
    MachineLoadError, NodeDown, NoProc, NotFound, NotLeader, OutcomeUnknown, QueryError, RaError,
    SessionExpired, Timeout, error_from_reply,
)
from transport import codec, registry
from transport import messages as tm
from transport.direct import DirectMailbox
from transport.errors import BadSecret
from transport.mailbox import default_ipc, sweep_stale_ipc

__all__ = [
    "Client", "RaEvent", "MembershipError", "default_client", "new_uid", "DEFAULT_TIMEOUT",
]

DEFAULT_TIMEOUT = 5.0
_NO_LEADER_BACKOFF = 0.02     # while no leader is known (election running), retry this often
_AWAIT_S = 5.0                # an AwaitStarted call holds at most this long ...
_AWAIT_SLACK_S = 2.0          # ... and its reply may take this much longer (a busy node)


class RaEvent(NamedTuple):
    """A notification in a client's mailbox: ``("applied", [(corr, reply), ...])`` or
    ``("rejected", ("not_leader", leader_or_None, corr))`` from ``leader``; or, for a machine
    ``send_msg``, ``leader`` is None and ``event`` the message itself."""

    leader: Any
    event: Any


class MembershipError(RaError):
    """A membership change was refused: ``reason`` is ra's (``already_member``,
    ``not_member``, ``last_member``...)."""

    def __init__(self, message: str, reason: Any) -> None:
        super().__init__(message)
        self.reason = reason


def new_uid(source: str) -> str:
    """A random uid whose first 6 characters come from ``source`` (ra:new_uid/1)."""
    if not isinstance(source, str):
        raise TypeError(f"new_uid takes a str, not {type(source).__name__}")
    prefix = "".join(c if c.isalnum() or c in "_-" else "_" for c in source[:6]) or "ra"
    return prefix + "%012X" % random.getrandbits(48)


# --- argument checks -------------------------------------------------------------------------

def _sid(x: Any, what: str = "server_id") -> ServerId:
    """``x`` as a ServerId: TypeError for a wrong shape, InvalidConfig for a bad address."""
    if type(x) is ServerId or isinstance(x, ServerId):
        return x
    if (isinstance(x, (tuple, list)) and len(x) == 2 and isinstance(x[0], str) and x[0]
            and isinstance(x[1], str)):
        return ServerId(x[0], x[1])
    raise TypeError(f"{what} must be a (name, 'host:port') tuple or ra.ServerId, got {x!r}")


def _locs(loc: Any) -> list[ServerId]:
    if type(loc) is list and loc and {*map(type, loc)} == _SID_ONLY:
        return loc.copy()                       # the usual case, checked in C
    if isinstance(loc, list):
        if not loc:
            raise TypeError("server_loc must be a server id or a non-empty list of them")
        return [x if type(x) is ServerId else _sid(x, "server_loc item") for x in loc]
    return [_sid(loc, "server_loc")]


_SID_ONLY = {ServerId}


def _timeout(t: Any) -> float | None:
    if type(t) is float and t >= 0:             # the usual cases first: no isinstance
        return t
    if type(t) is int and t >= 0:               # (not a bool: its type is bool)
        return float(t)
    if t is None:
        return None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t < 0:
        raise TypeError(f"timeout must be a number of seconds >= 0 or None, got {t!r}")
    return float(t)


#: types whose every value encodes (big ints too: the codec has an ext for them)
_SCALARS = frozenset({int, float, bool, type(None), bytes})


def _check_term(value: Any, what: str) -> int:
    """TypeError, before anything is sent or numbered, if ``value`` cannot be encoded; else
    about how many bytes it encodes to (a pipelined batch's size cap). A scalar (an ASCII
    str included) needs no trial encoding: the send encodes it once."""
    t = type(value)
    if t in _SCALARS:
        return len(value) + 5 if t is bytes else 9
    if t is str and value.isascii():
        return len(value) + 5
    try:
        return len(codec.encode(value))
    except TypeError as e:
        raise TypeError(f"{what} is not a term that can be sent: {e}") from None


#: a pipelined batch leaves once it holds this many commands or (about) this many bytes
_BATCH_CMDS = 512
_BATCH_BYTES = 256 << 10


def _machine(machine: Any) -> list[Any]:
    """``("module", "pkg.mod:Class", config)`` / ``("simple", "pkg.mod:fun", init)`` in wire
    form: checked by the schema, and its config must be a term."""
    SERVER["machine"].check(machine)
    try:
        codec.encode(machine[2])
    except TypeError as e:
        raise InvalidConfig("machine", machine, f"its config must be a term ({e})") from None
    return [machine[0], machine[1], machine[2]]


def _query(fun: Any) -> Any:
    """A query function in wire form: ``"pkg.mod:func"`` or ``("pkg.mod:func", args)``."""
    if isinstance(fun, str):
        if ":" not in fun:
            raise TypeError(f"query function string must be 'pkg.mod:func', got {fun!r}")
        return fun
    if isinstance(fun, tuple) and len(fun) == 3:
        mod, name, args = fun
        if not (isinstance(mod, str) and isinstance(name, str) and isinstance(args, list)):
            raise TypeError("a (module, function, args) query needs two str and a list")
        _check_term(args, "query args")
        return (f"{mod}:{name}", list(args))
    if callable(fun):
        qual = getattr(fun, "__qualname__", "")
        mod = getattr(fun, "__module__", None)
        if (inspect.isfunction(fun) and mod and mod != "__main__" and "<" not in qual):
            return f"{mod}:{qual}"
        raise TypeError(
            f"query function {fun!r} cannot be sent to a server process: use a top-level "
            "function of an importable module, a 'pkg.mod:func' string or a "
            "(module, func, args) triple (lambdas, closures and __main__ functions cannot be "
            "imported by the server)")
    raise TypeError(f"not a query function: {fun!r}")


# --- the client ------------------------------------------------------------------------------

class _Attempts:
    """What a call learnt on the way: whether some attempt's outcome is unknown (made
    without an ``__init__``: one per command)."""

    unknown = False


#: no reply taken yet (a reply may be any term, ``None`` included)
_NO_REPLY = object()


class _SessionGone(RaError):
    """Internal: the cluster does not know the session (expired): nothing was applied."""


class _Session:
    """One client session with one cluster (``ra.core.sessions``): its id, the last seq used
    and the seqs still awaited (the lowest of them is sent as ``first_outstanding``)."""

    __slots__ = ("id", "seq", "waiting", "low")

    def __init__(self, sid: int) -> None:
        self.id = sid
        self.seq = 0
        self.waiting: set[int] = set()
        self.low = 1            # every seq below is done

    def next_seq(self) -> int:
        self.seq += 1
        self.waiting.add(self.seq)
        return self.seq

    def done(self, seq: int) -> None:
        self.waiting.discard(seq)

    def first_outstanding(self) -> int:
        # seqs are handed out in order, so one not waiting any more is done: amortised O(1)
        while self.low <= self.seq and self.low not in self.waiting:
            self.low += 1
        return self.low


class Client:
    """A process's handle on ra: its own mailbox and every API call as a method.

    Not thread-safe (its mailbox is one socket and its sessions number commands in order): use
    one client per thread, or the module functions, which use a client per thread
    (:func:`default_client`). For asyncio, :mod:`ra.aio`.

    Nodes on any host, with no configuration: the servers of a node on another host answer
    at an address routable from there (:meth:`address_for`), on a port this client opens on
    every interface at its first call to such a node (its own connections are not reused for
    replies: ``DirectMailbox._route`` says why). ``endpoint`` instead binds exactly that
    address and uses it for every destination.

    Commands are exactly-once per client: the client opens a session with each cluster on
    first use and numbers its commands (see :meth:`process_command`); ``sessions=False`` (or
    ``RA_SESSIONS=0`` in the environment) sends raw commands instead, as ra does. ``attempt_timeout``
    (seconds) is how long one member may hold a command or query without answering before the
    client tries another member (the leader may be cut off or paused).
    """

    attempt_timeout: float = 1.0

    def __init__(self, endpoint: str | None = None, sessions: bool | None = None) -> None:
        # every connection proves the node secret (RA_COOKIE or the cookie file, as the
        # node's: transport/cookie.py); an unusable cookie file is InvalidConfig
        try:
            if endpoint is None:
                # loopback tcp and an ipc socket (cheaper) for nodes on this host; for nodes on
                # other hosts a reply address routable from there, chosen per destination
                # (DirectMailbox._route says why not replies on our own connection)
                sweep_stale_ipc()
                self.mb = DirectMailbox("tcp://127.0.0.1:0", also=[default_ipc()],
                                        routed_replies=True)
            else:
                self.mb = DirectMailbox(endpoint)
        except BadSecret as e:
            raise InvalidConfig(e.key, e.path or "RA_COOKIE", str(e)) from None
        self.address = self.mb.address
        self._events: list[RaEvent] = []
        #: commands carry a session (exactly-once); off: raw commands, applied each time they
        #: arrive, an unknown outcome raised at once (default from $RA_SESSIONS, else on)
        self.sessions = (os.environ.get("RA_SESSIONS", "1") != "0") if sessions is None \
            else bool(sessions)
        self._sessions: dict[ServerId, _Session] = {}
        self._leaders: dict[ServerId, ServerId] = {}     # member -> leader that last answered
        #: correlation -> [session, seq, command, seq, command...]: the pipelined commands
        #: awaiting their event (one in the common case)
        self._pipes: dict[Any, list[Any]] = {}
        self._pipe_open_timeout: float | None = DEFAULT_TIMEOUT
        self._reply_to: dict[str, str] = {}    # node -> address_for(node), once per node
        #: pipelined commands held back while the connection to their server is backed up
        #: (``PipelineBatch.cmds``), their server, its endpoint, reply address and priority
        self._batch: list[Any] = []
        self._batch_bytes = 0
        self._batch_sid: ServerId | None = None
        self._batch_ep = ""
        self._batch_pid = ""
        self._batch_prio = ""

    def address_for(self, node: str) -> str:
        """This client's address (its "pid": what a machine may store, monitor and
        ``send_msg`` to) as seen from ``node`` (``"host:port"``): :attr:`address` for a node
        on this host; for one on another host, this host's address on the route to it and
        a port listening on every interface (opened at the first such node). Needs no
        configuration; an ``endpoint`` given to the constructor is used as it is."""
        return self.mb.reply_address(registry.node_endpoint(check_node(node)))

    def close(self) -> None:
        self._flush_pipes()
        self.mb.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------
    def _daemon(self, node: str, msg: Any, timeout: float | None) -> Any:
        self._flush_pipes()
        ep = registry.node_endpoint(check_node(node))
        self.mb.note_node(ep, ep)
        try:
            res = self.mb.call(ep, msg, timeout=timeout)
        except NoProc:
            raise NodeDown(f"node {node} is down") from None
        if isinstance(res, tuple) and len(res) in (3, 4) and res[0] == "error":
            if res[1] == tm.BAD_REQUEST:
                raise _refused(node, msg, str(res[2]))
            raise _daemon_error(node, *res[1:])
        return res

    def _call(self, sid: ServerId, msg: Any, timeout: float | None,
              attempts: set[int] | None = None) -> Any:
        if self._batch:
            self._flush_pipes()     # held commands leave before anything that waits
        return registry.call_name(self.mb, sid, msg, timeout, attempts)

    def _ok(self, sid: ServerId, msg: Any, timeout: float | None, query: bool = False) -> Any:
        """Call that member (no redirect is followed): the value of its ``("ok", value,
        leader)`` answer; a redirect raises ``NotLeader``, an error its typed error."""
        try:
            res = _answer(self._call(sid, msg, timeout), sid)
        except _NotATerm as e:
            raise (QueryError if query else RaError)(str(e)) from None
        if res[0] == "redirect":
            raise NotLeader(f"{sid} is not the leader", res[1])
        return res[1]

    def _leader_call(self, loc: Any, msg: Any, timeout: Any, retry_unknown: bool = False,
                     attempts: _Attempts | None = None,
                     checked: bool = False) -> tuple[Any, ServerId]:
        """Call ``msg`` on the leader: try each member, follow redirects, wait out elections.
        Returns ``(value, leader)`` from an ``("ok", value, leader)`` answer.

        A member that was *not reached* (``NoProc``/``NodeDown``) is skipped. With
        ``retry_unknown`` (session commands and queries: a second delivery is harmless), an
        attempt whose outcome is unknown (the member died holding it, or gave no answer within
        :attr:`attempt_timeout`) moves on to another member too, and that member is not trusted
        as leader again during this call unless nobody else answers, or every other member has
        named it leader since it was last asked (it is slow, not gone: it is asked again, 2
        attempt timeouts after it failed, then 4, 8...);
        ``attempts`` records that it happened. Without it, such an outcome is raised
        (``OutcomeUnknown``). A late answer to an earlier attempt answers the call.

        Issue 17: a leader slower than :attr:`attempt_timeout` (or not reached within it)
        answered after the client had moved on to its followers; its reply was dropped as
        stale, the followers kept redirecting to it and it was never asked again: the call
        timed out with the cluster up.

        ``checked``: ``loc`` is a list of ServerId and ``timeout`` a float or None already
        (``process_command`` checked them; not checked again on its hot path)."""
        refs: set[int] = set()        # every attempt's call ref (BaseMailbox.call attempts=)
        try:
            t = timeout if checked else _timeout(timeout)
            deadline = None if t is None else time.monotonic() + t
            cands = loc if checked else _locs(loc)
            known = self._leaders.get(cands[0])
            if known is None or self._batch or (t is not None and t <= 0):
                return self._leader_attempts(cands, msg, t, deadline, retry_unknown, attempts,
                                             refs, known, None)
            # the member that answered last leads still (almost every call): one attempt and
            # nothing else, as the loop's first turn would make it; any other outcome is then
            # handled by the loop as if its first turn had met it (W2: 32 client processes
            # on 2 cores, where each client's Python is ~40 % of the machine's CPU)
            wait = self._attempt_wait(t, retry_unknown)
            try:
                reply = registry.call_name(self.mb, known, msg, wait, refs)
            except (OutcomeUnknown, NoProc, NodeDown) as e:
                return self._leader_attempts(cands, msg, t, deadline, retry_unknown, attempts,
                                             refs, known, (t, wait, _NO_REPLY, e))
            if type(reply) is tuple and len(reply) == 3 and reply[0] == "ok" \
                    and reply[2] == known:
                return reply[1], known
            return self._leader_attempts(cands, msg, t, deadline, retry_unknown, attempts,
                                         refs, known, (t, wait, reply, None))
        finally:
            self.mb.release(refs)

    def _leader_attempts(self, cands: list[ServerId], msg: Any, t: float | None,
                         deadline: float | None, retry_unknown: bool,
                         attempts: _Attempts | None, refs: set[int], known: ServerId | None,
                         first: tuple[float | None, float | None, Any, Exception | None] | None
                         ) -> tuple[Any, ServerId]:
        """:meth:`_leader_call`'s loop over the members. ``first``: the outcome of the first
        attempt, made to ``known`` by :meth:`_leader_call` (``(left, wait, reply or _NO_REPLY,
        error or None)``), which the loop's first turn takes as its own."""
        queue = list(cands)
        last_err: RaError | None = None
        target = known if known is not None else queue.pop(0)
        unreachable: set[ServerId] = set()   # not reached this round (NoProc/NodeDown)
        suspects: set[ServerId] = set()      # took a request and gave no answer
        #: suspect -> the members that named it leader since it was last asked; when it may
        #: be asked again, and the pause after that
        named: dict[ServerId, set[ServerId]] = {}
        retry_at: dict[ServerId, float] = {}
        gaps: dict[ServerId, float] = {}
        sent = False
        while True:
            if first is not None:
                left, wait, got, err = first
                first = None
            else:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if last_err is not None and not isinstance(last_err, NotLeader) \
                            and not sent:
                        raise last_err
                    raise Timeout(f"no answer from {target} within {t} s"
                                  + ("; outcome unknown" if sent else ""), server=target)
                wait = self._attempt_wait(left, retry_unknown)
                got, err = _NO_REPLY, None
            res = None
            try:
                if err is not None:
                    raise err
                res = self._call(target, msg, wait, refs) if got is _NO_REPLY else got
                sent = True
            except OutcomeUnknown as e:
                sent = True
                self._forget_leader(cands, target)
                if attempts is not None:
                    attempts.unknown = True
                if not retry_unknown or (isinstance(e, Timeout) and left is not None
                                         and wait >= left):  # type: ignore[operator]  # wait is set when left is
                    if isinstance(e, Timeout):
                        raise Timeout(f"no answer from {target} within {t} s; outcome unknown",
                                      server=target) from None
                    raise
                last_err = e
                suspects.add(target)
                gap = gaps.get(target, 2 * self.attempt_timeout)
                retry_at[target], gaps[target] = time.monotonic() + gap, 2 * gap
                if isinstance(e, (NoProc, NodeDown)):
                    unreachable.add(target)
            except (NoProc, NodeDown) as e:
                last_err = e
                unreachable.add(target)
                if unreachable >= set(cands) and not sent:
                    raise      # no member can be reached at all: say so at once (ra: noproc)
            if res is not None:
                res = _answer(res, target)
                if res[0] == "ok":
                    who = res[2]
                    # the member asked is the leader (almost every call): no new id to check
                    leader = target if who is None or who == target else ServerId(*who)
                    for c in cands:
                        self._leaders[c] = leader       # the next call starts there
                    return res[1], leader
                leader = res[1]                         # a redirect
                last_err = NotLeader(f"{target} is not the leader", leader)
                if leader is not None:
                    lid = ServerId(*leader)
                    if lid != target and lid in suspects:
                        # asked again once every other member names it (issue 17: a leader
                        # slower than attempt_timeout, or not reached in it, was never asked
                        # again while its followers kept redirecting to it); not before
                        # 2 attempt timeouts, then 4, 8...: a hung leader's followers replace
                        # it within about 2 election timeouts, and that must not wait on it
                        others = named.setdefault(lid, set())
                        others.add(target)
                        if others >= set(cands) - suspects - {lid} \
                                and time.monotonic() >= retry_at.get(lid, 0.0):
                            others.clear()
                            target = lid
                            continue
                    if lid != target and (lid not in suspects
                                          or suspects >= set(cands) - {target}):
                        target = lid
                        continue
            # no leader known here: try the next member, then wait for an election
            queue = [c for c in queue if c not in suspects] or queue
            if not queue:
                queue = [c for c in cands if c != target and c not in suspects] \
                    or [c for c in cands if c != target] or list(cands)
                unreachable.clear()
                time.sleep(_NO_LEADER_BACKOFF)   # an election is running; nothing to wait on
            target = queue.pop(0)

    def _attempt_wait(self, left: float | None, retry_unknown: bool) -> float | None:
        """How long one attempt may wait, ``left`` s being what the call has: all of it, or
        at most :attr:`attempt_timeout` when another member may be asked after it."""
        if not retry_unknown or (left is not None and left <= self.attempt_timeout):
            return left
        return self.attempt_timeout

    def _forget_leader(self, cands: list[ServerId], leader: ServerId) -> None:
        for c in cands:
            if self._leaders.get(c) == leader:
                del self._leaders[c]

    # -- sessions ---------------------------------------------------------------------------
    def _session_for(self, cands: list[ServerId], deadline: float | None) -> _Session:
        """This client's session with the cluster of ``cands`` (opened on first use)."""
        for c in cands:
            sess = self._sessions.get(c)
            if sess is not None:
                return sess
        return self._open_session(cands, deadline)

    def _open_session(self, cands: list[ServerId], deadline: float | None) -> _Session:
        left = None if deadline is None else max(0.001, deadline - time.monotonic())
        # a retried open may open two sessions: the unused one expires, nothing else happens
        sid, leader = self._leader_call(cands, rm.CommandCall("open_session", None, "normal"),
                                        left, retry_unknown=True)
        sess = _Session(_expect(sid, tm.pos_int, "a session id", leader))
        for c in set(cands) | {leader}:
            self._sessions[c] = sess
        return sess

    def _drop_session(self, sess: _Session) -> None:
        for k in [k for k, v in self._sessions.items() if v is sess]:
            del self._sessions[k]

    # -- nodes --------------------------------------------------------------------------------
    def overview(self, node: str | None = None, timeout: float | None = DEFAULT_TIMEOUT) -> dict:
        """Node-wide overview: the daemon's status, its servers and their states (ra:overview)."""
        if node is None:
            from ra.node import daemon as _node
            started = list(_node._children)
            if not started:
                raise RaError("no node daemon started by this process: pass node='host:port'")
            node = started[-1]
        st = _expect(self._daemon(node, rm.NodeStatus(), timeout), _is_dict, "a status", node)
        servers = _expect(self._daemon(node, rm.ListServers(), timeout),
                          tm.dict_of(tm.nonempty_str, _is_dict), "a server table", node)
        out = {"node": node, "daemon": st, "servers": {}}
        for name, info in servers.items():
            row = dict(info)
            if info.get("pid") and info.get("status", "running") == "running":
                try:
                    sid = ServerId(name, node)
                    row.update(_expect(self._ok(sid, rm.OverviewCall(), 2.0), _is_dict,
                                       "an overview", sid))
                except RaError as e:
                    row["error"] = f"{type(e).__name__}: {e}"
            out["servers"][name] = row
        return out

    # -- servers and clusters -----------------------------------------------------------------
    def start_server(self, *args: Any, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """``start_server(config)`` or ``start_server(cluster_name, server_id, machine,
        server_ids)``. Returns once the server process runs and is registered. Raises
        ``MachineLoadError`` when its process cannot import or build the machine (the server
        stays down; nothing is recorded), ``Timeout`` (saying whether the import is still
        running) when ``timeout`` ends first."""
        if len(args) == 1:
            conf = args[0]
        elif len(args) == 4:
            conf = {"cluster_name": args[0], "id": args[1], "machine": args[2],
                    "initial_members": args[3]}
        else:
            raise TypeError("start_server(config) or start_server(cluster_name, server_id, "
                            "machine, server_ids)")
        c = _server_conf(conf)
        deadline = _deadline(timeout)
        sid = self._spawn(c, timeout)
        self._await_started(sid, deadline)

    def _spawn(self, c: dict[str, Any], timeout: float | None) -> ServerId:
        """Ask the node of a checked config (``_server_conf``) to start that server."""
        c = dict(c)
        sid = ServerId(c["name"], c.pop("node"))
        self._daemon(sid.node, rm.StartServer(c), timeout)
        return sid

    def _await_started(self, sid: ServerId, deadline: float) -> None:
        """Wait until the server's process has loaded its machine and registered (it answers
        from then on): its node holds an ``AwaitStarted`` call until then, so a mass start
        does not poll. Raises ``MachineLoadError`` (its node says why and what to do),
        ``RaError`` if it stopped while starting, ``Timeout`` (saying whether it is still
        importing its machine) at ``deadline``."""
        t0 = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            wait = max(0.0, min(left, _AWAIT_S))
            try:
                st = self._daemon(sid.node, rm.AwaitStarted(sid.name, int(wait * 1000)),
                                  wait + _AWAIT_SLACK_S)
            except Timeout:
                if time.monotonic() >= deadline:
                    raise
                continue    # a node busy starting many servers: ask again until the deadline
            if st[0] == "running":
                return
            if st[0] == "failed":
                raise _load_error(sid, st[1])
            if st[0] == "stopped":
                raise RaError(f"server {sid} stopped while starting ({st[1]}): the node's log "
                              "(node.log in its data dir) says why")
            if time.monotonic() >= deadline:
                waited = round(time.monotonic() - t0, 1)
                if st[0] == "loading":
                    info = st[1]
                    raise Timeout(
                        f"server {sid} did not come up within {waited} s: its process is still "
                        f"importing its machine {info['machine'][1]!r} ({info['elapsed_s']} s "
                        f"so far; the node gives up at {info['load_timeout_s']:g} s, its "
                        "load_timeout_ms). A slow import: pass a longer timeout; a hung one: "
                        "fix the module", server=sid)
                raise Timeout(f"server {sid} did not come up within {waited} s", server=sid)

    def restart_server(self, server_id: Any, add_config: dict[str, Any] | None = None,
                       timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Restart a stopped server from its data. ``NotFound`` if it was never started on
        that node; ``AlreadyStarted`` if it runs. ``add_config`` (ra's restart_server/3)
        changes the stored config from now on: ``machine`` (new code, for an upgrade) and the
        timing keys."""
        sid = _sid(server_id)
        extra = SERVER.validate(add_config or {}, partial=True, mutable_only=True)
        if "machine" in extra:
            extra["machine"] = _machine(extra["machine"])
        deadline = _deadline(timeout)
        self._daemon(sid.node, rm.RestartServer(sid.name, extra), timeout)
        self._await_started(sid, deadline)

    def stop_server(self, server_id: Any, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Stop a server (its data stays; ``restart_server`` brings it back)."""
        sid = _sid(server_id)
        self._daemon(sid.node, rm.StopServer(sid.name), timeout)

    def force_delete_server(self, server_id: Any,
                            timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Stop a server and delete all its data, whatever the cluster thinks."""
        sid = _sid(server_id)
        self._daemon(sid.node, rm.ForceDeleteServer(sid.name), timeout)

    def start_cluster(self, *args: Any, timeout: float | None = DEFAULT_TIMEOUT
                      ) -> tuple[list[ServerId], list[ServerId]]:
        """``start_cluster(cluster_name, machine, server_ids)`` or
        ``start_cluster(server_configs)``. Returns ``(started, not_started)`` once a leader is
        elected; raises ``ClusterNotFormed`` (after deleting what it started) if fewer than a
        majority could be started, ``MachineLoadError`` instead when a machine that did not
        load is among the causes. Every member is asked to start first, then all are awaited
        under the one ``timeout``."""
        if len(args) == 3:
            name, machine, ids = args
            sids = [_sid(s) for s in ids]
            confs = [{"cluster_name": name, "id": s, "machine": machine,
                      "initial_members": sids} for s in sids]
        elif len(args) == 1 and isinstance(args[0], list):
            confs = list(args[0])
        else:
            raise TypeError("start_cluster(cluster_name, machine, server_ids) or "
                            "start_cluster(server_configs)")
        if not confs:
            raise InvalidConfig("server_ids", [], "at least one server")
        checked = [_server_conf(c) for c in confs]   # every config valid before starting any
        deadline = _deadline(timeout)
        started: list[ServerId] = []
        not_started: list[ServerId] = []
        spawned: list[ServerId] = []
        errors: list[str] = []
        load_errors: list[MachineLoadError] = []
        try:
            for c in checked:       # every node first: the servers load and recover in parallel
                sid = ServerId(c["name"], c["node"])
                try:
                    spawned.append(self._spawn(c, timeout))
                except (NodeDown, NoProc, Timeout, AlreadyStarted) as e:
                    not_started.append(sid)
                    errors.append(f"{sid}: {type(e).__name__}: {e}")
            for sid in spawned:
                try:
                    self._await_started(sid, deadline)
                    started.append(sid)
                except RaError as e:
                    not_started.append(sid)
                    errors.append(f"{sid}: {type(e).__name__}: {e}")
                    if isinstance(e, MachineLoadError):
                        load_errors.append(e)
        except BaseException:
            self._delete_quietly(spawned, timeout)
            raise
        if len(started) < quorum.majority(len(checked)):
            self._delete_quietly(spawned, timeout)
            msg = (f"cluster {checked[0]['cluster_name']!r} not formed: only {len(started)} of "
                   f"{len(checked)} servers started: " + "; ".join(errors))
            if load_errors:       # the cause to fix, typed
                le = load_errors[0]
                err = MachineLoadError(le.value, le.allowed, node=le.node, server=le.server,
                                       reason=le.reason)
                err.args = ((f"{le} [cluster {checked[0]['cluster_name']!r} not formed: "
                             f"{len(started)} of {len(checked)} servers started]"),)
                raise err
            raise ClusterNotFormed(msg)
        self.trigger_election(random.choice(started), timeout=timeout)
        self._leader_call(started, rm.MembersCall(True), timeout)   # a leader is known
        return started, not_started

    def _delete_quietly(self, sids: list[ServerId], timeout: float | None) -> None:
        for sid in sids:
            try:
                self.force_delete_server(sid, timeout=timeout)
            except RaError:
                pass

    def start_or_restart_cluster(self, cluster_name: str, machine: Any, server_ids: Any,
                                 timeout: float | None = DEFAULT_TIMEOUT
                                 ) -> tuple[list[ServerId], list[ServerId]]:
        """Restart the servers that have data, start the others; a cluster that never existed
        is started as by :meth:`start_cluster`."""
        sids = [_sid(s) for s in server_ids]
        deadline = _deadline(timeout)
        restarted: list[ServerId] = []
        load_errors: list[MachineLoadError] = []
        missing: list[ServerId] = []
        not_started: list[ServerId] = []
        spawned: list[ServerId] = []
        for sid in sids:    # ask every node first: the servers recover in parallel
            try:
                self._daemon(sid.node, rm.RestartServer(sid.name, {}), timeout)
                spawned.append(sid)
            except NotFound:
                missing.append(sid)
            except AlreadyStarted:
                spawned.append(sid)     # it may still be loading (a node restarting it)
            except (NodeDown, NoProc, Timeout):
                not_started.append(sid)
        for sid in spawned:
            try:
                self._await_started(sid, deadline)
                restarted.append(sid)
            except MachineLoadError as e:
                not_started.append(sid)
                load_errors.append(e)
            except (Timeout, NoProc, NodeDown):
                not_started.append(sid)
        if not restarted:
            if load_errors:
                raise load_errors[0]
            return self.start_cluster(cluster_name, machine, sids, timeout=timeout)
        # restarted members would wait out an election timeout first: ask one to campaign now
        # (pre-vote lets it win only if its log is up to date; otherwise the timeouts decide)
        try:
            self.trigger_election(restarted[0], timeout=timeout)
        except RaError:
            pass
        for sid in missing:
            try:
                self.start_server({"cluster_name": cluster_name, "id": sid, "machine": machine,
                                   "initial_members": sids}, timeout=timeout)
                restarted.append(sid)
            except (NodeDown, NoProc, Timeout, AlreadyStarted):
                not_started.append(sid)
        return restarted, not_started

    def delete_cluster(self, server_ids: Any, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Delete the cluster: an end-of-life command is committed; every member that applies
        it stops and deletes its data, the leader last. Returns the leader. Members still
        running when the leader is gone (they missed the commit) are force-deleted through
        their node; members on nodes that are down are left as they are (ra does the same)."""
        sids = [_sid(s) for s in server_ids]
        _, leader = self._leader_call(sids, rm.CommandCall("delete_cluster", None, "normal"),
                                      timeout)
        deadline = time.monotonic() + (timeout if timeout is not None else 30.0)
        pending = set(sids)
        while pending and time.monotonic() < deadline:
            for sid in list(pending):
                try:
                    self.ping(sid, timeout=1.0)
                except (NoProc, NodeDown):
                    pending.discard(sid)
                except Timeout:
                    pass
            if pending:
                time.sleep(0.02)   # the members wind down by themselves
        for sid in pending:
            try:
                self.force_delete_server(sid, timeout=timeout)
            except (NodeDown, Timeout):
                pass
        return leader

    def trigger_election(self, server_id: Any, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Make the server start an election now (needed once by a brand-new cluster)."""
        sid = _sid(server_id)
        self._ok(sid, rm.TriggerElectionCall(), _timeout(timeout))

    def transfer_leadership(self, server_id: Any, target: Any,
                            timeout: float | None = DEFAULT_TIMEOUT) -> str:
        """Hand leadership to ``target`` once it is caught up: ``"ok"`` or
        ``"already_leader"``."""
        tgt = _sid(target, "target")
        value, _ = self._leader_call(server_id, rm.TransferLeadershipCall(tgt), timeout)
        return _expect(value, tm.is_str, '"ok" or "already_leader"', server_id)

    def aux_command(self, server_id: Any, command: Any,
                    timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Call the machine's ``handle_aux(role, "call", command, aux_state, state)`` on that
        member; returns its reply (ra:aux_command/2)."""
        _check_term(command, "aux command")
        return self._ok(_sid(server_id), rm.AuxCall(command), _timeout(timeout))

    def cast_aux_command(self, server_id: Any, command: Any) -> None:
        """``handle_aux(role, "cast", command, ...)`` without waiting (ra:cast_aux_command/2)."""
        _check_term(command, "aux command")
        self._flush_pipes()     # in the order of the calls
        registry.cast_name(self.mb, _sid(server_id), rm.AuxCast(command))

    def ping(self, server_id: Any, timeout: float | None = DEFAULT_TIMEOUT) -> str:
        """``"pong"`` plus nothing else: the server process answers; raises if it does not."""
        sid = _sid(server_id)
        value = _expect(self._ok(sid, rm.PingCall(), _timeout(timeout)),
                        tm.tuple_of(tm.is_str, tm.any_term), '("pong", role)', sid)
        return value[0]

    # -- membership ---------------------------------------------------------------------------
    def members(self, server_ref: Any, timeout: float | None = DEFAULT_TIMEOUT
                ) -> tuple[list[ServerId], ServerId]:
        """The cluster's members as the leader knows them, and the leader."""
        value, leader = self._leader_call(server_ref, rm.MembersCall(True), timeout,
                                          retry_unknown=True)
        value = _expect(value, tm.tuple_of(tm.list_of(_leader_ok), _leader_ok),
                        "(members, leader)", leader)
        return [ServerId(*m) for m in value[0]], leader

    def initial_members(self, server_id: Any, timeout: float | None = DEFAULT_TIMEOUT
                        ) -> list[ServerId]:
        """The members the server was started with (its config, not the current cluster)."""
        sid = _sid(server_id)
        value = _expect(self._ok(sid, rm.InitialMembersCall(), _timeout(timeout)),
                        tm.list_of(_leader_ok), "a list of server ids", sid)
        return [ServerId(*m) for m in value]

    def members_info(self, server_ref: Any, timeout: float | None = DEFAULT_TIMEOUT
                     ) -> dict[ServerId, dict[str, Any]]:
        """Per member, what the leader knows: match and next index (ra:members_info)."""
        members, leader = self.members(server_ref, timeout)
        ov = _expect(self._ok(leader, rm.OverviewCall(), _timeout(timeout)), _is_overview,
                     "an overview", leader)
        peers = ov["peers"]
        out = {}
        for m in members:
            if m == leader:
                out[m] = {"status": "leader", "match_index": ov["last_written_index"],
                          "next_index": ov["last_index"] + 1}
            else:
                p = peers.get(str(m), {})
                out[m] = {"status": "follower", "match_index": p.get("match_index"),
                          "next_index": p.get("next_index")}
        return out

    def _membership(self, loc: Any, kind: str, server_id: Any, timeout: Any
                    ) -> tuple[str, ServerId]:
        sid = _sid(server_id)
        t = _timeout(timeout)
        deadline = None if t is None else time.monotonic() + t
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                value, leader = self._leader_call(loc, rm.CommandCall(kind, sid, "normal"),
                                                  left)
                return value, leader
            except MembershipError as e:
                # one change at a time: ra queues the next one; we retry until it is allowed
                if e.reason != "cluster_change_not_permitted" or (
                        deadline is not None and time.monotonic() >= deadline):
                    raise
                time.sleep(0.02)

    def add_member(self, server_loc: Any, server_id: Any,
                   timeout: float | None = DEFAULT_TIMEOUT) -> tuple[str, ServerId]:
        """Add ``server_id`` to the cluster; returns ``("ok", leader)`` once appended."""
        return self._membership(server_loc, "join", server_id, timeout)

    def remove_member(self, server_loc: Any, server_id: Any,
                      timeout: float | None = DEFAULT_TIMEOUT) -> tuple[str, ServerId]:
        """Remove ``server_id``; returns ``("ok", leader)`` once appended."""
        return self._membership(server_loc, "leave", server_id, timeout)

    def leave_and_terminate(self, server_ref: Any, server_id: Any,
                            timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Remove ``server_id`` from its cluster, then stop it (data kept)."""
        self.remove_member(server_ref, server_id, timeout)
        self.stop_server(server_id, timeout)

    def leave_and_delete_server(self, server_ref: Any, server_id: Any,
                                timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Remove ``server_id`` from its cluster, then delete it and its data."""
        self.remove_member(server_ref, server_id, timeout)
        self.force_delete_server(server_id, timeout)

    # -- commands -----------------------------------------------------------------------------
    def process_command(self, server_loc: Any, command: Any,
                        timeout: float | None = DEFAULT_TIMEOUT) -> tuple[Any, ServerId]:
        """Submit ``command`` and wait until it is applied: ``(reply, leader)``.

        Exactly once: the command carries this client's session and a sequence number, and
        an attempt whose outcome is unknown (the leader died or went silent holding it) is
        retried, with the same number, on the other members until ``timeout``; the cluster
        applies it once and answers every retry with the first reply. Raises ``Timeout`` (an
        ``OutcomeUnknown``: it may still be applied, once) when no attempt was answered in
        time; ``NoProc``/``NodeDown`` when no member could be reached at all (not applied)."""
        _check_term(command, "command")
        if not self.sessions:
            return self._leader_call(server_loc, rm.CommandCall("usr", command, "normal"),
                                     timeout)
        t = _timeout(timeout)
        deadline = None if t is None else time.monotonic() + t
        cands = _locs(server_loc)
        attempts = _Attempts()
        sess = self._session_for(cands, deadline)
        seq = sess.next_seq()
        left = t
        try:
            while True:
                msg = rm.CommandCall("usr", command, "normal",
                                     (sess.id, seq, sess.first_outstanding()))
                try:
                    return self._leader_call(cands, msg, left, True, attempts, True)
                except _SessionGone:
                    if attempts.unknown:
                        raise SessionExpired(
                            f"the session of this client expired while {command!r} was being "
                            "retried: whether it was applied is unknown") from None
                    # refused before anything was applied: the same command, a new session
                    sess.done(seq)
                    self._drop_session(sess)
                    sess = self._open_session(cands, deadline)
                    seq = sess.next_seq()
                left = None if deadline is None else deadline - time.monotonic()
        finally:
            sess.done(seq)

    def pipeline_command(self, server_id: Any, command: Any, correlation: Any = None,
                         priority: str = "low") -> None:
        """Submit ``command`` without waiting. With a ``correlation``, an
        ``RaEvent(leader, ("applied", [(corr, reply), ...]))`` or ``("rejected", ...)`` event
        arrives in this client's mailbox (:meth:`receive`).

        Sent at once, unless the connection to that server is backed up (frames are already
        waiting for its socket): then it leaves with the commands after it, in one frame, at
        the first of: a later ``pipeline_command`` that finds the backlog drained, 512 commands
        held, this client's next call, :meth:`receive` or :meth:`close` (the frames waiting
        for the socket need this client's mailbox to run as much)."""
        sid = _sid(server_id)
        if priority not in ("low", "normal"):
            raise ValueError(f"priority must be 'low' or 'normal', not {priority!r}")
        size = _check_term(command, "command") + _check_term(correlation, "correlation")
        # notified at our address as seen from its node (another host: a routable one)
        node = sid.node
        reply_to = self._reply_to.get(node)
        if reply_to is None:
            if len(self._reply_to) >= 4096:
                self._reply_to.clear()
            reply_to = self._reply_to[node] = self.address_for(node)
        if correlation is None or not self.sessions:
            self._pipe(sid, reply_to, priority, size, command, correlation, None, 0, 0)
            return
        # tracked until its event arrives; re-pipelining the same command with the same
        # correlation before then reuses its seq, so it is applied once. (The hot path of
        # W3: no call or allocation that the common case does not need.)
        sess = self._sessions.get(sid)
        if sess is None:
            sess = self._session_for([sid], None if self._pipe_open_timeout is None else
                                     time.monotonic() + self._pipe_open_timeout)
        pending = self._pipes.get(correlation)
        seq = 0
        if pending is None or pending[0] is not sess:
            if pending is not None:
                # the correlation reused with another cluster: the commands pending under
                # it there are no longer tracked (nothing could settle them any more)
                self._forget_pipe(correlation)
            seq = sess.seq = sess.seq + 1
            sess.waiting.add(seq)
            self._pipes[correlation] = [sess, seq, command]
        else:
            for i in range(1, len(pending), 2):
                if pending[i + 1] == command:
                    seq = pending[i]
                    break
            if not seq:
                seq = sess.next_seq()
                pending += (seq, command)
        # the lowest seq is usually still awaited (many in flight): then it is the answer
        low = sess.low
        first_out = low if low in sess.waiting else sess.first_outstanding()
        self._pipe(sid, reply_to, priority, size, command, correlation, sess.id, seq, first_out)

    def _pipe(self, sid: ServerId, pid: str, priority: str, size: int, command: Any,
              correlation: Any, session: int | None, seq: int, first_out: int) -> None:
        """Send one pipelined command, numbered already, or hold it back in a batch.

        While the connection to ``sid`` is backed up (bytes the socket would not take yet:
        ``backlog``), the commands that follow would only queue behind them: they are held
        and leave together as one :class:`~ra.messages.PipelineBatch` (one frame to encode,
        send, receive and check), once the backlog has drained, the batch is full, or before
        anything that sends elsewhere or waits (a call, :meth:`receive`, :meth:`close`). An
        idle connection sends each command at once, as before: batching adds no latency."""
        b = self._batch
        if b:
            if (sid is self._batch_sid or sid == self._batch_sid) \
                    and priority == self._batch_prio and size < _BATCH_BYTES:
                b += (command, correlation, session, seq, first_out)
                self._batch_bytes += size
                if (len(b) >= 5 * _BATCH_CMDS or self._batch_bytes >= _BATCH_BYTES
                        or not self.mb.backlog(self._batch_ep)):
                    self._flush_pipes()
                return
            self._flush_pipes()
        try:
            ep = registry.resolve(self.mb, sid.name, sid.node, 1.0)
        except (NoProc, NodeDown, Timeout):
            return                  # as any cast: dropped silently if it cannot be resolved
        if size < _BATCH_BYTES and self.mb.backlog(ep):
            self._batch = [command, correlation, session, seq, first_out]
            self._batch_bytes = size
            self._batch_sid, self._batch_ep, self._batch_pid, self._batch_prio = \
                sid, ep, pid, priority
            return
        self.mb.cast(ep, rm.PipelineCast(command, correlation, pid, priority, session, seq,
                                         first_out))

    def _flush_pipes(self) -> None:
        """Send the pipelined commands held back (``_pipe``), if any."""
        b = self._batch
        if not b:
            return
        self._batch = []
        self._batch_bytes = 0
        if len(b) == 5:
            msg: Any = rm.PipelineCast(b[0], b[1], self._batch_pid, self._batch_prio, b[2],
                                       b[3], b[4])
        else:
            msg = rm.PipelineBatch(self._batch_pid, self._batch_prio, b)
        self.mb.cast(self._batch_ep, msg)

    def _forget_pipe(self, correlation: Any) -> None:
        pending = self._pipes.pop(correlation)
        sess = pending[0]
        for i in range(1, len(pending), 2):
            sess.waiting.discard(pending[i])

    def receive(self, timeout: float | None = None) -> RaEvent:
        """The next event in this client's mailbox; raises ``Timeout`` if none arrives.

        An ``("ra_event", leader, event)`` from a server is returned as ``RaEvent(leader,
        event)``; anything else that arrives (a machine's ``send_msg``, or a message that only
        looks like an event: a leader that is not a server id) as ``RaEvent(None, message)``.
        Nothing that arrives makes this raise."""
        t = _timeout(timeout)
        self._flush_pipes()
        env = self.mb.recv(t)
        if env is None:
            raise Timeout(f"no event within {t} s")
        p = env.payload
        if type(p) is tuple and len(p) == 3 and p[0] == "ra_event" and _leader_ok(p[1]):
            leader = ServerId(*p[1]) if p[1] is not None else None    # _leader_ok: it is one
            event = p[2]
            if (type(event) is tuple and len(event) == 2 and event[0] == rm.APPLIED_FLAT
                    and type(event[1]) is list and len(event[1]) % 2 == 0):
                it = iter(event[1])
                event = ("applied", list(zip(it, it)))
            self._settle_pipes(event)
            return RaEvent(leader, event)
        return RaEvent(None, p)

    def _settle_pipes(self, event: Any) -> None:
        """An ``applied`` or ``rejected`` event ends the wait for those pipelined commands:
        their seqs stop holding the session's first outstanding seq back."""
        if not self._pipes:
            return
        try:
            if event[0] == "applied":
                corrs = [c for c, _ in event[1]]
            elif event[0] == "rejected":
                corrs = [event[1][2]]
            else:
                return
        except (TypeError, IndexError, KeyError, ValueError):   # not an event of ours
            return
        pipes = self._pipes
        for corr in corrs:
            try:
                pending = pipes.get(corr)
            except TypeError:           # an unhashable correlation was never tracked
                continue
            if pending is None:
                continue
            # [session, seq, command, seq, command, ...]: the oldest is answered first
            pending[0].waiting.discard(pending[1])
            if len(pending) == 3:
                del pipes[corr]
            else:
                del pending[1:3]

    # -- queries ------------------------------------------------------------------------------
    def local_query(self, server_id: Any, query_fun: Any,
                    timeout: float | None = DEFAULT_TIMEOUT) -> tuple[tuple[int, int], Any, Any]:
        """Run ``query_fun(state)`` on that member as it is: ``((index, term), result,
        leader)``; may be stale."""
        q = _query(query_fun)
        sid = _sid(server_id)
        value = _expect(self._ok(sid, rm.LocalQueryCall(q), _timeout(timeout), query=True),
                        _is_local_query, "((index, term), result, leader)", sid)
        (idx, term), result, leader = value
        return (idx, term), _query_result(result, sid), ServerId(*leader) if leader else None

    def leader_query(self, server_id: Any, query_fun: Any,
                     timeout: float | None = DEFAULT_TIMEOUT) -> tuple[tuple[int, int], Any, Any]:
        """Like :meth:`local_query` on the leader (found through ``server_id``)."""
        q = _query(query_fun)
        try:
            value, leader = self._leader_call(server_id, rm.LeaderQueryCall(q), timeout,
                                              retry_unknown=True)
        except _NotATerm as e:
            raise QueryError(str(e)) from None
        (idx, term), result, _ = _expect(value, _is_local_query,
                                         "((index, term), result, leader)", leader)
        return (idx, term), _query_result(result, leader), leader

    def consistent_query(self, server_id: Any, query_fun: Any,
                         timeout: float | None = DEFAULT_TIMEOUT) -> tuple[Any, ServerId]:
        """Run ``query_fun(state)`` on the leader once a heartbeat round confirms it leads and
        every command committed before the call is applied: ``(result, leader)``."""
        q = _query(query_fun)
        try:
            value, leader = self._leader_call(server_id, rm.ConsistentQueryCall(q), timeout,
                                              retry_unknown=True)
        except _NotATerm as e:
            raise QueryError(str(e)) from None
        return _query_result(value, leader), leader

    def key_metrics(self, server_id: Any, timeout: float | None = DEFAULT_TIMEOUT) -> dict:
        """The server's key figures as it last reported them to its node daemon (the server
        process is not called, so this answers even when it is busy)."""
        sid = _sid(server_id)
        return _expect(self._daemon(sid.node, rm.ServerMetrics(sid.name), timeout), _is_dict,
                       "a metrics dict", sid)


def _query_result(result: Any, where: Any) -> Any:
    """A query's result, or :class:`QueryError` for the server's ``("$query_error", text,
    module)`` (the query could not be imported, or raised)."""
    if type(result) is tuple and len(result) in (2, 3) and result[0] == "$query_error":
        module = result[2] if len(result) == 3 and type(result[2]) is str else None
        if module is not None:
            raise QueryError(f"{where}: {result[1]}", module)
        raise QueryError(f"{where}: the query function raised in the server: {result[1]}")
    return result


class _NotATerm(RaError):
    """Internal: the server could not encode its reply (a query's or a machine's result)."""


def _answer(res: Any, target: Any) -> Any:
    """Check a server's reply: ``("ok", value, leader)`` or ``("redirect", leader)`` are
    returned; an error reply is raised as its typed error; anything else is
    :class:`BadReply`."""
    if type(res) is tuple and res:
        tag = res[0]
        if tag == "ok" and len(res) == 3 and _leader_ok(res[2]):
            return res
        if tag == "redirect" and len(res) == 2 and _leader_ok(res[1]):
            return res
        if tag == "error" and len(res) == 4 and res[1] == "reply_too_large":
            raise RaError(f"{target} carried the request out, but its reply of {res[2]} bytes "
                          f"exceeds the frame limit of {res[3]} bytes and cannot be sent: "
                          "return less (e.g. query a part of the state)")
        if tag == "error" and len(res) in (2, 3):
            if len(res) == 3 and res[1] == tm.BAD_REQUEST:
                raise BadRequest(f"{target} refused the request: {res[2]}", str(res[2]))
            if len(res) == 3 and res[1] == "not_a_term":
                raise _NotATerm(f"{target}: its reply is not a term: {res[2]}")
            raise _server_error(target, res[1])
    raise BadReply(f"{target} answered {res!r:.200}: not a reply of the protocol; "
                   "outcome unknown")


def _expect(value: Any, ok: Callable[[Any], bool], what: str, where: Any) -> Any:
    """``value`` if it passes ``ok``, else :class:`BadReply`."""
    if ok(value):
        return value
    raise BadReply(f"{where} answered {value!r:.200}, not {what}; outcome unknown")


#: leader ids found valid (every answer names one, almost always the same: checked once);
#: emptied when full, so it stays bounded
_valid_leaders: set[Any] = set()


def _leader_ok(x: Any) -> bool:
    """``None`` or a server id whose node can be called (a redirect is followed)."""
    if x is None:
        return True
    try:
        if x in _valid_leaders:
            return True
    except TypeError:               # unhashable: not a server id
        return False
    if not (tm.sid(x) and tm.valid_node(x[1])):
        return False
    try:
        ServerId(*x)        # the wire's node check admits "tcp://h:1" and "h-:1"; ServerId not
    except (TypeError, ValueError):
        return False
    if len(_valid_leaders) >= 1024:
        _valid_leaders.clear()
    _valid_leaders.add(x)
    return True


def _is_dict(x: Any) -> bool:
    return type(x) is dict


_is_local_query = tm.tuple_of(tm.tuple_of(tm.nat, tm.nat), tm.any_term, _leader_ok)


def _is_overview(x: Any) -> bool:
    return (type(x) is dict and type(x.get("peers")) is dict
            and type(x.get("last_written_index")) is int and type(x.get("last_index")) is int)


def _server_conf(conf: Any) -> dict[str, Any]:
    """A server config as the user wrote it, in wire form (``id`` taken apart into ``name`` and
    ``node``, server ids as pairs, a ``uid`` made if absent) and checked by the one schema,
    :data:`ra.core.config.SERVER`. Raises InvalidConfig naming the key, or TypeError."""
    if not isinstance(conf, dict):
        raise TypeError(f"a server config is a dict, not {type(conf).__name__}")
    wire: dict[str, Any] = {}
    for k, v in conf.items():
        if k not in SERVER.by_user:         # the names users write ("id", not "name")
            raise InvalidConfig(str(k), v, f"unknown server config key; known: "
                                           f"{', '.join(sorted(SERVER.by_user))}")
        wire[SERVER.by_user[k].name] = v
    sid = None
    try:
        sid = _sid(conf.get("id"), "id")
        members = [_sid(m, "initial_members item") for m in conf.get("initial_members") or []]
    except (TypeError, InvalidConfig) as e:
        bad = "id" if sid is None else "initial_members"
        why = e.allowed if isinstance(e, InvalidConfig) else str(e)
        raise InvalidConfig(bad, conf.get(bad), why) from None
    wire["name"] = sid.name
    wire["initial_members"] = [list(m) for m in members]
    wire["uid"] = conf.get("uid") or new_uid(sid.name)
    if "machine" in conf:
        wire["machine"] = _machine(conf["machine"])
    out = SERVER.validate(wire)
    out["node"] = sid.node
    return out


_ERROR_CLASSES: dict[str, type[RaError]] = {
    "AlreadyStarted": AlreadyStarted, "NotFound": NotFound, "NodeDown": NodeDown,
    "NoProc": NoProc, "Timeout": Timeout, "not_found": NotFound, "NotFoundError": NotFound,
}


def _refused(node: str, msg: Any, reason: str) -> BadRequest:
    """The error of a request a node's door refused: a :class:`BadConfig` (also an
    ``InvalidConfig``) when the reason names a key of a server config
    (``bad_field:StartServer.conf.KEY``), else a ``BadRequest``."""
    text = f"node {node} refused the request: {reason}"
    where = reason.partition("bad_field:")[2].split(".", 2)
    if len(where) == 3 and isinstance(getattr(msg, where[1], None), dict):
        key = SERVER.by_user.get(where[2])
        conf = getattr(msg, where[1])
        if key is not None:
            return BadConfig(text, reason, key.user_name, conf.get(key.name), key.allowed())
        return BadConfig(text, reason, "unknown_key", sorted(map(str, conf)),
                         f"keys of a server config: {', '.join(sorted(SERVER.by_user))}")
    return BadRequest(text, reason)


def _daemon_error(node: str, tag: str, text: str, fields: Any = None) -> RaError:
    """The typed error of a daemon's ``("error", tag, text[, fields])`` answer."""
    err = error_from_reply(tag, text, fields, _ERROR_CLASSES)
    return err if err is not None else RaError(f"node {node}: {tag}: {text}")


def _load_error(sid: ServerId, info: dict[str, Any]) -> MachineLoadError:
    """What a node reported about a machine that did not load (``ra_start_status``)."""
    from ra.server.usercode import importable_hint
    return MachineLoadError(info.get("machine"), str(info.get("fix") or importable_hint()),
                            node=sid.node, server=sid.name,
                            reason=str(info.get("reason", "unknown")))


def _deadline(timeout: Any) -> float:
    t = _timeout(timeout)
    return time.monotonic() + (t if t is not None else 30.0)


def _server_error(target: ServerId, reason: Any) -> RaError:
    if isinstance(reason, tuple) and len(reason) == 3 and reason[0] == "machine_error":
        return MachineError(f"{target}: the machine raised {reason[1]}: {reason[2]} (applied "
                            "as a no-op on every member)", str(reason[1]), str(reason[2]))
    if reason == "session_expired":
        return _SessionGone(f"{target}: session unknown to the cluster")
    if reason == "stale_seq":
        return SessionExpired(f"{target}: the command's sequence number is below what this "
                              "client still waits for: not applied now")
    if reason in ("cluster_change_not_permitted", "already_member", "not_member",
                  "last_member"):
        return MembershipError(f"{target}: {reason}", reason)
    if reason == "unknown_member":
        return NotFound(f"{target}: the target is not a member of the cluster")
    return RaError(f"{target}: {reason}")


class _ThreadClient:
    """One thread's default client. A thread's locals are dropped when it ends, and with them
    this holder, which closes the client's mailbox (its sockets and ipc file)."""

    __slots__ = ("client", "pid")

    def __init__(self) -> None:
        self.client = Client()
        self.pid = os.getpid()

    def __del__(self) -> None:
        if self.pid == os.getpid():       # a forked child does not close its parent's sockets
            try:
                self.client.close()
            except Exception:   # interpreter shutdown: the modules it needs may be gone
                pass


_local = threading.local()


def default_client() -> Client:
    """This thread's default client, which the module functions (``ra.process_command``...)
    use: made on first use in each thread (and anew in a forked child), so the module
    functions are safe from any number of threads at once. Each thread's client has its own
    mailbox and sessions: ``ra.receive`` returns the events of the pipeline commands sent from
    the same thread. A :class:`Client` itself is not thread-safe: give each thread its own,
    or guard a shared one with a lock."""
    h = getattr(_local, "h", None)
    if h is None or h.pid != os.getpid():
        h = _local.h = _ThreadClient()
    return h.client  # type: ignore[no-any-return]
