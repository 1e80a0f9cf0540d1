"""Effects, in order: the server's (what the core asks its shell to carry out) and the machine's
(what a state machine's callbacks return). Mirrors ra_server's ``effect()`` and ra_machine's
``effect()`` types.

Every effect is a frozen dataclass. The core never performs them itself; ``ra/server/proc.py``
(and the simulator) do, dispatching on their types.

Machine effects: a machine builds them with :mod:`ra.effects` (``send_msg(...)`` etc.), with
these classes, or as ra-style tuples (``("send_msg", to, msg)``). :func:`machine_effects` is
the one validator: it takes a callback's result, turns tuples into the typed effects and raises
:class:`~ra.core.errors.InvalidEffect` on anything malformed (unknown kind, wrong arity, a field
of the wrong type); each class checks its own fields when built, so a typed effect is valid by
construction. The core calls it where it takes a machine's result: for ``apply`` a malformed
effect is handled as an exception from ``apply`` (``ra.core.machine.apply_machine``: the
command is a no-op on every member, the caller gets ``ra.MachineError``); for the other
callbacks (``state_enter``, ``tick``, ``snapshot_installed``, the function of a ``log`` effect)
that call's effects are dropped and the shell is told (:class:`BadMachineEffects`, logged).
Pure: no I/O.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ra.core.errors import InvalidEffect
from ra.core.frozen import frozen

__all__ = [
    "SendRpc", "DurableReply", "Reply", "Cast", "Notify", "NextEvent", "StartElectionTimeout",
    "StartHeartbeatTimeout", "RecordLeaderMsg", "DeleteAndTerminate", "BadMachineEffects",
    "SendMsg", "Monitor", "Demonitor", "ModCall", "Timer", "Log", "ReleaseCursor",
    "PromoteCheckpoint", "Checkpoint", "Aux", "Append", "GarbageCollection",
    "MachineEffect", "SHELL_MACHINE_EFFECTS", "machine_effects", "InvalidEffect",
    "Effect", "OUTBOUND",
]


@frozen
class SendRpc:
    """Send ``msg`` to peer server ``to`` (cast; the network may lose it)."""

    to: Any
    msg: Any


@frozen
class DurableReply:
    """A follower's ``AppendEntriesReply`` ``msg`` for peer ``to`` that claims the write just
    made, ending at ``msg.last_index`` with ``msg.last_term``, durable: a shell may hand it to
    that write's own writer (the WAL) to send the moment its sync is done, one process hop
    before the follower could (no ra equivalent: there, the WAL tells the follower, which
    replies). Never sent before that write is durable, never for another write. Advisory: a
    shell that does not carry it out drops it; the follower replies after ``Written`` unless
    that notice says ``replied``. ``entries``: how many entries the write holds (the real
    shell carries only one-entry writes': BENCHMARKS.md, session 24)."""

    to: Any
    msg: Any
    entries: int = 1


@frozen
class Reply:
    """Answer a pending call ``frm`` with ``value``."""

    frm: Any
    value: Any


@frozen
class Cast:
    """Send a plain message to a client process (e.g. a ``rejected`` ra event)."""

    to: Any
    msg: Any


@frozen
class Notify:
    """Deliver ``("applied", [(corr, reply), ...])`` to ``pid`` as one ra event from ``leader``."""

    pid: Any
    leader: Any
    applied: list[tuple[Any, Any]]


@frozen
class NextEvent:
    """Feed ``event`` back to the core once the events already queued are handled."""

    event: Any


@frozen
class StartElectionTimeout:
    """(Re)arm the election timer; the shell picks a random delay (the core has no RNG).

    ``short``: the leader is known to be gone (``LeaderDown``): campaign soon, yet not all at
    once, so that the members that all noticed at the same moment do not split the vote (the
    shell staggers them; see ``ra.server.proc``). ``at_once``: short, without waiting for our
    turn in that order: we just refused a candidate that therefore cannot win.
    ``check_quorum``: a leader's quorum check, exactly one election timeout from now (not
    randomised: the bound on how long a cut-off leader keeps leading depends on it).
    ``since_leader``: a follower that heard its leader since the timer was armed; the new
    timeout counts from the leader's *last* message (re-arming from now would make a silent
    leader suspected only up to 4T after it fell silent).
    ``turn``: for ``short`` and ``since_leader``, this member's rank among the members that may
    campaign (the lost leader left out, ordered by id): members that all lose their leader at
    the same moment campaign one step (T/5) apart in that order, so the first usually wins
    before the next starts instead of splitting the vote. Delays: ``short``:
    ``turn*T/5 + U(0, T/20)``; ``since_leader``: the same, counted from one election timeout
    after the leader's last message (or from now if that is past); ``at_once``:
    ``U(0, T/20)``; otherwise ``U(T, 2T)``.
    Quiet when idle (``ra.core.server``): a quiet follower of an unsuspected leader and an idle
    leader arm no election timer at all; a timer already armed fires once more, to no effect
    (no effect cancels it: one wake-up)."""

    short: bool = False
    at_once: bool = False
    check_quorum: bool = False
    since_leader: bool = False
    turn: int = 0


@frozen
class StartHeartbeatTimeout:
    """(Re)arm the leader's heartbeat tick, ``periods`` heartbeat periods from now (an idle quiet
    leader arms none; one whose only lagging peers are silent arms a longer one:
    ``ra.core.server``, "Quiet when idle")."""

    periods: int = 1


@frozen
class RecordLeaderMsg:
    """A message from ``leader_id`` arrived: the shell monitors it for fast failure detection."""

    leader_id: Any


@frozen
class DeleteAndTerminate:
    """The cluster's end-of-life entry was applied: stop this server and delete its data."""


@frozen
class BadMachineEffects:
    """The machine's ``callback`` (``state_enter``, ``tick``, ``snapshot_installed``, ``log``)
    returned a malformed effect: its effects were dropped, all of them; the shell logs
    ``reason``. (From ``apply`` a malformed effect is a machine error instead.)"""

    callback: str
    reason: str


# --- machine effects (ra_machine's effect()) ---------------------------------------------------
#
# Unless noted they run on the leader only (a new leader re-creates its monitors and timers in
# ``state_enter``); the core carries out ``ReleaseCursor``, ``PromoteCheckpoint``,
# ``Checkpoint`` (every member), ``Append`` and ``Log`` (leader) itself, and passes the others
# to the shell. ``as_tuple()`` gives ra's tuple spelling, which ``machine_effects`` reads back.

#: ``send_msg`` options ra knows; only ``ra_event`` changes anything here
_SEND_OPTIONS = frozenset({"ra_event", "cast", "local"})
_KINDS = ("process", "node")


def _bad(effect: Any, reason: str) -> InvalidEffect:
    return InvalidEffect(effect, reason)


def _check_index(effect: Any, x: Any, what: str = "index") -> None:
    if type(x) is not int or x < 0:
        raise _bad(effect, f"{what} must be an int >= 0, not {x!r}")


def _as_tuple(effect: Any, field: str, x: Any) -> tuple[Any, ...]:
    """``x`` as a tuple (a list is taken, as ra's lists are); anything else is refused."""
    if type(x) is tuple:
        return x
    if type(x) is list:
        return tuple(x)
    raise _bad(effect, f"{field} must be a list or tuple, not {type(x).__name__}")


@frozen
class SendMsg:
    """Cast ``msg`` to the client mailbox address ``to`` (``Client.address``); with the
    ``"ra_event"`` option it arrives as ``RaEvent(leader, ("machine", msg))``. ra's
    ``{send_msg, To, Msg[, Options]}``; options among ``ra_event``, ``cast``, ``local``."""

    to: str
    msg: Any
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.to) is not str:
            raise _bad(self, f"to must be a mailbox address (str), not {type(self.to).__name__}")
        opts = _as_tuple(self, "options", self.options)
        if not all(type(o) is str and o in _SEND_OPTIONS for o in opts):
            raise _bad(self, f"options must be among {sorted(_SEND_OPTIONS)}, not {opts!r}")
        object.__setattr__(self, "options", opts)

    def as_tuple(self) -> tuple[Any, ...]:
        if self.options:
            return ("send_msg", self.to, self.msg, self.options)
        return ("send_msg", self.to, self.msg)


@frozen
class Monitor:
    """``kind`` ``"process"``: the machine later gets ``("down", target, "noproc")`` as a command
    when the client mailbox ``target`` is gone; ``"node"``: ``("nodedown", target)`` /
    ``("nodeup", target)``."""

    kind: str
    target: str

    def __post_init__(self) -> None:
        _check_monitor(self, self.kind, self.target)

    def as_tuple(self) -> tuple[Any, ...]:
        return ("monitor", self.kind, self.target)


@frozen
class Demonitor:
    """Stop a ``Monitor``."""

    kind: str
    target: str

    def __post_init__(self) -> None:
        _check_monitor(self, self.kind, self.target)

    def as_tuple(self) -> tuple[Any, ...]:
        return ("demonitor", self.kind, self.target)


def _check_monitor(effect: Any, kind: Any, target: Any) -> None:
    if kind not in _KINDS:
        raise _bad(effect, f"kind must be 'process' or 'node', not {kind!r}")
    if type(target) is not str:
        raise _bad(effect, f"target must be a str (a mailbox address or a node), not "
                           f"{type(target).__name__}")


@frozen
class ModCall:
    """Call ``f(*args)`` in the leader's process, ``path`` being ``"pkg.mod:f"``."""

    path: str
    args: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        mod, sep, name = self.path.partition(":") if type(self.path) is str else ("", "", "")
        if not (mod and sep and name):
            raise _bad(self, f"path must be 'pkg.mod:function', not {self.path!r}")
        object.__setattr__(self, "args", _as_tuple(self, "args", self.args))

    def as_tuple(self) -> tuple[Any, ...]:
        return ("mod_call", self.path, list(self.args))


@frozen
class Timer:
    """After ``ms`` the machine gets ``("timeout", name)`` as a command; ``ms=None`` cancels
    (ra's ``infinity``, also accepted in the tuple form). A timer set again replaces it."""

    name: Any
    ms: int | None

    def __post_init__(self) -> None:
        try:
            hash(self.name)
        except TypeError:
            raise _bad(self, f"name must be hashable, not {type(self.name).__name__}") from None
        if self.ms is not None:
            _check_index(self, self.ms, "ms")

    def as_tuple(self) -> tuple[Any, ...]:
        return ("timer", self.name, self.ms)


@frozen
class Log:
    """Read the commands at ``indexes`` back; ``fun(commands)`` returns more effects."""

    indexes: tuple[int, ...]
    fun: Callable[[list[Any]], Any]

    def __post_init__(self) -> None:
        idxs = _as_tuple(self, "indexes", self.indexes)
        for i in idxs:
            _check_index(self, i)
        if not callable(self.fun):
            raise _bad(self, f"fun must be callable, not {type(self.fun).__name__}")
        object.__setattr__(self, "indexes", idxs)

    def as_tuple(self) -> tuple[Any, ...]:
        return ("log", list(self.indexes), self.fun)


@frozen
class ReleaseCursor:
    """Every member: a snapshot of ``state`` as of ``index`` may replace the log up to it
    (ra's ``{release_cursor, Index, State}``)."""

    index: int
    state: Any

    def __post_init__(self) -> None:
        _check_index(self, self.index)

    def as_tuple(self) -> tuple[Any, ...]:
        return ("release_cursor", self.index, self.state)


@frozen
class PromoteCheckpoint:
    """Every member: the entries up to ``index`` are no longer needed; the newest checkpoint at
    or below it becomes the snapshot (nothing happens on a member that holds none). ra's
    ``{release_cursor, Index}``: a release cursor without a state."""

    index: int

    def __post_init__(self) -> None:
        _check_index(self, self.index)

    def as_tuple(self) -> tuple[Any, ...]:
        return ("release_cursor", self.index)


@frozen
class Checkpoint:
    """Every member keeps ``state`` as of ``index`` as a checkpoint, without truncating the log
    (ra's ``{checkpoint, Index, State}``)."""

    index: int
    state: Any

    def __post_init__(self) -> None:
        _check_index(self, self.index)

    def as_tuple(self) -> tuple[Any, ...]:
        return ("checkpoint", self.index, self.state)


@frozen
class Aux:
    """Every member calls ``handle_aux(role, "cast", cmd, aux_state, state)``."""

    cmd: Any

    def as_tuple(self) -> tuple[Any, ...]:
        return ("aux", self.cmd)


@frozen
class Append:
    """The leader appends ``cmd`` as a new command; ``reply_mode``: ``None`` (no answer) or
    ``("notify", correlation, pid)`` (``pid`` a client mailbox address gets it as an
    ``applied`` notification). A machine holds no caller to ``await`` for."""

    cmd: Any
    reply_mode: Any = None

    def __post_init__(self) -> None:
        m = self.reply_mode
        if not (m is None or (type(m) is tuple and len(m) == 3 and m[0] == "notify"
                              and type(m[2]) is str)):
            raise _bad(self, f"reply_mode must be None or ('notify', correlation, pid), "
                             f"not {m!r}")

    def as_tuple(self) -> tuple[Any, ...]:
        return ("append", self.cmd) if self.reply_mode is None else \
            ("append", self.cmd, self.reply_mode)


@frozen
class GarbageCollection:
    """Every member runs a full garbage collection."""

    def as_tuple(self) -> tuple[Any, ...]:
        return ("garbage_collection",)


MachineEffect = (
    SendMsg | Monitor | Demonitor | ModCall | Timer | Log | ReleaseCursor | PromoteCheckpoint
    | Checkpoint | Aux | Append | GarbageCollection
)
_MACHINE_TYPES = frozenset({SendMsg, Monitor, Demonitor, ModCall, Timer, Log, ReleaseCursor,
                            PromoteCheckpoint, Checkpoint, Aux, Append, GarbageCollection})
#: the machine effects the core passes on for its shell to carry out
SHELL_MACHINE_EFFECTS = (SendMsg, Monitor, Demonitor, ModCall, Timer, Aux, GarbageCollection)

#: ra's tuple spellings: tag -> the field counts it takes after the tag
_ARITY: dict[str, tuple[int, ...]] = {
    "send_msg": (2, 3), "monitor": (2,), "demonitor": (2,), "mod_call": (2,), "timer": (2,),
    "log": (2,), "release_cursor": (1, 2), "checkpoint": (2,), "aux": (1,), "append": (1, 2),
    "garbage_collection": (0,),
}


def _from_tuple(t: tuple[Any, ...]) -> MachineEffect:
    tag = t[0] if t else None
    n = len(t) - 1
    arity = _ARITY.get(tag) if type(tag) is str else None
    if arity is None:
        raise _bad(t, f"unknown effect (known: {', '.join(sorted(_ARITY))})")
    if n not in arity:
        raise _bad(t, f"{tag} takes {' or '.join(map(str, arity))} fields, not {n}")
    try:
        if tag == "send_msg":
            opts = () if n == 2 else (t[3],) if type(t[3]) is str else t[3]
            return SendMsg(t[1], t[2], opts)
        if tag == "monitor":
            return Monitor(t[1], t[2])
        if tag == "demonitor":
            return Demonitor(t[1], t[2])
        if tag == "mod_call":
            return ModCall(t[1], t[2])
        if tag == "timer":
            return Timer(t[1], None if t[2] == "infinity" else t[2])
        if tag == "log":
            return Log(t[1], t[2])
        if tag == "release_cursor":
            return ReleaseCursor(t[1], t[2]) if n == 2 else PromoteCheckpoint(t[1])
        if tag == "checkpoint":
            return Checkpoint(t[1], t[2])
        if tag == "aux":
            return Aux(t[1])
        if tag == "append":
            return Append(t[1], t[2] if n == 2 else None)
        return GarbageCollection()
    except InvalidEffect as e:
        raise _bad(t, e.reason) from None


def machine_effects(raw: Any) -> list[MachineEffect]:
    """The one validator of machine effects: what a machine callback returned (a list of
    effects, a single effect, or None) as a list of typed effects, each an instance of the
    classes above or an ra-style tuple. Raises :class:`InvalidEffect` on the first malformed
    one. Pure and deterministic: every member gets the same answer for the same result."""
    if raw is None:
        return []
    if type(raw) is list:
        items = raw
    elif type(raw) in _MACHINE_TYPES or (type(raw) is tuple and raw and type(raw[0]) is str):
        items = [raw]
    elif type(raw) is tuple:
        items = list(raw)
    else:
        raise _bad(raw, "effects must be a list of effects")
    out: list[MachineEffect] = []
    for e in items:
        t = type(e)
        if t in _MACHINE_TYPES:
            out.append(e)
        elif t is tuple:
            out.append(_from_tuple(e))
        else:
            raise _bad(e, "not an effect (a class of ra.core.effects, as ra.effects builds "
                          "them, or an ra-style tuple)")
    return out


Effect = (
    SendRpc | DurableReply | Reply | Cast | Notify | NextEvent | StartElectionTimeout | StartHeartbeatTimeout
    | RecordLeaderMsg | DeleteAndTerminate | BadMachineEffects | SendMsg | Monitor | Demonitor
    | ModCall | Timer | Aux | GarbageCollection
)

#: Effects that let the world observe the server's state: held back while a term or vote is not
#: yet durable (nothing is acknowledged or voted on before it is durable).
OUTBOUND = (SendRpc, DurableReply, Reply, Cast, Notify, DeleteAndTerminate) + SHELL_MACHINE_EFFECTS
