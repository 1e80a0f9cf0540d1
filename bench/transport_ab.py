"""No ra equivalent. What CURVE costs the transport, PLAIN and CURVE alternated in one sitting:
messages per second between two DirectMailboxes in two processes over tcp loopback (a burst of
casts, counted at the receiver), the CPU time each side spends per message (what a loaded
machine distorts least), and the round trip of one call at a time.

Each round runs PLAIN then CURVE, or CURVE then PLAIN (alternating, so both see the same load
on a shared machine), each in a fresh receiver process; figures are medians over the rounds and
the ratio CURVE / PLAIN is what to read (absolute figures move with the machine's load).

    python -m bench.transport_ab [--rounds 5] [--n 20000] [--size 100] [--calls 2000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from transport.cookie import plain_password
from transport.direct import DirectMailbox
from transport.mechanism import MechanismFactory, null_factory, plain_factory

__all__ = ["run_once", "main"]

_SECRET = b"bench-transport-ab-secret-0123456789"


def _mechanism(mode: str) -> MechanismFactory:
    if mode == "null":      # no authentication at all: only to measure what PLAIN costs
        return null_factory
    if mode == "curve":
        from transport.curve import secret_factory
        return secret_factory(_SECRET)  # type: ignore[no-any-return]
    return plain_factory(plain_password(_SECRET))


def _serve(mode: str) -> None:
    """Receiver: count casts; at ("expect", n) cast ("got", n) back once n have arrived;
    answer calls with their payload."""
    mb = DirectMailbox("tcp://127.0.0.1:0", mechanism=_mechanism(mode), blocking_connect=False)
    print(mb.address, flush=True)
    count, want, to, cpu0 = 0, -1, None, 0.0
    while True:
        for e in mb.recv_many(1000, timeout=1.0):
            if e.kind == "call":
                if e.payload == "stop":
                    mb.reply(e.frm, "bye")
                    mb.linger = 1.0
                    mb.close()
                    return
                mb.reply(e.frm, e.payload)
            elif type(e.payload) is tuple and e.payload[0] == "expect":
                want, to, count, cpu0 = e.payload[1], e.frm, 0, time.process_time()
            else:
                count += 1
            if to is not None and count >= want:
                mb.cast(to, ("got", count, time.process_time() - cpu0))
                count, want, to = 0, -1, None


def run_once(mode: str, n: int, size: int, calls: int) -> dict[str, float]:
    """One receiver process of ``mode`` ("plain" or "curve"): casts/s and call p50 (µs)."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.transport_ab", "--serve", mode],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        addr = proc.stdout.readline().strip()
        with DirectMailbox("tcp://127.0.0.1:0", mechanism=_mechanism(mode)) as mb:
            payload = ("usr", b"x" * size, None, 1700000000000)
            for _ in range(200):                       # warm up: connections both ways
                mb.call(addr, payload, timeout=10)
            mb.call(addr, "sync", timeout=10)      # "expect" is in before the burst starts
            mb.cast(addr, ("expect", n))
            mb.call(addr, "sync", timeout=10)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                mb.cast(addr, payload)
            got = mb.recv(60)
            el, cpu = time.perf_counter() - t0, time.process_time() - c0
            if got is None or got.payload[:2] != ("got", n):
                raise RuntimeError(f"{mode}: the receiver did not confirm {n} casts: {got}")
            lat = []
            for _ in range(calls):
                t1 = time.perf_counter()
                mb.call(addr, payload, timeout=10)
                lat.append(time.perf_counter() - t1)
            mb.call(addr, "stop", timeout=10)
        return {"casts/s": n / el, "sender CPU µs/msg": cpu / n * 1e6,
                "receiver CPU µs/msg": got.payload[2] / n * 1e6,
                "call p50 µs": statistics.median(lat) * 1e6}
    finally:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.transport_ab",
                                 description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--n", type=int, default=20000, help="casts per burst")
    ap.add_argument("--size", type=int, default=100, help="bytes of payload per message")
    ap.add_argument("--calls", type=int, default=2000, help="sequential calls per run")
    ap.add_argument("--modes", default="plain,curve",
                    help="the two mechanisms compared, A,B: plain, curve or null (no "
                         "authentication: what PLAIN costs is plain against null)")
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        _serve(a.serve)
        return 0
    ma, mb_ = a.modes.split(",")
    runs: dict[str, list[dict[str, float]]] = {ma: [], mb_: []}
    print(f"load average {os.getloadavg()[0]:.2f}; {a.rounds} rounds, {a.n} casts of "
          f"{a.size} B, {a.calls} calls", flush=True)
    for r in range(a.rounds):
        order = (ma, mb_) if r % 2 == 0 else (mb_, ma)
        for mode in order:
            got = run_once(mode, a.n, a.size, a.calls)
            runs[mode].append(got)
            print(f"  round {r + 1} {mode:5}: {got['casts/s']:9,.0f} casts/s   CPU µs/msg "
                  f"sender {got['sender CPU µs/msg']:5.2f} receiver "
                  f"{got['receiver CPU µs/msg']:5.2f}   call p50 {got['call p50 µs']:6.1f} µs",
                  flush=True)
    med: dict[str, dict[str, Any]] = {
        m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in runs.items()}
    for k in med[ma]:
        p, c = med[ma][k], med[mb_][k]
        print(f"median {k:20}: {ma.upper()} {p:10,.2f}   {mb_.upper()} {c:10,.2f}   "
              f"{mb_.upper()}/{ma.upper()} {c / p:5.2f}")
    print(f"load average {os.getloadavg()[0]:.2f} (a shared machine: rates and latencies move "
          "with its load; CPU per message much less so; read the ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
