"""No ra equivalent (Jepsen's clients and generators): the workloads of ``ra check``.

A *workload* says which machine the cluster runs, which operation a client does next and how
that operation is done through the ra API. A *client* runs one workload's operations one after
another, as Jepsen processes do, and records each in a :class:`~ra.check.history.History`:
``invoke`` before the request, then exactly one of

* ``ok`` - it happened, with what was observed (a read's value, a counter's reply);
* ``fail`` - it certainly did not happen (a cas whose old value did not match, an error raised
  before anything was sent, or a read that got no answer: a read changes nothing, so an
  unanswered read is as good as one never made, Jepsen's convention);
* ``info`` - unknown (a timeout, or the callee died after the request may have arrived). The
  client's process id is then retired and the client carries on as process
  ``id + concurrency``, so process ids never overlap and each one is sequential.

Workloads (Jepsen's names):

``register``
    keys ``0..keys-1``; ``read`` / ``write`` (values 0..4) / ``cas`` (``[old, new]``). Reads go
    through ``consistent_query`` (``reads="consistent"``), a read command through the log
    (``"command"``), or ``local_query`` on a random member (``"local"``, which may be stale: the
    control experiment).
``set``
    ``add`` of unique integers; after the run one final ``read`` through a read command.
``counter``
    ``add`` of 1, recording the total the machine replied; after the run one final ``read``.

Clients run as threads of the runner (:func:`run_client`, each with its own ``ra.Client``: a
client is not thread-safe) or as OS processes (:func:`client_main`, which saves its own
history and stats for the runner to merge; its stdin is its lifeline). Every client stops at
``spec.until`` (a ``time.time()`` value) or when its stop event is set, whichever comes first.
"""
from __future__ import annotations

import json
import logging
import os
import random
import sys
import threading
import time
from collections import Counter as _Tally
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import ra
from ra.check.history import History
from ra.check.machines import MACHINES

__all__ = [
    "READ_MODES", "WORKLOADS", "ClientSpec", "Conn", "Rejected", "classify", "run_client",
    "client_process", "client_main", "client_argv", "final_read", "new_workload",
]

READ_MODES = ("consistent", "command", "local")
WORKLOADS = tuple(MACHINES)
_QMOD = "ra.check.machines"


class _Event(Protocol):
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...


class Rejected(Exception):
    """The operation was applied and refused by the machine (a cas whose old value did not
    match): recorded as ``fail``."""


def classify(exc: BaseException) -> str:
    """``"fail"`` if ``exc`` proves the request was not applied, else ``"info"``.

    Argument errors (``TypeError``, ``ValueError``, ``ra.InvalidConfig``) are raised before
    anything is sent: ``fail``. With ``ra.OutcomeUnknown`` (the base of ``Timeout`` and of the
    "sent, then the callee died" errors), an error of that class is ``info`` and any other
    ``ra.RaError`` says the request was not delivered: ``fail``. Without it, the library does
    not say whether a request left, so every other error is ``info``.
    """
    if isinstance(exc, (TypeError, ValueError, ra.InvalidConfig)):
        return "fail"
    unknown = getattr(ra, "OutcomeUnknown", None)
    if unknown is not None and isinstance(exc, ra.RaError) and not isinstance(exc, unknown):
        return "fail"
    return "info"


@dataclass(frozen=True)
class ClientSpec:
    """Everything a client needs, picklable so that a client process can be given it.

    ``worker`` is this client's index in ``0..concurrency-1`` and its first process id;
    ``t0`` the runner's shared time base (``time.time()``); ``until`` when to stop
    (``time.time()``); ``rate`` operations per second (``None``: back to back); ``endpoint``
    the client's own bind address (``None``: the default, loopback).
    """

    workload: str
    members: tuple[tuple[str, str], ...]
    worker: int
    concurrency: int
    t0: float
    until: float
    seed: int
    reads: str = "consistent"
    keys: int = 5
    op_timeout: float = 2.0
    rate: float | None = None
    endpoint: str | None = None


class Conn:
    """One ``ra.Client`` and the members of the cluster, leader first once it is known."""

    def __init__(self, client: ra.Client, members: list[ra.ServerId], rng: random.Random,
                 timeout: float) -> None:
        self.client = client
        self.members = list(members)
        self.rng = rng
        self.timeout = timeout
        rng.shuffle(self.members)

    def loc(self) -> list[ra.ServerId]:
        return list(self.members)

    def note_leader(self, leader: ra.ServerId | None) -> None:
        if leader is not None and leader in self.members and self.members[0] != leader:
            self.members.remove(leader)
            self.members.insert(0, leader)

    def forget_leader(self) -> None:
        """After an unknown outcome the leader we knew may be gone: start from anywhere."""
        self.rng.shuffle(self.members)

    def command(self, cmd: Any) -> Any:
        reply, leader = self.client.process_command(self.loc(), cmd, timeout=self.timeout)
        self.note_leader(leader)
        return reply

    def consistent(self, query: Any) -> Any:
        result, leader = self.client.consistent_query(self.loc(), query, timeout=self.timeout)
        self.note_leader(leader)
        return result

    def local(self, query: Any) -> Any:
        member = self.rng.choice(self.members)
        return self.client.local_query(member, query, timeout=self.timeout)[1]


class _Workload(Protocol):
    def next_op(self, rng: random.Random) -> tuple[str, Any, Any]: ...
    def perform(self, conn: Conn, f: str, key: Any, value: Any) -> Any: ...


class _Register:
    """Random read / write / cas on keys ``0..keys-1`` (values 0..4, as Jepsen's)."""

    def __init__(self, spec: ClientSpec) -> None:
        if spec.reads not in READ_MODES:
            raise ValueError(f"reads must be one of {READ_MODES}, not {spec.reads!r}")
        self.keys = spec.keys
        self.reads = spec.reads

    def next_op(self, rng: random.Random) -> tuple[str, Any, Any]:
        key = rng.randrange(self.keys)
        f = rng.choice(("read", "write", "cas"))
        if f == "read":
            return f, key, None
        if f == "write":
            return f, key, rng.randrange(5)
        return f, key, [rng.randrange(5), rng.randrange(5)]

    def perform(self, conn: Conn, f: str, key: Any, value: Any) -> Any:
        if f == "write":
            conn.command(("write", key, value))
            return value
        if f == "cas":
            if conn.command(("cas", key, value[0], value[1])) is not True:
                raise Rejected()
            return value
        if self.reads == "command":
            return conn.command(("read", key))
        query = (_QMOD, "get", [key])
        return conn.consistent(query) if self.reads == "consistent" else conn.local(query)


class _Set:
    """Adds of unique integers (``seq * concurrency + worker``)."""

    def __init__(self, spec: ClientSpec) -> None:
        self.worker, self.concurrency, self.seq = spec.worker, spec.concurrency, 0

    def next_op(self, rng: random.Random) -> tuple[str, Any, Any]:
        e = self.seq * self.concurrency + self.worker
        self.seq += 1
        return "add", None, e

    def perform(self, conn: Conn, f: str, key: Any, value: Any) -> Any:
        conn.command(("add", value))
        return value


class _Counter:
    """Adds of 1; the ok value is the total the machine replied."""

    def __init__(self, spec: ClientSpec) -> None:
        pass

    def next_op(self, rng: random.Random) -> tuple[str, Any, Any]:
        return "add", None, 1

    def perform(self, conn: Conn, f: str, key: Any, value: Any) -> Any:
        return conn.command(("add", value))


_KINDS: dict[str, type[_Register | _Set | _Counter]] = {
    "register": _Register, "set": _Set, "counter": _Counter}


def new_workload(spec: ClientSpec) -> _Workload:
    """The generator/performer for ``spec.workload``; ``ValueError`` for an unknown name."""
    try:
        return _KINDS[spec.workload](spec)
    except KeyError:
        raise ValueError(f"unknown workload {spec.workload!r}; known: {WORKLOADS}") from None


def run_client(spec: ClientSpec, history: History, stop: _Event) -> dict[str, int]:
    """Run operations until ``spec.until`` or ``stop``; record them in ``history``.

    Returns a tally of the errors met, by class name. Never raises for an operation's error
    (each is recorded); a setup error (bad spec, no socket) propagates.
    """
    wl = new_workload(spec)
    rng = random.Random(spec.seed * 1_000_003 + spec.worker)
    members = [ra.ServerId(*m) for m in spec.members]
    errors: _Tally[str] = _Tally()
    process = spec.worker
    period = 1.0 / spec.rate if spec.rate else 0.0
    with ra.Client(spec.endpoint) as client:
        conn = Conn(client, members, rng, spec.op_timeout)
        next_at = time.monotonic()
        while not stop.is_set() and time.time() < spec.until:
            f, key, value = wl.next_op(rng)
            if _one_op(wl, conn, history, process, f, key, value, errors) == "info":
                process += spec.concurrency
                conn.forget_leader()
            if period:
                next_at += period
                stop.wait(max(0.0, min(next_at - time.monotonic(),
                                       spec.until - time.time())))
    return dict(errors)


def _one_op(wl: _Workload, conn: Conn, history: History, process: int, f: str, key: Any,
            value: Any, errors: _Tally[str]) -> str:
    """Invoke, perform and complete one operation; returns how it completed."""
    history.invoke(process, f, key, value)
    try:
        out = wl.perform(conn, f, key, value)
    except Rejected:
        history.fail(process, f, key, value)
        return "fail"
    except Exception as e:   # every error is an outcome to record
        errors[type(e).__name__] += 1
        kind = "fail" if f == "read" else classify(e)
        (history.fail if kind == "fail" else history.info)(process, f, key, value)
        return kind
    history.ok(process, f, key, out)
    return "ok"


def final_read(spec: ClientSpec, history: History, process: int,
               deadline: float) -> bool:
    """The set/counter final read: a ``("read",)`` command, retried until it answers or
    ``deadline`` (``time.monotonic()``) passes. Every attempt is recorded under ``process`` (a
    fresh process id). Returns whether a read succeeded."""
    members = [ra.ServerId(*m) for m in spec.members]
    with ra.Client(spec.endpoint) as client:
        conn = Conn(client, members, random.Random(spec.seed), spec.op_timeout)
        while time.monotonic() < deadline:
            history.invoke(process, "read", None, None)
            try:
                value = conn.command(("read",))
            except Exception:   # recorded; a read changes nothing: retry
                history.fail(process, "read", None, None)
                conn.forget_leader()
                continue
            history.ok(process, "read", None, value)
            return True
    return False


def client_process(spec: ClientSpec, history_path: str, stop: _Event) -> None:
    """Run a client with its own :class:`History` on the runner's time base, then save the
    history (JSON lines) to ``history_path`` and ``{"errors": {...}}`` to
    ``history_path + ".stats.json"``. Saves what it has even if the run is cut short."""
    history = History(clock=time.time, t0=spec.t0)
    errors: dict[str, int] = {}
    try:
        errors = run_client(spec, history, stop)
    finally:
        history.save(history_path)
        with open(history_path + ".stats.json", "w") as fh:
            json.dump({"errors": errors}, fh)


#: the command line of a client OS process: ``[python, -c, _BOOT, spec_json, history_path]``
CLIENT_BOOT = ("import sys; from ra.check.workloads import client_main; "
               "sys.exit(client_main(sys.argv[1:]))")


def client_argv(spec: ClientSpec, history_path: str) -> list[str]:
    """The command line that runs :func:`client_main` for ``spec`` in a fresh interpreter."""
    return [sys.executable, "-c", CLIENT_BOOT, json.dumps(asdict(spec)), history_path]


def client_main(argv: list[str]) -> int:
    """Entry point of a client OS process: ``argv = [spec_json, history_path]``. The process
    stops at ``spec.until`` or as soon as its stdin reaches EOF (the runner closed it, or died)
    and then saves its history (:func:`client_process`)."""
    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)   # stale replies: expected
    raw = json.loads(argv[0])
    raw["members"] = tuple(tuple(m) for m in raw["members"])
    spec = ClientSpec(**raw)
    stop = threading.Event()

    def watch_stdin() -> None:   # unbuffered: a daemon thread must hold no lock at exit
        while os.read(0, 4096):
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    client_process(spec, argv[1], stop)
    return 0
