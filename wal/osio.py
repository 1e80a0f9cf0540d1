"""No ra equivalent. The OS-call seam of the WAL, segment writer, meta, directory and snapshot
store.

Every durability-relevant system call (open, write, fsync, fdatasync, rename, directory sync)
goes through the module-level :data:`OS` object so tests can swap in a :class:`FaultyOS` that
raises ``ENOSPC``/``EIO`` on chosen calls. Contract: a call either fully succeeds or raises
``OSError``; ``write_all`` loops over short writes and never returns having written less.
Every file that is replaced whole (meta, segments, snapshots, checkpoints, the directory) is
written by :func:`atomic_write`, so all of them go through the seam.
"""
from __future__ import annotations

import errno
import os


__all__ = ["RealOS", "FaultyOS", "OS", "set_os", "get_os", "fsync_dir", "atomic_write"]


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


def fsync_dir(path: str, osio: RealOS | None = None) -> None:
    """fsync a directory so that a rename or create inside it is durable."""
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
    fd = io.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        io.write_all(fd, data)
        if durable:
            io.fsync(fd)
    finally:
        io.close(fd)
    io.rename(tmp, path)
    if durable and sync_dir:
        fsync_dir(os.path.dirname(path) or ".", io)
