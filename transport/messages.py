"""No ra equivalent (BEAM matches patterns; a bad message there crashes one process, which its
supervisor restarts). The transport's own messages, and the shape checks every process uses at
its door.

Messages of the node daemon's name registry (:mod:`transport.registry`) and of the node failure
detector (:mod:`transport.failure_detector`) are frozen slotted dataclasses registered with the
codec (codes 40..49 and 100..109, fixed forever: they cross nodes). Each class has exactly ONE validator,
built with :func:`fields` from one predicate per field; :func:`checker` joins the validators of
every message a process accepts into its single ``check(msg) -> None | reason``.

Contract of a ``check``:

* ``None`` for a message whose every field has the type and range its handler relies on; then
  no handler may raise because of the message's shape;
* otherwise a short, *bounded* reason (``"unknown_message"``, ``"bad_field:Class.field"``,
  ``"bad_rule:Class"``), fit to be a counter name: each process drops such a message, counts it
  per reason, and answers a call with ``("error", "bad_request", reason)``;
* it never raises, whatever it is given.

The predicates (:func:`valid_endpoint`, :func:`valid_node`, ...) are shared with ``ra`` and
``wal``, which keep their own messages in their own packages.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transport import codec

__all__ = [
    "RegRegister", "RegUnregister", "RegWhereis", "RegRegistered", "RegResolve", "RegResolved",
    "RegRelay",
    "FdHeartbeat", "FdSubscribe", "FdUnsubscribe", "FdWatch", "FdStatus", "NodeEvent",
    "REGISTRY_MSGS", "REGISTRY_CASTS", "FD_CALLS", "CODES", "CHECKS", "check",
    "fields", "checker", "Check",
    "valid_endpoint", "valid_node", "path_component", "is_str", "nonempty_str", "nat", "nat64",
    "pos_int", "is_bool",
    "any_term", "opt", "one_of", "list_of", "dict_of", "tuple_of", "sid", "pid", "BAD_REQUEST",
]

#: The tag of the error reply to a malformed call: ``("error", BAD_REQUEST, reason)``.
BAD_REQUEST = "bad_request"

Check = Callable[[Any], "str | None"]
Pred = Callable[[Any], bool]

# --- predicates -------------------------------------------------------------------------------

_HOST = r"(?:[A-Za-z0-9_][A-Za-z0-9._-]{0,252}|\[[0-9A-Fa-f:.]{2,45}\])"
_NODE_RE = re.compile(_HOST + r":([0-9]{1,5})")
_IPC_MAX = 107     # sun_path on Linux, minus the NUL


def valid_node(x: Any) -> bool:
    """A node name as daemons spell themselves: ``"host:port"`` (port 1..65535), or a daemon
    endpoint (``tcp://host:port``)."""
    if type(x) is not str:
        return False
    if x.startswith("tcp://"):
        x = x[6:]
    m = _NODE_RE.fullmatch(x)
    return m is not None and 0 < int(m.group(1)) < 65536


#: endpoints found valid (a reply address comes with every pipelined command: the regex runs
#: once per address, not per message); emptied when full, so it stays bounded
_valid_endpoints: set[str] = set()


def valid_endpoint(x: Any) -> bool:
    """A mailbox address one can connect to: ``tcp://host:port`` or ``ipc:///path``."""
    if type(x) is not str:
        return False
    if x in _valid_endpoints:
        return True
    if x.startswith("tcp://"):
        m = _NODE_RE.fullmatch(x, 6)
        ok = m is not None and 0 < int(m.group(1)) < 65536
    elif x.startswith("ipc://"):
        path = x[6:]
        ok = 0 < len(path.encode("utf-8", "replace")) <= _IPC_MAX and "\x00" not in path
    else:
        return False
    if ok:
        if len(_valid_endpoints) >= 4096:
            _valid_endpoints.clear()
        _valid_endpoints.add(x)
    return ok


def path_component(x: Any) -> bool:
    """A str usable as one file or directory name: non-empty, no ``/`` or NUL, not starting
    with ``.``, at most 255 bytes (server uids name their data directories)."""
    return (type(x) is str and x != "" and "/" not in x and "\x00" not in x
            and not x.startswith(".") and len(x.encode("utf-8", "replace")) <= 255)


def is_str(x: Any) -> bool:
    return type(x) is str


def nonempty_str(x: Any) -> bool:
    return type(x) is str and x != ""


def nat(x: Any) -> bool:
    return type(x) is int and x >= 0


def nat64(x: Any) -> bool:
    """An int that fits the u64 fields of the disk formats (indexes, terms)."""
    return type(x) is int and 0 <= x < (1 << 63)


def pos_int(x: Any) -> bool:
    return type(x) is int and x > 0


def is_bool(x: Any) -> bool:
    return type(x) is bool


def any_term(x: Any) -> bool:
    return True


def pid(x: Any) -> bool:
    """An OS pid (``os.kill`` takes it without overflowing)."""
    return type(x) is int and 0 < x < (1 << 22)


def sid(x: Any) -> bool:
    """A server id: ``ServerId(name, node)`` or a ``(name, node)`` tuple of non-empty str."""
    return (isinstance(x, tuple) and len(x) == 2 and type(x[0]) is str and x[0] != ""
            and type(x[1]) is str and x[1] != "")


def opt(p: Pred) -> Pred:
    return lambda x: x is None or p(x)


def one_of(*values: Any) -> Pred:
    vs = frozenset(values)
    return lambda x: type(x) is str and x in vs


def list_of(p: Pred, *, nonempty: bool = False, tuples: bool = False) -> Pred:
    kinds = (list, tuple) if tuples else (list,)
    return lambda x: type(x) in kinds and (bool(x) or not nonempty) and all(p(v) for v in x)


def tuple_of(*ps: Pred) -> Pred:
    n = len(ps)
    return lambda x: (type(x) in (tuple, list) and len(x) == n
                      and all(p(v) for p, v in zip(ps, x)))


def dict_of(kp: Pred, vp: Pred) -> Pred:
    return lambda x: type(x) is dict and all(kp(k) and vp(v) for k, v in x.items())


# --- validators -------------------------------------------------------------------------------

def fields(cls: type, *preds: Pred, rule: Pred | None = None) -> Check:
    """The validator of ``cls``: one predicate per field, in declaration order, then an optional
    ``rule`` across fields."""
    names = [f.name for f in dataclasses.fields(cls)]
    if len(names) != len(preds):
        raise TypeError(f"{cls.__name__}: {len(names)} fields, {len(preds)} predicates")
    pairs = tuple(zip(names, preds))
    tag = cls.__name__

    def check(msg: Any) -> str | None:
        for name, ok in pairs:
            if not ok(getattr(msg, name)):
                return f"bad_field:{tag}.{name}"
        if rule is not None and not rule(msg):
            return f"bad_rule:{tag}"
        return None
    return check


def checker(*tables: dict[type, Check]) -> Check:
    """One ``check`` for every message type of ``tables`` (a type appears in one table only)."""
    table: dict[type, Check] = {}
    for t in tables:
        for cls, fn in t.items():
            if cls in table and table[cls] is not fn:
                raise ValueError(f"two validators for {cls.__name__}")
            table[cls] = fn

    def check(msg: Any) -> str | None:
        fn = table.get(type(msg))
        if fn is None:
            return "unknown_message"
        try:
            return fn(msg)
        except Exception:       # a predicate tripped over something exotic: malformed anyway
            return f"malformed:{type(msg).__name__}"
    return check


# --- the name registry (transport.registry) ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class RegRegister:
    """Call: bind ``name`` to ``endpoints`` (preferred first) for process ``pid`` ->
    ``"ok"`` | ``("error", "already_registered", endpoints)``."""

    name: str
    endpoints: list[str]
    pid: int


@dataclass(frozen=True, slots=True)
class RegUnregister:
    """Call: forget ``name`` -> ``"ok"``."""

    name: str


@dataclass(frozen=True, slots=True)
class RegWhereis:
    """Call: where ``name`` is -> endpoints (a list) or ``None``."""

    name: str


@dataclass(frozen=True, slots=True)
class RegRegistered:
    """Call: every live name -> ``{name: endpoints}``."""


@dataclass(frozen=True, slots=True)
class RegResolve:
    """Cast: where ``name`` is, answered by a :class:`RegResolved` cast to ``reply_to``. For a
    process that must not wait for the daemon (:class:`transport.registry.Resolver`); ``node``
    is the daemon's node as the asker spells it, echoed back so the answer matches the
    question."""

    name: str
    node: str
    reply_to: str


@dataclass(frozen=True, slots=True)
class RegRelay:
    """Cast to the asker's *own* daemon: resolve ``name`` on the other node ``node`` for me.
    The daemon casts a :class:`RegResolve` to ``node``'s daemon over the connection the two
    daemons keep anyway (their failure detectors), takes its :class:`RegResolved`, and casts it
    on to ``reply_to`` (and to every other asker of the same name meanwhile): the asker
    opens no connection to the other node's daemon, nor that daemon one back to it. Never
    relayed twice: the daemon sends a plain ``RegResolve``."""

    name: str
    node: str
    reply_to: str


@dataclass(frozen=True, slots=True)
class RegResolved:
    """Cast from a daemon, the answer to :class:`RegResolve`: ``name`` on ``node`` listens on
    ``endpoints`` (preferred first), or ``None``: not registered (or its process died)."""

    name: str
    node: str
    endpoints: list[str] | None


# --- the node failure detector (transport.failure_detector) -----------------------------------

@dataclass(frozen=True, slots=True)
class FdHeartbeat:
    """Cast between daemons: ``node`` is alive."""

    node: str


@dataclass(frozen=True, slots=True)
class FdSubscribe:
    """Call: cast :class:`NodeEvent` to ``addr`` from now on -> ``{node: status}``."""

    addr: str


@dataclass(frozen=True, slots=True)
class FdUnsubscribe:
    """Call -> ``"ok"``."""

    addr: str


@dataclass(frozen=True, slots=True)
class FdWatch:
    """Call: start heartbeating with ``node`` -> ``"ok"``."""

    node: str


@dataclass(frozen=True, slots=True)
class FdStatus:
    """Call -> ``{node: "up" | "down" | "unknown"}``."""


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """Cast from a daemon's failure detector to its subscribers: ``node`` went ``"nodeup"`` or
    ``"nodedown"``."""

    event: str
    node: str


#: the registry's calls; its casts apart: questions answered by a cast back, and the answer
#: a daemon gets to a question it relayed (``RegResolved``)
REGISTRY_MSGS = (RegRegister, RegUnregister, RegWhereis, RegRegistered)
REGISTRY_CASTS = (RegResolve, RegRelay, RegResolved)
#: at most this many endpoints in a RegResolved (a process listens on two or three)
_MAX_ENDPOINTS = 16
_endpoints = list_of(valid_endpoint, nonempty=True)
FD_CALLS = (FdSubscribe, FdUnsubscribe, FdWatch, FdStatus)

CODES: dict[int, type] = {
    40: RegRegister, 41: RegUnregister, 42: RegWhereis, 43: RegRegistered,
    44: FdHeartbeat, 45: FdSubscribe, 46: FdUnsubscribe, 47: FdWatch, 48: FdStatus,
    49: NodeEvent,
    # 100..109: the transport's second range (40..49 is full)
    100: RegResolve, 101: RegResolved, 102: RegRelay,
}

#: One validator per message type of this package.
CHECKS: dict[type, Check] = {
    RegRegister: fields(RegRegister, nonempty_str, list_of(valid_endpoint, nonempty=True), pid),
    RegUnregister: fields(RegUnregister, nonempty_str),
    RegWhereis: fields(RegWhereis, nonempty_str),
    RegRegistered: fields(RegRegistered),
    RegResolve: fields(RegResolve, nonempty_str, valid_node, valid_endpoint),
    RegRelay: fields(RegRelay, nonempty_str, valid_node, valid_endpoint),
    RegResolved: fields(RegResolved, nonempty_str, valid_node, opt(
        lambda x: type(x) is list and len(x) <= _MAX_ENDPOINTS and _endpoints(x))),
    FdHeartbeat: fields(FdHeartbeat, valid_node),
    FdSubscribe: fields(FdSubscribe, valid_endpoint),
    FdUnsubscribe: fields(FdUnsubscribe, is_str),
    FdWatch: fields(FdWatch, valid_node),
    FdStatus: fields(FdStatus),
    NodeEvent: fields(NodeEvent, one_of("nodeup", "nodedown"), valid_node),
}

#: ``check`` for the messages of this package alone.
check = checker(CHECKS)

_done = codec.registered()
for _code, _cls in CODES.items():
    if _done.get(_code) is not _cls:
        codec.register_dataclass(_cls, _code)
