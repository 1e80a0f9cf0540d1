"""No ra equivalent. The OS-call seam of the WAL, segment writer, meta, directory and snapshot
store.

Every durability-relevant system call (open, write, pwrite, fallocate, fsync, fdatasync, rename,
directory sync)
goes through the module-level :data:`OS` object so tests can swap in a :class:`FaultyOS` that
raises ``ENOSPC``/``EIO`` on chosen calls. Contract: a call either fully succeeds or raises
``OSError``; ``write_all`` loops over short writes and never returns having written less.
Every file that is replaced whole (meta, segments, snapshots, checkpoints, the directory) is
written by :func:`atomic_write`, so all of them go through the seam.
"""
from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager


__all__ = ["RealOS", "FaultyOS", "OS", "set_os", "get_os", "fsync_dir", "atomic_write",
           "DurableBatch", "unlink_durably"]


class RealOS:
    """Pass-through to the ``os`` module."""

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    def write_all(self, fd: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = self.write(fd, view)
            view = view[n:]

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pwrite_all(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (looping over short writes)."""
        view = memoryview(data)
        while view:
            n = self.pwrite(fd, view, offset)
            view = view[n:]
            offset += n

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        """Allocate ``length`` bytes at ``offset`` (zeros; the file grows to cover them)."""
        os.posix_fallocate(fd, offset, length)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def ftruncate(self, fd: int, length: int) -> None:
        os.ftruncate(fd, length)


class FaultyOS(RealOS):
    """A RealOS that raises ``OSError(err)`` on the named call once armed.

    ``arm("write", errno.ENOSPC, after=n)`` lets ``n`` calls of that kind succeed, then fails every
    later one (a full disk stays full; an I/O error stays). ``disarm()`` heals it.
    """

    def __init__(self) -> None:
        self._faults: dict[str, tuple[int, int]] = {}
        self.calls: dict[str, int] = {}

    def arm(self, call: str, err: int = errno.EIO, after: int = 0) -> None:
        self._faults[call] = (err, self.calls.get(call, 0) + after)

    def disarm(self) -> None:
        self._faults.clear()

    def _check(self, call: str) -> None:
        n = self.calls.get(call, 0)
        self.calls[call] = n + 1
        f = self._faults.get(call)
        if f is not None and n >= f[1]:
            raise OSError(f[0], f"injected {errno.errorcode.get(f[0], f[0])} on {call}")

    def write(self, fd: int, data: bytes | memoryview) -> int:
        self._check("write")
        return super().write(fd, data)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        self._check("write")        # a write for the faults, wherever it lands
        return super().pwrite(fd, data, offset)

    def fallocate(self, fd: int, offset: int, length: int) -> None:
        self._check("fallocate")
        super().fallocate(fd, offset, length)

    def fdatasync(self, fd: int) -> None:
        self._check("fdatasync")
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._check("fsync")
        super().fsync(fd)

    def rename(self, src: str, dst: str) -> None:
        self._check("rename")
        super().rename(src, dst)


OS: RealOS = RealOS()


def set_os(impl: RealOS) -> RealOS:
    """Install ``impl`` as the process-wide seam; returns the previous one."""
    global OS
    old, OS = OS, impl
    return old


def get_os() -> RealOS:
    """The seam currently installed."""
    return OS


class DurableBatch:
    """Many :func:`atomic_write` files made durable together (:meth:`batched`).

    Inside ``with DurableBatch.batched():`` a durable ``atomic_write`` only writes its ``.tmp``
    file; :func:`fsync_dir` and :func:`unlink_durably` are recorded. On leaving the block
    without an exception, the batch keeps every promise in the same order as one file at a
    time would, phase by phase: every ``.tmp`` file is fsynced, then renamed, then every
    directory touched is fsynced, then the recorded unlinks are done and their directories
    fsynced. A visible file is so still always complete and durable, and a file a new one
    replaces is deleted only once the new one is durable; but the file system commits its
    journal about twice in all, not twice per file (a WAL file holding the entries of 1,000
    servers took 2,000 commits, seconds, to flush into their segments at a node restart). On
    an exception nothing more is done: ``.tmp`` files may remain, which readers ignore.
    """

    _local = threading.local()      # the batch open in this thread (another's writes are not in it)

    def __init__(self) -> None:
        self.tmps: list[tuple[str, str]] = []     # (tmp, final)
        self.dirs: list[str] = []
        self.unlinks: list[str] = []

    @staticmethod
    def current() -> DurableBatch | None:
        """The batch open in this thread, if any."""
        b: DurableBatch | None = getattr(DurableBatch._local, "batch", None)
        return b

    @classmethod
    @contextmanager
    def batched(cls) -> Iterator[DurableBatch]:
        outer = cls.current()
        if outer is not None:               # nested: the outer batch keeps the promises
            yield outer
            return
        b = cls._local.batch = DurableBatch()
        try:
            yield b
        finally:
            cls._local.batch = None
        b._commit()

    def _commit(self) -> None:
        io = OS
        for tmp, _ in self.tmps:
            fd = io.open(tmp, os.O_RDONLY)
            try:
                io.fsync(fd)
            finally:
                io.close(fd)
        dirs = list(self.dirs)
        for tmp, final in self.tmps:
            io.rename(tmp, final)
            dirs.append(os.path.dirname(final) or ".")
        for d in dict.fromkeys(dirs):
            fsync_dir(d, io)
        if self.unlinks:
            for p in self.unlinks:
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
            for d in dict.fromkeys(os.path.dirname(p) or "." for p in self.unlinks):
                fsync_dir(d, io)


def unlink_durably(path: str) -> None:
    """Delete ``path`` and fsync its directory; inside a :class:`DurableBatch`, once the
    batch's new files are durable."""
    b = DurableBatch.current()
    if b is not None:
        b.unlinks.append(path)
        return
    os.unlink(path)
    fsync_dir(os.path.dirname(path) or ".")


def fsync_dir(path: str, osio: RealOS | None = None) -> None:
    """fsync a directory so that a rename or create inside it is durable (inside a
    :class:`DurableBatch`: at its end)."""
    b = DurableBatch.current()
    if b is not None and osio is None:
        b.dirs.append(path)
        return
    io = osio or OS
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        io.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes | memoryview, *, durable: bool = True,
                 sync_dir: bool = True) -> None:
    """Replace ``path`` by a file holding ``data``, atomically: write ``path + ".tmp"``, fsync
    it, rename it over ``path``, fsync the directory. A reader (or a restart) sees the old file
    or the new one, never a part; a crash can leave the ``.tmp`` file, which readers ignore.

    ``durable=False`` skips both fsyncs (still atomic; after a power loss either file may be
    there): for hints that only save work. ``sync_dir=False`` leaves the directory sync to the
    caller, who writes several files and syncs once. Raises ``OSError`` (from the seam).
    """
    io = OS
    tmp = path + ".tmp"
    batch = DurableBatch.current() if durable else None
    fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        io.write_all(fd, data)
        if durable and batch is None:
            io.fsync(fd)
    finally:
        io.close(fd)
    if batch is not None:
        batch.tmps.append((tmp, path))      # fsynced, renamed and its directory synced later
        return
    io.rename(tmp, path)
    if durable and sync_dir:
        fsync_dir(os.path.dirname(path) or ".", io)
