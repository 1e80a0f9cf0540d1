"""Builders for core unit tests (the ra_server_SUITE style: build a state, call step, assert the
exact effects)."""
from __future__ import annotations

from typing import Any

from ra.core import server
from ra.core.messages import MetaWritten, Written
from ra.testing.memory import MemoryLog, MemoryMeta

N1, N2, N3 = ("n1", "127.0.0.1:1"), ("n2", "127.0.0.1:2"), ("n3", "127.0.0.1:3")
CLUSTER = (N1, N2, N3)


class Counter:
    """A machine that adds integers; `("snap", k)` asks for a release cursor."""

    def init(self, config: Any) -> int:
        return 0

    def apply(self, meta: dict[str, Any], cmd: Any, state: int) -> tuple[Any, ...]:
        new = state + cmd
        return new, new


#: the core module each state class belongs to: a mutant's (``core=mutants.load(name)``) states
#: are stepped by that mutant's code
_CORES: dict[type, Any] = {server.ServerState: server}


def new_server(sid: Any = N1, members: tuple[Any, ...] = CLUSTER, machine: Any = None,
               log: MemoryLog | None = None, meta: MemoryMeta | None = None,
               core: Any = server, **kw: Any) -> server.ServerState:
    cfg = core.ServerConfig(id=sid, uid=str(sid[0]), cluster_name="test",
                            initial_members=members, machine=machine or Counter(),
                            log=log or MemoryLog(), meta=meta or MemoryMeta(), **kw)
    _, s, _ = core.init(cfg)
    _CORES[type(s)] = core
    return s


def step(s: server.ServerState, msg: Any) -> list[Any]:
    _, _, effects = _CORES[type(s)].step(s.role, msg, s)
    return effects


def sync(s: server.ServerState) -> list[Any]:
    """Make the server's pending log and meta writes durable; feed the notices back."""
    out: list[Any] = []
    for ev in s.meta.sync():
        out += step(s, ev)
    for ev in s.log.sync():
        out += step(s, ev)
    return out


def with_log(s: server.ServerState, entries: list[tuple[int, int, Any]], term: int) -> None:
    """Give a follower a durable log and a term (as if recovered)."""
    s.log.write(entries)
    for ev in s.log.sync():
        s.log.handle_written(ev)
    s.current_term = term
    s.meta.store(term, None)
    s.meta.sync()
    s.brand_new = False


def make_leader(s: server.ServerState) -> list[Any]:
    """Elect ``s`` (3-member cluster) by feeding it the pre-votes and votes it asks for."""
    from ra.core.messages import PreVoteResult, RequestVoteResult, TriggerElection
    step(s, TriggerElection())
    tok = s.pre_vote_token
    step(s, PreVoteResult(s.current_term + 1, tok, True, N2))
    assert s.role == "candidate"
    step(s, MetaWritten(s.meta_seq))
    s.meta.sync()
    eff = step(s, RequestVoteResult(s.current_term, True, N2))
    assert s.role == "leader"
    return eff


__all__ = ["N1", "N2", "N3", "CLUSTER", "Counter", "new_server", "step", "sync", "with_log",
           "make_leader", "Written"]
