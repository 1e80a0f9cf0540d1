"""No ra equivalent (Jepsen's nemeses): the faults ``ra check`` injects, and their schedule.

Every nemesis has ``fault()`` (inject one fault, return a one-line description, or ``None`` when
there was nothing to do, e.g. no leader known) and ``heal()`` (undo the fault it injected last,
and wait until it is undone; a no-op if there is none). :class:`Schedule` runs them on a thread:
``interval`` seconds of calm, a fault by a nemesis picked at random (seeded), ``interval``
seconds, its heal, and so on until stopped; :meth:`Schedule.stop` always ends healed, and every
fault and heal is logged with its time since the run's ``t0``. A fault that cannot be injected
because a node did not answer (``ra.RaError``) is logged as ``fault-failed`` and the schedule
goes on; any other error, or a heal that fails, stops the schedule (``Schedule.error``).

``kill-node``
    SIGKILL a random node daemon's whole process tree (daemon, fork server, WAL, segment
    writer, servers), as a machine crash; heal: start it again on the same data directory and
    the same address, so it is the same node, and restart the cluster's server there
    (a node restarts its servers by itself; ``ra.restart_server`` is called too, for a node
    started with ``restart_servers=False``).
``kill-leader``
    SIGKILL the current leader's ra server process (its pid from the node's overview); its
    supervisor restarts it. Heal: wait until the server runs again (a new pid).
``kill-wal``
    SIGKILL a random node's WAL process (its pid from the daemon's status tree: what
    ``ra node status ADDR --json`` shows); the log supervisor restarts it and the segment
    writer. Heal: wait until a new WAL runs.
``pause``
    SIGSTOP a node's whole process tree (the leader's node half of the time, else a random
    one); heal: SIGCONT.
``partition``
    Network partition between nodes (:mod:`ra.check.netns`; needs root, namespaces, nftables):
    in mode ``"isolate-leader"`` the leader's node alone against the rest, in ``"halves"`` a
    random minority against the majority, in ``"mixed"`` either. Heal: remove the rules.
``none``
    Nothing.
"""
from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

import ra
from ra.check.netns import Netns
from ra.check.nodes import NodeSet

__all__ = ["NEMESES", "PARTITION_MODES", "Context", "Nemesis", "Schedule", "make"]

NEMESES = ("kill-node", "kill-leader", "kill-wal", "pause", "partition", "none")
PARTITION_MODES = ("isolate-leader", "halves", "mixed")
_RESTART_WAIT_S = 20.0


@dataclass
class Context:
    """What the nemeses act on: the nodes, the cluster's server name, a client of their own
    (used from the schedule's thread only), the namespaces (partitions only), a seeded RNG."""

    nodes: NodeSet
    name: str
    client: ra.Client
    rng: random.Random
    net: Netns | None = None
    partition_mode: str = "mixed"

    def leader_node(self) -> int | None:
        """The index of the node hosting the leader, if one is known right now."""
        try:
            _, leader = self.client.members(self.live_members(), timeout=2.0)
        except (ra.RaError, TypeError):
            return None
        for i, a in self.nodes.addrs.items():
            if leader is not None and a == leader.node:
                return i
        return None

    def live_members(self) -> list[ra.ServerId]:
        return [ra.ServerId(self.name, self.nodes.addrs[i]) for i in sorted(self.nodes.procs)
                if i not in self.nodes.paused]

    def server_pid(self, i: int) -> int | None:
        """The pid of this cluster's server on node ``i`` (None while it is not running)."""
        ov = self.client.overview(self.nodes.addrs[i], timeout=2.0)
        row = ov["servers"].get(self.name) or {}
        pid = row.get("pid")
        return int(pid) if pid else None

    def wal_pid(self, i: int) -> int | None:
        """The pid of node ``i``'s WAL, from the daemon's supervision tree."""
        ov = self.client.overview(self.nodes.addrs[i], timeout=2.0)
        return _find_child(ov["daemon"]["tree"], "ra_log_wal")


def _find_child(sup: dict[str, Any], child: str) -> int | None:
    for c in sup.get("children", []):
        if c["id"] == child and "sup" not in c:
            return int(c["pid"]) if c["pid"] else None
        if "sup" in c:
            found = _find_child(c["sup"], child)
            if found is not None:
                return found
    return None


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``cond`` (``ra.RaError`` counts as not yet) until truthy; ``TimeoutError`` after
    ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = cond()
            if v:
                return v
        except ra.RaError:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def _sigkill(pid: int) -> None:
    try:
        psutil.Process(pid).send_signal(signal.SIGKILL)
    except psutil.NoSuchProcess:
        pass


class Nemesis:
    """Base: one kind of fault. Subclasses set ``name`` and override ``fault``/``heal``."""

    name = "none"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def fault(self) -> str | None:
        return None

    def heal(self) -> str | None:
        return None


class KillNode(Nemesis):
    name = "kill-node"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.down: int | None = None

    def fault(self) -> str | None:
        i = self.ctx.rng.choice(sorted(self.ctx.nodes.procs))
        n = self.ctx.nodes.kill(i)
        self.down = i
        return f"SIGKILL node n{i} ({n} processes)"

    def heal(self) -> str | None:
        if self.down is None:
            return None
        i, self.down = self.down, None
        addr = self.ctx.nodes.restart(i)
        sid = ra.ServerId(self.ctx.name, addr)
        _wait(lambda: self._restart_server(sid), _RESTART_WAIT_S, f"server {sid} to restart")
        return f"restarted node n{i} on {addr} and its server"


    def _restart_server(self, sid: ra.ServerId) -> bool:
        try:
            self.ctx.client.restart_server(sid, timeout=5.0)
        except ra.AlreadyStarted:
            pass
        return True


class KillLeader(Nemesis):
    name = "kill-leader"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.killed: tuple[int, int] | None = None

    def fault(self) -> str | None:
        i = self.ctx.leader_node()
        if i is None:
            return None
        pid = self.ctx.server_pid(i)
        if pid is None:
            return None
        _sigkill(pid)
        self.killed = (i, pid)
        return f"SIGKILL leader server on n{i} (pid {pid})"

    def heal(self) -> str | None:
        if self.killed is None:
            return None
        (i, old), self.killed = self.killed, None
        new = _wait(lambda: (p := self.ctx.server_pid(i)) not in (None, old) and p,
                    _RESTART_WAIT_S, f"the server on n{i} to be restarted")
        return f"server on n{i} restarted by its supervisor (pid {new})"


class KillWal(Nemesis):
    name = "kill-wal"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.killed: tuple[int, int] | None = None

    def fault(self) -> str | None:
        i = self.ctx.rng.choice(sorted(self.ctx.nodes.procs))
        pid = self.ctx.wal_pid(i)
        if pid is None:
            return None
        _sigkill(pid)
        self.killed = (i, pid)
        return f"SIGKILL WAL on n{i} (pid {pid})"

    def heal(self) -> str | None:
        if self.killed is None:
            return None
        (i, old), self.killed = self.killed, None
        new = _wait(lambda: (p := self.ctx.wal_pid(i)) not in (None, old) and p,
                    _RESTART_WAIT_S, f"the WAL on n{i} to be restarted")
        return f"WAL on n{i} restarted (pid {new})"


class Pause(Nemesis):
    name = "pause"

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.paused: int | None = None

    def fault(self) -> str | None:
        i = self.ctx.leader_node() if self.ctx.rng.random() < 0.5 else None
        if i is None:
            i = self.ctx.rng.choice(sorted(self.ctx.nodes.procs))
        n = self.ctx.nodes.pause(i)
        self.paused = i
        return f"SIGSTOP node n{i} ({n} processes)"

    def heal(self) -> str | None:
        if self.paused is None:
            return None
        i, self.paused = self.paused, None
        self.ctx.nodes.resume(i)
        return f"SIGCONT node n{i}"


class Partition(Nemesis):
    name = "partition"

    def fault(self) -> str | None:
        net = self.ctx.net
        assert net is not None, "partition needs namespaces"
        mode = self.ctx.partition_mode
        if mode == "mixed":
            mode = self.ctx.rng.choice(("isolate-leader", "halves"))
        n = self.ctx.nodes.count
        minority: set[int] = set()
        if mode == "isolate-leader":
            leader = self.ctx.leader_node()
            if leader is not None:
                minority = {leader}
        if not minority:
            minority = set(self.ctx.rng.sample(range(n), (n - 1) // 2))
        majority = set(range(n)) - minority
        net.partition([minority, majority])
        return (f"partition {sorted(minority)} | {sorted(majority)}"
                f"{' (leader isolated)' if mode == 'isolate-leader' else ''}")

    def heal(self) -> str | None:
        net = self.ctx.net
        if net is None or net.partitioned is None:
            return None
        net.heal()
        return "partition healed"


_CLASSES: dict[str, type[Nemesis]] = {
    c.name: c for c in (Nemesis, KillNode, KillLeader, KillWal, Pause, Partition)}


def make(name: str, ctx: Context) -> Nemesis:
    """A nemesis by name (see :data:`NEMESES`)."""
    try:
        return _CLASSES[name](ctx)
    except KeyError:
        raise ValueError(f"unknown nemesis {name!r}; known: {', '.join(NEMESES)}") from None


@dataclass
class _Entry:
    time: float
    nemesis: str
    action: str
    what: str


@dataclass
class Schedule:
    """Runs ``nemeses`` on a thread: calm, fault, ``interval``, heal, calm, ... (see the
    module docstring). ``log`` lists what happened; ``error`` holds the exception that stopped
    the thread, if any (it is healed anyway)."""

    nemeses: list[Nemesis]
    interval: float
    rng: random.Random
    t0: float
    log: list[_Entry] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def faults(self) -> int:
        """How many faults were injected."""
        return sum(1 for e in self.log if e.action == "fault")

    def _note(self, n: Nemesis, action: str, what: str | None) -> None:
        if what is not None:
            self.log.append(_Entry(round(time.time() - self.t0, 3), n.name, action, what))

    def _run(self) -> None:
        active = [n for n in self.nemeses if n.name != "none"]
        try:
            while active and not self._stop.wait(self.interval):
                n = self.rng.choice(active)
                try:
                    self._note(n, "fault", n.fault())
                except ra.RaError as e:   # e.g. the node to ask did not answer: no fault
                    self._note(n, "fault-failed", f"{type(e).__name__}: {e}")
                    continue
                self._stop.wait(self.interval)
                self._note(n, "heal", n.heal())
        except BaseException as e:   # reported by stop(); healed there
            self.error = e

    def stop(self) -> None:
        """Stop the schedule and heal what is faulted (each heal tried even if one fails);
        waits for the thread. Raises the first heal error, after trying them all."""
        self._stop.set()
        self._thread.join()
        first: BaseException | None = None
        for n in self.nemeses:
            try:
                self._note(n, "heal", n.heal())
            except Exception as e:   # try every heal, then report
                first = first or e
        if first is not None:
            raise first
