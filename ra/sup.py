"""Mirrors ra_system_sup.erl, ra_log_sup.erl and ra_server_sup_sup.erl: a node's tree specs.

The tree (DESIGN §1), rooted in the node daemon's event loop::

    ra_system_sup            rest_for_one   (the daemon itself)
     ├─ ra_log_sup           rest_for_one   log_children, e.g. [WAL, segment writer]
     └─ ra_server_sup_sup    one_for_one    ra servers, added at run time (transient)

Root is ``rest_for_one`` so that when the log supervisor gives up and restarts, the servers
(started after it) restart too; a server supervisor restart leaves the log alone. Nothing here
spawns anything: the daemon builds the tree with :func:`build_tree` and starts it. WAL and segment
writer specs are passed in by the caller (``log_children``); this module adds no stub children.
"""
from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from ra import system
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
    "log_children",
    "DEFAULT_LOG_CHILDREN",
    "wal_child_specs",
    "wal_argv",
    "segment_writer_argv",
]

SYSTEM_SUP = "ra_system_sup"
LOG_SUP = "ra_log_sup"
SERVER_SUP = "ra_server_sup_sup"

# "pkg.mod:func" returning the log supervisor's child specs (WAL, segment writer) for a config;
# None until the WAL issue plugs its children in. Overridden per node by config["log_children"].
DEFAULT_LOG_CHILDREN: str | None = "ra.server_sup:log_children"


def log_children(config: Mapping[str, Any]) -> list[ChildSpec]:
    """The log supervisor's children for ``config``: ``config["log_children"]`` (or
    :data:`DEFAULT_LOG_CHILDREN`) names a ``"pkg.mod:func"`` called with the config that returns
    child specs in start order; with neither, no children."""
    factory = config.get("log_children", DEFAULT_LOG_CHILDREN)
    if not factory:
        return []
    from supervisor.forkserver import resolve_target

    return list(resolve_target(factory)(config))


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


def build_tree(config: Mapping[str, Any] | None = None,
               log_children: Sequence[ChildSpec] = ()) -> tuple[SupFlags, list[ChildSpec]]:
    """Root flags and children of a node: ``[ra_log_sup, ra_server_sup_sup]`` in start order.

    ``config`` keys used: ``system_sup_intensity``/``_period`` (default 3 / 5),
    ``log_sup_intensity``/``_period`` (5 / 5), ``server_sup_intensity``/``_period`` (10 / 5).
    """
    cfg = dict(config or {})
    flags = SupFlags("rest_for_one", int(cfg.get("system_sup_intensity", 3)),
                     cfg.get("system_sup_period", 5))
    children = [
        log_sup_spec(log_children, int(cfg.get("log_sup_intensity", 5)),
                     cfg.get("log_sup_period", 5)),
        server_sup_spec(int(cfg.get("server_sup_intensity", 10)),
                        cfg.get("server_sup_period", 5)),
    ]
    return flags, children


def wal_argv(cfg: system.SystemConfig) -> list[str]:
    """Arguments of ``wal.wal.main`` for a node's storage configuration."""
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


def segment_writer_argv(cfg: system.SystemConfig) -> list[str]:
    """Arguments of ``wal.segment_writer.main``."""
    return ["--wal-dir", system.wal_dir(cfg), "--data-dir", cfg.data_dir,
            "--segment-max-entries", str(cfg.segment_max_entries),
            "--endpoint", system.segment_writer_endpoint(cfg)]


def wal_child_specs(cfg: system.SystemConfig | Mapping[str, Any], *,
                    fork: bool = True) -> list[ChildSpec]:
    """ChildSpecs ``[ra_log_wal, ra_log_segment_writer]`` for the log supervisor.

    ``cfg`` is a :class:`ra.system.SystemConfig` or a mapping of its keys. With ``fork`` the
    children are forked from the node's fork server (``wal.wal:main(argv)``), else exec'd as
    ``python -m wal.wal ...``. Both exit 0 on SIGTERM; the WAL exits 1 after a write/sync error.
    (Here, not in ``wal``: the WAL knows nothing of ra's configuration; it takes arguments.)
    """
    if not isinstance(cfg, system.SystemConfig):
        cfg = system.system_config(cfg)
    wa, sa = wal_argv(cfg), segment_writer_argv(cfg)
    ws: Fork | Exec
    ss: Fork | Exec
    if fork:
        ws = Fork("wal.wal:main", (wa,))
        ss = Fork("wal.segment_writer:main", (sa,))
    else:
        ws = Exec((sys.executable, "-m", "wal.wal", *wa))
        ss = Exec((sys.executable, "-m", "wal.segment_writer", *sa))
    return [ChildSpec("ra_log_wal", ws, restart="permanent", shutdown=5000),
            ChildSpec("ra_log_segment_writer", ss, restart="permanent", shutdown=5000)]
