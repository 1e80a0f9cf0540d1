"""Tiny child programs for the supervisor and node tests (run as Fork targets)."""
from __future__ import annotations

import os
import signal
import sys

__all__ = ["sleeper", "stubborn", "graceful", "exit_with", "logger", "env_is",
           "orphan_maker", "log_specs", "has_module", "shares_immortal"]


def sleeper() -> int:
    """Wait forever; SIGTERM kills it (default disposition)."""
    while True:
        signal.pause()


def stubborn() -> int:
    """Ignore SIGTERM; only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        signal.pause()


def graceful() -> int:
    """Exit 0 on SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def exit_with(code: int) -> int:
    """Exit at once with ``code``."""
    return int(code)


def logger(path: str, name: str) -> int:
    """Append ``start NAME`` to ``path``, and ``stop NAME`` when SIGTERM arrives, then exit 0."""
    def _stop(*_: object) -> None:
        with open(path, "a") as f:
            f.write(f"stop {name}\n")
        os._exit(0)

    signal.signal(signal.SIGTERM, _stop)
    with open(path, "a") as f:
        f.write(f"start {name}\n")
    while True:
        signal.pause()


def has_module(name: str) -> int:
    """Exit 0 if ``name`` was already imported when this child started (the fork server's
    preloads), else 3."""
    return 0 if name in sys.modules else 3


#: a preloaded module's global (a tuple: the collector does not track it)
SHARED = ("a constant of a preloaded module", 1.5)


def shares_immortal(module: str = __name__) -> int:
    """Exit 0 when what ``module`` (already imported by the fork server) holds is immortal in
    this child (its functions, their code and constants, its globals) and an object made here
    is not; 3 otherwise."""
    immortal = sys.getrefcount(None)
    mod = sys.modules[module]
    shared: list[object] = [mod, vars(mod)]
    for value in vars(mod).values():
        shared.append(value)
        code = getattr(value, "__code__", None)
        if code is not None:
            shared += [code, *(c for c in code.co_consts if c is not None)]
    mortal = [f"made here {os.getpid()}"]
    ok = all(sys.getrefcount(o) >= immortal for o in shared)
    return 0 if ok and sys.getrefcount(mortal) < immortal else 3


def env_is(key: str, value: str) -> int:
    """Exit 0 when the environment has ``key=value``, else 3."""
    return 0 if os.environ.get(key) == value else 3


def orphan_maker(path: str) -> int:
    """Fork a grandchild that outlives us by a moment (it exits when our pipe closes, i.e.
    once we are gone); write its pid to ``path``; exit 0."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # EOF when the parent has exited
        os._exit(0)
    os.close(r)
    with open(path, "w") as f:
        f.write(str(pid))
    return 0


def log_specs(config: dict) -> list:
    """A log_children factory for the node tests: two idle children standing in for the WAL
    and the segment writer (test-only; the real ones come from the wal package)."""
    from supervisor.spec import ChildSpec, Fork

    return [ChildSpec("wal", Fork(__name__ + ":sleeper"), shutdown=2000),
            ChildSpec("segment_writer", Fork(__name__ + ":sleeper"), shutdown=2000)]


def crashing_wal_specs(config: dict) -> list:
    """A log_children factory whose WAL (named as the real one, so the daemon waits for it)
    exits 1 at once, as a WAL that cannot open its file does."""
    from supervisor.spec import ChildSpec, Fork

    return [ChildSpec("ra_log_wal", Fork(__name__ + ":exit_with", (1,)), shutdown=2000),
            ChildSpec("ra_log_segment_writer", Fork(__name__ + ":sleeper"), shutdown=2000)]


def not_specs(config: dict) -> object:
    """A log_children factory that returns something other than child specs."""
    return {"wal": "here"}
