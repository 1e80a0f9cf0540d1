"""Local node daemons for the examples and the demo: start, SIGKILL, restart, stop, clean up.

Each daemon is a real ``ra`` node (:func:`ra.node.spawn_daemon`) with its own data directory under
one working directory, spawned with a *lifeline* (if this process dies, its daemons shut down).
Every pid of every daemon's process tree seen during the run is remembered, so that
:meth:`LocalNodes.close` can kill whatever is left and :meth:`LocalNodes.leftovers` can prove
that nothing is.
"""
from __future__ import annotations

import concurrent.futures
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any, Self

import psutil

import ra
from ra.node import spawn_daemon
from ra.testing.procs import living, signal_pids, tree_pids

__all__ = ["LocalNodes", "wait_for", "tree_pids"]


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.005) -> Any:
    """Poll ``cond`` until it returns a truthy value and return that value.

    ``ra.RaError`` raised by ``cond`` counts as "not yet". Raises ``TimeoutError`` naming
    ``what`` after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except ra.RaError as e:
            last = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}"
                               + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


class LocalNodes:
    """Node daemons ``n0``, ``n1``, ... under ``workdir`` (one data directory each).

    Use as a context manager: on exit every daemon still running is stopped, and anything left of
    their process trees is SIGKILLed.
    """

    def __init__(self, workdir: str, env: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        self.env = dict(env or {})
        self.procs: dict[int, Any] = {}
        self.addrs: dict[int, str] = {}
        self._lifelines: dict[int, int] = {}
        self.seen: dict[int, float] = {}     # pid -> create time

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- start / stop -----------------------------------------------------------------------
    def start(self, i: int) -> str:
        """Start daemon ``i`` (on its previous address if it ran before); returns its address."""
        env = dict(self.env, data_dir=os.path.join(self.workdir, f"n{i}"))
        if i in self.addrs:
            env["listen"] = self.addrs[i]
        addr, proc, lw = spawn_daemon(env, lifeline=True,
                                      log_path=os.path.join(self.workdir, f"n{i}.log"))
        self.procs[i], self.addrs[i] = proc, addr
        if lw is not None:
            self._lifelines[i] = lw
        self._remember(tree_pids(proc.pid))
        return addr

    def start_many(self, idx: Iterable[int]) -> list[str]:
        """Start several daemons at once; returns their addresses in order."""
        idx = list(idx)
        with concurrent.futures.ThreadPoolExecutor(len(idx)) as ex:
            return list(ex.map(self.start, idx))

    def kill(self, i: int) -> int:
        """SIGKILL daemon ``i`` and its whole process tree, as a machine crash would.

        Returns the number of processes killed."""
        proc = self.procs.pop(i)
        pids = tree_pids(proc.pid)
        self._remember(pids)
        signal_pids(pids)
        proc.wait()
        # the others were the daemon's children: orphaned now, they are reaped by whoever
        # adopts them, so wait only until none is still running (a zombie is dead enough)
        wait_for(lambda: not living(pids, self.seen), 5.0, f"node n{i}'s processes to die",
                 interval=0.002)
        self._close_lifeline(i)
        return len(pids)

    def stop(self, i: int, timeout: float = 30.0) -> None:
        """Orderly shutdown of daemon ``i`` (SIGTERM: servers, then the log, then the rest)."""
        proc = self.procs.pop(i)
        self._remember(tree_pids(proc.pid))
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout)
        self._close_lifeline(i)

    def stop_all(self) -> None:
        """Stop every running daemon, all at once."""
        idx = list(self.procs)
        if idx:
            with concurrent.futures.ThreadPoolExecutor(len(idx)) as ex:
                list(ex.map(self.stop, idx))

    def close(self) -> None:
        """Stop what still runs (orderly, then SIGKILL) and reap every process seen."""
        self.note_pids()
        try:
            self.stop_all()
        except Exception:   # cleanup must go on
            pass
        for p in self.leftovers():
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        for proc in self.procs.values():
            proc.wait()
        for i in list(self._lifelines):
            self._close_lifeline(i)
        psutil.wait_procs(self.leftovers(), timeout=5)

    def _close_lifeline(self, i: int) -> None:
        fd = self._lifelines.pop(i, None)
        if fd is not None:
            os.close(fd)

    # -- introspection ----------------------------------------------------------------------
    def sid(self, name: str, i: int) -> ra.ServerId:
        """The server id of cluster member ``name`` on node ``i``."""
        return ra.ServerId(name, self.addrs[i])

    def index_of(self, sid: ra.ServerId) -> int:
        """Which node ``sid`` lives on."""
        return next(i for i, a in self.addrs.items() if a == sid.node)

    def note_pids(self) -> set[int]:
        """Remember every process now in a running daemon's tree; returns the current set."""
        now: set[int] = set()
        for proc in list(self.procs.values()):
            now.update(tree_pids(proc.pid))
        self._remember(now)
        return now

    def _remember(self, pids: Iterable[int]) -> None:
        for pid in pids:
            if pid not in self.seen:
                try:
                    self.seen[pid] = psutil.Process(pid).create_time()
                except psutil.NoSuchProcess:
                    pass

    def leftovers(self) -> list[psutil.Process]:
        """Processes seen in this run that are still alive (zombies excluded)."""
        return living(self.seen, self.seen)
