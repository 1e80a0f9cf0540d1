"""The workload checkers of ``ra check``: register, set, counter. No ra equivalent (Jepsen's
``checker/linearizable``, ``checker/set``, ``checker/counter``).

Every checker takes the raw history (invokes and completions, any order: :func:`pairs` sorts it)
and returns a :class:`Verdict`; a malformed history raises ``ValueError``. Completions mean what
they mean in Jepsen: ``ok`` happened, ``fail`` definitely did not, ``info`` may or may not have.

* ``register`` - linearizability of a read/write/cas register per key (:mod:`ra.check.linear`).
* ``set`` - ``add`` element (unique) ops, then a final ``read`` returning every element.
* ``counter`` - ``add`` delta (> 0) ops whose ``ok`` value is the counter after the add, then a
  final ``read``; the counter starts at 0.

Pure: no I/O.
"""
from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ra.check.history import Op, Pair, freeze, pairs
from ra.check.linear import Budget, KeyResult, check_keys
from ra.check.verdict import Verdict

__all__ = ["WORKLOADS", "check", "check_counter", "check_register", "check_set", "render"]

_SAMPLES = 10           # elements / values quoted per anomaly
_SUBSET_SUM_MAX = 10_000_000   # largest target the exact subset-sum check is run for


# -- register ---------------------------------------------------------------------------------

def check_register(ops: Sequence[Op], budget: Budget | None = None) -> Verdict:
    """Linearizability per key. Invalid if any key is; else unknown if any key ran out of
    budget; else valid. ``counterexample`` explains the first invalid key (in ``repr`` order)."""
    results = check_keys(pairs(ops), budget)
    bad = [r for r in results.values() if r.valid is False]
    unknown = [r for r in results.values() if r.valid is None]
    valid = False if bad else (None if unknown else True)
    details: dict[str, Any] = {
        "keys": len(results), "invalid_keys": [r.key for r in bad],
        "unknown_keys": [r.key for r in unknown],
        "ops": sum(r.ops for r in results.values()),
        "info": sum(r.info for r in results.values()),
        "dropped": sum(r.dropped for r in results.values()),
        "states": sum(r.states for r in results.values()),
        "per_key": {repr(r.key): _key_details(r) for r in results.values()},
    }
    if unknown and not bad:
        details["reason"] = f"{len(unknown)} key(s) not decided within the budget"
    return Verdict(valid, "register", details, bad[0].counterexample if bad else None)


def _key_details(r: KeyResult) -> dict[str, Any]:
    d: dict[str, Any] = {"valid": r.valid, "ops": r.ops, "info": r.info, "dropped": r.dropped,
                         "states": r.states, "seconds": round(r.seconds, 4)}
    if r.reason:
        d["reason"] = r.reason
    return d


# -- set --------------------------------------------------------------------------------------

def _only(prs: list[Pair], workload: str, fs: tuple[str, ...]) -> list[Pair]:
    for p in prs:
        if p.invoke.f not in fs:
            raise ValueError(f"{workload} op f={p.invoke.f!r} at t={p.start:.6f} "
                             f"(want {'/'.join(fs)})")
    return prs


def _final_read(prs: list[Pair]) -> Pair | None:
    reads = [p for p in prs if p.invoke.f == "read" and p.type == "ok"]
    return max(reads, key=lambda p: p.end_index) if reads else None


def _sample(xs: Any) -> list[Any]:
    return sorted(xs, key=repr)[:_SAMPLES]


def check_set(ops: Sequence[Op], budget: Budget | None = None) -> Verdict:
    """Adds against the last successful read (the final read, taken after healing).

    lost: ``ok`` adds completed before the read was invoked, absent from it. unexpected: read
    elements never added. duplicated: elements read more than once. failed_present: ``fail``
    adds that are in the read (``fail`` says they did not happen). ``info`` adds, and ``ok`` adds
    still running when the read started, may be present or absent. No successful read: unknown.
    ``budget`` is accepted for a uniform signature and unused (this check is linear).
    """
    prs = _only(pairs(ops), "set", ("add", "read"))
    final = _final_read(prs)
    adds = [p for p in prs if p.invoke.f == "add"]
    if final is None:
        return Verdict(None, "set", {"reason": "unknown: no final read", "adds": len(adds)})
    read = [freeze(x) for x in (final.complete.value or [])]
    in_read = set(read)
    by_type: dict[str, set[Any]] = {"ok": set(), "fail": set(), "info": set(), "late": set()}
    for p in adds:
        kind = "late" if p.type == "ok" and p.end_index > final.index else p.type
        by_type[kind].add(freeze(p.invoke.value))
    attempted = set().union(*by_type.values())
    lost = by_type["ok"] - in_read
    unexpected = in_read - attempted
    duplicated = {x for x, n in Counter(read).items() if n > 1}
    failed_present = (by_type["fail"] - by_type["ok"] - by_type["info"]) & in_read
    anomalies = {"lost": lost, "unexpected": unexpected, "duplicated": duplicated,
                 "failed_present": failed_present}
    details: dict[str, Any] = {
        "attempted": len(attempted), "acknowledged": len(by_type["ok"]),
        "info": len(by_type["info"]), "concurrent_with_read": len(by_type["late"]),
        "read": len(read),
        "info_present": len(by_type["info"] & in_read),
    }
    for name, xs in anomalies.items():
        details[name] = len(xs)
        if xs:
            details[name + "_sample"] = _sample(xs)
    valid = not any(anomalies.values())
    cex = None if valid else "\n".join(
        f"{name}: {len(xs)} e.g. {_sample(xs)}" for name, xs in anomalies.items() if xs)
    return Verdict(valid, "set", details, cex)


# -- counter ----------------------------------------------------------------------------------

def check_counter(ops: Sequence[Op], budget: Budget | None = None) -> Verdict:
    """Adds (delta > 0; ``ok`` value = counter after the add) against the last successful read.

    Valid iff (1) final == sum of ``ok`` deltas + the deltas of some subset of the ``info`` adds
    (an ``ok`` add still running when the read was invoked counts as ``info`` here and in (3))
    (exact subset-sum when the target is at most 10^7, else only the interval bound, and
    ``details["bound_only"]`` says so); (2) no two ``ok`` adds replied the same value (two adds
    saw the same state: one was applied twice or an update was lost); (3) every reply is
    <= final; (4) every reply is >= its own delta plus the deltas of the ``ok`` adds completed
    before it was invoked (real-time order). No successful read: unknown. ``budget`` is unused.
    """
    prs = _only(pairs(ops), "counter", ("add", "read"))
    adds = [p for p in prs if p.invoke.f == "add"]
    for p in adds:
        d = p.invoke.value
        if not isinstance(d, int) or isinstance(d, bool) or d <= 0:
            raise ValueError(f"counter add delta {d!r} at t={p.start:.6f} is not an int > 0")
    final_p = _final_read(prs)
    if final_p is None:
        return Verdict(None, "counter", {"reason": "unknown: no final read", "adds": len(adds)})
    final = final_p.complete.value
    if not isinstance(final, int):  # a malformed history is a ValueError, whatever the cause
        raise ValueError(f"counter read value {final!r} is not an int")  # noqa: TRY004
    ok = [p for p in adds if p.type == "ok"]
    # an ok add still running when the read was invoked may or may not be in it, like an info
    before = [p for p in ok if p.end_index < final_p.index]
    info = [p.invoke.value for p in adds
            if p.type == "info" or (p.type == "ok" and p.end_index > final_p.index)]
    sum_ok, sum_info = sum(p.invoke.value for p in before), sum(info)
    replies = Counter(p.complete.value for p in ok)
    duplicates = sorted(v for v, n in replies.items() if n > 1)
    over = sorted({p.complete.value for p in before if p.complete.value > final})
    too_small = _replies_too_small(ok)
    feasible, bound_only = _feasible(final - sum_ok, info, sum_info)
    details: dict[str, Any] = {
        "final": final, "acknowledged": len(ok), "sum_ok": sum_ok, "info": len(info),
        "concurrent_with_read": len(ok) - len(before), "sum_info": sum_info, "range": [sum_ok, sum_ok + sum_info], "bound_only": bound_only,
        "lost": max(0, sum_ok - final), "excess": max(0, final - sum_ok - sum_info),
        "duplicates": duplicates[:_SAMPLES], "n_duplicates": len(duplicates),
        "replies_over_final": over[:_SAMPLES], "replies_too_small": len(too_small),
    }
    problems = []
    if not feasible:
        problems.append(f"final {final} is not {sum_ok} (acknowledged) + a subset of "
                        f"{len(info)} info adds (total {sum_info})")
    if duplicates:
        problems.append(f"{len(duplicates)} reply value(s) seen twice, e.g. {duplicates[:5]}")
    if over:
        problems.append(f"{len(over)} reply value(s) above the final {final}, e.g. {over[:5]}")
    for p, need in too_small[:3]:
        problems.append(f"p{p.invoke.process} add {p.invoke.value} at t={p.start:.3f} replied "
                        f"{p.complete.value} < {need} (adds acknowledged before it + its own)")
    return Verdict(not problems, "counter", details, "\n".join(problems) or None)


def _feasible(target: int, deltas: list[int], total: int) -> tuple[bool, bool]:
    """(is ``target`` a subset sum of ``deltas``?, was only the interval bound checked?)."""
    if target < 0 or target > total:
        return False, False
    if all(d == 1 for d in deltas) or target in (0, total):
        return True, False
    if target > _SUBSET_SUM_MAX:
        return True, True
    reach, mask = 1, (1 << (target + 1)) - 1    # bit s set <=> sum s reachable
    for d in deltas:
        reach = (reach | (reach << d)) & mask
    return bool(reach >> target & 1), False


def _replies_too_small(ok: list[Pair]) -> list[tuple[Pair, int]]:
    """ok adds whose reply is below the sum of ok deltas completed before their invoke (plus
    their own delta). Completions and invokes are walked in history order."""
    events = sorted([(p.end_index, 1, p) for p in ok] + [(p.index, 0, p) for p in ok],
                    key=lambda ev: ev[0])
    done, out = 0, []
    for _, is_end, p in events:
        if is_end:
            done += p.invoke.value
        elif isinstance(p.complete.value, int) and p.complete.value < done + p.invoke.value:
            out.append((p, done + p.invoke.value))
    return out


# -- dispatch and rendering -------------------------------------------------------------------

WORKLOADS: dict[str, Callable[..., Verdict]] = {
    "register": check_register, "set": check_set, "counter": check_counter,
}


def check(workload: str, ops: Sequence[Op], **kw: Any) -> Verdict:
    """Run the checker named ``workload``; every checker accepts ``budget=`` (only
    ``register`` uses it)."""
    try:
        fn = WORKLOADS[workload]
    except KeyError:
        raise ValueError(f"unknown workload {workload!r} (known: {', '.join(WORKLOADS)})") from None
    return fn(ops, **kw)


def render(v: Verdict) -> str:
    """A short multi-line verdict for the CLI."""
    word = {True: "VALID", False: "INVALID", None: "UNKNOWN"}[v.valid]
    lines = [f"{v.workload}: {word}"]
    d = v.details
    if "reason" in d:
        lines.append(f"  reason: {d['reason']}")
    if v.workload == "register":
        lines.append(f"  keys {d['keys']} (invalid {len(d['invalid_keys'])}, unknown "
                     f"{len(d['unknown_keys'])}); ops {d['ops']} (info {d['info']}, dropped "
                     f"{d['dropped']}); states {d['states']}")
    else:
        counts = ", ".join(f"{k} {val}" for k, val in d.items()
                           if k != "reason" and not isinstance(val, (list, dict)))
        lines += textwrap.wrap(counts, 98, initial_indent="  ", subsequent_indent="  ")
    if v.counterexample:
        lines.append("  counterexample:")
        lines += ["    " + ln for ln in v.counterexample.splitlines()]
    return "\n".join(lines)
