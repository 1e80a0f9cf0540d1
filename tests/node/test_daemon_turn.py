"""A daemon's turn of mail (NodeDaemon._on_mail) is bounded so that its timers, the failure
detector's heartbeats and checks among them, run on time; a turn that leaves mail unread tells
the detector, whose peers' heartbeats may be queued in that mail."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ra.node.daemon import NodeDaemon


class _Mail:
    """A mailbox whose queue holds ``n`` envelopes (None: endless)."""

    def __init__(self, n: int | None) -> None:
        self.left = n

    def recv(self, timeout: float) -> Any:
        if self.left == 0:
            return None
        if self.left is not None:
            self.left -= 1
        return object()


class _Detector:
    def __init__(self) -> None:
        self.behinds = 0

    def behind(self) -> None:
        self.behinds += 1


def _daemon(tmp_path: Path, mail: _Mail) -> tuple[NodeDaemon, _Detector, list[Any]]:
    d = NodeDaemon(str(tmp_path))
    handled: list[Any] = []
    d.mailbox = mail                                      # type: ignore[assignment]
    d.detector = _Detector()
    d._handle = handled.append                            # type: ignore[method-assign]
    return d, d.detector, handled


def test_a_turn_that_leaves_mail_tells_the_detector(tmp_path: Path) -> None:
    d, det, handled = _daemon(tmp_path, _Mail(None))
    d._on_mail()
    assert 0 < len(handled) <= 1000                       # bounded: the rest waits a turn
    assert det.behinds == 1


def test_a_turn_that_reads_all_its_mail_does_not(tmp_path: Path) -> None:
    d, det, handled = _daemon(tmp_path, _Mail(3))
    d._on_mail()
    assert len(handled) == 3
    assert det.behinds == 0
