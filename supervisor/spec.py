"""Mirrors supervisor.erl (child_spec, sup_flags, check_childspecs): specs and flags.

Pure data and validation: no OS work. OTP defaults are kept:

* ``SupFlags(strategy="one_for_one", intensity=1, period=5, auto_shutdown="never")``;
* ``ChildSpec(restart="permanent", type="worker", significant=False)`` and ``shutdown``
  defaulting to ``5000`` ms for a worker and ``"infinity"`` for a supervisor.

A child's ``start`` says how it is started (OTP's ``{M, F, A}``):

* :class:`Exec` -- a fresh program (``argv``), spawned with ``posix_spawn`` through a tiny
  bootstrap that arms the parent-death signal before the program runs;
* :class:`Fork` -- ``"pkg.mod:func"`` called with ``args`` in a process forked from a preloaded
  fork server (falls back to a fresh interpreter when the supervisor has no fork server);
* :class:`Nested` -- a nested supervisor (``type="supervisor"``) living in the same event loop.

Validation errors are named after OTP's tags (``invalid_restart_type`` -> ``InvalidRestartType``)
and carry ``tag`` and ``value``. Their base :class:`SupervisorError` derives from
:class:`raerror.RaError`, a leaf below every package (see its docstring), so that ``except
ra.RaError`` catches them while this package imports nothing of ``ra``.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from raerror import RaError

__all__ = [
    "Exec",
    "Fork",
    "Nested",
    "Start",
    "ChildSpec",
    "SupFlags",
    "check_childspec",
    "check_childspecs",
    "check_flags",
    "SupervisorError",
    "InvalidChildSpec",
    "MissingId",
    "MissingStart",
    "InvalidMfa",
    "InvalidRestartType",
    "InvalidShutdown",
    "InvalidChildType",
    "InvalidSignificant",
    "DuplicateChildName",
    "BadCombination",
    "InvalidStrategy",
    "InvalidIntensity",
    "InvalidPeriod",
    "InvalidAutoShutdown",
    "NotFound",
    "Running",
    "Restarting",
    "SimpleOneForOne",
    "AlreadyPresent",
    "ChildAlreadyStarted",
    "RESTART_TYPES",
    "STRATEGIES",
    "AUTO_SHUTDOWNS",
    "CHILD_TYPES",
]

RestartType = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one"]
AutoShutdown = Literal["never", "any_significant", "all_significant"]
ChildType = Literal["worker", "supervisor"]
Shutdown = int | Literal["brutal_kill", "infinity"]

RESTART_TYPES: tuple[str, ...] = ("permanent", "transient", "temporary")
STRATEGIES: tuple[str, ...] = ("one_for_one", "one_for_all", "rest_for_one", "simple_one_for_one")
AUTO_SHUTDOWNS: tuple[str, ...] = ("never", "any_significant", "all_significant")
CHILD_TYPES: tuple[str, ...] = ("worker", "supervisor")


# --------------------------------------------------------------------------- errors

class SupervisorError(RaError):
    """Base of supervisor errors. ``tag`` is OTP's error atom, ``value`` the offending term."""

    tag = "supervisor_error"

    def __init__(self, value: Any = None, detail: str = "") -> None:
        msg = f"{self.tag}: {value!r}" + (f" ({detail})" if detail else "")
        super().__init__(msg)
        self.value = value


class InvalidChildSpec(SupervisorError):
    """The child spec is not a :class:`ChildSpec` at all."""
    tag = "invalid_child_spec"


class MissingId(SupervisorError):
    """The child spec has no id."""
    tag = "missing_id"


class MissingStart(SupervisorError):
    """The child spec has no start."""
    tag = "missing_start"


class InvalidMfa(SupervisorError):
    """``start`` is not an Exec, Fork or Nested (OTP: ``invalid_mfa``)."""
    tag = "invalid_mfa"


class InvalidRestartType(SupervisorError):
    """``restart`` is not permanent, transient or temporary."""
    tag = "invalid_restart_type"


class InvalidShutdown(SupervisorError):
    """``shutdown`` is not ``brutal_kill``, ``infinity`` or a non-negative integer (ms)."""
    tag = "invalid_shutdown"


class InvalidChildType(SupervisorError):
    """``type`` is not worker or supervisor (or disagrees with ``start``)."""
    tag = "invalid_child_type"


class InvalidSignificant(SupervisorError):
    """``significant`` is not a bool."""
    tag = "invalid_significant"


class DuplicateChildName(SupervisorError):
    """Two children share an id."""
    tag = "duplicate_child_name"


class BadCombination(SupervisorError):
    """A combination OTP forbids (permanent + significant; auto_shutdown=never + significant)."""
    tag = "bad_combination"


class InvalidStrategy(SupervisorError):
    """The strategy is not one of :data:`STRATEGIES`."""
    tag = "invalid_strategy"


class InvalidIntensity(SupervisorError):
    """The intensity is not a non-negative integer."""
    tag = "invalid_intensity"


class InvalidPeriod(SupervisorError):
    """The period is not a positive number of seconds."""
    tag = "invalid_period"


class InvalidAutoShutdown(SupervisorError):
    """auto_shutdown is not never, any_significant or all_significant."""
    tag = "invalid_auto_shutdown"


class NotFound(SupervisorError):
    """No child with that id (or pid for simple_one_for_one)."""
    tag = "not_found"


class Running(SupervisorError):
    """restart_child/delete_child on a running child."""
    tag = "running"


class Restarting(SupervisorError):
    """The child is being restarted."""
    tag = "restarting"


class SimpleOneForOne(SupervisorError):
    """The operation is not available for simple_one_for_one supervisors."""
    tag = "simple_one_for_one"


class AlreadyPresent(SupervisorError):
    """start_child with the id of a terminated child still held by the supervisor."""
    tag = "already_present"


class ChildAlreadyStarted(SupervisorError):
    """start_child with the id of a running child (OTP ``{already_started, Pid}``)."""
    tag = "already_started"


# --------------------------------------------------------------------------- start kinds

@dataclass(frozen=True)
class Exec:
    """Start a fresh program: ``argv[0]`` is looked up in PATH when it has no slash.

    ``env`` is the complete environment (None: inherit). With a fork server the fork happens
    there (single-threaded), otherwise in the supervising process.
    """

    argv: tuple[str, ...]
    env: Mapping[str, str] | None = None
    cwd: str | None = None


@dataclass(frozen=True)
class Fork:
    """Call ``target`` (``"pkg.mod:func"``) with ``args`` in a forked child.

    The child's exit code is the function's return value when it is an int, 0 when it returns
    anything else, 1 when it raises. ``args`` must be picklable (they cross to the fork server).
    ``env`` entries are added to the child's environment.
    """

    target: str
    args: tuple[Any, ...] = ()
    env: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Nested:
    """A nested supervisor with these flags and children, run in the parent's event loop."""

    flags: SupFlags
    children: tuple[ChildSpec, ...] = ()


Start = Exec | Fork | Nested


@dataclass(frozen=True)
class ChildSpec:
    """One child, as OTP's child_spec map. ``shutdown=None`` means OTP's default for ``type``."""

    id: Any
    start: Start
    restart: RestartType = "permanent"
    shutdown: Shutdown | None = None
    type: ChildType = "worker"
    significant: bool = False

    @property
    def shutdown_value(self) -> Shutdown:
        """The effective shutdown: the given one, else 5000 (worker) or infinity (supervisor)."""
        if self.shutdown is not None:
            return self.shutdown
        return "infinity" if self.type == "supervisor" else 5000


@dataclass(frozen=True)
class SupFlags:
    """Supervisor flags with OTP's defaults. ``period`` is in seconds."""

    strategy: Strategy = "one_for_one"
    intensity: int = 1
    period: float = 5
    auto_shutdown: AutoShutdown = "never"


# --------------------------------------------------------------------------- checks

def check_flags(flags: Any) -> SupFlags:
    """Validate supervisor flags; return them or raise the OTP-named error."""
    if not isinstance(flags, SupFlags):
        raise SupervisorError(flags, "flags must be SupFlags")
    if flags.strategy not in STRATEGIES:
        raise InvalidStrategy(flags.strategy)
    if isinstance(flags.intensity, bool) or not isinstance(flags.intensity, int) \
            or flags.intensity < 0:
        raise InvalidIntensity(flags.intensity)
    if isinstance(flags.period, bool) or not isinstance(flags.period, (int, float)) \
            or flags.period <= 0:
        raise InvalidPeriod(flags.period)
    if flags.auto_shutdown not in AUTO_SHUTDOWNS:
        raise InvalidAutoShutdown(flags.auto_shutdown)
    return flags


def _check_shutdown(shutdown: Any) -> None:
    if shutdown is None or shutdown in ("brutal_kill", "infinity"):
        return
    if isinstance(shutdown, bool) or not isinstance(shutdown, int) or shutdown < 0:
        raise InvalidShutdown(shutdown)


def _check_start(spec: ChildSpec) -> None:
    start = spec.start
    if start is None:
        raise MissingStart(spec.id)
    if isinstance(start, Exec):
        if not isinstance(start.argv, tuple) or not start.argv \
                or not all(isinstance(a, str) for a in start.argv):
            raise InvalidMfa(start, "Exec.argv must be a non-empty tuple of str")
    elif isinstance(start, Fork):
        target = start.target if isinstance(start.target, str) else ""
        mod, sep, fn = target.partition(":")
        if not sep or not mod or not fn or not isinstance(start.args, tuple):
            raise InvalidMfa(start, "Fork.target must be 'pkg.mod:func', args a tuple")
    elif isinstance(start, Nested):
        if spec.type != "supervisor":
            raise InvalidChildType(spec.type, "a Nested start needs type='supervisor'")
        check_flags(start.flags)
        check_childspecs(start.children, start.flags.auto_shutdown)
    else:
        raise InvalidMfa(start)


def check_childspec(spec: Any, auto_shutdown: str = "never") -> ChildSpec:
    """Validate one child spec (OTP's check_childspec); return it or raise."""
    if not isinstance(spec, ChildSpec):
        raise InvalidChildSpec(spec)
    if spec.id is None:
        raise MissingId(spec)
    if spec.restart not in RESTART_TYPES:
        raise InvalidRestartType(spec.restart)
    if spec.type not in CHILD_TYPES:
        raise InvalidChildType(spec.type)
    if not isinstance(spec.significant, bool):
        raise InvalidSignificant(spec.significant)
    _check_shutdown(spec.shutdown)
    if spec.significant and spec.restart == "permanent":
        raise BadCombination([("restart", "permanent"), ("significant", True)])
    if spec.significant and auto_shutdown == "never":
        raise BadCombination([("auto_shutdown", "never"), ("significant", True)])
    _check_start(spec)
    return spec


def check_childspecs(specs: Sequence[Any], auto_shutdown: str = "never") -> list[ChildSpec]:
    """Validate a list of child specs as ``supervisor:check_childspecs/2`` does.

    Returns the specs as a list, or raises the error named after OTP's tag for the first bad one
    (``DuplicateChildName`` when two share an id).
    """
    if isinstance(specs, (str, bytes)) or not isinstance(specs, Sequence):
        raise InvalidChildSpec(specs, "expected a list of ChildSpec")
    seen: set[Any] = set()
    out: list[ChildSpec] = []
    for spec in specs:
        check_childspec(spec, auto_shutdown)
        if spec.id in seen:
            raise DuplicateChildName(spec.id)
        seen.add(spec.id)
        out.append(spec)
    return out

