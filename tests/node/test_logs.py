"""A node's log (ra/node/logs.py, issue 12 part 5): one line format for every process, the events
an operator needs at info, the level and file options, rotation that never cuts a line, and a
full disk that costs log lines but never a process."""
from __future__ import annotations

import errno
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import ra
from ra.node import daemon as node
from ra.node import logs
from ra import messages as rm
from transport.direct import DirectMailbox

from .conftest import REPO, wait_for

COUNTER = ("module", "ra.testing.machines:Counter", None)
#: time, level, node, who[pid], logger: message (ra.node.logs.FORMAT)
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
                  r"(\S+) (\S+)\[(\d+)\] (\S+): (.*)$")


def _records(path: Path) -> list[re.Match[str]]:
    """Every record line of a log file; a line that is neither a record nor a traceback's
    continuation fails the test (a cut line would)."""
    out = []
    for ln in path.read_text().splitlines():
        m = LINE.match(ln)
        if m:
            out.append(m)
        else:
            assert ln.startswith((" ", "Traceback", "During handling")) or re.match(
                r"^\w+(\.\w+)*(Error|Exception|Exit|Interrupt)\b", ln), f"not a record: {ln!r}"
    return out


def _has(path: Path, pred) -> re.Match[str] | None:
    if not path.exists():
        return None
    return next((m for m in _records(path) if pred(m)), None)


# -- the handler, in this process ----------------------------------------------------------

@pytest.fixture
def root_handler():
    """Restore the root logger's handlers and level after a test that calls logs.setup."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in saved:
        root.addHandler(h)
    root.setLevel(level)
    logging.captureWarnings(False)


def test_rotation_keeps_whole_lines_and_other_writers_follow(tmp_path, root_handler):
    path = tmp_path / "node.log"
    h = logs.setup("INFO", str(path), max_bytes=2000, backups=2, rotate=True, who="node",
                   node="127.0.0.1:1")
    # another process's view of the same file: watches, never rotates
    other = logs.LineFileHandler(str(path))
    other.setFormatter(logging.Formatter(logs.FORMAT))
    other.addFilter(h.filters[0])
    lg = logging.getLogger("ra.test")
    for i in range(60):
        lg.info("line %d %s", i, "x" * 40)
        other.handle(lg.makeRecord("ra.other", logging.INFO, "f", 1, "other %d", (i,), None))
    other.close()
    files = [path, Path(f"{path}.1"), Path(f"{path}.2")]
    assert all(f.exists() for f in files) and not Path(f"{path}.3").exists()
    # past max_bytes by at most what the other writer appended after the rotator's last check
    assert all(f.stat().st_size <= 2000 + 200 for f in files[1:])
    lines = [m for f in reversed(files) for m in _records(f)]
    ours = [int(m.group(7).split()[1]) for m in lines if m.group(6) == "ra.test"]
    theirs = [int(m.group(7).split()[1]) for m in lines if m.group(6) == "ra.other"]
    assert ours == sorted(ours) and ours[-1] == 59        # the newest kept, in order
    assert theirs and theirs[-1] == 59                    # the other writer reopened each time
    m = lines[-1]
    assert (m.group(2), m.group(3), m.group(4), int(m.group(5))) == (
        "INFO", "127.0.0.1:1", "node", os.getpid())


def test_a_failing_write_drops_the_record_and_says_so_later(tmp_path, root_handler,
                                                             monkeypatch):
    path = tmp_path / "node.log"
    h = logs.setup("INFO", str(path), who="t")
    lg = logging.getLogger("ra.test")
    real_write = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(logs.os, "write", full)
    lg.info("lost one")                     # neither raises nor prints
    lg.error("lost two")
    assert h.dropped == 2 and logs.dropped() == 2
    monkeypatch.setattr(logs.os, "write", real_write)
    lg.info("back")
    msgs = [m.group(7) for m in _records(path)]
    assert msgs[0].startswith("2 log records of this process were dropped (OSError")
    assert msgs[1:] == ["back"]


def test_a_record_that_does_not_fit_is_dropped_whole(tmp_path, root_handler, monkeypatch):
    path = tmp_path / "node.log"
    logs.setup("INFO", str(path), who="t")
    lg = logging.getLogger("ra.test")
    lg.info("before")
    monkeypatch.setattr(logs, "SPACE_MARGIN", 1 << 62)     # "the disk is full"
    lg.info("does not fit " + "y" * 500)
    assert [m.group(7) for m in _records(path)] == ["before"]


def test_level_of():
    assert logs.level_of("debug") == logging.DEBUG
    assert logs.level_of(None) in (logging.INFO, logs.level_of(os.environ.get("RA_LOG_LEVEL")))


# -- a node's processes --------------------------------------------------------------------

def test_server_lines_carry_name_and_pid_and_a_stop_request_its_origin(tmp_path):
    log = tmp_path / "node.log"
    addr = node.start(data_dir=str(tmp_path / "d"), log_file=str(log))
    sid = ra.ServerId("c1", addr)
    ra.start_cluster("c1", COUNTER, [sid])
    ra.process_command([sid], 1)
    pid = node.node_call(addr, rm.ListServers())["c1"]["pid"]

    def elected(m: re.Match[str]) -> bool:
        return (m.group(4) == "c1" and m.group(7).startswith("candidate -> leader in term")
                and int(m.group(5)) == pid and m.group(3) == addr and m.group(2) == "INFO")
    assert wait_for(lambda: _has(log, elected), 10), log.read_text()
    assert _has(log, lambda m: m.group(4) == "node" and "server c1 started (pid "
                f"{pid}" in m.group(7))
    # the supervisor's view of a crash and its restart
    os.kill(pid, signal.SIGKILL)
    assert wait_for(lambda: _has(log, lambda m: m.group(2) == "WARNING" and
                                 "child 'server' crashed: killed" in m.group(7)), 10)
    assert wait_for(lambda: _has(log, lambda m: "restarted 'server' (pid" in m.group(7)), 10)
    # a stop request names who asked: the caller's mailbox address
    with DirectMailbox(None, mechanism=node._client_mechanism()) as mb:
        assert mb.call(node.to_endpoint(addr), rm.NodeStop(), timeout=10)[0] == "ok"
        caller = mb.address
    assert wait_for(lambda: _has(log, lambda m: m.group(7) == f"node stop requested by "
                                 f"{caller}"), 10), log.read_text()
    assert wait_for(lambda: _has(log, lambda m: m.group(7) == f"ra node {addr} stopped"), 30)
    # every process of the node wrote in the one format (the filter above would have failed)
    whos = {m.group(4) for m in _records(log)}
    assert {"node", "c1"} <= whos, whos


def test_a_node_rotates_its_log_file(tmp_path):
    log = tmp_path / "node.log"
    addr = node.start(data_dir=str(tmp_path / "d"), log_file=str(log), log_max_bytes=4096,
                      log_backups=2)
    sid = ra.ServerId("r", addr)
    ra.start_cluster("r", COUNTER, [sid])
    for _ in range(40):            # each stop and restart: a few lines from several processes
        ra.stop_server(sid)
        ra.restart_server(sid)
        if Path(f"{log}.2").exists():
            break
    assert wait_for(lambda: Path(f"{log}.2").exists(), 10)
    for f in (log, Path(f"{log}.1"), Path(f"{log}.2")):
        assert _records(f)                     # whole records only (else _records fails)
    assert Path(f"{log}.1").stat().st_size <= 4096 + 1024   # children may append meanwhile
    ra.process_command([sid], 1)               # the node and its server still work


def test_a_full_disk_costs_log_lines_not_processes(tmp_path):
    """/dev/full fails every write with ENOSPC: the daemon, its WAL and servers run on."""
    addr = node.start(data_dir=str(tmp_path / "d"), log_file="/dev/full", log_level="DEBUG")
    ids = [ra.ServerId("f", addr)]
    ra.start_cluster("f", COUNTER, ids)
    for i in range(20):
        assert ra.process_command(ids, 1)[0] == i + 1
    pid = node.node_call(addr, rm.ListServers())["f"]["pid"]
    os.kill(pid, signal.SIGKILL)              # logged (not) by the supervisor, restarted
    assert wait_for(lambda: node.node_call(addr, rm.ListServers())["f"]["pid"] not in (None, pid))

    def leader_back() -> bool:
        try:
            return bool(ra.members(ids, timeout=1))
        except ra.RaError:
            return False
    assert wait_for(leader_back, 15)
    assert ra.process_command(ids, 1, timeout=10)[0] == 21
    assert node.node_call(addr, rm.NodePing()) == "pong"


def test_cli_log_level_and_log_file(tmp_path):
    log = tmp_path / "cli.log"
    d = tmp_path / "d"
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-m", "ra.client.cli", "node", "start", "--data-dir", str(d),
                          "--daemon", "--log-level", "warning", "--log-file", str(log)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    addr = out.stdout.strip()
    try:
        sid = ra.ServerId("w", addr)
        ra.start_cluster("w", COUNTER, [sid])
        pid = node.node_call(addr, rm.ListServers())["w"]["pid"]
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: _has(log, lambda m: "crashed: killed" in m.group(7)), 10)
        assert {m.group(2) for m in _records(log)} <= {"WARNING", "ERROR", "CRITICAL"}
        assert not (d / "node.log").exists()          # the file given instead
    finally:
        subprocess.run([sys.executable, "-m", "ra.client.cli", "node", "stop", addr], env=env,
                       capture_output=True, timeout=60)


def test_bad_log_options_are_invalid_config(tmp_path):
    with pytest.raises(ra.InvalidConfig, match="log_level"):
        node.start(data_dir=str(tmp_path / "d"), log_level="LOUD")
    with pytest.raises(ra.InvalidConfig, match="log_max_bytes"):
        node.start(data_dir=str(tmp_path / "d"), log_max_bytes=-1)


def test_clients_write_through_logging_only():
    """ra.client.api and ra.aio never print nor write to stdout/stderr (the CLI's prints are its
    output): what a client has to say is a record of its logger."""
    import ast
    for mod in ("client/api", "client/aio"):
        tree = ast.parse((Path(REPO) / "ra" / f"{mod}.py").read_text())
        for n in ast.walk(tree):
            assert not (isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                        and n.func.id == "print"), f"ra/{mod}.py:{n.lineno} prints"
            assert not (isinstance(n, ast.Attribute) and n.attr in ("stdout", "stderr")
                        and isinstance(n.value, ast.Name) and n.value.id == "sys"), \
                f"ra/{mod}.py:{n.lineno} writes to sys.{n.attr}"
