"""No ra equivalent (ra logs through OTP's ``logger``). The one log format of every process of a
node, its level and its file, and the file's rotation.

A line is one record::

    2026-12-03 10:38:27,956 INFO 127.0.0.1:4001 c1[10465] ra.server.proc: candidate -> leader in term 3 (leader c1@127.0.0.1:4001)

time, level, node (its address; ``-`` while unknown), who (a server's name, else the process's
role: ``node``, ``forkserver``, ``wal``, ``segment_writer``; ``-`` for other children), the pid
in brackets, the logger, the message; a traceback follows on the next lines of the same record.

Contract of the file (:class:`LineFileHandler`), written by every process of the node at once:

* each record is written with one ``write`` on an ``O_APPEND`` descriptor, so records of
  different processes never interleave and a rotation never splits one;
* only the node daemon rotates (``rotate=True``: at ``max_bytes``, ``backups`` old files
  ``FILE.1`` .. ``FILE.N``, as ``RotatingFileHandler``; before each of its own records and every
  second, so a file may pass ``max_bytes`` by what the others appended meanwhile); every
  process checks before each record
  whether the path still names its file and reopens it if not (as ``WatchedFileHandler``, so an
  external ``logrotate`` works too, with ``max_bytes`` 0);
* a record that cannot be written (a full disk, an I/O error) is dropped and counted, never
  raised and never printed: a full disk does not stop a process. Free space is checked before
  each record (with a margin of :data:`SPACE_MARGIN`), so a record that does not fit is dropped
  whole rather than cut; the next record written after a drop is preceded by a line saying how
  many were lost.

The daemon calls :func:`setup` with its config (``log_level``, ``log_file``, ``log_max_bytes``,
``log_backups``) and hands the same call to its fork server, whose children inherit it; a
forked child finds who it is in ``$RA_LOG_WHO`` (set in its spec) unless it calls
:func:`set_identity` (a server does, with its name), and the node's address in the data dir's
``node_address`` file (``$RA_DATA_DIR``) unless told.
"""
from __future__ import annotations

import errno
import logging
import os
import stat
from typing import Any

__all__ = ["FORMAT", "LEVELS", "SPACE_MARGIN", "LineFileHandler", "setup", "set_identity",
           "maybe_rotate", "level_of", "dropped"]

FORMAT = "%(asctime)s %(levelname)s %(ra_node)s %(ra_who)s[%(process)d] %(name)s: %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: free bytes a record leaves on the log's file system; below that it is dropped whole
SPACE_MARGIN = 64 * 1024
_IDENTITY_FILE = "node_address"      # ra.node.IDENTITY_FILE (not imported: no cycle)

# who this process is: (pid it was set in, who, node); a forked child recomputes it
_ident: list[Any] = [None, None, None]


def level_of(name: str | None) -> int:
    """The logging level of a level name (``$RA_LOG_LEVEL`` when ``name`` is None; INFO when
    neither says). An unknown name is INFO."""
    name = (name or os.environ.get("RA_LOG_LEVEL") or "INFO").upper()
    return getattr(logging, name) if name in LEVELS else logging.INFO


def set_identity(who: str | None = None, node: str | None = None) -> None:
    """Name this process in its lines: ``who`` (a server's name, a role) and its ``node``
    address; None keeps what is known."""
    pid, w, n = _ident
    if pid != os.getpid():
        w = n = None
    _ident[:] = [os.getpid(), who or w, node or n]


def _identity() -> tuple[str, str]:
    pid, who, node = _ident
    if pid != os.getpid():                    # a forked child: its spec says who it is
        who, node = os.environ.get("RA_LOG_WHO"), None
        _ident[:] = [os.getpid(), who, node]
    if node is None:
        node = _node_from_data_dir()
        if node is not None:
            _ident[2] = node
    return who or "-", node or "-"


def _node_from_data_dir() -> str | None:
    d = os.environ.get("RA_DATA_DIR")
    if not d:
        return None
    try:
        with open(os.path.join(d, _IDENTITY_FILE)) as f:
            return f.read().strip() or None
    except OSError:
        return None


class _Identity(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.ra_who, record.ra_node = _identity()
        return True


class LineFileHandler(logging.Handler):
    """Records to ``path``, one ``write`` each (see the module docstring for the contract).
    ``rotate``: this process rotates the file at ``max_bytes`` (0: never), keeping
    ``backups`` old files (0: none, so no rotation)."""

    def __init__(self, path: str, max_bytes: int = 0, backups: int = 0,
                 rotate: bool = False) -> None:
        super().__init__()
        self.path = os.path.abspath(path)
        self.max_bytes, self.backups, self.rotate = max_bytes, backups, rotate
        #: records dropped since the last one written, and why the last one was
        self.dropped = 0
        self.dropped_total = 0
        self.last_error = ""
        self._fd = -1
        self._id: tuple[int, int] | None = None
        self._regular = True
        try:
            self._open()
        except OSError as e:       # the first record will try again
            self.last_error = f"{type(e).__name__}: {e}"

    def _open(self) -> None:
        self._close_fd()
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        self._fd, self._id, self._regular = fd, (st.st_dev, st.st_ino), stat.S_ISREG(st.st_mode)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = -1

    def _current(self) -> None:
        """Reopen when the path no longer names the open file (rotated or removed)."""
        try:
            st = os.stat(self.path)
            moved = (st.st_dev, st.st_ino) != self._id
        except FileNotFoundError:
            moved = True
        if moved or self._fd < 0:
            self._open()

    def _should_roll(self, n: int) -> bool:
        return (self.rotate and self.max_bytes > 0 and self.backups > 0 and self._regular
                and os.fstat(self._fd).st_size + n > self.max_bytes)

    def rollover(self) -> None:
        """``FILE.i`` -> ``FILE.i+1`` (the oldest goes), ``FILE`` -> ``FILE.1``, a new
        ``FILE``."""
        for i in range(self.backups - 1, 0, -1):
            src = f"{self.path}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{self.path}.{i + 1}")
        if os.path.exists(self.path):
            os.replace(self.path, f"{self.path}.1")
        self._open()

    def _write(self, data: bytes) -> None:
        if self._regular:
            vfs = os.fstatvfs(self._fd)
            if vfs.f_bavail * vfs.f_frsize < len(data) + SPACE_MARGIN:
                raise OSError(errno.ENOSPC, "not enough free space for the record")
        n = os.write(self._fd, data)
        if n != len(data):       # the space check lost a race: the file system filled up
            raise OSError(errno.ENOSPC, f"short write ({n} of {len(data)} bytes)")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = (self.format(record) + "\n").encode("utf-8", "backslashreplace")
            self._current()
            if self._should_roll(len(data)):
                self.rollover()
            if self.dropped:
                note = logging.LogRecord(
                    "ra.node.logs", logging.WARNING, __file__, 0, "%d log records of this process "
                    "were dropped (%s)", (self.dropped, self.last_error), None)
                self.filter(note)
                self._write((self.format(note) + "\n").encode("utf-8", "backslashreplace"))
                self.dropped = 0
            self._write(data)
        except Exception as e:      # never raise, never print: stderr may be the same disk
            self.dropped += 1
            self.dropped_total += 1
            self.last_error = f"{type(e).__name__}: {e}"

    def maybe_rotate(self) -> None:
        """Rotate now if the file (which other processes append to) is past ``max_bytes``."""
        with self.lock or _nolock():
            try:
                self._current()
                if self._should_roll(0):
                    self.rollover()
            except OSError as e:
                self.last_error = f"{type(e).__name__}: {e}"

    def close(self) -> None:
        with self.lock or _nolock():
            self._close_fd()
        super().close()


class _nolock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def setup(level: str | None = None, file: str | None = None, max_bytes: int = 0,
          backups: int = 0, rotate: bool = False, who: str | None = None,
          node: str | None = None) -> logging.Handler:
    """Send this process's records, at ``level`` and above (see :func:`level_of`), to ``file``
    (a :class:`LineFileHandler`; ``rotate`` in the one process that rotates it) or, with no
    file, to stderr; in :data:`FORMAT`, replacing any handler the root logger had. Python's
    warnings become records too. Returns the handler."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    handler: logging.Handler = (LineFileHandler(file, max_bytes, backups, rotate) if file
                                else logging.StreamHandler())
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_Identity())
    root.addHandler(handler)
    root.setLevel(level_of(level))
    logging.captureWarnings(True)
    if who or node:
        set_identity(who, node)
    return handler


def maybe_rotate() -> None:
    """Rotate this process's log file if it is due (the node daemon calls it every second,
    since the other processes append to the file too)."""
    for h in logging.getLogger().handlers:
        if isinstance(h, LineFileHandler) and h.rotate:
            h.maybe_rotate()


def dropped() -> int:
    """Records this process could not write since it started."""
    return sum(h.dropped_total for h in logging.getLogger().handlers
               if isinstance(h, LineFileHandler))
