"""No ra equivalent (BEAM process mailboxes and gen:call). One ZeroMQ mailbox per process.

A :class:`Mailbox` binds one ROUTER socket (its *address*, e.g. ``ipc:///tmp/x.sock`` or
``tcp://127.0.0.1:40123``) on which it receives every cast, call and reply sent to it. It sends
through one cached DEALER per destination address, so a peer's address is all one needs to
reach it and no routing ids have to be exchanged.

Contract:

* ``cast`` never blocks and never raises for an absent peer: frames to a peer that is gone
  stay queued in ZeroMQ (up to ``sndhwm``) until it comes back at the same address, and are
  dropped (and counted) beyond that. Messages from one sender to one receiver arrive in order.
* ``call`` sends ``[VERSION, CALL, my_address, ref, msg]`` and waits for the REPLY with that
  ``ref``. Everything else that arrives meanwhile is kept, in order, for the next ``recv``
  (so a server may call out while serving); replies to earlier, abandoned calls are dropped.
  A call that could not leave (the connection to ``to`` was refused) raises ``NoProc`` or
  ``NodeDown`` at once: *not delivered*. Once it has left, a callee found dead raises
  ``ProcessDied`` (the target's endpoint is refused on a live node; probed with a plain
  connect after ``probe_after`` seconds, or after four times the target's usual reply time if
  that is longer, then with back-off) or ``NodeLost`` (its node daemon refused or unreachable;
  node known from :meth:`note_node`, which ``transport.registry.resolve`` fills in), else
  ``Timeout``: all three *outcome unknown* (``OutcomeUnknown``).
* Attempts of one request at several callees (a command retried on another member) may share
  a set of refs (``call(..., attempts=refs)``): a reply to any of them answers the call that
  waits, even one that arrives during another call; :meth:`BaseMailbox.release` ends that.
* ``reply(frm, value)`` may be called from any process, any time later; a gone caller is
  ignored.
* Frames that are not valid envelopes (garbage, truncated msgpack, wrong version, wrong shape,
  larger than ``max_frame_bytes``, extra frames of a multi-frame message) are dropped, logged
  (rate limited) and counted in :attr:`counters`; the mailbox keeps serving.
* At most ``max_peers`` outgoing DEALERs are kept (least recently used evicted; frames
  still queued on an evicted one are lost, as for a gone peer). A
  :class:`~transport.direct.DirectMailbox` evicts only a connection with nothing queued
  (exceeding the cap until there is one), so a reply is never lost to an eviction.
* Not thread-safe (ZeroMQ sockets are not): use a mailbox from one thread.
"""
from __future__ import annotations

import collections
import errno
import glob
import logging
import os
import random
import socket as _socket
import struct
import tempfile
import time
import weakref
from collections.abc import Iterator
from typing import Any, Self

import zmq
from zmq.backend import zmq_poll as _zmq_poll

from transport.errors import (
    HandshakeRefused, MessageTooLarge, NodeDown, NodeLost, NoProc, ProcessDied, Timeout,
)
from transport import codec
from transport import envelope as _env
from transport.envelope import CALL, CAST, REPLY, Envelope, From
from transport.messages import valid_endpoint

__all__ = ["Mailbox", "Envelope", "From", "probe_endpoint", "ALIVE", "DEAD", "UNREACHABLE"]

_log = logging.getLogger("transport.mailbox")

ALIVE = "alive"
DEAD = "dead"
UNREACHABLE = "unreachable"

# Plain ints: pyzmq converts enum flags and resolves attribute options on every call.
_NOBLOCK = int(zmq.NOBLOCK)
_RCVMORE = int(zmq.RCVMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_IPC_MAX = 107  # sun_path limit on Linux, minus the NUL
_MAX_FIRST_PROBE = 0.25   # however slow a callee usually is, a dead one is found by then
_COUNTER_NAMES = (
    "received", "sent", "send_dropped", "garbage", "bad_version", "bad_envelope", "bad_frames",
    "oversize", "stale_reply", "probes", "peers_evicted", "refused", "refused_by_peer",
    "handshake_timeout",
)


def default_ipc() -> str:
    """A fresh ipc endpoint, ``ra-<pid>-<random>.sock`` under ``$RA_IPC_DIR`` or the temp dir."""
    base = os.environ.get("RA_IPC_DIR") or tempfile.gettempdir()
    return f"ipc://{base}/ra-{os.getpid()}-{random.getrandbits(40):010x}.sock"


def sweep_stale_ipc() -> int:
    """Remove the default ipc socket files (``ra-<pid>-*.sock``) of processes that are gone:
    a SIGKILL leaves them behind. Returns how many were removed."""
    base = os.environ.get("RA_IPC_DIR") or tempfile.gettempdir()
    removed = 0
    for path in glob.glob(os.path.join(base, "ra-*-*.sock")):
        try:
            pid = int(os.path.basename(path).split("-")[1])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            try:
                os.unlink(path)
                removed += 1
            except OSError:
                pass
        except PermissionError:     # someone else's live process
            continue
    return removed


def _unlink_paths(paths: list[str], owner_pid: int) -> None:
    if os.getpid() != owner_pid:
        return
    for path in paths:
        try:
            os.unlink(path)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                _log.warning("cannot remove %s: %s", path, exc)


def probe_endpoint(endpoint: str, timeout: float = 0.2) -> str:
    """Is anything listening at ``endpoint``? One plain connect, no ZeroMQ.

    Returns :data:`ALIVE` (connected), :data:`DEAD` (refused, or the ipc path is missing) or
    :data:`UNREACHABLE` (no answer within ``timeout``: host down or partitioned). A process
    stopped with SIGSTOP still counts as alive (the kernel accepts for it).
    """
    if endpoint.startswith("ipc://"):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(endpoint[6:])
            return ALIVE
        except (FileNotFoundError, ConnectionRefusedError):
            return DEAD
        except BlockingIOError:  # backlog full: someone is listening
            return ALIVE
        except OSError:
            return UNREACHABLE
        finally:
            s.close()
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[6:].rpartition(":")
        host = host.strip("[]")
        try:
            s = _socket.create_connection((host, int(port)), timeout=max(timeout, 0.001))
        except ConnectionRefusedError:
            return DEAD
        except (OSError, ValueError):
            return UNREACHABLE
        # RST on close: no TIME_WAIT pile-up from repeated probes.
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        return ALIVE
    return UNREACHABLE


class BaseMailbox:
    """What every mailbox shares: the call protocol (refs, adaptive probes, ``NoProc`` /
    ``NodeDown`` / ``Timeout``), the queue of messages set aside during a call, and the
    counters. A subclass moves the bytes: ``_send(to, frame) -> bool``, ``_read()`` (the next
    valid envelope or ``None``), ``_wait(ms) -> bool`` (``-1``: forever), ``_more()`` (is
    anything already waiting?), ``_close_peer(to)`` and ``_close()``."""

    address: str
    addresses: list[str]

    def _init_common(self, bound: list[str], max_frame_bytes: int, probe_after: float,
                     max_peers: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.probe_after = probe_after
        self.address = bound[0]
        #: every bound endpoint, ``address`` first (e.g. ipc for local peers, tcp for remote)
        self.addresses = bound
        # Reply address by the kind of destination: a tcp peer may be on another host.
        self._tcp_addr = next((a for a in bound if a.startswith("tcp://")), bound[0])
        self._ipc_addr = next((a for a in bound if a.startswith("ipc://")), bound[0])
        self.max_peers = max_peers
        self._queue: collections.deque[Envelope] = collections.deque()
        self._nodes: dict[str, str] = {}
        self._down_nodes: set[str] = set()
        # Random start: a process restarted at the same address must not match old replies.
        self._ref = random.getrandbits(48)
        # refs of abandoned attempts whose late reply still answers a request (call's
        # attempts=), and such replies read while another call waited
        self._keep: set[int] = set()
        self._kept: dict[int, Any] = {}
        self._counters: dict[str, int] = dict.fromkeys(_COUNTER_NAMES, 0)
        # smoothed reply time per callee (as TCP's RTO): a loaded server that answers in 20 ms
        # is not probed on every call, a dead one is still found within a few reply times
        self._srtt: dict[str, float] = {}
        #: every frame sent is encoded by one packer (a mailbox is used by one thread)
        self._encode = codec.Encoder().encode
        self._sent = 0  # plain ints on the hot path, folded into `counters` on demand
        self._received = 0
        self._closed = False
        #: ``(name, node) -> endpoint``: :mod:`transport.registry`'s resolutions for this
        #: mailbox (kept here, not in a weak map: a call reads it without a weakref lookup)
        self.name_cache: dict[tuple[str, str], str] = {}

    # -- what a subclass provides ---------------------------------------------------------
    def _send(self, to: str, data: bytes) -> bool:
        raise NotImplementedError

    def _read(self) -> tuple[int, Any, Any, Any] | None:
        raise NotImplementedError

    def _send_call(self, to: str, data: bytes, timeout: float | None) -> bool:
        """``_send`` of a call frame, taking at most ``timeout`` (a subclass that may block
        while connecting bounds that by it)."""
        return self._send(to, data)

    def _wait(self, ms: int) -> bool:
        raise NotImplementedError

    def _take_refusal(self, to: str) -> str | None:
        """Why the security handshake with ``to`` failed since last asked, if it did."""
        return None

    def _refused(self, to: str, reason: str) -> HandshakeRefused:
        self.forget(to)
        return HandshakeRefused(f"{to} refused the connection at the handshake ({reason}); "
                                "not delivered: check that both sides share the node secret "
                                "(RA_COOKIE / the cookie file), or with CURVE keys that each "
                                "key is on the other's allow-list")

    def _more(self) -> bool:
        raise NotImplementedError

    def backlog(self, to: str) -> int:
        """Bytes accepted for ``to`` but not yet handed to the kernel (its socket was full, or
        the connection's handshake is not over): a sender may coalesce its next messages to
        ``to`` while this is non-zero, since they would wait anyway. O(1), no system call.
        0 where the mailbox cannot tell (a libzmq socket keeps its own queue)."""
        return 0

    def _close_peer(self, to: str) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Close every socket (frames not yet sent are discarded) and remove the ipc files."""
        if not self._closed:
            self._closed = True
            self._close()

    def _unpack(self, data: bytes) -> tuple[int, Any, Any, Any] | None:
        """A frame's envelope, or ``None`` after dropping and counting an invalid one."""
        try:
            t = _env.unpack(data)
        except _env.BadEnvelope as exc:
            self._drop(exc.reason, str(exc))
            return None
        self._received += 1
        return t

    # -- sending --------------------------------------------------------------------------
    def _reply_addr(self, to: str) -> str:
        # an ipc destination is on this host: it can answer on our ipc address, if we have one
        if to.startswith("tcp://"):
            return self._tcp_addr
        return self._ipc_addr

    def reply_address(self, to: str) -> str:
        """The address that the mailbox at ``to`` reaches us at: the sender address of what we
        send it (our ipc address for an ipc peer, our tcp address for a tcp one; a
        :class:`~transport.direct.DirectMailbox` with ``routed_replies`` picks one routable
        from ``to``'s host)."""
        return self._reply_addr(to)

    @property
    def counters(self) -> dict[str, int]:
        """A snapshot of the counters: ``sent``, ``received`` (valid envelopes),
        ``send_dropped`` (peer queue full), drops by reason (``garbage``, ``bad_version``,
        ``bad_envelope``, ``bad_frames``, ``oversize``, ``stale_reply``), ``probes``,
        ``peers_evicted``, and failed security handshakes: ``refused`` (a peer without the
        secret, refused by us) and ``refused_by_peer`` (our credentials refused)."""
        c = dict(self._counters)
        c["sent"] = self._sent
        c["received"] = self._received
        return c

    def _pack(self, kind: int, me: Any, ref: Any, msg: Any) -> bytes:
        """The envelope's bytes; ``MessageTooLarge`` (nothing sent) above ``max_frame_bytes``,
        which the receiver would drop (it has the same limit by default)."""
        data = _env.pack(kind, me, ref, msg, self._encode)
        if len(data) > self.max_frame_bytes:
            raise MessageTooLarge(len(data), self.max_frame_bytes)
        return data

    def cast(self, to: str, msg: Any) -> None:
        """Send ``msg`` to the mailbox at ``to``; never blocks, never reports delivery.

        Raises ``TypeError`` if ``msg`` is not a term (nothing is sent), ``ValueError`` for a
        malformed address, ``MessageTooLarge`` if its encoding exceeds ``max_frame_bytes``.
        """
        me = self._reply_addr(to)
        self._send(to, self._pack(CAST, me, None, msg))

    def pack_cast(self, to: str, msg: Any) -> bytes:
        """The frame :meth:`cast` would send to ``to`` now, for another process of this node to
        send as it is (:meth:`forward`): the receiver sees a cast from us. Raises as
        :meth:`cast` does; sends nothing."""
        return self._pack(CAST, self._reply_addr(to), None, msg)

    def peer_key(self, to: str) -> bytes:
        """The CURVE server key this mailbox expects at ``to`` (``b""`` without a key pair),
        for the process that sends a frame there (:meth:`forward`)."""
        get = getattr(getattr(self, "_mech", None), "server_key", None)
        return get(to) if get is not None else b""

    def forward(self, to: str, frame: bytes, key: bytes = b"") -> bool:
        """Send ``frame``, packed by another mailbox (:meth:`pack_cast`), to ``to`` as it is,
        expecting server key ``key`` there (when this mailbox runs a key pair and ``key`` is
        given; an allow-list entry for ``to`` still wins). Never blocks, never raises: False
        (counted in ``send_dropped``) if it cannot leave."""
        if len(frame) > self.max_frame_bytes or not valid_endpoint(to):
            self._counters["send_dropped"] += 1
            return False
        learn = getattr(getattr(self, "_mech", None), "learn_server_key", None)
        if key and learn is not None:
            try:
                learn(to, key)
            except ValueError:
                self._counters["send_dropped"] += 1
                return False
        return self._send(to, frame)

    def cast_many(self, tos: list[str], msg: Any) -> None:
        """``cast`` of one ``msg`` to several mailboxes, encoding it once per kind of sender
        address (a leader's append_entries to every follower)."""
        packed: dict[str, bytes] = {}
        for to in tos:
            me = self._reply_addr(to)
            data = packed.get(me)
            if data is None:
                data = packed[me] = self._pack(CAST, me, None, msg)
            self._send(to, data)

    def reply(self, frm: From | tuple[str, int], value: Any) -> None:
        """Answer the call identified by ``frm`` (from :class:`Envelope`.frm). Fire-and-forget:
        an address the socket layer refuses is dropped and counted (``bad_reply_address``).
        Raises ``TypeError`` if ``value`` is not a term (nothing is sent)."""
        addr, ref = frm
        data = _env.pack(REPLY, self.address, ref, value, self._encode)
        if len(data) > self.max_frame_bytes:     # the caller learns why instead of timing out
            data = _env.pack(REPLY, self.address, ref,
                             ("error", "reply_too_large", len(data), self.max_frame_bytes))
        try:
            self._send(addr, data)
        except ValueError as exc:
            self._drop("bad_reply_address", str(exc))

    def call(self, to: str, msg: Any, timeout: float | None = 5.0, *,
             attempts: set[int] | None = None) -> Any:
        """Send ``msg`` as a call to ``to`` and return the reply's value.

        ``attempts``: the refs of earlier calls of the same request (to other callees, or
        abandoned on a timeout), whose replies answer this call too; this call's ref is added
        to it, and until :meth:`release` a reply to any of them is kept, even one read during
        another call (issue 17: a leader that answered after the caller's attempt timeout, its
        reply dropped as stale while the caller asked members that only redirect to it).

        Raises, when the call was *not delivered* (safe to retry): ``NoProc`` (no process at
        ``to`` on a live node: the connection was refused), ``NodeDown`` (its node daemon is
        down, per the failure detector or a refused connection), ``TypeError`` if ``msg`` is
        not a term, ``HandshakeRefused`` (the peer refused our credentials, or offered none:
        nothing was delivered). When it was *sent* and the outcome is unknown (``OutcomeUnknown``):
        ``ProcessDied`` / ``NodeLost`` (the callee or its node was found dead or unreachable
        afterwards), ``Timeout`` (no reply within ``timeout`` seconds; ``None`` waits
        forever).
        """
        if to in self.addresses:
            raise ValueError("calling_self: a mailbox cannot call itself")
        if attempts:
            found, value = self._late(attempts)
            if found:
                return value
        if self._down_nodes and self._nodes.get(to) in self._down_nodes:
            raise NodeDown(f"node of {to} is down ({self._nodes[to]}, failure detector)")
        self._ref += 1
        ref = self._ref
        if attempts is not None:
            attempts.add(ref)
            self._keep.add(ref)
        data = self._pack(CALL, self._reply_addr(to), ref, msg)
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        left = timeout
        while not self._send_call(to, data, left):
            refusal = self._take_refusal(to)
            if refusal is not None:
                raise self._refused(to, refusal)
            # nothing left: a refused connection is a dead callee, not delivered (safe to retry)
            verdict = self._probe(to, 0.2 if timeout is None else max(0.001, min(0.2, timeout)))
            if verdict in ("noproc", "nodedown"):
                self.forget(to)
                if verdict == "nodedown":
                    raise NodeDown(f"node of {to} is down ({self._nodes.get(to, to)}); "
                                   "not delivered")
                raise NoProc(f"no process at {to}; not delivered")
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                # there but not answering (paused, overloaded): the connection never opened
                raise Timeout(f"no reply from {to} within {timeout}s (no connection)", server=to)
            # there, but the request did not leave (its connection closed under it, its queue
            # full): not sent, so waiting for a reply would wait out the timeout (issue 17);
            # sent again, after a pause, within the timeout
            time.sleep(0.05 if deadline is None else min(0.05, deadline - now))
            now = time.monotonic()
            left = None if deadline is None else max(0.001, deadline - now)
        t_sent = time.monotonic()
        return self._await_reply(to, ref, attempts, timeout, deadline, t_sent)

    def _await_reply(self, to: str, ref: int, attempts: set[int] | None,
                     timeout: float | None, deadline: float | None, t_sent: float) -> Any:
        """The waiting half of :meth:`call`, once the request (``ref``) left at ``t_sent``:
        its reply's value, or what :meth:`call` raises for a request that was sent."""
        now = t_sent
        srtt = self._srtt.get(to, 0.0)
        interval = self._first_probe(srtt)
        next_probe = now + interval
        unreachable = False
        while True:
            until = next_probe if deadline is None or next_probe < deadline else deadline
            wait_ms = int((until - now) * 1000 + 0.999)
            if wait_ms < 0:
                wait_ms = 0
            if self._wait(wait_ms):
                found, value = self._drain_for(ref, attempts)
                if found:
                    self._note_rtt(to, srtt, time.monotonic() - t_sent)
                    return value
            refusal = self._take_refusal(to)
            if refusal is not None:   # a non-blocking connect's handshake failed meanwhile
                raise self._refused(to, refusal)
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if unreachable:
                    raise NodeLost(f"node of {to} unreachable (call timed out after {timeout}s);"
                                   " sent, outcome unknown")
                raise Timeout(f"no reply from {to} within {timeout}s", server=to)
            if now >= next_probe:
                remaining = 0.2 if deadline is None else max(0.001, min(0.2, deadline - now))
                verdict = self._probe(to, remaining)
                if verdict == UNREACHABLE:
                    unreachable = True
                elif verdict is not None:
                    found, value = self._drain_for(ref, attempts)  # may have beaten the death
                    if found:
                        return value
                    self.forget(to)  # queued frames must not reach a later process there
                    if verdict == "nodedown":
                        raise NodeLost(f"node of {to} is down ({self._nodes.get(to, to)}); "
                                       "sent, outcome unknown")
                    raise ProcessDied(f"no process at {to} any more; sent, outcome unknown")
                else:
                    unreachable = False
                now = time.monotonic()
                interval = min(interval * 2, 0.5)
                next_probe = now + interval

    def _first_probe(self, srtt: float) -> float:
        """When, after a call left, its callee is first probed: 4 smoothed reply times
        (``srtt``), within [``probe_after``, ``_MAX_FIRST_PROBE``]."""
        interval = 4 * srtt
        if interval > _MAX_FIRST_PROBE:
            interval = _MAX_FIRST_PROBE
        if interval < self.probe_after:
            interval = self.probe_after
        return interval

    def _note_rtt(self, to: str, srtt: float, rtt: float) -> None:
        """Fold a reply time into ``to``'s smoothed one (``srtt`` as it was: 0 if none)."""
        self._srtt[to] = rtt if not srtt else 0.875 * srtt + 0.125 * rtt

    def _drain_for(self, ref: int, attempts: set[int] | None = None) -> tuple[bool, Any]:
        """Read everything available; return the reply for ``ref`` (or one of ``attempts``)
        if seen, queue the rest."""
        read = self._read
        while True:
            t = read()
            if t is None:
                return False, None
            kind, frm, r, payload = t
            if kind == REPLY:
                if r == ref or (attempts and r in attempts):
                    return True, payload
                if r in self._keep:
                    self._kept[r] = payload      # a late attempt's: for its request's call
                else:
                    self._drop("stale_reply", f"reply ref {r} from {frm}")
            elif kind == CAST:
                self._queue.append(Envelope("cast", frm, payload))
            else:
                self._queue.append(Envelope("call", From(frm, r), payload))

    def _late(self, attempts: set[int]) -> tuple[bool, Any]:
        """A reply to one of ``attempts`` kept while another call waited, if any."""
        if self._kept:
            for r in attempts:
                if r in self._kept:
                    return True, self._kept.pop(r)
        return False, None

    def release(self, attempts: set[int]) -> None:
        """The request of ``attempts`` is over (answered or given up): later replies to
        them are stale."""
        self._keep -= attempts
        if self._kept:
            for r in attempts:
                self._kept.pop(r, None)

    def _probe(self, to: str, timeout: float) -> str | None:
        """``None`` if ``to`` looks alive, else ``"noproc"``, ``"nodedown"`` or UNREACHABLE."""
        self._counters["probes"] += 1
        node = self._nodes.get(to)
        st = probe_endpoint(to, timeout)
        if st == ALIVE:
            return None
        if st == UNREACHABLE:
            return UNREACHABLE
        if node is None:
            return "noproc"
        if node == to:
            return "nodedown"
        return "noproc" if probe_endpoint(node, timeout) == ALIVE else "nodedown"

    def note_node(self, endpoint: str, node_endpoint: str) -> None:
        """Record that ``endpoint`` lives on the node whose daemon listens at ``node_endpoint``,
        so a dead ``endpoint`` can be told apart as NoProc (node up) or NodeDown."""
        self._nodes[endpoint] = node_endpoint

    def set_node_down(self, node_endpoint: str, down: bool) -> None:
        """Failure-detector verdict for a node (its daemon endpoint): while down, calls to
        endpoints noted on it raise ``NodeDown`` at once instead of waiting for probes."""
        if down:
            self._down_nodes.add(node_endpoint)
        else:
            self._down_nodes.discard(node_endpoint)

    def forget(self, to: str) -> None:
        """Close the cached DEALER to ``to``, discarding frames still queued for it."""
        self._srtt.pop(to, None)
        self._close_peer(to)

    # -- receiving ------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """True if messages are already queued (set aside during a ``call``): an owner polling
        :attr:`socket` must not block while this is true."""
        return bool(self._queue)

    def recv(self, timeout: float | None = 0) -> Envelope | None:
        """Next incoming cast or call, or ``None`` after ``timeout`` seconds (0: don't wait,
        ``None``: wait forever). Invalid frames and stale replies are dropped and counted."""
        if self._queue:
            return self._queue.popleft()
        deadline = None  # computed only if we have to wait: recv(0) in a drain loop is hot
        read = self._read
        while True:
            t = read()
            if t is None:
                if timeout is None:
                    self._wait(-1)
                    continue
                if not timeout:
                    return None
                now = time.monotonic()
                if deadline is None:
                    deadline = now + timeout
                left = deadline - now
                if left <= 0 or not self._wait(int(left * 1000 + 0.999)):
                    return None
                continue
            kind, frm, ref, payload = t
            if kind == CAST:
                return Envelope("cast", frm, payload)
            if kind == CALL:
                return Envelope("call", From(frm, ref), payload)
            if ref in self._keep:
                self._kept[ref] = payload
            else:
                self._drop("stale_reply", f"reply ref {ref} from {frm}")

    def recv_many(self, max_n: int = 1000, timeout: float | None = 0) -> list[Envelope]:
        """Up to ``max_n`` messages: waits up to ``timeout`` for the first, then takes only
        what is already there (one poll, many messages)."""
        first = self.recv(timeout)
        if first is None:
            return []
        out = [first]
        if not self._queue and not self._more():
            # most wake-ups bring one message: asking is cheaper than the failed read (pyzmq
            # raises, and builds, an exception for it)
            return out
        while len(out) < max_n:
            env = self.recv(0)
            if env is None:
                break
            out.append(env)
        return out

    def __iter__(self) -> Iterator[Envelope]:
        """Messages already available, without waiting."""
        while True:
            env = self.recv(0)
            if env is None:
                return
            yield env

    def _drop(self, reason: str, detail: str) -> None:
        n = self._counters[reason] = self._counters.get(reason, 0) + 1
        # Rate limited: a flood of garbage must not turn into a flood of log lines.
        if n <= 10 or n % 1000 == 0:
            _log.warning("%s dropped frame (%s #%d): %s", self.address, reason, n, detail[:200])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()



_authenticators: dict[int, Any] = {}


def _zap_domain(ctx: zmq.Context[Any], password: bytes) -> bytes:
    """The ZAP domain of ROUTERs demanding ``password``, registered with the context's ZAP
    handler (started on first use): one domain per password, so mailboxes of one process
    may demand different secrets."""
    import hashlib

    from zmq.auth.thread import ThreadAuthenticator

    auth = _authenticators.get(id(ctx))
    if auth is None:
        auth = _authenticators[id(ctx)] = ThreadAuthenticator(ctx, log=_log)
        auth.start()
    domain = "ra-" + hashlib.sha256(password).hexdigest()[:16]
    auth.configure_plain(domain, {"ra": password.decode("ascii")})
    return domain.encode()


class Mailbox(BaseMailbox):
    """A process's mailbox: one bound ROUTER plus cached per-destination DEALERs.

    ``endpoint`` is where to bind: ``"ipc:///path"`` or ``"tcp://host:port"`` (port 0 or ``*``
    picks a free port); ``None`` binds a fresh ipc path under ``$RA_IPC_DIR`` or the temp dir.
    :attr:`address` is the resolved bound endpoint, the string peers send to. ``also`` binds
    more endpoints on the same socket (:attr:`addresses`); a call to a ``tcp://`` peer then
    carries our first tcp address as its reply address, any other call :attr:`address`.

    Security: ZMTP PLAIN both ways, with ``plain_password`` (default: the one derived from this
    process's node secret, :func:`transport.cookie.default_password`). The ROUTER checks its
    peers through a ZAP handler thread (pyzmq's ``ThreadAuthenticator``, one per context).
    Only tests and benchmarks use this class now; every ra process uses
    :class:`~transport.direct.DirectMailbox`.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        context: zmq.Context[Any] | None = None,
        max_frame_bytes: int = 64 << 20,
        sndhwm: int = 100_000,
        probe_after: float = 0.01,
        also: tuple[str, ...] | list[str] = (),
        max_peers: int = 256,
        plain_password: bytes | None = None,
    ) -> None:
        self._ctx = context if context is not None else zmq.Context.instance()
        if plain_password is None:
            from transport.cookie import default_password
            plain_password = default_password()
        self._password = plain_password
        self._sndhwm = sndhwm
        ep = endpoint or default_ipc()
        if ep.startswith("tcp://") and ep.endswith(":0"):
            ep = ep[:-2] + ":*"
        if ep.startswith("ipc://") and len(ep) - 6 > _IPC_MAX:
            raise ValueError(f"ipc path longer than {_IPC_MAX} bytes: {ep}")
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.PLAIN_SERVER, 1)
        sock.setsockopt(zmq.ZAP_DOMAIN, _zap_domain(self._ctx, plain_password))
        sock.setsockopt(zmq.RCVHWM, 0)  # inbound queue bounded by senders' sndhwm instead
        bound: list[str] = []
        try:
            for e in [ep, *also]:
                if e.startswith("tcp://") and e.endswith(":0"):
                    e = e[:-2] + ":*"
                sock.bind(e)
                bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        except zmq.ZMQError:
            sock.close(0)
            raise
        self.socket: zmq.Socket[Any] = sock
        # zmq_poll on a prebuilt item list: Socket.poll builds a Poller on every call.
        self._pollin = [(sock, int(zmq.POLLIN))]
        self._init_common(bound, max_frame_bytes, probe_after, max_peers)
        self._ipc_paths = [a[6:] for a in bound if a.startswith("ipc://")]
        # Remove our socket files even if the owner never calls close() (but never from a
        # forked child, which would delete its parent's live endpoint).
        self._finalizer = weakref.finalize(self, _unlink_paths, list(self._ipc_paths),
                                           os.getpid())
        # LRU of DEALERs: a daemon answering many short-lived callers must not keep a socket
        # (and zmq's reconnect attempts) per dead caller forever.
        self._out: collections.OrderedDict[str, zmq.Socket[Any]] = collections.OrderedDict()

    # -- sending --------------------------------------------------------------------------

    def _dealer(self, to: str) -> zmq.Socket[Any]:
        s = self._out.get(to)
        if s is not None:
            self._out.move_to_end(to)
        else:
            if len(self._out) >= self.max_peers:
                _, old = self._out.popitem(last=False)
                old.close(0)
                self._counters["peers_evicted"] += 1
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.PLAIN_USERNAME, b"ra")
            s.setsockopt(zmq.PLAIN_PASSWORD, self._password)
            s.setsockopt(zmq.SNDHWM, self._sndhwm)
            try:
                s.connect(to)
            except zmq.ZMQError as exc:
                s.close(0)
                raise ValueError(f"bad mailbox address {to!r}: {exc}") from None
            self._out[to] = s
        return s

    def _send(self, to: str, data: bytes) -> bool:
        s = self._out.get(to)
        try:
            if s is None:
                self._dealer(to).send(data, _NOBLOCK)
            else:
                # LRU touch only every so often would be cheaper, but exact LRU keeps hot peers
                self._out.move_to_end(to)
                s.send(data, _NOBLOCK)
        except zmq.Again:
            self._counters["send_dropped"] += 1
            return False
        self._sent += 1
        return True

    def _close_peer(self, to: str) -> None:
        s = self._out.pop(to, None)
        if s is not None:
            s.close(0)

    @property
    def peers(self) -> list[str]:
        """Destinations with an open outgoing socket, least recently used first."""
        return list(self._out)

    # -- receiving ------------------------------------------------------------------------

    def _wait(self, ms: int) -> bool:
        return bool(_zmq_poll(self._pollin, ms))

    def _more(self) -> bool:
        return bool(int(self.socket.get(_EVENTS)) & _POLLIN)

    def _read(self) -> tuple[int, Any, Any, Any] | None:
        """The next valid envelope on the socket as ``(kind, from, ref, payload)``, or ``None``
        when nothing is waiting. Invalid frames are dropped and counted on the way.

        Framing is checked cheaply: pyzmq's RCVMORE query costs more than the rest of a
        receive, so it is asked only when something looks off. A routing id libzmq made for a
        DEALER is 5 bytes starting with 0; every envelope starts with 0x95 (a 5-item array).
        Frames after a valid first data frame are therefore caught one read late: that
        envelope is accepted and each extra frame is dropped and counted as ``bad_frames``.
        """
        sock = self.socket
        recv = sock.recv
        while True:
            try:
                ident = recv(_NOBLOCK)
            except zmq.Again:
                return None
            if (len(ident) != 5 or ident[0]) and not sock.getsockopt(_RCVMORE):
                self._drop("bad_frames", "stray frame after a multi-frame message")
                continue
            data = recv(_NOBLOCK)  # never Again: a multi-frame message arrives whole
            if len(data) > self.max_frame_bytes or not data or data[0] != 0x95:
                if sock.getsockopt(_RCVMORE):
                    n = 2
                    while sock.recv(_NOBLOCK) is not None and sock.getsockopt(_RCVMORE):
                        n += 1
                    self._drop("bad_frames", f"{n} data frames")
                    continue
                if len(data) > self.max_frame_bytes:
                    self._drop("oversize", f"{len(data)} bytes > {self.max_frame_bytes}")
                    continue
            t = self._unpack(data)
            if t is not None:
                return t

    # -- lifecycle ------------------------------------------------------------------------

    def _close(self) -> None:
        for s in self._out.values():
            s.close(0)
        self._out.clear()
        self.socket.close(0)
        self._finalizer()

    def __repr__(self) -> str:
        return f"<Mailbox {self.address}{' closed' if self._closed else ''}>"
