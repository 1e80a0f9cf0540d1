"""Fuzz the WAL and the segment writer processes (each a real process, spawned as in
tests/wal): random terms, mutated and truncated WAL messages, raw frames. After each batch the
process is the same one and still does its job: the WAL confirms a real writer's append, the
segment writer flushes a closed WAL file."""
from __future__ import annotations

import os
from typing import Any
from collections.abc import Iterator

import pytest

from ra.log import DiskLog
from tests.fuzz.gen import fuzz_count, items
from tests.fuzz.runner import run_fuzz, run_streams, send_items
from tests.wal.procs import Procs, wait_for, wait_written, wal_overview
from transport.direct import DirectMailbox
from transport.envelope import Envelope, From
from wal import messages as wm
from wal import segment_writer as sw
from wal import wal as walproc
from wal.format import encode_header, encode_records

pytestmark = pytest.mark.integration

N = fuzz_count(2000)


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.cleanup()


def _wal_door(payload: Any, kind: str) -> str | None:
    frm = From("ipc:///x", 1) if kind == "call" else "ipc:///x"
    return walproc._door(Envelope(kind, frm, payload))


def _exemplars() -> list[Any]:
    return [wm.WalAppend("fz1", 0, [[1, 1, b"x"]], 1),
            wm.WalAppend("fz2", 3, [[4, 1, b""], [5, 2, b"y"]], 2),
            wm.WalRollOver(), wm.WalOverview(), wm.WalForgetWriter("fz1"), wm.WalFence("fz1", 3),
            wm.WalWritten("fz1", [[1, 1, 1]]), wm.WalStarted(1), wm.SegRoll()]


def test_fuzz_wal(tmp_path: Any, procs: Procs) -> None:
    tmp = str(tmp_path)
    data = os.path.join(tmp, "data")
    ep = f"ipc://{tmp}/wal.sock"
    p = procs.spawn("-m", "wal.wal", "--wal-dir", os.path.join(data, "wal"), "--data-dir", data,
                    "--endpoint", ep, log=os.path.join(tmp, "wal.log"))
    fz = DirectMailbox(f"ipc://{tmp}/fz.sock")
    wmb = DirectMailbox(f"ipc://{tmp}/writer.sock")
    try:
        wait_for(lambda: wal_overview(fz, ep), 20, "WAL ready")
        log = DiskLog("real", data, send=lambda m: wmb.cast(ep, m))
        idx = [0]

        def alive() -> None:
            assert p.poll() is None, "the WAL died"
            idx[0] += 1
            log.append((idx[0], 1, ("cmd", idx[0])))
            log.flush()
            wait_written(wmb, log, idx[0], 10, f"confirmation of entry {idx[0]}")
            while fz.recv(0) is not None:     # notices to the fuzzer's forged appends
                pass

        def skip(m: Any) -> bool:   # the real writer's uid is not forged
            return getattr(m, "uid", None) == "real" and wm.check(m) is None

        run_fuzz(items(_exemplars(), fz.address, skip), N,
                 lambda b: send_items(fz, ep, b, _wal_door), alive, "wal")
        run_streams([ep], N // 4, alive, "wal")
        ov = fz.call(ep, wm.WalOverview(), 5)
        assert ov["dropped_bad_messages"] > 0 and not ov["failed"]
        assert p.poll() is None
        log.close()
    finally:
        fz.close()
        wmb.close()


def test_fuzz_segment_writer(tmp_path: Any, procs: Procs) -> None:
    tmp = str(tmp_path)
    data = os.path.join(tmp, "data")
    wal_dir = os.path.join(data, "wal")
    os.makedirs(wal_dir)
    ep = f"ipc://{tmp}/sw.sock"
    p = procs.spawn("-m", "wal.segment_writer", "--wal-dir", wal_dir, "--data-dir", data,
                    "--endpoint", ep, "--poll-ms", "5000", log=os.path.join(tmp, "sw.log"))
    fz = DirectMailbox(f"ipc://{tmp}/fz.sock")
    try:
        wait_for(lambda: _sw_overview(fz, ep), 20, "segment writer ready")
        seq = [0]

        def alive() -> None:
            assert p.poll() is None, "the segment writer died"
            # two new WAL files: the older is closed (flushed on the nudge), the newer is the
            # "current" one a WAL would own
            seq[0] += 2
            for s in (seq[0], seq[0] + 1):
                with open(os.path.join(wal_dir, sw.wal_file_name(s)), "wb") as f:
                    f.write(encode_header(True)
                            + encode_records([(b"real", s, 1, b"payload")], True))
            fz.cast(ep, wm.SegRoll())
            wait_for(lambda: not os.path.exists(os.path.join(wal_dir, sw.wal_file_name(seq[0]))),
                     10, f"WAL file {seq[0]} flushed")

        exemplars = [wm.SegRoll(), wm.SegOverview(), wm.WalRollOver(),
                     wm.WalAppend("fz1", 0, [[1, 1, b"x"]], 1)]
        run_fuzz(items(exemplars, fz.address), N,
                 lambda b: send_items(fz, ep, b, sw._door), alive, "segment writer")
        ov = fz.call(ep, wm.SegOverview(), 5)
        assert sum(ov["dropped"].values()) > 0 and ov["flushed_files"] >= N // 25
        assert os.path.isdir(sw.segments_dir(data, "real"))
    finally:
        fz.close()


def _sw_overview(mb: Any, ep: str) -> Any:
    from ra.errors import RaError
    try:
        return mb.call(ep, wm.SegOverview(), 0.5)
    except RaError:
        return None
