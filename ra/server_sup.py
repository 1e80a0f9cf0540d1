"""Mirrors ra_server_sup_sup.erl. The daemon side of starting, stopping, restarting and deleting
ra servers on a node.

The node daemon delegates its ``ra_*`` calls here. Each server is a transient child of the
server supervisor, spawned through the fork server as ``ra.server_proc:run(conf)``; its name,
uid and config are recorded durably in the node's :class:`ra.directory.Directory` first, so it
can be restarted later (``restart_server``, ``start_or_restart_cluster``).

Calls (payloads of ``Mailbox.call`` to the daemon):

* ``("ra_start_server", conf)`` -> ``("ok", pid)``; errors: already started, bad machine;
* ``("ra_restart_server", name)`` -> ``("ok", pid)``; ``NotFound`` if never started here;
* ``("ra_stop_server", name)`` -> ``"ok"`` (data kept);
* ``("ra_force_delete_server", name)`` -> ``"ok"`` (stopped, data deleted; idempotent);
* ``("ra_servers",)`` -> ``{name: {"uid", "cluster_name", "pid"}}``;
* ``("ra_key_metrics", name)`` -> the metrics the server last reported (cast
  ``("$ra_metrics", name, metrics)``), without calling the server.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ra.directory import Directory
from ra.errors import AlreadyStarted, InvalidConfig, NotFound
from ra.server_proc import load_machine
from ra.sup import server_child_spec, wal_child_specs
from supervisor.spec import ChildSpec, Nested, SupFlags

__all__ = ["ServerSup", "TARGET", "log_children"]

TARGET = "ra.server_proc:run"
#: A server restarted this many times within SERVER_PERIOD seconds is given up on (ra_server_sup)
SERVER_INTENSITY = 3
SERVER_PERIOD = 5


def node_system_config(config: dict[str, Any]) -> Any:
    """The storage part (``ra.system.SystemConfig``) of a node daemon's config."""
    from ra import system
    keys = set(system.KEYS)
    return system.system_config({k: v for k, v in config.items()
                                 if k in keys and v is not None})


def log_children(config: dict[str, Any]) -> list[Any]:
    """The log supervisor's children of a node (``ra.sup.DEFAULT_LOG_CHILDREN``): the WAL, then
    the segment writer, for the storage keys of the node's config."""
    return wal_child_specs(node_system_config(config))


class ServerSup:
    """Embedded in the node daemon; ``daemon`` gives ``address``, ``data_dir``, ``config``,
    ``server_sup()`` and ``start_server_child(spec)``."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon
        self.directory = Directory(daemon.data_dir)
        self.metrics: dict[str, Any] = {}

    def handles(self, verb: Any) -> bool:
        return isinstance(verb, str) and (verb.startswith("ra_") or verb == "$ra_metrics")

    def handle(self, verb: str, msg: Sequence[Any]) -> Any:
        if verb == "$ra_metrics":
            self.metrics[msg[1]] = msg[2]
            return None
        if verb == "ra_start_server":
            return self.start_server(dict(msg[1]))
        if verb == "ra_restart_server":
            return self.restart_server(msg[1], dict(msg[2]) if len(msg) > 2 else None)
        if verb == "ra_stop_server":
            return self.stop_server(msg[1])
        if verb == "ra_force_delete_server":
            return self.force_delete_server(msg[1])
        if verb == "ra_servers":
            return self.servers()
        if verb == "ra_key_metrics":
            m = self.metrics.get(msg[1])
            if m is None:
                raise NotFound(f"no metrics for server {msg[1]!r} on node {self.daemon.address}")
            return m
        return ("error", "unknown_call", verb)

    # -- helpers ------------------------------------------------------------------------------
    def _running(self) -> dict[Any, int | None]:
        """Server name -> pid of its process (None while not running), for every server that
        has a supervisor under the server supervisor."""
        sup = self.daemon.server_sup()
        out: dict[Any, int | None] = {}
        for c in sup.which_children():
            sub = sup.child(c.id)
            kids = sub.which_children() if sub is not None else []
            out[c.id] = kids[0].pid if kids else None
        return out

    def _system(self) -> dict[str, Any]:
        cfg = self.daemon.config
        keys = ("wal_data_dir", "segment_max_entries", "wal_max_size_bytes",
                "wal_compute_checksums", "wal_write_strategy")
        out = {k: cfg[k] for k in keys if cfg.get(k) is not None}
        out["data_dir"] = self.daemon.data_dir
        return out

    def _spawn(self, name: str, conf: dict[str, Any]) -> int:
        """Start the server under a supervisor of its own (ra_server_sup): a server that keeps
        crashing (a machine that raises on a committed command) exhausts *its* supervisor's
        intensity and stops there, instead of the node-wide one, so other clusters on the node
        are not touched. The per-server supervisor is temporary: once it gives up, the server
        stays down (``overview`` shows it) until ``restart_server``."""
        sup = self.daemon.server_sup()
        running = self._running()
        if name in running:
            if running[name] is not None:
                raise AlreadyStarted(f"server {name!r} already runs on node {self.daemon.address}")
            sup.terminate_child(name)
            sup.delete_child(name)
        conf = dict(conf, node=self.daemon.address, system=self._system())
        env = {"RA_NODE": self.daemon.address or "", "RA_DATA_DIR": self.daemon.data_dir}
        server = server_child_spec("server", TARGET, (conf,), env, "transient", 5000)
        spec = ChildSpec(name, Nested(SupFlags("one_for_one", SERVER_INTENSITY, SERVER_PERIOD),
                                      (server,)),
                         restart="temporary", type="supervisor")
        sup.start_child(spec)
        pid = self._running().get(name)
        if pid is None:
            raise RuntimeError(f"server {name!r} did not start")
        return int(pid)

    # -- calls --------------------------------------------------------------------------------
    def start_server(self, conf: dict[str, Any]) -> Any:
        name = conf.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidConfig("id", name, "a server id (name, node) with a non-empty name")
        if self.directory.uid_of(name) is not None:
            raise AlreadyStarted(
                f"server {name!r} already exists on node {self.daemon.address}: "
                "use restart_server, or force_delete_server first")
        try:
            load_machine(tuple(conf["machine"]))
        except Exception as e:
            raise InvalidConfig("machine", conf.get("machine"),
                                f"an importable machine ({type(e).__name__}: {e})") from None
        self.directory.register(name, conf["uid"], conf["cluster_name"], conf)
        try:
            return ("ok", self._spawn(name, conf))
        except Exception:
            self.directory.delete(name)
            raise

    def restart_server(self, name: str, add_config: dict[str, Any] | None = None) -> Any:
        conf = self.directory.config_of(name)
        if conf is None:
            raise NotFound(f"server {name!r} was never started on node {self.daemon.address}")
        if add_config:
            running = self._running()
            if running.get(name) is not None:
                raise AlreadyStarted(f"server {name!r} already runs on node "
                                     f"{self.daemon.address}")
            if "machine" in add_config:
                try:
                    load_machine(tuple(add_config["machine"]))
                except Exception as e:
                    raise InvalidConfig("machine", add_config["machine"],
                                        f"an importable machine ({type(e).__name__}: {e})"
                                        ) from None
            conf = dict(conf, **add_config)
            self.directory.register(name, conf["uid"], conf["cluster_name"], conf)
        return ("ok", self._spawn(name, conf))

    def stop_server(self, name: str) -> Any:
        running = self._running()
        if name not in running:
            if self.directory.uid_of(name) is None:
                raise NotFound(f"no server {name!r} on node {self.daemon.address}")
            return "ok"
        # a temporary child's spec goes with it: restart_server starts a new supervisor
        self.daemon.server_sup().terminate_child(name)
        return "ok"

    def force_delete_server(self, name: str) -> Any:
        running = self._running()
        if name in running:
            sup = self.daemon.server_sup()
            sup.terminate_child(name)
            if name in {c.id for c in sup.which_children()}:
                sup.delete_child(name)
        self.directory.delete(name)
        self.metrics.pop(name, None)
        return "ok"

    def servers(self) -> dict[str, Any]:
        """Every server this node knows: uid, cluster, pid (None: not running) and its
        supervisor's restarts within the last period (a crash-looping server shows here)."""
        running = self._running()
        sup = self.daemon.server_sup()
        out = {}
        for name, info in self.directory.names().items():
            sub = sup.child(name)
            out[name] = dict(info, pid=running.get(name),
                             restarts=len(sub.restarts) if sub is not None else 0)
        return out

    def data_dir_of(self, name: str) -> str | None:
        uid = self.directory.uid_of(name)
        return None if uid is None else os.path.join(self.daemon.data_dir, uid)
