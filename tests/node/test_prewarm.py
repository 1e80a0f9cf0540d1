"""The fork server's pre-warming of server start-up (issue 17: memory per server)."""
from __future__ import annotations

from pathlib import Path

from ra.node import system
from ra.server import proc


def test_prewarm_builds_the_node_config_once_for_every_server(tmp_path: Path):
    conf = {"data_dir": str(tmp_path), "segment_max_entries": 64}
    proc.prewarm(conf)
    shared = proc._system_config(dict(conf))
    assert shared is proc._SYSTEM[1] and shared == system.system_config(conf)
    # another node config (not the fork server's) is built and checked as before
    other = proc._system_config({"data_dir": str(tmp_path), "segment_max_entries": 32})
    assert other is not shared and other.segment_max_entries == 32


def test_prewarm_never_raises(tmp_path: Path):
    proc.prewarm({"data_dir": str(tmp_path), "segment_max_entries": "not a number"})
    conf = {"data_dir": str(tmp_path)}
    proc.prewarm(conf)          # and a later good config is taken
    assert proc._SYSTEM[0] == conf
