"""Operation histories of ``ra check``: recording, JSON Lines files, merging, pairing. No ra
equivalent (Jepsen's ``jepsen.history`` / Knossos' op maps).

A history is a time-ordered list of :class:`Op` events. Each logical operation is an ``invoke``
followed, on the same ``process``, by one completion: ``ok`` (it happened), ``fail`` (it
definitely did not happen) or ``info`` (unknown: it may take effect at any time after its invoke,
including never). A process has at most one operation outstanding; the runner never reuses a
process after an ``info``.

File format (JSON Lines, one op per line)::

    {"process": 3, "type": "invoke", "f": "cas", "key": 1, "value": {"$t": [2, 4]}, "time": 0.25}

``extra`` is written only when set. Values, keys and ``extra`` use a small tagged encoding so
that Python values round-trip exactly: a tuple is ``{"$t": [...]}``, a set or frozenset is
``{"$s": [...]}`` (loaded as frozenset), bytes are ``{"$b": "<hex>"}``, and a dict whose keys are
not all plain strings (or start with ``$``) is ``{"$d": [[k, v], ...]}``. Lists, plain dicts,
strings, numbers, booleans and None are plain JSON.

Only this module touches files; everything else in ``ra.check`` is pure.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

__all__ = ["TYPES", "History", "Op", "Pair", "decode", "encode", "freeze", "load", "merge", "pairs", "save"]

TYPES: tuple[str, ...] = ("invoke", "ok", "fail", "info")
_COMPLETIONS = frozenset(("ok", "fail", "info"))


@dataclass(frozen=True, slots=True)
class Op:
    """One history event. ``time`` is seconds since the run started (one clock for the run)."""

    process: int
    type: str
    f: str
    key: Any
    value: Any
    time: float
    extra: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Pair:
    """A logical operation: its invoke and its completion (an ``info`` synthesised at the end of
    the history when the invoke never completed). ``index``/``end_index`` are the positions of the
    two events in the time-ordered history: they order events that share a timestamp."""

    invoke: Op
    complete: Op
    index: int
    end_index: int

    @property
    def type(self) -> str:
        return self.complete.type

    @property
    def start(self) -> float:
        return self.invoke.time

    @property
    def end(self) -> float:
        """Completion time; +inf for ``info`` (the op may take effect at any later time)."""
        return math.inf if self.complete.type == "info" else self.complete.time


# -- tagged JSON encoding ---------------------------------------------------------------------

def encode(v: Any) -> Any:
    """A JSON-ready form of ``v`` under the tagged scheme of the module docstring."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, tuple):
        return {"$t": [encode(x) for x in v]}
    if isinstance(v, list):
        return [encode(x) for x in v]
    if isinstance(v, (set, frozenset)):
        # sorted by repr so that a saved file does not depend on hash seeds
        return {"$s": sorted((encode(x) for x in v), key=repr)}
    if isinstance(v, bytes):
        return {"$b": v.hex()}
    if isinstance(v, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in v):
            return {k: encode(x) for k, x in v.items()}
        return {"$d": [[encode(k), encode(x)] for k, x in v.items()]}
    raise TypeError(f"cannot encode {type(v).__name__} value {v!r} in a history")


def decode(v: Any) -> Any:
    """Inverse of :func:`encode` (sets come back as frozensets)."""
    if isinstance(v, list):
        return [decode(x) for x in v]
    if not isinstance(v, dict):
        return v
    if len(v) == 1:
        (tag, body), = v.items()
        if tag == "$t":
            return tuple(decode(x) for x in body)
        if tag == "$s":
            return frozenset(decode(x) for x in body)
        if tag == "$b":
            return bytes.fromhex(body)
        if tag == "$d":
            return {decode(k): decode(x) for k, x in body}
    return {k: decode(x) for k, x in v.items()}


def _line(op: Op) -> str:
    d: dict[str, Any] = {"process": op.process, "type": op.type, "f": op.f,
                         "key": encode(op.key), "value": encode(op.value), "time": op.time}
    if op.extra is not None:
        d["extra"] = encode(op.extra)
    return json.dumps(d, separators=(",", ":"))


def _op(d: dict[str, Any]) -> Op:
    extra = decode(d["extra"]) if d.get("extra") is not None else None
    op = Op(process=d["process"], type=d["type"], f=d["f"], key=decode(d.get("key")),
            value=decode(d.get("value")), time=float(d["time"]), extra=extra)
    if op.type not in TYPES:
        raise ValueError(f"unknown op type {op.type!r}")
    return op


def save(ops: Iterable[Op], path: str | Path) -> None:
    """Write ``ops`` to ``path`` as JSON Lines (replacing the file)."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(_line(op) + "\n" for op in ops)


def load(path: str | Path) -> list[Op]:
    """Read a JSON Lines history. A torn final line (no trailing newline, not valid JSON: the
    writer was killed mid-write) is dropped; any other bad line raises ``ValueError`` naming it."""
    text = Path(path).read_text(encoding="utf-8")
    lines = text.split("\n")
    out: list[Op] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(_op(json.loads(line)))
        except (ValueError, KeyError, TypeError) as e:
            if n == len(lines) and not text.endswith("\n"):
                break
            raise ValueError(f"{path}:{n}: bad history line: {e}") from e
    return out


# -- recording --------------------------------------------------------------------------------

class History:
    """Thread-safe recorder. Each call appends one :class:`Op` stamped ``clock() - t0``.

    In the runner's own process the defaults suffice (monotonic clock, ``t0`` = creation time).
    A client running in another OS process shares the run's origin through the wall clock:
    ``History(clock=time.time, t0=run_start_wall, path=...)``; its file is then merged with
    :func:`merge`. With ``path`` every op is also appended to that file and flushed as it is
    recorded, so a killed client leaves at most a torn last line (which :func:`load` drops).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, t0: float | None = None,
                 path: str | Path | None = None) -> None:
        self._clock = clock
        self._t0 = clock() if t0 is None else t0
        self._lock = threading.Lock()
        self._ops: list[Op] = []
        # open for the recorder's lifetime, closed by close() / the with-block
        self._fh: IO[str] | None = open(path, "a", encoding="utf-8") if path else None

    @property
    def ops(self) -> list[Op]:
        """A snapshot copy of the ops recorded so far, in recording order."""
        with self._lock:
            return list(self._ops)

    def _record(self, process: int, type_: str, f: str, key: Any, value: Any,
                extra: dict[str, Any] | None) -> Op:
        # the clock is read under the lock so that list order == time order
        with self._lock:
            op = Op(process, type_, f, key, value, self._clock() - self._t0, extra)
            self._ops.append(op)
            if self._fh is not None:
                self._fh.write(_line(op) + "\n")
                self._fh.flush()
        return op

    def invoke(self, process: int, f: str, key: Any, value: Any,
               extra: dict[str, Any] | None = None) -> Op:
        return self._record(process, "invoke", f, key, value, extra)

    def ok(self, process: int, f: str, key: Any, value: Any,
           extra: dict[str, Any] | None = None) -> Op:
        return self._record(process, "ok", f, key, value, extra)

    def fail(self, process: int, f: str, key: Any, value: Any,
             extra: dict[str, Any] | None = None) -> Op:
        return self._record(process, "fail", f, key, value, extra)

    def info(self, process: int, f: str, key: Any, value: Any,
             extra: dict[str, Any] | None = None) -> Op:
        return self._record(process, "info", f, key, value, extra)

    def save(self, path: str | Path) -> None:
        save(self.ops, path)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def load(path: str | Path) -> list[Op]:
        return load(path)


def merge(histories: Iterable[Iterable[Op]]) -> list[Op]:
    """All ops of ``histories`` in one list sorted by time; stable, so ties keep the order of
    ``histories`` and, within one history, recording order."""
    return sorted((op for h in histories for op in h), key=lambda op: op.time)


# -- pairing ----------------------------------------------------------------------------------

def pairs(ops: Sequence[Op]) -> list[Pair]:
    """Match each invoke to the next completion of its process, in invoke order.

    ``ops`` are first put in time order (stable). Raises ``ValueError`` on a malformed history:
    an unknown type, a completion with no outstanding invoke, a second invoke while one is
    outstanding, or a completion whose ``f``/``key`` differs from its invoke's. An invoke never
    completed becomes an ``info`` at the end of the history.
    """
    ordered = sorted(ops, key=lambda op: op.time)
    open_: dict[int, int] = {}                 # process -> position in `out`
    out: list[Pair] = []
    for i, op in enumerate(ordered):
        if op.type == "invoke":
            if op.process in open_:
                prev = out[open_[op.process]].invoke
                raise ValueError(f"process {op.process} invoked {op.f} at t={op.time:.6f} while "
                                 f"its {prev.f} of t={prev.time:.6f} was outstanding")
            open_[op.process] = len(out)
            out.append(Pair(op, op, i, -1))     # completion filled in below
        elif op.type in _COMPLETIONS:
            j = open_.pop(op.process, None)
            if j is None:
                raise ValueError(f"process {op.process}: {op.type} {op.f} at t={op.time:.6f} "
                                 f"has no outstanding invoke")
            inv = out[j].invoke
            if (inv.f, freeze(inv.key)) != (op.f, freeze(op.key)):
                raise ValueError(f"process {op.process}: {op.type} {op.f} key={op.key!r} at "
                                 f"t={op.time:.6f} completes {inv.f} key={inv.key!r}")
            out[j] = Pair(inv, op, out[j].index, i)
        else:
            raise ValueError(f"unknown op type {op.type!r} at t={op.time:.6f}")
    end = ordered[-1].time if ordered else 0.0
    for j in open_.values():
        inv = out[j].invoke
        done = Op(inv.process, "info", inv.f, inv.key, None, end, {"error": "no completion"})
        out[j] = Pair(inv, done, out[j].index, len(ordered))
    return out


def freeze(v: Any) -> Any:
    """A hashable, comparable stand-in for a JSON-ish value (lists -> tuples, sets -> frozensets,
    dicts -> frozensets of items); used to compare keys and register values."""
    if isinstance(v, (list, tuple)):
        return tuple(freeze(x) for x in v)
    if isinstance(v, (set, frozenset)):
        return frozenset(freeze(x) for x in v)
    if isinstance(v, dict):
        return frozenset((freeze(k), freeze(x)) for k, x in v.items())
    return v
