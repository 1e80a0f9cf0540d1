"""No ra equivalent. A WAL file of W writers x 3 small entries (what a node restart of W idle
servers finds): seconds and fsync calls to flush it into their segments (``Wal.recover``).

``python -m bench.wal_flush [W]`` (default 1,000) prints one line. Run it beside other fsyncing
processes to see what a node restart sees: each fsync waits for a journal commit that carries
the others' metadata too (``wal.osio.DurableBatch`` makes the writers' files durable together).
"""
import os
import shutil
import sys
import tempfile
import time

from wal.format import encode_header, encode_records
from wal.wal import Wal
from wal import osio
W = int(sys.argv[1]) if len(sys.argv) > 1 else 1000


class Count(osio.RealOS):
    n = 0

    def fsync(self, fd: int) -> None:
        Count.n += 1
        super().fsync(fd)


osio.set_os(Count())
d = tempfile.mkdtemp(prefix="walrec-", dir="/tmp")
os.makedirs(os.path.join(d, "wal"))
path = os.path.join(d, "wal", "0000000000000001.wal")
with open(path, "wb") as f:
    f.write(encode_header(True))
    f.write(encode_records([(b"w%d" % w, i, 1, b"x" * 40) for w in range(W)
                                     for i in (1, 2, 3)], True))
t0 = time.monotonic()
w = Wal(os.path.join(d, "wal"), d, lambda a, m: None)
w.recover()
dt = time.monotonic() - t0
w.close()
print(f"W={W}: {dt:.2f} s, {Count.n} fsync calls, {len(os.listdir(d)) - 1} writer dirs")
shutil.rmtree(d, ignore_errors=True)
