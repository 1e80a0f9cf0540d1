"""No ra equivalent. A seeded, in-memory network with the Mailbox surface (STYLE D14), in the
spirit of hashicorp/raft's ``InmemTransport`` and raft-rs's harness.

:class:`SimNetwork` owns a :class:`~transport.clock.FakeClock` and one ``random.Random(seed)``;
every fault decision draws from it in send order, so a seed replays the same run. Messages are
encoded with the real codec (so non-terms raise ``TypeError`` exactly as on the wire, and a
receiver never shares objects with the sender) and delivered after a random delay.

Faults: ``drop`` and ``duplicate`` probabilities, ``delay=(lo, hi)`` seconds (a delay longer
than the gap between sends reorders), :meth:`SimNetwork.partition` (directed links blocked,
messages lost), :meth:`SimNetwork.clog` (a link holds its messages until unclogged, then
delivers them in order), :meth:`SimNetwork.kill` of a mailbox or a whole node.

Processes are *actors*: ``net.spawn(handler)`` returns a :class:`SimMailbox` whose
``handler(mailbox)`` runs whenever a message has been delivered to it (it should drain
``recv()``). ``SimMailbox.call`` runs the network (delivering and running actors) until its
reply arrives, its fake deadline passes (``Timeout``), the target is dead on a live node
(``NoProc``, at once) or its node is down (``NodeDown``, at once).
"""
from __future__ import annotations

import collections
import heapq
import itertools
import random
from collections.abc import Callable
from typing import Any

from transport.errors import NodeDown, NoProc, Timeout
from transport import envelope as _env
from transport.clock import FakeClock
from transport.envelope import CALL, CAST, REPLY, Envelope, From

__all__ = ["SimNetwork", "SimMailbox"]


class SimMailbox:
    """Same surface as :class:`transport.Mailbox` (``cast``, ``call``, ``reply``, ``recv``,
    ``recv_many``, ``pending``, ``counters``, ``close``, ``note_node``, ``set_node_down``,
    ``forget``), on a :class:`SimNetwork`. No ``socket``: a simulated process is driven by its
    handler, not by a poller."""

    def __init__(self, net: SimNetwork, address: str, node: str,
                 handler: Callable[[SimMailbox], None] | None) -> None:
        self.net = net
        self.address = address
        self.addresses = [address]
        self.node = node
        self.handler = handler
        self.alive = True
        self._inbox: collections.deque[Envelope] = collections.deque()
        self._replies: dict[int, Any] = {}
        self._ref = 0
        self.counters: dict[str, int] = {"received": 0, "sent": 0, "stale_reply": 0}

    def cast(self, to: str, msg: Any) -> None:
        self.net._send(self, to, _env.pack(CAST, self.address, None, msg))

    def reply(self, frm: From | tuple[str, int], value: Any) -> None:
        addr, ref = frm
        self.net._send(self, addr, _env.pack(REPLY, self.address, ref, value))

    def call(self, to: str, msg: Any, timeout: float | None = 5.0) -> Any:
        if to == self.address:
            raise ValueError("calling_self: a mailbox cannot call itself")
        self._ref += 1
        ref = self._ref
        self.net._send(self, to, _env.pack(CALL, self.address, ref, msg))
        net = self.net
        deadline = None if timeout is None else net.clock.current_time() + timeout
        while ref not in self._replies:
            target = net._boxes.get(to)
            if target is None or not target.alive:
                node = net._node_of.get(to)
                if node is not None and node in net._down_nodes:
                    raise NodeDown(f"node {node} of {to} is down")
                raise NoProc(f"no process at {to}")
            if not net.step(deadline):
                if deadline is not None:
                    net.clock.advance(max(0.0, deadline - net.clock.current_time()))
                raise Timeout(f"no reply from {to} within {timeout}s", server=to)
        return self._replies.pop(ref)

    @property
    def pending(self) -> bool:
        return bool(self._inbox)

    def recv(self, timeout: float | None = 0) -> Envelope | None:
        """Next delivered message. ``timeout`` is ignored: in the simulation time moves only
        through the network, so a receiver never waits."""
        return self._inbox.popleft() if self._inbox else None

    def recv_many(self, max_n: int = 1000, timeout: float | None = 0) -> list[Envelope]:
        out: list[Envelope] = []
        while self._inbox and len(out) < max_n:
            out.append(self._inbox.popleft())
        return out

    def _deliver(self, frame: bytes) -> None:
        kind, frm, ref, payload = _env.unpack(frame, check_from=False)
        self.counters["received"] += 1
        if kind == REPLY:
            self._replies[ref] = payload
        elif kind == CALL:
            self._inbox.append(Envelope("call", From(frm, ref), payload))
        else:
            self._inbox.append(Envelope("cast", frm, payload))

    def note_node(self, endpoint: str, node_endpoint: str) -> None:
        """Surface parity with Mailbox: the network already knows every mailbox's node."""

    def set_node_down(self, node_endpoint: str, down: bool) -> None:
        """Surface parity with Mailbox: node death is decided by :meth:`SimNetwork.kill_node`."""

    def forget(self, to: str) -> None:
        """Surface parity with Mailbox: there are no per-peer sockets to close."""

    def close(self) -> None:
        self.alive = False
        self._inbox.clear()

    def __repr__(self) -> str:
        return f"<SimMailbox {self.address}{'' if self.alive else ' dead'}>"


class SimNetwork:
    """A deterministic network. See the module docstring for the fault model."""

    def __init__(self, seed: int, *, delay: tuple[float, float] = (0.0005, 0.002),
                 drop: float = 0.0, duplicate: float = 0.0, clock: FakeClock | None = None) -> None:
        self.rng = random.Random(seed)
        self.clock = clock if clock is not None else FakeClock()
        self.delay = delay
        self.drop = drop
        self.duplicate = duplicate
        self._boxes: dict[str, SimMailbox] = {}
        self._node_of: dict[str, str] = {}
        self._down_nodes: dict[str, None] = {}  # dicts, not sets: deterministic iteration
        self._blocked: dict[tuple[str, str], None] = {}
        self._clogged: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
        self._heap: list[tuple[float, int, str, bytes]] = []
        self._seq = itertools.count()
        self._names = itertools.count(1)
        self.stats = {"sent": 0, "delivered": 0, "dropped": 0, "duplicated": 0,
                      "blocked": 0, "to_dead": 0}

    # -- topology -----------------------------------------------------------------------------

    def spawn(self, handler: Callable[[SimMailbox], None] | None = None, *,
              address: str | None = None, node: str = "sim") -> SimMailbox:
        """A new mailbox (an actor if ``handler`` is given) on ``node``."""
        addr = address or f"sim://{node}/{next(self._names)}"
        old = self._boxes.get(addr)
        if old is not None and old.alive:
            raise ValueError(f"address in use: {addr}")
        mb = SimMailbox(self, addr, node, handler)
        self._boxes[addr] = mb
        self._node_of[addr] = node
        self._down_nodes.pop(node, None)
        return mb

    def kill(self, address: str) -> None:
        """The process at ``address`` dies: its queue is lost, later messages are dropped."""
        mb = self._boxes.get(address)
        if mb is not None:
            mb.close()

    def kill_node(self, node: str) -> None:
        for mb in self._boxes.values():
            if mb.node == node:
                mb.close()
        self._down_nodes[node] = None

    def partition(self, *groups: list[str]) -> None:
        """Block every link between mailboxes of different groups (both directions)."""
        for i, g in enumerate(groups):
            for h in groups[i + 1:]:
                for a in g:
                    for b in h:
                        self._blocked[(a, b)] = None
                        self._blocked[(b, a)] = None

    def block(self, src: str, dst: str) -> None:
        """Block one direction only (an asymmetric partition)."""
        self._blocked[(src, dst)] = None

    def heal(self) -> None:
        self._blocked.clear()

    def clog(self, src: str, dst: str) -> None:
        """Hold messages from ``src`` to ``dst`` until :meth:`unclog`."""
        self._clogged.setdefault((src, dst), [])

    def unclog(self, src: str, dst: str) -> None:
        for to, frame in self._clogged.pop((src, dst), []):
            self._schedule(to, frame)

    # -- running ------------------------------------------------------------------------------

    def _send(self, src: SimMailbox, to: str, frame: bytes) -> None:
        self.stats["sent"] += 1
        src.counters["sent"] += 1
        if (src.address, to) in self._blocked:
            self.stats["blocked"] += 1
            return
        held = self._clogged.get((src.address, to))
        if held is not None:
            held.append((to, frame))
            return
        r = self.rng.random()
        if r < self.drop:
            self.stats["dropped"] += 1
            return
        self._schedule(to, frame)
        if self.rng.random() < self.duplicate:
            self.stats["duplicated"] += 1
            self._schedule(to, frame)

    def _schedule(self, to: str, frame: bytes) -> None:
        at = self.clock.current_time() + self.rng.uniform(*self.delay)
        heapq.heappush(self._heap, (at, next(self._seq), to, frame))

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def step(self, until: float | None = None) -> bool:
        """Deliver the next message due at or before ``until`` (moving the clock to it) and
        run its recipient's handler. False if there is none."""
        if not self._heap or (until is not None and self._heap[0][0] > until):
            return False
        at, _, to, frame = heapq.heappop(self._heap)
        now = self.clock.current_time()
        if at > now:
            self.clock.advance(at - now)
        mb = self._boxes.get(to)
        if mb is None or not mb.alive:
            self.stats["to_dead"] += 1
            return True
        self.stats["delivered"] += 1
        mb._deliver(frame)
        if mb.handler is not None:
            mb.handler(mb)
        return True

    def run(self, until: float | None = None, max_steps: int = 1_000_000) -> int:
        """Deliver messages until none is due before ``until`` (fake time); returns steps.
        With ``until`` given the clock ends there."""
        n = 0
        while n < max_steps and self.step(until):
            n += 1
        if until is not None and self.clock.current_time() < until:
            self.clock.advance(until - self.clock.current_time())
        return n
