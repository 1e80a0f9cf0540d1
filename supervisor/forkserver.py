"""No ra equivalent: a fork server, for cheap child processes from a preloaded interpreter.

Design (why exit codes still reach the supervisor):

* The supervising process (the node daemon) starts the fork server as an ordinary child
  (fork + exec of a fresh interpreter running :func:`_main`). The fork server imports the preload
  modules, holds **no ZeroMQ context** and no threads, and waits for requests on a
  ``SOCK_SEQPACKET`` socketpair.
* For each request it calls ``clone(CLONE_PARENT | SIGCHLD)`` (raw syscall via ctypes, wrapped in
  ``PyOS_BeforeFork``/``PyOS_AfterFork_*`` exactly as ``os.fork`` does). ``CLONE_PARENT`` makes
  the new process a child of the *supervisor*, not of the fork server: the supervisor gets
  SIGCHLD, can open a pidfd, ``waitpid`` it and read the true exit status, with no double fork and
  no intermediate process. The fork server never reaps these children.
* The new child arms ``PR_SET_PDEATHSIG=SIGKILL`` (its parent being the supervisor) and checks
  ``getppid()`` against the race, so a ``kill -9`` of the supervisor leaves no orphan. The fork
  server itself has the same parent-death signal.
* Children inherit the preloaded modules copy-on-write, so a spawn costs a clone plus the target's
  own start-up instead of a fresh interpreter and its imports.

Wire protocol on the socketpair (pickle; both ends are our own code): first, from the supervisor,
the list of ``(target, args)`` *init* calls the fork server runs in itself after its preloads (how
a secret reaches every child in memory, never through an environment or a command line); then
request ``(target, args, env)`` (``target=None``: exec ``args = (argv, cwd)``), answer ``("ok", pid)`` or
``("error", text)``.
"""
from __future__ import annotations

import ctypes
import gc
import importlib
import logging
import os
import pickle
import platform
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ForkServer", "run_target", "resolve_target"]

_CLONE_PARENT = 0x00008000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}
_MAX_MSG = 1 << 20
# -c rather than -m: supervisor/__init__ imports this module, and runpy warns about that
_BOOT = "import sys; from supervisor.forkserver import _main; sys.exit(_main(sys.argv[1:]))"


def resolve_target(target: str) -> Any:
    """Import ``"pkg.mod:func"`` and return the function."""
    mod, _, fn = target.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in fn.split("."):
        obj = getattr(obj, part)
    return obj


def run_target(target: str, args: Sequence[Any]) -> int:
    """Run a Fork target as the body of a child process and return its exit code.

    Code: the function's int return value, 0 for any other return value, the code of a
    ``SystemExit``, 1 when it raises (the traceback is logged, logger ``supervisor.forkserver``;
    to stderr where logging is not set up).
    """
    try:
        rv = resolve_target(target)(*args)
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException:
        # a record, so that it has a time and lands in the node's log like every other line
        logging.getLogger("supervisor.forkserver").exception("child target %s raised", target)
        return 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass


def _clone_parent() -> int:
    """``fork()`` whose child has our parent as its parent (CLONE_PARENT). Returns 0 in child."""
    libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across the call
    libc.syscall.restype = ctypes.c_long
    nr = _SYS_CLONE[platform.machine()]
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    zero = ctypes.c_long(0)
    pid = libc.syscall(ctypes.c_long(nr), ctypes.c_long(_CLONE_PARENT | signal.SIGCHLD),
                       zero, zero, zero, zero)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, os.strerror(err))
    return int(pid)


def _serve(sock: socket.socket, supervisor_pid: int) -> None:
    """Fork server loop: one request, one clone, one answer; ends on EOF."""
    from supervisor.child import child_setup

    while True:
        try:
            data = sock.recv(_MAX_MSG)
        except InterruptedError:
            continue
        if not data:
            return
        try:
            target, args, env = pickle.loads(data)
            pid = _clone_parent()
        except BaseException as e:  # bad request or clone failure: answer, keep serving
            sock.send(pickle.dumps(("error", f"{type(e).__name__}: {e}")))
            continue
        if pid == 0:  # pragma: no cover - the new child
            code = 1
            try:
                sock.close()
                child_setup(supervisor_pid)
                for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(s, signal.SIG_DFL)
                if target is None:  # exec a program: args = (argv, cwd), env complete
                    code = 127  # if the exec below fails
                    argv, cwd = args
                    if cwd:
                        os.chdir(cwd)
                    os.execvpe(argv[0], list(argv), dict(os.environ) if env is None else env)
                if env:
                    os.environ.update(env)
                code = run_target(target, args)
            finally:
                os._exit(code)
        sock.send(pickle.dumps(("ok", pid)))


def _main(argv: Sequence[str]) -> int:
    """Entry point: ``python -c _BOOT FD SUPERVISOR_PID [PRELOAD...]``."""
    fd, sup_pid = int(argv[0]), int(argv[1])
    from supervisor.child import child_setup

    child_setup(sup_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal ^C goes to the daemon only
    sock = socket.socket(fileno=fd)
    init = pickle.loads(sock.recv(_MAX_MSG))     # sent right after our exec
    for mod in argv[2:]:
        importlib.import_module(mod)
    for target, args in init:
        resolve_target(target)(*args)
    # Park the preloaded objects in the permanent generation: the children's collector then
    # never walks (and so never copies-on-write) the pages they share with us.
    gc.collect()
    gc.freeze()
    sock.send(pickle.dumps(("ready", os.getpid())))
    _serve(sock, sup_pid)
    return 0


class ForkServer:
    """Client end, used by the supervising process. Not thread-safe; one request at a time.

    ``start()`` launches the server (and is called again lazily by :meth:`spawn` when it died).
    ``spawn`` returns the pid of a new *direct child of this process*. ``init``: calls
    ``(target, args)`` the fork server makes in itself after its preloads, so that every child
    inherits their effect (the node daemon pins its secret this way); they travel over the
    private socketpair, and are made again when the fork server is restarted.
    """

    def __init__(self, preload: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 init: Sequence[tuple[str, Sequence[Any]]] = ()) -> None:
        self.preload = list(preload)
        self.init = [(t, tuple(a)) for t, a in init]
        self.env = dict(env) if env else None
        self.child: Any = None  # supervisor.child.OsChild of the fork server
        self._sock: socket.socket | None = None
        self._starting: socket.socket | None = None   # started, preloads not yet confirmed

    @property
    def pid(self) -> int | None:
        """Pid of the running fork server, or None."""
        return None if self.child is None else self.child.pid

    def alive(self) -> bool:
        """True while the fork server runs (reaps it when it has exited)."""
        return self.child is not None and self.child.reap() is None

    def start(self, wait: bool = True) -> None:
        """Start the fork server and wait until its preloads are imported. With
        ``wait=False`` return at once (the caller does its own start-up meanwhile) and call
        :meth:`wait_ready` before the first spawn."""
        from supervisor.child import OsChild

        self.stop()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-c", _BOOT, str(theirs.fileno()), str(os.getpid()),
                *self.preload]
        try:
            self.child = OsChild.exec(argv, env=self.env, pass_fds=[theirs.fileno()])
        finally:
            theirs.close()
        try:
            mine.send(pickle.dumps(self.init))
        except OSError:
            pass            # it died at once: wait_ready reports the failure
        self._starting = mine
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        """Block until a fork server started with ``start(wait=False)`` has imported its
        preloads. Raises RuntimeError if it failed."""
        mine = self._starting
        if mine is None:
            return
        self._starting = None
        msg = mine.recv(_MAX_MSG)
        if not msg:
            self.child.wait(None)
            self.child = None
            mine.close()
            raise RuntimeError("fork server failed to start (preload import error?)")
        self._sock = mine

    def spawn(self, target: str, args: Sequence[Any] = (),
              env: Mapping[str, str] | None = None) -> int:
        """Start ``target(*args)`` in a new child of *this* process; return its pid."""
        self.wait_ready()
        if not self.alive() or self._sock is None:
            self.start()
        assert self._sock is not None
        self._sock.send(pickle.dumps((target, tuple(args), dict(env) if env else None)))
        data = self._sock.recv(_MAX_MSG)
        if not data:
            self.stop()
            raise RuntimeError("fork server died during a spawn")
        kind, value = pickle.loads(data)
        if kind != "ok":
            raise RuntimeError(f"fork server could not spawn {target}: {value}")
        return int(value)

    def spawn_exec(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
                   cwd: str | None = None) -> int:
        """Start a program as a new child of *this* process, exec'd from the fork server.

        The fork happens in the single-threaded fork server, never in this (possibly
        multi-threaded) process. ``env`` is the complete environment (None: the fork server's).
        Exec failure exits the child with code 127.
        """
        self.wait_ready()
        if not self.alive() or self._sock is None:
            self.start()
        assert self._sock is not None
        self._sock.send(pickle.dumps((None, (tuple(argv), cwd), dict(env) if env else None)))
        data = self._sock.recv(_MAX_MSG)
        if not data:
            self.stop()
            raise RuntimeError("fork server died during a spawn")
        kind, value = pickle.loads(data)
        if kind != "ok":
            raise RuntimeError(f"fork server could not exec {argv[0]}: {value}")
        return int(value)

    def stop(self) -> None:
        """Stop the fork server (closing its socket ends it; SIGKILL after 1 s)."""
        if self._starting is not None:
            self._starting.close()
            self._starting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.child is not None:
            if self.child.wait(1.0) is None:
                self.child.shutdown("brutal_kill")
            self.child = None

