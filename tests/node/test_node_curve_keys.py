"""A node daemon with its own CURVE key pair (``curve_secret_key_file``, ``curve_allow``;
``ra node start --curve-secret-key-file F --curve-allow F``): the ``ra`` command reaches it with
a client key pair from the environment and not without; unusable key files are InvalidConfig
naming their key, before anything starts."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from zmq.utils import z85

from ra.node import daemon as node
from ra.errors import InvalidConfig
from tests.node.conftest import wait_for
from transport import curve
from transport import curvekeys as ck

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RA = [sys.executable, "-c", "import sys; from ra.client.cli import main; sys.exit(main())"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keys(d: Path, listen: str) -> dict[str, str]:
    n_pub, n_sec = curve.create_keypair_files(d, "node")
    c_pub, c_sec = curve.create_keypair_files(d, "client")
    allow = d / "allow"
    allow.write_text(f"{z85.encode(curve.load_public_key(n_pub)).decode()} {listen}\n"
                     f"{z85.encode(curve.load_public_key(c_pub)).decode()}  # the ra command\n")
    return {"node": n_sec, "client": c_sec, "allow": str(allow)}


def test_cli_node_with_keys(tmp_path: Path) -> None:
    listen = f"127.0.0.1:{_free_port()}"
    k = _keys(tmp_path / "keys", listen)
    env = {x: v for x, v in os.environ.items() if not x.startswith("RA_CURVE")}
    start = subprocess.run(RA + ["node", "start", "--data-dir", str(tmp_path / "d"), "--listen",
                                 listen, "--daemon", "--curve-secret-key-file", k["node"],
                                 "--curve-allow", k["allow"]],
                           capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert start.returncode == 0, start.stderr
    assert start.stdout.strip() == listen
    with_keys = dict(env, **{ck.ENV_SECRET_KEY_FILE: k["client"], ck.ENV_ALLOW: k["allow"]})
    try:
        st = subprocess.run(RA + ["node", "status", listen], capture_output=True, text=True,
                            timeout=30, env=with_keys)
        assert st.returncode == 0 and listen in st.stdout, st.stderr
        plain = subprocess.run(RA + ["node", "status", listen], capture_output=True,
                               text=True, timeout=30, env=env)
        assert plain.returncode != 0 and "mechanism mismatch" in plain.stderr, plain.stderr
    finally:
        stop = subprocess.run(RA + ["node", "stop", listen], capture_output=True, text=True,
                              timeout=60, env=with_keys)
    assert stop.returncode == 0, stop.stderr
    pid = int((tmp_path / "d" / "ra_node.lock").read_text().split()[1].rstrip(","))
    assert wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 10)


def test_unusable_key_files_are_invalid_config(tmp_path: Path) -> None:
    k = _keys(tmp_path / "keys", "127.0.0.1:1")
    os.chmod(k["node"], 0o644)
    with pytest.raises(InvalidConfig, match="chmod 400") as ei:
        node.start(data_dir=str(tmp_path / "d"), curve_secret_key_file=k["node"])
    assert ei.value.key == "curve_secret_key_file"
    os.chmod(k["node"], 0o600)
    os.chmod(k["allow"], 0o666)
    with pytest.raises(InvalidConfig, match="writable by group or others") as ei:
        node.start(data_dir=str(tmp_path / "d"), curve_secret_key_file=k["node"],
                   curve_allow=k["allow"])
    assert ei.value.key == "curve_allow"
    with pytest.raises(InvalidConfig, match="needs the node's own key pair") as ei:
        node.start(data_dir=str(tmp_path / "d"), curve_allow=k["allow"])
    assert ei.value.key == "curve_allow"


def test_a_client_with_an_unusable_key_file_is_invalid_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ra

    k = _keys(tmp_path / "keys", "127.0.0.1:1")
    os.chmod(k["client"], 0o640)
    monkeypatch.setenv(ck.ENV_SECRET_KEY_FILE, k["client"])
    with pytest.raises(InvalidConfig, match="chmod 400") as ei:
        ra.Client()
    assert (ei.value.key, ei.value.value) == ("curve_secret_key_file", k["client"])
    monkeypatch.delenv(ck.ENV_SECRET_KEY_FILE)
    monkeypatch.setenv(ck.ENV_SECRET_KEY, "tooshort")
    with pytest.raises(InvalidConfig, match="40 Z85") as ei:
        ra.Client()
    assert (ei.value.key, ei.value.value) == ("curve_secret_key_file", ck.ENV_SECRET_KEY)
