"""Issue 13's attack, replayed: a local process without the node secret asks a node daemon to run
a shell command. It is refused at the handshake, nothing runs, and the node keeps serving; a
holder of the secret is served (the control that shows the attack is real)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil
import pytest
import zmq

from ra import messages as rm
from ra.node import daemon as node
from ra.errors import InvalidConfig
from tests.node.conftest import wait_for
from transport import envelope
from transport.cookie import ENV_FILE, ENV_SECRET, default_password, plain_password
from transport.envelope import CALL
from transport.errors import HandshakeRefused
from transport.mechanism import command, encode_metadata

pytestmark = pytest.mark.integration


def _attack(addr: str, password: bytes | None, target: Path) -> zmq.Socket[bytes]:
    """A raw libzmq DEALER calling StartChild("evil", "os:system", ["id > target"])."""
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.linger = 0
    if password is not None:
        s.plain_username, s.plain_password = b"ra", password
    frame = _evil(target)
    s.connect(f"tcp://{addr}")
    try:
        # queued at once (the pipe exists from connect on), unless the daemon refused the
        # handshake before this thread got here on a loaded machine: refused either way
        s.send(frame, zmq.NOBLOCK)
    except zmq.Again:
        pass
    return s


def _evil(target: Path) -> bytes:
    msg = rm.StartChild("evil", "os:system", [f"id > {target}"], {})
    return envelope.pack(CALL, "tcp://127.0.0.1:1", 1, msg)


def _raw_zmtp(addr: str, mechanism: bytes, commands: list[bytes], frame: bytes) -> socket.socket:
    """The attack as bytes on a plain socket, all in one write: greeting, handshake commands
    and the message frame reach the daemon's socket, whatever it answers."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=5)
    greeting = (b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + mechanism.ljust(20, b"\x00")
                + b"\x00" * 32)
    cmds = b"".join(bytes((4, len(c))) + c for c in commands)
    s.sendall(greeting + cmds + b"\x02" + len(frame).to_bytes(8, "big") + frame)
    return s


def _refused(addr: str) -> int:
    return int(node.node_call(addr, rm.NodeStatus())["bad_messages"].get("mailbox:refused", 0))


@pytest.mark.parametrize("password", [None, b"not-the-secret", plain_password(b"guess")],
                         ids=["no-credentials", "wrong-password", "wrong-secret"])
def test_the_attack_without_the_secret_is_refused_at_the_handshake(
        tmp_path: Path, password: bytes | None) -> None:
    addr = node.start_in(str(tmp_path / "data"))
    pwned = tmp_path / "pwned"
    raw = _attack(addr, password, pwned)
    try:
        assert wait_for(lambda: _refused(addr) >= 1, 10)
        # refused before any frame was read: the call never reached a handler (whatever
        # libzmq retries meanwhile is refused the same way)
        assert not pwned.exists()
        assert node.node_call(addr, rm.NodePing()) == "pong"      # the node keeps serving
        assert "evil" not in dict(node.node_call(addr, rm.WhichChildren()))
    finally:
        raw.close(0)


@pytest.mark.parametrize("how", ["null", "plain-wrong"])
def test_the_attack_as_raw_bytes_is_refused_before_its_frame_is_read(tmp_path: Path,
                                                                     how: str) -> None:
    addr = node.start_in(str(tmp_path / "data"))
    pwned = tmp_path / "pwned"
    meta = encode_metadata({"Socket-Type": b"DEALER"})
    if how == "null":
        s = _raw_zmtp(addr, b"NULL", [command(b"READY", meta)], _evil(pwned))
    else:
        s = _raw_zmtp(addr, b"PLAIN", [command(b"HELLO", b"\x02ra\x05wrong"),
                                       command(b"INITIATE", meta)], _evil(pwned))
    try:
        answer = b""
        while True:                   # the daemon answers, then closes the connection
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    finally:
        s.close()
    assert b"\x05ERROR" in answer[64:]
    assert _refused(addr) == 1 and not pwned.exists()
    assert node.node_call(addr, rm.NodePing()) == "pong"


def test_with_the_secret_the_same_call_is_served(tmp_path: Path) -> None:
    addr = node.start_in(str(tmp_path / "data"))
    ran = tmp_path / "ran"
    raw = _attack(addr, default_password(), ran)
    try:
        assert wait_for(ran.exists, 10)          # holders of the secret are trusted, as in Erlang
        assert _refused(addr) == 0
    finally:
        raw.close(0)


def test_ra_cookie_reaches_every_child_in_memory_not_in_their_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_SECRET, "cookie-from-the-environment")
    addr = node.start_in(str(tmp_path / "data"))   # returns once its WAL answered the daemon
    daemon = psutil.Process(node.node_call(addr, rm.NodeStatus())["pid"])
    children = daemon.children(recursive=True)
    assert len(children) >= 3                     # fork server, WAL, segment writer
    for c in children:
        env = c.environ()
        assert ENV_SECRET not in env and "cookie-from-the-environment" not in " ".join(c.cmdline())
    # a client of another secret is refused, one of this secret served
    monkeypatch.setenv(ENV_SECRET, "another-cookie")
    with pytest.raises(HandshakeRefused):
        node.node_call(addr, rm.NodePing())
    monkeypatch.setenv(ENV_SECRET, "cookie-from-the-environment")
    assert node.node_call(addr, rm.NodePing()) == "pong"


def test_a_node_refuses_to_start_with_an_exposed_cookie_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cookie = tmp_path / "cookie"
    cookie.write_text("s3cret\n")
    cookie.chmod(0o644)
    monkeypatch.delenv(ENV_SECRET, raising=False)
    with pytest.raises(InvalidConfig, match="chmod 400") as ei:
        node.start(data_dir=str(tmp_path / "data"), cookie_file=str(cookie))
    assert ei.value.key == "cookie_file"
    cookie.chmod(0o400)
    monkeypatch.setenv(ENV_FILE, str(cookie))     # clients read the same file
    addr = node.start(data_dir=str(tmp_path / "data"), cookie_file=str(cookie))
    assert node.node_call(addr, rm.NodePing()) == "pong"
    assert os.stat(cookie).st_mode & 0o777 == 0o400
