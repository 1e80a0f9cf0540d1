"""bench/build_python.sh against a fake Debian archive signed with a throwaway key: it builds the
newest python3.13 of the suite only when the release file's signature, the index's hash and the
tarball's hash all check, and builds nothing otherwise. The fake tarball's configure and Makefile
install a stand-in interpreter, so no CPython is built here."""
from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "build_python.sh"
TOOLS = ("gpg", "gpgv", "curl", "xz", "make", "sha256sum", "sh")
pytestmark = pytest.mark.skipif(any(shutil.which(t) is None for t in TOOLS),
                                reason=f"needs {', '.join(TOOLS)}")

# a configure that writes a Makefile whose install puts a stand-in python3.13 in --prefix; the
# stand-in answers the script's checks (CONFIG_ARGS names both optimizations)
CONFIGURE = """#!/bin/sh
for a in "$@"; do case $a in --prefix=*) prefix=${a#--prefix=};; esac; done
printf 'all:\\n\\ttrue\\ninstall:\\n\\tmkdir -p %s/bin\\n\\tcp stand-in %s/bin/python3.13\\n' \\
    "$prefix" "$prefix" > Makefile
"""
STAND_IN = """#!/bin/sh
[ "$1" = --version ] && { echo "Python 3.13.99 (stand-in)"; exit 0; }
exit 0
"""


def _tarball(version: str, configure: str = CONFIGURE) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, text in (("configure", configure), ("stand-in", STAND_IN)):
            data = text.encode()
            info = tarfile.TarInfo(f"Python-{version}/{name}")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _stanza(pkg: str, version: str, tar: bytes, name: str) -> str:
    sha = hashlib.sha256(tar).hexdigest()
    return (f"Package: {pkg}\nBinary: {pkg}\nVersion: {version}-1\n"
            f"Checksums-Sha256:\n {sha} {len(tar)} {name}\n"
            f" {'0' * 64} 10 {pkg}_{version}-1.debian.tar.xz\n"
            f"Directory: pool/main/p/{pkg}\n\n")


class Archive:
    """A suite "trixie" with python3.13 3.13.98 and 3.13.99 (and an unrelated package)."""

    def __init__(self, root: Path, gnupg: Path):
        self.root, self.gnupg = root, gnupg
        self.tars: dict[str, bytes] = {}
        pool = root / "pool/main/p/python3.13"
        pool.mkdir(parents=True)
        sources = ""
        for v in ("3.13.99", "3.13.98"):
            self.tars[v] = _tarball(v)
            name = f"python3.13_{v}.orig.tar.xz"
            (pool / name).write_bytes(self.tars[v])
            sources += _stanza("python3.13", v, self.tars[v], name)
        other = _tarball("9.9")
        sources += _stanza("python3.14", "3.14.0", other, "python3.14_3.14.0.orig.tar.xz")
        src = root / "dists/trixie/main/source"
        src.mkdir(parents=True)
        (src / "Sources.xz").write_bytes(lzma.compress(sources.encode()))
        self.sign()

    def sign(self, key: str = "archive") -> None:
        """(Re)write InRelease for the current Sources.xz, clearsigned by ``key``."""
        xz = (self.root / "dists/trixie/main/source/Sources.xz").read_bytes()
        release = ("Suite: trixie\nSHA256:\n"
                   f" {hashlib.sha256(xz).hexdigest()} {len(xz)} main/source/Sources.xz\n")
        out = subprocess.run(["gpg", "--batch", "--yes", "--local-user", key, "--clearsign"],
                             input=release.encode(), capture_output=True, check=True,
                             env={**os.environ, "GNUPGHOME": str(self.gnupg)})
        (self.root / "dists/trixie/InRelease").write_bytes(out.stdout)


@pytest.fixture
def archive(tmp_path):
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    for uid in ("archive", "intruder"):
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid,
                        "ed25519", "sign", "never"], env=env, capture_output=True, check=True)
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--export", "archive"], env=env,
                                       capture_output=True, check=True).stdout)
    yield Archive(tmp_path / "mirror", gnupg), keyring
    subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True)


def _run(archive: Archive, keyring: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYOPT_MIRROR": f"file://{archive.root}",
           "PYOPT_KEYRING": str(keyring), "TMPDIR": str(prefix.parent)}
    return subprocess.run(["sh", str(SCRIPT), str(prefix)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_builds_the_newest_checked_tarball_once(archive, tmp_path):
    arch, keyring = archive
    prefix = tmp_path / "py"
    r = _run(arch, keyring, prefix)
    assert r.returncode == 0, r.stderr
    assert "python3.13_3.13.99.orig.tar.xz (Debian 3.13.99-1" in r.stdout
    assert (prefix / "bin/python3.13").exists()
    again = _run(arch, keyring, prefix)
    assert again.returncode == 0 and "already built" in again.stdout


def _foreign_signature(arch: Archive) -> None:
    arch.sign(key="intruder")


def _index_not_in_release(arch: Archive) -> None:
    xz = arch.root / "dists/trixie/main/source/Sources.xz"
    xz.write_bytes(xz.read_bytes() + b"\0")      # after signing: its hash no longer matches


def _tarball_not_in_index(arch: Archive) -> None:
    tar = arch.root / "pool/main/p/python3.13/python3.13_3.13.99.orig.tar.xz"
    tar.write_bytes(_tarball("3.13.99", CONFIGURE + "# another build\n"))   # a valid tarball


@pytest.mark.parametrize("tamper", [_foreign_signature, _index_not_in_release,
                                    _tarball_not_in_index], ids=lambda f: f.__name__[1:])
def test_a_check_that_fails_builds_nothing(archive, tmp_path, tamper):
    arch, keyring = archive
    tamper(arch)
    prefix = tmp_path / "py"
    r = _run(arch, keyring, prefix)
    assert r.returncode != 0
    assert not (prefix / "bin").exists()
