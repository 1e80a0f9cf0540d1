"""No ra equivalent (it is OTP's gen_statem, which ra_server_proc.erl is written on).

A small gen_statem runner on a :class:`~transport.mailbox.Mailbox` and a ``zmq.Poller``.

Callbacks: an object with one method per state (``state_functions`` mode), called as
``obj.<state>(event, content, data)``, or a single ``obj.handle_event(event, content, state,
data)`` (``handle_event_function`` mode, used when the object has that method; states may then
be any value). A callback returns one of

* :class:`NextState` ``(state, data, actions)`` — change state (same state: no enter call,
  postponed events stay postponed, state timeout not cancelled, as in gen_statem),
* :class:`KeepState` ``(data, actions)`` / :class:`KeepStateAndData` ``(actions)``,
* :class:`Stop` ``(reason, data, replies)`` — replies are sent, then the runner stops.

Events: :class:`Call` (``frm`` to reply to), :class:`Cast` (``frm`` = sender address),
:class:`Info` (from an extra reader), :class:`Timeout` (``name``) for a generic timeout,
:class:`StateTimeoutEvent`, :class:`Internal` (from :class:`NextEvent`), and :class:`Enter`
(``old`` state) when ``state_enter=True``. Actions: :class:`Reply`, :class:`Postpone`,
:class:`NextEvent`, :class:`StateTimeout`, :class:`GenericTimeout`.

Ordering contract (gen_statem's):

1. Events inserted with ``NextEvent`` run before anything else, in the order given.
2. On a real state change, postponed events are retried first, in their arrival order, then the
   enter call runs before any of them; the state timeout is cancelled unless the same
   transition sets a new one.
3. Then due timeouts (earliest first), then messages from the mailbox in arrival order.
4. A timeout set again replaces the running one of the same kind/name; time ``None`` cancels.

Time comes from an injected :class:`~transport.clock.Clock`; with a ``FakeClock`` a test drives
the runner with :meth:`StatemRunner.run_once` and ``clock.advance``.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from transport.clock import Clock, MonotonicClock
from transport.envelope import From
from transport.mailbox import Mailbox

__all__ = [
    "StatemRunner",
    "Call", "Cast", "Info", "Timeout", "StateTimeoutEvent", "Internal", "Enter",
    "Reply", "Postpone", "NextEvent", "StateTimeout", "GenericTimeout",
    "NextState", "KeepState", "KeepStateAndData", "Stop",
    "Event", "Action", "Result",
]

_log = logging.getLogger("transport.statem")


# -- events --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    frm: From


@dataclasses.dataclass(frozen=True, slots=True)
class Cast:
    frm: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Info:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Timeout:
    name: Any


@dataclasses.dataclass(frozen=True, slots=True)
class StateTimeoutEvent:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Internal:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Enter:
    old: Any


Event = Call | Cast | Info | Timeout | StateTimeoutEvent | Internal | Enter


# -- actions -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    frm: From
    value: Any


@dataclasses.dataclass(frozen=True, slots=True)
class Postpone:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class NextEvent:
    event: Event
    content: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class StateTimeout:
    """Fire :class:`StateTimeoutEvent` with ``content`` after ``time`` seconds unless the state
    changes first. ``time=None`` cancels."""

    time: float | None
    content: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class GenericTimeout:
    """Fire ``Timeout(name)`` with ``content`` after ``time`` seconds; survives state changes.
    ``time=None`` cancels."""

    name: Any
    time: float | None
    content: Any = None


Action = Reply | Postpone | NextEvent | StateTimeout | GenericTimeout


# -- results -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, slots=True)
class NextState:
    state: Any
    data: Any
    actions: Iterable[Action] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class KeepState:
    data: Any
    actions: Iterable[Action] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class KeepStateAndData:
    actions: Iterable[Action] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Stop:
    reason: Any
    data: Any = None
    replies: Iterable[Reply] = ()


Result = NextState | KeepState | KeepStateAndData | Stop

_STATE_TIMEOUT = object()  # key of the state timeout in the timer table


class StatemRunner:
    """Runs one state machine on ``mailbox``: calls become :class:`Call` events, casts
    :class:`Cast` events. Not thread-safe; one runner per mailbox."""

    def __init__(
        self,
        callbacks: Any,
        state: Any,
        data: Any,
        mailbox: Mailbox,
        *,
        clock: Clock | None = None,
        state_enter: bool = False,
        actions: Iterable[Action] = (),
    ) -> None:
        self.cb = callbacks
        self.state = state
        self.data = data
        self.mailbox = mailbox
        self.clock = clock if clock is not None else MonotonicClock()
        self.clock.start_clock()
        self.state_enter = state_enter
        self.stopped: Any = None
        self.is_stopped = False
        self._handle_event = getattr(callbacks, "handle_event", None)
        self._queue: collections.deque[tuple[Event, Any]] = collections.deque()
        self._postponed: list[tuple[Event, Any]] = []
        self._timers: dict[Any, tuple[float, Event, Any]] = {}
        self._readers: dict[Any, Callable[[], Iterable[Any]]] = {}
        self._poller = zmq.Poller()
        self._poller.register(mailbox.socket, zmq.POLLIN)
        if state_enter:
            self._enter(state, state)
        self._queue.extend(self._do_actions(list(actions), None))

    # -- public -----------------------------------------------------------------------------

    def add_reader(self, sock_or_fd: Any, read: Callable[[], Iterable[Any]]) -> None:
        """When ``sock_or_fd`` is readable, ``read()`` returns contents delivered as Info."""
        self._readers[sock_or_fd] = read
        self._poller.register(sock_or_fd, zmq.POLLIN)

    def inject(self, event: Event, content: Any = None) -> None:
        """Queue an event as if it had arrived from outside (after queued ones)."""
        self._queue.append((event, content))

    def next_deadline(self) -> float | None:
        return min((t[0] for t in self._timers.values()), default=None)

    def run(self, until: Callable[[], bool] | None = None, max_wait: float = 1.0) -> Any:
        """Loop until stopped (returns the stop reason) or ``until()`` is true."""
        while not self.is_stopped and not (until is not None and until()):
            self.run_once(max_wait)
        return self.stopped

    def run_once(self, max_wait: float = 0.0) -> int:
        """Handle what is queued, what is due, and what the sockets hold, waiting at most
        ``max_wait`` real seconds (less if a timer is due sooner; ``math.inf``: until a
        message or a due timer). Returns events handled."""
        n = self._drain_queue()
        n += self._fire_due()
        if self.is_stopped:
            return n
        wait = max_wait
        if self._queue or self.mailbox.pending:
            wait = 0.0
        else:
            dl = self.next_deadline()
            if dl is not None:
                wait = min(wait, self.clock.deadline_to_sleep_time(dl))
        if wait == math.inf:
            ms = -1
        else:
            ms = int(wait * 1000 + 0.999) if wait > 0 else 0
        ready = dict(self._poller.poll(ms))
        for sock, read in self._readers.items():
            if sock in ready:
                for content in read():
                    self._queue.append((Info(), content))
        for env in self.mailbox.recv_many(1000, 0):
            ev: Event = Call(env.frm) if env.kind == "call" else Cast(env.frm)
            self._queue.append((ev, env.payload))
        n += self._drain_queue()
        n += self._fire_due()
        return n

    # -- internals --------------------------------------------------------------------------

    def _drain_queue(self) -> int:
        n = 0
        while self._queue and not self.is_stopped:
            event, content = self._queue.popleft()
            self._dispatch(event, content)
            n += 1
        return n

    def _fire_due(self) -> int:
        n = 0
        while not self.is_stopped:
            now = self.clock.current_time()
            due = [(t[0], k) for k, t in self._timers.items() if t[0] <= now]
            if not due:
                return n
            _, key = min(due, key=lambda d: d[0])
            _, event, content = self._timers.pop(key)
            self._dispatch(event, content)
            n += 1 + self._drain_queue()
        return n

    def _call(self, event: Event, content: Any) -> Any:
        if self._handle_event is not None:
            return self._handle_event(event, content, self.state, self.data)
        fn = getattr(self.cb, self.state, None)
        if fn is None:
            raise AttributeError(f"{type(self.cb).__name__} has no state function {self.state!r}")
        return fn(event, content, self.data)

    def _dispatch(self, event: Event, content: Any) -> None:
        result = self._call(event, content)
        old = self.state
        if isinstance(result, NextState):
            self.data = result.data
            actions = list(result.actions)
            changed = result.state != old
            self.state = result.state
        elif isinstance(result, KeepState):
            self.data = result.data
            actions, changed = list(result.actions), False
        elif isinstance(result, KeepStateAndData):
            actions, changed = list(result.actions), False
        elif isinstance(result, Stop):
            self._stop(result)
            return
        else:
            raise TypeError(f"state callback returned {result!r}, not a Result")
        if changed:
            self._timers.pop(_STATE_TIMEOUT, None)
        inserted = self._do_actions(actions, (event, content))
        retry: list[tuple[Event, Any]] = []
        if changed:
            retry, self._postponed = self._postponed, []
        # Next to run: inserted events, then postponed ones (oldest first), then the rest.
        self._queue.extendleft(reversed(inserted + retry))
        if changed and self.state_enter:
            self._enter(old, self.state)

    def _do_actions(self, actions: list[Action], current: tuple[Event, Any] | None,
                    ) -> list[tuple[Event, Any]]:
        """Carry out actions in order; return the NextEvent insertions for the caller."""
        inserted: list[tuple[Event, Any]] = []
        for a in actions:
            if isinstance(a, Reply):
                self.mailbox.reply(a.frm, a.value)
            elif isinstance(a, Postpone):
                if current is None:
                    raise ValueError("postpone is not allowed here (enter call or init)")
                self._postponed.append(current)
            elif isinstance(a, NextEvent):
                inserted.append((a.event, a.content))
            elif isinstance(a, StateTimeout):
                self._set_timer(_STATE_TIMEOUT, a.time, StateTimeoutEvent(), a.content)
            elif isinstance(a, GenericTimeout):
                self._set_timer(a.name, a.time, Timeout(a.name), a.content)
            else:
                raise TypeError(f"unknown action {a!r}")
        return inserted

    def _set_timer(self, key: Any, time: float | None, event: Event, content: Any) -> None:
        if time is None:
            self._timers.pop(key, None)
        else:
            self._timers[key] = (self.clock.current_time() + time, event, content)

    def _enter(self, old: Any, new: Any) -> None:
        result = self._call(Enter(old), None)
        if isinstance(result, Stop):
            self._stop(result)
            return
        if isinstance(result, NextState):
            if result.state != new:
                raise ValueError(f"an enter call cannot change state ({new!r} -> {result.state!r})")
            self.data = result.data
        elif isinstance(result, KeepState):
            self.data = result.data
        elif not isinstance(result, KeepStateAndData):
            raise TypeError(f"enter call returned {result!r}, not a Result")
        acts = list(result.actions)
        if any(isinstance(a, (Postpone, NextEvent)) for a in acts):
            raise ValueError("an enter call cannot postpone or insert events")
        self._do_actions(acts, None)

    def _stop(self, result: Stop) -> None:
        for r in result.replies:
            self.mailbox.reply(r.frm, r.value)
        if result.data is not None:
            self.data = result.data
        self.is_stopped = True
        self.stopped = result.reason
        terminate = getattr(self.cb, "terminate", None)
        if terminate is not None:
            try:
                terminate(result.reason, self.state, self.data)
            except Exception:
                _log.exception("terminate callback failed")
