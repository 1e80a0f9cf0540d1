"""ra/node/system.py: config validation names the key, the value and what is allowed."""
from __future__ import annotations

import pytest

from ra.errors import InvalidConfig
from ra.node.system import system_config, wal_dir, wal_endpoint


@pytest.mark.parametrize("key,value", [
    ("segment_max_entries", 0), ("segment_max_entries", "10"), ("segment_max_entries", True),
    ("wal_max_size_bytes", -1), ("wal_max_size_bytes", 10), ("wal_compute_checksums", 1),
    ("wal_write_strategy", "fsync"), ("data_dir", ""), ("data_dir", 3), ("wal_data_dir", ""),
    ("no_such_key", 1),
])
def test_bad_values(key: str, value: object) -> None:
    kw = {"data_dir": "/tmp/x", key: value}
    with pytest.raises(InvalidConfig) as ei:
        system_config(kw)
    assert ei.value.key == key and ei.value.value == value and ei.value.allowed


def test_defaults_and_paths() -> None:
    c = system_config(data_dir="/tmp/x")
    assert c.wal_write_strategy == "default" and c.wal_compute_checksums is True
    assert wal_dir(c) == "/tmp/x/wal"
    assert wal_dir(system_config(data_dir="/tmp/x", wal_data_dir="/fast/wal")) == "/fast/wal"
    assert wal_endpoint(c).startswith("ipc://")
    long = system_config(data_dir="/tmp/" + "d" * 120)
    assert len(wal_endpoint(long)) < 107
    with pytest.raises(InvalidConfig):
        system_config({})


def test_child_specs() -> None:
    from ra.node.sup import wal_child_specs
    specs = wal_child_specs({"data_dir": "/tmp/x", "wal_compute_checksums": False})
    assert [s.id for s in specs] == ["ra_log_wal", "ra_log_segment_writer"]
    assert specs[0].start.args[0].checksums is False          # the WAL's config, as data
    exec_specs = wal_child_specs({"data_dir": "/tmp/x", "wal_compute_checksums": False},
                                 fork=False)
    assert "--no-checksums" in exec_specs[0].start.argv
