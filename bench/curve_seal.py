"""What CURVE costs per message frame: ``seal`` + ``unseal`` (transport.curve) of one frame,
in µs, for a few sizes; the best of several runs (the machine may be shared).

    python -m bench.curve_seal [--n 20000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import time

from transport.curve import CurveClient, CurveServer, generate_keypair


def _pair() -> tuple[CurveClient, CurveServer]:
    ck, sk = generate_keypair(), generate_keypair()
    cl = CurveClient({"Socket-Type": b"DEALER"}, keypair=ck, server_key=sk.public)
    sv = CurveServer({"Socket-Type": b"ROUTER"}, keypair=sk, allowed={ck.public})
    to_server = cl.start()
    while to_server:
        to_client = [o for b in to_server for o in sv.on_command(b)]
        to_server = [o for b in to_client for o in cl.on_command(b)]
    return cl, sv


def measure(size: int, n: int, repeat: int) -> tuple[float, float, float]:
    """Best-of-``repeat`` µs per frame: (seal, unseal, handshake of a fresh connection)."""
    frame = b"x" * size
    best_seal = best_unseal = best_hs = float("inf")
    for _ in range(repeat):
        cl, sv = _pair()
        t0 = time.perf_counter()
        bodies = [cl.seal(frame, False)[0] for _ in range(n)]
        t1 = time.perf_counter()
        for b in bodies:
            sv.unseal(b, False)
        t2 = time.perf_counter()
        for _ in range(20):
            _pair()
        t3 = time.perf_counter()
        best_seal = min(best_seal, (t1 - t0) / n * 1e6)
        best_unseal = min(best_unseal, (t2 - t1) / n * 1e6)
        best_hs = min(best_hs, (t3 - t2) / 20 * 1e6)
    return best_seal, best_unseal, best_hs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"{'frame':>8} {'seal µs':>9} {'unseal µs':>10} {'both µs':>8}")
    hs = 0.0
    for size in (0, 100, 4096, 65536):
        s, u, hs = measure(size, args.n if size <= 4096 else args.n // 10, args.repeat)
        print(f"{size:>8} {s:>9.2f} {u:>10.2f} {s + u:>8.2f}")
    print(f"handshake (both roles, in memory, key generation included): {hs:.0f} µs")


if __name__ == "__main__":
    main()
