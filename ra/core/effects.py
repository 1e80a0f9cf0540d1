"""Effects the core asks its shell to carry out, in order. Mirrors ra_server's ``effect()`` type.

The core never performs them itself; ``ra/server_proc.py`` (and the simulator) do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

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
    randomised: the bound on how long a cut-off leader keeps leading depends on it)."""

    short: bool = False
    at_once: bool = False
    check_quorum: bool = False


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


Effect = Union[
    SendRpc, Reply, Cast, Notify, NextEvent, StartElectionTimeout, StartHeartbeatTimeout,
    RecordLeaderMsg, MachineEffect, DeleteAndTerminate,
]

#: Effects that let the world observe the server's state: held back while a term or vote is not
#: yet durable (nothing is acknowledged or voted on before it is durable).
OUTBOUND = (SendRpc, Reply, Cast, Notify, MachineEffect, DeleteAndTerminate)
