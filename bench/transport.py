"""No ra equivalent. Transport benchmark: our mailboxes against raw pyzmq, same two processes.

One server process hosts both a raw ROUTER (msgpack-decoding every frame, as any real peer
would) and a mailbox; this process drives a raw DEALER and a mailbox of the same kind against
it, interleaved so both see the same machine load. The mailbox is the libzmq
:class:`transport.Mailbox` (node daemons) or, in the rows marked ``direct``, the
:class:`transport.direct.DirectMailbox` on both ends (ZMTP on plain sockets: ra servers, WALs
and clients). Workloads:

* cast throughput, one message per frame and 100 messages per frame (the same batching on
  both sides), counted at the receiver: the clock stops when the receiver has decoded all;
* call round trip p50/p99 over tcp loopback (and ipc), one call at a time.

``run(quick)`` returns rows ``{"workload", "metric", "value", "unit", "peer", "note"}`` where
``peer`` is the raw pyzmq figure. ``python -m bench.transport [--quick]`` prints them.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import msgpack
import zmq

from ra.testing.procs import kill_tree
from transport import Mailbox
from transport.direct import DirectMailbox

__all__ = ["run", "main"]

_SMALL = ("usr", 42, None, 1700000000000)  # a small command, as a pipeline_command carries
# The same command as a list: msgpack packs it natively on both sides, so the ratio on this
# payload isolates the Mailbox/envelope cost from the cost of keeping tuples exact.
_SMALL_LIST = ["usr", 42, None, 1700000000000]


def _serve(raw_ep: str, mb_ep: str, kind: str = "zmq") -> None:
    """Server side: echo calls, count casts, answer 'done' with the count."""
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.ROUTER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.setsockopt(zmq.RCVHWM, 0)
    raw.bind(raw_ep)
    raw_addr = raw.getsockopt_string(zmq.LAST_ENDPOINT)
    mb: Any = Mailbox(mb_ep) if kind == "zmq" else DirectMailbox(mb_ep)
    print(raw_addr, mb.address, flush=True)
    poller = zmq.Poller()
    poller.register(raw, zmq.POLLIN)
    poller.register(mb.socket if kind == "zmq" else mb.fileno(), zmq.POLLIN)
    raw_count = mb_count = 0
    unpackb = msgpack.unpackb
    while True:
        ready = dict(poller.poll(None if not mb.pending else 0))
        if raw in ready:
            while True:
                try:
                    ident, data = raw.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                obj = unpackb(data)
                if type(obj) is list and obj and obj[0] == "call":
                    raw.send_multipart([ident, msgpack.packb(obj[1])])
                elif obj == "done":
                    raw.send_multipart([ident, msgpack.packb(raw_count)])
                    raw_count = 0
                elif obj == "stop":
                    return
                else:
                    raw_count += 1
        for env in mb:
            if env.kind == "cast":
                mb_count += 1
            elif env.payload == "done":
                mb.reply(env.frm, mb_count)
                mb_count = 0
            else:
                mb.reply(env.frm, env.payload)


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _raw_call(dealer: zmq.Socket[Any], msg: Any) -> Any:
    dealer.send(msgpack.packb(["call", msg]))
    return msgpack.unpackb(dealer.recv())


def _bench_calls(dealer: zmq.Socket[Any], mb: Mailbox, mb_addr: str, n: int,
                 rounds: int) -> tuple[list[float], list[float]]:
    raw_lat: list[float] = []
    mb_lat: list[float] = []
    pc = time.perf_counter
    for _ in range(50):  # warm both paths (connections, caches)
        _raw_call(dealer, _SMALL)
        mb.call(mb_addr, _SMALL)
    per = n // rounds
    for _ in range(rounds):  # interleave in rounds so load noise hits both alike
        for _ in range(per):
            t = pc()
            _raw_call(dealer, _SMALL)
            raw_lat.append(pc() - t)
        for _ in range(per):
            t = pc()
            mb.call(mb_addr, _SMALL)
            mb_lat.append(pc() - t)
    return raw_lat, mb_lat


def _bench_casts(dealer: zmq.Socket[Any], mb: Mailbox, mb_addr: str, n: int, batch: int,
                 rounds: int, msg: Any = _SMALL) -> tuple[float, float]:
    """Messages per second (median of rounds) for raw and Mailbox; ``batch`` per frame."""
    frames = n // batch
    payload: Any = msg if batch == 1 else [msg] * batch
    raw_rates, mb_rates = [], []
    packb = msgpack.packb
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(frames):
            dealer.send(packb(payload))
        dealer.send(packb("done"))
        got = msgpack.unpackb(dealer.recv())
        raw_rates.append(frames * batch / (time.perf_counter() - t))
        assert got == frames, (got, frames)
        t = time.perf_counter()
        for _ in range(frames):
            mb.cast(mb_addr, payload)
        got = mb.call(mb_addr, "done", timeout=60)
        mb_rates.append(frames * batch / (time.perf_counter() - t))
        assert got == frames, (got, frames, mb.counters)
    return statistics.median(raw_rates), statistics.median(mb_rates)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Run every transport workload; rows as described in the module docstring."""
    n_calls = 1000 if quick else 5000
    n_casts = 20_000 if quick else 100_000
    rounds = 3 if quick else 5
    rows: list[dict[str, Any]] = []
    load = os.getloadavg()[0]
    note = f"load average {load:.1f} at the start: noisy" if load > 0.5 else ""
    # one raw baseline for every row: the raw figures of the plain run (tcp, libzmq server
    # loop); the direct server's loop would slow its own raw baseline
    raw_base: dict[Any, Any] = {}
    base = f"/tmp/ra-bench-{os.getpid()}"
    for transport_name, kind, raw_ep, mb_ep in [
        ("tcp", "zmq", "tcp://127.0.0.1:*", "tcp://127.0.0.1:0"),
        ("ipc", "zmq", f"ipc://{base}-raw.sock", f"ipc://{base}-mb.sock"),
        ("tcp, direct", "direct", "tcp://127.0.0.1:*", "tcp://127.0.0.1:0"),
    ]:
        proc = subprocess.Popen(
            [sys.executable, "-c", ("import sys; from bench.transport import _serve; "
                                    "_serve(sys.argv[1], sys.argv[2], sys.argv[3])"),
             raw_ep, mb_ep, kind],
            stdout=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        )
        try:
            assert proc.stdout is not None
            raw_addr, mb_addr = proc.stdout.readline().split()
            ctx = zmq.Context.instance()
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(raw_addr)
            # The client mailbox binds the same kind of endpoint as the server's.
            client: Any = (Mailbox(None if transport_name == "ipc" else "tcp://127.0.0.1:0")
                           if kind == "zmq" else DirectMailbox("tcp://127.0.0.1:0"))
            try:
                raw_lat, mb_lat = _bench_calls(dealer, client, mb_addr, n_calls, rounds)
                if transport_name == "tcp":
                    raw_base["calls"] = raw_lat
                elif kind == "direct":
                    raw_lat = raw_base.get("calls", raw_lat)
                for q, label in ((0.5, "p50"), (0.99, "p99")):
                    rows.append({
                        "workload": f"call round trip ({transport_name})", "metric": label,
                        "value": round(_pct(mb_lat, q) * 1e6, 1), "unit": "us",
                        "peer": round(_pct(raw_lat, q) * 1e6, 1),
                        "note": f"{len(mb_lat)} calls; peer = raw DEALER/ROUTER + msgpack "
                                f"(the plain tcp run's). {note}",
                    })
                if transport_name != "ipc":
                    for batch, msg, what in ((1, _SMALL, "tuple"), (100, _SMALL, "tuple"),
                                             (100, _SMALL_LIST, "list")):
                        raw_rate, mb_rate = _bench_casts(dealer, client, mb_addr, n_casts, batch,
                                                         rounds, msg)
                        if transport_name == "tcp":
                            raw_base[(batch, what)] = raw_rate
                        elif kind == "direct":
                            raw_rate = raw_base.get((batch, what), raw_rate)
                        rows.append({
                            "workload": f"cast throughput ({transport_name}, {batch}/frame, "
                                        f"{what} msgs)",
                            "metric": "msgs/s", "value": round(mb_rate), "unit": "msgs/s",
                            "peer": round(raw_rate),
                            "note": f"{n_casts} msgs, median of {rounds}; counted at the "
                                    f"receiver after decode. {note}",
                        })
                dealer.send(msgpack.packb("stop"))
                proc.wait(5)
            finally:
                client.close()
                dealer.close(0)
        finally:
            if proc.poll() is None:
                kill_tree(proc.pid)
                proc.wait(5)
            if proc.stdout:
                proc.stdout.close()
    for suffix in ("raw", "mb"):     # the killed server could not remove its socket files
        try:
            os.unlink(f"{base}-{suffix}.sock")
        except FileNotFoundError:
            pass
    return rows


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    rows = run(quick="--quick" in argv)
    for r in rows:
        ratio = f"{r['value'] / r['peer']:.2f}x raw" if r["peer"] else ""
        print(f"{r['workload']:<46} {r['metric']:>7} {r['value']:>12,} {r['unit']:<7} "
              f"raw {r['peer']:>12,}  {ratio}")
    if "--json" in argv:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
