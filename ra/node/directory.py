"""Mirrors ra_directory.erl. A node's durable name <-> uid directory and server configs.

``DATA_DIR/ra_directory`` maps each server name on this node to its uid and cluster name;
``DATA_DIR/<uid>/config`` holds the server's full config, so that ``restart_server`` and a node
restart can bring it back. Both files are written to a temp file, synced and renamed.
"""
from __future__ import annotations

import os
import shutil
from typing import Any

from ra.wire import codec  # with ra's types registered
from wal import osio

__all__ = ["Directory"]

_FILE = "ra_directory"


class Directory:
    """Names and configs of the servers a node hosts (durable)."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self._path = os.path.join(data_dir, _FILE)
        self._names: dict[str, dict[str, Any]] = {}
        try:
            with open(self._path, "rb") as f:
                self._names = dict(codec.decode(f.read()))
        except FileNotFoundError:
            pass

    def _save(self) -> None:
        osio.atomic_write(self._path, codec.encode(self._names))

    def uid_of(self, name: str) -> str | None:
        e = self._names.get(name)
        return e["uid"] if e else None

    def names(self) -> dict[str, dict[str, Any]]:
        return dict(self._names)

    def register(self, name: str, uid: str, cluster_name: str, config: dict[str, Any]) -> None:
        """Record a new server and its config (durable before returning)."""
        d = os.path.join(self.data_dir, uid)
        os.makedirs(d, exist_ok=True)
        osio.atomic_write(os.path.join(d, "config"), codec.encode(config))
        self._names[name] = {"uid": uid, "cluster_name": cluster_name}
        self._save()

    def set_stopped(self, name: str, stopped: bool) -> None:
        """Record that ``name`` was stopped on purpose (``stop_server``), or started again:
        a node restart brings back only the servers not stopped (durable before returning)."""
        e = self._names.get(name)
        if e is None or bool(e.get("stopped")) == stopped:
            return
        e["stopped"] = stopped
        self._save()

    def stopped(self, name: str) -> bool:
        return bool(self._names.get(name, {}).get("stopped"))

    def config_of(self, name: str) -> dict[str, Any] | None:
        uid = self.uid_of(name)
        if uid is None:
            return None
        try:
            with open(os.path.join(self.data_dir, uid, "config"), "rb") as f:
                return dict(codec.decode(f.read()))
        except FileNotFoundError:
            return None

    def delete(self, name: str) -> None:
        """Forget ``name`` and delete all its data (config, log, snapshots, meta)."""
        uid = self.uid_of(name)
        if uid is None:
            return
        del self._names[name]
        self._save()
        shutil.rmtree(os.path.join(self.data_dir, uid), ignore_errors=True)
