"""Fault profiles, the seed -> scenario mapping and the simulated network. No ra equivalent.

Everything random here draws from the one ``random.Random`` the simulator passes in, so a seed
fixes the whole run. Nothing iterates over a ``set`` (string hashing differs between processes),
so a seed replays identically in any interpreter.

The network carries *peer* messages only (client calls are a reliable channel, see ``sim.py``):
each message may be dropped, duplicated or delayed (a long delay reorders it); a partition is a set
of blocked directed links, checked when a message is sent.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Profile", "PROFILES", "PROFILE_NAMES", "OFF_ROTATION", "scenario_for_seed", "Network",
           "malformed_message"]


@dataclass(frozen=True, slots=True)
class Profile:
    """A named fault mix. Times are simulated milliseconds; rates are events per simulated second
    during the fault phase (``fault_ms``), after which every fault stops and the cluster must
    recover within ``settle_ms``."""

    name: str
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0                      # chance of a long delay
    delay: tuple[int, int] = (1, 5)
    long_delay: tuple[int, int] = (20, 150)
    partition_rate: float = 0.0
    partition_kinds: tuple[str, ...] = ("symmetric", "isolate", "minority_leader", "one_way",
                                        "bridge", "leader_out", "leader_in")
    partition_ms: tuple[int, int] = (100, 600)
    crash_rate: float = 0.0
    crash_leader_bias: float = 0.5            # chance a crash targets the current leader
    max_down: int = 1                         # servers down at once (capped at N)
    down_ms: tuple[int, int] = (20, 400)
    sync_ms: tuple[int, int] = (1, 10)        # pending write -> sync
    written_ms: tuple[int, int] = (0, 3)      # sync -> Written delivered
    #: chance that the shell leaves a DurableReply with the follower (it then replies itself)
    durable_reply_declined: float = 0.1
    #: a notice after a reply its WAL sent is held until the next sync, or this long (0: not)
    notice_defer_ms: tuple[int, int] = (0, 3)
    snapshot_every: int = 0                   # ReleaseCursor every K applies (0: never)
    # targeted crashes (FoundationDB's "buggify"): crash a server right after it sent a granted
    # vote / a successful append reply, and bring it back after quick_down_ms
    crash_after_vote: float = 0.0
    crash_after_ack: float = 0.0
    quick_down_ms: tuple[int, int] = (1, 8)
    # targeted partitions: isolate a leader right after it is elected / advances its commit index
    isolate_after_elected: float = 0.0
    isolate_after_commit: float = 0.0
    garbage_rate: float = 0.0                 # malformed messages delivered per second
    tick_ms: int = 100                        # the shell's machine tick (0: none)
    membership_rate: float = 0.0
    transfer_rate: float = 0.0
    clients: int = 2
    think_ms: tuple[int, int] = (5, 60)
    query_ratio: float = 0.2
    notify_ratio: float = 0.1
    low_ratio: float = 0.1
    call_timeout_ms: int = 600
    fault_ms: int = 2000
    settle_ms: int = 2500
    chunk_size: int = 16                      # snapshot_chunk_size (bytes)
    batch_size: int = 16                      # max_append_entries_rpc_batch_size
    pipeline: int = 64                        # max_pipeline_count
    election_ms: int = 100                    # election timeout drawn from [T, 2T)
    heartbeat_ms: int = 25
    linger_ms: int = 0                        # idle run time after settling (quiet window)
    replay_prevotes: int = 0                  # late copies of the last K pre-vote messages
    probe_prevotes: bool = False              # once settled, every follower's pre-vote request
    # group commit (ra.core.server.holds_flush): a leader's flush waits while its previous batch
    # is uncommitted, at most this long (0: off); the shell's group_commit_ms
    group_commit_ms: int = 0
    # quiet when idle (ra.testing.sim_detector): one node per server, a node failure detector
    # that reports after detect_ms (up again after detect_up_ms), false suspicions per second,
    # the share of crashes that kill the whole node silently, the failover bound (0: derived)
    # and how long after settling the idle cluster may still talk
    quiet: bool = False
    detect_ms: tuple[int, int] = (20, 60)
    detect_up_ms: tuple[int, int] = (2, 15)
    false_suspicion_rate: float = 0.0
    node_kill_ratio: float = 0.0
    failover_ms: int = 0
    idle_grace_ms: int = 150
    # a process hangs (its node and links stay up: a busy leader's missing heartbeats tell, an
    # idle one's nothing until a client asks), per second, for a time drawn from hang_ms
    hang_rate: float = 0.0
    hang_ms: tuple[int, int] = (50, 2000)
    # the share of leader hangs after which a client, its attempt on the hung leader timed out,
    # asks a follower (after a delay drawn from hang_client_ms): the quiet_probe and quiet_hang
    # checks
    hang_client: float = 0.0
    hang_client_ms: tuple[int, int] = (10, 60)
    # per second: a follower's connection to its idle leader drops and comes back at once (it
    # gets LeaderDown and forgets the leader, which stays up and sends nothing: quiet_rejoin)
    blip_rate: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("calm"),
    Profile("lossy", loss=0.12, dup=0.08, reorder=0.15),
    Profile("partitions", loss=0.02, partition_rate=3.0),
    Profile("crashes", crash_rate=4.0, max_down=2, sync_ms=(1, 40), reorder=0.05),
    Profile("chaos", loss=0.08, dup=0.05, reorder=0.1, partition_rate=2.0, crash_rate=2.5,
            max_down=2, sync_ms=(1, 30), transfer_rate=0.5, snapshot_every=7, garbage_rate=5.0),
    Profile("membership", loss=0.02, membership_rate=3.0, transfer_rate=1.5, crash_rate=0.5,
            snapshot_every=5),
    Profile("snapshots", loss=0.03, snapshot_every=3, partition_rate=1.5, crash_rate=1.5,
            partition_kinds=("isolate", "symmetric"), chunk_size=3, dup=0.05, reorder=0.05),
    # membership changes and leadership transfers while everything else goes wrong too
    Profile("reconfig", loss=0.05, dup=0.03, reorder=0.05, membership_rate=3.0,
            transfer_rate=1.0, crash_rate=2.0, partition_rate=1.5, snapshot_every=4,
            chunk_size=5),
    # elections everywhere: short timeouts, leader crashes with short downtimes, one-way cuts,
    # fast durability, and a voter crashing right after its vote went out
    Profile("elections", delay=(2, 20), election_ms=30, heartbeat_ms=10, crash_rate=6.0,
            crash_leader_bias=0.7, max_down=2, down_ms=(5, 80), sync_ms=(1, 3),
            written_ms=(0, 1), partition_rate=3.0, partition_ms=(30, 200), clients=3,
            think_ms=(1, 10), partition_kinds=("leader_out", "one_way", "isolate",
                                               "minority_leader"),
            crash_after_vote=0.8, quick_down_ms=(1, 3), reorder=0.05, fault_ms=1500),
    # slow durability: writes sit unsynced for long, followers crash right after acking
    Profile("durability", crash_rate=6.0, max_down=2, sync_ms=(10, 60), crash_after_ack=0.1,
            reorder=0.05),
    # a follower cut off from the leader passes pre-vote during a quiet spell, then the others
    # commit new entries while its candidacy waits for its term to be durable
    Profile("stale_votes", partition_kinds=("leader_to_one",), partition_rate=5.0,
            partition_ms=(100, 300), clients=1, think_ms=(30, 200), sync_ms=(10, 40),
            election_ms=50, delay=(1, 10), heartbeat_ms=10, fault_ms=4000),
    # consistent queries under "leader in the minority" partitions: a deposed leader must not
    # answer from its stale state
    Profile("reads", query_ratio=0.6, clients=3, call_timeout_ms=200, partition_rate=4.0,
            partition_kinds=("minority_leader",), partition_ms=(300, 800), loss=0.02),
    # Raft's figure 8: one entry per append RPC and no pipelining, new leaders cut off right
    # after being elected or after advancing their commit index
    Profile("figure8", delay=(2, 15), election_ms=50, heartbeat_ms=10, sync_ms=(1, 30),
            clients=4, think_ms=(1, 10), isolate_after_elected=0.5, isolate_after_commit=0.7,
            partition_ms=(200, 1000), batch_size=1, pipeline=1),
    # install_snapshot racing pending writes: syncs lag irregularly while the machine snapshots
    # every 3 applies, so a follower's commit index runs ahead of what it has written when a
    # snapshot (sent after a refused, reordered or duplicated append) arrives in small chunks
    Profile("snapshot_slow_sync", sync_ms=(1, 80), written_ms=(0, 30), snapshot_every=3,
            chunk_size=4, dup=0.15, reorder=0.3, long_delay=(10, 80), partition_rate=2.0,
            partition_kinds=("leader_to_one", "isolate"), partition_ms=(30, 150), clients=4,
            think_ms=(1, 10)),
    # pre-votes from members cut off from the leader; then a quiet window (prevote_no_disruption)
    # in which stale pre-vote traffic and fresh pre-vote requests reach a healthy cluster
    Profile("healthy_leader", partition_rate=3.0, partition_ms=(100, 400),
            partition_kinds=("leader_to_one", "isolate", "one_way", "leader_out"), loss=0.02,
            reorder=0.05, linger_ms=500, replay_prevotes=16, probe_prevotes=True),
    # snapshot_slow_sync plus fast membership changes: joining members lag, so installs follow
    # each other while notices of earlier writes are still in flight (off the rotation while it
    # exposes open bugs 8 and 9 of docs/CORE-BUGS.md)
    # group commit under load: many clients with short think times, so commands keep arriving
    # while the previous batch is uncommitted; holds end on commit or on the cap (off the
    # rotation: tests/sim/test_group_commit_sim.py runs it, and the faulty profiles with it on)
    # quiet when idle: partitions and silent node kills that only the (simulated) node failure
    # detector reports, false suspicions; then a long idle spell in which nothing may be sent
    Profile("quiet", quiet=True, partition_rate=2.5, crash_rate=2.0, max_down=1,
            node_kill_ratio=0.6, false_suspicion_rate=1.0, think_ms=(30, 1200), fault_ms=3000,
            partition_kinds=("isolate", "leader_out", "leader_in", "minority_leader",
                             "symmetric", "one_way", "leader_to_one"),
            partition_ms=(150, 900), down_ms=(50, 900), linger_ms=800, hang_rate=0.6,
            hang_client=0.5, blip_rate=3.0),
    # the same with loss, duplicates, reordering, snapshots, membership changes (a leader that
    # removes itself leaves followers that must notice) and leadership transfers
    Profile("quiet_chaos", quiet=True, loss=0.06, dup=0.05, reorder=0.08, partition_rate=2.0,
            crash_rate=2.5, max_down=2, node_kill_ratio=0.5, false_suspicion_rate=2.0,
            membership_rate=1.5, transfer_rate=0.5,
            snapshot_every=5, sync_ms=(1, 30), down_ms=(50, 900), partition_ms=(100, 900),
            linger_ms=600, blip_rate=2.0),
    # quiet, with few faults but followers' connections to the idle leader dropping often and
    # clients thinking long: a follower that lost the idle leader must find it again itself
    # (quiet_rejoin; off the rotation: the mutant hunt of tests/sim/test_mutants_caught.py and
    # tests/sim/test_quiet_sim.py run it)
    Profile("quiet_rejoin", quiet=True, partition_rate=0.5, crash_rate=0.5, max_down=1,
            node_kill_ratio=0.5, false_suspicion_rate=0.5, think_ms=(200, 2000),
            fault_ms=3000, partition_ms=(150, 600), down_ms=(50, 600), linger_ms=600,
            blip_rate=4.0),
    Profile("group_commit", clients=6, think_ms=(1, 6), group_commit_ms=6, sync_ms=(1, 12),
            notify_ratio=0.4),
    Profile("snapshot_reconfig", sync_ms=(1, 80), written_ms=(0, 30), snapshot_every=3,
            chunk_size=4, dup=0.15, reorder=0.3, long_delay=(10, 80), partition_rate=2.0,
            partition_kinds=("leader_to_one", "isolate"), partition_ms=(30, 150), clients=4,
            think_ms=(1, 10), membership_rate=6.0),
)}

#: Profiles left out of the default rotation (still selectable by name, ``--profile``), e.g. while
#: they expose an open core bug.
OFF_ROTATION: frozenset[str] = frozenset({"snapshot_reconfig", "group_commit", "quiet_rejoin"})

#: The default rotation (``scenario_for_seed``), in ``PROFILES`` order.
PROFILE_NAMES: tuple[str, ...] = tuple(n for n in PROFILES if n not in OFF_ROTATION)


def scenario_for_seed(seed: int) -> tuple[int, str]:
    """(servers, profile) for a seed: the profile cycles fastest, then 3 vs 5 servers, so any
    run of ``2 * len(PROFILE_NAMES)`` consecutive seeds covers every combination."""
    n = len(PROFILE_NAMES)
    return (3, 5)[(seed // n) % 2], PROFILE_NAMES[seed % n]


def calm(profile: Profile) -> Profile:
    """The same profile with every fault switched off (the recovery phase)."""
    return replace(profile, loss=0.0, dup=0.0, reorder=0.0, partition_rate=0.0, crash_rate=0.0,
                   membership_rate=0.0, transfer_rate=0.0)


def malformed_message(rng: random.Random, victim: Any) -> Any:
    """A random malformed message (junk, or a known message class with ill-typed fields); a
    correct core drops it without acting on it."""
    from ra.core import messages
    m: Any = messages  # the fields below are ill-typed on purpose
    choices: list[Any] = [
        None, 42, "append_entries", ("junk", rng.random()), b"\x00\xff",
        m.AppendEntriesRpc(term="x", leader_id=None, leader_commit=None, prev_log_index=None,
                           prev_log_term=None, entries=None),
        m.AppendEntriesRpc(term=10**9, leader_id=victim, leader_commit=0, prev_log_index=-5,
                           prev_log_term=0, entries=[("not", "an", "entry")]),
        m.AppendEntriesReply(term=None, success="yes", next_index="a", last_index=None,
                             last_term=None, from_id=None),
        m.RequestVoteRpc(term=None, candidate_id=5, last_log_index="a", last_log_term=[]),
        m.PreVoteRpc(term="t", token=None, candidate_id=None, last_log_index=None,
                     last_log_term=None),
        m.HeartbeatRpc(query_index="q", term=None, leader_id=None),
        m.InstallSnapshotRpc(term=None, leader_id=None, meta=None, chunk_state=None, data=None),
        m.Written(term=None, from_idx="a", to_idx=None),
    ]
    return rng.choice(choices)


class Network:
    """Blocked links plus the per-message fate. ``blocked`` holds directed ``(src, dst)`` pairs."""

    def __init__(self, rng: random.Random, profile: Profile) -> None:
        self.rng = rng
        self.profile = profile
        self.blocked: dict[tuple[Any, Any], None] = {}
        self.description = ""
        self.sent = self.dropped = self.duplicated = 0

    def fates(self, src: Any, dst: Any) -> list[int]:
        """Delays (ms) of the copies of one message from ``src`` to ``dst``: [] if it is lost."""
        self.sent += 1
        p, rng = self.profile, self.rng
        if (src, dst) in self.blocked:
            self.dropped += 1
            return []
        if p.loss and rng.random() < p.loss:
            self.dropped += 1
            return []
        out = [self._delay()]
        if p.dup and rng.random() < p.dup:
            self.duplicated += 1
            out.append(self._delay())
        return out

    def _delay(self) -> int:
        p, rng = self.profile, self.rng
        if p.reorder and rng.random() < p.reorder:
            return rng.randint(*p.long_delay)
        return rng.randint(*p.delay)

    def heal(self) -> None:
        self.blocked.clear()
        self.description = ""

    def partition(self, members: list[Any], leader: Any | None) -> str:
        """Install a random partition of ``members`` (ordered); returns a description."""
        rng = self.rng
        kind = rng.choice(self.profile.partition_kinds)
        self.blocked.clear()
        ms = list(members)
        n = len(ms)
        if n < 2:
            return ""
        if kind in ("leader_out", "leader_in", "minority_leader", "leader_to_one") \
                and leader not in ms:
            kind = "isolate"
        if kind == "symmetric":
            rng.shuffle(ms)
            k = rng.randint(1, n - 1)
            a, b = ms[:k], ms[k:]
            self._cut(a, b)
            self._cut(b, a)
            desc = f"split {_names(a)} | {_names(b)}"
        elif kind == "isolate":
            x = rng.choice(ms)
            rest = [m for m in ms if m != x]
            self._cut([x], rest)
            self._cut(rest, [x])
            desc = f"isolate {_names([x])}"
        elif kind == "minority_leader":
            rest = [m for m in ms if m != leader]
            rng.shuffle(rest)
            minority = [leader] + rest[:(n - 1) // 2 - 1] if n > 3 else [leader]
            majority = [m for m in ms if m not in minority]
            self._cut(minority, majority)
            self._cut(majority, minority)
            desc = f"leader in minority {_names(minority)} | majority {_names(majority)}"
        elif kind == "one_way":
            src, dst = rng.sample(ms, 2)
            self._cut([src], [dst])
            desc = f"one-way {_names([src])} -/-> {_names([dst])}"
        elif kind == "leader_to_one":
            dst = rng.choice([m for m in ms if m != leader])
            self._cut([leader], [dst])
            desc = f"one-way {_names([leader])} (leader) -/-> {_names([dst])}"
        elif kind == "leader_out":
            rest = [m for m in ms if m != leader]
            self._cut([leader], rest)
            desc = f"one-way: leader {_names([leader])} cannot send"
        elif kind == "leader_in":
            rest = [m for m in ms if m != leader]
            self._cut(rest, [leader])
            desc = f"one-way: leader {_names([leader])} cannot receive"
        elif kind == "bridge":
            rng.shuffle(ms)
            bridge = ms[0]
            rest = ms[1:]
            half = len(rest) // 2
            a, b = rest[:half], rest[half:]
            self._cut(a, b)
            self._cut(b, a)
            desc = f"bridge {_names([bridge])} between {_names(a)} and {_names(b)}"
        else:  # pragma: no cover - profile typo
            raise ValueError(f"unknown partition kind {kind!r}")
        self.description = desc
        return desc

    def isolate(self, x: Any, members: list[Any]) -> str:
        """Cut ``x`` off from every other member (both directions)."""
        self.blocked.clear()
        rest = [m for m in members if m != x]
        self._cut([x], rest)
        self._cut(rest, [x])
        self.description = f"isolate {_names([x])}"
        return self.description

    def _cut(self, srcs: list[Any], dsts: list[Any]) -> None:
        for s in srcs:
            for d in dsts:
                if s != d:
                    self.blocked[(s, d)] = None


def _names(ms: list[Any]) -> str:
    return "{" + ",".join(str(getattr(m, "name", m)) for m in ms) + "}"
