"""What CURVE costs per message frame, in µs, for a few sizes: ``seal_frame`` + ``open_frame``
(transport.curve: what a mailbox calls per message: boxed in place in the bytes to write, opened
where it lies in the input, libsodium called directly) beside ``seal`` + ``unseal`` with the
framing and the copies a mailbox used to make around them (PyNaCl's wrappers). The two
alternate, best of several runs each (the machine may be shared).

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


def _frame(body: bytes) -> bytes:
    n = len(body)
    return (bytes((0, n)) if n < 256 else b"\x02" + n.to_bytes(8, "big")) + body


def _old(cl: CurveClient, sv: CurveServer, frame: bytes, n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    wires = [_frame(cl.seal(frame, False)[0]) for _ in range(n)]
    t1 = time.perf_counter()
    for w in wires:
        start = 2 if w[0] == 0 else 9
        sv.unseal(bytes(w[start:]), False)
    return t1 - t0, time.perf_counter() - t1


def _new(cl: CurveClient, sv: CurveServer, frame: bytes, n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    wires = [cl.seal_frame(frame) for _ in range(n)]
    t1 = time.perf_counter()
    for w in wires:
        sv.open_frame(w, 2 if w[0] == 0 else 9, len(w))
    return t1 - t0, time.perf_counter() - t1


def measure(size: int, n: int, repeat: int) -> dict[str, tuple[float, float]]:
    """Best-of-``repeat`` µs per frame, ``{"new": (seal, open), "old": (seal, open)}``."""
    frame = b"x" * size
    best = {"new": (float("inf"),) * 2, "old": (float("inf"),) * 2}
    for _ in range(repeat):
        for name, fn in (("new", _new), ("old", _old)):
            s, o = fn(*_pair(), frame, n)
            b = best[name]
            best[name] = (min(b[0], s / n * 1e6), min(b[1], o / n * 1e6))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"{'frame':>8} {'seal_frame':>11} {'open_frame':>11} {'both':>7}   "
          f"{'seal+copies':>11} {'unseal+copies':>13} {'both':>7}   new/old")
    for size in (0, 100, 4096, 65536):
        m = measure(size, args.n if size <= 4096 else args.n // 10, args.repeat)
        (s, o), (os_, oo) = m["new"], m["old"]
        print(f"{size:>8} {s:>11.2f} {o:>11.2f} {s + o:>7.2f}   {os_:>11.2f} {oo:>13.2f} "
              f"{os_ + oo:>7.2f}   {(s + o) / (os_ + oo):7.2f}")
    t0 = time.perf_counter()
    for _ in range(20):
        _pair()
    print(f"handshake (both roles, in memory, key generation included): "
          f"{(time.perf_counter() - t0) / 20 * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
