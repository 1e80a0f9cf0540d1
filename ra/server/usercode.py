"""No ra equivalent (the BEAM loads code per process and an exit in one kills only that one):
where user code named by import strings runs, and how its failures are told.

Contract:

* The node daemon and its fork server never import user code. A machine (``("module",
  "pkg.mod:Class", cfg)`` / ``("simple", "pkg.mod:func", init)``) is imported and built only
  in its server process (:func:`ra.server.proc.run`), which reports the outcome to its daemon
  before it opens anything: ``("$ra_loaded", name, pid)`` or ``("$ra_load_failed", name, pid,
  info)``, ``info`` from :func:`failure_info`. A load that does not report within the node's
  ``load_timeout_ms`` is killed by the daemon and recorded as failed.
* A ``log_children`` factory (a node env key, for tests) runs in a throwaway child forked by the
  daemon before it starts anything (:func:`call_in_child`): an exception, ``sys.exit()``,
  ``os._exit()`` or a hang there becomes ``InvalidConfig("log_children", ...)``, and the daemon
  carries on to report it.
* Every failure names what to do (:func:`importable_hint`).
"""
from __future__ import annotations

import io
import os
import pickle
import select
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any

from ra.errors import InvalidConfig

__all__ = ["describe", "failure_info", "importable_hint", "call_in_child"]

def importable_hint(what: str = "the machine's module", again: str = "the server") -> str:
    """What to do when user code does not load on a node."""
    return (f"{what} must be importable by the node's Python ({sys.executable}) and import "
            "without exiting or raising: check PYTHONPATH and the virtualenv the node daemon "
            f"runs in (its servers inherit both), then start {again} again; the traceback "
            "is in the node's log (node.log in its data dir)")


def describe(exc: BaseException) -> str:
    """One line for an exception raised while importing or building user code."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported or built"
    if isinstance(exc, KeyboardInterrupt):
        return "it was interrupted (KeyboardInterrupt) while being imported or built"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failure_info(spec: Any, exc: BaseException) -> dict[str, Any]:
    """What a server process reports when its machine ``spec`` did not load (a term)."""
    path = spec[1] if isinstance(spec, (tuple, list)) and len(spec) == 3 else spec
    return {"machine": list(spec) if isinstance(spec, (tuple, list)) else spec,
            "path": path, "reason": describe(exc), "kind": type(exc).__name__,
            "python": sys.executable, "pid": os.getpid()}


class _SpecUnpickler(pickle.Unpickler):
    """Unpickles only our own spec classes and builtins: the result of user code must not make
    the daemon import anything while it reads it."""

    _ALLOWED = ("builtins", "supervisor.spec", "collections")

    def find_class(self, module: str, name: str) -> Any:
        if module not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed here")
        return super().find_class(module, name)


def call_in_child(target: str, args: Sequence[Any], timeout: float, key: str) -> Any:
    """Call ``target(*args)`` (``"pkg.mod:func"``) in a forked child and return its result
    (child specs and plain data only). Call it only while this process has no other threads.

    Raises ``InvalidConfig(key, target, ...)`` when the import or the call raises, exits, kills
    its process or takes longer than ``timeout`` seconds (the child is then killed)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        code = 0
        try:
            from supervisor.forkserver import resolve_target
            data = pickle.dumps(("ok", resolve_target(target)(*args)))
        except BaseException as e:
            code = 1
            traceback.print_exc()
            data = pickle.dumps(("error", describe(e)))
        try:
            with io.FileIO(w, "w") as f:
                f.write(data)
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(w)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                timed_out = True
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    hint = importable_hint(f"{target!r}", "the node")
    if timed_out:
        raise InvalidConfig(key, target, f"it did not return within {timeout:g} s "
                                         f"(load_timeout_ms); {hint}")
    data = b"".join(chunks)
    if not data:
        raise InvalidConfig(key, target, f"its process died (exit status "
                                         f"{os.waitstatus_to_exitcode(status)}) while "
                                         f"importing or calling it; {hint}")
    try:
        kind, value = _SpecUnpickler(io.BytesIO(data)).load()
    except Exception as e:
        raise InvalidConfig(key, target, f"it returned something other than child specs "
                                         f"({describe(e)})") from None
    if kind != "ok":
        raise InvalidConfig(key, target, f"{value}; {hint}")
    return value
