"""Mirrors supervisor.erl: ordered start, exit handling, plans, escalation, reverse stop.

A :class:`Supervisor` is an object living in a :class:`supervisor.loop.Loop` (the node daemon's
single event loop). Its children are OS processes (:class:`~supervisor.spec.Exec`,
:class:`~supervisor.spec.Fork`) or nested supervisors (:class:`~supervisor.spec.Nested`), which
are objects in the same loop: escalation from a nested supervisor to its parent is a method call
scheduled on the loop, with no IPC in between.

Contracts (OTP's):

* :meth:`start` starts the children in list order. If one fails to start, the ones already
  started are terminated in reverse order and :class:`StartError` is raised.
* An exit is turned into a reason (:func:`supervisor.strategy.exit_reason`) and a pure plan
  (:func:`supervisor.strategy.plan_exit`), carried out in order. A restart that fails to start
  counts as another exit with reason ``start_error`` (OTP's ``try_again``), so a child that cannot
  start ends in escalation instead of a busy loop.
* Escalation (intensity exceeded) and auto_shutdown terminate every child in reverse start order;
  then the supervisor reports ``shutdown`` to its parent (as a child exit) or, at the top, calls
  ``on_exit(reason)``.
* :meth:`shutdown` terminates all children in reverse start order (simple_one_for_one: all at
  once), each with its own shutdown spec; it blocks the loop meanwhile, like OTP's supervisor.
* While the supervisor is stopping, child exits no longer cause restarts.
"""
from __future__ import annotations

import functools
import itertools
import os as _os
import pickle
import sys
import logging
import time
from dataclasses import dataclass
from collections.abc import Callable, Sequence
from typing import Any

from supervisor import strategy as _st
from supervisor.child import OsChild, shutdown_many
from supervisor.forkserver import ForkServer
from supervisor.loop import Loop
from supervisor.spec import (
    AlreadyPresent, ChildAlreadyStarted, ChildSpec, Exec, Fork, Nested, NotFound, Running,
    SimpleOneForOne, SupervisorError, SupFlags, check_childspec, check_childspecs, check_flags,
)

__all__ = ["Supervisor", "StartError", "ChildInfo"]

_log = logging.getLogger("supervisor")


class StartError(SupervisorError):
    """A child failed to start (OTP ``{shutdown, {failed_to_start_child, Id, Reason}}``)."""

    tag = "failed_to_start_child"


@dataclass(frozen=True)
class ChildInfo:
    """One row of :meth:`Supervisor.which_children`: ``pid`` is None when not running.

    For a nested supervisor ``pid`` is that of this process (it lives in the same loop).
    """

    id: Any
    pid: int | None
    type: str
    restart: str


class _Child:
    __slots__ = ("key", "spec", "proc", "sup", "extra")

    def __init__(self, key: Any, spec: ChildSpec, extra: tuple[Any, ...] = ()) -> None:
        self.key = key
        self.spec = spec
        self.proc: OsChild | None = None
        self.sup: Supervisor | None = None
        self.extra = extra

    @property
    def running(self) -> bool:
        return self.proc is not None or self.sup is not None

    def view(self) -> _st.ChildView:
        return _st.ChildView(self.key, self.spec.restart, self.running, self.spec.significant)


class Supervisor:
    """An OTP supervisor in an event loop.

    ``forkserver`` spawns :class:`Fork` children (without one they get a fresh interpreter).
    ``on_exit(reason)`` is called once when the supervisor stops by itself (escalation,
    auto_shutdown); nested supervisors report to their parent instead. ``clock`` is injectable
    for tests (monotonic seconds).
    """

    def __init__(self, loop: Loop, flags: SupFlags, children: Sequence[ChildSpec] = (),
                 *, name: Any = None, forkserver: ForkServer | None = None,
                 on_exit: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.loop = loop
        self.flags = check_flags(flags)
        self.name = name
        self.forkserver = forkserver
        self.on_exit = on_exit
        self.clock = clock
        self.restarts: tuple[float, ...] = ()
        self.stopped: str | None = None  # exit reason once stopped
        #: ``(child_id, reason)`` of the last child exit handled (what a SASL report would say)
        self.last_exit: tuple[Any, str] | None = None
        self._stopping = False
        self._children: list[_Child] = []
        #: the same children by key (None: a key is unhashable, so lookups scan the list); a
        #: node's server supervisor has a child per server, and it looks them up all the time
        self._by_key: dict[Any, _Child] | None = {}
        self._keys = itertools.count(1)
        specs = check_childspecs(children, self.flags.auto_shutdown)
        if self.flags.strategy == "simple_one_for_one":
            if len(specs) != 1:
                raise SupervisorError(len(specs), "simple_one_for_one needs exactly one spec")
            self._template: ChildSpec | None = specs[0]
        else:
            self._template = None
            self._children = [_Child(s.id, s) for s in specs]
            self._reindex()

    # ------------------------------------------------------------------ starting

    def start(self) -> Supervisor:
        """Start all children in order (simple_one_for_one: none). Raises StartError."""
        for ch in list(self._children):
            try:
                self._start(ch)
            except Exception as e:
                self._terminate_all()
                self.stopped = "shutdown"
                raise StartError((ch.key, repr(e)), "failed_to_start_child") from e
        return self

    def _start(self, ch: _Child) -> None:
        start = ch.spec.start
        if isinstance(start, Nested):
            key = ch.key
            sub = Supervisor(self.loop, start.flags, start.children, name=ch.key,
                             forkserver=self.forkserver, clock=self.clock,
                             on_exit=lambda reason: self.loop.call_soon(
                                 lambda: self._nested_exit(key, sub, reason)))
            sub.start()
            ch.sup = sub
            return
        if isinstance(start, Exec):
            argv = start.argv + tuple(str(a) for a in ch.extra)
            if self.forkserver is not None:  # fork in the single-threaded fork server
                env = None if start.env is None else dict(start.env)
                proc = OsChild(self.forkserver.spawn_exec(argv, env, start.cwd))
            else:
                proc = OsChild.exec(argv, start.env, start.cwd)
        elif isinstance(start, Fork):
            args = start.args + ch.extra
            if self.forkserver is not None:
                proc = OsChild(self.forkserver.spawn(start.target, args, start.env))
            else:
                code = ("import pickle,sys;from supervisor.forkserver import run_target;"
                        f"sys.exit(run_target({start.target!r}, "
                        f"pickle.loads({pickle.dumps(args)!r})))")
                env = dict(_os.environ, **start.env) if start.env else None
                proc = OsChild.exec([sys.executable, "-c", code], env)
        else:  # pragma: no cover - rejected by check_childspec
            raise SupervisorError(start, "invalid start")
        ch.proc = proc
        key = ch.key
        self.loop.watch(proc, lambda p: self._proc_exit(key, p))

    # ------------------------------------------------------------------ exits

    def _find(self, key: Any) -> _Child | None:
        if self._by_key is not None:
            try:
                return self._by_key.get(key)
            except TypeError:       # an unhashable key is no key of ours
                return None
        for ch in self._children:
            if ch.key == key:
                return ch
        return None

    def _reindex(self) -> None:
        try:
            self._by_key = {ch.key: ch for ch in self._children}
        except TypeError:
            self._by_key = None

    def _add(self, ch: _Child) -> None:
        self._children.append(ch)
        if self._by_key is not None:
            try:
                self._by_key[ch.key] = ch
            except TypeError:
                self._by_key = None

    def _drop(self, ch: _Child) -> None:
        self._children.remove(ch)
        if self._by_key is not None and self._by_key.get(ch.key) is ch:
            del self._by_key[ch.key]

    def _proc_exit(self, key: Any, proc: OsChild) -> None:
        ch = self._find(key)
        if ch is None or ch.proc is not proc:
            return
        ch.proc = None
        self._child_exited(ch, proc.reason or "killed")

    def _nested_exit(self, key: Any, sub: Supervisor, reason: str) -> None:
        ch = self._find(key)
        if ch is None or ch.sup is not sub:
            return
        ch.sup = None
        self._child_exited(ch, reason)

    def _child_exited(self, ch: _Child, reason: str) -> None:
        if self._stopping or self.stopped is not None:
            return
        if reason in ("normal", "shutdown"):
            _log.info("supervisor %s: child %r exited: %s", self.name, ch.key, reason)
        else:
            _log.warning("supervisor %s: child %r crashed: %s", self.name, ch.key, reason)
        self.last_exit = (ch.key, reason)
        decision = _st.plan_exit(
            self.flags.strategy, self.flags.intensity, self.flags.period,
            self.flags.auto_shutdown, [c.view() for c in self._children], ch.key, reason,
            self.restarts, self.clock())
        self.restarts = decision.restarts
        self._apply(decision.actions)

    def _apply(self, actions: Sequence[_st.Action]) -> None:
        for act in actions:
            if isinstance(act, (_st.Escalate, _st.AutoShutdown)):
                _log.warning("supervisor %s: %s, shutting down", self.name, type(act).__name__)
                self._stop(act.reason)
                return
            ch = self._find(act.id)
            if ch is None:
                continue
            if isinstance(act, _st.Terminate):
                self._terminate(ch)
            elif isinstance(act, _st.Remove):
                self._drop(ch)
            elif isinstance(act, _st.Restart):
                try:
                    self._start(ch)
                    _log.info("supervisor %s: restarted %r (pid %s)", self.name, ch.key,
                              self._pid_of(ch))
                except Exception as e:  # OTP try_again: count it as another exit
                    _log.warning("supervisor %s: restart of %r failed: %r", self.name, ch.key, e)
                    self.loop.call_soon(functools.partial(self._retry, ch))

    def _retry(self, ch: _Child) -> None:
        if ch in self._children and not ch.running:
            self._child_exited(ch, "start_error")

    def _stop(self, reason: str) -> None:
        self._terminate_all()
        self.stopped = reason
        if self.on_exit is not None:
            self.on_exit(reason)

    # ------------------------------------------------------------------ termination

    def _terminate(self, ch: _Child) -> str | None:
        """Stop one child per its shutdown spec (blocking); return its exit reason."""
        if ch.proc is not None:
            proc, ch.proc = ch.proc, None
            self.loop.unwatch(proc)
            return proc.shutdown(ch.spec.shutdown_value)
        if ch.sup is not None:
            sub, ch.sup = ch.sup, None
            sub.shutdown()
            return "shutdown"
        return None

    def _terminate_all(self) -> None:
        self._stopping = True
        try:
            if self.flags.strategy == "simple_one_for_one":
                procs = [c for c in self._children if c.proc is not None]
                for c in procs:
                    assert c.proc is not None
                    self.loop.unwatch(c.proc)
                shutdown_many([(c.proc, c.spec.shutdown_value) for c in procs if c.proc is not None])
                for c in procs:
                    c.proc = None
                self._children = [c for c in self._children if c.running]
                self._reindex()
            for ch in reversed(list(self._children)):
                self._terminate(ch)
        finally:
            self._stopping = False

    def shutdown(self, reason: str = "shutdown") -> None:
        """Terminate every child in reverse start order and mark the supervisor stopped."""
        if self.stopped is None:
            self._terminate_all()
            self.stopped = reason

    # ------------------------------------------------------------------ OTP API

    def _check_live(self) -> None:
        if self.stopped is not None:
            raise SupervisorError(self.name, f"supervisor stopped ({self.stopped})")

    def start_child(self, spec_or_args: ChildSpec | Sequence[Any]) -> int | None:
        """Add and start a child; return its pid (None for a nested supervisor).

        simple_one_for_one: pass the extra args (appended to the template's Fork args or Exec
        argv); the new child's id is its pid. Otherwise pass a ChildSpec; it is appended at the
        end of the start order. ``ChildAlreadyStarted`` / ``AlreadyPresent`` as OTP.
        """
        self._check_live()
        if self._template is not None:
            extra = tuple(spec_or_args)  # type: ignore[arg-type]
            ch = _Child(next(self._keys), self._template, extra)
            self._add(ch)
            try:
                self._start(ch)
            except Exception:
                self._drop(ch)
                raise
            assert ch.proc is not None
            return ch.proc.pid
        spec = check_childspec(spec_or_args, self.flags.auto_shutdown)
        old = self._find(spec.id)
        if old is not None:
            if old.running:
                raise ChildAlreadyStarted(self._pid_of(old))
            raise AlreadyPresent(spec.id)
        ch = _Child(spec.id, spec)
        self._add(ch)
        try:
            self._start(ch)
        except Exception:
            self._drop(ch)
            raise
        if ch.proc is not None:
            _log.info("supervisor %s: started %r (pid %s)", self.name, ch.key, ch.proc.pid)
        return self._pid_of(ch)

    def _find_sofo(self, ref: Any) -> _Child | None:
        for ch in self._children:
            if ch.key == ref or (ch.proc is not None and ch.proc.pid == ref):
                return ch
        return None

    def terminate_child(self, ref: Any) -> None:
        """Stop a child. Its spec is kept (restart_child restarts it) unless it is temporary;
        simple_one_for_one: ``ref`` is the pid and the child is removed. ``NotFound`` otherwise.
        """
        self._check_live()
        if self._template is not None:
            ch = self._find_sofo(ref)
            if ch is None:
                raise NotFound(ref)
            self._terminate(ch)
            self._drop(ch)
            return
        ch = self._find(ref)
        if ch is None:
            raise NotFound(ref)
        pid = ch.proc.pid if ch.proc is not None else None
        reason = self._terminate(ch)
        if pid is not None:
            _log.info("supervisor %s: stopped %r (pid %s): %s", self.name, ch.key, pid, reason)
        if ch.spec.restart == "temporary":
            self._drop(ch)

    def restart_child(self, child_id: Any) -> int | None:
        """Start a terminated child again; ``Running`` if it runs, ``NotFound`` if unknown."""
        ch = self._stopped_child(child_id)
        self._start(ch)
        return self._pid_of(ch)

    def delete_child(self, child_id: Any) -> None:
        """Forget a terminated child's spec; ``Running`` if it runs, ``NotFound`` if unknown."""
        self._drop(self._stopped_child(child_id))

    def _stopped_child(self, child_id: Any) -> _Child:
        """The terminated child ``child_id`` (restart_child/delete_child's precondition)."""
        self._check_live()
        if self._template is not None:
            raise SimpleOneForOne(child_id)
        ch = self._find(child_id)
        if ch is None:
            raise NotFound(child_id)
        if ch.running:
            raise Running(child_id)
        return ch

    def _pid_of(self, ch: _Child) -> int | None:
        if ch.proc is not None:
            return ch.proc.pid
        if ch.sup is not None:
            return _os.getpid()
        return None

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order (OTP lists newest first; we keep start order)."""
        return [ChildInfo(ch.key, self._pid_of(ch), ch.spec.type, ch.spec.restart)
                for ch in self._children]

    def count_children(self) -> dict[str, int]:
        """OTP's counts: ``specs``, ``active``, ``supervisors``, ``workers``."""
        kids = self._children
        return {
            "specs": 1 if self._template is not None else len(kids),
            "active": sum(1 for c in kids if c.running),
            "supervisors": sum(1 for c in kids if c.spec.type == "supervisor"),
            "workers": sum(1 for c in kids if c.spec.type == "worker"),
        }

    def has_child(self, child_id: Any) -> bool:
        """Whether ``child_id`` is one of the children (running or not): one lookup, where
        ``which_children`` lists them all."""
        return self._find(child_id) is not None

    def child(self, child_id: Any) -> Supervisor | None:
        """The nested supervisor object of child ``child_id`` while it runs, else None."""
        ch = self._find(child_id)
        return None if ch is None else ch.sup

    def pids(self) -> list[int]:
        """Pids of every running OS process under this supervisor (nested ones included)."""
        out: list[int] = []
        for ch in self._children:
            if ch.proc is not None:
                out.append(ch.proc.pid)
            elif ch.sup is not None:
                out.extend(ch.sup.pids())
        return out

    def __repr__(self) -> str:
        return f"<Supervisor {self.name!r} {self.flags.strategy} children={len(self._children)}>"

