"""The node: its daemon (:mod:`ra.node.daemon`), supervision tree (:mod:`ra.node.sup`), system
config (:mod:`ra.node.system`), server directory (:mod:`ra.node.directory`) and metrics endpoint
(:mod:`ra.node.metrics`).

The daemon's public functions are importable from here as before (``ra.node.spawn_daemon``,
``ra.node.start``, ...), resolved on first use (PEP 562) so that ``import ra.node.system`` does
not load the daemon.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["start", "start_in", "stop", "stop_node", "spawn_daemon", "node_call", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("ra.node.daemon"), name)
    raise AttributeError(f"module 'ra.node' has no attribute {name!r}")
