"""No ra equivalent: runtime benchmarks (restart latency, spawn cost, idle child memory).

``run(quick)`` returns rows ``{"workload", "metric", "value", "unit", "peer", "note"}``:

* restart latency after SIGKILL (p50, p99): from the ``kill`` to the restarted child running its
  target (it reports over a unix datagram socket), through a one_for_one supervisor and the fork
  server; ``peer`` is the same with the fork server off (a cold interpreter per restart). Again
  through a real node daemon (its server supervisor), p50.
* spawn time: fork server spawn -> child running, against a cold ``python -c`` that imports the
  same modules and reports the same way (and, for scale, a bare ``python -c pass`` to exit).
* USS of an idle child from the fork server (peer: a cold interpreter with the same imports).

Run as ``python -m bench.runtime [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from typing import Any

import psutil

from supervisor import ChildSpec, Fork, ForkServer, Loop, SupFlags, start_link
from supervisor.child import OsChild

__all__ = ["run", "PRELOAD", "TARGET"]

PRELOAD = ["ra", "ra.errors", "transport", "supervisor", "bench._runtime_child"]
TARGET = "bench._runtime_child:ready_child"


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


class _Inbox:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="ra-bench-")
        self.path = os.path.join(self.dir, "ready.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def wait_pid(self, timeout: float = 10.0) -> int:
        self.sock.settimeout(timeout)
        return int(self.sock.recv(64))

    def close(self) -> None:
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


def _restart_latency(n: int, use_forkserver: bool) -> list[float]:
    inbox = _Inbox()
    fs = ForkServer(PRELOAD) if use_forkserver else None
    if fs:
        fs.start()
    loop = Loop()
    spec = ChildSpec("w", Fork(TARGET, (inbox.path,)), shutdown="brutal_kill")
    sup = start_link(loop, SupFlags("one_for_one", intensity=n + 10, period=1), [spec],
                     forkserver=fs)
    out: list[float] = []
    try:
        pid = inbox.wait_pid()
        for _ in range(n):
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            while True:  # drive the loop until the new child reports
                loop.run_once(0.001)
                try:
                    inbox.sock.settimeout(0)
                    new = int(inbox.sock.recv(64))
                    break
                except (BlockingIOError, TimeoutError):
                    continue
            out.append(time.perf_counter() - t0)
            pid = new
    finally:
        sup.shutdown()
        if fs:
            fs.stop()
        loop.close()
        inbox.close()
    return out


def _daemon_restart_latency(n: int) -> list[float]:
    """The same through a real node daemon: a server child under the server supervisor."""
    from ra import messages as rm
    from ra.node import daemon as node
    from ra.server.sup import SERVER_INTENSITY

    inbox = _Inbox()
    data = tempfile.mkdtemp(prefix="ra-bench-node-")
    out: list[float] = []
    try:
        addr = node.start(data_dir=data, listen="127.0.0.1:0")
        k = 0
        while len(out) < n:
            # a fresh child per 3 kills: a raw child's own supervisor, as a server's, gives up
            # after SERVER_INTENSITY (3) restarts in SERVER_PERIOD (5 s)
            k += 1
            node.node_call(addr, rm.StartChild(f"w{k}", TARGET, [inbox.path], {}))
            pid = inbox.wait_pid()
            for _ in range(min(SERVER_INTENSITY, n - len(out))):
                t0 = time.perf_counter()
                os.kill(pid, signal.SIGKILL)
                pid = inbox.wait_pid()
                out.append(time.perf_counter() - t0)
    finally:
        node.stop()
        inbox.close()
        import shutil
        shutil.rmtree(data, ignore_errors=True)
    return out


def _cold_code(path: str) -> str:
    imports = "; ".join(f"import {m}" for m in PRELOAD if m != "bench._runtime_child")
    return (f"{imports}; import socket, os; s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); "
            f"s.sendto(str(os.getpid()).encode(), {path!r}); import signal; signal.pause()")


def _spawn_times(n: int) -> tuple[list[float], list[float], list[float], float, float]:
    inbox = _Inbox()
    fs = ForkServer(PRELOAD)
    fs.start()
    fork_t: list[float] = []
    cold_t: list[float] = []
    bare_t: list[float] = []
    uss_fork = uss_cold = 0.0
    try:
        for i in range(n):
            t0 = time.perf_counter()
            ch = OsChild(fs.spawn(TARGET, (inbox.path,)))
            inbox.wait_pid()
            fork_t.append(time.perf_counter() - t0)
            if i == n - 1:
                uss_fork = psutil.Process(ch.pid).memory_full_info().uss
            ch.shutdown("brutal_kill")
            t0 = time.perf_counter()
            ch = OsChild.exec([sys.executable, "-c", _cold_code(inbox.path)])
            inbox.wait_pid()
            cold_t.append(time.perf_counter() - t0)
            if i == n - 1:
                uss_cold = psutil.Process(ch.pid).memory_full_info().uss
            ch.shutdown("brutal_kill")
            t0 = time.perf_counter()
            OsChild.exec([sys.executable, "-c", "pass"]).wait(None)
            bare_t.append(time.perf_counter() - t0)
    finally:
        fs.stop()
        inbox.close()
    return fork_t, cold_t, bare_t, uss_fork, uss_cold


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run the runtime workloads; ``quick`` uses fewer repetitions."""
    n_restart = 20 if quick else 100
    n_spawn = 5 if quick else 20
    rows: list[dict[str, Any]] = []
    warm = _restart_latency(n_restart, True)
    cold = _restart_latency(max(5, n_restart // 4), False)
    ms = 1000.0
    rows.append({"workload": "restart after SIGKILL (one_for_one, fork server)",
                 "metric": "p50", "value": round(statistics.median(warm) * ms, 2), "unit": "ms",
                 "peer": round(statistics.median(cold) * ms, 2),
                 "note": "kill -> restarted child running; peer: no fork server (cold "
                         "interpreter per restart); target p50 <= 50 ms"})
    rows.append({"workload": "restart after SIGKILL (one_for_one, fork server)",
                 "metric": "p99", "value": round(_pct(warm, 0.99) * ms, 2), "unit": "ms",
                 "peer": round(_pct(cold, 0.99) * ms, 2), "note": f"n={len(warm)}/{len(cold)}"})
    # a failed measurement fails the suite (make bench reports it), never a row without a figure
    via_daemon = _daemon_restart_latency(8 if quick else 24)
    rows.append({"workload": "restart after SIGKILL (node daemon, server supervisor)",
                 "metric": "p50", "value": round(statistics.median(via_daemon) * ms, 2),
                 "unit": "ms", "peer": None,
                 "note": f"kill -> restarted server running, n={len(via_daemon)}; "
                         "target p50 <= 50 ms"})
    fork_t, cold_t, bare_t, uss_fork, uss_cold = _spawn_times(n_spawn)
    rows.append({"workload": "server spawn -> running", "metric": "p50",
                 "value": round(statistics.median(fork_t) * ms, 2), "unit": "ms",
                 "peer": round(statistics.median(cold_t) * ms, 2),
                 "note": "fork server vs cold `python -c` importing "
                         f"{', '.join(m for m in PRELOAD if m != 'bench._runtime_child')}; bare "
                         f"`python -c pass` to exit: {statistics.median(bare_t) * ms:.1f} ms"})
    rows.append({"workload": "idle child memory", "metric": "USS",
                 "value": round(uss_fork / 2**20, 2), "unit": "MB",
                 "peer": round(uss_cold / 2**20, 2),
                 "note": "fork-server child (shares the preloaded pages copy-on-write) vs cold "
                         "interpreter with the same imports; target <= 10 MB"})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the rows as a table (``--json`` for JSON)."""
    p = argparse.ArgumentParser(prog="python -m bench.runtime")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    rows = run(a.quick)
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        value, peer = ("-" if r[k] is None else r[k] for k in ("value", "peer"))
        print(f"{r['workload']:<55} {r['metric']:<5} {value:>9} {r['unit']:<3} "
              f"peer {peer:>9}  {r['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
