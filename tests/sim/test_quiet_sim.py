"""Quiet when idle in the simulator (``ra.testing.sim_detector``): the quiet profiles run in the
default rotation (``test_sim_seeds``); here, scripted runs show what they check is real: an idle
quiet cluster sends only its slow heartbeat while a loud one heartbeats, a leader lost silently
is replaced once the detector reports it, a hung leader process (no report) within the quiet
timeout, a quiet leader cut off from its peers steps down, and the profiles'
faults (node kills, false suspicions, reports) really happen."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from ra.core.effects import IDLE_HEARTBEAT, QUIET_TIMEOUT
from ra.testing.sim import SimCluster
from ra.testing.sim_net import PROFILE_NAMES, PROFILES

QUIET = ("quiet", "quiet_chaos")


def elected(sim: SimCluster, t: int) -> Any:
    sim.run_until(t, stop=lambda: sim.current_leader() is not None)
    lid = sim.current_leader()
    assert lid is not None, "no leader elected"
    return lid


def sent_between(sim: SimCluster, a: int, b: int) -> int:
    sim.run_until(a)
    before = sim.net.sent
    sim.run_until(b)
    return sim.net.sent - before


@pytest.mark.parametrize("servers", [3, 5])
def test_an_idle_quiet_cluster_sends_only_the_slow_heartbeat_and_a_loud_one_heartbeats(
        servers: int) -> None:
    quiet = SimCluster(3, servers, "quiet", auto_faults=False)
    elected(quiet, 1000)
    slow = IDLE_HEARTBEAT * quiet.profile.election_ms
    # one empty append per follower and one answer each, every slow heartbeat (200 ms)
    assert sent_between(quiet, 1000, 4000) <= 2 * (servers - 1) * (3000 // slow + 1)
    loud = SimCluster(3, servers, replace(PROFILES["quiet"], quiet=False), auto_faults=False)
    elected(loud, 1000)
    n = sent_between(loud, 1000, 4000)
    # one append per follower and one answer each, every heartbeat period (25 ms)
    assert n >= 2 * (servers - 1) * 3000 // 25 * 0.9
    assert quiet.servers[quiet.current_leader()].state.heartbeat_off


@pytest.mark.parametrize("servers", [3, 5])
def test_a_hung_leader_process_is_replaced_within_the_bound(servers: int) -> None:
    # SIGSTOP: its node, detector and connections stay up; no report, no connection loss
    sim = SimCluster(4, servers, "quiet", auto_faults=False)
    old = elected(sim, 1000)
    sim.run_until(1500)
    assert sim.servers[old].state.heartbeat_off
    term = sim.servers[old].state.current_term
    assert sim.fd is not None
    bound = sim.fd.hang_bound()
    sim.hang(old, 10 * bound)
    assert sim.run_until(1500 + bound, stop=lambda: max(sim.checker.leaders) > term)
    assert sim.stats["fd_down"] == 0            # the detector said nothing
    new = sim.current_leader()
    assert new != old and sim.servers[new].state.current_term > term
    # once it runs again, the old leader hears the later term and follows
    sim.resume(sim.servers[old])
    sim.run_until(sim.now + 1000, stop=lambda: sim.servers[old].state.role == "follower"
                  and sim.servers[old].state.leader_id == new)
    assert sim.servers[old].state.leader_id == new


@pytest.mark.parametrize("servers", [3, 5])
def test_a_client_at_a_follower_has_a_hung_leader_replaced_well_before_the_quiet_timeout(
        servers: int) -> None:
    # the client's attempt on the hung leader timed out; it asks a follower, which probes
    sim = SimCluster(4, servers, "quiet", auto_faults=False)
    old = elected(sim, 1000)
    sim.run_until(1500)
    term = sim.servers[old].state.current_term
    assert sim.fd is not None
    sim.hang(old, 10 * sim.fd.hang_bound())
    sim.run_until(1510)
    follower = next(s for s in sim.servers.values() if s.sid != old)
    sim.stray_call(follower, "test")
    asked, t = sim.now, sim.profile.election_ms
    assert sim.run_until(asked + sim.fd.probe_bound(),
                         stop=lambda: max(sim.checker.leaders) > term)
    took = sim.now - asked
    # the probe's election timeout (< 2T), then pre-vote and vote (probe_bound allows for split
    # votes); the quiet timeout alone would take QUIET_TIMEOUT election timeouts
    assert took < QUIET_TIMEOUT * t, took
    assert sim.stats["fd_down"] == 0


@pytest.mark.parametrize("servers", [3, 5])
def test_clients_at_the_followers_of_a_live_idle_leader_never_start_an_election(
        servers: int) -> None:
    sim = SimCluster(5, servers, "quiet", auto_faults=False)
    lid = elected(sim, 1000)
    sim.run_until(1500)
    term = sim.servers[lid].state.current_term
    for k in range(10):
        for s in list(sim.servers.values()):
            if s.sid != lid:
                sim.stray_call(s, f"test {k}")
        sim.run_until(sim.now + 150)
    sim.run_until(sim.now + 1000)
    assert sim.stats["stray_calls"] == 10 * (servers - 1)
    assert max(sim.checker.leaders) == term and sim.current_leader() == lid
    assert all(s.state.current_term == term for s in sim.servers.values())


def test_a_leader_whose_node_dies_silently_is_replaced_after_the_report() -> None:
    sim = SimCluster(3, 3, "quiet", auto_faults=False)
    old = elected(sim, 1000)
    sim.run_until(1500)
    term = sim.servers[old].state.current_term
    sim.crash(old, node=True)                    # no connection-close notice: only the detector
    assert sim.fd is not None
    bound = sim.fd.bound() + sim.profile.detect_ms[1]
    assert sim.run_until(1500 + bound, stop=lambda: max(sim.checker.leaders) > term)
    assert sim.stats["fd_down"] >= 2
    new = sim.current_leader()
    assert new != old and sim.servers[new].state.current_term > term


def test_a_cut_off_quiet_leader_steps_down_and_the_others_elect() -> None:
    sim = SimCluster(5, 3, "quiet", auto_faults=False)
    old = elected(sim, 1000)
    sim.run_until(1500)
    assert sim.servers[old].state.heartbeat_off
    others = [m for m in sim.servers if m != old]
    sim.partition_groups([old], others)
    p = sim.profile
    # its detector reports both peers down within detect_ms; the next quorum check deposes it
    limit = 1500 + p.detect_ms[1] + 2 * p.election_ms
    assert sim.run_until(limit, stop=lambda: sim.servers[old].state.role != "leader")
    sim.run_until(limit + 1000, stop=lambda: sim.current_leader() not in (None, old))
    assert sim.current_leader() in others


def test_quiet_profiles_are_in_the_rotation_and_their_faults_happen() -> None:
    assert set(QUIET) <= set(PROFILE_NAMES)
    total: Counter[str] = Counter()
    for seed in range(3):
        for name in QUIET:
            sim = SimCluster(seed, 3, name)
            r = sim.run()
            total.update(r.stats)
            assert sim.settled_at is not None
            # the run idled for the whole linger time, past the grace, and sent nothing but the
            # slow heartbeat
            assert r.time_ms - sim.settled_at >= sim.profile.linger_ms > sim.profile.idle_grace_ms
            assert r.stats["idle_msgs"] == 0
    for key in ("node_kills", "fd_down", "fd_up", "fd_false_suspicions", "failovers_watched",
                "partitions", "crashes", "acked", "joins", "leaves", "transfers", "hangs",
                "hangs_watched", "idle_heartbeats", "stray_calls"):
        assert total[key] > 0, f"no {key} in {dict(total)}"
