"""The README's quick start runs as written (with its data directory moved to a tmp dir)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import ra

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_quick_start_runs(tmp_path, capsys):
    text = README.read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", text, re.DOTALL).group(1)
    code = block.replace("/tmp/ra/n1", str(tmp_path / "n1"))
    ns: dict = {}
    try:
        exec(compile(code, "README quick start", "exec"), ns)  # noqa: S102 - the README's own code
        assert ns["reply"] == 5
        assert ns["state"] == 6
        out = capsys.readouterr().out
        assert "('applied', [('c1', 6)])" in out
    finally:
        ra.stop_nodes()


def test_simple_machine(shared_three, cname):
    ids = [shared_three.sid(cname, i) for i in range(3)]
    ra.start_cluster(cname, ("simple", "ra.testing.machines:add", 10), ids)
    assert ra.process_command(ids, 5)[0] == 15
    assert ra.consistent_query(ids, "ra.testing.machines:get_state")[0] == 15


def _python_blocks() -> list[str]:
    """Every ```python block of the README, dedented (some sit in list items)."""
    import textwrap
    text = README.read_text()
    return [textwrap.dedent(m.group(1))
            for m in re.finditer(r"^ *```python\n(.*?)^ *```", text, re.DOTALL | re.MULTILINE)]


def test_every_readme_python_block_compiles_and_the_machine_block_works():
    blocks = _python_blocks()
    assert len(blocks) >= 3
    for i, b in enumerate(blocks):
        compile(b, f"README python block {i}", "exec")
    ns: dict = {}
    counter = next(b for b in blocks if b.startswith("class Counter"))
    exec(counter, ns)  # noqa: S102 - the README's own code
    m = ns["Counter"]()
    s = m.init(None)
    s, reply = m.apply({"index": 1}, 5, s)
    assert (s, reply) == (5, 5)


def test_readme_asyncio_block_runs(cluster, capsys):
    import asyncio
    block = next(b for b in _python_blocks() if "ra.aio" in b)
    ns: dict = {}
    exec(compile(block, "README asyncio block", "exec"), ns)  # noqa: S102
    asyncio.run(ns["main"](cluster))
    assert ra.consistent_query(cluster, "ra.testing.machines:get_state")[0] == 1005
    assert "('applied', [('a', 1005)])" in capsys.readouterr().out
