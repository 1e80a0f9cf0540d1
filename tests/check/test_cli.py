"""``ra check`` argument errors: one line on stderr and exit 3, before anything starts."""
from __future__ import annotations

import pytest

from ra.client import cli


@pytest.mark.parametrize("argv, says", [
    (["--nodes", "4"], "invalid choice"),
    (["--time", "soon"], "invalid float"),
    (["--nemesis", "kill-node,flood"], "unknown nemesis flood"),
    (["--workload", "queue"], "invalid choice"),
])
def test_bad_arguments_exit_3_with_one_line(argv: list[str], says: str, tmp_path: object,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main(["check", "--out", str(tmp_path), *argv])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 3
    assert says in err and len(err.strip().splitlines()) == 1
