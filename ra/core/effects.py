"""Effects the core asks its shell to carry out, in order. Mirrors ra_server's ``effect()`` type.

The core never performs them itself; ``ra/server_proc.py`` (and the simulator) do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "SendRpc", "Reply", "Cast", "Notify", "NextEvent", "StartElectionTimeout",
    "StartHeartbeatTimeout", "RecordLeaderMsg", "MachineEffect", "DeleteAndTerminate",
    "Effect", "OUTBOUND",
]


@dataclass(frozen=True, slots=True)
class SendRpc:
    """Send ``msg`` to peer server ``to`` (cast; the network may lose it)."""

    to: Any
    msg: Any


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer a pending call ``frm`` with ``value``."""

    frm: Any
    value: Any


@dataclass(frozen=True, slots=True)
class Cast:
    """Send a plain message to a client process (e.g. a ``rejected`` ra event)."""

    to: Any
    msg: Any


@dataclass(frozen=True, slots=True)
class Notify:
    """Deliver ``("applied", [(corr, reply), ...])`` to ``pid`` as one ra event from ``leader``."""

    pid: Any
    leader: Any
    applied: list[tuple[Any, Any]]


@dataclass(frozen=True, slots=True)
class NextEvent:
    """Feed ``event`` back to the core once the events already queued are handled."""

    event: Any


@dataclass(frozen=True, slots=True)
class StartElectionTimeout:
    """(Re)arm the election timer; the shell picks a random delay (the core has no RNG).

    ``short``: the leader is known to be gone (``LeaderDown``): campaign soon, yet not all at
    once, so that the members that all noticed at the same moment do not split the vote (the
    shell staggers them; see ``ra.server_proc``). ``at_once``: short, without waiting for our
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
    ``U(0, T/20)``; otherwise ``U(T, 2T)``."""

    short: bool = False
    at_once: bool = False
    check_quorum: bool = False
    since_leader: bool = False
    turn: int = 0


@dataclass(frozen=True, slots=True)
class StartHeartbeatTimeout:
    """(Re)arm the leader's heartbeat tick."""


@dataclass(frozen=True, slots=True)
class RecordLeaderMsg:
    """A message from ``leader_id`` arrived: the shell monitors it for fast failure detection."""

    leader_id: Any


@dataclass(frozen=True, slots=True)
class MachineEffect:
    """An effect returned by the state machine's ``apply`` (send_msg, monitor, timer...)."""

    effect: Any


@dataclass(frozen=True, slots=True)
class DeleteAndTerminate:
    """The cluster's end-of-life entry was applied: stop this server and delete its data."""


Effect = (
    SendRpc | Reply | Cast | Notify | NextEvent | StartElectionTimeout | StartHeartbeatTimeout
    | RecordLeaderMsg | MachineEffect | DeleteAndTerminate
)

#: Effects that let the world observe the server's state: held back while a term or vote is not
#: yet durable (nothing is acknowledged or voted on before it is durable).
OUTBOUND = (SendRpc, Reply, Cast, Notify, MachineEffect, DeleteAndTerminate)
