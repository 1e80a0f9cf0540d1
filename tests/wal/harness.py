"""In-process wiring of one WAL and many DiskLogs (no transport): the WAL's batch loop driven by
the test, notices delivered straight to the logs. Used by the log tests and the contract suite."""
from __future__ import annotations

import os
from typing import Any

from ra.core.messages import Written
from ra.log import DiskLog
from wal.batch import Append
from wal.segment_writer import flush_closed
from wal.wal import Wal


class InProcNode:
    """``data_dir`` with a WAL object; ``log(uid)`` opens a DiskLog wired to it."""

    def __init__(self, data_dir: str, **wal_kw: Any) -> None:
        self.data_dir = data_dir
        self.wal_dir = os.path.join(data_dir, "wal")
        self.wal_kw = wal_kw
        self.queue: list[Append] = []
        self.notices: list[tuple[Any, Any]] = []
        #: the replies the WAL sent (WalAppend.reply): (to, frame, key), in order
        self.forwards: list[tuple[str, bytes, bytes]] = []
        self.logs: dict[str, DiskLog] = {}
        self.wal = self._start_wal()

    def _start_wal(self) -> Wal:
        w = Wal(self.wal_dir, self.data_dir, self._notify, forward=self._forward, **self.wal_kw)
        w.recover()
        return w

    def _notify(self, addr: Any, msg: Any) -> None:
        self.notices.append((addr, msg))

    def _forward(self, to: str, frame: bytes, key: bytes) -> bool:
        self.forwards.append((to, frame, key))
        return True

    def log(self, uid: str, **kw: Any) -> DiskLog:
        def send(m: Any) -> None:
            self.queue.append(Append(m.uid.encode(), uid, m.lw, m.entries, m.seq, m.reply))
        lg = DiskLog(uid, self.data_dir, send=send, **kw)
        self.logs[uid] = lg
        return lg

    def pump(self) -> list[tuple[str, Written]]:
        """Flush every log, run one WAL batch, deliver notices. Returns (uid, Written) fed."""
        for lg in self.logs.values():
            lg.flush()
        q, self.queue = self.queue, []
        if q:
            self.wal.handle_appends(q)
        return self.deliver()

    def deliver(self) -> list[tuple[str, Written]]:
        out = []
        notes, self.notices = self.notices, []
        for addr, msg in notes:
            lg = self.logs.get(addr)
            if lg is None:
                continue
            for ev in lg.handle_wal_event(msg):
                lg.handle_written(ev)
                out.append((addr, ev))
        return out

    def crash_wal(self) -> None:
        """The WAL dies: queued appends are lost; a new WAL recovers the directory."""
        self.queue.clear()
        self.notices.clear()
        self.wal.close()
        self.wal = self._start_wal()

    def crash_all(self) -> None:
        """Node crash: WAL and servers die; logs are reopened from disk."""
        uids = list(self.logs)
        for lg in self.logs.values():
            lg.close()
        self.logs.clear()
        self.crash_wal()
        for u in uids:
            self.log(u)

    def flush_segments(self) -> int:
        return flush_closed(self.wal_dir, self.data_dir,
                            self.wal_kw.get("segment_max_entries", 4096))
