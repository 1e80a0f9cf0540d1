"""No ra equivalent (Erlang timers read the VM clock). The injected clock, in trio's shape.

Everything in the runtime that needs "now" or "how long to wait" asks a :class:`Clock`, so a
test can swap in :class:`FakeClock` and move time by hand: deterministic timeouts, no sleeps.
Times are float seconds on an arbitrary monotonic scale.
"""
from __future__ import annotations

import abc
import math
import time

__all__ = ["Clock", "MonotonicClock", "FakeClock"]


class Clock(abc.ABC):
    """Source of time for a loop. Implementations must be monotonic (never go back)."""

    def start_clock(self) -> None:
        """Called once when a loop starts using the clock."""

    @abc.abstractmethod
    def current_time(self) -> float:
        """Now, in seconds."""

    @abc.abstractmethod
    def deadline_to_sleep_time(self, deadline: float) -> float:
        """How many *real* seconds a loop may block waiting for ``deadline`` (0 if due,
        ``math.inf`` if waiting cannot bring it nearer)."""


class MonotonicClock(Clock):
    """``time.monotonic``: the real clock."""

    def current_time(self) -> float:
        return time.monotonic()

    def deadline_to_sleep_time(self, deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())


class FakeClock(Clock):
    """A clock that moves only when told (:meth:`advance` / :meth:`jump`).

    With ``rate=0`` (default) real waiting never reaches a deadline, so
    :meth:`deadline_to_sleep_time` is 0 for due deadlines and ``math.inf`` otherwise: a loop
    driven with this clock blocks only on I/O, and the test advances time between steps.
    ``rate > 0`` makes it run at that many fake seconds per real second on top of jumps.
    """

    def __init__(self, start: float = 0.0, rate: float = 0.0) -> None:
        self._base = start
        self._rate = rate
        self._real0 = time.monotonic()

    def current_time(self) -> float:
        if self._rate:
            return self._base + (time.monotonic() - self._real0) * self._rate
        return self._base

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must be >= 0)."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._base += seconds

    jump = advance

    def deadline_to_sleep_time(self, deadline: float) -> float:
        left = deadline - self.current_time()
        if left <= 0:
            return 0.0
        return left / self._rate if self._rate else math.inf
