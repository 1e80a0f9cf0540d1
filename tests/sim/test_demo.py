"""``make demo`` runs: the scripted partition/heal timeline completes and converges."""
from __future__ import annotations

from ra.testing.demo import run_demo


def test_demo_timeline() -> None:
    lines: list[str] = []
    sim = run_demo(out=lines.append)
    text = "\n".join(lines)
    for phrase in ("elected leader of term 1", "PARTITION", "in the majority", "HEAL",
                   "steps down", "logs converged"):
        assert phrase in text, f"missing {phrase!r} in:\n{text}"
    assert sim.converged()
    states = {s.state.machine_state for s in sim.servers.values()}
    assert len(states) == 1
