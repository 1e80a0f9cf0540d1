"""A writer process for the WAL process tests and the benchmark: a DiskLog wired to a real WAL
over transport. Appends ``--n`` entries (commands ``(uid, index, term)`` + padding), sometimes
overwriting its tail with a higher term (a follower after a leader change), until everything is
confirmed. Writes a JSON report: its final log (index -> term) and last_written.

Progress lines ``confirmed <idx>`` are appended to ``--progress`` as confirmations arrive."""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wal", required=True)
    ap.add_argument("--uid", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite-p", type=float, default=0.1)
    ap.add_argument("--pad", type=int, default=64)
    ap.add_argument("--report", required=True)
    ap.add_argument("--deadline", type=float, default=60.0)
    a = ap.parse_args(argv)
    import wal
    from ra.log import DiskLog
    from transport import Mailbox

    rng = random.Random(a.seed)
    mb = Mailbox(None)
    # fenced as a server's log is (ra.server.proc): before anything is read from disk
    log = DiskLog(a.uid, a.data_dir, send=lambda m: mb.cast(a.wal, m),
                  fence=lambda seq: wal.fence(mb, a.wal, a.uid, seq))
    pad = b"p" * a.pad
    with open(a.report + ".start.tmp", "w") as f:   # what this incarnation recovered
        json.dump({"last": log.last_index_term()[0], "last_written": log.last_written()[0],
                   "pid": os.getpid()}, f)
    os.replace(a.report + ".start.tmp", a.report + ".start")
    term = max(1, log.last_index_term()[1])
    end = time.monotonic() + a.deadline
    prog = open(a.report + ".progress", "a")
    last_progress = time.monotonic()
    reported = log.last_written()[0]
    saw_error = False
    while time.monotonic() < end:
        last = log.last_index_term()[0]
        lw = log.last_written()[0]
        inflight = last - lw
        if last < a.n and inflight < 4 * a.batch:
            if rng.random() < a.overwrite_p and last > 1:
                frm = rng.randint(max(1, last - 5, log.snapshot_index_term()[0] + 1), last)
                term += 1
                k = rng.randint(1, a.batch)
                log.write([(i, term, (a.uid, i, term, pad)) for i in range(frm, frm + k)])
            else:
                for i in range(last + 1, min(a.n, last + a.batch) + 1):
                    log.append((i, term, (a.uid, i, term, pad)))
            log.flush()
        elif last >= a.n and lw >= last:
            break
        env = mb.recv(0.05)
        while env is not None:
            for ev in log.handle_wal_event(env.payload):
                if log.handle_written(ev):
                    last_progress = time.monotonic()
            env = mb.recv(0)
        saw_error = saw_error or log.wal_error is not None
        lw = log.last_written()[0]
        if lw != reported:
            prog.write(f"{lw}\n")
            prog.flush()
            reported = lw
        if time.monotonic() - last_progress > 0.3:
            log.resend_unconfirmed()
            last_progress = time.monotonic()
        log.flush()
    lw, lwt = log.last_written()
    terms = {i: log.fetch_term(i) for i in range(1, log.last_index_term()[0] + 1)}
    with open(a.report + ".tmp", "w") as f:
        json.dump({"last_written": lw, "last": log.last_index_term()[0], "terms": terms,
                   "wal_error": log.wal_error, "saw_wal_error": saw_error}, f)
    os.replace(a.report + ".tmp", a.report)
    mb.close()
    return 0 if lw >= a.n else 2


if __name__ == "__main__":
    sys.exit(main())
