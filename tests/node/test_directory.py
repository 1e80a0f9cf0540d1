"""The node's server directory (ra/node/directory.py): an append-only log synced once per batch,
crash-safe at a torn tail, migrated from the format before it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ra.node import directory as dmod
from ra.node.directory import LOG_FILE, OLD_FILE, Directory
from ra.wire import codec
from wal import osio


def _conf(name: str) -> dict[str, Any]:
    return {"name": name, "uid": f"U_{name}", "cluster_name": f"c_{name}",
            "machine": ("module", "ra.testing.machines:counter", None),
            "initial_members": [(name, "127.0.0.1:1")]}


def _register(d: Directory, name: str) -> None:
    c = _conf(name)
    d.register(name, c["uid"], c["cluster_name"], c)


@pytest.fixture()
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every fsync of a file, fsync of a directory and rmtree the directory does, in order."""
    ev: list[tuple[str, str]] = []
    real_fsync, real_dir, real_rmtree = osio.OS.fsync, osio.fsync_dir, dmod.shutil.rmtree

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if not os.path.isdir(path):                 # a directory's: fsync_dir's own
            ev.append(("fsync", path))
        real_fsync(fd)

    def fsync_dir(path: str, *a: Any) -> None:
        ev.append(("fsync_dir", path))
        real_dir(path, *a)

    def rmtree(path: str, **kw: Any) -> None:
        ev.append(("rmtree", path))
        real_rmtree(path, **kw)
    monkeypatch.setattr(osio.OS, "fsync", fsync)
    monkeypatch.setattr(osio, "fsync_dir", fsync_dir)
    monkeypatch.setattr(dmod.shutil, "rmtree", rmtree)
    return ev


def test_changes_survive_a_reopen(tmp_path: Path):
    d = Directory(str(tmp_path), owner=True)
    for n in ("a", "b", "c"):
        _register(d, n)
    d.set_stopped("b", True)
    d.delete("c")
    d.sync()
    d.close()
    again = Directory(str(tmp_path))
    assert set(again.names()) == {"a", "b"}
    assert again.uid_of("a") == "U_a" and again.config_of("a") == _conf("a")
    assert again.stopped("b") and not again.stopped("a")
    assert again.names()["a"] == {"uid": "U_a", "cluster_name": "c_a"}   # no config in it
    assert os.path.isdir(tmp_path / "U_a") and not os.path.exists(tmp_path / "U_c")


def test_many_registrations_cost_one_log_fsync_and_one_dir_fsync(tmp_path: Path,
                                                                 events: list[Any]):
    d = Directory(str(tmp_path), owner=True)
    for k in range(200):
        _register(d, f"s{k}")
    assert events == []                              # written, nothing synced yet
    assert d.dirty and d.sync() and not d.dirty
    # the log (its content, and the new server dirs' and its own entries in the data dir)
    assert events == [("fsync", str(tmp_path / LOG_FILE)), ("fsync_dir", str(tmp_path))]
    assert d.syncs == 2 and not d.sync()             # nothing new: no fsync
    d.set_stopped("s1", True)
    d.sync()
    assert events[2:] == [("fsync", str(tmp_path / LOG_FILE))]     # no new directory


def test_delete_syncs_its_record_before_the_data_goes(tmp_path: Path, events: list[Any]):
    d = Directory(str(tmp_path), owner=True)
    _register(d, "a")
    d.sync()
    (tmp_path / "U_a" / "meta").write_bytes(b"votes")
    del events[:]
    d.delete("a")
    assert events == [("fsync", str(tmp_path / LOG_FILE)), ("rmtree", str(tmp_path / "U_a"))]
    assert Directory(str(tmp_path)).uid_of("a") is None


@pytest.mark.parametrize("cut", [1, 5, 12, 13])
def test_a_torn_last_record_is_ignored_and_dropped(tmp_path: Path, cut: int):
    d = Directory(str(tmp_path), owner=True)
    _register(d, "a")
    _register(d, "b")
    d.sync()
    d.close()
    path = tmp_path / LOG_FILE
    whole = path.read_bytes()
    path.write_bytes(whole[:-cut])                   # a crash while the last record was written
    assert set(Directory(str(tmp_path)).names()) == {"a"}      # a reader: "b" is not there
    assert path.read_bytes() == whole[:-cut]         # and it wrote nothing
    d2 = Directory(str(tmp_path), owner=True)        # the owner drops the torn tail ...
    assert set(d2.names()) == {"a"} and len(path.read_bytes()) < len(whole) - cut
    _register(d2, "c")                               # ... so that what it appends is read
    d2.sync()
    assert set(Directory(str(tmp_path)).names()) == {"a", "c"}


def test_a_last_record_with_a_bad_checksum_is_ignored(tmp_path: Path):
    d = Directory(str(tmp_path), owner=True)
    _register(d, "a")
    _register(d, "b")
    d.sync()
    path = tmp_path / LOG_FILE
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF                                 # the last record's body, not its length
    path.write_bytes(bytes(blob))
    assert set(Directory(str(tmp_path)).names()) == {"a"}


def test_the_log_is_compacted_when_it_grows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dmod, "_SLACK", 10)
    d = Directory(str(tmp_path), owner=True)
    _register(d, "a")
    for k in range(40):
        d.set_stopped("a", k % 2 == 0)
        d.sync()
    recs, _end = dmod.read_log((tmp_path / LOG_FILE).read_bytes())
    assert len(recs) < 15                            # 41 records written: compacted on the way
    assert Directory(str(tmp_path)).stopped("a") is False     # k = 39: started again


def test_a_reader_cannot_write(tmp_path: Path):
    d = Directory(str(tmp_path))
    with pytest.raises(PermissionError, match="read-only"):
        _register(d, "a")
    assert not os.path.exists(tmp_path / LOG_FILE)


def _old_format(tmp_path: Path, names: dict[str, dict[str, Any]]) -> None:
    """The data dir as a node before the log left it: ``ra_directory`` (name -> uid, cluster,
    stopped) and each server's ``<uid>/config`` (both codec, atomically written)."""
    for name, e in names.items():
        os.makedirs(tmp_path / e["uid"], exist_ok=True)
        osio.atomic_write(str(tmp_path / e["uid"] / "config"), codec.encode(_conf(name)))
    osio.atomic_write(str(tmp_path / OLD_FILE), codec.encode(names))


def test_the_old_format_is_migrated_by_its_owner(tmp_path: Path):
    _old_format(tmp_path, {"a": {"uid": "U_a", "cluster_name": "c_a"},
                           "b": {"uid": "U_b", "cluster_name": "c_b", "stopped": True}})
    r = Directory(str(tmp_path))                     # a reader reads it as it is
    assert r.config_of("a") == _conf("a") and r.stopped("b")
    assert not os.path.exists(tmp_path / LOG_FILE)
    d = Directory(str(tmp_path), owner=True)         # the owner migrates it
    assert os.path.exists(tmp_path / LOG_FILE) and not os.path.exists(tmp_path / OLD_FILE)
    assert d.config_of("b") == _conf("b") and d.stopped("b") and not d.stopped("a")
    again = Directory(str(tmp_path))
    assert again.names() == {"a": {"uid": "U_a", "cluster_name": "c_a"},
                             "b": {"uid": "U_b", "cluster_name": "c_b", "stopped": True}}
    assert again.config_of("a") == _conf("a")


def test_a_crash_between_migration_and_removal_keeps_the_log(tmp_path: Path):
    """Both files there (the old one not yet removed): the log wins, even over an old file
    that a later change would contradict."""
    _old_format(tmp_path, {"a": {"uid": "U_a", "cluster_name": "c_a"}})
    old = (tmp_path / OLD_FILE).read_bytes()
    d = Directory(str(tmp_path), owner=True)
    d.set_stopped("a", True)
    d.sync()
    (tmp_path / OLD_FILE).write_bytes(old)
    assert Directory(str(tmp_path), owner=True).stopped("a")


def test_an_old_entry_without_its_config_has_none(tmp_path: Path):
    _old_format(tmp_path, {"a": {"uid": "U_a", "cluster_name": "c_a"}})
    os.unlink(tmp_path / "U_a" / "config")
    d = Directory(str(tmp_path), owner=True)
    assert d.uid_of("a") == "U_a" and d.config_of("a") is None


@pytest.mark.parametrize("error", [OSError(5, "EIO"), ValueError("not an OSError")])
def test_held_replies_are_answered_when_the_sync_fails(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       error: Exception):
    """A reply held for the directory's sync (NodeDaemon._sync_directory) is sent whatever the
    sync raises: as an error, never dropped (its caller would wait out its whole timeout)."""
    import threading

    from ra.node.daemon import NodeDaemon
    from ra.server.sup import ServerSup
    from transport.direct import DirectMailbox

    d = NodeDaemon(str(tmp_path))
    d.servers = ServerSup(d)
    d.mailbox = DirectMailbox("tcp://127.0.0.1:0", blocking_connect=False)
    got: list[Any] = []
    try:
        def caller() -> None:
            with DirectMailbox("tcp://127.0.0.1:0") as mb:
                got.append(mb.call(d.mailbox.address, "change", timeout=10))
        t = threading.Thread(target=caller)
        t.start()
        env = d.mailbox.recv(10)
        assert env is not None
        _register(d.servers.directory, "a")          # the call changed the directory
        d._held.append((env.frm, "ok"))

        def fail(fd: int) -> None:
            raise error
        monkeypatch.setattr(osio.OS, "fsync", fail)
        d._sync_directory()
        while t.is_alive():           # our reply leaves as we poll (its call: 10 s at most)
            d.mailbox.recv(0.01)
            t.join(0.01)
    finally:
        d.mailbox.close()
        d.servers.directory.close()
    assert len(got) == 1 and got[0][:2] == ("error", type(error).__name__)
    assert "node directory not synced" in got[0][2]
