"""Mirrors ra_system.erl. Per-node storage configuration and its validation.

Keys (ra's names): ``data_dir`` (the node's directory: ``wal/`` and one directory per server
uid), ``wal_data_dir`` (the WAL on another disk; default ``data_dir/wal``),
``segment_max_entries`` (entries per segment file), ``wal_max_size_bytes`` (roll-over size),
``wal_compute_checksums`` (xxh64 per WAL record), ``wal_write_strategy`` (``"default"``:
write + one ``fdatasync`` per batch; ``"o_sync"``: the file is opened ``O_SYNC``),
``wal_max_batch_bytes`` (cap of one drained batch). Every bad value raises
``ra.errors.InvalidConfig(key, value, allowed)``; unknown keys too.

:func:`validate` checks values only; :func:`prepare_dir` checks a directory on disk (it is a
directory or can be made one, and this process can create files in it) and is called for
``data_dir`` and the WAL directory before a node daemon starts anything.
"""
from __future__ import annotations

import glob
import hashlib
import os
import tempfile
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from ra.errors import InvalidConfig

__all__ = ["SystemConfig", "system_config", "validate", "wal_dir", "wal_endpoint",
           "segment_writer_endpoint", "prepare_dir", "prepare_dirs", "KEYS", "WRITE_STRATEGIES"]

WRITE_STRATEGIES = ("default", "o_sync")


@dataclass(frozen=True)
class SystemConfig:
    """A node's storage configuration (validated by :func:`system_config`)."""

    data_dir: str
    wal_data_dir: str | None = None
    segment_max_entries: int = 4096
    wal_max_size_bytes: int = 256_000_000
    wal_compute_checksums: bool = True
    wal_write_strategy: str = "default"
    wal_max_batch_bytes: int = 32 << 20
    wal_endpoint: str | None = None


KEYS = tuple(SystemConfig.__dataclass_fields__)


def _pos_int(key: str, v: Any, lo: int = 1, hi: int | None = None) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f"an integer >= {lo}" + (f" and <= {hi}" if hi is not None else "")
        raise InvalidConfig(key, v, rng)


def validate(cfg: SystemConfig) -> SystemConfig:
    """Check every field; return ``cfg`` unchanged or raise InvalidConfig."""
    if not isinstance(cfg.data_dir, (str, os.PathLike)) or not os.fspath(cfg.data_dir):
        raise InvalidConfig("data_dir", cfg.data_dir, "a non-empty directory path")
    if cfg.wal_data_dir is not None and (not isinstance(cfg.wal_data_dir, (str, os.PathLike))
                                         or not os.fspath(cfg.wal_data_dir)):
        raise InvalidConfig("wal_data_dir", cfg.wal_data_dir, "None or a non-empty directory path")
    _pos_int("segment_max_entries", cfg.segment_max_entries, 1, 1 << 24)
    _pos_int("wal_max_size_bytes", cfg.wal_max_size_bytes, 4096)
    _pos_int("wal_max_batch_bytes", cfg.wal_max_batch_bytes, 4096)
    if not isinstance(cfg.wal_compute_checksums, bool):
        raise InvalidConfig("wal_compute_checksums", cfg.wal_compute_checksums, "True or False")
    if cfg.wal_write_strategy not in WRITE_STRATEGIES:
        raise InvalidConfig("wal_write_strategy", cfg.wal_write_strategy,
                            " or ".join(repr(s) for s in WRITE_STRATEGIES))
    if cfg.wal_endpoint is not None and (not isinstance(cfg.wal_endpoint, str)
                                         or "://" not in cfg.wal_endpoint):
        raise InvalidConfig("wal_endpoint", cfg.wal_endpoint, 'None or "ipc://..."/"tcp://..."')
    return cfg


def system_config(conf: Mapping[str, Any] | None = None, **kw: Any) -> SystemConfig:
    """Build and validate a config from a mapping and/or keywords (unknown keys rejected)."""
    d = dict(conf or {})
    d.update(kw)
    for k in d:
        if k not in KEYS:
            raise InvalidConfig(k, d[k], f"unknown key; known: {', '.join(KEYS)}")
    if "data_dir" not in d:
        raise InvalidConfig("data_dir", None, "required: a directory path")
    for k in ("data_dir", "wal_data_dir"):
        if isinstance(d.get(k), os.PathLike):
            d[k] = os.fspath(d[k])
    return validate(SystemConfig(**d))


def _first_non_dir(path: str) -> str | None:
    """The first existing component of ``path`` that is not a directory, if any."""
    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        p = os.sep.join(parts[:i])
        if not os.path.lexists(p):
            return None
        if not os.path.isdir(p):
            return p
    return None


def prepare_dir(key: str, path: Any) -> str:
    """Make ``path`` a directory this process can write (created if missing) and return it;
    else raise ``InvalidConfig(key, path, ...)`` saying what is in the way: a file at or above
    it, a permission, a read-only file system, with the OS error."""
    path = os.fspath(path)
    blocker = _first_non_dir(path)
    if blocker is not None:
        what = "it is" if os.path.abspath(blocker) == os.path.abspath(path) else f"{blocker} is"
        raise InvalidConfig(key, path, f"a directory, but {what} a file: choose another path "
                                       "or remove the file")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ra-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InvalidConfig(key, path, f"a directory this user (uid {os.getuid()}) can create "
                                       f"and write: {type(e).__name__}: {e}") from None
    return path


def prepare_dirs(data_dir: Any, wal_data_dir: Any = None) -> None:
    """:func:`prepare_dir` for a node's ``data_dir`` and its WAL directory (``wal_data_dir``,
    or ``data_dir/wal``)."""
    prepare_dir("data_dir", data_dir)
    if wal_data_dir:
        prepare_dir("wal_data_dir", wal_data_dir)
    else:
        prepare_dir("data_dir", os.path.join(os.fspath(data_dir), "wal"))


def wal_dir(cfg: SystemConfig) -> str:
    """Where the WAL files live."""
    return cfg.wal_data_dir or os.path.join(cfg.data_dir, "wal")


def _ipc(cfg: SystemConfig, name: str) -> str:
    path = os.path.join(os.path.abspath(cfg.data_dir), name)
    if len(path) <= 100:
        return "ipc://" + path
    h = hashlib.sha1(os.path.abspath(cfg.data_dir).encode()).hexdigest()[:16]
    return "ipc://" + os.path.join(tempfile.gettempdir(), f"ra-{h}-{name}")


def server_ipc_endpoint(cfg: SystemConfig, pid: int | None = None) -> str:
    """The ipc address a server process listens on besides tcp, for peers on this host."""
    return _ipc(cfg, f"srv-{os.getpid() if pid is None else pid}.sock")


def remove_stale_server_sockets(cfg: SystemConfig) -> None:
    """Remove the ipc socket files of server processes that died without cleaning up (a
    SIGKILL): called by the node daemon when it starts, before any of its servers."""
    pattern = server_ipc_endpoint(cfg, 0)[6:].replace("srv-0.sock", "srv-*.sock")
    for path in glob.glob(pattern):
        try:
            os.unlink(path)
        except OSError:
            pass


def wal_endpoint(cfg: SystemConfig) -> str:
    """The WAL process's mailbox address (an ipc socket beside the data, or a short tmp path)."""
    return cfg.wal_endpoint or _ipc(cfg, "wal.sock")


def segment_writer_endpoint(cfg: SystemConfig) -> str:
    return _ipc(cfg, "segwriter.sock")


