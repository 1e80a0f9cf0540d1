"""No ra equivalent (the BEAM keeps its CPUs awake itself: its schedulers busy-wait before they
sleep, ``+sbwt``). Keeps the machine's idle CPUs polling instead of halted while the WAL is busy,
through Linux's PM QoS CPU-latency request (``/dev/cpu_dma_latency``).

Why: every command wakes six processes one after another on its way to commit (client, leader,
follower, follower's WAL, follower, leader). On a virtual machine an idle vCPU halts, and a
process woken there waits 20-30 µs for it to run again; the six add 0.1-0.2 ms to a command's
0.6 ms (W1 on a 2-vCPU KVM guest; BENCHMARKS.md, session 18). While a request of 0 µs is held,
the kernel's cpuidle picks its polling state for every idle CPU: a woken process runs at once.
The cost is CPU time that an idle machine would not spend (the host sees its idle vCPUs busy),
so the request is held only while the WAL writes, and for ``hold_s`` after its last batch.

Contract: :class:`IdlePoll` opens the file at construction (``OSError`` when the kernel has no
PM QoS device or this user may not write it: root, or a udev rule granting it). The request
is the kernel's, tied to the open file: :meth:`close` or the death of the process drops it.
:meth:`busy` after each batch holds it (one ``write`` when it was not held); :meth:`sleep`
gives the loop's next wait and drops the hold once ``hold_s`` passed without a batch.
"""
from __future__ import annotations

import logging
import os
import struct

__all__ = ["IdlePoll", "DEVICE"]

_log = logging.getLogger("wal.idle_poll")

DEVICE = "/dev/cpu_dma_latency"
#: 0 µs of wake-up latency allowed: only the polling idle state qualifies
_POLL = struct.pack("=i", 0)
#: the kernel's default for the request (PM_QOS_CPU_LATENCY_DEFAULT_VALUE, 2,000 s): no limit
_FREE = struct.pack("=i", 2_000_000_000)


class IdlePoll:
    """A PM QoS CPU-latency request of 0 µs, held while :meth:`busy` is called at least every
    ``hold_s`` seconds."""

    __slots__ = ("hold_s", "holds", "_fd", "_until")

    def __init__(self, hold_s: float, path: str | None = None) -> None:
        if not hold_s > 0:
            raise ValueError(f"hold_s must be > 0, not {hold_s!r}")
        self.hold_s = hold_s
        #: how many times the request went from released to held (a burst of batches each)
        self.holds = 0
        self._fd = os.open(DEVICE if path is None else path, os.O_WRONLY | os.O_CLOEXEC)
        self._until = 0.0           # 0.0: released
        try:
            os.write(self._fd, _FREE)
        except OSError:
            os.close(self._fd)
            raise

    @property
    def held(self) -> bool:
        return self._until != 0.0

    def busy(self, now: float) -> None:
        """A batch was written at ``now`` (``time.monotonic()``): hold until ``now + hold_s``."""
        if self._until == 0.0:
            if not self._write(_POLL):
                return
            self.holds += 1
        self._until = now + self.hold_s

    def sleep(self, now: float, longest: float) -> float:
        """How long the loop may wait for its next message: ``longest``, or less to drop the
        hold in time; drops it when its time has come."""
        until = self._until
        if until == 0.0:
            return longest
        left = until - now
        if left > 0:
            return min(longest, left)
        self._write(_FREE)
        self._until = 0.0
        return longest

    def close(self) -> None:
        """Drop the request (closing the file is what ends it)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self._until = 0.0

    def _write(self, value: bytes) -> bool:
        try:
            os.write(self._fd, value)
            return True
        except OSError as e:     # not expected once open; the WAL goes on without it
            _log.warning("idle poll request not changed: %s", e)
            return False
