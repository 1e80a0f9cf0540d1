"""Bad input inside a running simulated cluster: a malformed or unknown message handed to the
core is dropped (never raises out of ``step``, never changes state), and the cluster carries on
with every checker on.

Issue 2, "Bad input" (core bug #3 of the simulator, fixed in 52209e5).
"""
from __future__ import annotations

import copy
from typing import Any

import pytest

from ra.core import server
from ra.core.messages import (
    AppendEntriesReply, AppendEntriesRpc, HeartbeatRpc, InstallSnapshotRpc, PreVoteRpc,
    RequestVoteRpc, Written,
)
from ra.testing.sim import SimCluster

MALFORMED: list[Any] = [
    None, 42, "append_entries", ("junk",), object(), b"\x00\xff",
    AppendEntriesRpc(term="x", leader_id=None, leader_commit=None, prev_log_index=None,
                     prev_log_term=None, entries=None),
    AppendEntriesRpc(term=10**6, leader_id=("s9", "sim"), leader_commit=0, prev_log_index=-5,
                     prev_log_term=0, entries=[("not", "an", "entry")]),
    AppendEntriesReply(term=None, success="yes", next_index="a", last_index=None,
                       last_term=None, from_id=None),
    RequestVoteRpc(term=None, candidate_id=5, last_log_index="a", last_log_term=[]),
    PreVoteRpc(term="t", token=None, candidate_id=None, last_log_index=None, last_log_term=None),
    HeartbeatRpc(query_index="q", term=None, leader_id=None),
    InstallSnapshotRpc(term=None, leader_id=None, meta=None, chunk_state=None, data=None),
    Written(term=None, from_idx="a", to_idx=None),
]


def _fingerprint(sim: SimCluster, sid: Any) -> Any:
    s = sim.servers[sid]
    ov = server.overview(s.state)
    return (s.state.role, ov, s.log.last_index_term(), s.log.last_written(), s.meta.fetch(),
            copy.deepcopy(s.state.machine_state))


@pytest.mark.parametrize("seed", [0, 1])
def test_malformed_messages_are_dropped_mid_run(seed: int) -> None:
    sim = SimCluster(seed, 3, "calm", auto_faults=False)
    sim.run_until(400, lambda: sim.current_leader() is not None)
    sim.submit("w1")
    sim.run_until(sim.now + 300, lambda: bool(sim.clients["w1"].results))
    for sid in sim.servers:
        for bad in MALFORMED:
            s = sim.servers[sid]
            before = _fingerprint(sim, sid)
            role, state, effects = server.step(s.role, bad, s.state)
            assert (role, effects) == (before[0], []), f"{sid.name} acted on {bad!r}"
            assert _fingerprint(sim, sid) == before, f"{sid.name} changed state on {bad!r}"
    # the cluster still works, under every checker
    sim.submit("w2")
    assert sim.run_until(sim.now + 2000,
                         lambda: bool(sim.clients["w2"].results) and sim.converged())
