"""Linearizability of a register per key (read / write / cas). No ra equivalent (Knossos' ``wgl``,
Porcupine).

Model (Jepsen's cas-register, initially ``None`` = unset): ``write v`` sets the value;
``read`` is legal iff the value equals what it returned; ``cas [old, new]`` is legal iff the value
equals ``old`` and then sets ``new``. Values are compared after :func:`~ra.check.history.freeze`
(lists == tuples).

How completions count: ``ok`` ops must take effect exactly once between their invoke and their
completion; ``fail`` ops are dropped (they did not happen, a cas mismatch included); ``info`` ops
may take effect once at any time after their invoke, or never; an ``info`` read is dropped (it
constrains nothing).

Search: Wing & Gong's backtracking over the time-ordered event list, with Lowe's memo of
``(set of linearized ops, register value)`` configurations already explored; keys are checked
independently (P-compositionality). Candidates at each point are the ``ok`` calls before the first
outstanding completion, then the ``info`` calls before it, so valid histories rarely branch on
``info`` ops. The search stops when its per-key :class:`Budget` runs out: that key is then
*unknown*, never valid.

``info`` ops are what make the search expensive (each may stay pending to the end), so one rule
prunes them without changing the answer: an ``info`` write/cas placed where no op can observe the
value it makes (no read returning it, no cas expecting it, before the register is overwritten)
can be removed from that linearization, which stays valid; so such placements are not tried.
Statically, an info op whose value is observed only by ok ops completed before its invoke is
dropped, and past the last completion of an ok observer it is *dead*: whether it was linearized
or skipped no longer matters, and the memo merges the two. With unique written values this keeps
invalid histories fast too; with a small value domain and many ``info`` ops, an invalid history
may still exhaust the budget (unknown), as it does in Knossos.

Pure: no I/O; the only clock read enforces ``Budget.max_seconds``.
"""
from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ra.check.history import Pair, freeze

__all__ = ["Budget", "KeyResult", "check_key", "check_keys", "partition"]

_READ, _WRITE, _CAS = 0, 1, 2
_KINDS = {"read": _READ, "write": _WRITE, "cas": _CAS}
_TIME_CHECK_EVERY = 4096        # search steps between two clock reads
_NEVER = 1 << 62                # a rank after every event


@dataclass(frozen=True, slots=True)
class Budget:
    """Per-key search limits; None means unlimited. ``max_states`` counts configurations
    entered (memo insertions)."""

    max_states: int | None = 5_000_000
    max_seconds: float | None = 60.0


@dataclass(frozen=True, slots=True)
class KeyResult:
    """The verdict for one key. ``ops`` is the number of ops searched (``info`` of them ``info``),
    ``dropped`` those left out (fail, info reads, unobservable info writes)."""

    key: Any
    valid: bool | None
    ops: int
    info: int
    dropped: int
    states: int
    seconds: float
    counterexample: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    pair: Pair
    kind: int
    a: Any          # read: value returned; write: value; cas: old
    b: Any          # cas: new
    info: bool
    deadline: int = _NEVER   # info only: rank after which taking effect is pointless


@dataclass(slots=True)
class _Stuck:
    """The furthest dead end seen: the completion the search could not get past."""

    rank: int = -1
    op: int = -1
    states: list[Any] = field(default_factory=list)
    before: list[int] = field(default_factory=list)


def partition(prs: Iterable[Pair]) -> dict[Any, list[Pair]]:
    """Pairs grouped by (frozen) key, each group in invoke order."""
    out: dict[Any, list[Pair]] = {}
    for p in prs:
        out.setdefault(freeze(p.invoke.key), []).append(p)
    return out


def check_keys(prs: Iterable[Pair], budget: Budget | None = None) -> dict[Any, KeyResult]:
    """:func:`check_key` for every key, in ``repr`` order of the keys."""
    parts = partition(prs)
    return {k: check_key(parts[k], budget, key=k) for k in sorted(parts, key=repr)}


def check_key(prs: Sequence[Pair], budget: Budget | None = None, key: Any = None) -> KeyResult:
    """Is the single-register history ``prs`` linearizable? Raises ``ValueError`` on an unknown
    ``f`` or a cas whose value is not ``[old, new]``."""
    budget = budget or Budget()
    t0 = time.monotonic()
    ents, dropped = _prepare(prs)
    valid, states, stuck, reason = _search(ents, budget, t0)
    n_info = sum(e.info for e in ents)
    cex = _explain(key, ents, stuck) if valid is False else None
    return KeyResult(key, valid, len(ents), n_info, dropped, states, time.monotonic() - t0,
                     cex, reason)


def _prepare(prs: Sequence[Pair]) -> tuple[list[_Entry], int]:
    ents: list[_Entry] = []
    dropped = 0
    for p in prs:
        kind = _KINDS.get(p.invoke.f)
        if kind is None:
            raise ValueError(f"register op f={p.invoke.f!r} (want read/write/cas)")
        if p.type == "fail" or (p.type == "info" and kind == _READ):
            dropped += 1
            continue
        info = p.type == "info"
        if kind == _READ:
            ents.append(_Entry(p, kind, freeze(p.complete.value), None, info))
        elif kind == _WRITE:
            ents.append(_Entry(p, kind, freeze(p.invoke.value), None, info))
        else:
            v = p.invoke.value
            if not isinstance(v, (list, tuple)) or len(v) != 2:
                raise ValueError(f"cas value {v!r} at t={p.start:.6f} is not [old, new]")
            ents.append(_Entry(p, kind, freeze(v[0]), freeze(v[1]), info))
    kept = _prune_unobservable(ents)
    return kept, dropped + len(ents) - len(kept)


def _prune_unobservable(ents: list[_Entry]) -> list[_Entry]:
    """Give each info write/cas a deadline: the last completion of an ok op observing the value
    it produces (a read returning it, a cas expecting it), or never if an info cas observes it.
    Taking effect after that deadline, it would be seen by nobody: that linearization stays one
    without it, so the search need not place it there. No deadline after its invoke: dropped."""
    while True:
        last_ok: dict[Any, int] = {}
        by_info: set[Any] = set()
        for e in ents:
            if e.kind == _WRITE:
                continue
            if e.info:
                by_info.add(e.a)
            elif last_ok.get(e.a, -1) < e.pair.end_index:
                last_ok[e.a] = e.pair.end_index
        kept = []
        for e in ents:
            if e.info:
                made = e.a if e.kind == _WRITE else e.b
                dl = _NEVER if made in by_info else last_ok.get(made, -1)
                if dl < e.pair.index:
                    continue
                e = replace(e, deadline=dl)
            kept.append(e)
        if len(kept) == len(ents):
            return kept
        ents = kept     # a dropped cas no longer observes its `old`: go again


def _search(ents: list[_Entry], budget: Budget,
            t0: float) -> tuple[bool | None, int, _Stuck, str | None]:
    """Wing-Gong-Lowe search. Event ids: call of op i = 2i, completion = 2i+1 (ok ops only);
    info calls live in a second list. Lifting an op unlinks its events (dancing links); a
    backtrack relinks them in reverse order.

    An info op can be linearized next only while ``hi`` (the latest invoke among linearized ops,
    a lower bound of the next linearization point) is before its deadline. Once past, whether it
    was linearized or skipped no longer matters to the rest of the search, so the memo key sets
    the bits of all such ops (``dead``): configurations differing only there are merged."""
    n = len(ents)
    mh, it = 2 * n, 2 * n + 1                     # main-list head, info-list tail/head sentinel
    nxt = [0] * (2 * n + 2)
    prv = [0] * (2 * n + 2)
    rank = [0] * (2 * n + 2)
    rank[it] = _NEVER                             # the info walk stops on the sentinel
    main: list[tuple[int, int]] = []
    infos: list[tuple[int, int]] = []
    for i, en in enumerate(ents):
        if en.info:
            infos.append((en.pair.index, 2 * i))
        else:
            main.append((en.pair.index, 2 * i))
            main.append((en.pair.end_index, 2 * i + 1))
    for head, evs in ((mh, sorted(main)), (it, sorted(infos))):
        prev = head
        for r, ev in evs:
            rank[ev] = r
            nxt[prev], prv[ev] = ev, prev
            prev = ev
        nxt[prev], prv[head] = head, prev          # circular, so a walk always ends on `head`

    kind = [e.kind for e in ents]
    a = [e.a for e in ents]
    b = [e.b for e in ents]
    is_info = [e.info for e in ents]
    bit = [1 << i for i in range(n)]
    start = [e.pair.index for e in ents]
    dl = [e.deadline for e in ents]
    by_dl = sorted((e.deadline, i) for i, e in enumerate(ents) if e.info)
    dl_sorted = [d for d, _ in by_dl]
    dead_upto = [0]                               # dead_upto[j]: bits of the j first deadlines
    for _, i in by_dl:
        dead_upto.append(dead_upto[-1] | bit[i])
    useful = _usefulness(ents)
    remaining = n - len(infos)
    max_states = budget.max_states if budget.max_states is not None else -1
    deadline = t0 + budget.max_seconds if budget.max_seconds is not None else None

    cache: set[tuple[int, Any]] = set()
    # (op, value before it, bound, blocked op, hi, dead) as they were before the op
    stack: list[tuple[int, Any, int, int, int, int]] = []
    stuck = _Stuck()
    lin = 0
    state: Any = None
    states = steps = 0
    in_info = False
    bound = blocked = hi = -1
    dead = 0
    e = nxt[mh]
    while remaining:
        steps += 1
        if deadline is not None and steps % _TIME_CHECK_EVERY == 0 and time.monotonic() > deadline:
            return None, states, stuck, f"budget: {budget.max_seconds}s spent, {states} states"
        if not in_info and e & 1:                 # the first outstanding completion: try infos
            bound, blocked, in_info, e = rank[e], e >> 1, True, nxt[it]
            continue
        if in_info and rank[e] > bound:           # every candidate failed here: backtrack
            if rank[blocked * 2 + 1] >= stuck.rank:
                _note_stuck(stuck, rank[blocked * 2 + 1], blocked, state, stack)
            if not stack:
                return False, states, stuck, None
            i, state, bound, blocked, hi, dead = stack.pop()
            lin ^= bit[i]
            c = 2 * i
            if is_info[i]:
                nxt[prv[c]] = prv[nxt[c]] = c
                in_info = True
            else:
                r = c + 1
                nxt[prv[r]] = prv[nxt[r]] = r
                nxt[prv[c]] = prv[nxt[c]] = c
                remaining += 1
                in_info = False
            e = nxt[c]
            continue
        i = e >> 1
        if in_info and (dl[i] < hi or not useful(i, hi, bound)):
            e = nxt[e]
            continue
        k = kind[i]
        if k == _WRITE:
            new = a[i]
        elif state == a[i]:
            new = state if k == _READ else b[i]
        else:
            e = nxt[e]
            continue
        nhi, ndead = hi, dead
        if start[i] > hi:
            nhi = start[i]
            ndead = dead_upto[bisect_right(dl_sorted, nhi)]
        nlin = lin | bit[i]
        ck = (nlin | ndead, new)
        if ck in cache:
            e = nxt[e]
            continue
        cache.add(ck)
        states += 1
        if states == max_states:
            return None, states, stuck, f"budget: {states} states explored"
        stack.append((i, state, bound, blocked, hi, dead))
        lin, state, hi, dead = nlin, new, nhi, ndead
        c = 2 * i
        nxt[prv[c]], prv[nxt[c]] = nxt[c], prv[c]
        if not is_info[i]:
            r = c + 1
            nxt[prv[r]], prv[nxt[r]] = nxt[r], prv[r]
            remaining -= 1
        in_info = False
        e = nxt[mh]
    return True, states, stuck, None


def _usefulness(ents: list[_Entry]) -> Callable[[int, int, int], bool]:
    """``useful(i, hi, bound)``: could info op i, linearized at a point t with hi <= t < bound,
    be seen by anyone? The value it makes stays at most until E(t), the earliest completion of
    an ok write/cas invoked after t (E(t) <= E(bound)); an observer of that value (a read
    returning it, a cas expecting it) must overlap (t, E(t)): completion after hi, invoke before
    E(bound). If none can, the op placed there is removable (see :func:`_prune_unobservable`)."""
    chg = sorted((e.pair.index, e.pair.end_index) for e in ents
                 if not e.info and e.kind != _READ)
    chg_start = [s for s, _ in chg]
    sufmin = [_NEVER] * (len(chg) + 1)             # sufmin[j]: min end of chg[j:]
    for j in range(len(chg) - 1, -1, -1):
        sufmin[j] = min(chg[j][1], sufmin[j + 1])
    obs: dict[Any, list[tuple[int, int]]] = {}
    for e in ents:
        if e.kind != _WRITE:
            obs.setdefault(e.a, []).append((e.pair.index, _NEVER if e.info else e.pair.end_index))
    starts: dict[Any, list[int]] = {}
    premax: dict[Any, list[int]] = {}              # premax[v][j]: max end of obs[v][:j]
    for v, xs in obs.items():
        xs.sort()
        starts[v] = [s for s, _ in xs]
        pm = [-1]
        for _, end in xs:
            pm.append(max(pm[-1], end))
        premax[v] = pm
    made = [e.a if e.kind == _WRITE else e.b for e in ents]

    def useful(i: int, hi: int, bound: int) -> bool:
        v = made[i]
        if v not in starts:
            return False
        until = sufmin[bisect_right(chg_start, bound)]
        return premax[v][bisect_right(starts[v], until)] > hi

    return useful


def _note_stuck(stuck: _Stuck, rank: int, op: int, state: Any,
                stack: list[tuple[int, Any, int, int, int, int]]) -> None:
    if rank > stuck.rank:
        stuck.rank, stuck.op, stuck.states = rank, op, []
        stuck.before = [fr[0] for fr in stack[-3:]]
    if state not in stuck.states and len(stuck.states) < 5:
        stuck.states.append(state)


def _fmt_time(t: float) -> str:
    return "inf" if t == float("inf") else f"{t:.4f}"


def _fmt(e: _Entry) -> str:
    p = e.pair
    what = {_READ: f"read -> {e.a!r}", _WRITE: f"write {e.a!r}",
            _CAS: f"cas {e.a!r}->{e.b!r}"}[e.kind]
    node = (p.complete.extra or {}).get("node")
    where = f" @{node}" if node is not None else ""
    return f"p{p.invoke.process} {what} [{_fmt_time(p.start)}..{_fmt_time(p.end)}] {p.type}{where}"


def _explain(key: Any, ents: list[_Entry], stuck: _Stuck) -> str:
    """At most ~20 lines: the op the search could not get past, the register values at those
    dead ends, the latest op making the value it needs, the ops linearized just before it (on
    one of the deepest paths), and the ops concurrent with it."""
    x = ents[stuck.op]
    lines = [f"key {key!r}: cannot linearize {_fmt(x)}",
             f"  register value(s) at the dead ends: {', '.join(map(repr, stuck.states))}"]
    if x.kind != _WRITE and x.a is not None:        # where the value it needs comes from
        makers = [e for e in ents if (e.a if e.kind == _WRITE else e.b) == x.a
                  and e.kind != _READ and e is not x]
        if makers:
            more = f" (+{len(makers) - 1} other)" if len(makers) > 1 else ""
            lines.append(f"  {x.a!r} last made by: {_fmt(max(makers, key=lambda e: e.pair.index))}"
                         f"{more}")
        else:
            lines.append(f"  no op makes {x.a!r}")
    if stuck.before:
        lines.append("  linearized just before it:")
        lines += [f"    {_fmt(ents[i])}" for i in stuck.before]
    s, t = x.pair.start, x.pair.end
    conc = [e for i, e in enumerate(ents)
            if i != stuck.op and e.pair.start < t and e.pair.end > s]
    lines.append(f"  concurrent with it: {len(conc)}")
    lines += [f"    {_fmt(e)}" for e in conc[:10]]
    if len(conc) > 10:
        lines.append(f"    ... and {len(conc) - 10} more")
    return "\n".join(lines)
