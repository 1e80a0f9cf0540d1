"""No ra equivalent. W3 with and without client sessions on one cluster, alternating, with the
CPU per command of the client and of the three server processes: what sessions cost.

``python -m bench.sessions_ab [N]`` (N pipelined commands per run, default 20,000).
"""
from __future__ import annotations

import logging
import os
import sys
import tempfile

import psutil

import ra
from bench.procs import Reaper
from bench.workloads import COUNTER, RaNodes, _w3


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else 20_000
    logging.getLogger("transport.mailbox").setLevel(logging.ERROR)
    with Reaper() as reaper:
        nodes = RaNodes(tempfile.mkdtemp(prefix="ra-sessions-ab-", dir="/tmp"), reaper)
        nodes.start_all()
        ids = [nodes.sid("ab", i) for i in range(3)]
        ra.start_cluster("ab", COUNTER, ids, timeout=30)
        _m, leader = ra.members(ids)
        on, off = ra.Client(), ra.Client(sessions=False)
        on.process_command(ids, 0)
        off.process_command(ids, 0)

        def servers_cpu() -> float:
            total = 0.0
            for i in range(3):
                t = psutil.Process(nodes.server_pid("ab", i)).cpu_times()
                total += t.user + t.system
            return total

        for name, c in (("off", off), ("on", on), ("on", on), ("off", off)):
            c0, s0 = os.times(), servers_cpu()
            el, _ = _w3(c, leader, n, 5000, 120)
            c1, s1 = os.times(), servers_cpu()
            client = (c1.user + c1.system - c0.user - c0.system) / n * 1e6
            print(f"sessions {name:3}: {n / el:9,.0f} commands/s   client {client:5.1f} µs/cmd"
                  f"   3 servers {(s1 - s0) / n * 1e6:5.1f} µs/cmd", flush=True)
        reaper.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
