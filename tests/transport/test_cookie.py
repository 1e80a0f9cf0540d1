"""The node secret: where it comes from, the default cookie file made 0400 in a 0700 directory,
an exposed one refused, ``RA_COOKIE`` first, concurrent creators agreeing."""
from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

import ra
from ra.node import daemon as node
from transport import cookie
from transport.errors import BadSecret


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME and no secret in the environment: the default file applies."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(cookie.ENV_SECRET, raising=False)
    monkeypatch.delenv(cookie.ENV_FILE, raising=False)
    return tmp_path


def test_default_cookie_file_is_created_0400_in_a_0700_dir(home: Path) -> None:
    secret = cookie.read_secret()
    path = home / ".ra" / "cookie"
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.read_bytes().strip() == secret and len(secret) >= 43   # token_urlsafe(32)
    assert cookie.read_secret() == secret                               # read, not remade
    assert not [p for p in path.parent.iterdir() if p.name != "cookie"]  # no temp file left


@pytest.mark.parametrize("mode", [0o440, 0o404, 0o600 | 0o020, 0o644])
def test_a_cookie_file_others_can_access_is_refused(home: Path, mode: int) -> None:
    path = home / "c"
    path.write_text("s3cret\n")
    path.chmod(mode)
    with pytest.raises(BadSecret, match=f"chmod 400 {path}"):
        cookie.read_secret(str(path))
    with pytest.raises(ra.InvalidConfig) as ei:      # as the node daemon and clients see it
        node.load_secret(str(path))
    assert ei.value.key == "cookie_file" and "chmod 400" in str(ei.value)


def test_an_empty_cookie_file_is_refused(home: Path) -> None:
    path = home / "c"
    path.write_text("\n")
    path.chmod(0o400)
    with pytest.raises(BadSecret, match="empty"):
        cookie.read_secret(str(path))


def test_where_the_secret_comes_from(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = home / "given"
    given.write_text("from-arg\n")
    given.chmod(0o400)
    env_file = home / "envfile"
    env_file.write_text("from-env-file\n")
    env_file.chmod(0o600)
    assert cookie.read_secret(str(given)) == b"from-arg"
    monkeypatch.setenv(cookie.ENV_FILE, str(env_file))
    assert cookie.read_secret() == b"from-env-file"
    assert cookie.read_secret(str(given)) == b"from-arg"          # the node's key first
    monkeypatch.setenv(cookie.ENV_SECRET, "from-env")
    assert cookie.read_secret(str(given)) == b"from-env"          # RA_COOKIE overrides all
    assert cookie.process_secret() == b"from-env"
    assert cookie.default_password() == cookie.plain_password(b"from-env")
    monkeypatch.setenv(cookie.ENV_SECRET, " ")
    with pytest.raises(BadSecret, match="empty"):
        cookie.read_secret()
    assert not (home / ".ra").exists()                              # no default file made


def test_pinned_secret_wins_over_the_environment(home: Path, monkeypatch: pytest.MonkeyPatch
                                                 ) -> None:
    monkeypatch.setenv(cookie.ENV_SECRET, "env")
    cookie.use_secret("pinned")
    try:
        assert cookie.process_secret() == b"pinned"
    finally:
        cookie.use_secret(None)
    assert cookie.process_secret() == b"env"


def _read(q: multiprocessing.Queue[bytes]) -> None:
    q.put(cookie.read_secret())


def test_processes_creating_the_cookie_together_agree(home: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    q: multiprocessing.Queue[bytes] = ctx.Queue()
    procs = [ctx.Process(target=_read, args=(q,)) for _ in range(6)]
    for p in procs:
        p.start()
    got = {q.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(30)
    assert len(got) == 1 and got == {(home / ".ra" / "cookie").read_bytes().strip()}
    assert os.listdir(home / ".ra") == ["cookie"]
