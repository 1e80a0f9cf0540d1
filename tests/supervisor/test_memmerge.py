"""supervisor.memmerge: the mark for kernel same-page merging is set, inherited across fork and
exec (so a node daemon that marks itself marks its whole tree), and refused with an OSError where
the kernel lacks it. Each case runs in a fresh interpreter: the mark cannot be taken back."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from supervisor import memmerge


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


def _kernel_has_it() -> bool:
    r = _run("""
        from supervisor import memmerge
        try:
            memmerge.enable()
        except OSError:
            raise SystemExit(3)
        """)
    return r.returncode == 0


needs_ksm = pytest.mark.skipif(not _kernel_has_it(),
                               reason="this kernel refuses PR_SET_MEMORY_MERGE (Linux < 6.4)")


def test_unmarked_by_default() -> None:
    r = _run("""
        from supervisor import memmerge
        print(memmerge.enabled())
        """)
    assert r.stdout.split() == ["False"], r.stderr


@needs_ksm
def test_mark_is_inherited_by_fork_and_exec() -> None:
    r = _run("""
        import os, subprocess, sys
        from supervisor import memmerge
        memmerge.enable()
        print("self", memmerge.enabled())
        pid = os.fork()
        if pid == 0:
            os._exit(0 if memmerge.enabled() else 1)
        print("fork", os.waitpid(pid, 0)[1] == 0)
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            print("exec", memmerge.enabled(child.pid))
        finally:
            child.kill()
            child.wait()
        """)
    assert r.stdout.split() == ["self", "True", "fork", "True", "exec", "True"], r.stderr


def test_a_process_that_is_gone_is_not_marked() -> None:
    assert memmerge.enabled(2 ** 22 + 12345) is False


def test_refusal_is_an_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memmerge, "_prctl", lambda *a: -1)
    with pytest.raises(OSError, match="Linux >= 6.4"):
        memmerge.enable()


def test_machine_state_reads_the_switch(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    run = tmp_path / "run"
    run.write_text("0\n")
    monkeypatch.setattr(memmerge, "KSM_RUN", str(run))
    assert memmerge.machine_state() == "0"
    monkeypatch.setattr(memmerge, "KSM_RUN", str(tmp_path / "absent"))
    assert memmerge.machine_state() is None
