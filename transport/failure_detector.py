"""No ra equivalent in ra itself: mirrors the role of aten (aten_detector.erl, aten_emitter.erl),
the node failure detector ra depends on.

Node daemons cast heartbeats to the daemons of the nodes they watch every ``interval``
seconds. A watched node is *down* when nothing has been heard from it for longer than
``max(down_after, mean_gap + 4 * stdev_gap)`` over its recent heartbeat gaps (an adaptive
threshold in the spirit of aten's, which tolerates a peer whose heartbeats are slow but
regular), and *up* again at its next heartbeat. Silence that overlaps a stall of the detector
itself (its own checks more than ``stall_after`` apart: its process was not scheduled, as on a
machine with far more runnable processes than cores) is not counted: the heartbeats sent
meanwhile may be waiting unread in its own socket, so silence counts again from its first check
after the stall, though never more than ``stall_forgive`` seconds of it are forgiven (a detector
that stalls all the time still reports a dead node, later). The same holds while the process
that embeds the detector is *behind on its mail* (:meth:`FailureDetector.behind`: its loop ran
on time but left messages unread, as a daemon restarting a thousand servers does): heartbeats
queue behind that mail, so silence counts from the latest moment it was behind, within the same
``stall_forgive`` bound. Subscribers get ``NodeEvent("nodeup", node)``
/ ``NodeEvent("nodedown", node)`` casts on every change. A daemon never watches itself: a
heartbeat or watch naming its own node is ignored (else one forged heartbeat would later make
every subscriber on the node believe its own node down).

Split in two, as everything here is: :class:`Detector` is pure (times are arguments; tested
with a fake clock), :class:`FailureDetector` is the thin socket part a daemon embeds.

Protocol on the daemon's mailbox (the typed messages of :mod:`transport.messages`; a daemon
validates them at its door, :meth:`FailureDetector.handle` does it for a process that embeds
only the detector):

* cast ``FdHeartbeat(node)`` — heartbeat from ``node``;
* call ``FdSubscribe(addr)`` -> ``{node: status}``; ``addr`` then receives the casts;
* call ``FdUnsubscribe(addr)`` -> ``"ok"``;
* call ``FdWatch(node)`` -> ``"ok"`` — start heartbeating with ``node`` too;
* call ``FdStatus()`` -> ``{node: "up" | "down" | "unknown"}``.

A malformed call is answered ``("error", "bad_request", reason)``; a malformed cast is dropped.
Both are counted in :attr:`FailureDetector.dropped`.

Nodes are named by the strings daemons use for themselves (``"host:port"``): both sides must
spell a node the same way.
"""
from __future__ import annotations

import collections
import logging
import math
from collections.abc import Callable, Iterable

from typing import Any

from transport import messages as msgs
from transport.clock import Clock, MonotonicClock
from transport.envelope import Envelope
from transport.mailbox import BaseMailbox
from transport.registry import invalidate_node, node_endpoint

__all__ = ["Detector", "FailureDetector", "UP", "DOWN", "UNKNOWN", "apply_node_event"]

_log = logging.getLogger(__name__)

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

    def __init__(self, down_after: float = 1.0, window: int = 16,
                 stall_after: float | None = None, stall_forgive: float = 4.0) -> None:
        self.down_after = down_after
        self.window = window
        #: checks further apart than this mean that we ourselves stalled (None: never)
        self.stall_after = stall_after
        #: the most silence of a node forgiven for our stalls
        self.stall_forgive = stall_forgive
        self._peers: dict[str, _Peer] = {}
        self._last_check: float | None = None
        #: the first check after our latest stall: no silence before it counts
        self._resumed = -math.inf
        #: stalls of our own seen so far (each one reported no node down)
        self.stalls = 0
        #: times the embedding process said it was behind on its mail (:meth:`behind`)
        self.behinds = 0

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

    def _heard(self, p: _Peer) -> float:
        """When silence from ``p`` starts counting."""
        heard = p.last if p.last is not None else p.since
        return max(heard, min(self._resumed, heard + self.stall_forgive))

    def behind(self, now: float) -> None:
        """Our own input was not all read at ``now``: heartbeats may wait unread behind it, so
        as after a stall, a node's silence counts from ``now`` (never more than
        ``stall_forgive`` seconds of it forgiven: a node that really died is still reported,
        that much later)."""
        self._resumed = now
        self.behinds += 1

    def check(self, now: float) -> list[tuple[str, str]]:
        last, self._last_check = self._last_check, now
        if self.stall_after is not None and last is not None and now - last > self.stall_after:
            # we were not running: their heartbeats may be unread in our socket; count their
            # silence from now (a node that really died is reported up to stall_forgive later)
            self._resumed = now
            self.stalls += 1
        out = []
        for node, p in self._peers.items():
            if p.status == DOWN:
                continue
            if now - self._heard(p) > self.threshold(node):
                p.status = DOWN
                p.gaps.clear()  # after a restart the old rhythm means nothing
                out.append(("nodedown", node))
        return out

    def next_check(self, now: float) -> float | None:
        """Earliest time at which :meth:`check` could report something new."""
        times = [self._heard(p) + self.threshold(n)
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
        mailbox: BaseMailbox,
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
        # its ticks come at least every ``interval`` (the heartbeats): a check that comes
        # much later than that means this process stalled
        self.detector = Detector(down_after, stall_after=max(3 * interval, down_after / 2))
        self.subscribers: set[str] = set()
        self.callbacks: list[Callable[[str, str], None]] = []
        #: malformed detector messages seen by :meth:`handle`, by reason
        self.dropped: dict[str, int] = {}
        now = self.clock.current_time()
        for n in watch:
            if not self._is_self(n):
                self.detector.watch(n, now)
        self._next_hb = now

    def next_deadline(self) -> float:
        nc = self.detector.next_check(self.clock.current_time())
        return self._next_hb if nc is None else min(self._next_hb, nc)

    def tick(self) -> None:
        """Send heartbeats if due; report nodes that went silent."""
        now = self.clock.current_time()
        if now >= self._next_hb:
            hb = msgs.FdHeartbeat(self.self_node)
            for node in self.detector.nodes():
                self._cast(node_endpoint(node), hb)
            self._next_hb = now + self.interval
        self._notify(self.detector.check(now))

    def behind(self) -> None:
        """The embedding loop left mail unread this turn (it takes a bounded amount per turn
        so that its timers, these heartbeats among them, run on time): see
        :meth:`Detector.behind`."""
        self.detector.behind(self.clock.current_time())

    def _is_self(self, node: str) -> bool:
        return node_endpoint(node) == node_endpoint(self.self_node)

    def _cast(self, to: str, msg: Any) -> None:
        try:
            self.mailbox.cast(to, msg)
        except ValueError:      # an address the socket layer refuses: nothing to send to
            self.dropped["bad_address"] = self.dropped.get("bad_address", 0) + 1

    def handle(self, env: Envelope) -> bool:
        """Validate and serve one envelope if it is a detector message (``True``), else
        ``False``. A daemon that validated the message already calls :meth:`serve`."""
        p = env.payload
        if type(p) is not msgs.FdHeartbeat and type(p) not in msgs.FD_CALLS:
            return False
        reason = msgs.check(p)
        if reason is not None:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1
            if env.kind == "call":
                self.mailbox.reply(env.frm, ("error", msgs.BAD_REQUEST, reason))
            return True
        if env.kind == "call":
            self.mailbox.reply(env.frm, self.serve(p))
        elif type(p) is msgs.FdHeartbeat:
            self.serve(p)
        return True

    def serve(self, p: Any) -> Any:
        """Act on one *valid* detector message; the reply to send if it was a call."""
        now = self.clock.current_time()
        t = type(p)
        if t is msgs.FdHeartbeat:
            if not self._is_self(p.node):
                self._notify(self.detector.heartbeat(p.node, now))
            return "ok"
        if t is msgs.FdSubscribe:
            self.subscribers.add(p.addr)
            return self.detector.statuses()
        if t is msgs.FdUnsubscribe:
            self.subscribers.discard(p.addr)
            return "ok"
        if t is msgs.FdWatch:
            if not self._is_self(p.node):
                self.detector.watch(p.node, now)
                self._next_hb = now  # introduce ourselves right away
            return "ok"
        if t is msgs.FdStatus:
            return self.detector.statuses()
        return ("error", msgs.BAD_REQUEST, "unknown_message")

    def _notify(self, events: list[tuple[str, str]]) -> None:
        for ev, node in events:
            # every subscriber acts on it (a node's followers probe their leaders): say why
            if ev == "nodedown":
                _log.warning("node %s down: silent past its threshold (failure detector; %d "
                             "stalls of our own so far, %d turns behind on our mail)", node,
                             self.detector.stalls, self.detector.behinds)
            else:
                _log.info("node %s up (failure detector)", node)
            note = msgs.NodeEvent(ev, node)
            for addr in list(self.subscribers):
                self._cast(addr, note)
            for cb in self.callbacks:
                cb(ev, node)


def apply_node_event(mailbox: BaseMailbox, payload: object) -> bool:
    """For a subscriber: apply a ``NodeEvent("nodeup" | "nodedown", node)`` cast to ``mailbox``.

    On nodedown, calls to endpoints resolved on that node fail with ``NodeDown`` at once; on
    nodeup that stops and the node's cached endpoints are dropped (a restarted daemon's
    servers may have moved). ``payload`` is validated already (the subscriber's door does it);
    returns ``False`` (and does nothing) for any other type.
    """
    if type(payload) is not msgs.NodeEvent:
        return False
    mailbox.set_node_down(node_endpoint(payload.node), payload.event == "nodedown")
    if payload.event == "nodeup":
        invalidate_node(mailbox, payload.node)
    return True
