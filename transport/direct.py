"""No ra equivalent. A mailbox that speaks ZeroMQ's wire protocol (ZMTP 3.0) on plain sockets,
with no libzmq I/O thread. Every ra process uses it: clients, servers, WALs, segment writers and
node daemons. Every connection runs a security mechanism (:mod:`transport.mechanism`; default
PLAIN with the node secret, :mod:`transport.cookie`): a peer without the secret is refused at
the handshake, before any of its frames is read.

A libzmq mailbox moves every message through a second thread: the sender's thread hands the
frame to its I/O thread (a wake-up), which writes it; the receiver's I/O thread reads it and
wakes the receiver's thread (another). On a loaded 2-core machine those wake-ups cost more
than the work: under W2 (32 client processes) the cluster did 19 to 30 context switches per
command and its CPU per command was more than twice what it became without them (8 per
command). :class:`DirectMailbox` writes a frame itself and waits in ``epoll`` for what
arrives: one thread, one wake-up per batch of messages.

It is a drop-in :class:`~transport.mailbox.BaseMailbox`, peer of the libzmq
:class:`~transport.mailbox.Mailbox` on the wire:

* it listens on its endpoints (``tcp://host:port``, port 0 picks one, or ``ipc:///path``)
  and accepts the DEALER connections other mailboxes open to send to it (ZMTP handshake as
  a ROUTER); frames arriving there are the casts, calls and replies sent to it;
* it sends through one connection per destination, handshaking as a DEALER, so a libzmq
  mailbox's ROUTER takes it as any other peer;
* ``call``, ``cast``, ``reply``, ``recv`` and the error contract are the base class's, shared
  with :class:`~transport.mailbox.Mailbox`;
* :attr:`DirectMailbox.on_peer_closed` reports a destination whose process closed our
  connection (it died): a follower learns that its leader is gone in milliseconds;
  :attr:`DirectMailbox.on_peer_unreachable` one that nothing listens at (any more);
* ``advertise`` names the address peers reach a tcp listener at when it is not the bound one
  (a wildcard bind, or a NAT); ``routed_replies`` gives a client a reply address routable from
  each destination (see :meth:`DirectMailbox.reply_address`).

What differs, as for any plain socket: frames for a destination whose handshake is not over,
or whose socket buffer is full, wait in memory (at most ``max_queued_bytes`` per destination,
beyond which they are dropped and counted) and leave whenever the mailbox next waits or
sends; a destination whose connection closed is reconnected on the next send (checked with a
peek before each send, so a daemon restarted at the same address gets the next call), and
frames written to a connection that was already dead are lost, as they are with libzmq. Not
thread-safe: one mailbox per thread.
"""
from __future__ import annotations

import collections
import errno
import ipaddress
import logging
import math
import mmap
import os
import select
import socket
import time
import weakref
from collections.abc import Callable
from typing import Any

from transport.errors import HandshakeRefused
from transport.envelope import CALL, Envelope
from transport.envelope import NOT_THE_REPLY as _NOT_THE_REPLY
from transport.envelope import reply_value as _reply_value
from transport.mailbox import _IPC_MAX, BaseMailbox, _unlink_paths, default_ipc
from transport.mechanism import (Mechanism, MechanismFactory, _Clear, error_body,
                                 parse_command)

__all__ = ["DirectMailbox", "hub_max_peers"]

_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
_log = logging.getLogger("transport.direct")


def _greeting(mech: Mechanism) -> bytes:
    # signature, version 3.0, mechanism, as-server flag, filler: 64 bytes (ZMTP 3.0, RFC 23)
    return (_SIGNATURE + b"\x03\x00" + mech.name.ljust(20, b"\x00")
            + (b"\x01" if mech.as_server else b"\x00") + b"\x00" * 31)


_MORE, _LONG, _COMMAND = 0x01, 0x02, 0x04
_READ_SIZE = 256 << 10
#: a connection whose security handshake is not over this long after it opened is dropped
#: (counted ``handshake_timeout``): a peer cannot hold a half-open handshake forever
HANDSHAKE_TIMEOUT = 10.0
#: a client's cast skips the check that the peer is still there if the connection was checked
#: less than this long ago (a system call, and an exception, per frame: W3's client casts
#: 30,000 a second); a call checks unless a poll just did (_POLLED_FRESH)
_PEEK_EVERY = 0.02
#: a call skips that check if every connection was polled less than this long ago: the poll
#: read the end of any connection whose peer had closed it (a peek per call was a system call
#: and an exception, about 6,000 instructions, on each of a client's commands)
_POLLED_FRESH = 0.001
_monotonic = time.monotonic
#: events one poll takes; a poll that returns fewer has seen every connection
_MAX_EVENTS = 1024
#: TCP keepalive: a peer silent this long is probed, every INTVL s, CNT times, then the link is
#: found dead (a half-open connection after a host vanished: ~25 s instead of hours)
_KEEPIDLE, _KEEPINTVL, _KEEPCNT = 10, 5, 3
#: pending connections a listener queues (the kernel caps it at net.core.somaxconn): a node
#: restarting 1,000 servers has them all connect to its daemon while it is still forking the
#: rest; a full queue drops a connect, which TCP retries only after 1 s, then 3 s
_BACKLOG = 4096


def _tcp_options(sock: socket.socket) -> None:
    """No Nagle delay; keepalive so that a half-open link is found."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, v in (("TCP_KEEPIDLE", _KEEPIDLE), ("TCP_KEEPINTVL", _KEEPINTVL),
                   ("TCP_KEEPCNT", _KEEPCNT)):
        if hasattr(socket, opt):     # Linux; elsewhere the system's defaults
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), v)


def _frame(data: bytes) -> bytes:
    n = len(data)
    if n < 256:
        return bytes((0, n)) + data
    return b"\x02" + n.to_bytes(8, "big") + data


def _command(body: bytes) -> bytes:
    n = len(body)
    if n < 256:
        return bytes((_COMMAND, n)) + body
    return bytes((_COMMAND | _LONG,)) + n.to_bytes(8, "big") + body


class _Conn:
    """One ZMTP connection: the security handshake, the unparsed input and the unsent output."""

    __slots__ = ("sock", "fd", "to", "inbuf", "outbuf", "held", "held_bytes", "state",
                 "parts", "connecting", "mech", "clear", "rest", "born", "seal", "open",
                 "checked_at")

    def __init__(self, sock: socket.socket, to: str | None, mech: Mechanism,
                 connecting: bool = False) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.to = to                  # destination address (outgoing), None for accepted
        self.inbuf = bytearray()
        self.mech = mech
        # NULL and PLAIN carry frames as they are: the hot path skips seal/unseal
        self.clear = isinstance(mech, _Clear)
        # a mechanism may box a frame straight into the bytes to write, and open one where it
        # lies in the input (CURVE does: transport/curve.py); else seal/unseal and copies
        self.seal: Callable[[bytes], Any] | None = getattr(mech, "seal_frame", None)
        self.open: Callable[[Any, int, int], tuple[bytes, bool]] | None = \
            getattr(mech, "open_frame", None)
        hello = _greeting(mech) + b"".join(_command(b) for b in mech.start())
        if to is not None:
            # connecting: greeting and first commands leave at once (no mechanism's first
            # commands depend on the peer's greeting; pipelining saves a round trip)
            self.outbuf, self.rest = bytearray(hello), b""
        else:
            # accepting: signature and version first, the mechanism once the peer's greeting
            # is read, as libzmq does. A libzmq peer of another mechanism then sends its whole
            # greeting before it learns of the mismatch (and closes), so it is seen and refused
            self.outbuf, self.rest = bytearray(hello[:11]), hello[11:]
        self.held: list[bytes] = []   # frames sent before the handshake is over
        self.held_bytes = 0
        self.state = 0                # 0 greeting, 1 security handshake, 2 messages
        self.parts = 0                # frames so far of a multi-frame message (dropped)
        self.connecting = connecting  # TCP connect still in progress
        self.born = time.monotonic()  # the handshake must be over by born + HANDSHAKE_TIMEOUT
        self.checked_at = 0.0         # when the peer was last seen there (_send)


def _advertised(bound: list[str], advertise: str) -> list[str]:
    """``bound`` with its first tcp address replaced by ``advertise`` (``"host:port"``,
    port 0: the port bound)."""
    host, _, port = advertise.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ValueError(f"bad advertised address {advertise!r}: host:port")
    out = list(bound)
    for i, a in enumerate(out):
        if a.startswith("tcp://"):
            p = port if port != "0" else a.rpartition(":")[2]
            out[i] = f"tcp://[{host}]:{p}" if ":" in host else f"tcp://{host}:{p}"
            return out
    raise ValueError(f"advertise {advertise!r} without a tcp endpoint to advertise")


def _peer_name(sock: socket.socket) -> str:
    try:
        peer = sock.getpeername()
    except OSError:
        return "a peer"
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a local peer"


class DirectMailbox(BaseMailbox):
    """A mailbox without a libzmq I/O thread (see the module docstring): ra clients, servers
    and WALs use it.

    ``endpoint``: where to listen, ``"tcp://host:port"`` or ``"ipc:///path"``; ``None`` picks a
    fresh ipc path under ``$RA_IPC_DIR`` or the temp dir; ``also``: more endpoints (a call to
    an ipc peer carries our ipc address, to a tcp peer our tcp address).
    ``blocking_connect``: finish the handshake with a new destination before ``cast`` returns
    (clients, which may never wait afterwards) or hold the frames until it is over (servers,
    whose loop must not block). ``max_queued_bytes`` bounds what waits per destination.
    ``mechanism``: the ZMTP security mechanism of every connection, accepted or opened
    (:mod:`transport.mechanism`); default PLAIN with this process's node secret
    (:func:`transport.cookie.default_mechanism`, which raises BadSecret for an unusable cookie
    file). A peer offering another mechanism or wrong credentials is sent ERROR and closed
    before any of its frames is read (counted as ``refused``); a peer that refuses ours is
    counted as ``refused_by_peer``, and a call to it raises HandshakeRefused.

    ``advertise``: ``"host:port"`` that the first tcp endpoint is reached at, when that is not
    the address bound (``tcp://0.0.0.0:7000`` reached at ``10.0.0.1:7000``; port 0: the port
    bound): :attr:`address` and :attr:`addresses` carry it, so every reply address, registry
    entry and server id does. ``routed_replies`` (clients): see :meth:`reply_address`.
    """

    def __init__(self, endpoint: str | None = None, *, max_frame_bytes: int = 64 << 20,
                 probe_after: float = 0.01, max_peers: int = 256,
                 max_queued_bytes: int = 64 << 20, connect_timeout: float = 1.0,
                 also: tuple[str, ...] | list[str] = (), blocking_connect: bool = True,
                 mechanism: MechanismFactory | None = None, advertise: str | None = None,
                 routed_replies: bool = False) -> None:
        if mechanism is None:
            from transport.cookie import default_mechanism
            mechanism = default_mechanism()     # before binding: a bad cookie binds nothing
        self._mech = mechanism
        self._listeners: dict[int, socket.socket] = {}
        self._ipc_paths: list[str] = []
        bound = []
        try:
            for ep in [endpoint or default_ipc(), *also]:
                bound.append(self._listen(ep))
            if advertise is not None:
                bound = _advertised(bound, advertise)
        except BaseException:
            for ls in self._listeners.values():
                ls.close()
            _unlink_paths(self._ipc_paths, os.getpid())
            raise
        self._init_common(bound, max_frame_bytes, probe_after, max_peers)
        # where we can be reached back: a CURVE keyring learns our key for these addresses
        # (transport/curvekeys.py); libzmq ignores an X- property it does not know
        self._dealer_meta = {"Socket-Type": b"DEALER",
                             "X-Ra-Addresses": " ".join(bound).encode()}
        self._note_node = getattr(mechanism, "note_node", None)
        self._finalizer = weakref.finalize(self, _unlink_paths, list(self._ipc_paths),
                                           os.getpid())
        self.max_queued_bytes = max_queued_bytes
        self.connect_timeout = connect_timeout
        self.blocking_connect = blocking_connect
        #: seconds :meth:`close` waits for queued frames to leave (0: discard them)
        self.linger = 0.0
        #: called with a destination's address when its process closes our connection
        #: (it died or stopped): how a follower notices its leader is gone in milliseconds
        self.on_peer_closed: Callable[[str], None] | None = None
        #: called with a destination's address when a connection to it fails before its
        #: handshake is over (refused, reset, no such ipc path): nothing listens there (any
        #: more), so an address cached for it is stale
        self.on_peer_unreachable: Callable[[str], None] | None = None
        self._epoll = select.epoll()
        for fd in self._listeners:
            self._epoll.register(fd, select.EPOLLIN)
        self._conns: dict[int, _Conn] = {}
        self._next_reap = 0.0         # when _reap_stalled runs next
        #: when a poll last saw every connection (and so read the end of any that had closed)
        self._polled_at = -math.inf
        self._polls = 0               # polls so far (recv_many: whether it must poll)
        self._polls_taken = 0         # ... as of the end of the last recv_many
        # every read lands here (_input); an anonymous mapping, not a bytearray, whose
        # constructor writes zeros over all 256 KiB: only the pages reads reach become the
        # process's own (an idle server's USS, issue 17: 0.25 MB more with a bytearray)
        self._rbuf = mmap.mmap(-1, _READ_SIZE, flags=mmap.MAP_PRIVATE)
        self._rview = memoryview(self._rbuf)
        #: descriptors an owner polls with the sockets (watch), and what to run when readable
        self._watched: dict[int, Callable[[], None]] = {}
        self._no_poll = False         # _read takes only what is read (recv_many's rest)
        self._out: collections.OrderedDict[str, _Conn] = collections.OrderedDict()
        self._inbox: collections.deque[bytes] = collections.deque()
        self._refusals: dict[str, str] = {}   # destination -> why its handshake failed
        #: routed_replies: destination -> our reply address for it; family -> wildcard port
        self._routed: dict[str, str] | None = {} if routed_replies else None
        self._wildcard: dict[int, int] = {}

    def _listen(self, ep: str) -> str:
        """Listen on ``ep``; returns the address peers reach it at."""
        if ep.startswith("tcp://"):
            host, _, port = ep[6:].rpartition(":")
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            lsock = socket.socket(family, socket.SOCK_STREAM)
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                lsock.bind((host, 0 if port in ("*", "0") else int(port)))
            except (OSError, ValueError) as e:
                lsock.close()
                raise ValueError(f"cannot listen on {ep!r}: {e}") from None
            bound_port = lsock.getsockname()[1]
            address = f"tcp://[{host}]:{bound_port}" if family == socket.AF_INET6 \
                else f"tcp://{host}:{bound_port}"
        elif ep.startswith("ipc://"):
            path = ep[6:]
            if len(path) > _IPC_MAX:
                raise ValueError(f"ipc path longer than {_IPC_MAX} bytes: {ep}")
            lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                if os.path.exists(path):
                    os.unlink(path)     # as libzmq does: a stale socket file is replaced
                lsock.bind(path)
                # owner only, before listen(): no connect can slip in meanwhile (connecting
                # to a unix socket needs write permission on its file)
                os.chmod(path, 0o600)
            except OSError as e:
                lsock.close()
                raise ValueError(f"cannot listen on {ep!r}: {e}") from None
            self._ipc_paths.append(path)
            address = ep
        else:
            raise ValueError(f"bad mailbox endpoint {ep!r}: tcp://host:port or ipc://path")
        lsock.listen(_BACKLOG)
        lsock.setblocking(False)
        self._listeners[lsock.fileno()] = lsock
        return address

    # -- reply addresses ------------------------------------------------------------------
    def _reply_addr(self, to: str) -> str:
        routed = self._routed
        if routed is None or not to.startswith("tcp://"):
            return super()._reply_addr(to)
        me = routed.get(to)
        if me is None:
            if len(routed) >= 4096:
                routed.clear()
            me = routed[to] = self._route(to)
        return me

    def _route(self, to: str) -> str:
        """Our reply address for the tcp destination ``to`` under ``routed_replies``.

        Why this design (issue 12): a reply, a pipeline notification, a machine's ``send_msg``
        to a client's "pid" and a monitor's liveness probe are all addressed to the client's
        address, stored in commands and the log, and may come from any member (a new leader
        answers a pipeline its predecessor took; a machine sends from whichever member leads).
        Replies on the caller's own connection would reach only the process it connected to,
        and would leave monitors nothing to probe. So the client stays a listening mailbox, and
        its address for a destination is one that destination can connect to: the source
        address the kernel picks on the route to that host (a connected UDP socket sends
        nothing; TCP picks the same) and the port of a listener on the wildcard address,
        opened at the first destination beyond loopback (a client talking to this host only
        exposes no port). Every connection to it proves the node secret, as to any mailbox.
        """
        host = to[6:].rpartition(":")[0].strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as u:
                u.connect((host, 9))
                src = u.getsockname()[0]
        except (OSError, ValueError):   # unresolvable or no route: the send will say so
            return self._tcp_addr
        if ipaddress.ip_address(src).is_loopback:
            return self._tcp_addr       # the destination is this host
        port = self._wildcard.get(family)
        if port is None:
            wild = self._listen("tcp://[::]:0" if family == socket.AF_INET6 else "tcp://0.0.0.0:0")
            port = self._wildcard[family] = int(wild.rpartition(":")[2])
            lfd = next(fd for fd, ls in self._listeners.items()
                       if ls.family == family and ls.getsockname()[1] == port)
            self._epoll.register(lfd, select.EPOLLIN)
        return f"tcp://[{src}]:{port}" if family == socket.AF_INET6 else f"tcp://{src}:{port}"

    # -- sending --------------------------------------------------------------------------
    def _connect(self, to: str, timeout: float | None = None) -> _Conn | None:
        """A connection to ``to``, or ``None`` if refused at once. libzmq drops a peer that
        sends messages before the handshake is over, so frames wait in ``held`` until the
        peer's READY. With ``blocking_connect`` the handshake is finished here (at most
        ``timeout``, default ``connect_timeout``): a client's cast is then on its way when
        ``cast`` returns, even if the client never waits for anything afterwards."""
        if to.startswith("tcp://"):
            host, _, port = to[6:].rpartition(":")
            host = host.strip("[]")
            try:
                addr: Any = (host, int(port))
            except ValueError:
                raise ValueError(f"bad mailbox address {to!r}") from None
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                 socket.SOCK_STREAM)
            _tcp_options(sock)
        elif to.startswith("ipc://"):
            addr = to[6:]
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        else:
            raise ValueError(f"bad mailbox address {to!r}")
        sock.setblocking(False)
        try:
            err = sock.connect_ex(addr)
        except (OSError, ValueError):   # e.g. an unresolvable host name
            err = -1
        if err not in (0, errno.EINPROGRESS, errno.EAGAIN):
            sock.close()
            return None
        if len(self._out) >= self.max_peers:
            self._evict()
        conn = _Conn(sock, to, self._mech(False, self._dealer_meta, to), connecting=err != 0)
        self._conns[conn.fd] = conn
        self._out[to] = conn
        self._epoll.register(conn.fd, select.EPOLLIN | select.EPOLLOUT)
        if not conn.connecting:
            self._flush(conn)
        if self.blocking_connect:
            deadline = time.monotonic() + (self.connect_timeout if timeout is None else timeout)
            p = select.poll()
            while conn.state != 2 and conn.fd in self._conns:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._drop_conn(conn)
                    break
                p.register(conn.fd, select.POLLIN | (select.POLLOUT if conn.outbuf else 0))
                for _, ev in p.poll(None if left == float("inf") else left * 1000):
                    if ev & select.POLLOUT:
                        self._writable(conn)
                    if ev & ~select.POLLOUT and conn.fd in self._conns:
                        self._input(conn)
            if conn.fd not in self._conns:
                return None
        return conn

    def _evict(self) -> None:
        """Close the least recently used outgoing connection that has nothing waiting to
        leave (handshake over, output written). One with held or unsent frames is never
        evicted: its frames (a reply a caller waits for) would be lost (issue 17: a daemon
        answering a burst of calls from more new peers than ``max_peers`` dropped replies
        held for handshakes not yet over). If every connection has frames waiting, none is
        closed: the cap is exceeded until they leave."""
        for to, conn in self._out.items():
            if conn.state == 2 and not conn.outbuf and not conn.held and not conn.connecting:
                del self._out[to]
                self._drop_conn(conn)
                self._counters["peers_evicted"] += 1
                return

    def _send_call(self, to: str, data: bytes, timeout: float | None) -> bool:
        # a call may spend its whole timeout, and no more, opening the connection: given only
        # connect_timeout, a request to a peer too busy to finish the handshake that soon (a
        # node daemon serving a burst of new callers) was dropped, and the call waited out its
        # timeout for a reply that could not come (issue 17). A call checks that its peer is
        # there unless a poll just did (_POLLED_FRESH): a peer restarted at the same address
        # gets the call
        return self._send(to, data, math.inf if timeout is None else max(timeout, 0.001),
                          _POLLED_FRESH)

    def call(self, to: str, msg: Any, timeout: float | None = 5.0, *,
             attempts: set[int] | None = None) -> Any:
        """As :meth:`BaseMailbox.call`. The usual call (a connection to ``to`` open, clear and
        drained, seen alive a moment ago; no reply kept from an earlier attempt; a timeout) is
        sent and first awaited here, past the general path's layers: a client makes one per
        command, and its Python is most of a W2 client's CPU. Its first wait is the general
        path's first turn (up to the first probe); what it does not settle at once (no reply
        yet, another frame) is handed to :meth:`_await_reply`, and any other call goes the
        general way from the start."""
        conn = self._out.get(to)
        if (conn is None or conn.state != 2 or not conn.clear or conn.outbuf or attempts
                or timeout is None or not timeout > 0 or self._inbox or self._down_nodes
                or to in self.addresses):
            return super().call(to, msg, timeout, attempts=attempts)
        now = _monotonic()
        if (self.blocking_connect and now - conn.checked_at >= _POLLED_FRESH
                and now - self._polled_at >= _POLLED_FRESH):
            return super().call(to, msg, timeout, attempts=attempts)    # a peek is due
        self._ref += 1
        ref = self._ref
        if not self._write(conn, _frame(self._pack(CALL, self._reply_addr(to), ref, msg))):
            # the connection broke under it (nothing left): the general path finds out why
            return super().call(to, msg, timeout, attempts=attempts)
        self._out.move_to_end(to)
        self._sent += 1
        if attempts is not None:
            attempts.add(ref)
            self._keep.add(ref)
        srtt = self._srtt.get(to, 0.0)
        # the general path's first turn: until the first probe (BaseMailbox._await_reply)
        self._poll(int(min(self._first_probe(srtt), timeout) * 1000 + 0.999))
        inbox = self._inbox
        if len(inbox) == 1:
            value = _reply_value(inbox[0], ref)
            if value is not _NOT_THE_REPLY:
                inbox.popleft()
                self._received += 1
                self._note_rtt(to, srtt, _monotonic() - now)
                return value
        return self._await_reply(to, ref, attempts, timeout, now + timeout, now)

    def _send(self, to: str, data: bytes, connect_timeout: float | None = None,
              fresh: float = _PEEK_EVERY) -> bool:
        """Send one frame to ``to``, connecting if needed (at most ``connect_timeout``).
        Unless the connection was seen open less than ``fresh`` s ago (by a peek, or by a
        poll of every connection), a client peeks at it first."""
        conn = self._out.get(to)
        # seen a moment ago: a peer that died since loses this frame, as it does those sent
        # just before it died; the next send, poll or check sees it gone
        if conn is not None and conn.state == 2 and self.blocking_connect:
            now = time.monotonic()
            if now - conn.checked_at >= fresh and now - self._polled_at >= fresh:
                if self._alive(conn):
                    conn.checked_at = now
                else:
                    # the process there died (it may be back, as a daemon restarted at the
                    # same address): a frame written to the old connection would be lost, so
                    # reconnect. Only a client may sit idle while that happens: a server's
                    # loop polls all the time and drops a closed connection as soon as it
                    # closes.
                    self._drop_conn(conn)
                    conn = None
        if conn is None:
            conn = self._connect(to, connect_timeout)
            if conn is None:
                self._counters["send_dropped"] += 1
                if self.on_peer_unreachable is not None:
                    self.on_peer_unreachable(to)
                return False
        else:
            self._out.move_to_end(to)
        if conn.state != 2:
            # handshake not over: held, in order, until it is (sealed only then)
            if conn.held_bytes + len(data) > self.max_queued_bytes:
                self._counters["send_dropped"] += 1
                return False
            conn.held.append(data)
            conn.held_bytes += len(data)
            self._sent += 1
            return True
        frame = _frame(data) if conn.clear else self._sealed(conn, data)
        if conn.outbuf:
            # the socket was full: keep the order, and flush what we can now
            if len(conn.outbuf) + len(frame) > self.max_queued_bytes:
                self._counters["send_dropped"] += 1
                return False
            conn.outbuf += frame
            self._flush(conn)
            self._sent += 1
            return True
        if not self._write(conn, frame):
            return False
        self._sent += 1
        return True

    def _write(self, conn: _Conn, frame: Any) -> bool:
        """Write ``frame`` to ``conn``, whose output is drained: what the socket does not take
        waits in ``conn.outbuf`` (the poll flushes it). False, with the connection dropped and
        the frame counted as ``send_dropped``, if the connection broke."""
        try:
            n = conn.sock.send(frame)
        except BlockingIOError:
            n = 0
        except OSError:
            self._drop_conn(conn, by_peer=True)
            self._counters["send_dropped"] += 1
            return False
        if n < len(frame):
            conn.outbuf += frame[n:]
            self._epoll.modify(conn.fd, select.EPOLLIN | select.EPOLLOUT)
        return True

    def backlog(self, to: str) -> int:
        conn = self._out.get(to)
        if conn is None:
            return 0
        return len(conn.outbuf) + conn.held_bytes

    @staticmethod
    def _sealed(conn: _Conn, data: bytes) -> Any:
        if conn.seal is not None:
            return conn.seal(data)
        body, is_command = conn.mech.seal(data, False)
        return _command(body) if is_command else _frame(body)

    @staticmethod
    def _alive(conn: _Conn) -> bool:
        """Nothing ever arrives on an outgoing connection after the handshake but its end: a
        peek tells a closed connection from a live one in one system call."""
        try:
            return conn.sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def _writable(self, conn: _Conn) -> None:
        conn.connecting = False
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        """Write what is queued for ``conn``; watch for writability while some is left."""
        if conn.connecting:
            return
        try:
            while conn.outbuf:
                n = conn.sock.send(conn.outbuf)
                del conn.outbuf[:n]
        except BlockingIOError:
            pass
        except OSError:             # refused, unreachable or reset: the peer is not there
            self._drop_conn(conn, by_peer=True)
            return
        self._epoll.modify(conn.fd, select.EPOLLIN | (select.EPOLLOUT if conn.outbuf else 0))

    def _drop_conn(self, conn: _Conn, by_peer: bool = False) -> None:
        if self._conns.pop(conn.fd, None) is None:
            return
        if conn.to is not None and self._out.get(conn.to) is conn:
            del self._out[conn.to]
            # frames held for a handshake that failed: counted as dropped, not sent
            self._counters["send_dropped"] += len(conn.held)
            self._sent -= len(conn.held)
            if by_peer and conn.state == 2:
                if self.on_peer_closed is not None:
                    self.on_peer_closed(conn.to)
            elif by_peer and self.on_peer_unreachable is not None:
                self.on_peer_unreachable(conn.to)
        try:
            self._epoll.unregister(conn.fd)
        except (OSError, ValueError):
            pass
        conn.sock.close()

    def _close_peer(self, to: str) -> None:
        conn = self._out.get(to)
        if conn is not None:
            self._drop_conn(conn)

    def note_node(self, endpoint: str, node_endpoint: str) -> None:
        super().note_node(endpoint, node_endpoint)
        if self._note_node is not None:     # a keyring: the node's key is the endpoint's
            self._note_node(endpoint, node_endpoint)

    @property
    def peers(self) -> list[str]:
        """Destinations with an open outgoing connection, least recently used first."""
        return list(self._out)

    # -- receiving ------------------------------------------------------------------------
    def _wait(self, ms: int) -> bool:
        """Run the sockets for up to ``ms`` milliseconds (``-1``: until something arrives);
        True once a complete message is waiting."""
        if self._inbox:
            return True
        if ms == 0:
            self._poll(0)
            return bool(self._inbox)
        if ms < 0:
            while not self._inbox:
                self._poll(-1)
            return True
        # accepts, handshakes and partial frames wake us too: wait on until the deadline
        deadline = time.monotonic() + ms / 1000
        while True:
            self._poll(ms)
            if self._inbox:
                return True
            ms = int((deadline - time.monotonic()) * 1000 + 0.999)
            if ms <= 0:
                return False

    def _poll(self, ms: int) -> None:
        try:
            events = self._epoll.poll(ms / 1000 if ms >= 0 else -1, _MAX_EVENTS)
        except InterruptedError:
            return
        now = time.monotonic()
        self._polls += 1
        for fd, ev in events:
            if fd in self._listeners:
                self._accept(self._listeners[fd])
                continue
            conn = self._conns.get(fd)
            if conn is None:
                on_ready = self._watched.get(fd)
                if on_ready is not None:
                    on_ready()
                continue
            if ev & select.EPOLLOUT:
                self._writable(conn)
            if ev & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR) and fd in self._conns:
                self._input(conn)
        if len(events) < _MAX_EVENTS:
            self._polled_at = now
        if now >= self._next_reap:
            self._reap_stalled(now)

    def _reap_stalled(self, now: float) -> None:
        """Drop the connections whose handshake has not finished in HANDSHAKE_TIMEOUT (a
        peer that connects and goes quiet, or never answers our greeting). Runs at most once
        a second, from whatever polls the mailbox."""
        self._next_reap = now + 1.0
        stalled = [c for c in self._conns.values()
                   if c.state < 2 and now - c.born > HANDSHAKE_TIMEOUT]
        for c in stalled:
            n = self._counters["handshake_timeout"] = \
                self._counters.get("handshake_timeout", 0) + 1
            if n <= 5 or n % 1000 == 0:
                _log.warning("%s: handshake with %s not over after %g s: dropped (#%d)",
                             self.address, c.to or _peer_name(c.sock), HANDSHAKE_TIMEOUT, n)
            self._drop_conn(c)

    @property
    def pending(self) -> bool:
        """True if messages are already read and waiting: an owner polling :meth:`fileno`
        must not block while this is true."""
        return bool(self._queue or self._inbox)

    def fileno(self) -> int:
        """A descriptor that polls readable when any of this mailbox's sockets has input (the
        epoll set itself): for an owner that waits on other things too."""
        return self._epoll.fileno()

    def _more(self) -> bool:
        return bool(self._inbox) or self._wait(0)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue          # reset before we accepted it
                return                # e.g. out of descriptors: try again on the next poll
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                _tcp_options(sock)
            conn = _Conn(sock, None, self._mech(True, {"Socket-Type": b"ROUTER"}))
            self._conns[conn.fd] = conn
            self._epoll.register(conn.fd, select.EPOLLIN)
            self._flush(conn)

    def _input(self, conn: _Conn) -> None:
        # read into one buffer kept for the mailbox's life, then copy what came: a recv of
        # _READ_SIZE into a new bytes object is above glibc's mmap threshold, and cost an
        # mmap, an mremap and an munmap per read in a process that never freed a larger
        # block (a W2 client once its packer was kept: three system calls more per command)
        try:
            n = conn.sock.recv_into(self._rbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        rbuf = self._rbuf
        if (n >= 2 and rbuf[0] == 0 and rbuf[1] == n - 2 and conn.state == 2 and conn.clear
                and not conn.inbuf and not conn.parts and n - 2 <= self.max_frame_bytes):
            # most reads: one short message frame, whole (a call, its reply, a WAL notice)
            self._inbox.append(self._rview[2:n].tobytes())
        elif not n or not self._parse(conn, self._rview[:n].tobytes()):
            self._drop_conn(conn, by_peer=True)   # the peer closed: a later send reconnects

    def _parse(self, conn: _Conn, data: bytes) -> bool:
        """Take ``data`` read from ``conn``: complete messages go to the inbox, a partial
        frame waits in ``conn.inbuf``. False if the connection must be dropped."""
        n = len(data)
        if conn.inbuf:
            conn.inbuf += data
            buf: Any = conn.inbuf
        else:
            buf = data
        i, n = 0, len(buf)
        if conn.state == 0:
            if n < 64:
                if buf is data:
                    conn.inbuf += data
                return True
            if buf[0] != 0xFF or buf[9] != 0x7F or buf[10] < 3:
                self._drop("garbage", f"not a ZMTP 3 greeting from {conn.to or 'a peer'}")
                return False
            theirs = bytes(buf[12:32]).rstrip(b"\x00")
            if theirs != conn.mech.name:
                self._refuse(conn, f"security mechanism mismatch: {theirs.decode('ascii', 'replace')!r}"
                                   f" offered, {conn.mech.name.decode()!r} required", False)
                return False
            i, conn.state = 64, 1
            if conn.rest:
                conn.outbuf += conn.rest
                conn.rest = b""
                self._flush(conn)
        inbox = self._inbox
        while n - i >= 2:
            flags = buf[i]
            if flags & _LONG:
                if n - i < 9:
                    break
                size = int.from_bytes(buf[i + 1:i + 9], "big")
                start = i + 9
            else:
                size = buf[i + 1]
                start = i + 2
            if size > self.max_frame_bytes:
                self._drop("oversize", f"{size} bytes > {self.max_frame_bytes}")
                return False
            end = start + size
            if end > n:
                break
            i = end
            if flags & _COMMAND:
                if conn.state != 2:
                    if not self._handshake(conn, bytes(buf[start:end])):
                        return False
                    continue
                if conn.clear or buf[start:start + 8] != b"\x07MESSAGE":
                    continue          # PING and other commands: nothing to do
                try:
                    frame, more = conn.mech.unseal(bytes(buf[start:end]), True)
                except Exception as e:  # a forged or corrupt message: the connection is done
                    self._refuse(conn, f"bad MESSAGE: {e}", False)
                    return False
            elif conn.state != 2:
                self._refuse(conn, "a message frame before the handshake", False)
                return False
            elif conn.clear:
                if flags & _MORE or conn.parts:
                    conn.parts += 1
                    if not flags & _MORE:
                        self._drop("bad_frames", f"{conn.parts} data frames")
                        conn.parts = 0
                    continue
                inbox.append(bytes(buf[start:end]) if buf is not data else buf[start:end])
                continue
            else:
                try:
                    frame, more = conn.open(buf, start, end) if conn.open is not None \
                        else conn.mech.unseal(bytes(buf[start:end]), False)
                except Exception as e:
                    self._refuse(conn, f"bad frame: {e}", False)
                    return False
            if more or conn.parts:
                conn.parts += 1
                if not more:
                    self._drop("bad_frames", f"{conn.parts} data frames")
                    conn.parts = 0
                continue
            inbox.append(frame)
        if buf is data:
            if i < n:
                conn.inbuf += data[i:]
        elif i:
            del buf[:i]
        return True

    def _handshake(self, conn: _Conn, body: bytes) -> bool:
        """One handshake command from the peer; False if the connection must be dropped."""
        try:
            name = parse_command(body)[0]
        except HandshakeRefused:
            name = b""
        try:
            replies = conn.mech.on_command(body)
        except HandshakeRefused as e:
            self._refuse(conn, e.reason, name == b"ERROR")
            return False
        except Exception as e:       # a mechanism choking on malformed input refuses it
            self._refuse(conn, f"malformed {name[:20]!r} command ({type(e).__name__})", False)
            return False
        if replies:
            conn.outbuf += b"".join(_command(r) for r in replies)
        if conn.mech.ready:
            conn.state = 2
            if conn.held:
                wire = _frame if conn.clear else (lambda d: self._sealed(conn, d))
                conn.outbuf += b"".join(wire(d) for d in conn.held)
                conn.held = []
                conn.held_bytes = 0
        if conn.outbuf:
            self._flush(conn)
        return True

    def _refuse(self, conn: _Conn, reason: str, by_peer: bool) -> None:
        """Count and log a failed handshake; tell the peer why (ERROR) unless it refused us.
        The caller drops the connection. A later call to that destination raises
        HandshakeRefused."""
        key = "refused_by_peer" if by_peer else "refused"
        n = self._counters[key] = self._counters.get(key, 0) + 1
        who = conn.to or _peer_name(conn.sock)
        if n <= 5 or n % 1000 == 0:   # a flood of attempts is not a flood of log lines
            _log.warning("%s: handshake with %s failed (%s #%d): %s", self.address, who, key,
                         n, reason[:200])
        if not by_peer and getattr(conn.mech, "sends_error", True):
            try:
                conn.sock.send(bytes(conn.outbuf) + conn.rest + _command(error_body(reason)))
            except OSError:
                pass
        if conn.to is not None:
            self._refusals[conn.to] = reason
            if len(self._refusals) > 1000:
                self._refusals.clear()

    def _take_refusal(self, to: str) -> str | None:
        return self._refusals.pop(to, None) if self._refusals else None

    def watch(self, fd: int, on_ready: Callable[[], None]) -> None:
        """Poll ``fd`` for input with the sockets: ``on_ready()`` runs whenever a poll finds
        it readable (and must read it, or every poll returns at once). An owner's wake-up
        pipe (a ra server's, for signals) so that its loop waits in one poll, not two."""
        self._watched[fd] = on_ready
        self._epoll.register(fd, select.EPOLLIN)

    def wait_input(self, timeout: float) -> None:
        """One poll of every socket and watched descriptor, waiting up to ``timeout`` s for
        the first event of any kind; what arrived is read. For an owner's loop: a
        :meth:`recv_many` right after it makes no system call of its own."""
        self._poll(int(timeout * 1000) + 1 if timeout > 0 else 0)

    def recv_many(self, max_n: int = 1000, timeout: float | None = 0) -> list[Envelope]:
        """As :meth:`BaseMailbox.recv_many`, with one poll at most once the first message is
        in, and none if something polled since the last call (waiting for the first message,
        :meth:`wait_input`): what arrives later is taken by the next call (a server's next
        loop turn). It polled up to three times per call, once more for nothing after the
        last message."""
        if not timeout and not self._queue and not self._inbox \
                and self._polls != self._polls_taken:
            self._polls_taken = self._polls
            return []                 # a poll since the last call read no message
        first = self.recv(timeout)
        if first is None:
            self._polls_taken = self._polls
            return []
        out = [first]
        if self._polls == self._polls_taken and not self._inbox and not self._queue:
            self._poll(0)             # all was read before the last call: look once
        self._no_poll = True
        try:
            while len(out) < max_n:
                env = self.recv(0)
                if env is None:
                    break
                out.append(env)
        finally:
            self._no_poll = False
            self._polls_taken = self._polls
        return out

    def _read(self) -> tuple[int, Any, Any, Any] | None:
        inbox = self._inbox
        while True:
            if not inbox and (self._no_poll or not self._wait(0)):
                return None
            t = self._unpack(inbox.popleft())
            if t is not None:
                return t

    # -- lifecycle ------------------------------------------------------------------------
    def _close(self) -> None:
        if self.linger > 0:
            # frames still waiting for a handshake or a full socket (a daemon's reply to the
            # call that stopped it) get up to `linger` seconds to leave
            deadline = time.monotonic() + self.linger
            while any(c.held or c.outbuf for c in self._out.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._poll(max(1, int(left * 1000)))
        for conn in list(self._conns.values()):
            self._drop_conn(conn)
        self._out.clear()
        self._epoll.close()
        for ls in self._listeners.values():
            ls.close()
        self._finalizer()

    def __repr__(self) -> str:
        return f"<DirectMailbox {self.address}{' closed' if self._closed else ''}>"


def hub_max_peers() -> int:
    """``max_peers`` for a process that sends to every process of its node (the node daemon's
    failure detector casts to each subscribed server, the WAL answers each server): half its
    open-file limit, at least 256. Evicting a live connection to make room costs a reconnect
    and a handshake per message; a node of 1,000 servers with the default cap would do that
    for three quarters of them on every broadcast."""
    import resource
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 65536
    return max(256, soft // 2)
