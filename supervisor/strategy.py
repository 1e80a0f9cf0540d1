"""Mirrors supervisor.erl (restart/3, do_restart, add_restart): pure restart decisions.

Nothing here touches the OS or reads a clock: the caller passes ``now`` (seconds, monotonic) and
the restart history, and gets back an ordered :class:`Decision`. The supervisor carries the plan
out action by action, in order.

Rules, as OTP:

* ``permanent`` children are always restarted; ``transient`` ones only after an abnormal exit
  (any reason other than ``normal``, ``shutdown`` or ``shutdown:<x>``); ``temporary`` ones never,
  and they are removed from the supervisor once they exit.
* Each restart is recorded with :func:`add_restart`; when more than ``intensity`` restarts fall
  within ``period`` seconds the plan is ``[Escalate("shutdown")]``: the supervisor terminates all
  its children in reverse start order and exits with reason ``shutdown``.
* ``one_for_one`` / ``simple_one_for_one``: restart the child alone.
* ``one_for_all``: terminate every other running child in reverse start order, then start all
  children in start order (as OTP does, also non-running permanent/transient ones); temporary
  children are terminated and removed instead of restarted.
* ``rest_for_one``: the same, limited to the exited child and those started after it.
* A significant child that is not restarted triggers auto_shutdown: ``any_significant`` always,
  ``all_significant`` when no other significant child is still running.

Exit reasons are strings: ``normal`` (exit 0), ``shutdown`` (killed by *our* SIGTERM, or a nested
supervisor stopping), ``killed`` (SIGKILL), ``signal:<NAME>``, ``exit:<code>``, ``start_error``.
"""
from __future__ import annotations

import signal
from dataclasses import dataclass
from collections.abc import Sequence
from typing import Any

__all__ = [
    "ChildView",
    "Terminate",
    "Restart",
    "Remove",
    "Escalate",
    "AutoShutdown",
    "Action",
    "Decision",
    "exit_reason",
    "is_normal_exit",
    "needs_restart",
    "add_restart",
    "plan_exit",
    "shutdown_order",
]


@dataclass(frozen=True, slots=True)
class ChildView:
    """What the planner needs to know of a child, listed in start order."""

    id: Any
    restart: str = "permanent"
    running: bool = True
    significant: bool = False


@dataclass(frozen=True, slots=True)
class Terminate:
    """Stop this running child with its own shutdown setting."""

    id: Any


@dataclass(frozen=True, slots=True)
class Restart:
    """Start this child again."""

    id: Any


@dataclass(frozen=True, slots=True)
class Remove:
    """Forget this child (temporary children, simple_one_for_one instances)."""

    id: Any


@dataclass(frozen=True, slots=True)
class Escalate:
    """Restart intensity exceeded: terminate all children (reverse order) and exit ``reason``."""

    reason: str = "shutdown"


@dataclass(frozen=True, slots=True)
class AutoShutdown:
    """A significant child ended: terminate all children and exit ``shutdown`` (auto_shutdown)."""

    reason: str = "shutdown"


Action = Terminate | Restart | Remove | Escalate | AutoShutdown


@dataclass(frozen=True, slots=True)
class Decision:
    """An ordered plan and the restart history to keep afterwards."""

    actions: tuple[Action, ...]
    restarts: tuple[float, ...]


def exit_reason(returncode: int, term_sent: bool = False) -> str:
    """Map a process's return code (``-N`` for signal N, as subprocess does) to an exit reason.

    ``term_sent`` says whether *we* sent the SIGTERM: only then is death by SIGTERM (or the shell
    convention exit 143) the ``shutdown`` reason; a SIGTERM from anyone else is abnormal.
    """
    if returncode == 0:
        return "normal"
    if term_sent and returncode in (-signal.SIGTERM, 128 + signal.SIGTERM):
        return "shutdown"
    if returncode == -signal.SIGKILL:
        return "killed"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"signal:{name}"
    return f"exit:{returncode}"


def is_normal_exit(reason: str) -> bool:
    """True for ``normal``, ``shutdown`` and ``shutdown:<x>`` (OTP's normal exit reasons)."""
    return reason in ("normal", "shutdown") or reason.startswith("shutdown:")


def needs_restart(restart: str, reason: str) -> bool:
    """Whether a child with this restart type must be restarted after exiting with ``reason``."""
    if restart == "permanent":
        return True
    if restart == "transient":
        return not is_normal_exit(reason)
    return False


def add_restart(times: Sequence[float], now: float, period: float) -> tuple[float, ...]:
    """Record a restart at ``now``; keep only restarts within the last ``period`` seconds.

    A restart at ``t`` still counts when ``t >= now - period``. The result ends with ``now``.
    """
    threshold = now - period
    return tuple(t for t in times if t >= threshold) + (now,)


def shutdown_order(children: Sequence[ChildView]) -> list[Any]:
    """Ids of the running children in reverse start order (the order OTP stops them in)."""
    return [c.id for c in reversed(children) if c.running]


def _auto_shutdown(flags_auto: str, children: Sequence[ChildView], exited: ChildView) -> bool:
    if not exited.significant or flags_auto == "never":
        return False
    if flags_auto == "any_significant":
        return True
    # all_significant: no other significant child is still running
    return not any(c.significant and c.running for c in children if c.id != exited.id)


def _restart_group(group: Sequence[ChildView], exited_id: Any) -> list[Action]:
    """Terminate the running others of ``group`` in reverse, then restart/remove in order."""
    actions: list[Action] = []
    for c in reversed(group):
        if c.id != exited_id and c.running:
            actions.append(Terminate(c.id))
    for c in group:
        if c.id != exited_id and c.restart == "temporary":
            actions.append(Remove(c.id))
        else:
            actions.append(Restart(c.id))
    return actions


def plan_exit(
    strategy: str,
    intensity: int,
    period: float,
    auto_shutdown: str,
    children: Sequence[ChildView],
    exited_id: Any,
    reason: str,
    restarts: Sequence[float],
    now: float,
) -> Decision:
    """Decide what to do after child ``exited_id`` exited with ``reason``.

    ``children`` lists every child in start order (the exited one included, its ``running`` flag
    being irrelevant). Returns the ordered actions and the new restart history. An unknown id
    yields an empty plan (a stale exit notice).
    """
    history = tuple(restarts)
    exited = next((c for c in children if c.id == exited_id), None)
    if exited is None:
        return Decision((), history)
    if not needs_restart(exited.restart, reason):
        actions: list[Action] = []
        if exited.restart == "temporary" or strategy == "simple_one_for_one":
            actions.append(Remove(exited.id))
        if _auto_shutdown(auto_shutdown, children, exited):
            actions.append(AutoShutdown())
        return Decision(tuple(actions), history)
    history = add_restart(history, now, period)
    if len(history) > intensity:
        return Decision((Escalate("shutdown"),), history)
    if strategy in ("one_for_one", "simple_one_for_one"):
        return Decision((Restart(exited.id),), history)
    if strategy == "one_for_all":
        return Decision(tuple(_restart_group(children, exited.id)), history)
    if strategy == "rest_for_one":
        idx = next(i for i, c in enumerate(children) if c.id == exited_id)
        return Decision(tuple(_restart_group(children[idx:], exited.id)), history)
    raise ValueError(f"unknown strategy {strategy!r}")
