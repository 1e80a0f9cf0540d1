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

* Memory: what a child touches of the shared pages is copied, so every import a child still
  makes costs it private memory (the import system itself writes to many shared objects: an
  import of a small module after the fork costs a child ~1 MB). Hence :meth:`ForkServer.import_more`:
  modules learned later (a node learns its servers' machine modules) are imported in the fork
  server, once, and frozen with the rest. Before it forks, the fork server also fills the holes
  of its small-object pools (:func:`fill_pool_holes`), so that a child's new objects land on
  fresh pages instead of copying shared ones. On CPython 3.11 most of what a child still copies
  are pages on which it changed a few reference counts (``bench/density.py --detail``); from
  3.12 on the fork server makes what it preloaded immortal (:func:`immortalize`), so that a
  child's reference counting no longer writes to those pages.

Wire protocol on the socketpair (pickle; both ends are our own code): first, from the supervisor,
the list of ``(target, args)`` *init* calls the fork server runs in itself after its preloads (how
a secret reaches every child in memory, never through an environment or a command line); then
request ``(target, args, env)`` (``target=None``: exec ``args = (argv, cwd)``), answer ``("ok", pid)`` or
``("error", text)``; or ``(IMPORT, modules, None)``, answer ``("ok", imported)`` (the modules that
imported) or ``("error", text)`` after which the fork server exits (an import started a thread:
forking from a threaded process is unsafe).
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
import types
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ForkServer", "run_target", "resolve_target", "fill_pool_holes", "immortalize"]

_CLONE_PARENT = 0x00008000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}
_MAX_MSG = 1 << 20
# -c rather than -m: supervisor/__init__ imports this module, and runpy warns about that
_BOOT = "import sys; from supervisor.forkserver import _main; sys.exit(_main(sys.argv[1:]))"
_IMPORT = "$import"          # the request target of import_more
_WINDOW = 32                 # prefork: requests in flight (answers must not fill the socket)


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


_CLONE: list[Any] = []      # (syscall, its arguments, before, after in child, after in parent)


def _clone_parent() -> int:
    """``fork()`` whose child has our parent as its parent (CLONE_PARENT). Returns 0 in child.

    Its ctypes objects are made once: what the fork server allocates or writes between two
    forks lands on pages the child it forked last then owns alone (memory per child)."""
    if not _CLONE:
        libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held across the call
        libc.syscall.restype = ctypes.c_long
        zero = ctypes.c_long(0)
        args = (ctypes.c_long(_SYS_CLONE[platform.machine()]),
                ctypes.c_long(_CLONE_PARENT | signal.SIGCHLD), zero, zero, zero, zero)
        api = ctypes.pythonapi
        _CLONE[:] = [libc.syscall, args, api.PyOS_BeforeFork, api.PyOS_AfterFork_Child,
                     api.PyOS_AfterFork_Parent]
    syscall, args, before, after_child, after_parent = _CLONE
    before()
    pid = syscall(*args)
    if pid == 0:
        after_child()
        return 0
    err = ctypes.get_errno()
    after_parent()
    if pid < 0:
        raise OSError(err, os.strerror(err))
    return int(pid)


def _import_quietly(modules: Sequence[str]) -> list[str]:
    """Import ``modules`` here and return those that imported (any exception, ``SystemExit``
    included, leaves a module out), then freeze what exists (see :func:`_main`)."""
    done = []
    for mod in modules:
        try:
            importlib.import_module(mod)
            done.append(mod)
        except BaseException:
            pass
    _settle()
    return done


def _settle() -> None:
    """Before the next fork: what exists now is shared with every child, so collect, make it
    immortal (the walk's own garbage goes first, so the fill covers its holes too), fill the
    allocator's holes, and park it in the permanent generation: the children's collector then
    never walks (and so never copies-on-write) the pages they share with us."""
    gc.collect()
    immortalize()
    fill_pool_holes()
    gc.freeze()


def _immortal_word() -> int | None:
    """The reference count word CPython stores in an immortal object (that of ``None``), or
    ``None`` where objects cannot be made immortal this way: before 3.12 (no immortal objects),
    after 3.13 (another layout, not checked) and in free-threaded builds (split counts)."""
    if sys.implementation.name != "cpython" or not (3, 12) <= sys.version_info[:2] <= (3, 13):
        return None
    if getattr(sys, "_is_gil_enabled", lambda: True)() is False:
        return None
    return ctypes.c_ssize_t.from_address(id(None)).value


def immortalize() -> int:
    """Make every object reachable from the collector's objects and the loaded modules immortal
    (CPython 3.12-3.13, GIL build; elsewhere a no-op); returns how many it changed.

    Why: a forked child that merely uses a shared object (calls a function, reads a constant,
    looks up a global) writes its reference count, and that copies the object's page: on 3.11
    that was 3.4 MB of a 5 MB idle server. An immortal object's count is never written (PEP
    683), so those pages stay shared. The price is that these objects are never freed, which
    is what a fork server's preloads are for anyway; an object a child drops later stays
    allocated in the pages it shares. Objects with a finalizer that matters (an open file or
    socket closed by losing its last reference) must therefore be closed explicitly, as ours
    are. Frames are left alone (the running code's own). Code objects are walked by hand: the
    collector does not traverse them, and their constants and names are what running code
    touches most. Allocates only a work list, and marks as it goes (an immortal object is
    not visited twice): no set of visited objects whose freeing would leave holes in the
    heap that children then fill page by page."""
    word = _immortal_word()
    if word is None:
        return 0
    mark = ctypes.c_ssize_t.from_address
    refcount, referents = sys.getrefcount, gc.get_referents
    immortal = sys.getrefcount(None)
    frame_t, code_t = types.FrameType, types.CodeType
    todo: list[Any] = gc.get_objects()
    todo.extend(sys.modules.values())
    pop, extend = todo.pop, todo.extend
    changed = 0
    while todo:
        obj = pop()
        if refcount(obj) >= immortal:
            continue
        kind = type(obj)
        if kind is frame_t:
            continue
        mark(id(obj)).value = word
        changed += 1
        if kind is code_t:
            extend(obj.co_consts)
            extend(obj.co_names)
            extend((obj.co_filename, obj.co_name, obj.co_qualname, obj.co_linetable,
                    obj.co_exceptiontable))
        extend(referents(obj))
    return changed


#: objects that only fill the allocator's holes (:func:`fill_pool_holes`); never read
_FILLERS: list[list[Any]] = []


def fill_pool_holes(rounds: int = 3) -> int:
    """Fill the free blocks of this process's partly used small-object pools with objects kept
    for good; returns how many. CPython (pymalloc) serves a small allocation from a partly
    used pool first: a forked child's first allocations would land in the holes that imports
    and ``gc.collect()`` left all over the shared heap, and copy each of those pages
    (issue 17: about 0.1 MB per server). Filled, they come from fresh pools: dense, fewer
    pages. The fillers are never touched again, so they stay shared. Reads the pool figures
    from ``sys._debugmallocstats()`` (CPython only; elsewhere, or if its format changes,
    nothing is done)."""
    stats = getattr(sys, "_debugmallocstats", None)
    filled = 0
    for _ in range(rounds if stats is not None else 0):
        holes = {size: n for size, n in _pool_holes(stats).items() if n}
        if not holes:
            break
        for size, n in holes.items():
            keep: list[Any] = [None] * n      # allocated before the fillers: no new hole
            for i in range(n):
                # one block of exactly that size class (16-byte classes): object() is 16
                # bytes, a float 24, bytes(k) 33 + k
                keep[i] = object() if size <= 16 else i + 0.5 if size <= 32 \
                    else bytes(size - 33)
            _FILLERS.append(keep)
            filled += n
    return filled


def _pool_holes(stats: Any) -> dict[int, int]:
    """Free blocks in partly used pools, by block size, from ``sys._debugmallocstats()``
    (which writes to the C stderr: captured through a temporary file on fd 2)."""
    import tempfile
    with tempfile.TemporaryFile() as f:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(f.fileno(), 2)
        try:
            stats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        text = f.read().decode(errors="replace")
    out = {}
    for line in text.splitlines():   # "class size num_pools blocks_in_use avail_blocks"
        parts = line.split()
        if len(parts) == 5 and all(p.isdigit() for p in parts):
            out[int(parts[1])] = int(parts[4])
    return out


def _threads() -> int:
    """Threads of this process, C-level ones included (a library may start one at import)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def _serve(sock: socket.socket, supervisor_pid: int) -> None:
    """Fork server loop: one request, one clone (or import), one answer; ends on EOF."""
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
            if target == _IMPORT:
                done = _import_quietly(args)
                if _threads() > 1:
                    why = f"importing {list(args)} started a thread: the fork server exits"
                    sock.send(pickle.dumps(("error", why)))
                    return
                sock.send(pickle.dumps(("ok", done)))
                continue
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
    _settle()
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
    ``imported``: the modules :meth:`import_more` added, imported again (failures tolerated)
    when the fork server is restarted.
    """

    def __init__(self, preload: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 init: Sequence[tuple[str, Sequence[Any]]] = ()) -> None:
        self.preload = list(preload)
        self.init = [(t, tuple(a)) for t, a in init]
        self.env = dict(env) if env else None
        self.child: Any = None  # supervisor.child.OsChild of the fork server
        self._sock: socket.socket | None = None
        self._starting: socket.socket | None = None   # started, preloads not yet confirmed
        self.imported: list[str] = []
        self._preforked: dict[bytes, list[int]] = {}   # request -> pids forked by prefork

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
        init = list(self.init)
        if self.imported:
            init.append(("supervisor.forkserver:_import_quietly", (tuple(self.imported),)))
        try:
            mine.send(pickle.dumps(init))
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
        """Start ``target(*args)`` in a new child of *this* process; return its pid (one that
        :meth:`prefork` already started for the same request, if any)."""
        req = pickle.dumps((target, tuple(args), dict(env) if env else None))
        pids = self._preforked.get(req)
        if pids:
            pid = pids.pop(0)
            if not pids:
                del self._preforked[req]
            return pid
        self.wait_ready()
        if not self.alive() or self._sock is None:
            self.start()
        assert self._sock is not None
        self._sock.send(req)
        data = self._sock.recv(_MAX_MSG)
        if not data:
            self.stop()
            raise RuntimeError("fork server died during a spawn")
        kind, value = pickle.loads(data)
        if kind != "ok":
            raise RuntimeError(f"fork server could not spawn {target}: {value}")
        return int(value)

    def import_more(self, modules: Sequence[str], timeout: float = 10.0) -> list[str]:
        """Import ``modules`` in the running fork server, so that every later child shares them
        instead of importing them itself (a child's private memory: see the module docstring).
        Returns those that imported; the others are left out, as they are from later restarts.

        The fork server runs the imports: give it only modules known to import cleanly (a node
        gives the machine modules that already loaded in one of its servers). An import that
        takes longer than ``timeout`` s, or that starts a thread, costs the fork server: it is
        stopped and started again without that module at the next spawn.
        """
        mods = [m for m in modules if m not in self.imported and m not in self.preload]
        if not mods:
            return []
        self.wait_ready()
        if not self.alive() or self._sock is None:
            self.start()
        assert self._sock is not None
        sock = self._sock
        sock.send(pickle.dumps((_IMPORT, tuple(mods), None)))
        sock.settimeout(timeout)
        try:
            data = sock.recv(_MAX_MSG)
        except TimeoutError:
            data = b""
        finally:
            if self._sock is sock:
                sock.settimeout(None)
        kind, value = pickle.loads(data) if data else ("error", "no answer")
        if kind != "ok":
            self.stop()
            return []
        done = [str(m) for m in value]
        self.imported += done
        return done

    def prefork(self, requests: Sequence[tuple[str, Sequence[Any], Mapping[str, str] | None]]
                ) -> int:
        """Start many children at once: the requests (``(target, args, env)``, as
        :meth:`spawn` takes them) are sent in windows, so that the fork server forks them back
        to back instead of waiting for one round trip (two wake-ups, on a busy machine each a
        wait for a CPU) per child. A later :meth:`spawn` of the same request returns its pid.

        The children run at once and are children of this process: the caller must take
        them (:meth:`spawn`) before it reaps any child, and then call :meth:`drop_preforked`
        for those it did not take. A request the fork server refuses is left to its
        :meth:`spawn`. Returns how many children were started.
        """
        reqs = [pickle.dumps((t, tuple(a), dict(e) if e else None)) for t, a, e in requests]
        self.wait_ready()
        if not self.alive() or self._sock is None:
            self.start()
        assert self._sock is not None
        started = 0
        for i in range(0, len(reqs), _WINDOW):
            window = reqs[i:i + _WINDOW]
            for req in window:
                self._sock.send(req)
            for req in window:
                data = self._sock.recv(_MAX_MSG)
                if not data:
                    self.stop()
                    return started
                kind, value = pickle.loads(data)
                if kind == "ok":
                    self._preforked.setdefault(req, []).append(int(value))
                    started += 1
        return started

    def drop_preforked(self) -> None:
        """Kill and reap the children :meth:`prefork` started that no :meth:`spawn` took."""
        pids = [p for ps in self._preforked.values() for p in ps]
        self._preforked.clear()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass

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

