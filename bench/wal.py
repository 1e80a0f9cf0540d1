"""No ra equivalent (ra measures this with its ra_bench). W8: the WAL alone.

S writer processes (1, 10, 100), forked from this process, each keep a window of 64 1 KiB
entries (batches of 16) in flight to a real WAL process (``python -m wal.wal``) over ipc, sending a new batch as soon as
confirmations free the window. Figures: entries/s, MB/s, entries per fsync, p50/p99 confirm
latency (send -> ``written`` notice). ``peer`` is the raw limit measured in the same run: one
process writing the same records sequentially with one ``fdatasync`` per batch of the same size
(the entries per fsync the WAL achieved). Also: recovery read speed (scan of a WAL file) and
full recovery (scan + flush to segments).

Run as ``python -m bench.wal [--quick]``; ``run(quick)`` returns the rows.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from wal.messages import WalAppend, WalOverview, WalWritten

__all__ = ["run", "main"]

ENTRY = 1024
#: per writer: entries in flight at most, entries per append message (a Raft leader's pipeline)
WINDOW = 64
BATCH = 16
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(metric: str, value: Any, unit: str, peer: Any = None, note: str = "") -> dict[str, Any]:
    return {"workload": "W8", "metric": metric, "value": value, "unit": unit, "peer": peer,
            "note": note}


def _writer(uid: str, wal_ep: str, window: int, batch: int, go_r: int, ready_w: int,
            duration: float, out: str) -> None:
    from transport import Mailbox
    mb = Mailbox(None)
    payload = os.urandom(ENTRY)
    os.write(ready_w, b"r")
    os.read(go_r, 1)
    t_end = time.monotonic() + duration
    nxt, lw = 1, 0
    sent_at: list[tuple[int, float]] = []   # (last index of batch, send time)
    lat: list[float] = []
    confirmed = 0
    while True:
        now = time.monotonic()
        if now >= t_end:
            break
        while nxt - 1 - lw + batch <= window:
            ents = [[i, 1, payload] for i in range(nxt, nxt + batch)]
            mb.cast(wal_ep, WalAppend(uid, lw, ents, nxt))
            nxt += batch
            sent_at.append((nxt - 1, time.monotonic()))
        env = mb.recv(0.05)
        while env is not None:
            p = env.payload
            if type(p) is WalWritten:
                to = p.ranges[-1][2]
                t = time.monotonic()
                while sent_at and sent_at[0][0] <= to:
                    last, ts = sent_at.pop(0)
                    lat.append(t - ts)
                confirmed += to - lw
                lw = to
            env = mb.recv(0)
    with open(out, "w") as f:
        json.dump({"confirmed": confirmed, "lat": lat, "batch": batch}, f)
    mb.close()


def _w8(S: int, duration: float, tmp: str) -> dict[str, Any]:
    from transport import Mailbox
    data = os.path.join(tmp, f"s{S}")
    os.makedirs(data)
    ep = f"ipc://{tmp}/wal{S}.sock"
    wal = subprocess.Popen([sys.executable, "-m", "wal.wal", "--wal-dir", f"{data}/wal",
                            "--data-dir", data, "--endpoint", ep], cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": ROOT})
    mb = Mailbox(None)
    kids: list[int] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ov0 = mb.call(ep, WalOverview(), 0.5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        window, batch = WINDOW, BATCH
        go_r, go_w = os.pipe()
        rd_r, rd_w = os.pipe()
        for k in range(S):
            pid = os.fork()
            if pid == 0:
                try:
                    _writer(f"w{k}", ep, window, batch, go_r, rd_w, duration,
                            os.path.join(data, f"w{k}.json"))
                finally:
                    os._exit(0)
            kids.append(pid)
        got = 0
        while got < S:
            got += len(os.read(rd_r, S))
        ov0 = mb.call(ep, WalOverview(), 5)
        import psutil
        wp = psutil.Process(wal.pid)
        c0 = sum(wp.cpu_times()[:2])
        t0 = time.monotonic()
        os.write(go_w, b"g" * S)
        for pid in kids:
            os.waitpid(pid, 0)
        elapsed = time.monotonic() - t0
        kids = []
        ov1 = mb.call(ep, WalOverview(), 5)
        wal_cpu = (sum(wp.cpu_times()[:2]) - c0) / elapsed
    finally:
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        wal.terminate()
        wal.wait(10)
        mb.close()
    lat: list[float] = []
    confirmed = 0
    for k in range(S):
        with open(os.path.join(data, f"w{k}.json")) as f:
            r = json.load(f)
        confirmed += r["confirmed"]
        lat.extend(r["lat"])
    lat.sort()
    syncs = ov1["syncs"] - ov0["syncs"]
    entries = ov1["entries"] - ov0["entries"]
    dur = min(elapsed, duration)
    return {"S": S, "eps": confirmed / dur, "per_sync": entries / max(1, syncs),
            "p50": lat[len(lat) // 2] * 1000 if lat else None,
            "p99": lat[int(len(lat) * 0.99)] * 1000 if lat else None,
            "window": window, "batch": batch, "wal_cpu": wal_cpu}


def _raw(batch: int, duration: float, tmp: str) -> float:
    """Entries/s of one process: encode ``batch`` 1 KiB records, write, fdatasync, repeat."""
    from wal.format import encode_header, encode_records
    path = os.path.join(tmp, f"raw{batch}.wal")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    os.write(fd, encode_header(True))
    payload = os.urandom(ENTRY)
    n = 0
    idx = 1
    t0 = time.monotonic()
    while time.monotonic() - t0 < duration:
        recs = [(b"raw", i, 1, payload) for i in range(idx, idx + batch)]
        os.write(fd, encode_records(recs, True))
        os.fdatasync(fd)
        idx += batch
        n += batch
    el = time.monotonic() - t0
    os.close(fd)
    os.unlink(path)
    return n / el


def _recovery(mb_size: int, tmp: str) -> tuple[float, float]:
    """(scan MB/s, full recovery MB/s) over a WAL file of ``mb_size`` MiB from 100 writers."""
    from wal.format import encode_header, encode_records, resolve, scan_file
    from wal.wal import Wal
    d = os.path.join(tmp, "rec")
    os.makedirs(os.path.join(d, "wal"))
    path = os.path.join(d, "wal", "0000000000000001.wal")
    payload = os.urandom(ENTRY)
    n = mb_size * 1024 * 1024 // (ENTRY + 33)
    with open(path, "wb") as f:
        f.write(encode_header(True))
        f.writelines(encode_records([(b"w%d" % (i % 100), i // 100 + 1, 1, payload)
                                     for i in range(k, min(n, k + 1000))], True)
                     for k in range(0, n, 1000))
    size = os.path.getsize(path) / 1e6
    t0 = time.monotonic()
    res = scan_file(path)
    resolve(res.records)
    scan = size / (time.monotonic() - t0)
    t0 = time.monotonic()
    w = Wal(os.path.join(d, "wal"), d, lambda a, m: None)
    w.recover()
    full = size / (time.monotonic() - t0)
    w.close()
    return scan, full


def run(quick: bool) -> list[dict[str, Any]]:
    tmp = tempfile.mkdtemp(prefix="ra-w8-", dir="/tmp")
    rows: list[dict[str, Any]] = []
    dur = 2.0 if quick else 5.0
    try:
        for S in (1, 10, 100):
            r = _w8(S, dur, tmp)
            raw = _raw(max(1, round(r["per_sync"])), 1.0 if quick else 2.0, tmp)
            note = (f"window {r['window']}, batch {r['batch']} per writer; WAL process CPU "
                    f"{r['wal_cpu']:.0%}; peer: raw limit")
            rows.append(_row(f"S={S} entries/s", r["eps"], "entries/s", raw,
                             note + f" at {round(r['per_sync'])} per fdatasync"))
            rows.append(_row(f"S={S} MB/s", r["eps"] * ENTRY / 1e6, "MB/s",
                             raw * ENTRY / 1e6, "1 KiB entries"))
            rows.append(_row(f"S={S} entries per fsync", r["per_sync"], "entries", None,
                             "target >= 20 at S=100"))
            rows.append(_row(f"S={S} confirm p50", r["p50"], "ms", None, "send -> written"))
            rows.append(_row(f"S={S} confirm p99", r["p99"], "ms", None, "send -> written"))
        for b in (64, 1024):
            rows.append(_row(f"raw limit batch={b}", _raw(b, 1.0, tmp), "entries/s", None,
                             "one process, write + fdatasync per batch (BENCH.md floors: "
                             "66,000 / 127,000)"))
        scan, full = _recovery(16 if quick else 64, tmp)
        rows.append(_row("recovery scan", scan, "MB/s", None, "read+verify+resolve; target >=100"))
        rows.append(_row("recovery to segments", full, "MB/s", None,
                         "scan + write/fsync segments of 100 writers + delete WAL"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.wal")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    for r in run(a.quick):
        print(f"{r['metric']:<28} {r['value']!s:>14.14} {r['unit']:<10} peer={r['peer']!s:.10} "
              f" {r['note']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
