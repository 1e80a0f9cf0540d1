"""No ra equivalent (Jepsen's db/os layer): the node daemons of one ``ra check`` run.

:class:`NodeSet` starts ``n`` node daemons (``ra.node.spawn_daemon``), one data directory each
under a working directory, optionally each through a command prefix (``ip netns exec NS`` puts it
in a network namespace) and on a host of its own. It kills a daemon's whole process tree
(SIGKILL, as a machine crash), restarts it on the **same** data directory and the **same**
listen address (so the node keeps its identity: server ids name the address), pauses and resumes
a tree (SIGSTOP / SIGCONT) and stops everything.

Contract: every pid of every daemon tree seen is remembered (with its start time, so that a
reused pid is not mistaken for ours); :meth:`NodeSet.close` resumes what is paused, stops what
runs (orderly, then SIGKILL) and waits until none of those processes is alive;
:meth:`NodeSet.leftovers` then proves it. Daemons are spawned with a lifeline: if the runner
dies, they shut down.
"""
from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence

import psutil

import ra
from ra.node import spawn_daemon
from ra.testing.procs import living, tree_pids

__all__ = ["NodeSet"]

_START_RETRY_S = 15.0


class NodeSet:
    """Node daemons ``n0..n{count-1}``.

    ``hosts[i]`` is the IP node ``i`` listens on (its port is picked at the first start and kept
    for every restart); ``prefix(i)`` is prepended to the daemon's command line. With
    ``listen_hosts``, node ``i`` binds ``listen_hosts[i]`` (e.g. ``0.0.0.0``) and advertises
    ``hosts[i]`` (the node config's ``advertise``).
    """

    def __init__(self, workdir: str, count: int, hosts: Sequence[str] | None = None,
                 prefix: Callable[[int], Sequence[str]] | None = None,
                 log_dir: str | None = None,
                 listen_hosts: Sequence[str] | None = None) -> None:
        self.workdir = workdir
        self.count = count
        self.hosts = list(hosts or ["127.0.0.1"] * count)
        self.listen_hosts = list(listen_hosts) if listen_hosts else None
        self.prefix = prefix or (lambda i: ())
        self.log_dir = log_dir or workdir
        self.addrs: dict[int, str] = {}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.paused: dict[int, list[int]] = {}
        self.seen: dict[int, float] = {}     # pid -> create time
        self._lifelines: dict[int, int] = {}

    # -- start / stop -----------------------------------------------------------------------
    def data_dir(self, i: int) -> str:
        return os.path.join(self.workdir, f"n{i}")

    def start(self, i: int) -> str:
        """Start daemon ``i`` (on its previous address if it ran before); returns the address.

        A restart right after a SIGKILL may find the port or the data directory lock not yet
        free: it is retried until it works or 15 s pass (then the last error is raised)."""
        listen = self.addrs.get(i, f"{self.hosts[i]}:0")
        env = {"data_dir": self.data_dir(i), "listen": listen}
        if self.listen_hosts is not None:      # bind there, known by hosts[i] and the port
            env = {"data_dir": self.data_dir(i), "advertise": f"{self.hosts[i]}:0",
                   "listen": f"{self.listen_hosts[i]}:{listen.rpartition(':')[2]}"}
        deadline = time.monotonic() + _START_RETRY_S
        while True:
            try:
                addr, proc, lw = spawn_daemon(env, lifeline=True, argv_prefix=self.prefix(i),
                                              log_path=os.path.join(self.log_dir, f"n{i}.log"))
                break
            except ra.RaError:
                if time.monotonic() >= deadline or i not in self.addrs:
                    raise
                time.sleep(0.1)   # the old tree's sockets/lock are being released: poll again
        self.procs[i], self.addrs[i] = proc, addr
        if lw is not None:
            self._lifelines[i] = lw
        self.note_pids()
        return addr

    def start_all(self) -> list[str]:
        """Start every daemon at once; returns their addresses in order."""
        with concurrent.futures.ThreadPoolExecutor(self.count) as ex:
            return list(ex.map(self.start, range(self.count)))

    def running(self, i: int) -> bool:
        return i in self.procs

    def kill(self, i: int) -> int:
        """SIGKILL daemon ``i``'s whole process tree and wait until none of it runs. Returns
        the number of processes killed."""
        proc = self.procs.pop(i)
        pids = self._signal_tree(proc.pid, signal.SIGKILL)
        self.paused.pop(i, None)
        proc.wait()
        _wait_dead(pids, self.seen, 10.0, f"node n{i}'s processes to die")
        self._close_lifeline(i)
        return len(pids)

    def restart(self, i: int) -> str:
        """Start a killed daemon again: same data directory, same address."""
        return self.start(i)

    def pause(self, i: int) -> int:
        """SIGSTOP daemon ``i``'s whole tree; returns the number of processes stopped."""
        pids = self._signal_tree(self.procs[i].pid, signal.SIGSTOP)
        self.paused[i] = pids
        return len(pids)

    def resume(self, i: int) -> None:
        """SIGCONT what :meth:`pause` stopped (and the current tree, in case it changed)."""
        pids = set(self.paused.pop(i, []))
        if i in self.procs:
            pids.update(tree_pids(self.procs[i].pid))
        for pid in pids:
            _signal(pid, signal.SIGCONT, self.seen)

    def stop_all(self, timeout: float = 20.0) -> None:
        """Orderly shutdown (SIGTERM) of every running daemon, all at once; a daemon that has
        not exited after ``timeout`` is left for :meth:`close` to kill."""
        for i in list(self.paused):
            self.resume(i)
        self.note_pids()
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for i, proc in list(self.procs.items()):
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                continue
            del self.procs[i]
            self._close_lifeline(i)

    def close(self) -> None:
        """Resume, stop, then SIGKILL whatever is left of every tree seen; wait until no
        process seen is alive (bounded: :meth:`leftovers` tells what, if anything, remains)."""
        try:
            self.stop_all()
        finally:
            for p in self.leftovers():
                _signal(p.pid, signal.SIGCONT, self.seen)
                _signal(p.pid, signal.SIGKILL, self.seen)
            for proc in self.procs.values():
                proc.kill()
                proc.wait()
            self.procs.clear()
            for i in list(self._lifelines):
                self._close_lifeline(i)
            psutil.wait_procs(self.leftovers(), timeout=10)

    # -- introspection ----------------------------------------------------------------------
    def note_pids(self) -> set[int]:
        """Remember every process now in a running daemon's tree; returns the current set."""
        now: set[int] = set()
        for proc in list(self.procs.values()):
            now.update(tree_pids(proc.pid))
        self._remember(now)
        return now

    def leftovers(self) -> list[psutil.Process]:
        """Processes seen in this run that are still alive (zombies excluded)."""
        return living(self.seen, self.seen)

    def _remember(self, pids: Iterable[int]) -> None:
        for pid in pids:
            if pid not in self.seen:
                try:
                    self.seen[pid] = psutil.Process(pid).create_time()
                except psutil.NoSuchProcess:
                    pass

    def _signal_tree(self, root: int, sig: int) -> list[int]:
        pids = tree_pids(root)
        self._remember(pids)
        for pid in pids:
            _signal(pid, sig, self.seen)
        return pids

    def _close_lifeline(self, i: int) -> None:
        fd = self._lifelines.pop(i, None)
        if fd is not None:
            os.close(fd)


def _signal(pid: int, sig: int, born: dict[int, float]) -> None:
    """Send ``sig`` to ``pid`` unless it is gone or is a different process now."""
    try:
        p = psutil.Process(pid)
        if pid in born and abs(p.create_time() - born[pid]) > 0.01:
            return
        p.send_signal(sig)
    except (psutil.NoSuchProcess, ProcessLookupError):
        pass


def _wait_dead(pids: list[int], born: dict[int, float], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while living(pids, born):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)
