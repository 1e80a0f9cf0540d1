"""A node that cannot start says why, typed, before anything runs (issue 11 part 5): bad data
directories, a WAL that cannot start, a log_children factory that exits, raises or hangs; and
the ``ra`` command prints one line for every error, never a traceback."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ra.client import cli
from ra.node import daemon as node
from ra.errors import InvalidConfig, SystemNotStarted
from ra.messages import NodePing
from transport import Mailbox
from wal.messages import WalOverview

from .conftest import REPO, descendants, wait_for

pytestmark = pytest.mark.integration

T = "tests.supervisor.children:"
BAD = "tests.api.bad_machines."


def unwritable_dir(tmp_path: Path) -> str:
    """An existing directory this process cannot create files in (root ignores modes)."""
    if os.geteuid() == 0:
        return "/sys/kernel"
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    return str(d)


def _refused(env: dict, key: str, match: str) -> InvalidConfig:
    t0 = time.monotonic()
    with pytest.raises(InvalidConfig, match=match) as ei:
        node.start(**env)
    assert time.monotonic() - t0 < 2.0
    assert ei.value.key == key
    assert descendants() == []            # checked before anything was spawned
    return ei.value


def test_data_dir_that_is_a_file(tmp_path: Path):
    f = tmp_path / "file"
    f.write_text("x")
    e = _refused({"data_dir": str(f)}, "data_dir", "is a file")
    assert e.value == str(f)
    e = _refused({"data_dir": str(f / "sub")}, "data_dir", f"{f} is a file")
    assert e.value == str(f / "sub")
    assert f.read_text() == "x"


def test_unwritable_data_dir_and_wal_data_dir(tmp_path: Path):
    ro = unwritable_dir(tmp_path)
    e = _refused({"data_dir": str(tmp_path / "d"), "wal_data_dir": ro}, "wal_data_dir",
                 "can create and write")
    assert e.value == ro and ("PermissionError" in e.allowed or "Errno" in e.allowed)
    _refused({"data_dir": os.path.join(ro, "sub")}, "data_dir", "can create and write")
    f = tmp_path / "file"
    f.write_text("")
    _refused({"data_dir": str(tmp_path / "d"), "wal_data_dir": str(f)}, "wal_data_dir",
             "is a file")


def test_ready_means_the_wal_answers(tmp_path: Path):
    addr = node.start(data_dir=str(tmp_path / "d"))
    from ra.node import system
    ep = system.wal_endpoint(system.system_config(data_dir=str(tmp_path / "d")))
    with Mailbox(None) as mb:
        assert mb.call(ep, WalOverview(), timeout=2.0)["failed"] is False   # no retry needed
    assert node.node_call(addr, NodePing()) == "pong"


def test_wal_that_exits_while_starting_fails_the_start(tmp_path: Path):
    t0 = time.monotonic()
    with pytest.raises(SystemNotStarted, match=r"ra_log_wal process exited \(exit:1\)"):
        node.start(data_dir=str(tmp_path / "d"), log_children=T + "crashing_wal_specs")
    assert time.monotonic() - t0 < 10.0
    assert wait_for(lambda: descendants() == [], 5)


@pytest.mark.parametrize("factory, match", [
    (BAD + "exits:specs", r"sys\.exit\(3\)"),
    (BAD + "raises:specs", "RuntimeError"),
    (BAD + "os_exit:specs", r"died \(exit status 7\)"),
    ("no_such_pkg:specs", "ModuleNotFoundError"),
    (T + "sleeper_specs_missing", "AttributeError"),
    (BAD + "hangs:specs", r"did not return within 1\.5 s"),
])
def test_log_children_factory_runs_outside_the_daemon(tmp_path: Path, factory, match):
    t0 = time.monotonic()
    with pytest.raises(InvalidConfig, match=match) as ei:
        node.spawn_daemon({"data_dir": str(tmp_path / "d"), "log_children": factory,
                           "load_timeout_ms": 1500}, lifeline=True)
    assert time.monotonic() - t0 < 8.0
    e = ei.value
    assert (e.key, e.value) == ("log_children", factory)     # typed, fields intact
    assert "PYTHONPATH" in e.allowed and "start the node again" in e.allowed
    assert wait_for(lambda: descendants() == [], 5)


def test_log_children_factory_that_returns_something_else(tmp_path: Path):
    with pytest.raises(InvalidConfig, match="ChildSpec"):
        node.spawn_daemon({"data_dir": str(tmp_path / "d"), "log_children": T + "not_specs"},
                          lifeline=True)


# --- the ra command ---------------------------------------------------------------------------

def _cli(capsys, *argv: str) -> tuple[int, str]:
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    return rc, err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ra: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("argv, code, match", [
    (["node", "status", "foo:bar"], 2, "bad node address 'foo:bar'"),
    (["node", "status", ":0"], 2, "bad node address"),
    (["node", "stop", "localhost"], 2, "bad node address"),
    (["overview", "127.0.0.1:"], 2, "bad node address"),
    (["members", "x@foo:bar"], 2, "bad node address"),
    (["members", "nobody"], 2, "NAME@HOST:PORT"),
    (["node", "status", "127.0.0.1:9"], 1, "not reachable.*ra node start"),
    (["overview", "127.0.0.1:9", "--timeout", "1"], 1, "not reachable"),
    (["node", "start", "--data-dir", "{tmp}/file"], 2, "is a file"),
    (["node", "start", "--data-dir", "{tmp}/file/sub", "--daemon"], 2, "file is a file"),
    (["node", "start", "--data-dir", "{tmp}/d", "--listen", "nohostport"], 2, "listen"),
])
def test_cli_prints_one_line_per_error(tmp_path: Path, capsys, argv, code, match):
    (tmp_path / "file").write_text("")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc, err = _cli(capsys, *argv)
    line = _one_error_line(err)
    assert rc == code, err
    assert re.search(match, line), line
    assert descendants() == []


def test_cli_locked_data_dir_is_one_line(tmp_path: Path, capsys):
    node.start(data_dir=str(tmp_path))
    rc, err = _cli(capsys, "node", "start", "--data-dir", str(tmp_path))
    assert rc == 2 and "in use by another ra node daemon" in _one_error_line(err)


def test_cli_in_a_fresh_interpreter_prints_no_traceback(tmp_path: Path):
    ra = [sys.executable, "-c", "import sys; from ra.client.cli import main; sys.exit(main())"]
    (tmp_path / "file").write_text("")
    for argv, code in ((["node", "status", "foo:bar"], 2),
                       (["node", "start", "--data-dir", str(tmp_path / "file")], 2),
                       (["node", "status", "127.0.0.1:9"], 1)):
        out = subprocess.run(ra + argv, capture_output=True, text=True, timeout=30, cwd=REPO)
        assert out.returncode == code, out.stderr
        _one_error_line(out.stderr)


# --- memory_merge (supervisor.memmerge) --------------------------------------------------------

def test_memory_merge_refused_by_the_kernel_is_a_typed_error(monkeypatch):
    def refuse() -> None:
        raise OSError(22, "Invalid argument")
    monkeypatch.setattr(node.memmerge, "enable", refuse)
    with pytest.raises(InvalidConfig, match="memory_merge=True: Invalid argument: set it to "
                                            "False on this machine"):
        node.set_memory_merge(True)


def test_memory_merge_warns_while_ksm_is_off(monkeypatch, caplog):
    marked: list[bool] = []
    monkeypatch.setattr(node.memmerge, "enable", lambda: marked.append(True))
    monkeypatch.setattr(node.memmerge, "machine_state", lambda: "0")
    node.set_memory_merge(True)
    assert marked == [True]
    assert "KSM is not running on this machine" in caplog.text
    assert "echo 1 > /sys/kernel/mm/ksm/run" in caplog.text
    caplog.clear()
    monkeypatch.setattr(node.memmerge, "machine_state", lambda: "1")
    node.set_memory_merge(True)
    assert "KSM" not in caplog.text
    marked.clear()
    node.set_memory_merge(False)
    assert marked == []
