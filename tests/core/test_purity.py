"""The core is pure: no I/O, clock, threads or unseeded randomness under ``ra/core``.

Walks the AST of every module in ``ra/core/**`` and fails on a banned import (``import x``,
``import x.y``, ``from x import y``, ``__import__("x")``, ``importlib.import_module("x")``) or a
call to ``open(...)``. The scanner itself is tested on bad snippets so that it cannot pass
vacuously.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

BANNED = frozenset({
    "zmq", "socket", "os", "time", "random", "threading", "subprocess", "psutil", "io",
    "pathlib", "msgpack", "asyncio", "multiprocessing", "select", "selectors", "signal",
    "shutil", "tempfile", "datetime", "secrets", "uuid", "importlib", "builtins",
})
CORE = Path(__file__).resolve().parents[2] / "ra" / "core"


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Banned imports and calls in ``source`` as ``file:line: what`` strings."""
    out: list[str] = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in BANNED:
                    out.append(f"{filename}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 0 and mod.split(".")[0] in BANNED:
                out.append(f"{filename}:{node.lineno}: from {mod} import ...")
        elif isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) \
                else None
            if name == "open" and isinstance(f, ast.Name):
                out.append(f"{filename}:{node.lineno}: open(...)")
            elif name in ("__import__", "import_module") and node.args \
                    and isinstance(node.args[0], ast.Constant) \
                    and str(node.args[0].value).split(".")[0] in BANNED:
                out.append(f"{filename}:{node.lineno}: dynamic import of {node.args[0].value}")
    return out


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_modules() -> None:
    names = {p.name for p in core_files()}
    assert {"server.py", "messages.py", "effects.py", "log.py"} <= names


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_is_pure(path: Path) -> None:
    bad = violations(path.read_text(), str(path.relative_to(CORE.parent.parent)))
    assert not bad, "ra/core must stay pure:\n" + "\n".join(bad)


@pytest.mark.parametrize("snippet", [
    "import os", "import os.path", "from time import monotonic", "import random as r",
    "from socket import socket", "import zmq", "import msgpack", "from pathlib import Path",
    "import threading", "import subprocess", "import psutil", "import io", "import asyncio",
    "with open('x') as f: pass", "def f():\n    import time\n", "__import__('os')",
    "import importlib\nimportlib.import_module('socket')",
])
def test_scanner_flags_impure_code(snippet: str) -> None:
    assert violations(snippet), f"scanner missed: {snippet!r}"


@pytest.mark.parametrize("snippet", [
    "from __future__ import annotations", "import dataclasses", "from typing import Any",
    "from ra.core import quorum", "from . import quorum", "x = obj.open()",
    "import collections",
])
def test_scanner_accepts_pure_code(snippet: str) -> None:
    assert not violations(snippet)
