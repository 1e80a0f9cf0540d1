"""No ra equivalent: the single event loop that supervisors and the node daemon share.

One ``zmq.Poller`` waits on everything at once: child pidfds (exit notices), ZeroMQ sockets or
plain fds of the owner (the daemon's mailbox), and the SIGCHLD wakeup fd when ``reap_all`` is on.
The pidfds sit in one ``epoll`` set that the poller watches as a single fd: a node daemon
watches a child per server (1,000 and more), and ``poll(2)`` over all of them at every turn
was a tenth of its CPU while a node started its servers.
Timers are a heap of monotonic deadlines; the poll timeout is the time to the next one. Nothing
sleeps to poll.

``reap_all=True`` (the node daemon, a child subreaper) also installs a SIGCHLD handler with
``signal.set_wakeup_fd`` and reaps *every* exited child with ``waitpid(-1, WNOHANG)``: watched
children get their exit dispatched, unknown ones (orphans reparented to us) are just reaped, so
no zombie is ever left. It must run in the main thread. ``reap_all=False`` (a library user, a
test) only ever waits for the pids it watches.
"""
from __future__ import annotations

import heapq
import itertools
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import zmq

from supervisor.child import OsChild

__all__ = ["Loop", "TimerHandle"]

ExitCallback = Callable[[OsChild], None]


class TimerHandle:
    """A scheduled callback; :meth:`cancel` prevents it from running."""

    __slots__ = ("when", "fn", "cancelled")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        """Do not run this callback."""
        self.cancelled = True


class Loop:
    """Poller loop with child exit watching, fd/socket readers and timers."""

    def __init__(self, reap_all: bool = False) -> None:
        self.poller = zmq.Poller()
        self._readers: dict[Any, Callable[[], None]] = {}
        self._pending: dict[Any, Callable[[], bool]] = {}
        self._by_pidfd: dict[int, OsChild] = {}
        # the pidfds, in an epoll set the poller sees as one fd (O(1) per turn, not O(children))
        self._pidfds = select.epoll()
        self.poller.register(self._pidfds.fileno(), zmq.POLLIN)
        self._watch: dict[int, tuple[OsChild, ExitCallback]] = {}
        self._timers: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._soon: list[Callable[[], None]] = []
        self._stopped = False
        self.reap_all = reap_all
        self.orphans_reaped = 0
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._old_handler: Any = None
        self._old_wakeup = -1
        if reap_all:
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._old_handler = signal.signal(signal.SIGCHLD, lambda *_: None)
            self._old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(),
                                                    warn_on_full_buffer=False)
            self.poller.register(self._wake_r.fileno(), zmq.POLLIN)

    # -------------------------------------------------------------- registration

    def add_reader(self, obj: Any, callback: Callable[[], None],
                   pending: Callable[[], bool] | None = None) -> None:
        """Call ``callback()`` when ``obj`` (a zmq socket or an fd) is readable.

        ``pending()``, when given, says that data is already buffered in user space (a
        Mailbox that queued messages during a call): the loop then does not block.
        """
        self._readers[obj] = callback
        if pending is not None:
            self._pending[obj] = pending
        self.poller.register(obj, zmq.POLLIN)

    def remove_reader(self, obj: Any) -> None:
        """Stop watching ``obj``."""
        if self._readers.pop(obj, None) is not None:
            self._pending.pop(obj, None)
            self.poller.unregister(obj)

    def watch(self, child: OsChild, on_exit: ExitCallback) -> None:
        """Call ``on_exit(child)`` once ``child`` has exited and been reaped."""
        self._watch[child.pid] = (child, on_exit)
        if child.pidfd is not None:
            self._by_pidfd[child.pidfd] = child
            self._pidfds.register(child.pidfd, select.EPOLLIN)
        elif child.reap() is not None:
            self.call_soon(lambda: self._dispatch(child.pid))

    def unwatch(self, child: OsChild) -> None:
        """Forget ``child`` (the caller reaps it itself, e.g. during a shutdown)."""
        self._watch.pop(child.pid, None)
        if child.pidfd is not None and self._by_pidfd.pop(child.pidfd, None) is not None:
            self._forget_pidfd(child.pidfd)

    def _forget_pidfd(self, fd: int) -> None:
        try:
            self._pidfds.unregister(fd)
        except OSError:     # closed already (a closed fd leaves epoll sets by itself)
            pass

    def call_later(self, delay: float, fn: Callable[[], None]) -> TimerHandle:
        """Run ``fn()`` after ``delay`` seconds."""
        h = TimerHandle(time.monotonic() + delay, fn)
        heapq.heappush(self._timers, (h.when, next(self._seq), h))
        return h

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn()`` at the next turn of the loop, before polling."""
        self._soon.append(fn)

    # -------------------------------------------------------------- running

    def _dispatch(self, pid: int) -> None:
        entry = self._watch.pop(pid, None)
        if entry is None:
            return
        child, cb = entry
        if child.pidfd is not None and self._by_pidfd.pop(child.pidfd, None) is not None:
            self._forget_pidfd(child.pidfd)
        child.reap()
        cb(child)

    def _reap_all(self) -> None:
        assert self._wake_r is not None
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            entry = self._watch.get(pid)
            if entry is None:
                self.orphans_reaped += 1
                continue
            entry[0].set_status(status)
            self._dispatch(pid)

    def run_once(self, timeout: float | None = None) -> None:
        """Run due callbacks, poll up to ``timeout`` s (or the next timer), handle events."""
        while self._soon:
            soon, self._soon = self._soon, []
            for fn in soon:
                fn()
        now = time.monotonic()
        while self._timers and (self._timers[0][2].cancelled or self._timers[0][0] <= now):
            _, _, h = heapq.heappop(self._timers)
            if not h.cancelled:
                h.fn()
        if self._soon or any(p() for p in self._pending.values()):
            wait_ms: int | None = 0
        else:
            wait = timeout
            if self._timers:
                nxt = max(0.0, self._timers[0][0] - time.monotonic())
                wait = nxt if wait is None else min(wait, nxt)
            wait_ms = None if wait is None else int(wait * 1000.0)  # what zmq does with a float
        events = dict(self.poller.poll(wait_ms))
        if self._wake_r is not None and self._wake_r.fileno() in events:
            self._reap_all()
        exited = [fd for fd, _ in self._pidfds.poll(0)] if self._pidfds.fileno() in events \
            else []
        for fd in exited:
            child = self._by_pidfd.get(fd)
            if child is not None:
                if self.reap_all:
                    self._reap_all()
                if child.reap() is not None:
                    self._dispatch(child.pid)
        for obj, cb in list(self._readers.items()):
            if obj in events or (obj in self._pending and self._pending[obj]()):
                cb()
        while self._soon:
            soon, self._soon = self._soon, []
            for fn in soon:
                fn()

    def run_until(self, pred: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
        """Run the loop until ``pred()`` is true or ``timeout`` s pass; return ``pred()``.

        ``pred`` is checked after every event and at least every ``step`` seconds (for
        conditions the loop cannot see, such as a file another process writes).
        """
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return pred()
            self.run_once(min(left, step))
        return True

    def run_forever(self) -> None:
        """Run until :meth:`stop` is called (a stop requested before the call counts too:
        a signal may arrive between start-up and this call)."""
        while not self._stopped:
            self.run_once(None)

    def stop(self) -> None:
        """Make :meth:`run_forever` return after the current turn."""
        self._stopped = True

    def close(self) -> None:
        """Restore the SIGCHLD handler and wakeup fd; reap what is left when ``reap_all``."""
        if not self._pidfds.closed:
            self.poller.unregister(self._pidfds.fileno())
            self._pidfds.close()
        if self._wake_r is not None:
            self._reap_all()
            signal.set_wakeup_fd(self._old_wakeup)
            signal.signal(signal.SIGCHLD, self._old_handler or signal.SIG_DFL)
            self._wake_r.close()
            assert self._wake_w is not None
            self._wake_w.close()
            self._wake_r = self._wake_w = None
