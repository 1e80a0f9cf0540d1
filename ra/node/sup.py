"""Mirrors ra_system_sup.erl, ra_log_sup.erl and ra_server_sup_sup.erl: a node's tree specs.

The tree (DESIGN §1), rooted in the node daemon's event loop::

    ra_system_sup            rest_for_one   (the daemon itself)
     ├─ ra_log_sup           rest_for_one   log_children: [WAL, segment writer] (wal_child_specs)
     └─ ra_server_sup_sup    one_for_one    ra servers, added at run time (transient)

Root is ``rest_for_one`` so that when the log supervisor gives up and restarts, the servers
(started after it) restart too; a server supervisor restart leaves the log alone. Nothing here
spawns anything: the daemon builds the tree with :func:`build_tree` and starts it. The log
supervisor's children are passed in by the caller: :func:`wal_child_specs` for a node, a test's
own through the node config's ``log_children`` factory; this module adds no stub children.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ra.node import system
from wal.config import SegmentWriterConfig, WalConfig, to_argv
from supervisor.spec import (
    ChildSpec, Exec, Fork, Nested, RestartType, Shutdown, SupFlags, check_childspecs,
)

__all__ = [
    "SYSTEM_SUP",
    "LOG_SUP",
    "SERVER_SUP",
    "build_tree",
    "log_sup_spec",
    "server_sup_spec",
    "server_child_spec",
    "wal_child_specs",
    "wal_config",
    "segment_writer_config",
]

SYSTEM_SUP = "ra_system_sup"
LOG_SUP = "ra_log_sup"
SERVER_SUP = "ra_server_sup_sup"

def log_sup_spec(log_children: Sequence[ChildSpec] = (), intensity: int = 5,
                 period: float = 5) -> ChildSpec:
    """The log supervisor: ``rest_for_one`` over ``log_children`` in the given order
    (the WAL first, then the segment writer, so a WAL crash restarts the writer too)."""
    return ChildSpec(LOG_SUP, Nested(SupFlags("rest_for_one", intensity, period),
                                     tuple(check_childspecs(log_children))),
                     type="supervisor")


def server_sup_spec(intensity: int = 10, period: float = 5) -> ChildSpec:
    """The server supervisor: ``one_for_one``, no children at start (servers come at run time).

    Its intensity is per node, not per server: ``intensity`` server restarts within ``period``
    seconds, all servers together, make it give up (and the root restart it).
    """
    return ChildSpec(SERVER_SUP, Nested(SupFlags("one_for_one", intensity, period)),
                     type="supervisor")


def server_child_spec(name: Any, target: str, args: Sequence[Any] = (),
                      env: Mapping[str, str] | None = None,
                      restart: RestartType = "transient", shutdown: Shutdown = 5000) -> ChildSpec:
    """Spec of one ra server process, spawned through the fork server (ra: transient)."""
    spec = ChildSpec(name, Fork(target, tuple(args), dict(env) if env else None),
                     restart=restart, shutdown=shutdown)
    return check_childspecs([spec])[0]


#: (intensity, period s) of each supervisor of a node: fixed, as ra's own supervisors are
SYSTEM_SUP_FLAGS = (3, 5)
LOG_SUP_FLAGS = (5, 5)
SERVER_SUP_FLAGS = (10, 5)


def build_tree(log_children: Sequence[ChildSpec] = ()) -> tuple[SupFlags, list[ChildSpec]]:
    """Root flags and children of a node: ``[ra_log_sup, ra_server_sup_sup]`` in start order."""
    flags = SupFlags("rest_for_one", *SYSTEM_SUP_FLAGS)
    children = [log_sup_spec(log_children, *LOG_SUP_FLAGS), server_sup_spec(*SERVER_SUP_FLAGS)]
    return flags, children


def wal_config(cfg: system.SystemConfig) -> WalConfig:
    """The WAL process's config (``wal.config``) for a node's: ra's node schema mapped onto
    the WAL's."""
    return WalConfig(wal_dir=system.wal_dir(cfg), data_dir=cfg.data_dir,
                     endpoint=system.wal_endpoint(cfg),
                     segment_writer=system.segment_writer_endpoint(cfg),
                     max_size_bytes=cfg.wal_max_size_bytes,
                     checksums=cfg.wal_compute_checksums,
                     write_strategy=cfg.wal_write_strategy,
                     segment_max_entries=cfg.segment_max_entries,
                     max_batch_bytes=cfg.wal_max_batch_bytes,
                     notice_defer_ms=cfg.wal_notice_defer_ms,
                     idle_poll_ms=cfg.idle_poll_ms)


def segment_writer_config(cfg: system.SystemConfig) -> SegmentWriterConfig:
    """The segment writer process's config for a node's."""
    return SegmentWriterConfig(wal_dir=system.wal_dir(cfg), data_dir=cfg.data_dir,
                               segment_max_entries=cfg.segment_max_entries,
                               endpoint=system.segment_writer_endpoint(cfg))


def wal_child_specs(cfg: system.SystemConfig | Mapping[str, Any], *,
                    fork: bool = True) -> list[ChildSpec]:
    """ChildSpecs ``[ra_log_wal, ra_log_segment_writer]`` for the log supervisor: a node's
    default log children.

    ``cfg`` is a :class:`ra.node.system.SystemConfig` or a mapping of its keys. With ``fork`` the
    children are forked from the node's fork server, given their config as data
    (``wal.wal:run(WalConfig)``), else exec'd as ``python -m wal.wal ARGS`` (the same config as
    a command line). Both exit 0 on SIGTERM; the WAL exits 1 after a write/sync error.
    """
    if not isinstance(cfg, system.SystemConfig):
        cfg = system.system_config(cfg)
    wc, sc = wal_config(cfg), segment_writer_config(cfg)
    ws: Fork | Exec
    ss: Fork | Exec
    if fork:
        # their log lines name them (ra.node.logs: a forked child's role is in $RA_LOG_WHO)
        ws = Fork("wal.wal:run", (wc,), {"RA_LOG_WHO": "wal"})
        ss = Fork("wal.segment_writer:run", (sc,), {"RA_LOG_WHO": "segment_writer"})
    else:
        ws = Exec((sys.executable, "-m", "wal.wal", *to_argv(wc)))
        ss = Exec((sys.executable, "-m", "wal.segment_writer", *to_argv(sc)))
    return [ChildSpec("ra_log_wal", ws, restart="permanent", shutdown=5000),
            ChildSpec("ra_log_segment_writer", ss, restart="permanent", shutdown=5000)]
