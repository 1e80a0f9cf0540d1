"""No ra equivalent. ``bench/static_python.py``: the interpreter ``make bench`` runs on."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import static_python as sp

_MAPS = ("import sys; print(sys.version.split()[0]); print(sys.base_prefix); "
         "print(any('/libpython' in ln for ln in open('/proc/self/maps')))")


@pytest.mark.skipif(not sp._runs_on_libpython(), reason="this interpreter is not a shared build")
def test_a_shared_build_is_linked_into_one_executable(tmp_path):
    out = sp.static_python(str(tmp_path))
    assert out == str(tmp_path / f"python{sys.version_info[0]}.{sys.version_info[1]}")
    r = subprocess.run([out, "-I", "-c", _MAPS], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # the same version and standard library, and no libpython mapped: linked in
    assert r.stdout.split("\n")[:3] == [sys.version.split()[0], sys.base_prefix, "False"]
    # kept: a second call links nothing (the file is the same one)
    st = os.stat(out)
    assert sp.static_python(str(tmp_path)) == out
    assert os.stat(out).st_mtime_ns == st.st_mtime_ns


def test_an_interpreter_linked_statically_is_used_as_it_is(monkeypatch, tmp_path):
    monkeypatch.setattr(sp, "_runs_on_libpython", lambda: False)
    assert sp.static_python(str(tmp_path)) == os.path.realpath(sys.executable)
    assert not os.listdir(tmp_path)


def test_without_the_archive_it_says_what_is_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(sp, "_runs_on_libpython", lambda: True)
    real = sp._var
    monkeypatch.setattr(sp, "_var", lambda n: str(tmp_path) if n == "LIBPL" else real(n))
    with pytest.raises(RuntimeError, match="python.o is missing"):
        sp.static_python(str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert sp.main([str(tmp_path / "out")]) == 1


@pytest.mark.skipif(not sp._runs_on_libpython(), reason="this interpreter is not a shared build")
def test_a_linked_interpreter_that_fails_its_check_is_not_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(sp, "_works", lambda path: False)
    with pytest.raises(RuntimeError, match="does not start"):
        sp.static_python(str(tmp_path))
    assert not os.listdir(tmp_path)
