"""Mirrors ra_log_wal.erl and ra_log_segment_writer.erl (their client side and wiring): the
node's write-ahead log process and segment writer. Message protocol: see :mod:`wal.wal`; the
messages themselves and their validators: :mod:`wal.messages`.

:func:`child_specs` gives the log supervisor's children (WAL first, then the segment writer:
rest_for_one, so a WAL crash restarts the writer too). :func:`wal_argv` /
:func:`segment_writer_argv` give the command lines (``python -m wal.wal ...``).
"""
from __future__ import annotations

import sys
from typing import Any

from wal.messages import SegOverview, WalForgetWriter, WalOverview, WalRollOver

__all__ = ["child_specs", "wal_argv", "segment_writer_argv", "overview", "force_roll_over",
           "forget_writer", "segment_writer_overview"]


def overview(mailbox: Any, wal_endpoint: str, timeout: float = 5.0) -> dict[str, Any]:
    """The WAL's counters and error state (a call to the WAL process)."""
    return mailbox.call(wal_endpoint, WalOverview(), timeout)  # type: ignore[no-any-return]


def force_roll_over(mailbox: Any, wal_endpoint: str, timeout: float = 5.0) -> Any:
    """Close the current WAL file now (its entries then go to segments)."""
    return mailbox.call(wal_endpoint, WalRollOver(), timeout)


def forget_writer(mailbox: Any, wal_endpoint: str, uid: str, timeout: float = 5.0) -> Any:
    """Tell the WAL a server is gone for good."""
    return mailbox.call(wal_endpoint, WalForgetWriter(uid), timeout)


def segment_writer_overview(mailbox: Any, endpoint: str, timeout: float = 5.0) -> Any:
    """The segment writer's counters: files flushed, nudges, messages dropped by reason."""
    return mailbox.call(endpoint, SegOverview(), timeout)


def wal_argv(cfg: Any) -> list[str]:
    """Arguments of ``wal.wal.main`` for a :class:`ra.system.SystemConfig`."""
    from ra import system
    a = ["--wal-dir", system.wal_dir(cfg), "--data-dir", cfg.data_dir,
         "--endpoint", system.wal_endpoint(cfg),
         "--segment-writer", system.segment_writer_endpoint(cfg),
         "--max-size-bytes", str(cfg.wal_max_size_bytes),
         "--write-strategy", cfg.wal_write_strategy,
         "--segment-max-entries", str(cfg.segment_max_entries),
         "--max-batch-bytes", str(cfg.wal_max_batch_bytes)]
    if not cfg.wal_compute_checksums:
        a.append("--no-checksums")
    return a


def segment_writer_argv(cfg: Any) -> list[str]:
    """Arguments of ``wal.segment_writer.main``."""
    from ra import system
    return ["--wal-dir", system.wal_dir(cfg), "--data-dir", cfg.data_dir,
            "--segment-max-entries", str(cfg.segment_max_entries),
            "--endpoint", system.segment_writer_endpoint(cfg)]


def child_specs(cfg: Any, *, fork: bool = True) -> list[Any]:
    """ChildSpecs ``[ra_log_wal, ra_log_segment_writer]`` for the log supervisor.

    ``cfg`` is a :class:`ra.system.SystemConfig` or a mapping of its keys. With ``fork`` the
    children are forked from the node's fork server (``wal.wal:main(argv)``), else exec'd as
    ``python -m wal.wal ...``. Both exit 0 on SIGTERM; the WAL exits 1 after a write/sync error.
    """
    from ra import system
    from supervisor.spec import ChildSpec, Exec, Fork
    if not isinstance(cfg, system.SystemConfig):
        cfg = system.system_config(cfg)
    wa, sa = wal_argv(cfg), segment_writer_argv(cfg)
    if fork:
        ws: Any = Fork("wal.wal:main", (wa,))
        ss: Any = Fork("wal.segment_writer:main", (sa,))
    else:
        ws = Exec((sys.executable, "-m", "wal.wal", *wa))
        ss = Exec((sys.executable, "-m", "wal.segment_writer", *sa))
    return [ChildSpec("ra_log_wal", ws, restart="permanent", shutdown=5000),
            ChildSpec("ra_log_segment_writer", ss, restart="permanent", shutdown=5000)]
