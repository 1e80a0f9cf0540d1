"""No ra equivalent (OTP's VM does this; cf. circus' process.py): the OS side of a child.

Spawn, exit notice, shutdown.

Contracts:

* Every child spawned here runs in its own process group and has ``PR_SET_PDEATHSIG=SIGKILL``
  armed against the process that supervises it, checked against a race with ``getppid()`` right
  after arming: a ``kill -9`` of the supervising process kills the children too (no orphans).
* Exits are noticed through a pidfd (``os.pidfd_open``), which the event loop polls; nothing here
  sleeps to poll. :meth:`OsChild.reap` collects the status exactly once, so no zombie is left.
* :meth:`OsChild.shutdown` follows OTP: ``brutal_kill`` sends SIGKILL; an integer sends SIGTERM,
  waits that many milliseconds on the pidfd, then sends SIGKILL; ``infinity`` sends SIGTERM and
  waits. The returned reason is mapped by :func:`supervisor.strategy.exit_reason`.
"""
from __future__ import annotations

import ctypes
import os
import select
import signal
import time
from collections.abc import Iterable, Mapping, Sequence

from supervisor.strategy import exit_reason

__all__ = [
    "OsChild",
    "set_pdeathsig",
    "set_child_subreaper",
    "child_setup",
    "spawn_exec",
    "shutdown_many",
]

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl
_prctl.restype = ctypes.c_int


def _prctl_call(option: int, arg: int) -> None:
    if _prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
              ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def set_pdeathsig(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) dies."""
    _prctl_call(_PR_SET_PDEATHSIG, int(sig))


def set_child_subreaper() -> None:
    """Make this process the reaper of orphaned descendants (they reparent here, not to init)."""
    _prctl_call(_PR_SET_CHILD_SUBREAPER, 1)


def child_setup(parent_pid: int) -> None:
    """First steps of every child: own process group, parent-death signal, race check.

    Exits the process at once (code 1) when the parent is already gone.
    """
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def spawn_exec(argv: Sequence[str], env: Mapping[str, str] | None = None,
               cwd: str | None = None, pass_fds: Iterable[int] = ()) -> int:
    """Fork and exec ``argv`` as a child of this process; return its pid.

    Between fork and exec the child only sets up its process group and parent-death signal,
    makes ``pass_fds`` inheritable and changes directory. Exec failure exits with code 127.
    """
    argv = list(argv)
    full_env = dict(os.environ if env is None else env)
    fds = list(pass_fds)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            child_setup(parent)
            for fd in fds:
                os.set_inheritable(fd, True)
            if cwd:
                os.chdir(cwd)
            os.execvpe(argv[0], argv, full_env)
        except BaseException:
            pass
        os._exit(127)
    return pid


class OsChild:
    """One live OS child process of this process, watched through a pidfd.

    ``returncode`` is ``None`` while it runs, then follows subprocess' convention (``-N`` for
    death by signal N). ``term_sent`` records that *we* sent SIGTERM (for the ``shutdown`` reason).
    """

    __slots__ = ("pid", "pidfd", "returncode", "term_sent", "started_at")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.term_sent = False
        self.started_at = time.monotonic()
        try:
            self.pidfd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # already reaped by a reap-all loop: caller handles
            self.pidfd = None

    @classmethod
    def exec(cls, argv: Sequence[str], env: Mapping[str, str] | None = None,
             cwd: str | None = None, pass_fds: Iterable[int] = ()) -> OsChild:
        """Spawn a fresh program (see :func:`spawn_exec`)."""
        return cls(spawn_exec(argv, env, cwd, pass_fds))

    @property
    def reason(self) -> str | None:
        """The exit reason once reaped (``normal``, ``shutdown``, ``killed``...), else None."""
        if self.returncode is None:
            return None
        return exit_reason(self.returncode, self.term_sent)

    def _close(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def set_status(self, status: int) -> None:
        """Record a raw wait status collected elsewhere (a reap-all ``waitpid(-1)``)."""
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(status)
        self._close()

    def reap(self, block: bool = False) -> int | None:
        """Collect the exit status if the child has exited (``block``: wait for it)."""
        if self.returncode is not None:
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            # reaped elsewhere without telling us: nothing more can be known
            self.returncode = -signal.SIGKILL if self.returncode is None else self.returncode
            self._close()
            return self.returncode
        if pid == 0:
            return None
        self.set_status(status)
        return self.returncode

    def wait(self, timeout: float | None) -> int | None:
        """Wait up to ``timeout`` seconds (None: forever) on the pidfd; reap and return the code."""
        if self.returncode is not None:
            return self.returncode
        if self.pidfd is None:
            return self.reap(block=True)
        p = select.poll()
        p.register(self.pidfd, select.POLLIN)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if p.poll(None if left is None else left * 1000.0):
                return self.reap(block=True)
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def signal(self, sig: int) -> None:
        """Send ``sig`` unless the child is already reaped (pidfd: no pid-reuse race)."""
        if self.returncode is not None:
            return
        if sig == signal.SIGTERM:
            self.term_sent = True
        try:
            if self.pidfd is not None:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def shutdown(self, mode: int | str) -> str:
        """Stop the child as OTP's shutdown spec says; reap it; return its exit reason."""
        if self.returncode is None:
            if mode == "brutal_kill":
                self.signal(signal.SIGKILL)
                self.wait(None)
            else:
                self.signal(signal.SIGTERM)
                if self.wait(None if mode == "infinity" else int(mode) / 1000.0) is None:
                    self.signal(signal.SIGKILL)
                    self.wait(None)
        reason = self.reason
        assert reason is not None
        return reason


def shutdown_many(children: Sequence[tuple[OsChild, int | str]]) -> list[str]:
    """Stop several children at once (simple_one_for_one): signal all, then wait them all.

    Each child keeps its own mode; the SIGKILL for a timed-out child comes at its own deadline.
    """
    now = time.monotonic()
    deadlines: list[float | None] = []
    for ch, mode in children:
        if mode == "brutal_kill":
            ch.signal(signal.SIGKILL)
            deadlines.append(None)
        else:
            ch.signal(signal.SIGTERM)
            deadlines.append(None if mode == "infinity" else now + int(mode) / 1000.0)
    out: list[str] = []
    for (ch, _mode), dl in zip(children, deadlines, strict=True):
        if ch.wait(None if dl is None else max(0.0, dl - time.monotonic())) is None:
            ch.signal(signal.SIGKILL)
            ch.wait(None)
        out.append(ch.reason or "killed")
    return out

