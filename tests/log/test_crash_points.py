"""SIGKILL at random moments during a segment flush and during snapshot writes (real processes):
recovery is complete and consistent."""
from __future__ import annotations

import os
import random
import signal
from typing import Any

import pytest

from ra.core.messages import SnapshotMeta
from ra.log import DiskLog
from ra.log.snapshot import FileSnapshotStore
from tests.wal.harness import InProcNode
from tests.wal.procs import Procs, wait_for
from transport import codec
from wal.segment_writer import flush_closed, wal_files

FLUSH = ("import sys; from wal.segment_writer import flush_closed; "
         "flush_closed(sys.argv[1], sys.argv[2], 8, include_newest=True)")

SNAP = """
import sys
from ra.core.messages import SnapshotMeta
from ra.log.snapshot import FileSnapshotStore
from transport import codec
st = FileSnapshotStore(sys.argv[1], codec.encode, codec.decode)
i = 0
while True:
    i += 1
    st.write(SnapshotMeta(i, 1, (), 0), bytes([i % 256]) * (1 << 20))
"""


def _segment_files(data: str) -> int:
    n = 0
    for d in os.listdir(data):
        p = os.path.join(data, d, "segments")
        if os.path.isdir(p):
            n += len(os.listdir(p))
    return n


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_during_segment_flush(tmp_path: Any, procs: Procs, seed: int) -> None:
    rng = random.Random(seed)
    data = str(tmp_path / "data")
    node = InProcNode(data, max_size_bytes=6_000, segment_max_entries=8)
    uids = [f"s{i}" for i in range(6)]
    for u in uids:
        node.log(u)
    for k in range(40):
        for u in uids:
            lg = node.logs[u]
            if rng.random() < 0.15 and lg.last_index_term()[0] > 3:
                lg.write([(lg.last_index_term()[0] - 2, k + 2, (u, "ow", k))])
            else:
                s = lg.next_index()
                for i in range(s, s + 5):
                    lg.append((i, lg.last_index_term()[1] or 1, (u, i)))
        node.pump()
    expected = {u: node.logs[u].take(1, 10_000) for u in uids}
    assert all(node.logs[u].last_written()[0] == len(expected[u]) for u in uids)
    node.wal.close()
    n_wal = len(wal_files(node.wal_dir))
    assert n_wal >= 4
    wal_dir = node.wal_dir
    mid_flush_kills = 0
    for attempt in range(3):  # kill, kill again on the redo, then finish in-process
        if not wal_files(wal_dir):
            break
        target = rng.randint(1, 12)
        before = _segment_files(data)
        p = procs.spawn("-c", FLUSH, wal_dir, data)
        wait_for(lambda: p.poll() is not None or _segment_files(data) >= before + target,
                 30, "segment files to appear")
        procs.kill(p, signal.SIGKILL)
        mid_flush_kills += p.returncode == -signal.SIGKILL and bool(wal_files(wal_dir))
    assert mid_flush_kills >= 1
    flush_closed(wal_dir, data, 8, include_newest=True)
    assert wal_files(wal_dir) == []
    for u in uids:
        lg = DiskLog(u, data)
        assert lg.take(1, 10_000) == expected[u], u
        assert lg.last_written() == lg.last_index_term()
        lg.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_during_snapshot_write(tmp_path: Any, procs: Procs, seed: int) -> None:
    """The writer is killed in the middle of writing a snapshot (its temp file is there, not
    yet renamed, when it dies: checked, and retried until it is so); recovery finds the
    previous snapshot whole and removes the temp file."""
    rng = random.Random(seed)
    d = str(tmp_path / "snaps")
    os.makedirs(d)
    mid_write = False
    for _attempt in range(5):
        for n in os.listdir(d):           # a previous attempt's temp file must not count
            if n.endswith(".tmp"):
                os.remove(os.path.join(d, n))
        p = procs.spawn("-c", SNAP, d)
        target = rng.randint(2, 15)

        def progressed() -> bool:
            names = [n for n in os.listdir(d) if n.endswith(".snapshot")]
            return p.poll() is not None or any(int(n.split("_")[0]) >= target for n in names)
        wait_for(progressed, 30, f"snapshot {target}")
        # then strike while the next one is being written: its temp file is there
        wait_for(lambda: p.poll() is not None
                 or any(n.endswith(".tmp") for n in os.listdir(d)), 30, "a write under way")
        procs.kill(p, signal.SIGKILL)
        assert p.returncode == -signal.SIGKILL
        tmps = [n for n in os.listdir(d) if n.endswith(".tmp")]
        if tmps:
            mid_write = True          # it died between opening the temp file and the rename
            break
    assert mid_write, "no kill landed in the middle of a snapshot write in 5 tries"
    st = FileSnapshotStore(d, codec.encode, codec.decode)
    meta, data = st.recover()
    assert meta.index >= target - 1
    assert data == bytes([meta.index % 256]) * (1 << 20)
    assert st.warnings == []
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]
    assert SnapshotMeta(meta.index, 1, (), 0) == meta
