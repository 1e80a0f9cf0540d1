"""Exactly-once and check-quorum through the simulator: clients retry commands whose outcome is unknown (a
timeout, a server that died holding the call) under their session, and the checkers demand that
each command is applied once and every retry answered with the first reply. With the session
table switched off (a test-side mutant), the same seeds apply retried commands twice."""
from __future__ import annotations

from typing import Any

import pytest

from ra.core import sessions
from ra.testing.checkers import Violation
from ra.testing.sim import run_seed


def test_clients_retry_unknown_outcomes_and_nothing_is_applied_twice() -> None:
    retries = 0
    for seed in range(60):
        retries += run_seed(seed, 3).stats["retries"]
    assert retries > 50, "the seeds must exercise retries after unknown outcomes"


def _sessions_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutant: the table still records, but never recognises a duplicate."""
    real = sessions.Sessions.command

    def command(self: Any, idx: int, sid: int, seq: int, first_out: int, ts: int) -> Any:
        real(self, idx, sid, seq, first_out, ts)
        sess = self.table.get(sid)
        return sess.responses if sess is not None else {}     # "apply it", always
    monkeypatch.setattr(sessions.Sessions, "command", command)
    monkeypatch.setattr(sessions.Sessions, "lookup", lambda self, sid, seq: (False, None))


def test_sessions_off_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    _sessions_off(monkeypatch)
    for seed in range(100):
        try:
            run_seed(seed, 3)
        except Violation as v:
            assert v.check == "state_machine_safety" and "applied twice" in v.message
            break
    else:
        pytest.fail("100 seeds with the session table off and no command applied twice")
    monkeypatch.undo()
    run_seed(seed, 3)          # the same seed with the real table passes: the mutant did it


def test_check_quorum_off_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A leader that never checks its quorum keeps leading while cut off: the simulator's
    ``check_quorum`` bound (two election timeouts) catches it."""
    from ra.core import server
    from ra.core.effects import StartElectionTimeout

    monkeypatch.setattr(server, "_check_quorum", lambda s, effects: effects.append(
        StartElectionTimeout(check_quorum=True)))
    for seed in range(100):
        try:
            run_seed(seed, 3)
        except Violation as v:
            assert v.check == "check_quorum"
            break
    else:
        pytest.fail("100 seeds of leaders that never check their quorum, none caught")
    monkeypatch.undo()
    run_seed(seed, 3)
