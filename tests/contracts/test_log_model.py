"""DiskLog against MemoryLog as a model: the same random operations (leader appends, follower
overwrites, syncs, node crashes, WAL-only crashes with appends in flight, snapshots, checkpoints
and their promotion, WAL roll-overs and segment flushes) must leave both with
the same observable log after every step. Seeded; a failure prints the seed and the step."""
from __future__ import annotations

import random
from typing import Any

import pytest

from ra.testing.memory import MemoryLog
from tests.wal.harness import InProcNode


def _view(lg: Any) -> tuple[Any, ...]:
    snap = lg.snapshot_index_term()
    last = lg.last_index_term()
    return (last, lg.last_written(), snap, lg.take(snap[0] + 1, last[0] + 1),
            [lg.fetch_term(i) for i in range(max(0, snap[0] - 1), last[0] + 2)],
            lg.checkpoint_index_terms())


@pytest.mark.parametrize("seed", range(8))
def test_disk_log_follows_memory_model(tmp_path: Any, seed: int) -> None:
    rng = random.Random(seed)
    node = InProcNode(str(tmp_path), max_size_bytes=3000, segment_max_entries=7)
    disk = node.log("m")
    mem = MemoryLog()
    term = 1
    for step in range(150):
        op = rng.choices(["append", "write", "sync", "crash", "snap", "roll", "tick", "walcrash",
                          "flush", "ckpt", "promote", "recover"],
                         [30, 10, 25, 5, 4, 5, 5, 4, 6, 6, 3, 2])[0]
        last = mem.last_index_term()[0]
        snap_idx = mem.snapshot_index_term()[0]
        if op == "append":
            for _ in range(rng.randint(1, 6)):
                e = (mem.next_index(), term, ("c", mem.next_index(), term))
                mem.append(e)
                disk.append(e)
        elif op == "write":
            term += 1
            frm = rng.randint(snap_idx + 1, last + 1)
            es = [(i, term, ("w", i, term)) for i in range(frm, frm + rng.randint(1, 5))]
            mem.write(es)
            disk.write(es)
        elif op == "sync":
            for ev in mem.sync():
                mem.handle_written(ev)
            node.pump()
        elif op == "crash":
            mem.crash()
            node.crash_all()
            disk = node.logs["m"]
        elif op == "snap":
            w = mem.last_written()[0]
            if w > snap_idx:
                idx = rng.randint(snap_idx + 1, w)
                t = mem.fetch_term(idx)
                mem.update_release_cursor(idx, t, (), 0, {"at": idx})
                disk.update_release_cursor(idx, t, (), 0, {"at": idx})
        elif op == "ckpt":                      # at any index: applied may exceed written
            if last > snap_idx:
                idx = rng.randint(snap_idx + 1, last)
                t = mem.fetch_term(idx)
                mem.checkpoint(idx, t, (), 0, {"cp": idx})
                disk.checkpoint(idx, t, (), 0, {"cp": idx})
        elif op == "promote":
            idx = rng.randint(snap_idx, last + 1)
            assert mem.promote_checkpoint(idx) == disk.promote_checkpoint(idx), \
                f"seed {seed} step {step}: promote {idx}"
        elif op == "recover":                   # what a restarting core would start from
            assert mem.recover_snapshot() == disk.recover_snapshot(), f"seed {seed} step {step}"
        elif op == "roll":
            node.wal.roll_over()
            node.flush_segments()
        elif op == "tick":
            disk.tick()
        elif op == "flush":                     # sent to the WAL, not yet written
            disk.flush()
        elif op == "walcrash":                  # the WAL alone dies; the server keeps its memtable
            node.crash_wal()
            node.deliver()                      # wal_started: resend what is unconfirmed
        assert _view(disk) == _view(mem), f"seed {seed} step {step} after {op}"
    for ev in mem.sync():
        mem.handle_written(ev)
    node.pump()
    mem.crash()
    node.crash_all()
    assert _view(node.logs["m"]) == _view(mem)
    assert node.logs["m"].recover_snapshot() == mem.recover_snapshot()
