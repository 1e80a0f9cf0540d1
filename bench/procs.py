"""No ra equivalent. Process hygiene for the W1–W6 benchmarks: every process a run starts is
tracked and its whole tree is killed with psutil at the end, on failure, and on ^C / SIGTERM.

:class:`Reaper` remembers root pids; :meth:`Reaper.kill_all` walks each root's descendants
(remembered ones too: a daemon's children outlive a SIGKILL of their parent for a moment),
SIGKILLs them and waits. :func:`kill_tree` does the same for one root.
"""
from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Self

import psutil

from ra.testing.procs import kill_tree, tree_pids

__all__ = ["as_deployed", "Reaper", "kill_tree", "tree_pids", "pct", "summary_ms", "progress", "wait_for",
           "closed_loop"]


def as_deployed() -> None:
    """Let the processes a benchmark starts cache their bytecode, as a deployment's do (an
    installed package's ``.pyc`` files exist). Under ``PYTHONDONTWRITEBYTECODE`` (set on the
    machines here) every server process compiled its machine module from source at its start:
    3-4 ms of its ~20 ms of start CPU, and more of a node restart's wait (session 10)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


class Reaper:
    """Tracks the roots of every process tree a benchmark starts and kills them all at the
    end. Usable as a context manager; installs SIGTERM/SIGINT handlers that clean up before
    the exception propagates."""

    def __init__(self) -> None:
        as_deployed()
        self.roots: list[int] = []
        self.seen: set[int] = set()
        self._old: dict[int, Any] = {}

    def add(self, pid: int) -> int:
        self.roots.append(pid)
        self.seen.add(pid)
        return pid

    def snapshot(self) -> None:
        """Remember every descendant of every root seen so far (so that children of a root
        killed later are still found)."""
        for r in list(self.roots):
            self.seen.update(tree_pids(r))

    def kill_all(self) -> None:
        self.snapshot()
        for r in list(self.roots):
            kill_tree(r)
        left = []
        for pid in self.seen:
            try:
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
                left.append(p)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=5)
        self.roots.clear()

    def __enter__(self) -> Self:
        if _is_main_thread():
            for s in (signal.SIGTERM,):
                self._old[s] = signal.signal(s, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.kill_all()
        finally:
            for s, h in self._old.items():
                signal.signal(s, h)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")


def _is_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def pct(xs: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``xs``."""
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def summary_ms(lat: list[float]) -> dict[str, float]:
    """p50/p99/mean of latencies in seconds, in milliseconds."""
    if not lat:
        return {"p50": float("nan"), "p99": float("nan"), "mean": float("nan")}
    return {"p50": pct(lat, 0.5) * 1e3, "p99": pct(lat, 0.99) * 1e3,
            "mean": statistics.fmean(lat) * 1e3}


def progress(side: str, msg: str) -> None:
    """One progress line on stdout, flushed."""
    print(f"   [{side}] {msg}", flush=True)
    sys.stdout.flush()


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll ``cond`` until truthy (exceptions count as not yet); raise after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # polling a system that is starting
            last = e
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                       + (f" (last error: {last!r})" if last else ""))


def closed_loop(n: int, secs: float, op: Callable[[int], Any],
                errors: tuple[type[BaseException], ...] = (Exception,)
                ) -> tuple[list[float], int]:
    """W2's load, the same on both sides: ``n`` threads call ``op(k)`` back to back for
    ``secs`` seconds (all starting together); returns every call's latency and the number of
    calls that raised one of ``errors``."""
    import threading
    lats: list[list[float]] = [[] for _ in range(n)]
    errs = [0] * n
    t_start = time.monotonic() + 0.2
    t_end = t_start + secs

    def work(k: int) -> None:
        while time.monotonic() < t_start:
            time.sleep(0.001)
        while True:
            t0 = time.monotonic()
            if t0 >= t_end:
                return
            try:
                op(k)
                lats[k].append(time.monotonic() - t0)
            except errors:
                errs[k] += 1
    ths = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(n)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(secs + 30)
    return [x for xs in lats for x in xs], sum(errs)
