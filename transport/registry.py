"""No ra equivalent (Erlang's local name registry and epmd). The node daemon's name registry.

Each node daemon keeps a :class:`Registry` of ``name -> (endpoints, pid)`` for the processes it
hosts, and answers registry calls on its own mailbox through :class:`RegistryServer`.
Other processes reach ``(name, node)`` by asking that daemon once (:func:`resolve`) and caching
the endpoint; :func:`call_name` re-resolves when the cached endpoint turns out dead (the process
restarted and bound elsewhere).

Protocol (all are calls to the daemon's mailbox; the messages are the typed ones of
:mod:`transport.messages`, checked by its validators before they reach
:meth:`RegistryServer.answer`):

* ``RegRegister(name, endpoints, pid)`` -> ``"ok"`` or
  ``("error", "already_registered", endpoints)`` when a *live* other pid holds the name.
* ``RegUnregister(name)`` -> ``"ok"`` (also when the name was unknown).
* ``RegWhereis(name)`` -> ``endpoints`` (a list, preferred first) or ``None``.
* ``RegRegistered()`` -> ``{name: endpoints}``.

One cast, for a process that must never wait on a daemon (a ra server's loop serves its peers
and clients meanwhile): ``RegResolve(name, node, reply_to)`` is answered by a cast
``RegResolved(name, node, endpoints | None)`` to ``reply_to``; :class:`Resolver` is the asking
side. ``RegRelay(name, node, reply_to)``, cast to the asker's own daemon for a name on another
node, is answered the same way: that daemon asks ``node``'s with a ``RegResolve`` over the
connection the two keep anyway, and passes the answer on (:meth:`RegistryServer.relay`).

A malformed request is answered ``("error", "bad_request", reason)`` if it was a call, and
dropped if a cast; a call cast (or a cast called) is refused the same way.

A pid that no longer runs is pruned on lookup, so a SIGKILLed process that never unregistered
is reported as not registered (NoProc for callers), not as a stale endpoint.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from transport import messages as msgs
from transport.errors import BadReply, NodeDown, NodeLost, NoProc, ProcessDied, Timeout
from transport.envelope import Envelope
from transport.mailbox import BaseMailbox

__all__ = [
    "Registry",
    "RegistryServer",
    "node_endpoint",
    "call_daemon",
    "register",
    "unregister",
    "whereis",
    "resolve",
    "invalidate",
    "invalidate_node",
    "Resolver",
    "call_name",
    "cast_name",
    "pid_alive",
]

def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (a dead child not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # state is the field after the parenthesised command name
            return f.read().rpartition(b")")[2].split()[0] not in (b"Z", b"X")
    except OSError:
        return True  # no procfs: trust kill(0)


class Registry:
    """Pure name table. ``is_alive(pid)`` is injected so tests need no processes."""

    def __init__(self, is_alive: Callable[[int], bool] = pid_alive) -> None:
        self._names: dict[str, tuple[list[str], int]] = {}
        self._is_alive = is_alive

    def register(self, name: str, endpoints: Sequence[str], pid: int) -> Any:
        """Bind ``name``. Re-registering by the same pid (or over a dead pid) replaces."""
        cur = self._names.get(name)
        if cur is not None and cur[1] != pid and self._is_alive(cur[1]):
            return ("error", "already_registered", list(cur[0]))
        self._names[name] = (list(endpoints), pid)
        return "ok"

    def unregister(self, name: str) -> None:
        self._names.pop(name, None)

    def unregister_pid(self, pid: int) -> list[str]:
        """Drop every name held by ``pid`` (the daemon calls this when a child exits)."""
        gone = [n for n, (_, p) in self._names.items() if p == pid]
        for n in gone:
            del self._names[n]
        return gone

    def whereis(self, name: str) -> list[str] | None:
        cur = self._names.get(name)
        if cur is None:
            return None
        if not self._is_alive(cur[1]):
            del self._names[name]
            return None
        return list(cur[0])

    def registered(self) -> dict[str, list[str]]:
        return {n: list(e) for n, (e, p) in list(self._names.items()) if self._is_alive(p)}


class RegistryServer:
    """Serves the registry protocol on a daemon's mailbox.

    A node daemon validates each message once at its door and passes registry requests to
    :meth:`answer`. A process that hosts only the registry may pass every envelope to
    :meth:`handle` instead, which validates and answers: it returns ``True`` when the message
    was a registry request (answered, or dropped if malformed), ``False`` otherwise.
    """

    #: a relayed question unanswered this long is forgotten: as long as its askers' own
    #: requests live (:class:`Resolver`'s timeout), so that an asker's next request, after
    #: its back-off, is asked again rather than joined to a question that went nowhere
    RELAY_TIMEOUT = 1.0
    #: at most this many relayed questions open at once, and askers per question: a flood
    #: of relays is dropped (counted), never held without bound
    MAX_RELAYS = 65536
    MAX_ASKERS = 64

    def __init__(self, registry: Registry | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry if registry is not None else Registry()
        self.clock = clock
        #: malformed registry requests seen by :meth:`handle`, by reason
        self.dropped: dict[str, int] = {}
        #: (name, node) -> (when forgotten, its askers' reply_to): questions relayed and not
        #: yet answered, in the order asked (so also by expiry)
        self._relayed: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self.relay_counters = {"relayed": 0, "joined": 0, "answered": 0, "expired": 0,
                               "ignored": 0, "refused": 0}

    @staticmethod
    def is_request(payload: Any) -> bool:
        t = type(payload)
        return t in msgs.REGISTRY_MSGS or t in msgs.REGISTRY_CASTS

    def handle(self, mailbox: BaseMailbox, env: Envelope) -> bool:
        p = env.payload
        if not self.is_request(p):
            return False
        reason = msgs.check(p)
        if reason is None and (type(p) in msgs.REGISTRY_CASTS) == (env.kind == "call"):
            reason = f"bad_kind:{type(p).__name__}"
        if reason is not None:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            if env.kind == "call":
                mailbox.reply(env.frm, ("error", msgs.BAD_REQUEST, reason))
            return True
        if type(p) is msgs.RegResolved:
            self.on_relayed(mailbox, p)
        elif type(p) is msgs.RegResolve:
            self.resolve_to(mailbox, p)
        elif type(p) is msgs.RegRelay:
            self.relay(mailbox, p)
        else:
            mailbox.reply(env.frm, self.answer(p))
        return True

    def resolve_to(self, mailbox: BaseMailbox, p: msgs.RegResolve) -> None:
        """Cast the answer to a *valid* ``RegResolve`` to its ``reply_to``. Never raises: an
        answer that cannot leave is lost, as any cast (the asker's deadline covers it)."""
        self._answer(mailbox, p.reply_to,
                     msgs.RegResolved(p.name, p.node, self.registry.whereis(p.name)))

    def _answer(self, mailbox: BaseMailbox, to: str, answer: msgs.RegResolved) -> None:
        try:
            mailbox.cast(to, answer)
        except (ValueError, TypeError):
            self.dropped["unsendable:RegResolved"] = (
                self.dropped.get("unsendable:RegResolved", 0) + 1)

    def relay(self, mailbox: BaseMailbox, p: msgs.RegRelay) -> None:
        """Ask ``p.node``'s daemon where ``p.name`` is, for ``p.reply_to`` (a *valid*
        ``RegRelay``). A question already open gains an asker instead of leaving again. Never
        raises, never blocks: a node that does not answer leaves the question to expire
        (``RELAY_TIMEOUT``, or at once when the node's failure detector reports it down or
        up: :meth:`forget_node`), and its askers' own deadlines cover them."""
        now = self.clock()
        self._expire(now)
        key = (p.name, p.node)
        open_ = self._relayed.get(key)
        if open_ is not None:
            if p.reply_to not in open_[1]:
                if len(open_[1]) >= self.MAX_ASKERS:
                    self.relay_counters["refused"] += 1
                    return
                open_[1].append(p.reply_to)
            self.relay_counters["joined"] += 1
            return
        if len(self._relayed) >= self.MAX_RELAYS:
            self.relay_counters["refused"] += 1
            return
        ep = node_endpoint(p.node)
        try:
            mailbox.cast(ep, msgs.RegResolve(p.name, p.node, mailbox.reply_address(ep)))
        except (ValueError, TypeError):    # an address the socket layer refuses: no node
            self.relay_counters["refused"] += 1
            return
        self._relayed[key] = (now + self.RELAY_TIMEOUT, [p.reply_to])
        self.relay_counters["relayed"] += 1

    def on_relayed(self, mailbox: BaseMailbox, p: msgs.RegResolved) -> None:
        """Pass a *valid* answer to a relayed question on to its askers. An answer to no
        open question of ours (unsolicited, late, or a second one) is ignored: nobody can
        plant an endpoint through it."""
        self._expire(self.clock())
        open_ = self._relayed.pop((p.name, p.node), None)
        if open_ is None:
            self.relay_counters["ignored"] += 1
            return
        self.relay_counters["answered"] += 1
        for to in open_[1]:
            self._answer(mailbox, to, p)

    def forget_node(self, node: str) -> None:
        """``node`` went down or came back up: its open questions will get no answer, or a
        stale one; forget them, so that the next ask leaves again at once."""
        ep = node_endpoint(node)
        for key in [k for k in self._relayed if node_endpoint(k[1]) == ep]:
            del self._relayed[key]
            self.relay_counters["expired"] += 1

    def _expire(self, now: float) -> None:
        relayed = self._relayed
        while relayed:
            key = next(iter(relayed))
            if relayed[key][0] > now:
                return
            del relayed[key]
            self.relay_counters["expired"] += 1

    def answer(self, p: Any) -> Any:
        """The reply to one *valid* registry request (pure apart from the pid check)."""
        reg = self.registry
        t = type(p)
        if t is msgs.RegWhereis:
            return reg.whereis(p.name)
        if t is msgs.RegRegister:
            return reg.register(p.name, p.endpoints, p.pid)
        if t is msgs.RegUnregister:
            reg.unregister(p.name)
            return "ok"
        if t is msgs.RegRegistered:
            return reg.registered()
        return ("error", msgs.BAD_REQUEST, "unknown_message")


# -- client side ----------------------------------------------------------------------------

def node_endpoint(node: str) -> str:
    """The daemon mailbox endpoint of node ``"host:port"`` (an endpoint is returned as is)."""
    return node if "://" in node else f"tcp://{node}"


def call_daemon(mb: BaseMailbox, node: str, msg: Any, timeout: float | None) -> Any:
    """Call ``node``'s daemon: ``NodeDown`` if it was not reached, ``NodeLost`` if it went
    down with the request."""
    ep = node_endpoint(node)
    mb.note_node(ep, ep)  # a dead daemon endpoint is NodeDown, not NoProc
    try:
        return mb.call(ep, msg, timeout)
    except ProcessDied:
        raise NodeLost(f"node {node} went down after the request was sent") from None
    except NoProc:
        raise NodeDown(f"node {node} is down") from None
    except ValueError as e:      # not an address the socket layer takes: no such node
        raise NodeDown(f"node {node!r} cannot be reached: {e}") from None


def register(mb: BaseMailbox, name: str, node: str, *, endpoints: Sequence[str] | None = None,
             pid: int | None = None, timeout: float | None = 5.0) -> Any:
    """Register ``name`` for ``mb`` (all its addresses unless ``endpoints`` given) at ``node``.
    Returns ``"ok"`` or ``("error", "already_registered", endpoints)``."""
    return call_daemon(mb, node, msgs.RegRegister(name, list(endpoints or mb.addresses),
                                                   os.getpid() if pid is None else pid), timeout)


def unregister(mb: BaseMailbox, name: str, node: str, timeout: float | None = 5.0) -> None:
    call_daemon(mb, node, msgs.RegUnregister(name), timeout)


def whereis(mb: BaseMailbox, name: str, node: str, timeout: float | None = 5.0) -> list[str] | None:
    """Ask ``node`` where ``name`` is (uncached)."""
    result = call_daemon(mb, node, msgs.RegWhereis(name), timeout)
    if result is None or msgs.list_of(msgs.valid_endpoint, nonempty=True)(result):
        return result           # type: ignore[no-any-return]
    raise BadReply(f"node {node} answered whereis {name!r} with {result!r:.200}")


_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", socket.gethostname()}


def _pick(endpoints: list[str], node: str) -> str:
    # ipc only when the node is on this host and the path is here: it skips the TCP stack.
    host = node_endpoint(node).split("://", 1)[1].rpartition(":")[0].strip("[]")
    if host in _LOCAL_HOSTS or node.startswith("ipc://"):
        for ep in endpoints:
            if ep.startswith("ipc://") and os.path.exists(ep[6:]):
                return ep
    for ep in endpoints:
        if not ep.startswith("ipc://"):
            return ep
    return endpoints[0]


def resolve(mb: BaseMailbox, name: str, node: str, timeout: float | None = 5.0) -> str:
    """Endpoint of ``(name, node)``, from ``mb``'s cache or by asking the node daemon.

    Raises ``NoProc`` if the name is not registered (or its process died), ``NodeDown`` if the
    daemon cannot be reached. Also tells ``mb`` which node the endpoint lives on, so a later
    dead call is classified right.
    """
    cache = mb.name_cache
    ep = cache.get((name, node))
    if ep is not None:
        return ep
    endpoints = whereis(mb, name, node, timeout)
    if not endpoints:
        raise NoProc(f"{name!r} is not registered on {node}")
    ep = _pick(endpoints, node)
    cache[(name, node)] = ep
    mb.note_node(ep, node_endpoint(node))
    return ep


class Resolver:
    """Resolution of ``(name, node)`` without waiting: for a process whose loop must go on
    serving while a daemon answers (a ra server), where :func:`resolve` would block.

    :meth:`request` casts ``RegResolve`` to ``node``'s daemon; the owner feeds the
    ``RegResolved`` casts it receives to :meth:`on_resolved` and calls :meth:`expire` by
    :meth:`next_deadline`. Contract:

    * at most one request per ``(name, node)`` is in flight; an unanswered one expires after
      ``timeout`` s, and its node is then not asked again for ``backoff`` s, doubled per
      consecutive expiry up to ``max_backoff`` (a node down or busy is not flooded); any
      answer from the node ends its back-off;
    * an answer to no request of ours (unsolicited, or one already answered) is ignored and
      returns ``None``: it cannot plant an endpoint; one that comes after its request
      expired is still taken, up to ``timeout + backoff`` later;
    * "not registered" is remembered for ``noproc_backoff`` s, doubled per consecutive such
      answer up to ``max_backoff``: a peer that is restarting is not asked for at every send
      (a node restarting a thousand servers hears from every peer of each), and a restarted
      peer's own first message tells where it is anyway;
    * resolved endpoints go to ``mb``'s cache (the one :func:`resolve`, :func:`invalidate` and
      nodeup's :func:`invalidate_node` use), and ``mb`` learns their node (see
      :func:`resolve`);
    * with ``relay`` (the asker's own daemon), a name on another node is asked through that
      daemon (``RegRelay``), which keeps a connection to every node it watches: no
      connection to the other node's daemon is opened (nor one back from it); the answer,
      the back-off and the expiry are the same;
    * never blocks, never raises for a node it cannot reach; no clock of its own beyond the
      injected ``clock``.
    """

    def __init__(self, mb: BaseMailbox, *, timeout: float = 1.0, backoff: float = 0.5,
                 max_backoff: float = 4.0, noproc_backoff: float = 0.5,
                 relay: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mb = mb
        #: our own node's daemon endpoint: names on other nodes are asked through it
        #: (``RegRelay``), over connections that exist already; None: ask each node directly
        self.relay = relay
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.noproc_backoff = noproc_backoff
        self.clock = clock
        #: (name, node) -> when its request expires
        self.inflight: dict[tuple[str, str], float] = {}
        #: (name, node) -> until when a late answer to an expired request is still taken
        self._late: dict[tuple[str, str], float] = {}
        #: node -> (not asked before, consecutive expiries)
        self._node_wait: dict[str, tuple[float, int]] = {}
        #: (name, node) -> (not asked before, consecutive "not registered" answers)
        self._noproc: dict[tuple[str, str], tuple[float, int]] = {}
        self.counters = {"requests": 0, "resolved": 0, "noproc": 0, "timeouts": 0,
                         "ignored": 0}

    def cached(self, name: str, node: str) -> str | None:
        """The endpoint already known for ``(name, node)``, if any."""
        return self.mb.name_cache.get((name, node))

    def pending(self, name: str, node: str) -> bool:
        """Whether a request for ``(name, node)`` is in flight (its answer is awaited)."""
        return (name, node) in self.inflight

    def request(self, name: str, node: str) -> bool:
        """Ask ``node``'s daemon where ``name`` is, unless a request is in flight or the node
        (or the name there) is backing off. Returns whether a request left."""
        key = (name, node)
        now = self.clock()
        if key in self.inflight:
            return False
        wait = self._node_wait.get(node)
        if wait is not None and wait[0] > now:
            return False
        noproc = self._noproc.get(key)
        if noproc is not None and noproc[0] > now:
            return False
        ep = node_endpoint(node)
        try:
            if self.relay is not None and ep != self.relay:
                self.mb.note_node(self.relay, self.relay)
                self.mb.cast(self.relay, msgs.RegRelay(name, node,
                                                       self.mb.reply_address(self.relay)))
            else:
                self.mb.note_node(ep, ep)
                self.mb.cast(ep, msgs.RegResolve(name, node, self.mb.reply_address(ep)))
        except ValueError:      # not an address the socket layer takes: as a node that is down
            self._node_wait[node] = (now + self.max_backoff, 0)
            return False
        self.inflight[key] = now + self.timeout
        self._late.pop(key, None)
        self.counters["requests"] += 1
        return True

    def on_resolved(self, msg: msgs.RegResolved) -> tuple[tuple[str, str], str | None] | None:
        """Take a *valid* answer: ``((name, node), endpoint)``, the endpoint ``None`` if the
        name is not registered; ``None`` if it answers no request of ours (ignored)."""
        key = (msg.name, msg.node)
        if self.inflight.pop(key, None) is None and self._late.pop(key, None) is None:
            self.counters["ignored"] += 1
            return None
        self._node_wait.pop(msg.node, None)     # the daemon answers again
        if not msg.endpoints:
            n = self._noproc.get(key, (0.0, 0))[1] + 1
            self._noproc[key] = (self.clock() + min(self.noproc_backoff * 2 ** (n - 1),
                                                    self.max_backoff), n)
            self.counters["noproc"] += 1
            return key, None
        self._noproc.pop(key, None)
        ep = _pick(msg.endpoints, msg.node)
        self.mb.name_cache[key] = ep
        self.mb.note_node(ep, node_endpoint(msg.node))
        self.counters["resolved"] += 1
        return key, ep

    def next_deadline(self) -> float | None:
        """When :meth:`expire` has something to do next (``None``: nothing in flight)."""
        return min(self.inflight.values()) if self.inflight else None

    def expire(self) -> list[tuple[str, str]]:
        """The requests whose time ran out (forgotten; their nodes back off)."""
        now = self.clock()
        gone = [k for k, t in self.inflight.items() if t <= now]
        waits: dict[str, float] = {}
        for node in {k[1] for k in gone}:   # one expiry per node: its requests left together
            n = self._node_wait.get(node, (0.0, 0))[1] + 1
            waits[node] = min(self.backoff * 2 ** (n - 1), self.max_backoff)
            self._node_wait[node] = (now + waits[node], n)
        for key in gone:
            del self.inflight[key]
            self._late[key] = now + self.timeout + waits[key[1]]
        self.counters["timeouts"] += len(gone)
        for k in [k for k, t in self._late.items() if t <= now]:
            del self._late[k]
        return gone

    def forget_node(self, node: str) -> None:
        """``node`` is (back) up: drop its back-off and negative answers; ask it again at once."""
        self._node_wait.pop(node, None)
        for key in [k for k in self._noproc if k[1] == node]:
            del self._noproc[key]


def invalidate(mb: BaseMailbox, name: str, node: str) -> None:
    """Forget the cached endpoint of ``(name, node)``; the next use re-resolves."""
    mb.name_cache.pop((name, node), None)


def invalidate_node(mb: BaseMailbox, node: str) -> None:
    """Forget every cached endpoint on ``node`` (e.g. on nodeup after a daemon restart)."""
    cache = mb.name_cache
    for key in [k for k in cache if k[1] == node]:
        del cache[key]


def call_name(mb: BaseMailbox, server: tuple[str, str], msg: Any,
              timeout: float | None = 5.0, attempts: set[int] | None = None) -> Any:
    """``mb.call`` to the process registered as ``server = (name, node)`` (``attempts``: as
    for :meth:`~transport.mailbox.BaseMailbox.call`).

    If the cached endpoint is dead before the call leaves (``NoProc``: not delivered),
    re-resolves once: a process that restarted elsewhere is called there; one that is gone
    raises ``NoProc``. A callee that dies after the call left raises ``ProcessDied`` (outcome
    unknown; the caller decides whether a retry is safe). The whole thing stays within
    ``timeout``.
    """
    name, node = server
    start = time.monotonic()
    ep = mb.name_cache.get((name, node))          # resolve()'s hit, inline
    left = timeout
    if ep is None:
        ep = resolve(mb, name, node, timeout)
        left = _left(start, timeout)
    try:
        return mb.call(ep, msg, left, attempts=attempts)
    except ProcessDied:
        invalidate(mb, name, node)
        raise           # it was sent: calling again could make it happen twice
    except NoProc:
        invalidate(mb, name, node)
        # NoProc / NodeDown propagate. The same endpoint again means a live pid still holds
        # the name (e.g. rebinding right now): one more try settles it.
        new = resolve(mb, name, node, _left(start, timeout))
        return mb.call(new, msg, _left(start, timeout), attempts=attempts)


def _left(start: float, timeout: float | None) -> float | None:
    """What is left at this moment of ``timeout`` s from ``start``."""
    return None if timeout is None else max(0.0, start + timeout - time.monotonic())


def cast_name(mb: BaseMailbox, server: tuple[str, str], msg: Any, resolve_timeout: float = 1.0) -> None:
    """``mb.cast`` to ``server = (name, node)``. Dropped silently if it cannot be resolved.

    Only a cache miss blocks (one daemon call, at most ``resolve_timeout``).
    """
    name, node = server
    try:
        ep = resolve(mb, name, node, resolve_timeout)
    except (NoProc, NodeDown, Timeout):
        return
    mb.cast(ep, msg)
