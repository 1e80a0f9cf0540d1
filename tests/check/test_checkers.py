"""Tests of ra.check: history recording/files/pairing and the register, set and counter checkers.

Register histories come from three sources: hand-written cases, a seeded simulator that runs a
real register with random concurrency windows (valid by construction; mutated to be invalid), and
small random histories cross-checked against a brute-force search over all orders.
"""
from __future__ import annotations

import functools
import itertools
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ra.check import (
    Budget,
    History,
    Op,
    check,
    check_counter,
    check_register,
    check_set,
    load,
    merge,
    pairs,
    render,
    save,
)
from ra.check.history import freeze

# -- building histories -----------------------------------------------------------------------


def H(*rows: tuple[Any, ...]) -> list[Op]:
    """Ops from rows ``(time, process, type, f, value[, key])``; key defaults to "k"."""
    out = []
    for row in rows:
        t, p, ty, f, v = row[:5]
        key = row[5] if len(row) > 5 else "k"
        out.append(Op(p, ty, f, key, v, float(t)))
    return out


def op_(t0: float, t1: float, p: int, f: str, v: Any, done: str = "ok", key: Any = "k",
        ret: Any = "same") -> list[Op]:
    """An invoke at t0 and its completion at t1 (completion value = ``v`` unless ``ret``)."""
    inv_v = None if f == "read" else v
    out_v = v if ret == "same" else ret
    return [Op(p, "invoke", f, key, inv_v, t0), Op(p, done, f, key, out_v, t1)]


def hist(*ops: list[Op]) -> list[Op]:
    return sorted((o for pair in ops for o in pair), key=lambda o: o.time)


@dataclass
class _Planned:
    start: float
    end: float
    lin: float
    proc: int
    f: str
    key: Any
    value: Any
    info: bool
    result: str = "ok"
    out: Any = None


def simulate(seed: int, procs: int = 5, n: int = 200, keys: tuple[Any, ...] = ("k",),
             p_info: float = 0.0, unique: bool = False, values: int = 5) -> list[Op]:
    """A linearizable register history: each op takes effect at a random point of its window
    (an ``info`` op maybe never, maybe after it timed out); reads return the model's value."""
    rng = random.Random(seed)
    ids = list(range(procs))
    free = [0.0] * procs
    next_id, counter = procs, itertools.count(1)
    plan: list[_Planned] = []
    for _ in range(n):
        s = rng.randrange(procs)
        t = free[s] + rng.expovariate(1000.0)
        dur = rng.uniform(0.0005, 0.02)
        f = rng.choice(("read", "read", "write", "cas"))
        val: Any = next(counter) if unique else rng.randrange(values)
        if f == "cas":
            val = [None, val]                                  # old chosen at the lin point
        info = rng.random() < p_info
        lin = t + rng.random() * dur * (3 if info else 1)      # an info op may land late
        plan.append(_Planned(t, t + dur, lin, ids[s], f, rng.choice(keys), val, info))
        free[s] = t + dur
        if info:                                               # a crashed client is replaced
            ids[s], next_id = next_id, next_id + 1
    state: dict[Any, Any] = {}
    for p in sorted(plan, key=lambda p: p.lin):
        cur = state.get(p.key)
        if p.f == "cas":
            p.value = [cur if rng.random() < 0.6 else rng.randrange(values), p.value[1]]
        if p.info and rng.random() < 0.5:
            p.result = "info"
            continue                                           # never took effect
        if p.f == "read":
            p.out = cur
        elif p.f == "write":
            state[p.key] = p.value
        elif cur == p.value[0]:
            state[p.key] = p.value[1]
        else:
            p.result = "fail"
        if p.info:
            p.result = "info"
    events = []
    for p in plan:
        inv = None if p.f == "read" else p.value
        out = p.out if p.f == "read" and p.result == "ok" else (None if p.f == "read" else inv)
        events.append(Op(p.proc, "invoke", p.f, p.key, inv, p.start))
        events.append(Op(p.proc, p.result, p.f, p.key, out, p.end))
    return sorted(events, key=lambda o: o.time)


# -- register: hand-written -------------------------------------------------------------------


def test_register_sequential_valid() -> None:
    h = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "read", 1), op_(4, 5, 0, "cas", [1, 2]),
             op_(6, 7, 2, "read", 2))
    v = check_register(h)
    assert v.valid is True and v.counterexample is None
    assert v.details["ops"] == 4


def test_register_unset_key_reads_none() -> None:
    assert check_register(hist(op_(0, 1, 0, "read", None))).valid is True
    assert check_register(hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "read", None))).valid \
        is False


def test_stale_read_is_invalid_and_named() -> None:
    h = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "write", 2), op_(4, 5, 2, "read", 1))
    v = check_register(h)
    assert v.valid is False
    assert v.counterexample is not None
    first = v.counterexample.splitlines()[0]
    assert "p2 read -> 1" in first and "[4.0000..5.0000]" in first
    assert "dead ends: 2" in v.counterexample
    assert "1 last made by: p0 write 1 [0.0000..1.0000] ok" in v.counterexample


def test_concurrent_read_may_see_either_value() -> None:
    for seen in (1, 2):
        h = hist(op_(0, 1, 0, "write", 1), op_(2, 5, 1, "write", 2), op_(3, 4, 2, "read", seen))
        assert check_register(h).valid is True


def test_failed_write_did_not_happen() -> None:
    h = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "write", 2, done="fail"),
             op_(4, 5, 2, "read", 2))
    assert check_register(h).valid is False
    h = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "write", 2, done="fail"),
             op_(4, 5, 2, "read", 1))
    assert check_register(h).valid is True


def test_cas_semantics() -> None:
    ok = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "cas", [1, 5]), op_(4, 5, 2, "read", 5))
    assert check_register(ok).valid is True
    # an ok cas whose `old` cannot be the value then is invalid
    bad = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "cas", [3, 5]), op_(4, 5, 2, "read", 5))
    assert check_register(bad).valid is False
    # a failed cas (mismatch) is dropped
    dropped = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "cas", [3, 5], done="fail"),
                   op_(4, 5, 2, "read", 1))
    assert check_register(dropped).valid is True


def test_info_write_may_have_happened() -> None:
    # p1's write timed out; the read of 2 is explained only if it took effect
    base = [op_(0, 1, 0, "write", 1), op_(4, 5, 2, "read", 2)]
    assert check_register(hist(*base, op_(2, 3, 1, "write", 2, done="info"))).valid is True
    assert check_register(hist(*base, op_(2, 3, 1, "write", 2, done="fail"))).valid is False
    # ... and may also take effect after the read, or never
    assert check_register(hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "write", 2, done="info"),
                               op_(4, 5, 2, "read", 1))).valid is True
    # but never before its own invoke
    late = hist(op_(0, 1, 0, "write", 1), op_(4, 5, 2, "read", 2),
                op_(6, 7, 1, "write", 2, done="info"))
    assert check_register(late).valid is False


def test_info_write_can_land_after_its_timeout() -> None:
    # timed out at 3, applied at ~7: a read at 6..8 sees it, a read at 4..5 did not
    h = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "write", 2, done="info"),
             op_(4, 5, 2, "read", 1), op_(6, 8, 3, "read", 2))
    assert check_register(h).valid is True


def test_invoke_without_completion_counts_as_info() -> None:
    h = hist(op_(0, 1, 0, "write", 1), op_(4, 5, 2, "read", 2))
    h = sorted(h + [Op(1, "invoke", "write", "k", 2, 2.0)], key=lambda o: o.time)
    assert check_register(h).valid is True


def test_info_read_is_dropped() -> None:
    h = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "read", 99, done="info"))
    v = check_register(h)
    assert v.valid is True and v.details["dropped"] == 1


def test_keys_are_independent() -> None:
    h = hist(op_(0, 1, 0, "write", 1, key="a"), op_(2, 3, 1, "read", 1, key="b"),
             op_(2, 3, 2, "read", 1, key="a"))
    v = check_register(h)
    assert v.valid is False
    assert v.details["invalid_keys"] == ["b"]
    assert v.details["per_key"]["'a'"]["valid"] is True
    assert v.counterexample is not None and v.counterexample.startswith("key 'b'")


def test_unknown_register_f_rejected() -> None:
    with pytest.raises(ValueError, match="register op"):
        check_register(hist(op_(0, 1, 0, "incr", 1)))
    with pytest.raises(ValueError, match=r"not \[old, new\]"):
        check_register(hist(op_(0, 1, 0, "cas", 1)))


def test_budget_exhaustion_is_unknown_never_valid() -> None:
    h = simulate(3, n=300)
    assert check_register(h).valid is True
    v = check_register(h, budget=Budget(max_states=5, max_seconds=None))
    assert v.valid is None
    assert v.details["unknown_keys"] == ["k"]
    assert "budget" in v.details["per_key"]["'k'"]["reason"]
    assert "UNKNOWN" in render(v)


def test_time_budget_is_unknown() -> None:
    # 10 unrelated info writes of observed values + an unexplainable read: a big search
    rows = [op_(0, 1, 0, "write", 0)]
    rows += [op_(2 + i, 1000, 10 + i, "write", i % 3, done="info") for i in range(12)]
    rows += [op_(20 + 2 * i, 21 + 2 * i, 1, "read", i % 3) for i in range(3)]
    rows += [op_(100, 101, 2, "read", 7)]
    v = check_register(hist(*rows), budget=Budget(max_states=None, max_seconds=0.0))
    assert v.valid is None


# -- register: generated ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_simulated_histories_are_valid(seed: int) -> None:
    h = simulate(seed, procs=1 + seed % 6, n=150, keys=("a", "b"), p_info=0.05 * (seed % 3))
    v = check_register(h)
    assert v.valid is True, v.counterexample


def _stale_read_mutation(seed: int) -> tuple[list[Op], Op]:
    """A simulated history (unique values, no info) where one read is made to return a value
    overwritten before the read was invoked. Returns the history and the mutated completion."""
    h = simulate(seed, n=200, unique=True)
    prs = [p for p in pairs(h) if p.type == "ok"]
    writes = [p for p in prs if p.invoke.f == "write"]
    for r in prs[len(prs) // 2:]:
        if r.invoke.f != "read":
            continue
        for w1, w2 in itertools.product(writes, writes):
            if w1.end < w2.start and w2.end < r.start and w1.invoke.value != r.complete.value:
                bad = Op(r.complete.process, "ok", "read", r.complete.key, w1.invoke.value,
                         r.complete.time)
                return [bad if o is r.complete else o for o in h], bad
    raise AssertionError("no stale-read site in this simulated history")


@pytest.mark.parametrize("seed", range(10))
def test_stale_read_mutation_flagged_and_named(seed: int) -> None:
    h, bad = _stale_read_mutation(seed)
    v = check_register(h)
    assert v.valid is False
    assert v.counterexample is not None
    first = v.counterexample.splitlines()[0]
    assert f"p{bad.process} read -> {bad.value!r}" in first, v.counterexample
    assert f"..{bad.time:.4f}]" in first
    assert f"{bad.value!r} last made by: p" in v.counterexample
    assert len(v.counterexample.splitlines()) <= 20


def _observed_write(seed: int) -> tuple[list[Op], Op, float]:
    """A simulated history (unique values, no info), its completion of an ok write whose value
    some ok read returned, and the completion time of the last such read."""
    h = simulate(seed, n=200, unique=True)
    prs = [p for p in pairs(h) if p.type == "ok"]
    for w in prs[len(prs) // 3:]:
        if w.invoke.f != "write":
            continue
        reads = [p.end for p in prs if p.invoke.f == "read" and p.complete.value == w.invoke.value]
        if reads:
            return h, w.complete, max(reads)
    raise AssertionError("no observed write in this simulated history")


def _recomplete(h: list[Op], done: Op, type_: str) -> list[Op]:
    return [Op(o.process, type_, o.f, o.key, o.value, o.time) if o is done else o for o in h]


@pytest.mark.parametrize("seed", range(10))
def test_info_makes_an_otherwise_invalid_history_valid(seed: int) -> None:
    h, w, last_read = _observed_write(seed)
    assert check_register(h).valid is True
    v = check_register(_recomplete(h, w, "fail"))       # the value read was never written
    assert v.valid is False
    assert v.counterexample is not None and f"read -> {w.value!r}" in v.counterexample
    assert check_register(_recomplete(h, w, "info")).valid is True
    # the same write, timed out but invoked only after the last read of its value: invalid
    inv = next(o for o in h if o.process == w.process and o.type == "invoke" and o.time < w.time
               and o.value == w.value)
    rest = [o for o in h if o is not inv and o is not w]
    ghost = [Op(10_000, "invoke", "write", "k", w.value, last_read + 1e-4),
             Op(10_000, "info", "write", "k", w.value, last_read + 1.0)]
    assert check_register(sorted(rest + ghost, key=lambda o: o.time)).valid is False


def _brute_force(h: list[Op]) -> bool:
    """Linearizable? by trying every order of the ok ops plus any subset of the info ops."""
    ents = []
    for p in pairs(h):
        if p.type == "fail" or (p.type == "info" and p.invoke.f == "read"):
            continue
        val = p.complete.value if p.invoke.f == "read" else freeze(p.invoke.value)
        end = float("inf") if p.type == "info" else p.end_index
        ents.append((p.invoke.f, val, p.type == "info", p.index, end))
    must = frozenset(i for i, e in enumerate(ents) if not e[2])

    @functools.cache
    def go(done: frozenset[int], state: Any) -> bool:
        if must <= done:
            return True
        for i, (f, val, _, start, _) in enumerate(ents):
            if i in done or any(j not in done and ents[j][4] < start for j in must):
                continue
            if f == "read" and state == val:
                new = state
            elif f == "write":
                new = val
            elif f == "cas" and state == val[0]:
                new = val[1]
            else:
                continue
            if go(done | {i}, new):
                return True
        return False

    return go(frozenset(), None)


def _random_small(seed: int, info: int = 2) -> list[Op]:
    """3 to 8 random register ops, values in {None, 1, 2}, completions ok:info:fail = 7:info:1."""
    rng = random.Random(seed)
    procs = rng.randint(2, 3)
    free, t = [0.0] * procs, 0.0
    ops: list[Op] = []
    for _ in range(rng.randint(3, 8)):
        s = rng.randrange(procs)
        t0 = max(free[s], rng.uniform(0, t + 1))
        t1 = t0 + rng.uniform(0.1, 2)
        f = rng.choice(("read", "write", "cas"))
        v: Any = rng.choice((1, 2)) if f == "write" else [rng.choice((None, 1, 2)),
                                                           rng.choice((1, 2))]
        if f == "read":
            v = rng.choice((None, 1, 2))
        done = rng.choices(("ok", "info", "fail"), (7, info, 1))[0]
        ops += op_(t0, t1, s * 100 + len(ops), f, v, done)     # a fresh process id per op
        free[s], t = t1, max(t, t1)
    return sorted(ops, key=lambda o: o.time)


@pytest.mark.parametrize("info", [2, 6])
def test_matches_brute_force_on_small_histories(info: int) -> None:
    outcomes = []
    for seed in range(800):
        h = _random_small(seed, info)
        want = _brute_force(h)
        assert check_register(h).valid is want, (seed, h)
        outcomes.append(want)
    assert 100 < sum(outcomes) < 700      # both kinds are well represented


def test_benchmark_five_keys_two_thousand_ops_each() -> None:
    """Micro benchmark (no timing assertion): 5 processes, 5 keys x ~2000 ops, 1% info."""
    h = simulate(42, procs=5, n=10_000, keys=tuple(range(5)), p_info=0.01)
    t = time.perf_counter()
    v = check_register(h)
    took = time.perf_counter() - t
    assert v.valid is True, v.counterexample
    assert v.details["keys"] == 5 and v.details["info"] > 0
    print(f"\n[bench] register 10k ops/5 keys: {took:.3f}s, {v.details['states']} states")


def test_benchmark_invalid_long_history() -> None:
    """The search must exhaust everything before a late stale read: still quick."""
    h = simulate(7, procs=5, n=2000, unique=True, p_info=0.0)
    prs = [p for p in pairs(h) if p.type == "ok"]
    last_read = next(p for p in reversed(prs) if p.invoke.f == "read")
    first_write = next(p for p in prs if p.invoke.f == "write")
    bad = Op(last_read.complete.process, "ok", "read", "k", first_write.invoke.value,
             last_read.complete.time)
    h = [bad if o is last_read.complete else o for o in h]
    t = time.perf_counter()
    v = check_register(h)
    took = time.perf_counter() - t
    assert v.valid is False
    assert v.counterexample is not None and f"p{bad.process} read" in v.counterexample
    print(f"\n[bench] invalid 2000 ops: {took:.3f}s, {v.details['states']} states")


# -- set --------------------------------------------------------------------------------------


def _set_history(acks: dict[int, str], read: list[Any] | None) -> list[Op]:
    rows: list[list[Op]] = []
    for i, (x, done) in enumerate(acks.items()):
        rows.append(op_(i, i + 0.5, i, "add", x, done, key=None))
    if read is not None:
        rows.append(op_(100, 101, 999, "read", read, key=None))
    return hist(*rows)


def test_set_valid_with_info_present_and_absent() -> None:
    h = _set_history({1: "ok", 2: "ok", 3: "info", 4: "info", 5: "fail"}, [2, 1, 3])
    v = check_set(h)
    assert v.valid is True
    assert v.details["info_present"] == 1 and v.details["lost"] == 0


def test_set_lost_element() -> None:
    v = check_set(_set_history({1: "ok", 2: "ok", 3: "ok"}, [1, 3]))
    assert v.valid is False
    assert v.details["lost"] == 1 and v.details["lost_sample"] == [2]
    assert v.counterexample is not None and "lost: 1" in v.counterexample


def test_set_duplicated_and_unexpected() -> None:
    v = check_set(_set_history({1: "ok", 2: "ok"}, [1, 2, 2, 9]))
    assert v.valid is False
    assert v.details["duplicated_sample"] == [2]
    assert v.details["unexpected_sample"] == [9]


def test_set_failed_add_present_is_flagged() -> None:
    v = check_set(_set_history({1: "ok", 2: "fail"}, [1, 2]))
    assert v.valid is False and v.details["failed_present"] == 1


def test_set_add_concurrent_with_read_may_be_absent() -> None:
    h = hist(op_(0, 1, 0, "add", 1, key=None), op_(2, 200, 1, "add", 2, key=None),
             op_(100, 101, 9, "read", [1], key=None))
    assert check_set(h).valid is True


def test_set_without_final_read_is_unknown() -> None:
    v = check_set(_set_history({1: "ok"}, None))
    assert v.valid is None and "no final read" in v.details["reason"]
    h = hist(op_(0, 1, 0, "add", 1, key=None), op_(2, 3, 1, "read", None, "info", key=None))
    assert check_set(h).valid is None


# -- counter ----------------------------------------------------------------------------------


def _counter_history(adds: list[tuple[int, str, Any]], final: int | None) -> list[Op]:
    rows = [op_(i, i + 0.5, i, "add", d, done, key=None, ret=reply)
            for i, (d, done, reply) in enumerate(adds)]
    if final is not None:
        rows.append(op_(100, 101, 999, "read", final, key=None))
    return hist(*rows)


def test_counter_exact_with_unit_deltas() -> None:
    adds = [(1, "ok", 1), (1, "ok", 2), (1, "info", None), (1, "ok", 4)]
    assert check_counter(_counter_history(adds, 4)).valid is True     # the info add happened
    adds = [(1, "ok", 1), (1, "ok", 2), (1, "info", None), (1, "ok", 3)]
    assert check_counter(_counter_history(adds, 3)).valid is True     # ... or it did not
    v = check_counter(_counter_history(adds, 5))
    assert v.valid is False and v.details["excess"] == 1


def test_counter_double_applied_add() -> None:
    # the second add was applied twice: the counter ends one too high and a reply repeats
    adds = [(1, "ok", 1), (1, "ok", 3), (1, "ok", 3)]
    v = check_counter(_counter_history(adds, 4))
    assert v.valid is False
    assert v.details["duplicates"] == [3] and v.details["excess"] == 1
    assert v.counterexample is not None and "seen twice" in v.counterexample


def test_counter_lost_update() -> None:
    v = check_counter(_counter_history([(1, "ok", 1), (1, "ok", 2), (1, "ok", 3)], 2))
    assert v.valid is False and v.details["lost"] == 1
    assert v.details["replies_over_final"] == [3]


def test_counter_subset_sum_of_info_deltas() -> None:
    adds = [(2, "ok", 2), (5, "info", None), (7, "info", None)]
    assert check_counter(_counter_history(adds, 9)).valid is True     # 2 + 7
    assert check_counter(_counter_history(adds, 14)).valid is True    # 2 + 5 + 7
    v = check_counter(_counter_history(adds, 8))                      # inside [2, 14], no subset
    assert v.valid is False and v.details["bound_only"] is False


def test_counter_reply_below_real_time_predecessors() -> None:
    # the second add started after the first was acknowledged, yet replied as if it were first
    v = check_counter(_counter_history([(1, "ok", 1), (1, "ok", 1)], 2))
    assert v.valid is False and v.details["replies_too_small"] == 1


def test_counter_add_concurrent_with_read_may_be_absent() -> None:
    h = hist(op_(0, 1, 0, "add", 1, key=None, ret=1), op_(2, 200, 1, "add", 1, key=None, ret=2),
             op_(100, 101, 9, "read", 1, key=None))
    assert check_counter(h).valid is True


def test_counter_without_final_read_is_unknown() -> None:
    assert check_counter(_counter_history([(1, "ok", 1)], None)).valid is None


def test_counter_rejects_bad_deltas() -> None:
    with pytest.raises(ValueError, match="not an int > 0"):
        check_counter(_counter_history([(0, "ok", 0)], 0))


# -- dispatch and rendering -------------------------------------------------------------------


def test_check_dispatch_and_render() -> None:
    h = hist(op_(0, 1, 0, "write", 1), op_(2, 3, 1, "write", 2), op_(4, 5, 2, "read", 1))
    v = check("register", h, budget=Budget(max_states=1000))
    text = render(v)
    assert text.startswith("register: INVALID") and "p2 read -> 1" in text
    assert render(check("set", _set_history({1: "ok"}, [1]), budget=Budget())).startswith(
        "set: VALID")
    with pytest.raises(ValueError, match="counter op f='cas'"):
        check("counter", hist(op_(0, 1, 0, "cas", [1, 2], key=None)))
    with pytest.raises(ValueError, match="unknown workload"):
        check("bank", h)


# -- history ----------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.floats(
    allow_nan=False)
_hashable = st.recursive(_scalars, lambda c: st.tuples(c, c) | st.frozensets(c, max_size=3),
                         max_leaves=6)
_values = st.recursive(
    _hashable,
    lambda c: st.lists(c, max_size=3) | st.tuples(c, c) | st.dictionaries(st.text(max_size=3), c,
                                                                         max_size=3)
    | st.dictionaries(_hashable, c, max_size=3) | st.binary(max_size=4),
    max_leaves=10)


@settings(max_examples=150, deadline=None)
@given(key=_hashable, value=_values, extra=st.none() | st.dictionaries(st.text(max_size=4),
                                                                        _values, max_size=2))
def test_save_load_round_trip(tmp_path_factory: pytest.TempPathFactory, key: Any, value: Any,
                              extra: dict[str, Any] | None) -> None:
    path = tmp_path_factory.mktemp("h") / "h.jsonl"
    ops = [Op(3, "invoke", "cas", key, value, 0.125, extra), Op(3, "ok", "cas", key, value, 1 / 3)]
    save(ops, path)
    back = load(path)
    assert back == ops
    assert [type(o.value) for o in back] == [type(o.value) for o in ops]


def test_tuples_and_sets_round_trip(tmp_path: Path) -> None:
    h = History()
    h.invoke(0, "cas", ("a", 1), (1, 2), extra={"node": ("n1", "host")})
    h.ok(0, "cas", ("a", 1), {1, 2})
    h.save(tmp_path / "h.jsonl")
    back = History.load(tmp_path / "h.jsonl")
    assert back[0].key == ("a", 1) and back[0].value == (1, 2)
    assert back[0].extra == {"node": ("n1", "host")}
    assert back[1].value == frozenset({1, 2})
    assert '{"$t":[1,2]}' in (tmp_path / "h.jsonl").read_text()


def test_streaming_file_and_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with History(path=path) as h:
        h.invoke(1, "write", "k", 1)
        h.info(1, "write", "k", 1, extra={"error": "Timeout"})
    with open(path, "a") as fh:
        fh.write('{"process": 2, "type": "inv')             # killed mid-write
    assert load(path) == h.ops
    path.write_text(path.read_text() + "\n")
    with pytest.raises(ValueError, match=r"c.jsonl:3"):
        load(path)


def test_merge_of_process_files_by_wall_clock(tmp_path: Path) -> None:
    now = [100.0]
    t0 = 100.0
    a, b = History(clock=lambda: now[0], t0=t0), History(clock=lambda: now[0], t0=t0)
    now[0] = 100.5
    a.invoke(0, "write", "k", 1)
    b.invoke(1, "read", "k", None)        # same instant: a's op stays first (stable)
    now[0] = 101.0
    b.ok(1, "read", "k", None)
    now[0] = 100.75                       # another process's clock a bit behind: still sorted
    a.ok(0, "write", "k", 1)
    a.save(tmp_path / "a.jsonl")
    b.save(tmp_path / "b.jsonl")
    m = merge([load(tmp_path / "a.jsonl"), load(tmp_path / "b.jsonl")])
    assert [(o.process, o.type, o.time) for o in m] == [
        (0, "invoke", 0.5), (1, "invoke", 0.5), (0, "ok", 0.75), (1, "ok", 1.0)]


def test_recorder_is_thread_safe() -> None:
    h = History()

    def client(p: int) -> None:
        for i in range(200):
            h.invoke(p, "write", "k", i)
            h.ok(p, "write", "k", i)

    threads = [threading.Thread(target=client, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ops = h.ops
    assert len(ops) == 1600
    assert [o.time for o in ops] == sorted(o.time for o in ops)
    assert len(pairs(ops)) == 800


def test_pairs_matches_per_process() -> None:
    h = H((0, 0, "invoke", "write", 1), (1, 1, "invoke", "read", None), (2, 0, "ok", "write", 1),
          (3, 1, "fail", "read", None), (4, 2, "invoke", "write", 3))
    prs = pairs(h)
    assert [(p.invoke.process, p.type) for p in prs] == [(0, "ok"), (1, "fail"), (2, "info")]
    assert prs[2].end == float("inf") and prs[2].complete.time == 4.0
    assert prs[0].index == 0 and prs[0].end_index == 2


@pytest.mark.parametrize("rows, msg", [
    ([(0, 0, "ok", "write", 1)], "no outstanding invoke"),
    ([(0, 0, "invoke", "write", 1), (1, 0, "invoke", "write", 2)], "while its write"),
    ([(0, 0, "invoke", "write", 1), (1, 0, "ok", "read", 1)], "completes write"),
    ([(0, 0, "invoke", "write", 1, "a"), (1, 0, "ok", "write", 1, "b")], "completes write"),
    ([(0, 0, "invoke", "write", 1), (1, 0, "done", "write", 1)], "unknown op type"),
])
def test_pairs_rejects_malformed(rows: list[tuple[Any, ...]], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        pairs(H(*rows))
