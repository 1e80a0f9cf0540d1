"""No ra equivalent in ra itself: mirrors the role of aten (aten_detector.erl, aten_emitter.erl),
the node failure detector ra depends on.

Node daemons cast heartbeats to the daemons of the nodes they watch every ``interval``
seconds. A watched node is *down* when nothing has been heard from it for longer than
``max(down_after, mean_gap + 4 * stdev_gap)`` over its recent heartbeat gaps (an adaptive
threshold in the spirit of aten's, which tolerates a peer whose heartbeats are slow but
regular), and *up* again at its next heartbeat. Subscribers get ``("nodeup", node)`` /
``("nodedown", node)`` casts on every change.

Split in two, as everything here is: :class:`Detector` is pure (times are arguments; tested
with a fake clock), :class:`FailureDetector` is the thin socket part a daemon embeds.

Protocol on the daemon's mailbox (payload tuples tagged :data:`TAG`):

* cast ``(TAG, "hb", node)`` — heartbeat from ``node``;
* call ``(TAG, "subscribe", addr)`` -> ``{node: status}``; ``addr`` then receives the casts;
* call ``(TAG, "unsubscribe", addr)`` -> ``"ok"``;
* call ``(TAG, "watch", node)`` -> ``"ok"`` — start heartbeating with ``node`` too;
* call ``(TAG, "status")`` -> ``{node: "up" | "down" | "unknown"}``.

Nodes are named by the strings daemons use for themselves (``"host:port"``): both sides must
spell a node the same way.
"""
from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable

from transport.clock import Clock, MonotonicClock
from transport.envelope import Envelope
from transport.mailbox import BaseMailbox, Mailbox
from transport.registry import invalidate_node, node_endpoint

__all__ = ["TAG", "Detector", "FailureDetector", "UP", "DOWN", "UNKNOWN", "apply_node_event"]

TAG = "$ra_fd"
UP = "up"
DOWN = "down"
UNKNOWN = "unknown"


class _Peer:
    __slots__ = ("status", "last", "gaps", "since")

    def __init__(self, now: float, window: int) -> None:
        self.status = UNKNOWN
        self.last: float | None = None
        self.gaps: collections.deque[float] = collections.deque(maxlen=window)
        self.since = now  # when watching began: a node never heard from goes down too


class Detector:
    """Pure decision logic: feed heartbeats and ticks with explicit times, get transitions.

    Contract: :meth:`heartbeat` returns ``[("nodeup", node)]`` when ``node`` was not up;
    :meth:`check` returns ``("nodedown", node)`` for each up/unknown node silent past its
    threshold. Each transition is reported once.
    """

    def __init__(self, down_after: float = 1.0, window: int = 16) -> None:
        self.down_after = down_after
        self.window = window
        self._peers: dict[str, _Peer] = {}

    def watch(self, node: str, now: float) -> None:
        if node not in self._peers:
            self._peers[node] = _Peer(now, self.window)

    def unwatch(self, node: str) -> None:
        self._peers.pop(node, None)

    def nodes(self) -> list[str]:
        return list(self._peers)

    def status(self, node: str) -> str:
        p = self._peers.get(node)
        return UNKNOWN if p is None else p.status

    def statuses(self) -> dict[str, str]:
        return {n: p.status for n, p in self._peers.items()}

    def threshold(self, node: str) -> float:
        """Silence (seconds) after which ``node`` counts as down."""
        p = self._peers[node]
        if len(p.gaps) < 2:
            return self.down_after
        mean = sum(p.gaps) / len(p.gaps)
        var = sum((g - mean) ** 2 for g in p.gaps) / (len(p.gaps) - 1)
        return max(self.down_after, mean + 4 * math.sqrt(var))

    def heartbeat(self, node: str, now: float) -> list[tuple[str, str]]:
        p = self._peers.get(node)
        if p is None:  # heartbeats from unwatched nodes still tell us they are up
            p = self._peers[node] = _Peer(now, self.window)
        if p.last is not None and p.status == UP:
            p.gaps.append(max(0.0, now - p.last))
        p.last = now
        if p.status != UP:
            p.status = UP
            return [("nodeup", node)]
        return []

    def check(self, now: float) -> list[tuple[str, str]]:
        out = []
        for node, p in self._peers.items():
            if p.status == DOWN:
                continue
            heard = p.last if p.last is not None else p.since
            if now - heard > self.threshold(node):
                p.status = DOWN
                p.gaps.clear()  # after a restart the old rhythm means nothing
                out.append(("nodedown", node))
        return out

    def next_check(self, now: float) -> float | None:
        """Earliest time at which :meth:`check` could report something new."""
        times = [(p.last if p.last is not None else p.since) + self.threshold(n)
                 for n, p in self._peers.items() if p.status != DOWN]
        return min(times, default=None)


class FailureDetector:
    """The socket part, embedded in a node daemon's loop.

    The daemon passes each envelope to :meth:`handle` (``True`` if it was ours) and calls
    :meth:`tick` whenever :meth:`next_deadline` passes (and may call it more often).
    ``callbacks`` are in-process subscribers called with ``(event, node)``.
    """

    def __init__(
        self,
        mailbox: Mailbox,
        self_node: str,
        watch: Iterable[str] = (),
        *,
        interval: float = 0.2,
        down_after: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.self_node = self_node
        self.interval = interval
        self.clock = clock if clock is not None else MonotonicClock()
        self.detector = Detector(down_after)
        self.subscribers: set[str] = set()
        self.callbacks: list[Callable[[str, str], None]] = []
        now = self.clock.current_time()
        for n in watch:
            self.detector.watch(n, now)
        self._next_hb = now

    def next_deadline(self) -> float:
        nc = self.detector.next_check(self.clock.current_time())
        return self._next_hb if nc is None else min(self._next_hb, nc)

    def tick(self) -> None:
        """Send heartbeats if due; report nodes that went silent."""
        now = self.clock.current_time()
        if now >= self._next_hb:
            hb = (TAG, "hb", self.self_node)
            for node in self.detector.nodes():
                self.mailbox.cast(node_endpoint(node), hb)
            self._next_hb = now + self.interval
        self._notify(self.detector.check(now))

    def handle(self, env: Envelope) -> bool:
        p = env.payload
        if not (type(p) is tuple and len(p) >= 2 and p[0] == TAG):
            return False
        op = p[1]
        now = self.clock.current_time()
        if op == "hb" and len(p) == 3:
            self._notify(self.detector.heartbeat(p[2], now))
            return True
        if env.kind != "call":
            return True
        if op == "subscribe":
            self.subscribers.add(p[2])
            self.mailbox.reply(env.frm, self.detector.statuses())
        elif op == "unsubscribe":
            self.subscribers.discard(p[2])
            self.mailbox.reply(env.frm, "ok")
        elif op == "watch":
            self.detector.watch(p[2], now)
            self._next_hb = now  # introduce ourselves right away
            self.mailbox.reply(env.frm, "ok")
        elif op == "status":
            self.mailbox.reply(env.frm, self.detector.statuses())
        else:
            self.mailbox.reply(env.frm, ("error", "unknown_op", op))
        return True

    def _notify(self, events: list[tuple[str, str]]) -> None:
        for ev in events:
            for addr in self.subscribers:
                self.mailbox.cast(addr, ev)
            for cb in self.callbacks:
                cb(*ev)


def apply_node_event(mailbox: BaseMailbox, payload: object) -> bool:
    """For a subscriber: apply a ``("nodeup" | "nodedown", node)`` cast to ``mailbox``.

    On nodedown, calls to endpoints resolved on that node fail with ``NodeDown`` at once; on
    nodeup that stops and the node's cached endpoints are dropped (a restarted daemon's
    servers may have moved). Returns ``False`` (and does nothing) for any other payload.
    """
    if not (type(payload) is tuple and len(payload) == 2 and payload[0] in ("nodeup", "nodedown")
            and type(payload[1]) is str):
        return False
    ev, node = payload
    mailbox.set_node_down(node_endpoint(node), ev == "nodedown")
    if ev == "nodeup":
        invalidate_node(mailbox, node)
    return True
