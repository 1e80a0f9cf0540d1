"""``make demo``: a simulated 5-member cluster through a partition and a heal. No ra equivalent.

Runs the pure core on the deterministic simulator (``ra.testing.sim``) with the safety checkers
on, and prints a short timeline: a leader is elected, commands commit, the leader is cut off in a
minority, the majority elects a new leader and keeps committing while the old leader's appends
cannot commit, the partition heals, the old leader steps down and every log converges. (This
becomes the real multi-process demo later.)
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ra.testing.sim import SimCluster
from ra.testing.sim_net import Profile

__all__ = ["run_demo", "main"]

DEMO_PROFILE = Profile("demo", clients=0, delay=(2, 6), sync_ms=(1, 5), election_ms=150,
                       heartbeat_ms=30, call_timeout_ms=700)


def run_demo(seed: int = 7, out: Callable[[str], None] = print) -> SimCluster:
    """Run the scripted scenario; returns the cluster (tests inspect it)."""
    sim = SimCluster(seed, 5, DEMO_PROFILE, auto_faults=False)
    names = [s.name for s in sim.servers]

    def say(text: str) -> None:
        out(f"t={sim.now:5d}ms  {text}")

    def leader() -> Any:
        return sim.current_leader()

    def state(sid: Any) -> Any:
        return sim.servers[sid].state

    def commands(n: int, tag: str, target: Any = None) -> list[str]:
        clients = []
        for i in range(n):
            name = f"{tag}{i + 1}"
            sim.submit(name, target)
            clients.append(name)
        return clients

    def acked(clients: list[str]) -> bool:
        return all(sim.clients[c].results for c in clients)

    out(f"ra demo: 5 simulated members {', '.join(names)} (seed {seed}); election timeout "
        f"{DEMO_PROFILE.election_ms}-{2 * DEMO_PROFILE.election_ms}ms, heartbeat "
        f"{DEMO_PROFILE.heartbeat_ms}ms; every step checked by the Raft safety checkers")
    sim.run_until(2000, lambda: leader() is not None)
    l1 = leader()
    say(f"{l1.name} elected leader of term {state(l1).current_term}")

    batch = commands(5, "a")
    sim.run_until(sim.now + 1000, lambda: acked(batch))
    idx = sorted(sim.clients[c].results[0][1][1][0] for c in batch)
    say(f"5 commands committed and applied at indexes {idx[0]}..{idx[-1]} "
        f"(commit index {state(l1).commit_index})")

    others = [s for s in sim.servers if s != l1]
    minority, majority = [l1, others[0]], others[1:]
    sim.run_until(sim.now + 50)
    sim.partition_groups(minority, majority)
    say(f"PARTITION {{{','.join(s.name for s in minority)}}} | "
        f"{{{','.join(s.name for s in majority)}}}: leader {l1.name} is in the minority")

    stale = commands(2, "m", target=l1)
    sim.run_until(sim.now + 20)
    say(f"2 commands sent to {l1.name}: appended at index {state(l1).log.last_index_term()[0]}, "
        f"but no majority can ack them (its commit index stays {state(l1).commit_index})")

    def new_leader() -> Any:
        for s in majority:
            if sim.servers[s].alive and state(s).role == "leader":
                return s
        return None

    sim.run_until(sim.now + 3000, lambda: new_leader() is not None)
    l2 = new_leader()
    say(f"{l2.name} elected leader of term {state(l2).current_term} in the majority "
        f"(old leader {l1.name} still thinks it leads term {state(l1).current_term})")

    batch2 = commands(3, "b", target=l2)
    sim.run_until(sim.now + 1000, lambda: acked(batch2))
    say(f"3 commands committed by {l2.name} (commit index {state(l2).commit_index})")
    sim.run_until(sim.now + 700, lambda: not any(sim.clients[c].op for c in stale))
    lost = [c for c in stale if not sim.clients[c].results]
    say(f"the {len(lost)} commands sent to {l1.name} timed out: outcome unknown to the client, "
        f"never acknowledged")

    sim.heal()
    say("HEAL: the network is whole again")
    sim.run_until(sim.now + 2000,
                  lambda: state(l1).role != "leader" and state(l1).leader_id is not None)
    known = state(l1).leader_id
    say(f"{l1.name} sees term {state(l1).current_term} and steps down "
        f"(now {state(l1).role}, following {known.name if known else '?'})")
    sim.run_until(sim.now + 3000, sim.converged)
    ls = state(l2)
    li, lt = sim.servers[l2].log.last_index_term()
    say(f"logs converged: every member holds {li} entries (last term {lt}), commit index "
        f"{ls.commit_index}; the old leader's uncommitted entries were replaced")
    for sid, s in sim.servers.items():
        st = s.state
        i, t = s.log.last_index_term()
        out(f"           {sid.name}: {st.role:8} term {st.current_term}  last {i}/{t}  "
            f"commit {st.commit_index}  applied {st.last_applied}  state {st.machine_state}")
    assert sim.converged(), "demo: the cluster did not converge"
    return sim


def main(argv: list[str] | None = None) -> int:
    seed = int(argv[0]) if argv else 7
    run_demo(seed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
