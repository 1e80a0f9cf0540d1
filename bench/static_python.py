"""No ra equivalent. The interpreter ``make bench`` runs on: the running CPython, linked as one
static executable when it was built ``--enable-shared`` (as pyenv builds it).

Why: a shared ``libpython`` reaches its own functions and globals through the PLT and GOT and
its thread state through ``__tls_get_addr`` (5 % of a client's instructions under callgrind,
BENCHMARKS.md, session 19), which a program linked as one executable does directly. python.org
and the distributions ship the ``python3`` executable linked that way. The installed
interpreter keeps what a static link needs, in its ``LIBPL`` directory: ``python.o`` and
``libpython3.X.a``, compiled from the same sources with the same flags. So this links those two
with the link line of CPython's own Makefile (``LINKCC``, ``LINKFORSHARED``, ``LIBS``,
``SYSLIBS``): the same version and build, minus the indirection (W1, alternated with pyenv's
shared 3.12.1: 7 % lower p50 and 12 % less CPU per command, BENCHMARKS.md, session 23).

``python bench/static_python.py [OUT_DIR]`` prints the path of an interpreter to use and exits
0: the running one when it does not run from a shared ``libpython`` (Debian's ``python3``
says ``Py_ENABLE_SHARED`` and is linked statically), else ``OUT_DIR/pythonX.Y`` (default
``~/.cache/ra-bench/static-<hash of the source interpreter's path and version>``), linked
once and checked (it must start, report the same version and prefix, and import the C modules
the suite needs). Exits 1 with the reason on stderr when it cannot (no ``python.o`` or
archive, no compiler, a failed check): ``make bench`` then runs on the interpreter as it is,
and says so.
"""
from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig

__all__ = ["static_python", "main"]

_CHECK = ("import sys, ctypes, select, ssl, zlib; "
          "print(sys.version.split()[0], sys.base_prefix, sep='\\n')")


def _var(name: str) -> str:
    return str(sysconfig.get_config_var(name) or "")


def static_python(out_dir: str | None = None) -> str:
    """The path of a statically linked copy of the running interpreter (module docstring);
    raises ``RuntimeError`` saying why it cannot be made."""
    if not _runs_on_libpython():
        return os.path.realpath(sys.executable)
    libpl = _var("LIBPL")
    obj = os.path.join(libpl, "python.o")
    archive = os.path.join(libpl, _var("LIBRARY") or f"libpython{_var('LDVERSION')}.a")
    for need in (obj, archive):
        if not os.path.isfile(need):
            raise RuntimeError(f"{need} is missing: this interpreter cannot be linked statically")
    src = os.path.realpath(sys.executable)
    if out_dir is None:
        tag = hashlib.sha256(f"{src}\n{sys.version}".encode()).hexdigest()[:12]
        out_dir = os.path.join(os.path.expanduser("~"), ".cache", "ra-bench", f"static-{tag}")
    out = os.path.join(out_dir, f"python{_var('VERSION')}")
    if not _works(out):
        os.makedirs(out_dir, exist_ok=True)
        tmp = f"{out}.{os.getpid()}"
        cmd = [*shlex.split(_var("LINKCC") or "cc"), *shlex.split(_var("LINKFORSHARED")),
               "-o", tmp, obj, archive, *shlex.split(_var("LIBS")),
               *shlex.split(_var("SYSLIBS"))]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"linking failed ({shlex.join(cmd)}): {r.stderr.strip()[-2000:]}")
        if not _works(tmp):
            os.unlink(tmp)
            raise RuntimeError(f"the linked interpreter {tmp} does not start as {src} does")
        os.replace(tmp, out)         # atomic: a concurrent run sees the old file or the new
    return out


def _runs_on_libpython() -> bool:
    """Whether this process runs its interpreter from a shared ``libpython`` (pyenv), not from
    its executable (Debian's ``python3`` says ``Py_ENABLE_SHARED`` and is linked statically)."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return False
    try:
        with open("/proc/self/maps") as f:
            return any("/libpython" in ln for ln in f)
    except OSError:
        return True


def _works(path: str) -> bool:
    """``path`` runs, is this version with this prefix, and imports the C modules we use."""
    if not os.access(path, os.X_OK):
        return False
    try:
        r = subprocess.run([path, "-I", "-c", _CHECK], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and r.stdout.split() == [sys.version.split()[0], sys.base_prefix]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        print(static_python(args[0] if args else None))
    except (RuntimeError, OSError) as e:
        print(f"bench/static_python.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
