"""Real node daemons on loopback for the API tests (ra_SUITE style).

Every daemon is spawned with a lifeline and its whole process tree (fork server, WAL, segment
writer, servers) is killed with psutil at teardown, even when the test fails. Waits poll a
condition with a deadline; nothing sleeps and hopes.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import psutil
import pytest

import ra
from ra import messages as rm
from ra.node import spawn_daemon
from ra.testing.procs import processes, signal_pids, tree_pids

pytestmark = pytest.mark.integration


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except ra.RaError as e:
            last_exc = e
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


class Nodes:
    """Up to N node daemons in one tmp dir. ``env`` applies to every daemon."""

    def __init__(self, tmp: str, env: dict[str, Any]) -> None:
        self.tmp = tmp
        self.env = env
        self.procs: dict[int, Any] = {}
        self.addrs: dict[int, str] = {}
        self.lifelines: dict[int, int] = {}
        self.seen: set[int] = set()

    def start(self, i: int, listen: str | None = None, keep_listen: bool = True) -> str:
        """Start node ``i``; a restart passes its earlier address as ``listen`` unless
        ``keep_listen`` is False (then only the data dir: the node must remember it)."""
        env = dict(self.env, data_dir=os.path.join(self.tmp, f"n{i}"))
        if listen or (i in self.addrs and keep_listen):
            env["listen"] = listen or self.addrs[i]   # restart on the same address
        addr, proc, lw = spawn_daemon(env, lifeline=True,
                                      log_path=os.path.join(self.tmp, f"n{i}.log"))
        self.procs[i], self.addrs[i] = proc, addr
        if lw is not None:
            self.lifelines[i] = lw
        self.seen.add(proc.pid)
        return addr

    def sid(self, name: str, i: int) -> ra.ServerId:
        return ra.ServerId(name, self.addrs[i])

    def data_dir(self, i: int) -> str:
        return os.path.join(self.tmp, f"n{i}")

    def kill(self, i: int) -> None:
        """SIGKILL the daemon and (as a node dying would) its whole tree."""
        proc = self.procs.pop(i)
        pids = tree_pids(proc.pid)
        signal_pids(pids)
        proc.wait()
        psutil.wait_procs(processes(pids), timeout=5)
        lw = self.lifelines.pop(i, None)
        if lw is not None:
            os.close(lw)

    def stop(self, i: int) -> None:
        proc = self.procs.pop(i)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        lw = self.lifelines.pop(i, None)
        if lw is not None:
            os.close(lw)

    def server_pid(self, name: str, i: int) -> int | None:
        return ra.default_client()._daemon(self.addrs[i], rm.ListServers(), 5.0)[name]["pid"]

    def log_child_pid(self, i: int, child: str) -> int | None:
        st = ra.default_client()._daemon(self.addrs[i], rm.NodeStatus(), 5.0)
        for sup in st["tree"]["children"]:
            for c in (sup.get("sup") or {}).get("children", []):
                if c["id"] == child:
                    return c["pid"]
        return None

    def cleanup(self) -> None:
        pids: list[int] = []
        for proc in self.procs.values():
            pids += tree_pids(proc.pid)
        signal_pids(pids)
        for proc in self.procs.values():
            proc.wait()
        for fd in self.lifelines.values():
            os.close(fd)
        psutil.wait_procs(processes(pids), timeout=5)


@pytest.fixture
def node_env() -> dict[str, Any]:
    return {}


@pytest.fixture
def nodes(tmp_path: Any, node_env: dict[str, Any]) -> Any:
    ns = Nodes(str(tmp_path), node_env)
    try:
        yield ns
    finally:
        ns.cleanup()


def start_all(ns: Nodes, n: int) -> Nodes:
    """Start ``n`` daemons at once (each start waits for its daemon's ready line)."""
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        list(ex.map(ns.start, range(n)))
    return ns


@pytest.fixture
def three(nodes: Nodes) -> Nodes:
    return start_all(nodes, 3)


@pytest.fixture(scope="module")
def shared_three(tmp_path_factory: Any) -> Any:
    """Three daemons shared by a module's tests; each test uses its own cluster name."""
    ns = Nodes(str(tmp_path_factory.mktemp("nodes")), {})
    try:
        yield start_all(ns, 3)
    finally:
        ns.cleanup()


_names = itertools.count()


@pytest.fixture
def cname() -> str:
    """A cluster name of its own for each test."""
    return f"c{next(_names)}"


COUNTER = ("module", "ra.testing.machines:Counter", None)
KV = ("module", "ra.testing.machines:KV", None)


@pytest.fixture
def cluster(shared_three: Nodes, cname: str) -> list[ra.ServerId]:
    """A 3-member counter cluster of its own on the module's shared nodes."""
    ids = [shared_three.sid(cname, i) for i in range(3)]
    ra.start_cluster(cname, COUNTER, ids)
    return ids


def back_up(sid: ra.ServerId, timeout: float = 20.0) -> None:
    """Wait until ``sid`` answers again: a restarted node restarts its servers by itself."""
    def pings() -> bool:
        try:
            ra.ping(sid, timeout=1.0)
            return True
        except (ra.NoProc, ra.NodeDown, ra.OutcomeUnknown):
            return False
    wait_for(pings, timeout, f"{sid} restarted with its node")


def leader_of(ids: list[ra.ServerId]) -> ra.ServerId:
    return ra.members(ids, timeout=10)[1]


@pytest.fixture
def netns_nodes(tmp_path: Any) -> Any:
    """A factory ``make(n=3, tag="rns", listen_hosts=None) -> (net, nodes)``: ``n`` node
    daemons, each in a network namespace of its own on one bridge (``ra.check.netns``: node
    ``i`` at ``net.host(i)``, the root namespace, where the test's clients run, at
    ``net.bridge_ip``), started by a ``ra.check.nodes.NodeSet`` (``listen_hosts``: what each
    binds, advertising its namespace's address). Skips, with the reason, where namespaces
    cannot be made (not root, no ``ip netns`` or ``nft``). Whatever happens in the test, every
    process is stopped (then killed) and every namespace, veth and bridge deleted, and the
    teardown checks that nothing is left."""
    from ra.check import netns
    from ra.check.nodes import NodeSet

    made: list[tuple[Any, Any]] = []

    def make(n: int = 3, tag: str = "rns", listen_hosts: list[str] | None = None
             ) -> tuple[Any, Any]:
        reason = netns.unavailable()
        if reason is not None:
            pytest.skip(f"network namespaces unavailable: {reason}")
        net = netns.Netns(n, prefix=f"{tag}{os.getpid() % 100000}")
        made.append((net, None))
        net.setup()
        nodes = NodeSet(str(tmp_path / tag), n, hosts=[net.host(i) for i in range(n)],
                        prefix=net.exec_prefix, listen_hosts=listen_hosts)
        made[-1] = (net, nodes)
        nodes.start_all()
        return net, nodes

    yield make
    for net, nodes in reversed(made):
        try:
            if nodes is not None:
                nodes.close()
        finally:
            net.close()
        assert netns.leftovers(net.prefix) == []
        if nodes is not None:
            assert nodes.leftovers() == []
