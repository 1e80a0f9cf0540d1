"""Quiet when idle in the simulator (``ra.testing.sim_detector``): the quiet profiles run in the
default rotation (``test_sim_seeds``); here, scripted runs show what they check is real: an idle
quiet cluster sends nothing and runs no timer while a loud one heartbeats, a leader lost
silently is replaced once the detector reports it, a hung leader process (no report) once a
client asks a follower, a follower that lost the idle leader (restart, dropped connection)
finds it again without an election, a quiet leader cut off from its peers steps down, and the
profiles' faults (node kills, false suspicions, reports) really happen."""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

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
def test_an_idle_quiet_cluster_sends_nothing_and_a_loud_one_heartbeats(servers: int) -> None:
    quiet = SimCluster(3, servers, "quiet", auto_faults=False)
    elected(quiet, 1000)
    quiet.run_until(1000)
    timers = {sid: dict(s.timers) for sid, s in quiet.servers.items()}
    assert sent_between(quiet, 1000, 4000) == 0
    # and no server armed a timer in those 3 s (ticks only)
    assert {sid: dict(s.timers) for sid, s in quiet.servers.items()} == timers
    loud = SimCluster(3, servers, replace(PROFILES["quiet"], quiet=False), auto_faults=False)
    elected(loud, 1000)
    n = sent_between(loud, 1000, 4000)
    # one append per follower and one answer each, every heartbeat period (25 ms)
    assert n >= 2 * (servers - 1) * 3000 // 25 * 0.9
    assert quiet.servers[quiet.current_leader()].state.heartbeat_off


@pytest.mark.parametrize("servers", [3, 5])
def test_a_hung_idle_leader_is_replaced_once_a_client_asks_a_follower(servers: int) -> None:
    # SIGSTOP: its node, detector and connections stay up; no report, no connection loss.
    # Nobody notices while no client asks (no follower runs a timer)
    sim = SimCluster(4, servers, "quiet", auto_faults=False)
    old = elected(sim, 1000)
    sim.run_until(1500)
    assert sim.servers[old].state.heartbeat_off
    term = sim.servers[old].state.current_term
    assert sim.fd is not None
    sim.hang(old, 100_000)
    sent = sim.net.sent
    sim.run_until(4500)
    assert max(sim.checker.leaders) == term and sim.net.sent == sent
    # the client's attempt on the hung leader timed out; it asks a follower, which probes
    follower = next(s for s in sim.servers.values() if s.sid != old)
    sim.stray_call(follower, "test")
    asked, t = sim.now, sim.profile.election_ms
    assert sim.run_until(asked + sim.fd.probe_bound(),
                         stop=lambda: max(sim.checker.leaders) > term)
    # the probe's election timeout (< 2T), then pre-vote and vote (probe_bound allows for split
    # votes)
    assert sim.now - asked < 4 * t, sim.now - asked
    assert sim.stats["fd_down"] == 0            # the detector said nothing
    new = sim.current_leader()
    assert new != old and sim.servers[new].state.current_term > term
    # once it runs again, the old leader hears the later term and follows
    sim.resume(sim.servers[old])
    sim.run_until(sim.now + 1000, stop=lambda: sim.servers[old].state.role == "follower"
                  and sim.servers[old].state.leader_id == new)
    assert sim.servers[old].state.leader_id == new


@pytest.mark.parametrize("servers", [3, 5])
@pytest.mark.parametrize("how", ["restart", "connection"])
def test_a_follower_that_lost_the_idle_leader_finds_it_again_without_an_election(
        servers: int, how: str) -> None:
    sim = SimCluster(6, servers, "quiet", auto_faults=False)
    lid = elected(sim, 1000)
    sim.run_until(1500)
    ls = sim.servers[lid].state
    assert ls.heartbeat_off and ls.quorum_off
    term = ls.current_term
    f = next(s for s in sim.servers.values() if s.sid != lid)
    if how == "restart":
        sim.crash(f.sid)                          # its process; its node stays up
        sim.run_until(sim.now + 50)
        sim.restart(f.sid)
    else:
        sim.schedule(1, "leader_down", f.sid, f.inc, lid)   # dropped and back at once
    assert sim.fd is not None
    start = sim.now
    sim.run_until(start + sim.fd.rejoin_bound(), stop=lambda: f.state.leader_id == lid
                  and f.role == "follower" and sim.now > start + 1)
    assert f.state.leader_id == lid and f.state.current_term == term
    assert max(sim.checker.leaders) == term and sim.current_leader() == lid
    # and the cluster is silent again
    sim.run_until(sim.now + 500)
    sent = sim.net.sent
    sim.run_until(sim.now + 2000)
    assert sim.net.sent == sent and ls.heartbeat_off and f.state.election_off


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
    # joins are rare in these profiles (a few in 8 seeds): a sample of 8 seeds of each
    for seed in range(8):
        for name in QUIET:
            sim = SimCluster(seed, 3, name)
            r = sim.run()
            total.update(r.stats)
            assert sim.settled_at is not None
            # the run idled for the whole linger time, past the grace, and sent nothing
            assert r.time_ms - sim.settled_at >= sim.profile.linger_ms > sim.profile.idle_grace_ms
            assert r.stats["idle_msgs"] == 0 and r.stats["idle_timers"] == 0
    for key in ("node_kills", "fd_down", "fd_up", "fd_false_suspicions", "failovers_watched",
                "partitions", "crashes", "acked", "joins", "leaves", "transfers", "hangs",
                "hangs_watched", "stray_calls", "blips", "rejoins_watched"):
        assert total[key] > 0, f"no {key} in {dict(total)}"


def test_the_rejoin_profile_drops_connections_and_every_follower_finds_its_leader() -> None:
    # off the rotation (the mutant hunt uses it): the real core passes it too
    assert "quiet_rejoin" not in PROFILE_NAMES
    total: Counter[str] = Counter()
    for seed in range(3):
        for servers in (3, 5):
            r = SimCluster(seed, servers, "quiet_rejoin").run()
            total.update(r.stats)
    assert total["blips"] > 0 and total["rejoins_watched"] > 0
    assert total["idle_msgs"] == 0 and total["idle_timers"] == 0
