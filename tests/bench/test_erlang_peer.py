"""bench.erlang_peer: Erlang ra's run.sh JSON mapped onto our figures' keys and units; the
reason it cannot run is one line; the rows carry its column (ratio ours / Erlang ra)."""
from __future__ import annotations

import pytest

from bench import erlang_peer, raft

SAMPLE = {   # the shape run.sh writes (its header comment and README)
    "w1": [{"p50_us": 800, "p99_us": 2000, "ops_per_s": 1200},
           {"p50_us": 900, "p99_us": 2400, "ops_per_s": 1100},
           {"p50_us": 850, "p99_us": 2100, "ops_per_s": 1150}],
    "w2": [{"ops_per_s": 8000}, {"ops_per_s": 8200}, {"ops_per_s": 7000}],
    "w3": [{"cmds_per_s": 66000}],
    "w4": [{"failover_ms": 390}],
    "w5": [{"restart_to_commit_ms": 3000, "log_last_index": 546000}],
    "w6": [[{"rss_kib": 204800}, {"rss_kib": 102400}]],
}


def test_figures_are_medians_in_our_units():
    f = erlang_peer.figures(SAMPLE)
    assert f[("W1", "p50")][0] == pytest.approx(0.85)        # ms
    assert f[("W1", "p99")][0] == pytest.approx(2.1)
    assert f[("W2", "ops/s")][0] == 8000
    assert f[("W2 threads", "ops/s")][0] == 8000
    assert f[("W3", "commands/s")][0] == 66000
    assert f[("W4", "failover median")][0] == pytest.approx(0.39)    # s
    assert f[("W5", "start -> first commit")][0] == pytest.approx(3.0)
    assert "546,000 entries" in f[("W5", "start -> first commit")][1]
    assert f[("W5", "entries replayed")][0] == 546000
    assert f[("W5", "µs per entry")][0] == pytest.approx(3e6 / 546000)
    assert f[("W6", "node RSS max")][0] == pytest.approx(200.0)     # MB
    assert erlang_peer.figures({}) == {}


def test_unavailable_says_why(monkeypatch, tmp_path):
    monkeypatch.delenv("RA_BENCH_ERLANG", raising=False)
    monkeypatch.setattr(erlang_peer, "ANCHOR", str(tmp_path))
    assert "no Erlang ra anchor" in erlang_peer.available()
    (tmp_path / "run.sh").write_text("#!/bin/sh\n")
    monkeypatch.setattr(erlang_peer.shutil, "which", lambda name: None)
    assert "apt-get install -y erlang-nox" in erlang_peer.available()


def test_rows_carry_the_erlang_column():
    ours = {("W1", "p50"): (0.9, "x"), ("W3", "commands/s"): (40000.0, "y"),
            ("W1 idle poll", "p50"): (0.7, "z")}
    rows = raft._pair(ours, {}, "no peer", erlang_peer.figures(SAMPLE))
    by = {(r["workload"], r["metric"]): r for r in rows}
    assert by[(raft.LABELS["W1"], "p50")]["erlang"] == pytest.approx(0.85)
    # beside ours with idle_poll_ms: Erlang ra's own W1 (the BEAM busy-waits by default)
    poll = by[(raft.LABELS["W1 idle poll"], "p50")]
    assert poll["value"] == 0.7 and poll["erlang"] == pytest.approx(0.85), poll
    assert "its W1 figure" in poll["note"]
    assert by[(raft.LABELS["W3"], "commands/s")]["erlang"] == 66000
    assert by[(raft.LABELS["W6"], "node RSS max")]["value"] is None   # theirs only


@pytest.mark.slow
def test_a_real_erlang_run_maps_onto_our_figures():
    """make soak, where erl is installed: run.sh's w123 phases end to end (about 80 s)."""
    why = erlang_peer.available()
    if why is not None:
        pytest.skip(why)
    f = erlang_peer.measure(quick=True)
    for k in (("W1", "p50"), ("W2", "ops/s"), ("W3", "commands/s"), ("W6", "node RSS max")):
        assert isinstance(f[k][0], float) and f[k][0] > 0, k
