"""The checker half of ``ra.check`` (history, linear, checkers, verdict) is pure apart from
history files: no transport, sockets or processes, and it depends on nothing else of ra (a
checker must not share code, or bugs, with what it checks). The runner half (machines,
workloads, nodes, netns, nemesis, runner, cli) drives a real cluster and may use anything."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

BANNED = frozenset({"zmq", "socket", "msgpack", "subprocess", "multiprocessing", "psutil",
                    "transport", "wal", "supervisor", "examples"})
CHECK = Path(__file__).resolve().parents[2] / "ra" / "check"
CHECKER_MODULES = ("__init__.py", "history.py", "linear.py", "checkers.py", "verdict.py")


def imports(source: str) -> list[str]:
    out: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def bad(mod: str) -> bool:
    top = mod.split(".")[0]
    return top in BANNED or (top == "ra" and not mod.startswith("ra.check"))


def test_scanner_catches_bad_imports() -> None:
    found = imports("import zmq\nfrom transport.codec import x\nfrom ra.client.api import Client\n"
                    "from ra.check.history import Op\nimport json\n")
    assert [m for m in found if bad(m)] == ["zmq", "transport.codec", "ra.client.api"]


@pytest.mark.parametrize("path", [CHECK / m for m in CHECKER_MODULES], ids=lambda p: p.name)
def test_check_modules_are_pure(path: Path) -> None:
    assert [m for m in imports(path.read_text()) if bad(m)] == []
