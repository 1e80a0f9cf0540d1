"""No ra equivalent. The replication path of W3 entries in one process, for instruction counts
(``valgrind --tool=callgrind``: machine-independent A/B evidence): a leader's log appends a batch
of pipelined commands and flushes it to its (absent) WAL, the append_entries for it is framed as
the server sends it, a follower unframes it, writes the entries and flushes them to its WAL.
Runs on this tree and on older ones (no packed append_entries there)::

    valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \\
        .venv/bin/python -m bench.enc_path --batches 20 --size 500
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from ra.core.messages import AppendEntriesRpc
from ra.core.types import ServerId
from ra.log.log import DiskLog
from ra.wire import codec
from transport import envelope

try:
    from ra.server import packed
except ImportError:        # a tree from before packed append_entries
    packed = None  # type: ignore[assignment]

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.enc_path", description=__doc__)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--size", type=int, default=500)
    args = ap.parse_args(argv)
    leader_id = ServerId("bench", "127.0.0.1:5001")
    addr = "tcp://127.0.0.1:5001"
    with tempfile.TemporaryDirectory(prefix="ra-encpath-") as tmp:
        sent: list[Any] = []
        lead = DiskLog("leader", tmp, send=sent.append)
        foll = DiskLog("follower", tmp, send=sent.append)
        idx = 0
        for b in range(args.batches):
            prev = idx
            for k in range(args.size):
                idx += 1
                # what a W3 pipelined command becomes in the log (ra/core/server.py)
                lead.append((idx, 1, ("usr", 1, ("notify", idx, addr), 1_700_000_000_000 + idx)))
            lead.flush()
            msg = AppendEntriesRpc(1, leader_id, prev, prev, 1 if prev else 0,
                                   lead.take(prev + 1, args.size))
            wire: Any = msg
            if packed is not None:
                wire = packed.pack(msg, lead.payloads(msg.entries))
            frame = envelope.pack(envelope.CAST, addr, None, ("$rpc", wire))
            _kind, _frm, _ref, payload = envelope.unpack(frame)
            got = payload[1]
            if packed is not None:
                got, cmds, payloads = packed.unpack(got)
                foll.carry(got.prev_log_index + 1, cmds, payloads)
            foll.write(got.entries)
            foll.flush()
            sent.clear()
        assert foll.last_index_term() == (idx, 1) and codec.decode(codec.encode(1)) == 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
