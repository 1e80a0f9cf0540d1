"""Namespaces and nftables partitions (ra/check/netns.py): a partition cuts TCP between nodes
but not from the root namespace, a heal restores it, close leaves nothing. Root only."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ra.check import netns

_LISTEN = ("import socket, sys; s = socket.socket(); s.bind((sys.argv[1], 7777)); s.listen(8); "
           "print('ready', flush=True); [s.accept()[0].close() for _ in iter(int, 1)]")
_CONNECT = ("import socket, sys; socket.create_connection((sys.argv[1], 7777), timeout=0.5)")


def test_unavailable_says_why_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert netns.unavailable() == "needs root (network namespaces and nftables)"


@pytest.fixture
def net() -> object:
    reason = netns.unavailable()
    if reason is not None:
        pytest.skip(f"partitions unavailable: {reason}")
    n = netns.Netns(3, prefix=f"rck{os.getpid()}t")
    try:
        n.setup()
        yield n
    finally:
        n.close()
        assert netns.leftovers(n.prefix) == []


def _reaches(net: netns.Netns, src: int | None, dst: int) -> bool:
    argv = [sys.executable, "-c", _CONNECT, net.host(dst)]
    if src is not None:
        argv = net.exec_prefix(src) + argv
    return subprocess.run(argv, capture_output=True, timeout=10, check=False).returncode == 0


def test_partition_cuts_nodes_apart_but_not_the_clients(net: netns.Netns) -> None:
    listeners = [subprocess.Popen(net.exec_prefix(i) + [sys.executable, "-c", _LISTEN,
                                                        net.host(i)],
                                  stdout=subprocess.PIPE) for i in range(3)]
    try:
        for p in listeners:
            assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        assert _reaches(net, 0, 1) and _reaches(net, 1, 2)
        net.partition([{0}, {1, 2}])
        assert not _reaches(net, 0, 1) and not _reaches(net, 2, 0)
        assert _reaches(net, 1, 2)
        assert all(_reaches(net, None, i) for i in range(3))   # the root namespace: clients
        net.heal()
        assert _reaches(net, 0, 1) and _reaches(net, 2, 0)
    finally:
        for p in listeners:
            p.kill()
            p.wait()
