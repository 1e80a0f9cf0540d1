"""Mirrors ra_directory.erl. A node's durable name <-> uid directory and server configs.

``DATA_DIR/ra_directory.log`` is an append-only log of records, one per change: a server
registered (name, uid, cluster name and its full config, so that ``restart_server`` and a node
restart can bring it back), stopped or started again on purpose, deleted. Replayed in order,
the records give the directory. A change is *written* at once (:meth:`Directory.register`,
:meth:`Directory.set_stopped`) but made durable by :meth:`Directory.sync`, one ``fsync`` for
every change since the last one: the node daemon syncs once per batch of requests it served
and holds back the replies that followed a change until then
(:meth:`ra.node.daemon.NodeDaemon._on_mail`). 1,000 servers started together cost a handful of
fsyncs instead of 4 each (a temp file, a rename and two directory syncs per server, in the
format before).

Record: ``u32 length | u64 xxh64(body) | body`` (big-endian; ``body`` is :mod:`ra.wire.codec`
of ``("put", name, entry)``, ``("stop", name, bool)`` or ``("del", name)``). Crash safety: only
the records written after the last ``sync`` can be lost or torn by a crash; reading stops at
the first record that is short or fails its checksum, and the owner truncates the file there
(a torn tail is dropped, never half-read; the records before it are whole, as they were synced
before anything was appended after them). The log is compacted (the live entries rewritten
with :func:`wal.osio.atomic_write`: the old log or the new, never a mix) when the owner opens
it and when it holds more than ``4 x live + 1000`` records.

Older format (before the log): ``DATA_DIR/ra_directory`` (a codec map name -> ``{"uid",
"cluster_name"[, "stopped"]}``) and each server's config in ``DATA_DIR/<uid>/config``. The
owner migrates it on open: the log is written and synced first, then the old file removed (a
crash in between leaves both; the log wins). A reader that does not own the directory reads
either format and writes nothing.
"""
from __future__ import annotations

import os
import shutil
import struct
from typing import Any

import xxhash

from ra.wire import codec  # with ra's types registered
from wal import osio

__all__ = ["Directory", "LOG_FILE", "OLD_FILE"]

LOG_FILE = "ra_directory.log"
OLD_FILE = "ra_directory"
_HEAD = struct.Struct(">IQ")
#: compact when the log holds more than this many records per live entry (plus _SLACK)
_GROWTH = 4
_SLACK = 1000


def _record(rec: tuple[Any, ...]) -> bytes:
    body = codec.encode(rec)
    return _HEAD.pack(len(body), xxhash.xxh64_intdigest(body)) + body


def read_log(blob: bytes) -> tuple[list[tuple[Any, ...]], int]:
    """The whole records at the start of ``blob`` and the offset where they end (a torn or
    corrupt record ends them: what follows it is not read)."""
    out: list[tuple[Any, ...]] = []
    pos = 0
    while pos + _HEAD.size <= len(blob):
        n, ck = _HEAD.unpack_from(blob, pos)
        end = pos + _HEAD.size + n
        if end > len(blob):
            break
        body = blob[pos + _HEAD.size:end]
        if xxhash.xxh64_intdigest(body) != ck:
            break
        try:
            rec = codec.decode(body)
        except Exception:       # checksum right but not ours: treat as torn
            break
        if not isinstance(rec, (list, tuple)) or not rec:
            break
        out.append(tuple(rec))
        pos = end
    return out, pos


class Directory:
    """Names and configs of the servers a node hosts (durable once :meth:`sync` returns).

    ``owner=True`` (the node daemon's server supervisor, which holds the data dir's lock):
    migrates the old format, compacts, truncates a torn tail and may write. Otherwise the
    directory is read as it is on disk and never written (a test, the daemon counting its
    servers before it starts them)."""

    def __init__(self, data_dir: str, owner: bool = False) -> None:
        self.data_dir = data_dir
        self.owner = owner
        self._path = os.path.join(data_dir, LOG_FILE)
        self._names: dict[str, dict[str, Any]] = {}
        self._records = 0
        self._fd: int | None = None
        self._dirty = False             # written since the last sync
        self._dir_dirty = False         # a uid directory made since the last sync
        #: fsyncs done by :meth:`sync` (and compactions), for tests and benchmarks
        self.syncs = 0
        #: records written so far (the daemon holds a reply whose request wrote one)
        self.writes = 0
        try:
            with open(self._path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            self._read_old()
            if owner and self._names:
                self._compact()                  # the migration: durable before ...
                try:
                    os.unlink(os.path.join(data_dir, OLD_FILE))     # ... the old file goes
                except FileNotFoundError:
                    pass
            return
        recs, end = read_log(blob)
        for r in recs:
            self._apply(r)
        self._records = len(recs)
        if owner and (end < len(blob) or self._records > len(self._names) + 16):
            self._compact()        # drops the torn tail and the superseded records

    # -- reading ------------------------------------------------------------------------------
    def _apply(self, r: tuple[Any, ...]) -> None:
        op = r[0]
        if op == "put" and len(r) == 3:
            self._names[r[1]] = dict(r[2])
        elif op == "stop" and len(r) == 3 and r[1] in self._names:
            self._names[r[1]]["stopped"] = bool(r[2])
        elif op == "del" and len(r) == 2:
            self._names.pop(r[1], None)

    def _read_old(self) -> None:
        try:
            with open(os.path.join(self.data_dir, OLD_FILE), "rb") as f:
                names = dict(codec.decode(f.read()))
        except FileNotFoundError:
            return
        for name, e in names.items():
            e = dict(e)
            try:
                with open(os.path.join(self.data_dir, e["uid"], "config"), "rb") as f:
                    e["config"] = dict(codec.decode(f.read()))
            except FileNotFoundError:
                e["config"] = None     # restart_all logs it and leaves the server down
            self._names[name] = e

    def uid_of(self, name: str) -> str | None:
        e = self._names.get(name)
        return e["uid"] if e else None

    def names(self) -> dict[str, dict[str, Any]]:
        """name -> ``{"uid", "cluster_name"[, "stopped"]}``."""
        return {n: {k: v for k, v in e.items() if k != "config"} for n, e in self._names.items()}

    def __len__(self) -> int:
        return len(self._names)

    def stopped(self, name: str) -> bool:
        return bool(self._names.get(name, {}).get("stopped"))

    def config_of(self, name: str) -> dict[str, Any] | None:
        e = self._names.get(name)
        c = e.get("config") if e else None
        return dict(c) if c is not None else None

    # -- writing (owner only) -----------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """Changes written since the last :meth:`sync` (not yet durable)."""
        return self._dirty or self._dir_dirty

    def _append(self, rec: tuple[Any, ...]) -> None:
        if not self.owner:
            raise PermissionError(f"directory {self._path} is read-only here (not its owner)")
        if self._fd is None:
            new = not os.path.exists(self._path)
            self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
            self._dir_dirty |= new         # the log's own entry in the data dir
        osio.OS.write_all(self._fd, _record(rec))
        self._records += 1
        self.writes += 1
        self._dirty = True

    def register(self, name: str, uid: str, cluster_name: str, config: dict[str, Any]) -> None:
        """Record a new server, its config, and make its data directory (durable at the next
        :meth:`sync`)."""
        d = os.path.join(self.data_dir, uid)
        if not os.path.isdir(d):
            os.makedirs(d, exist_ok=True)
            self._dir_dirty = True
        e = {"uid": uid, "cluster_name": cluster_name, "config": dict(config)}
        self._append(("put", name, e))
        self._names[name] = e

    def set_stopped(self, name: str, stopped: bool) -> None:
        """Record that ``name`` was stopped on purpose (``stop_server``), or started again:
        a node restart brings back only the servers not stopped (durable at the next
        :meth:`sync`)."""
        e = self._names.get(name)
        if e is None or bool(e.get("stopped")) == stopped:
            return
        self._append(("stop", name, stopped))
        e["stopped"] = stopped

    def delete(self, name: str) -> None:
        """Forget ``name`` and delete all its data (config, log, snapshots, meta). The record
        is synced before the data goes: a crash in between must not leave a directory entry
        whose data is gone (a restart would bring back a member that forgot its votes)."""
        uid = self.uid_of(name)
        if uid is None:
            return
        self._append(("del", name))
        del self._names[name]
        self.sync()
        shutil.rmtree(os.path.join(self.data_dir, uid), ignore_errors=True)

    def sync(self) -> bool:
        """Make every change so far durable: one fsync of the log, and one of the data dir if
        a server directory (or the log) was created since. Compacts a log grown past
        ``4 x live + 1000`` records. Returns whether anything was synced. Raises ``OSError``."""
        if not self.dirty:
            return False
        if self._fd is not None and self._dirty:
            osio.OS.fsync(self._fd)
            self.syncs += 1
        if self._dir_dirty:
            osio.fsync_dir(self.data_dir)
            self.syncs += 1
        self._dirty = self._dir_dirty = False
        if self._records > _GROWTH * len(self._names) + _SLACK:
            self._compact()
        return True

    def _compact(self) -> None:
        """Rewrite the log as one ``put`` per live entry (with its stopped flag): temp file, fsync,
        rename, directory fsync (:func:`wal.osio.atomic_write`)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        recs = []
        for name, e in self._names.items():
            recs.append(_record(("put", name, e)))
        osio.atomic_write(self._path, b"".join(recs))
        self.syncs += 2
        self._records = len(recs)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
