"""No ra equivalent (Jepsen's net layer): network namespaces and nftables partitions.

:class:`Netns` builds, for ``n`` nodes, ``n`` network namespaces, each joined by a veth pair to
one bridge in the root namespace, on a /24 of its own::

    root ns:  bridge  <prefix>b   10.X.0.254/24  (clients live here and reach every node)
    ns <prefix>n<i>:  eth0        10.X.0.<i+1>/24 (node i's daemon listens on this address)

:meth:`Netns.partition` cuts the nodes into groups by installing, in every namespace, an
nftables table that drops packets to and from the nodes of the other groups (input and output
hooks); the root namespace is never cut off, so clients still reach every node (the Jepsen
setup: the network between nodes fails, the clients' links do not). :meth:`Netns.heal` deletes
those tables. :meth:`Netns.close` deletes every namespace, veth and the bridge (the namespaces'
processes must be gone first: a namespace lives on while a process is in it).

Names are unique per run (``rck<pid>``, at most 15 characters for interface names) and
:func:`leftovers` lists what is left of a run's names. :func:`unavailable` says, in one line,
why partitions cannot be made here (not root, no ``ip netns``, no ``nft``), or ``None``.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from typing import Self

__all__ = ["Netns", "unavailable", "leftovers", "global_ipv4", "TABLE"]

#: the nftables table name used for partitions inside each namespace
TABLE = "ra_check"
_TIMEOUT = 10.0


def _run(argv: Sequence[str], stdin: str | None = None, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                       timeout=_TIMEOUT, check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {(p.stderr or p.stdout).strip()}")
    return p


def unavailable() -> str | None:
    """Why network partitions cannot be made here, in one line; ``None`` if they can.

    Probes for real: root, the ``ip`` and ``nft`` commands, and creating (then deleting) a
    namespace and an nftables table inside it."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"no `{tool}` command (apt-get install {pkg})"
    probe = f"rck{os.getpid()}p"
    try:
        _run(["ip", "netns", "add", probe])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return f"`ip netns add` does not work here: {e}"
    try:
        _run(["ip", "netns", "exec", probe, "nft", "add", "table", "inet", TABLE])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return f"nftables does not work in a namespace here: {e}"
    finally:
        _run(["ip", "netns", "del", probe], check=False)
    return None


def global_ipv4() -> str | None:
    """An IPv4 address of this host beyond loopback (``ip -4 addr`` scope global), if any:
    what tests bind a wildcard and advertise when they run without namespaces."""
    try:
        out = _run(["ip", "-4", "-o", "addr", "show", "scope", "global"], check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in out.splitlines():
        words = line.split()
        if "inet" in words:
            return words[words.index("inet") + 1].split("/")[0]
    return None


def _free_subnet(start: int) -> int:
    """An X in 16..250 such that nothing here routes 10.X.0.0/24 yet (from ``start`` on)."""
    routes = _run(["ip", "-4", "route", "show"]).stdout
    used: set[ipaddress.IPv4Network | ipaddress.IPv6Network] = set()
    for line in routes.splitlines():
        word = line.split()[0] if line.split() else ""
        try:
            used.add(ipaddress.ip_network("0.0.0.0/0" if word == "default" else word,
                                          strict=False))
        except ValueError:
            continue
    for k in range(235):
        x = 16 + (start + k) % 235
        net = ipaddress.ip_network(f"10.{x}.0.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return x
    raise RuntimeError("no free 10.X.0.0/24 subnet for the namespaces")


def leftovers(prefix: str) -> list[str]:
    """Namespaces and links whose name starts with ``prefix`` that still exist."""
    out = []
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        if line.split() and line.split()[0].startswith(prefix):
            out.append("netns " + line.split()[0])
    for line in _run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            name = parts[1].strip().split("@")[0]
            if name.startswith(prefix):
                out.append("link " + name)
    return out


class Netns:
    """``n`` namespaces on one bridge (see the module docstring). Use as a context manager, or
    call :meth:`close` in a ``finally``: it removes everything even after a failed setup."""

    def __init__(self, n: int, prefix: str | None = None) -> None:
        self.n = n
        self.prefix = prefix or f"rck{os.getpid()}"
        if len(self.prefix) + 3 > 15:
            raise ValueError(f"prefix {self.prefix!r} too long for interface names")
        self.bridge = f"{self.prefix}b"
        self.subnet = 0
        self.partitioned: list[set[int]] | None = None

    def __enter__(self) -> Self:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ns(self, i: int) -> str:
        return f"{self.prefix}n{i}"

    def host(self, i: int) -> str:
        """Node ``i``'s IP address."""
        return f"10.{self.subnet}.0.{i + 1}"

    @property
    def bridge_ip(self) -> str:
        """The root namespace's address on the bridge: clients bind here."""
        return f"10.{self.subnet}.0.254"

    def exec_prefix(self, i: int) -> list[str]:
        """The command prefix that runs a program inside node ``i``'s namespace."""
        return ["ip", "netns", "exec", self.ns(i)]

    def setup(self) -> None:
        """Create the bridge, the namespaces, the veth pairs and the addresses (after removing
        whatever a dead run with the same names left behind)."""
        self.close()
        self.subnet = _free_subnet(os.getpid())
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.bridge_ip}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        for i in range(self.n):
            ns, veth = self.ns(i), f"{self.prefix}h{i}"
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                  "netns", ns])
            _run(["ip", "link", "set", veth, "master", self.bridge, "up"])
            inside = ["ip", "netns", "exec", ns]
            _run(inside + ["ip", "addr", "add", f"{self.host(i)}/24", "dev", "eth0"])
            _run(inside + ["ip", "link", "set", "eth0", "up"])
            _run(inside + ["ip", "link", "set", "lo", "up"])

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut the network between ``groups`` (node indexes; a node in no group is cut off from
        every other node). Replaces any partition in place; atomic per namespace."""
        gs = [set(g) for g in groups]
        for i in range(self.n):
            mine = next((g for g in gs if i in g), {i})
            others = sorted(self.host(j) for j in range(self.n) if j not in mine)
            self._rules(i, others)
        self.partitioned = gs

    def heal(self) -> None:
        """Remove every partition rule: every node reaches every node again."""
        for i in range(self.n):
            self._rules(i, [])
        self.partitioned = None

    def _rules(self, i: int, drop: list[str]) -> None:
        script = f"table inet {TABLE}\ndelete table inet {TABLE}\n"
        if drop:
            peers = ", ".join(drop)
            script += (f"table inet {TABLE} {{\n"
                       f"  chain input {{ type filter hook input priority 0; "
                       f"ip saddr {{ {peers} }} drop; }}\n"
                       f"  chain output {{ type filter hook output priority 0; "
                       f"ip daddr {{ {peers} }} drop; }}\n"
                       f"}}\n")
        _run(self.exec_prefix(i) + ["nft", "-f", "-"], stdin=script)

    def close(self) -> None:
        """Delete the namespaces, the veth pairs and the bridge (what exists of them)."""
        for i in range(self.n):
            _run(["ip", "link", "del", f"{self.prefix}h{i}"], check=False)
            _run(["ip", "netns", "del", self.ns(i)], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)
