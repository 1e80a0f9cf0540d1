"""Import boundaries: importing a module loads only what its layer may use.

The arrows (README "Layout", docs/INTERNALS.md)::

    ra.client, ra.node, ra.server ...  ->  transport, supervisor, wal  ->  raerror
    ra.core (pure)                        ->  nothing but ra.core
    ra.check checkers (pure)              ->  nothing but ra.check

Each module is imported in a fresh interpreter (forked from a bare one, so nothing is loaded
before it) and its ``sys.modules`` is checked against the rules below. A static scan also looks
inside functions, where a lazy import would hide an arrow from the runtime check.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: modules that do I/O (or pull in a process, socket or serializer): never under ra.core
IO_MODULES = frozenset({
    "zmq", "socket", "select", "selectors", "subprocess", "psutil", "msgpack", "xxhash",
    "threading", "asyncio", "multiprocessing", "signal", "tempfile", "shutil", "fcntl",
    "mmap", "transport", "wal", "supervisor",
})
#: what the checker half of ra.check must not load (it records histories with a lock and writes
#: them to files, but drives no process: tests/check/test_purity.py)
CHECKER_BANNED = frozenset({
    "zmq", "socket", "select", "selectors", "subprocess", "psutil", "msgpack",
    "multiprocessing", "transport", "wal", "supervisor", "examples",
})

# Run in a bare interpreter: fork once per module, import it, report what got loaded.
_PROBE = r"""
import json, os, sys
out = {}
for name in sys.argv[1:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            __import__(name)
            res = {"ok": sorted(sys.modules)}
        except BaseException as e:
            res = {"error": f"{type(e).__name__}: {e}"}
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 1 << 16)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    os.waitpid(pid, 0)
    out[name] = json.loads(b"".join(chunks))
print(json.dumps(out))
"""


def _modules(pkg: str) -> list[str]:
    root = REPO / pkg
    out = []
    for p in sorted(root.rglob("*.py")):
        parts = p.relative_to(REPO).with_suffix("").parts
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


CORE = _modules("ra/core")
LOWER = _modules("transport") + _modules("supervisor") + _modules("wal")
CHECKERS = ["ra.check", "ra.check.history", "ra.check.linear", "ra.check.checkers",
            "ra.check.verdict"]
LEAVES = ["raerror", "ra", "ra.core.types", "ra.errors", "transport.errors", "transport.codec",
          "ra.effects", "supervisor.spec", "supervisor.strategy"]


@cache
def _loaded() -> dict[str, dict[str, list[str] | str]]:
    names = sorted(set(CORE + LOWER + CHECKERS + LEAVES))
    proc = subprocess.run([sys.executable, "-c", _PROBE, *names], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"})
    assert proc.returncode == 0, proc.stderr
    out: dict[str, dict[str, list[str] | str]] = json.loads(proc.stdout)
    return out


def loaded(name: str) -> set[str]:
    res = _loaded()[name]
    assert "ok" in res, f"import {name} failed: {res.get('error')}"
    return set(res["ok"])


def tops(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


def of_ra(mods: set[str]) -> set[str]:
    return {m for m in mods if m == "ra" or m.startswith("ra.")}


@pytest.mark.parametrize("name", CORE)
def test_core_loads_no_io_and_nothing_outside_the_core(name: str) -> None:
    mods = loaded(name)
    assert tops(mods) & IO_MODULES == set()
    assert {m for m in of_ra(mods) if m != "ra" and not m.startswith("ra.core")} == set()


@pytest.mark.parametrize("name", LOWER)
def test_lower_layers_load_nothing_of_ra(name: str) -> None:
    assert of_ra(loaded(name)) == set()


@pytest.mark.parametrize("name", CHECKERS)
def test_checkers_load_no_transport_and_nothing_else_of_ra(name: str) -> None:
    mods = loaded(name)
    assert tops(mods) & CHECKER_BANNED == set()
    assert {m for m in of_ra(mods) if m != "ra" and not m.startswith("ra.check")} == set()


def test_leaves() -> None:
    ours = {"ra", "raerror", "transport", "wal", "supervisor", "examples", "bench", "tests"}
    assert tops(loaded("raerror")) & (ours | IO_MODULES) == {"raerror"}
    assert of_ra(loaded("ra")) == {"ra"}       # the public names load on first use
    types = loaded("ra.core.types")
    assert of_ra(types) == {"ra", "ra.core", "ra.core.types", "ra.core.errors"}
    assert tops(types) & (ours | IO_MODULES) == {"ra", "raerror"}
    errs = loaded("ra.errors")
    assert tops(errs) & (ours | IO_MODULES) == {"ra", "raerror", "transport"}
    assert of_ra(errs) == {"ra", "ra.errors", "ra.core", "ra.core.errors"}
    assert {m for m in errs if m.startswith("transport")} == {"transport", "transport.errors"}
    codec = loaded("transport.codec")
    assert tops(codec) & (ours | IO_MODULES) == {"transport", "msgpack"}
    assert of_ra(loaded("ra.effects")) == {"ra", "ra.effects", "ra.core", "ra.core.effects",
                                           "ra.core.errors", "ra.core.frozen"}
    for pure in ("supervisor.spec", "supervisor.strategy"):  # no OS work: no ZeroMQ, no psutil
        assert tops(loaded(pure)) & (ours | IO_MODULES) <= {"supervisor", "raerror", "signal"}


def _function_imports(path: Path) -> list[tuple[int, str]]:
    """Every import in ``path`` as (line, module), wherever it stands."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("pkg", ["transport", "supervisor", "wal"])
def test_lower_layers_never_import_ra_even_lazily(pkg: str) -> None:
    bad = [f"{p.relative_to(REPO)}:{line}: {mod}"
           for p in sorted((REPO / pkg).rglob("*.py"))
           for line, mod in _function_imports(p)
           if mod == "ra" or mod.startswith("ra.")]
    assert bad == []


def test_raerror_imports_nothing_of_ours() -> None:
    mods = {m.split(".")[0] for _, m in _function_imports(REPO / "raerror.py")}
    assert mods <= {"__future__"}


def test_public_names_resolve_to_the_same_objects() -> None:
    import ra
    import ra.errors
    import transport.errors
    for name in ra.__all__:
        assert getattr(ra, name) is not None, name
    assert ra.NoProc is transport.errors.NoProc is ra.errors.NoProc
    import ra.core.errors
    assert ra.InvalidConfig is ra.core.errors.InvalidConfig
    for cls in (ra.NoProc, ra.NodeDown, ra.Timeout, ra.OutcomeUnknown, ra.ProcessDied,
                ra.NodeLost, ra.SessionExpired):
        assert issubclass(cls, ra.RaError)
    from supervisor.spec import SupervisorError
    assert issubclass(SupervisorError, ra.RaError)
    assert ra.effects.release_cursor(3).as_tuple() == ("release_cursor", 3)
    assert ra.ReleaseCursor is ra.effects.ReleaseCursor is ra.core.effects.ReleaseCursor
    assert "command" in str(__import__("inspect").signature(ra.process_command))


#: the only modules at ra/'s top level: the public entry (``ra``, ``ra.aio``) and what every
#: layer shares (errors, machine effects, wire messages, their codec registration)
TOP_LEVEL = frozenset({"__init__", "aio", "effects", "errors", "messages", "wire"})
#: the packages by role (README "Layout")
ROLES = frozenset({"core", "client", "server", "node", "log", "check", "testing"})


def test_ra_is_laid_out_by_role() -> None:
    ra_dir = REPO / "ra"
    modules = {p.stem for p in ra_dir.glob("*.py")}
    packages = {p.name for p in ra_dir.iterdir() if (p / "__init__.py").exists()}
    assert modules == TOP_LEVEL, f"modules at ra/'s top level: {sorted(modules - TOP_LEVEL)} " \
        "belong in a role package"
    assert packages == ROLES, f"unexpected packages {sorted(packages ^ ROLES)}"
